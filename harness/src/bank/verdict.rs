//! The bank run's checks, after the cluster is healed and every node is back:
//!
//! 1. drain — wait (bounded) until no node has an unacknowledged frame on any channel, so
//!    every transfer sent has been credited;
//! 2. final conservation — the balances then sum to the initial total, none negative;
//! 3. the transfer log — the union of every node's `GET /bank/transfers` — attached to
//!    each snapshot, so the checker verifies recorded in-flight amounts against what was
//!    really sent;
//! 4. the snapshot checker on every snapshot, and the verdict: invalid if a snapshot is
//!    inconsistent, money is not conserved, or a node answered with a
//!    defective snapshot (one that does not parse or disagrees with the run about its id,
//!    initiator, nodes or initial total — not judged by the checker, whose judgement of
//!    it would rest on what it wrongly says); valid if every completed snapshot is
//!    consistent and money is conserved; unknown when nothing completed or the final
//!    state could not be judged. A snapshot that only failed to terminate is incomplete,
//!    not a violation (a crashed node means no termination, not a wrong answer); one
//!    whose recorded part breaks a rule is inconsistent even if it did not terminate.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use checker::snapshot::{check_snapshots, Snapshot, SnapshotsReport, Transfer};
use checker::Verdict;
use serde::Serialize;
use workloads::bank::Conservation;

use super::snapshots::{Collected, Problem};
use crate::checkers::CheckOutcome;
use crate::client::HttpClient;
use crate::report::html::escape;
use crate::store::StoreError;

/// Every transfer sent, per channel `(from, to)`, in seq order.
pub type TransferLog = BTreeMap<(String, String), Vec<Transfer>>;

/// What `settle` found: the final state, and the transfer log or why there is none.
pub type Settled = (FinalState, Result<TransferLog, LogError>);

/// Why there is no transfer log to judge snapshots with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// A node's `GET /bank/transfers` failed every try.
    #[error("no transfer log from {node}: {why}")]
    Unreachable { node: String, why: String },
    /// Two nodes logged different transfers under one channel and seq.
    #[error("the transfer logs disagree on {from}→{to} seq {seq}: amount {amount} vs {other}")]
    Disagree {
        from: String,
        to: String,
        seq: u64,
        amount: i64,
        other: i64,
    },
    /// The settle phase that fetches it did not run.
    #[error("{0}")]
    NotFetched(&'static str),
}

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
pub async fn transfer_log(
    client: &HttpClient,
    node_ids: &[String],
) -> Result<TransferLog, LogError> {
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
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        match got {
            Some(log) => all.extend(log),
            None => {
                return Err(LogError::Unreachable {
                    node: id.clone(),
                    why: last,
                })
            }
        }
    }
    union(all)
}

/// Groups transfers per channel, dropping exact repeats; two different transfers with the
/// same channel and seq are an error naming them.
fn union(all: Vec<Transfer>) -> Result<TransferLog, LogError> {
    let mut by_id: BTreeMap<(String, String, u64), Transfer> = BTreeMap::new();
    for t in all {
        let key = (t.from.clone(), t.to.clone(), t.seq);
        match by_id.get(&key) {
            Some(seen) if *seen != t => {
                return Err(LogError::Disagree {
                    from: t.from.clone(),
                    to: t.to.clone(),
                    seq: t.seq,
                    amount: seen.amount,
                    other: t.amount,
                })
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
    /// Snapshots a node answered wrongly, not judged by the checker.
    pub defective: Vec<Defective>,
    /// Why the checker gave no report (it did not take the snapshots it was given).
    pub check_error: Option<String>,
    pub refused: usize,
    pub log_note: Option<String>,
    pub final_state: FinalState,
}

/// A snapshot the initiator answered with that does not parse or disagrees with the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Defective {
    /// The id the harness asked for and the node it asked.
    pub id: u64,
    pub initiator: String,
    pub reason: String,
}

impl std::fmt::Display for Defective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "snapshot {} from {} is defective: {}",
            self.id, self.initiator, self.reason
        )
    }
}

/// Checks every snapshot (with the log, when there is one) and the final state.
pub fn judge(
    collected: &Collected,
    log: Result<&TransferLog, LogError>,
    final_state: FinalState,
) -> BankJudgement {
    let (log, mut log_note) = match log {
        Ok(log) => (Some(log), None),
        Err(e) => (
            None,
            Some(format!("snapshots checked without the transfer log: {e}")),
        ),
    };
    let mut defective = Vec::new();
    let mut judged = Vec::new();
    for taken in &collected.taken {
        let reason = match &taken.problem {
            Some(Problem::Defect(why)) => Some(why.clone()),
            // The snapshot task validates each answer; this is for a `Collected` that
            // did not come from it.
            _ => taken
                .snapshot
                .validate()
                .err()
                .map(|e| format!("malformed: {e}")),
        };
        if let Some(reason) = reason {
            defective.push(Defective {
                id: taken.id,
                initiator: taken.initiator.clone(),
                reason,
            });
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
        judged.push((s, taken.problem.as_ref().map(Problem::text)));
    }
    let snapshots: Vec<Snapshot> = judged.iter().map(|(s, _)| s.clone()).collect();
    let mut check_error = None;
    let report = check_snapshots(&snapshots).unwrap_or_else(|e| {
        // Unreachable after the validation above; stay honest if it ever is not.
        check_error = Some(format!("the snapshot checker refused the snapshots: {e}"));
        SnapshotsReport::new(Vec::new())
    });
    let s = &report.summary;
    let verdict =
        if s.inconsistent > 0 || final_state.conserved() == Some(false) || !defective.is_empty() {
            Verdict::Invalid
        } else if s.completed == 0 || final_state.conserved().is_none() || check_error.is_some() {
            Verdict::Unknown
        } else {
            Verdict::Valid
        };
    BankJudgement {
        verdict,
        report,
        judged,
        defective,
        check_error,
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
            "defective": self.defective.iter().map(|d| serde_json::json!({
                "id": d.id, "initiator": d.initiator, "reason": d.reason, "text": d.to_string(),
            })).collect::<Vec<_>>(),
            "check_error": self.check_error,
            "latency_ms": latency,
            "violations": violations,
            "violations_total": total,
            "transfer_log": self.log_note.clone().unwrap_or_else(|| "attached".into()),
            "file": "snapshots.jsonl",
        })
    }

    /// Why the verdict is not valid when the checker's report alone would not say: the
    /// first defective snapshot (and how many there were), or the checker's error.
    pub fn reason(&self) -> Option<String> {
        if let Some(first) = self.defective.first() {
            return Some(match self.defective.len() {
                1 => first.to_string(),
                n => format!("{n} defective snapshots; the first: {first}"),
            });
        }
        self.check_error.clone()
    }

    /// The text for the terminal: the reason, the checker's text, then the final state
    /// and any notes.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if let Some(reason) = self.reason() {
            out.push_str(&format!("{}: {reason}\n", self.verdict.as_str()));
        }
        out.push_str(&self.report.to_text());
        for d in self.defective.iter().skip(1) {
            out.push_str(&format!("{d}\n"));
        }
        if self.refused > 0 {
            out.push_str(&format!(
                "{} snapshot request(s) refused: one was still running on that initiator\n",
                self.refused
            ));
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
        for d in &self.defective {
            out.push_str(&format!(
                "<p style=\"color:#c62828\">{}</p>",
                escape(&d.to_string())
            ));
        }
        if let Some(e) = &self.check_error {
            out.push_str(&format!("<p>{}</p>", escape(e)));
        }
        out.push_str(&self.report.to_html_fragment());
        out
    }

    /// Rewrites `snapshots.jsonl` with each judged snapshot's transfer log attached, so
    /// `faultline check` on the file gives the same judgement of them. Defective snapshots
    /// are left out: only the run knows which nodes and money it started with, so the
    /// checker alone would judge them by what they wrongly say. They are listed, with the
    /// reason, in `results.json`'s `snapshots.defective`.
    pub fn rewrite_snapshots(&self, path: &std::path::Path) -> Result<(), StoreError> {
        let tmp = path.with_extension("jsonl.tmp");
        let text: String = self
            .judged
            .iter()
            .map(|(s, e)| super::snapshots::snapshot_line(s, e.as_deref()))
            .collect();
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| StoreError::new("rewriting", path, e))
    }

    pub fn outcome(&self) -> CheckOutcome {
        let report = serde_json::json!({
            "reason": self.reason(),
            "snapshots": self.report,
            "defective": self.defective,
            "final": self.final_state,
        });
        let mut outcome = CheckOutcome::new("bank", self.verdict, report, self.text());
        outcome.fragment = Some(self.html_fragment());
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::super::snapshots::{disagreement, Expected, Taken};
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
        assert!(e.to_string().contains("n1→n2 seq 1"), "{e}");
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
                .map(|snapshot| Taken {
                    id: snapshot.id,
                    initiator: snapshot.initiator.clone(),
                    snapshot,
                    problem: None,
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
            Err(LogError::Unreachable {
                node: "n2".into(),
                why: "down".into(),
            }),
            drained(200),
        );
        assert_eq!(j.verdict, Verdict::Valid);
        assert!(j.snapshots_json()["transfer_log"]
            .as_str()
            .unwrap()
            .contains("no transfer log from n2: down"));
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

    fn run_nodes() -> Vec<String> {
        vec!["n1".into(), "n2".into()]
    }

    /// What the snapshot task concludes about `s`, asked as snapshot 4 of n1 in a
    /// two-node run that started with 200.
    fn taken(s: Snapshot) -> Taken {
        let nodes = run_nodes();
        let expected = Expected {
            id: 4,
            initiator: "n1",
            nodes: &nodes,
            initial_total: 200,
        };
        let problem = disagreement(&s, &expected).map(Problem::Defect);
        Taken {
            id: 4,
            initiator: "n1".into(),
            snapshot: s,
            problem,
        }
    }

    fn judged(taken: Vec<Taken>) -> BankJudgement {
        let collected = Collected {
            taken,
            ..Collected::default()
        };
        judge(&collected, Ok(&log()), drained(200))
    }

    #[test]
    fn a_snapshot_that_agrees_with_the_run_is_no_defect() {
        let t = taken(consistent());
        assert_eq!(t.problem, None);
        let j = judged(vec![t]);
        assert_eq!(j.verdict, Verdict::Valid, "{}", j.text());
        assert_eq!(j.reason(), None);
        // Order of `nodes` carries no meaning.
        let mut s = consistent();
        s.nodes.reverse();
        assert_eq!(taken(s).problem, None);
    }

    /// n2 believes it is alone with n1 in a three-node run: its snapshot's two nodes all
    /// recorded, so the checker alone would call the partial mesh complete and consistent.
    #[test]
    fn a_partial_mesh_is_a_defect_not_a_complete_snapshot() {
        let nodes: Vec<String> = vec!["n1".into(), "n2".into(), "n3".into()];
        let s = consistent();
        assert_eq!(check_snapshot(&s).unwrap().outcome, Outcome::Consistent);
        let expected = Expected {
            id: 4,
            initiator: "n1",
            nodes: &nodes,
            initial_total: 200,
        };
        let why = disagreement(&s, &expected).unwrap();
        assert_eq!(why, "`nodes` lacks n3");
        let j = judged(vec![Taken {
            id: 4,
            initiator: "n1".into(),
            snapshot: s,
            problem: Some(Problem::Defect(why)),
        }]);
        assert_eq!(j.verdict, Verdict::Invalid);
        assert_eq!(
            j.reason().unwrap(),
            "snapshot 4 from n1 is defective: `nodes` lacks n3"
        );
        // Not judged by the checker, nor counted as completed or consistent.
        assert_eq!(
            (j.report.summary.started, j.report.summary.consistent),
            (0, 0)
        );
        assert!(j.judged.is_empty());
    }

    #[test]
    fn each_disagreement_with_the_run_is_named() {
        type Break = fn(&mut Snapshot);
        let cases: Vec<(Break, &str)> = vec![
            (|s| s.id = 5, "asked for snapshot 4, got 5"),
            (
                |s| s.initiator = "n2".into(),
                "asked n1 to initiate, the snapshot names n2",
            ),
            (
                |s| s.nodes.push("n9".into()),
                "`nodes` has n9, not in the run",
            ),
            (
                |s| s.initial_total = 150,
                "`initial_total` is 150, the run started with 200",
            ),
            (
                |s| s.checkpoints[0].node = "n7".into(),
                "malformed: snapshot 4: checkpoint of node n7, which is not in `nodes`",
            ),
        ];
        for (break_it, expected) in cases {
            let mut s = consistent();
            break_it(&mut s);
            let t = taken(s);
            let Some(Problem::Defect(why)) = &t.problem else {
                panic!("no defect found; expected {expected}");
            };
            assert!(why.contains(expected), "{why} / {expected}");
            let j = judged(vec![taken(consistent()), t]);
            assert_eq!(j.verdict, Verdict::Invalid, "{expected}");
            let reason = j.reason().unwrap();
            assert!(
                reason.starts_with("snapshot 4 from n1 is defective: "),
                "{reason}"
            );
            assert!(!reason.contains('\n'), "one line: {reason}");
            // Named in the text, results.json and the report, and the good one still judged.
            assert!(
                j.text().starts_with(&format!("invalid: {reason}\n")),
                "{}",
                j.text()
            );
            let v = j.snapshots_json();
            assert_eq!(v["defective"][0]["id"], 4);
            assert_eq!(v["defective"][0]["text"], reason.as_str());
            assert_eq!(j.outcome().report["reason"], reason.as_str());
            assert!(j.html_fragment().contains(&escape(&reason)));
            assert_eq!(
                (v["started"].as_u64(), v["consistent"].as_u64()),
                (Some(1), Some(1))
            );
        }
        // Several at once are all named, `; `-joined.
        let mut s = consistent();
        s.id = 9;
        s.initial_total = 0;
        let Some(Problem::Defect(why)) = taken(s).problem else {
            panic!("no defect");
        };
        assert_eq!(
            why,
            "asked for snapshot 4, got 9; `initial_total` is 0, the run started with 200"
        );
    }

    /// An answer that does not parse comes as a made-up snapshot (every node missing) with
    /// a `Defect`: invalid, although the made-up snapshot itself is well formed.
    #[test]
    fn an_answer_that_does_not_parse_is_a_defect() {
        let mut s = consistent();
        s.checkpoints.clear();
        s.missing = run_nodes();
        let j = judged(vec![
            taken(consistent()),
            Taken {
                id: 5,
                initiator: "n2".into(),
                snapshot: s,
                problem: Some(Problem::Defect(
                    "not a snapshot: missing field `nodes`".into(),
                )),
            },
        ]);
        assert_eq!(j.verdict, Verdict::Invalid);
        assert_eq!(
            j.reason().unwrap(),
            "snapshot 5 from n2 is defective: not a snapshot: missing field `nodes`"
        );
    }

    /// No answer at all (the initiator killed or cut off) stays undecidable: the made-up
    /// snapshot is incomplete, and with nothing completed the verdict is unknown.
    #[test]
    fn no_answer_is_unknown_not_a_defect() {
        let mut s = consistent();
        s.checkpoints.clear();
        s.missing = run_nodes();
        let j = judged(vec![Taken {
            id: 4,
            initiator: "n1".into(),
            snapshot: s,
            problem: Some(Problem::NoAnswer("no snapshot from n1: timeout".into())),
        }]);
        assert_eq!(j.verdict, Verdict::Unknown, "{}", j.text());
        assert_eq!(j.reason(), None);
        assert_eq!(j.report.summary.incomplete, 1);
        assert_eq!(
            j.judged[0].1.as_deref(),
            Some("no snapshot from n1: timeout")
        );
    }

    /// A `Collected` whose malformed snapshot carries no problem (not from the snapshot
    /// task) is still caught, as a defect rather than an unknown.
    #[test]
    fn a_malformed_snapshot_without_a_problem_is_still_a_defect() {
        let mut s = consistent();
        s.nodes.clear();
        let j = judged(vec![Taken {
            id: 4,
            initiator: "n1".into(),
            snapshot: s,
            problem: None,
        }]);
        assert_eq!(j.verdict, Verdict::Invalid);
        assert!(
            j.reason().unwrap().contains("`nodes` is empty"),
            "{:?}",
            j.reason()
        );
    }

    #[test]
    fn several_defects_are_counted_and_each_named() {
        let mut a = consistent();
        a.initial_total = 1;
        let mut b = consistent();
        b.nodes.push("n3".into());
        let j = judged(vec![taken(a), taken(b)]);
        assert_eq!(j.verdict, Verdict::Invalid);
        assert!(j
            .reason()
            .unwrap()
            .starts_with("2 defective snapshots; the first: snapshot 4"));
        assert!(
            j.text().contains("`nodes` has n3, not in the run"),
            "{}",
            j.text()
        );
        assert_eq!(
            j.snapshots_json()["defective"].as_array().map(Vec::len),
            Some(2)
        );
    }
}
