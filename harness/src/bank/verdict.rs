//! The bank run's checks, after the cluster is healed and every node is back:
//!
//! 1. drain — wait (bounded) until no node has an unacknowledged frame on any channel, so
//!    every transfer sent has been credited;
//! 2. final conservation — the balances then sum to the initial total, none negative;
//! 3. the transfer log — the union of every node's `GET /bank/transfers` — attached to
//!    each snapshot, so the checker verifies recorded in-flight amounts against what was
//!    really sent;
//! 4. the snapshot checker on every snapshot, and the verdict: invalid if a completed
//!    snapshot is inconsistent or money is not conserved; valid if every completed
//!    snapshot is consistent and money is conserved; unknown when nothing completed or
//!    the final state could not be judged. Incomplete snapshots are reported, never
//!    violations: a crashed node means no termination, not a wrong answer.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use checker::snapshot::{check_snapshots, Snapshot, SnapshotsReport, Transfer};
use checker::Verdict;
use serde::Serialize;
use workloads::bank::Conservation;

use super::snapshots::Collected;
use crate::check::CheckOutcome;
use crate::client::HttpClient;
use crate::report::html::escape;

/// Every transfer sent, per channel `(from, to)`, in seq order.
pub type TransferLog = BTreeMap<(String, String), Vec<Transfer>>;

/// What `settle` found: the final state, and the transfer log or why there is none.
pub type Settled = (FinalState, Result<TransferLog, String>);

/// The cluster after the drain.
#[derive(Debug, Clone, Serialize)]
pub struct FinalState {
    /// Whether every node answered with nothing unacknowledged, twice with the same
    /// balances, within the bound.
    pub drained: bool,
    pub waited_ms: u64,
    /// Last balance each node reported (absent: never answered).
    pub balances: BTreeMap<String, i64>,
    /// Judged only when drained: with frames in flight the sum is not meant to match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conservation: Option<Conservation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl FinalState {
    pub fn conserved(&self) -> Option<bool> {
        self.conservation.as_ref().map(Conservation::holds)
    }

    pub fn describe(&self) -> String {
        match (&self.conservation, &self.note) {
            (Some(c), _) => format!(
                "{} (after a {:.1}-s drain)",
                c.describe(),
                self.waited_ms as f64 / 1000.0
            ),
            (None, Some(note)) => format!("final conservation not judged: {note}"),
            (None, None) => "final conservation not judged".into(),
        }
    }
}

/// Polls every node's `/bank/status` until nothing is unacknowledged and the balances
/// are the same on two polls in a row, or `within` passes; then judges conservation.
pub async fn drain(
    client: &HttpClient,
    node_ids: &[String],
    expected_total: i64,
    within: Duration,
) -> FinalState {
    let start = Instant::now();
    let mut previous: Option<BTreeMap<String, i64>> = None;
    let mut balances = BTreeMap::new();
    let mut why = String::from("no poll finished");
    loop {
        let mut all_quiet = true;
        let mut now = BTreeMap::new();
        for (i, id) in node_ids.iter().enumerate() {
            match client.bank_status(i, Duration::from_millis(800)).await {
                Ok(s) => {
                    if s.unacked_total() > 0 {
                        all_quiet = false;
                        why = format!(
                            "{id} still had {} unacknowledged frame(s): {:?}",
                            s.unacked_total(),
                            s.unacked
                        );
                    }
                    now.insert(id.clone(), s.balance);
                }
                Err(e) => {
                    all_quiet = false;
                    why = format!("{id} did not answer: {e}");
                }
            }
        }
        for (id, b) in &now {
            balances.insert(id.clone(), *b);
        }
        if all_quiet && previous.as_ref() == Some(&now) {
            let list: Vec<(String, i64)> = now.into_iter().collect();
            return FinalState {
                drained: true,
                waited_ms: start.elapsed().as_millis() as u64,
                balances,
                conservation: Some(Conservation::judge(expected_total, &list)),
                note: None,
            };
        }
        previous = all_quiet.then_some(now);
        if start.elapsed() >= within {
            return FinalState {
                drained: false,
                waited_ms: start.elapsed().as_millis() as u64,
                balances,
                conservation: None,
                note: Some(format!(
                    "the cluster did not drain within {:.0} s: {why}",
                    within.as_secs_f64()
                )),
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The transfer log, per channel `(from, to)`, in seq order: the union of every node's
/// `GET /bank/transfers`. `Err` when some node's log could not be had — a partial log
/// would make the checker report real sends as missing from it.
pub async fn transfer_log(client: &HttpClient, node_ids: &[String]) -> Result<TransferLog, String> {
    let mut all = Vec::new();
    for (i, id) in node_ids.iter().enumerate() {
        let mut last = String::new();
        let mut got = None;
        for _ in 0..3 {
            match client.bank_transfers(i, Duration::from_secs(5)).await {
                Ok(log) => {
                    got = Some(log);
                    break;
                }
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        match got {
            Some(log) => all.extend(log),
            None => return Err(format!("no transfer log from {id}: {last}")),
        }
    }
    union(all)
}

/// Groups transfers per channel, dropping exact repeats; two different transfers with the
/// same channel and seq are an error naming them.
fn union(all: Vec<Transfer>) -> Result<TransferLog, String> {
    let mut by_id: BTreeMap<(String, String, u64), Transfer> = BTreeMap::new();
    for t in all {
        let key = (t.from.clone(), t.to.clone(), t.seq);
        match by_id.get(&key) {
            Some(seen) if *seen != t => {
                return Err(format!(
                    "the transfer logs disagree on {}→{} seq {}: amount {} vs {}",
                    t.from, t.to, t.seq, seen.amount, t.amount
                ))
            }
            Some(_) => {}
            None => {
                by_id.insert(key, t);
            }
        }
    }
    let mut out = TransferLog::new();
    for ((from, to, _), t) in by_id {
        out.entry((from, to)).or_default().push(t);
    }
    Ok(out)
}

/// Attaches to `s` the part of the log the checker can look at. The checker reads the log
/// only on channels whose two ends recorded, and there only at the seqs it judges — from
/// the first seq not delivered before the receiver's cut (or the lowest recorded in
/// flight) up to the last sent before the sender's cut (or the highest recorded in
/// flight) — plus the channel's highest logged seq, to know whether the log reaches
/// `sent`. So its judgement is the same as with the whole union, while each snapshot line
/// holds a handful of transfers instead of repeating the run's log.
pub fn attach(s: &mut Snapshot, log: &TransferLog) {
    let mut part = Vec::new();
    for ch in s.channels() {
        let (Some(sender), Some(receiver)) = (s.checkpoint(&ch.from), s.checkpoint(&ch.to)) else {
            continue;
        };
        let Some(msgs) = log.get(&(ch.from.clone(), ch.to.clone())) else {
            continue;
        };
        let recorded = receiver.in_flight_from(&ch.from);
        let lo = recorded
            .iter()
            .map(|m| m.seq)
            .chain([receiver.received_from(&ch.from) + 1])
            .min()
            .unwrap_or(1);
        let hi = recorded
            .iter()
            .map(|m| m.seq)
            .chain([sender.sent_to(&ch.to)])
            .max()
            .unwrap_or(0);
        let last = msgs.iter().map(|m| m.seq).max().unwrap_or(0);
        part.extend(
            msgs.iter()
                .filter(|m| (lo..=hi).contains(&m.seq) || m.seq == last)
                .cloned(),
        );
    }
    s.transfers = Some(part);
}

/// The bank run's judgement.
#[derive(Debug)]
pub struct BankJudgement {
    pub verdict: Verdict,
    pub report: SnapshotsReport,
    /// The snapshots as judged (with their transfer logs), for `snapshots.jsonl`.
    pub judged: Vec<(Snapshot, Option<String>)>,
    /// Snapshots the checker could not read: `(id, why)`.
    pub malformed: Vec<(u64, String)>,
    pub refused: usize,
    pub log_note: Option<String>,
    pub final_state: FinalState,
}

/// Checks every snapshot (with the log, when there is one) and the final state.
pub fn judge(
    collected: &Collected,
    log: Result<&TransferLog, String>,
    final_state: FinalState,
) -> BankJudgement {
    let (log, mut log_note) = match log {
        Ok(log) => (Some(log), None),
        Err(e) => (
            None,
            Some(format!("snapshots checked without the transfer log: {e}")),
        ),
    };
    let mut malformed = Vec::new();
    let mut judged = Vec::new();
    for taken in &collected.taken {
        if let Err(e) = taken.snapshot.validate() {
            malformed.push((taken.snapshot.id, e));
            continue;
        }
        let mut s = taken.snapshot.clone();
        if let Some(log) = log {
            attach(&mut s, log);
            if let Err(e) = s.validate() {
                // The log itself is unusable for this snapshot; judge it without.
                log_note = Some(format!("transfer log not used for snapshot {}: {e}", s.id));
                s.transfers = None;
            }
        }
        judged.push((s, taken.error.clone()));
    }
    let snapshots: Vec<Snapshot> = judged.iter().map(|(s, _)| s.clone()).collect();
    let report = check_snapshots(&snapshots).unwrap_or_else(|e| {
        // Unreachable after the validation above; stay honest if it ever is not.
        malformed.push((0, e));
        SnapshotsReport::new(Vec::new())
    });
    let s = &report.summary;
    let verdict = if s.inconsistent > 0 || final_state.conserved() == Some(false) {
        Verdict::Invalid
    } else if s.completed == 0 || final_state.conserved().is_none() || !malformed.is_empty() {
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    BankJudgement {
        verdict,
        report,
        judged,
        malformed,
        refused: collected.refused.len(),
        log_note,
        final_state,
    }
}

impl BankJudgement {
    /// `results.json`'s `snapshots` object: counts, latency quantiles and every violation.
    pub fn snapshots_json(&self) -> serde_json::Value {
        let s = &self.report.summary;
        let latency = s.latency.as_ref().map(|l| {
            serde_json::json!({"count": l.count, "p50": l.p50_ms, "p90": l.p90_ms, "p99": l.p99_ms, "max": l.max_ms})
        });
        let mut violations = Vec::new();
        for r in &self.report.snapshots {
            for v in &r.violations {
                let mut entry = serde_json::to_value(v).unwrap_or_default();
                if let Some(map) = entry.as_object_mut() {
                    map.insert("outcome".into(), r.outcome.as_str().into());
                    map.insert("rule".into(), v.rule().as_str().into());
                    map.insert("text".into(), v.to_string().into());
                }
                violations.push(entry);
            }
        }
        let total = violations.len();
        violations.truncate(1000);
        serde_json::json!({
            "started": s.started,
            "completed": s.completed,
            "consistent": s.consistent,
            "inconsistent": s.inconsistent,
            "incomplete": s.incomplete,
            "refused": self.refused,
            "malformed": self.malformed.iter().map(|(id, e)| serde_json::json!({"id": id, "error": e})).collect::<Vec<_>>(),
            "latency_ms": latency,
            "violations": violations,
            "violations_total": total,
            "transfer_log": self.log_note.clone().unwrap_or_else(|| "attached".into()),
            "file": "snapshots.jsonl",
        })
    }

    /// The text for the terminal: the checker's, then the final state and any notes.
    pub fn text(&self) -> String {
        let mut out = self.report.to_text();
        if self.refused > 0 {
            out.push_str(&format!(
                "{} snapshot request(s) refused: one was still running on that initiator\n",
                self.refused
            ));
        }
        for (id, e) in &self.malformed {
            out.push_str(&format!("snapshot {id}: unreadable: {e}\n"));
        }
        if let Some(note) = &self.log_note {
            out.push_str(&format!("{note}\n"));
        }
        out.push_str(&self.final_state.describe());
        out.push('\n');
        out
    }

    /// The report's bank section: the final state, then the checker's snapshot table.
    pub fn html_fragment(&self) -> String {
        let colour = match self.final_state.conserved() {
            Some(true) => "#2e7d32",
            Some(false) => "#c62828",
            None => "#ef6c00",
        };
        let mut out = format!(
            "<h2>Money</h2><p style=\"color:{colour}\">{}</p>",
            escape(&self.final_state.describe())
        );
        if !self.final_state.balances.is_empty() {
            out.push_str("<table><tr><th>node</th><th>final balance</th></tr>");
            for (node, b) in &self.final_state.balances {
                out.push_str(&format!("<tr><td>{}</td><td>{b}</td></tr>", escape(node)));
            }
            out.push_str("</table>");
        }
        if let Some(note) = &self.log_note {
            out.push_str(&format!("<p>{}</p>", escape(note)));
        }
        for (id, e) in &self.malformed {
            out.push_str(&format!("<p>snapshot {id}: unreadable: {}</p>", escape(e)));
        }
        out.push_str(&self.report.to_html_fragment());
        out
    }

    /// Rewrites `snapshots.jsonl` with each judged snapshot's transfer log attached, so
    /// `faultline check` on the file gives the same judgement.
    pub fn rewrite_snapshots(&self, path: &std::path::Path) -> Result<(), String> {
        let tmp = path.with_extension("jsonl.tmp");
        let text: String = self
            .judged
            .iter()
            .map(|(s, e)| super::snapshots::snapshot_line(s, e.as_deref()))
            .collect();
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| format!("rewriting {}: {e}", path.display()))
    }

    pub fn outcome(&self) -> CheckOutcome {
        let report = serde_json::json!({
            "snapshots": self.report,
            "final": self.final_state,
        });
        CheckOutcome {
            checker: "bank",
            verdict: self.verdict,
            report,
            text: self.text(),
            html: None,
            fragment: Some(self.html_fragment()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use checker::snapshot::{check_snapshot, Algorithm, Checkpoint, Outcome};

    fn t(from: &str, to: &str, seq: u64, amount: i64) -> Transfer {
        Transfer {
            from: from.into(),
            to: to.into(),
            seq,
            amount,
            clock: [(from.to_string(), seq)].into_iter().collect(),
        }
    }

    fn cp(node: &str, balance: i64, sent: &[(&str, u64)], received: &[(&str, u64)]) -> Checkpoint {
        Checkpoint {
            node: node.into(),
            balance,
            clock: BTreeMap::new(),
            sent: sent.iter().map(|(n, s)| (n.to_string(), *s)).collect(),
            received: received.iter().map(|(n, s)| (n.to_string(), *s)).collect(),
            channels: BTreeMap::new(),
        }
    }

    /// n1 sent 3 transfers to n2 (5, 7, 1) before its cut; n2 delivered 1 before its cut,
    /// and recorded seq 2 in flight but not seq 3: the log names the lost amount.
    fn snapshot() -> Snapshot {
        let mut n1 = cp("n1", 87, &[("n2", 3)], &[]);
        n1.clock = [("n1".to_string(), 3)].into_iter().collect();
        let mut n2 = cp("n2", 105, &[], &[("n1", 1)]);
        n2.clock = [("n1".to_string(), 1), ("n2".to_string(), 1)]
            .into_iter()
            .collect();
        n2.channels.insert("n1".into(), vec![t("n1", "n2", 2, 7)]);
        Snapshot {
            id: 4,
            initiator: "n1".into(),
            algorithm: Algorithm::ChandyLamport,
            initial_total: 200,
            nodes: vec!["n1".into(), "n2".into()],
            checkpoints: vec![n1, n2],
            missing: vec![],
            open_channels: vec![],
            started_ns: Some(1_000_000),
            finished_ns: Some(6_000_000),
            transfers: None,
        }
    }

    fn log() -> TransferLog {
        union(vec![
            t("n1", "n2", 1, 5),
            t("n1", "n2", 2, 7),
            t("n1", "n2", 3, 1),
            t("n1", "n2", 4, 9),
            t("n2", "n1", 1, 2),
        ])
        .unwrap()
    }

    #[test]
    fn the_attached_part_of_the_log_judges_like_the_whole_log() {
        let mut part = snapshot();
        attach(&mut part, &log());
        let seqs: Vec<u64> = part
            .transfers
            .as_ref()
            .unwrap()
            .iter()
            .filter(|m| m.from == "n1")
            .map(|m| m.seq)
            .collect();
        assert_eq!(seqs, vec![2, 3, 4], "only what the checker can look at");
        let mut whole = snapshot();
        whole.transfers = Some(log().into_values().flatten().collect());
        let (a, b) = (
            check_snapshot(&part).unwrap(),
            check_snapshot(&whole).unwrap(),
        );
        assert_eq!(a.violations, b.violations);
        assert_eq!(a.outcome, Outcome::Inconsistent);
        assert!(a.violations.iter().any(|v| matches!(v,
            checker::snapshot::Violation::InFlightMissing { seqs, amount: Some(1), .. } if *seqs == vec![3])));
    }

    /// A log with a hole at the sender's last seq: the highest logged seq still decides
    /// whether the log reaches `sent`, as with the whole log.
    #[test]
    fn a_hole_in_the_log_is_judged_as_with_the_whole_log() {
        let holed = union(vec![
            t("n1", "n2", 1, 5),
            t("n1", "n2", 2, 7),
            t("n1", "n2", 4, 9),
            t("n1", "n2", 5, 9),
        ])
        .unwrap();
        let mut part = snapshot();
        attach(&mut part, &holed);
        let mut whole = snapshot();
        whole.transfers = Some(holed.into_values().flatten().collect());
        assert_eq!(
            check_snapshot(&part).unwrap().violations,
            check_snapshot(&whole).unwrap().violations
        );
    }

    #[test]
    fn union_drops_repeats_and_refuses_disagreement() {
        let merged = union(vec![t("n1", "n2", 1, 5), t("n1", "n2", 1, 5)]).unwrap();
        assert_eq!(merged.values().map(Vec::len).sum::<usize>(), 1);
        let e = union(vec![t("n1", "n2", 1, 5), t("n1", "n2", 1, 6)]).unwrap_err();
        assert!(e.contains("n1→n2 seq 1"), "{e}");
    }

    fn drained(total: i64) -> FinalState {
        let balances: Vec<(String, i64)> = vec![("n1".into(), total - 100), ("n2".into(), 100)];
        FinalState {
            drained: true,
            waited_ms: 10,
            balances: balances.iter().cloned().collect(),
            conservation: Some(Conservation::judge(200, &balances)),
            note: None,
        }
    }

    fn consistent() -> Snapshot {
        let mut s = snapshot();
        s.checkpoints[1]
            .channels
            .insert("n1".into(), vec![t("n1", "n2", 2, 7), t("n1", "n2", 3, 1)]);
        s.checkpoints[0].balance = 87;
        s.checkpoints[1].balance = 105;
        s
    }

    fn collected(snaps: Vec<Snapshot>) -> Collected {
        Collected {
            taken: snaps
                .into_iter()
                .map(|snapshot| super::super::snapshots::Taken {
                    snapshot,
                    error: None,
                })
                .collect(),
            ..Collected::default()
        }
    }

    #[test]
    fn verdicts() {
        let l = log();
        // Consistent snapshot, money conserved: valid.
        let j = judge(&collected(vec![consistent()]), Ok(&l), drained(200));
        assert_eq!(j.verdict, Verdict::Valid, "{}", j.text());
        // An inconsistent snapshot: invalid.
        let j = judge(
            &collected(vec![consistent(), snapshot()]),
            Ok(&l),
            drained(200),
        );
        assert_eq!(j.verdict, Verdict::Invalid);
        assert_eq!(j.report.summary.inconsistent, 1);
        // Money lost at the end: invalid, whatever the snapshots say.
        let j = judge(&collected(vec![consistent()]), Ok(&l), drained(190));
        assert_eq!(j.verdict, Verdict::Invalid);
        assert!(j.text().contains("difference -10"), "{}", j.text());
        // Only incomplete snapshots: unknown.
        let mut lost = consistent();
        lost.checkpoints.pop();
        lost.missing = vec!["n2".into()];
        let j = judge(&collected(vec![lost.clone()]), Ok(&l), drained(200));
        assert_eq!(j.verdict, Verdict::Unknown);
        // ... but next to a consistent one, incomplete is no violation.
        let j = judge(&collected(vec![lost, consistent()]), Ok(&l), drained(200));
        assert_eq!(j.verdict, Verdict::Valid);
        assert_eq!(
            (j.report.summary.started, j.report.summary.incomplete),
            (2, 1)
        );
        // Not drained: unknown, with the reason.
        let mut not = drained(200);
        not.conservation = None;
        not.note = Some("n2 did not answer".into());
        let j = judge(&collected(vec![consistent()]), Ok(&l), not);
        assert_eq!(j.verdict, Verdict::Unknown);
        assert!(j.text().contains("n2 did not answer"));
        // Without the log the snapshot is still judged, and the note says so.
        let j = judge(
            &collected(vec![consistent()]),
            Err("n2 down".into()),
            drained(200),
        );
        assert_eq!(j.verdict, Verdict::Valid);
        assert!(j.snapshots_json()["transfer_log"]
            .as_str()
            .unwrap()
            .contains("n2 down"));
    }

    #[test]
    fn results_counts_add_up_and_name_violations() {
        let l = log();
        let j = judge(
            &collected(vec![consistent(), snapshot()]),
            Ok(&l),
            drained(200),
        );
        let v = j.snapshots_json();
        assert_eq!(v["started"], 2);
        assert_eq!(v["completed"], 2);
        assert_eq!(v["consistent"], 1);
        assert_eq!(v["inconsistent"], 1);
        assert!(v["latency_ms"]["p50"].as_f64().unwrap() > 4.9);
        let first = &v["violations"][0];
        assert_eq!(first["snapshot"], 4);
        assert!(first["text"].as_str().unwrap().contains("n1→n2"), "{first}");
        assert!(j.html_fragment().contains("faultline-snapshots"));
    }
}
