//! Per-fault-window arithmetic: what clients saw while each fault was in force.
//!
//! Pure functions over the analysed history (`Analysis`: ops with call/return times,
//! outcomes and the node each client talked to; the nemesis windows) and the leader
//! timeline the run sampled. No I/O, so every figure is unit-tested on hand-made
//! histories.
//!
//! For each window `[s, e]` (fault start and end, seconds since the test began) the
//! figures are measured over the window's *horizon* `[s, h]`: the fault itself and the
//! healthy stretch after it, up to the next fault, the end of the main phase, or as long
//! again as the fault lasted, whichever comes first.
//!
//! - **gap** (unavailability): the longest interval with no successful completion that
//!   overlaps `[s, h]`, counted from the last success before `s` (at most `PRE_GAP_S`
//!   earlier) — for all clients, and for clients of healthy nodes only (those whose
//!   invocations name a node that is not a target of the fault). Fast refusals (a
//!   passive follower's 503 while no leader is known) do not end a gap; only `ok` does.
//! - **recovery**: from `s` until the ok-completion rate over a `SMOOTH_S` sliding window
//!   (stepped by `BUCKET_S`) is back to ≥ 90 % of the pre-fault rate; and the same from
//!   `e` (after the fault is undone). `None` when it never is within the horizon, or when
//!   there is no steady state before the fault (a fault at the very start of a run).
//! - **latency**: p50 / p99 / max of `ok` ops invoked in `[s, e)` against those invoked
//!   in the steady state before (`[max(previous fault's end, s − STEADY_S), s)`).
//! - **availability**: answered / attempted over ops invoked in `[s, e)`; a cas refused
//!   because the value differs is an answer (counted apart as `cas_mismatch`).
//!
//! Measuring the gap, not p99, is the point: a passive cluster without a leader refuses
//! requests fast, so the stall shows up as missing successes, not as slow ones.

use serde::Serialize;

use super::analysis::{Counts, OpRecord, Outcome, Window};

/// Throughput bucket: fine enough to show a 0.3-s stall.
pub const BUCKET_S: f64 = 0.1;
/// Sliding window the recovery rule averages over (5 buckets), so one noisy bucket at
/// 20 ops does not count as recovered.
pub const SMOOTH_S: f64 = 0.5;
/// The recovered level, as a share of the pre-fault ok rate.
pub const RECOVERED: f64 = 0.9;
/// Longest steady state before a fault that the baseline uses.
pub const STEADY_S: f64 = 2.0;
/// Shortest steady state that counts as a baseline at all.
pub const MIN_STEADY_S: f64 = 0.5;
/// How far before a fault the gap looks for the last success.
pub const PRE_GAP_S: f64 = 1.0;
/// The aligned series start this long before the fault.
pub const SERIES_PRE_S: f64 = 1.0;

/// The leader as the run saw it: `(seconds since start, leader id or None)`, in time order.
pub type LeaderTimeline = [(f64, Option<String>)];

/// Latency quantiles of ok ops, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    /// Nearest-rank quantiles of `ms`; `None` when empty.
    pub fn of(mut ms: Vec<f64>) -> Option<Self> {
        if ms.is_empty() {
            return None;
        }
        ms.sort_by(f64::total_cmp);
        let rank = |q: f64| ms[((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Some(Self {
            count: ms.len(),
            p50: rank(0.5),
            p99: rank(0.99),
            max: ms[ms.len() - 1],
        })
    }
}

/// Ok completions per second and ok-latency per `BUCKET_S`, aligned at fault start:
/// bucket `i` covers `[s + from_s + i·BUCKET_S, … + BUCKET_S)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub from_s: f64,
    pub bucket_s: f64,
    /// Ok completions per second (all clients).
    pub ok_per_s: Vec<f64>,
    /// Highest latency (ms) of the ok ops that completed in the bucket; `None` if none did.
    pub max_latency_ms: Vec<Option<f64>>,
}

/// What one fault window did to clients.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowStats {
    pub fault: String,
    pub description: String,
    pub start_s: f64,
    pub end_s: f64,
    /// End of the measured horizon (see the module doc).
    pub horizon_s: f64,
    /// Nodes the fault was aimed at.
    pub targets: Vec<String>,
    /// The targets' role when the fault started: `leader`, `follower`, `mixed`
    /// (several targets, the leader among them), or `none` (no leader known / a mode
    /// without one).
    pub target_role: String,
    /// The leader just before the fault started, if one was known.
    pub leader_before: Option<String>,
    /// Longest interval without a successful op (s): all clients.
    pub gap_s: f64,
    /// The same for clients of nodes the fault did not target; `None` when every node
    /// was a target.
    pub gap_healthy_s: Option<f64>,
    /// Ok completions per second in the steady state before; `None` without one.
    pub pre_ok_per_s: Option<f64>,
    /// Seconds from fault start until throughput is back to ≥ 90 % of `pre_ok_per_s`.
    pub recovery_s: Option<f64>,
    /// The same for the clients of healthy nodes, against their own pre-fault rate.
    pub recovery_healthy_s: Option<f64>,
    /// Seconds from the fault's undo until throughput is back to ≥ 90 %.
    pub recovery_after_heal_s: Option<f64>,
    pub latency_steady_ms: Option<Latency>,
    pub latency_fault_ms: Option<Latency>,
    /// Ops invoked while the fault was in force.
    pub ops: Counts,
    pub answered: u64,
    /// answered / attempted over `ops`; `None` when nothing was attempted.
    pub availability: Option<f64>,
    pub series: Series,
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// Node ids (`n1`, `n2`, …) a nemesis description names as the fault's targets.
///
/// Descriptions are the nemesis's own: `n2 (leader)`, `n1 n3 (majority)`, partitions
/// `isolate-one [n2] [n1 n3]` (targets: the smallest component; none for shapes where
/// every side is cut the same, e.g. the majorities ring), packet `…, from n2` or
/// `…, all nodes`, a restart apart `[n1 n2] [n3] (…)`.
pub fn targets_of(fault: &str, description: &str, all_nodes: &[String]) -> Vec<String> {
    let is_node =
        |t: &str| t.len() > 1 && t.starts_with('n') && t[1..].bytes().all(|b| b.is_ascii_digit());
    let clean = |t: &str| t.trim_matches(|c: char| "[](),;<>".contains(c)).to_string();
    if fault == "packet" {
        if description.contains("all nodes") {
            return all_nodes.to_vec();
        }
        return description
            .rsplit("from ")
            .next()
            .map(|rest| {
                rest.split_whitespace()
                    .map(clean)
                    .filter(|t| is_node(t))
                    .collect()
            })
            .unwrap_or_default();
    }
    if description.contains('[') {
        // Components in brackets: the smallest one is cut off from the rest.
        let mut components: Vec<Vec<String>> = description
            .split('[')
            .skip(1)
            .filter_map(|c| c.split(']').next())
            .map(|c| {
                c.split_whitespace()
                    .map(clean)
                    .filter(|t| is_node(t))
                    .collect()
            })
            .filter(|c: &Vec<String>| !c.is_empty())
            .collect();
        if description.starts_with("majorities-ring") || description.starts_with("bridge") {
            return Vec::new();
        }
        components.sort_by_key(|c| c.len());
        return components.into_iter().next().unwrap_or_default();
    }
    let head = description.split('(').next().unwrap_or("");
    head.split_whitespace()
        .map(clean)
        .filter(|t| is_node(t))
        .collect()
}

/// The leader the timeline shows at `t` (the last sample at or before it).
pub fn leader_at(timeline: &LeaderTimeline, t: f64) -> Option<String> {
    timeline
        .iter()
        .take_while(|(at, _)| *at <= t)
        .last()
        .and_then(|(_, l)| l.clone())
}

/// The targets' role: stated by the nemesis in the description (`(leader)`,
/// `(follower)`, `(no leader …)`), else read from the leader timeline.
fn role_of(description: &str, targets: &[String], leader: Option<&String>) -> String {
    for role in ["leader", "follower"] {
        if description.contains(&format!("({role}")) {
            return role.into();
        }
    }
    if description.contains("(no leader") {
        return "none".into();
    }
    match leader {
        None => "none".into(),
        Some(_) if targets.is_empty() => "none".into(),
        Some(l) if targets.len() == 1 && &targets[0] == l => "leader".into(),
        Some(l) if targets.contains(l) => "mixed".into(),
        Some(_) => "follower".into(),
    }
}

/// The longest interval without an ok completion that overlaps `[from, to]`, counted
/// from the last ok completion in `[from − PRE_GAP_S, from]` (else `from`) and ending at
/// the first ok after it (or `to`). `oks` must be sorted.
pub fn longest_gap(oks: &[f64], from: f64, to: f64) -> f64 {
    let before = oks
        .iter()
        .rev()
        .find(|&&t| t <= from)
        .filter(|&&t| t >= from - PRE_GAP_S)
        .copied()
        .unwrap_or(from);
    let mut last = before;
    let mut gap: f64 = 0.0;
    for &t in oks.iter().filter(|&&t| t > from && t <= to) {
        gap = gap.max(t - last);
        last = t;
    }
    gap.max(to - last)
}

/// Ok completions per second over `[from, to)`.
fn rate(oks: &[f64], from: f64, to: f64) -> f64 {
    if to <= from {
        return 0.0;
    }
    oks.iter().filter(|&&t| t >= from && t < to).count() as f64 / (to - from)
}

/// Seconds after `from` until the ok rate over a `SMOOTH_S` window is back to
/// `RECOVERED × level`, stepping by `BUCKET_S`, within `[from, to]`; `None` if never.
pub fn recovery(oks: &[f64], level: f64, from: f64, to: f64) -> Option<f64> {
    let target = RECOVERED * level;
    let mut k = 0usize;
    loop {
        let t = from + k as f64 * BUCKET_S;
        if t + SMOOTH_S > to + 1e-9 {
            return None;
        }
        if rate(oks, t, t + SMOOTH_S) >= target {
            return Some((k as f64 * BUCKET_S * 1e6).round() / 1e6);
        }
        k += 1;
    }
}

/// The per-window figures for every window of `windows`.
///
/// `main_end_s` is the end of the main phase (clients stop after it; final reads are
/// not steady state), `nodes` every node's id, `leaders` the sampled leader timeline.
pub fn analyze(
    ops: &[OpRecord],
    windows: &[Window],
    nodes: &[String],
    leaders: &LeaderTimeline,
    main_end_s: f64,
) -> Vec<WindowStats> {
    let mut oks_all: Vec<(f64, Option<&str>)> = ops
        .iter()
        .filter(|o| o.outcome == Outcome::Ok)
        .filter_map(|o| Some((secs(o.end_ns?), o.node.as_deref())))
        .collect();
    oks_all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let all: Vec<f64> = oks_all.iter().map(|o| o.0).collect();

    let mut out = Vec::with_capacity(windows.len());
    let mut previous_end = 0.0f64;
    for (i, w) in windows.iter().enumerate() {
        let (s, e) = (w.start_s, w.end_s.max(w.start_s));
        let next = windows.get(i + 1).map_or(f64::INFINITY, |n| n.start_s);
        let horizon = (e + (e - s)).min(next).min(main_end_s.max(e)).max(e);
        let targets = targets_of(&w.fault, &w.description, nodes);
        let leader = leader_at(leaders, s);
        let role = role_of(&w.description, &targets, leader.as_ref());

        let healthy: Option<Vec<f64>> =
            (targets.len() < nodes.len() || targets.is_empty()).then(|| {
                oks_all
                    .iter()
                    .filter(|(_, n)| n.is_none_or(|n| !targets.iter().any(|t| t == n)))
                    .map(|o| o.0)
                    .collect()
            });

        let steady_from = previous_end.max(s - STEADY_S).max(0.0);
        let has_steady = s - steady_from >= MIN_STEADY_S;
        let pre = has_steady.then(|| rate(&all, steady_from, s));
        let pre_healthy = healthy
            .as_ref()
            .filter(|_| has_steady)
            .map(|h| rate(h, steady_from, s));

        let invoked_in = |from: f64, to: f64| {
            ops.iter()
                .filter(move |o| secs(o.start_ns) >= from && secs(o.start_ns) < to)
        };
        let ok_latencies = |from: f64, to: f64| {
            invoked_in(from, to)
                .filter(|o| o.outcome == Outcome::Ok)
                .filter_map(|o| o.latency_ms())
                .collect::<Vec<_>>()
        };
        let mut counts = Counts::default();
        for o in invoked_in(s, e.max(s + 1e-9)) {
            counts.attempted += 1;
            match o.outcome {
                Outcome::Ok => counts.ok += 1,
                Outcome::Fail => {
                    counts.fail += 1;
                    counts.cas_mismatch += o.cas_mismatch as u64;
                }
                Outcome::Info => counts.info += 1,
                Outcome::Open => counts.open += 1,
            }
        }

        out.push(WindowStats {
            fault: w.fault.clone(),
            description: w.description.clone(),
            start_s: s,
            end_s: e,
            horizon_s: horizon,
            targets: targets.clone(),
            target_role: role,
            leader_before: leader,
            gap_s: longest_gap(&all, s, horizon),
            gap_healthy_s: healthy.as_ref().map(|h| longest_gap(h, s, horizon)),
            pre_ok_per_s: pre,
            recovery_s: pre.and_then(|level| recovery(&all, level, s, horizon)),
            recovery_healthy_s: healthy
                .as_ref()
                .zip(pre_healthy)
                .and_then(|(h, level)| recovery(h, level, s, horizon)),
            recovery_after_heal_s: pre.and_then(|level| recovery(&all, level, e, horizon)),
            latency_steady_ms: has_steady
                .then(|| Latency::of(ok_latencies(steady_from, s)))
                .flatten(),
            latency_fault_ms: Latency::of(ok_latencies(s, e)),
            answered: counts.answered(),
            availability: (counts.attempted > 0).then(|| counts.availability()),
            ops: counts,
            series: series(ops, s, horizon),
        });
        previous_end = e;
    }
    out
}

/// The aligned per-bucket series from `s − SERIES_PRE_S` to `to`.
fn series(ops: &[OpRecord], s: f64, to: f64) -> Series {
    let from = (s - SERIES_PRE_S).max(0.0);
    let n = (((to - from) / BUCKET_S).ceil() as usize).max(1);
    let mut ok = vec![0u64; n];
    let mut max: Vec<Option<f64>> = vec![None; n];
    for o in ops.iter().filter(|o| o.outcome == Outcome::Ok) {
        let (Some(end), Some(lat)) = (o.end_ns, o.latency_ms()) else {
            continue;
        };
        let t = secs(end);
        if t < from || t >= from + n as f64 * BUCKET_S {
            continue;
        }
        let b = (((t - from) / BUCKET_S) as usize).min(n - 1);
        ok[b] += 1;
        max[b] = Some(max[b].map_or(lat, |m: f64| m.max(lat)));
    }
    Series {
        from_s: from - s,
        bucket_s: BUCKET_S,
        ok_per_s: ok.into_iter().map(|c| c as f64 / BUCKET_S).collect(),
        max_latency_ms: max,
    }
}

/// Ok completions per `bucket_s`, by outcome, over `[0, end_s]`, as rates per second.
pub fn rate_series(ops: &[OpRecord], end_s: f64, bucket_s: f64) -> Vec<(Outcome, Vec<f64>)> {
    let n = ((end_s / bucket_s).ceil() as usize).max(1);
    let mut out: Vec<(Outcome, Vec<f64>)> = Vec::new();
    for o in ops {
        let Some(end) = o.end_ns else { continue };
        let b = ((secs(end) / bucket_s) as usize).min(n - 1);
        match out.iter_mut().find(|(k, _)| *k == o.outcome) {
            Some((_, v)) => v[b] += 1.0 / bucket_s,
            None => {
                let mut v = vec![0.0; n];
                v[b] += 1.0 / bucket_s;
                out.push((o.outcome, v));
            }
        }
    }
    out.sort_by_key(|(k, _)| *k);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<String> {
        vec!["n1".into(), "n2".into(), "n3".into()]
    }

    /// A client op on `node` from `start` to `end` (seconds).
    fn op(node: &str, start: f64, end: f64, outcome: Outcome) -> OpRecord {
        OpRecord {
            f: "write".into(),
            start_ns: (start * 1e9) as u64,
            end_ns: Some((end * 1e9) as u64),
            outcome,
            node: Some(node.into()),
            cas_mismatch: false,
        }
    }

    /// Steady traffic: every node's client completes an ok op every 10 ms over
    /// `[from, to)`, except while `stalled(node, t)`, when it is refused at once.
    fn traffic(from: f64, to: f64, stalled: impl Fn(&str, f64) -> bool) -> Vec<OpRecord> {
        let mut ops = Vec::new();
        let (first, last) = ((from * 100.0).round() as u64, (to * 100.0).round() as u64);
        for k in first..last {
            let t = k as f64 / 100.0;
            for node in ["n1", "n2", "n3"] {
                let outcome = if stalled(node, t) {
                    Outcome::Fail
                } else {
                    Outcome::Ok
                };
                ops.push(op(node, t, t + 0.002, outcome));
            }
        }
        ops
    }

    fn window(fault: &str, description: &str, s: f64, e: f64) -> Window {
        Window {
            fault: fault.into(),
            description: description.into(),
            start_s: s,
            end_s: e,
            ended: String::new(),
        }
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn leader_kill_stall_is_the_gap_and_recovery() {
        // Leader n1 killed at 5 s; no node serves until 5.4 s; then n2, n3 serve and
        // n1's clients are refused until the restart at 7 s.
        let ops = traffic(0.0, 10.0, |node, t| {
            (5.0..5.4).contains(&t) || (node == "n1" && (5.0..7.0).contains(&t))
        });
        let leaders = vec![(0.0, Some("n1".to_string())), (5.4, Some("n2".to_string()))];
        let w = analyze(
            &ops,
            &[window("kill", "n1 (leader)", 5.0, 7.0)],
            &nodes(),
            &leaders,
            10.0,
        );
        let w = &w[0];
        assert_eq!(w.targets, vec!["n1"]);
        assert_eq!(w.target_role, "leader");
        assert_eq!(w.leader_before.as_deref(), Some("n1"));
        assert!(close(w.gap_s, 0.41, 0.011), "{}", w.gap_s);
        assert!(close(w.gap_healthy_s.unwrap(), 0.41, 0.011));
        assert!(close(w.pre_ok_per_s.unwrap(), 300.0, 1.0));
        // Two of three clients back: 67 % < 90 % until n1 restarts at 7 s.
        assert!(
            close(w.recovery_s.unwrap(), 2.0, 0.101),
            "{:?}",
            w.recovery_s
        );
        // Healthy clients are back at full rate once the 0.5-s window clears 5.4 s.
        let healthy = w.recovery_healthy_s.unwrap();
        assert!((0.0..=0.45).contains(&healthy), "{healthy}");
        assert_eq!(w.recovery_after_heal_s, Some(0.0));
        // Availability counts answers among the ops invoked in the window.
        assert_eq!(w.ops.attempted, 600);
        assert_eq!(w.answered, 600 - 120 - 160);
        assert!(close(w.availability.unwrap(), 320.0 / 600.0, 1e-9));
        assert_eq!(
            w.latency_fault_ms.unwrap().max,
            w.latency_steady_ms.unwrap().max
        );
    }

    #[test]
    fn a_killed_follower_stalls_only_its_own_clients() {
        let ops = traffic(0.0, 10.0, |node, t| node == "n3" && (5.0..7.0).contains(&t));
        let leaders = vec![(0.0, Some("n1".to_string()))];
        let w = &analyze(
            &ops,
            &[window("kill", "n3", 5.0, 7.0)],
            &nodes(),
            &leaders,
            10.0,
        )[0];
        assert_eq!(w.target_role, "follower");
        assert!(w.gap_s < 0.02, "{}", w.gap_s);
        assert!(w.gap_healthy_s.unwrap() < 0.02);
        assert_eq!(w.recovery_healthy_s, Some(0.0));
        assert!(w.recovery_s.is_some());
    }

    #[test]
    fn a_stall_past_the_window_end_is_counted_to_the_first_success() {
        // Paused leader: nothing succeeds from 3 s until 0.3 s after the resume at 4 s.
        let ops = traffic(0.0, 8.0, |_, t| (3.0..4.3).contains(&t));
        let w = &analyze(
            &ops,
            &[window("pause", "n2 (leader)", 3.0, 4.0)],
            &nodes(),
            &[],
            8.0,
        )[0];
        assert!(close(w.gap_s, 1.31, 0.011), "{}", w.gap_s);
        assert_eq!(w.target_role, "leader");
        assert_eq!(w.answered, 0);
        assert_eq!(w.availability, Some(0.0));
        assert!(w.latency_fault_ms.is_none());
        let after = w.recovery_after_heal_s.unwrap();
        assert!((0.0..=0.3).contains(&after), "{after}");
    }

    #[test]
    fn a_fault_at_the_very_start_has_no_baseline_but_a_gap() {
        let ops = traffic(0.0, 6.0, |_, t| t < 0.7);
        let w = &analyze(&ops, &[window("kill", "n1", 0.0, 2.0)], &nodes(), &[], 6.0)[0];
        assert!(close(w.gap_s, 0.702, 0.011), "{}", w.gap_s);
        assert_eq!(w.pre_ok_per_s, None);
        assert_eq!(w.recovery_s, None);
        assert_eq!(w.latency_steady_ms, None);
        assert_eq!(w.target_role, "none");
    }

    #[test]
    fn a_fault_at_the_very_end_is_measured_to_the_end_of_the_main_phase() {
        // The fault is still in force when the main phase ends at 10 s.
        let ops = traffic(0.0, 10.0, |_, t| t >= 9.5);
        let w = &analyze(
            &ops,
            &[window("kill", "n1", 9.5, 10.0)],
            &nodes(),
            &[],
            10.0,
        )[0];
        assert_eq!(w.horizon_s, 10.0);
        assert!(close(w.gap_s, 0.51, 0.011), "{}", w.gap_s);
        assert_eq!(w.recovery_s, None);
        assert_eq!(w.recovery_after_heal_s, None);
    }

    #[test]
    fn cas_mismatches_are_answers() {
        let mut ops = traffic(0.0, 4.0, |_, _| false);
        for o in ops
            .iter_mut()
            .filter(|o| o.start_ns >= 2_000_000_000)
            .step_by(2)
        {
            o.outcome = Outcome::Fail;
            o.cas_mismatch = true;
        }
        let w = &analyze(
            &ops,
            &[window("packet", "delay 60±50 ms, all nodes", 2.0, 3.0)],
            &nodes(),
            &[],
            4.0,
        )[0];
        assert_eq!(w.targets, nodes());
        assert_eq!(w.gap_healthy_s, None);
        assert_eq!(w.ops.cas_mismatch, 150);
        assert_eq!(w.availability, Some(1.0));
    }

    #[test]
    fn series_is_aligned_at_fault_start() {
        let ops = traffic(0.0, 10.0, |_, t| (5.0..5.4).contains(&t));
        let w = &analyze(
            &ops,
            &[window("kill", "n1 (leader)", 5.0, 7.0)],
            &nodes(),
            &[],
            10.0,
        )[0];
        assert!(close(w.series.from_s, -1.0, 1e-9));
        // Bucket 10 is [5.0, 5.1): nothing succeeded; bucket 9 is full (300 ops/s).
        assert_eq!(w.series.ok_per_s[10], 0.0);
        assert!(close(w.series.ok_per_s[9], 300.0, 1e-6));
        assert_eq!(w.series.max_latency_ms[10], None);
        assert!(close(w.series.ok_per_s[15], 300.0, 1e-6));
    }

    #[test]
    fn targets_from_descriptions() {
        let n = nodes();
        assert_eq!(targets_of("kill", "n2 (leader)", &n), vec!["n2"]);
        assert_eq!(
            targets_of("kill", "n1 n3 (majority, to restart apart)", &n),
            vec!["n1", "n3"]
        );
        assert_eq!(
            targets_of("partition", "isolate-one [n2] [n1 n3]", &n),
            vec!["n2"]
        );
        assert_eq!(
            targets_of("partition", "halves [n1 n3] [n2]", &n),
            vec!["n2"]
        );
        assert!(targets_of(
            "partition",
            "majorities-ring n1 hears [n3 n1 n2]; n2 hears [n1 n2 n3]",
            &n
        )
        .is_empty());
        assert_eq!(
            targets_of(
                "packet",
                "delay 100±20 ms, loss 0.0%, dup 0.0%, from n3 (leader)",
                &n
            ),
            vec!["n3"]
        );
        assert_eq!(targets_of("packet", "delay 5±5 ms, all nodes", &n), n);
    }

    #[test]
    fn longest_gap_counts_from_the_last_success_before() {
        let oks = [0.9, 0.95, 1.5, 1.6, 3.0];
        assert!(close(longest_gap(&oks, 1.0, 2.0), 0.55, 1e-9));
        assert!(close(longest_gap(&oks, 1.0, 4.0), 1.4, 1e-9));
        assert!(close(longest_gap(&[], 1.0, 2.0), 1.0, 1e-9));
    }

    #[test]
    fn latency_quantiles_are_nearest_rank() {
        let l = Latency::of((1..=100).map(f64::from).collect()).unwrap();
        assert_eq!((l.p50, l.p99, l.max, l.count), (50.0, 99.0, 100.0, 100));
        assert!(Latency::of(vec![]).is_none());
    }
}
