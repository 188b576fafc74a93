//! Replica convergence as a checker of every run (issue 14): after the heal and settle
//! phase, read each replica's own state (`Cluster::replica_state`, faultline's
//! `GET /admin/state`) and require that replicas which applied the same prefix hold the
//! same state — the way etcd's robustness suite compares every member's `HashKV` at the
//! end of a test. The rule itself is the checker crate's pure
//! `checker::convergence::check_convergence`; this file only gathers its input.
//!
//! ## Gathering (`gather`, nodes still up)
//! 1. Read every replica's summary (`applied_index`, `digest`) — retried every
//!    [`POLL`] until all readable replicas report the same applied index, or
//!    [`CATCH_UP`] has passed (a replica still behind then is left uncompared).
//! 2. Where replicas at one applied index report different digests, read their full
//!    dumps (`full = true`), so the verdict can name the key and each replica's value.
//!
//! ## Verdicts (`checkers.convergence` in results.json)
//! - `converged` (valid): at least two replicas were compared and every group agreed.
//! - `divergent` (invalid, exit 1): the report names the applied index, the first
//!   differing key and each replica's value of it (`checker::convergence::Convergence`).
//! - unknown: fewer than two replicas could be compared (unreadable, or each at its own
//!   index), or the states were never read in a whole run — never a pass.
//! - skipped: the system has no replica-state endpoint (`ControlError::Unsupported`), or
//!   the run was cut short before the replicas settled (its exit code says so);
//!   said explicitly, and left out of the run's combined verdict.

use std::time::{Duration, Instant};

use checker::convergence::{check_convergence, Convergence, ReplicaReport};
use futures_util::future::BoxFuture;

use super::{CheckOutcome, Checker, Recorded, Verdict};
use crate::system::{Cluster, ControlError};

/// The checker's name in results.json (`checkers.convergence`).
pub const NAME: &str = "convergence";

/// How long replicas get to reach the same applied index after the settle phase.
pub const CATCH_UP: Duration = Duration::from_secs(5);

/// Pause between rounds of summary reads while replicas catch up.
const POLL: Duration = Duration::from_millis(200);

/// What `gather` found.
#[derive(Debug, Clone, PartialEq)]
pub enum Gathered {
    /// Not gathered (the run was cut short, or `gather` never ran).
    Nothing,
    /// The system has no replica-state endpoint.
    Unsupported(String),
    /// One report per readable replica, and one error line per unreadable one.
    Reports {
        reports: Vec<ReplicaReport>,
        unreadable: Vec<String>,
        /// Seconds spent waiting for replicas to reach one applied index.
        waited_s: f64,
    },
}

/// The replica-convergence checker over nodes `node_ids` (index order).
#[derive(Debug, Clone)]
pub struct ReplicaConvergence {
    pub node_ids: Vec<String>,
    pub gathered: Gathered,
}

impl ReplicaConvergence {
    pub fn new(node_ids: Vec<String>) -> Self {
        Self {
            node_ids,
            gathered: Gathered::Nothing,
        }
    }
}

impl Checker for ReplicaConvergence {
    fn name(&self) -> &'static str {
        NAME
    }

    fn gather<'a>(&'a mut self, cluster: &'a dyn Cluster) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.gathered = gather(cluster, &self.node_ids, CATCH_UP).await;
        })
    }

    fn check(self: Box<Self>, recorded: &Recorded) -> CheckOutcome {
        judge(&self.gathered, recorded.interrupted.as_deref())
    }
}

/// Reads every replica's state (see the module docs), waiting up to `catch_up` for the
/// readable replicas to reach one applied index.
pub async fn gather(cluster: &dyn Cluster, node_ids: &[String], catch_up: Duration) -> Gathered {
    let started = Instant::now();
    let deadline = started + catch_up;
    loop {
        let mut reports = Vec::new();
        let mut unreadable = Vec::new();
        for (i, id) in node_ids.iter().enumerate() {
            match cluster.replica_state(i, false).await {
                Ok(v) => match parse_report(id, &v) {
                    Ok(r) => reports.push(r),
                    Err(e) => unreadable.push(e),
                },
                Err(ControlError::Unsupported { system, what }) => {
                    return Gathered::Unsupported(format!("{system} does not support {what}"))
                }
                Err(e) => unreadable.push(e.to_string()),
            }
        }
        let same_index = reports
            .windows(2)
            .all(|w| w[0].applied_index == w[1].applied_index);
        if (same_index && unreadable.is_empty()) || Instant::now() >= deadline {
            fetch_dumps(cluster, node_ids, &mut reports).await;
            return Gathered::Reports {
                reports,
                unreadable,
                waited_s: started.elapsed().as_secs_f64(),
            };
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Replaces the summaries of replicas whose group (same applied index) disagrees on the
/// digest with their full dumps. A dump carries its own index and digest, so a replica
/// that moved on in between is judged on what the dump says.
async fn fetch_dumps(cluster: &dyn Cluster, node_ids: &[String], reports: &mut [ReplicaReport]) {
    let disagreeing: Vec<usize> = (0..reports.len())
        .filter(|&i| {
            reports.iter().any(|o| {
                o.applied_index == reports[i].applied_index && o.digest != reports[i].digest
            })
        })
        .collect();
    for i in disagreeing {
        let Some(node) = node_ids.iter().position(|id| *id == reports[i].node) else {
            continue;
        };
        if let Ok(v) = cluster.replica_state(node, true).await {
            if let Ok(r) = parse_report(&reports[i].node, &v) {
                reports[i] = r;
            }
        }
    }
}

/// One replica's `/admin/state` answer as a report: `applied_index` (u64), `digest`
/// (string), and `state` (object, key → value) when dumped.
pub fn parse_report(node: &str, v: &serde_json::Value) -> Result<ReplicaReport, String> {
    let applied_index = v
        .get("applied_index")
        .and_then(|x| x.as_u64())
        .ok_or_else(|| format!("{node}: replica state without an integer applied_index: {v}"))?;
    let digest = v
        .get("digest")
        .and_then(|x| x.as_str())
        .ok_or_else(|| format!("{node}: replica state without a string digest: {v}"))?
        .to_string();
    let dump = match v.get("state") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Object(m)) => {
            Some(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        }
        Some(other) => {
            return Err(format!(
                "{node}: replica state dump is not an object: {other}"
            ))
        }
    };
    Ok(ReplicaReport {
        node: node.to_string(),
        applied_index,
        digest,
        dump,
    })
}

/// The verdict on what was gathered (pure; see the module docs).
pub fn judge(gathered: &Gathered, interrupted: Option<&str>) -> CheckOutcome {
    let (reports, unreadable, waited_s) = match gathered {
        Gathered::Unsupported(why) => {
            let reason = format!("skipped: system has no state endpoint ({why})");
            let mut o = CheckOutcome::new(
                NAME,
                Verdict::Valid,
                serde_json::json!({ "verdict": "skipped", "skipped": reason }),
                reason.clone(),
            );
            o.skipped = Some(reason);
            return o;
        }
        Gathered::Nothing => {
            // A run cut short never healed and settled, so its replicas were never due to
            // agree: convergence does not apply (the run's exit code already says "cut
            // short", never a pass). Not reading them in a whole run is a failure.
            let Some(why) = interrupted else {
                return CheckOutcome::failed(NAME, "replica states were not read".to_string());
            };
            let reason =
                format!("skipped: the run was cut short before the replicas settled ({why})");
            let mut o = CheckOutcome::new(
                NAME,
                Verdict::Valid,
                serde_json::json!({ "verdict": "skipped", "skipped": reason }),
                reason.clone(),
            );
            o.skipped = Some(reason);
            return o;
        }
        Gathered::Reports {
            reports,
            unreadable,
            waited_s,
        } => (reports, unreadable, *waited_s),
    };
    let result = check_convergence(reports);
    let mut report = serde_json::to_value(&result).unwrap_or(serde_json::Value::Null);
    let mut text = result.summary();
    if !unreadable.is_empty() {
        text.push_str(&format!("; unreadable: {}", unreadable.join("; ")));
    }
    report["summary"] = text.clone().into();
    report["unreadable"] = serde_json::json!(unreadable);
    report["waited_s"] = serde_json::json!((waited_s * 1000.0).round() / 1000.0);
    report["replicas"] = serde_json::json!(reports
        .iter()
        .map(|r| serde_json::json!({
            "node": r.node, "applied_index": r.applied_index, "digest": r.digest
        }))
        .collect::<Vec<_>>());
    let verdict = match &result {
        Convergence::Divergent { .. } => Verdict::Invalid,
        Convergence::Converged { compared, .. } if *compared >= 2 => Verdict::Valid,
        Convergence::Converged { .. } => {
            text = format!("no two replicas could be compared: {text}");
            report["summary"] = text.clone().into();
            Verdict::Unknown
        }
    };
    let mut outcome = CheckOutcome::new(NAME, verdict, report, text.clone());
    outcome.summary = Some(format!("replica convergence: {text}"));
    outcome.results.push((
        "convergence",
        match &result {
            Convergence::Divergent { .. } => "divergent",
            _ if verdict == Verdict::Valid => "converged",
            _ => "unknown",
        }
        .into(),
    ));
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::any::Any;
    use workloads::{Completion, Op};

    fn report(
        node: &str,
        index: u64,
        digest: &str,
        dump: Option<serde_json::Value>,
    ) -> ReplicaReport {
        let mut v = json!({"id": node, "applied_index": index, "digest": digest});
        if let Some(d) = dump {
            v["state"] = d;
        }
        parse_report(node, &v).unwrap()
    }

    fn gathered(reports: Vec<ReplicaReport>) -> Gathered {
        Gathered::Reports {
            reports,
            unreadable: vec![],
            waited_s: 0.0,
        }
    }

    #[test]
    fn equal_replicas_converge() {
        let d = json!({"k1": 3, "k2": 4});
        let o = judge(
            &gathered(vec![
                report("n1", 9, "aa", Some(d.clone())),
                report("n2", 9, "aa", Some(d.clone())),
                report("n3", 9, "aa", None),
            ]),
            None,
        );
        assert_eq!(o.verdict, Verdict::Valid, "{}", o.text);
        assert_eq!(o.report["verdict"], "converged");
        assert_eq!(o.results, vec![("convergence", json!("converged"))]);
        assert!(o.skipped.is_none());
    }

    #[test]
    fn divergent_replicas_are_invalid_naming_key_and_values() {
        let o = judge(
            &gathered(vec![
                report("n1", 9, "aa", Some(json!({"k1": 3, "k5": 71}))),
                report("n2", 9, "bb", Some(json!({"k1": 3, "k5": 12}))),
                report("n3", 9, "aa", Some(json!({"k1": 3, "k5": 71}))),
            ]),
            None,
        );
        assert_eq!(o.verdict, Verdict::Invalid);
        assert_eq!(o.report["verdict"], "divergent");
        assert_eq!(o.report["key"], "k5");
        assert_eq!(o.report["values"]["n2"], 12);
        assert!(
            o.text.contains("k5") && o.text.contains("n2=12"),
            "{}",
            o.text
        );
        assert_eq!(o.results, vec![("convergence", json!("divergent"))]);
    }

    #[test]
    fn one_replica_behind_is_uncompared_not_divergent() {
        let o = judge(
            &gathered(vec![
                report("n1", 12, "aa", None),
                report("n2", 12, "aa", None),
                report("n3", 10, "cc", None),
            ]),
            None,
        );
        assert_eq!(o.verdict, Verdict::Valid, "{}", o.text);
        assert!(o.text.contains("n3 at 10"), "{}", o.text);
        // Every replica alone at its index: nothing compared is no pass.
        let o = judge(
            &gathered(vec![
                report("n1", 12, "aa", None),
                report("n2", 10, "bb", None),
            ]),
            None,
        );
        assert_eq!(o.verdict, Verdict::Unknown, "{}", o.text);
    }

    #[test]
    fn no_endpoint_is_skipped_explicitly_and_not_reading_is_unknown() {
        let o = judge(
            &Gathered::Unsupported("etcd does not support x".into()),
            None,
        );
        assert!(o
            .skipped
            .as_deref()
            .unwrap()
            .starts_with("skipped: system has no state endpoint"));
        assert_eq!(o.report["verdict"], "skipped");
        let o = judge(&Gathered::Nothing, Some("SIGINT received"));
        assert!(
            o.skipped.as_deref().unwrap().contains("cut short"),
            "{}",
            o.text
        );
        let o = judge(&Gathered::Nothing, None);
        assert_eq!(o.verdict, Verdict::Unknown);
        assert!(o.skipped.is_none());
    }

    #[test]
    fn bad_state_bodies_are_named() {
        let e = parse_report("n2", &json!({"digest": "aa"})).unwrap_err();
        assert!(e.starts_with("n2: ") && e.contains("applied_index"), "{e}");
        let e = parse_report(
            "n2",
            &json!({"applied_index": 1, "digest": "a", "state": [1]}),
        )
        .unwrap_err();
        assert!(e.contains("not an object"), "{e}");
    }

    /// A cluster whose replicas answer from a script: n3 is behind for its first two
    /// reads, and n2's state differs from n1's once dumped.
    struct Scripted {
        reads: std::sync::Mutex<Vec<usize>>,
    }

    impl Cluster for Scripted {
        fn ready(&self, _: usize, _: Duration) -> BoxFuture<'_, bool> {
            Box::pin(async { true })
        }
        fn leader(&self) -> BoxFuture<'_, Option<usize>> {
            Box::pin(async { None })
        }
        fn invoke<'a>(&'a self, _: usize, _: &'a Op, _: Duration) -> BoxFuture<'a, Completion> {
            Box::pin(async {
                Completion::Fail {
                    error: "no ops".into(),
                }
            })
        }
        fn metrics(&self, _: usize) -> BoxFuture<'_, Result<String, ControlError>> {
            Box::pin(async { Ok(String::new()) })
        }
        fn replica_state(
            &self,
            node: usize,
            full: bool,
        ) -> BoxFuture<'_, Result<serde_json::Value, ControlError>> {
            let n = {
                let mut reads = self.reads.lock().unwrap();
                reads[node] += 1;
                reads[node]
            };
            Box::pin(async move {
                let (index, digest, state) = match node {
                    2 if n <= 2 => (5, "old", json!({"k1": 1})),
                    1 => (8, "bb", json!({"k1": 2, "k2": 99})),
                    _ => (8, "aa", json!({"k1": 2, "k2": 7})),
                };
                let mut v = json!({"applied_index": index, "digest": digest});
                if full {
                    v["state"] = state;
                }
                Ok(v)
            })
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    #[tokio::test]
    async fn gather_waits_for_the_replica_behind_then_dumps_where_digests_differ() {
        let cluster = Scripted {
            reads: std::sync::Mutex::new(vec![0; 3]),
        };
        let ids: Vec<String> = ["n1", "n2", "n3"].map(String::from).to_vec();
        let g = gather(&cluster, &ids, Duration::from_secs(5)).await;
        let Gathered::Reports { reports, .. } = &g else {
            panic!("{g:?}")
        };
        assert!(reports.iter().all(|r| r.applied_index == 8), "{reports:?}");
        assert!(
            reports.iter().all(|r| r.dump.is_some()),
            "all three differ from someone"
        );
        let o = judge(&g, None);
        assert_eq!(o.verdict, Verdict::Invalid);
        assert_eq!(o.report["key"], "k2");
        assert_eq!(o.report["values"]["n2"], 99);
        assert_eq!(o.report["values"]["n1"], 7);
    }
}
