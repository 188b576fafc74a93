//! The snapshot task: every `--snapshot-interval`, for the whole main phase, ask a seeded
//! random initiator for a global snapshot (ids 1, 2, 3, ...), record its start and end in
//! the history, and append what came back to `snapshots.jsonl` at once.
//!
//! One snapshot at a time: a tick that comes while the previous request is still waiting
//! is skipped. Every request is bounded (the initiator's own timeout plus a margin), so an
//! initiator that is killed, paused or cut off costs one incomplete snapshot, never a hung
//! run. When no snapshot comes back the harness writes what it knows: a snapshot with no
//! checkpoints, every node missing, and the reason in an `error` field (which the checker
//! ignores, and which `missing` already makes incomplete).
//!
//! A snapshot that does come back is not taken at its word: its id, initiator, node list
//! and initial total must be the ones the run asked for and started with. A node with a
//! wrong peer list would otherwise have its partial mesh judged a complete snapshot. An
//! answer that disagrees, or does not parse, is a node defect (`Problem::Defect`), which
//! makes the run invalid.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use checker::snapshot::{check_snapshot, Outcome, Snapshot};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::client::SnapshotError;
use super::{BankPlan, SnapshotAlgo};
use crate::client::HttpClient;
use crate::history::{Event, EventType, Process, Recorder};
use crate::worker::Stats;

/// How far ahead of its own clock the initiator of a `clock` snapshot sets the instant
/// every node records at. The clock nemesis sets each node's offset within ±500 ms
/// (`nemesis::clock::MAX_OFFSET_MS`), so two nodes' clocks can be up to 1000 ms apart: a
/// node running more than 600 ms ahead of the initiator finds the instant already past
/// and records as soon as the request arrives. That is kept on purpose — a late or early
/// record is exactly the skew the clock algorithm is run to be shown wrong by — while a
/// delay past 1000 ms would make each clock snapshot outlast the tests' half-second
/// `--snapshot-interval` and halve how many a short run takes.
pub const CLOCK_DELAY: Duration = Duration::from_millis(600);

/// Extra time the harness gives an initiator past its own timeout to answer.
const ANSWER_MARGIN: Duration = Duration::from_millis(1500);

/// One snapshot as the run recorded it.
#[derive(Debug, Clone)]
pub struct Taken {
    /// The id the harness asked for and the node it asked (the snapshot may say otherwise).
    pub id: u64,
    pub initiator: String,
    pub snapshot: Snapshot,
    pub problem: Option<Problem>,
}

/// What was wrong with a snapshot request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The initiator gave no snapshot (unreachable, timed out, an error status): the
    /// harness made one up with every node missing. Undecidable, not a defect — the
    /// lecture's crashed server means no termination.
    NoAnswer(String),
    /// The initiator answered with something that does not parse or disagrees with the
    /// run (id, initiator, nodes, initial total): the node is wrong, and the run invalid.
    Defect(String),
}

impl Problem {
    /// The `error` field of the snapshot's line in `snapshots.jsonl`.
    pub fn text(&self) -> String {
        match self {
            Self::NoAnswer(why) => why.clone(),
            Self::Defect(why) => format!("defective: {why}"),
        }
    }
}

/// What the run knows that a snapshot must agree with.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    pub id: u64,
    pub initiator: &'a str,
    pub nodes: &'a [String],
    pub initial_total: i64,
}

/// Every way `s` disagrees with the run, `; `-joined, or `None` when it agrees and is
/// well formed. The node lists are compared as sets: their order carries no meaning.
pub fn disagreement(s: &Snapshot, expected: &Expected) -> Option<String> {
    let mut problems = Vec::new();
    if s.id != expected.id {
        problems.push(format!("asked for snapshot {}, got {}", expected.id, s.id));
    }
    if s.initiator != expected.initiator {
        problems.push(format!(
            "asked {} to initiate, the snapshot names {}",
            expected.initiator, s.initiator
        ));
    }
    let lacks: Vec<&str> = expected
        .nodes
        .iter()
        .filter(|n| !s.nodes.contains(n))
        .map(String::as_str)
        .collect();
    let extra: Vec<&str> = s
        .nodes
        .iter()
        .filter(|n| !expected.nodes.contains(n))
        .map(String::as_str)
        .collect();
    if !lacks.is_empty() {
        problems.push(format!("`nodes` lacks {}", lacks.join(", ")));
    }
    if !extra.is_empty() {
        problems.push(format!("`nodes` has {}, not in the run", extra.join(", ")));
    }
    if s.initial_total != expected.initial_total {
        problems.push(format!(
            "`initial_total` is {}, the run started with {}",
            s.initial_total, expected.initial_total
        ));
    }
    if let Err(e) = s.validate() {
        problems.push(format!("malformed: {e}"));
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// Everything the task saw.
#[derive(Debug, Default)]
pub struct Collected {
    pub taken: Vec<Taken>,
    /// Requests the initiator refused because a snapshot was still running there: no
    /// snapshot was started, so they are not counted as snapshots. `(id, initiator, why)`.
    pub refused: Vec<(u64, String, String)>,
    /// A failure to write `snapshots.jsonl` (the run goes on; the verdict uses memory).
    pub write_error: Option<String>,
}

pub struct SnapshotTask {
    client: Arc<HttpClient>,
    recorder: Recorder,
    stats: Arc<Stats>,
    node_ids: Vec<String>,
    plan: BankPlan,
    rng: StdRng,
    path: PathBuf,
    out: Option<File>,
    next_id: u64,
    collected: Collected,
}

impl SnapshotTask {
    /// Creates `path` (the run's `snapshots.jsonl`) and the task; nothing runs yet.
    pub fn create(
        path: &Path,
        plan: BankPlan,
        seed: u64,
        client: Arc<HttpClient>,
        recorder: Recorder,
        stats: Arc<Stats>,
        node_ids: Vec<String>,
    ) -> Result<Self, crate::workload::WorkloadError> {
        let out = File::create(path).map_err(|source| crate::workload::WorkloadError::Io {
            what: format!("creating {}", path.display()),
            source,
        })?;
        Ok(Self {
            client,
            recorder,
            stats,
            node_ids,
            plan,
            rng: StdRng::seed_from_u64(seed ^ 0x534e_4150_5348_4f54),
            path: path.to_path_buf(),
            out: Some(out),
            next_id: 1,
            collected: Collected::default(),
        })
    }

    /// Takes snapshots until `stop` turns true; a request in progress then finishes (it is
    /// bounded). Returns every snapshot taken.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Collected {
        let every = self.plan.snapshot_interval;
        let mut tick = tokio::time::interval_at(Instant::now() + every, every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                break;
            }
            self.take_one().await;
        }
        self.collected
    }

    fn request(&self, id: u64) -> (serde_json::Value, Duration) {
        let timeout = self.plan.snapshot_timeout;
        let mut request = serde_json::json!({
            "id": id,
            "algorithm": self.plan.algo.name(),
            "timeout_ms": timeout.as_millis() as u64,
        });
        let mut wait = timeout + ANSWER_MARGIN;
        if self.plan.algo == SnapshotAlgo::Clock {
            request["delay_ms"] = (CLOCK_DELAY.as_millis() as u64).into();
            request["timeout_ms"] = ((timeout + CLOCK_DELAY).as_millis() as u64).into();
            wait += CLOCK_DELAY;
        }
        (request, wait)
    }

    async fn take_one(&mut self) {
        let id = self.next_id;
        self.next_id += 1;
        let initiator = self.rng.random_range(0..self.node_ids.len());
        let initiator_id = self.node_ids[initiator].clone();
        let (request, wait) = self.request(id);
        let started_ns = self.record(
            EventType::Invoke,
            serde_json::json!({"id": id, "initiator": initiator_id, "algorithm": self.plan.algo.name()}),
            None,
        );
        let answer = self.client.snapshot(initiator, &request, wait).await;
        let initial_total = self.plan.initial_total(self.node_ids.len());
        let made_up = || Snapshot {
            id,
            initiator: initiator_id.clone(),
            algorithm: self.plan.algo.algorithm(),
            initial_total,
            nodes: self.node_ids.clone(),
            checkpoints: Vec::new(),
            missing: self.node_ids.clone(),
            open_channels: Vec::new(),
            started_ns: Some(started_ns),
            finished_ns: None,
            transfers: None,
        };
        let (snapshot, problem) = match answer {
            Ok(mut s) => {
                let expected = Expected {
                    id,
                    initiator: &initiator_id,
                    nodes: &self.node_ids,
                    initial_total,
                };
                s.started_ns = Some(started_ns);
                let problem = disagreement(&s, &expected).map(Problem::Defect);
                (s, problem)
            }
            Err(SnapshotError::Refused(why)) => {
                self.record(
                    EventType::Fail,
                    serde_json::json!({"id": id, "initiator": initiator_id}),
                    Some(why.clone()),
                );
                self.collected.refused.push((id, initiator_id, why));
                return;
            }
            Err(SnapshotError::Failed(why)) => (
                made_up(),
                Some(Problem::NoAnswer(format!(
                    "no snapshot from {initiator_id}: {why}"
                ))),
            ),
            // What came back is kept only as the reason: there is no snapshot to write.
            Err(SnapshotError::Malformed(why)) => (made_up(), Some(Problem::Defect(why))),
        };
        let defective = matches!(problem, Some(Problem::Defect(_)));
        // Judged live, without the transfer log, only for the progress line; a defective
        // snapshot is not judged at all (what it says about itself is wrong).
        let outcome = if defective {
            None
        } else {
            check_snapshot(&snapshot).ok().map(|r| r.outcome)
        };
        let value = serde_json::json!({
            "id": id,
            "initiator": initiator_id,
            "outcome": if defective { Some("defective") } else { outcome.map(Outcome::as_str) },
            "recorded": snapshot.checkpoints.len(),
            "missing": snapshot.missing,
        });
        let kind = if problem.is_none() {
            EventType::Ok
        } else {
            EventType::Info
        };
        let error = problem.as_ref().map(Problem::text);
        let finished_ns = self.record(kind, value, error.clone());
        let mut snapshot = snapshot;
        snapshot.finished_ns = Some(finished_ns);
        self.count(outcome, defective);
        self.write(&snapshot, error.as_deref());
        self.collected.taken.push(Taken {
            id,
            initiator: initiator_id,
            snapshot,
            problem,
        });
    }

    fn record(&self, kind: EventType, value: serde_json::Value, error: Option<String>) -> u64 {
        // The snapshot task is not a client: its events go under the non-client process,
        // where the report's op counts and the register checkers do not look.
        self.recorder.record(Event {
            kind,
            process: Process::Nemesis,
            f: "snapshot",
            key: None,
            value,
            time: 0,
            node: None,
            error,
        })
    }

    fn count(&self, outcome: Option<Outcome>, defective: bool) {
        let s = &self.stats;
        s.snapshots_started.fetch_add(1, Ordering::Relaxed);
        let counter = match outcome {
            _ if defective => &s.snapshots_defective,
            Some(Outcome::Consistent) => &s.snapshots_consistent,
            Some(Outcome::Inconsistent) => &s.snapshots_inconsistent,
            Some(Outcome::Incomplete) | None => &s.snapshots_incomplete,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends one line to `snapshots.jsonl` and flushes it, so a crash mid-run keeps
    /// every snapshot answered so far.
    fn write(&mut self, snapshot: &Snapshot, error: Option<&str>) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        let line = snapshot_line(snapshot, error);
        if let Err(e) = out.write_all(line.as_bytes()).and_then(|_| out.flush()) {
            self.collected.write_error = Some(format!("writing {}: {e}", self.path.display()));
            self.out = None;
        }
    }
}

/// One line of `snapshots.jsonl`: the checker's `Snapshot`, plus `error` when the harness
/// made it up or found its answer wanting.
pub fn snapshot_line(snapshot: &Snapshot, error: Option<&str>) -> String {
    let mut value = serde_json::to_value(snapshot).unwrap_or(serde_json::Value::Null);
    if let (Some(error), Some(map)) = (error, value.as_object_mut()) {
        map.insert("error".into(), error.into());
    }
    value.to_string() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Clock;
    use axum::extract::Json;
    use axum::http::StatusCode;
    use axum::routing::post;
    use checker::snapshot::{Algorithm, Checkpoint};

    fn answer(id: u64, nodes: &[&str], initial_total: i64) -> serde_json::Value {
        let snapshot = Snapshot {
            id,
            initiator: "n1".into(),
            algorithm: Algorithm::ChandyLamport,
            initial_total,
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            checkpoints: vec![Checkpoint {
                node: "n1".into(),
                balance: 100,
                clock: Default::default(),
                sent: Default::default(),
                received: Default::default(),
                channels: Default::default(),
            }],
            missing: nodes[1..].iter().map(|n| n.to_string()).collect(),
            open_channels: Vec::new(),
            started_ns: None,
            finished_ns: None,
            transfers: None,
        };
        serde_json::to_value(snapshot).unwrap()
    }

    /// A one-node run (so every request goes to n1, which starts with 100) against a fake
    /// n1 answering request 1 rightly, 2 with a peer the run does not have, 3 with money
    /// the run never had, 4 with a body that is no snapshot, and 5 not at all.
    #[tokio::test]
    async fn answers_that_disagree_with_the_run_are_defects_and_silence_is_not() {
        let app = axum::Router::new().route(
            "/bank/snapshot",
            post(|Json(b): Json<serde_json::Value>| async move {
                let id = b["id"].as_u64().unwrap();
                match id {
                    1 => (StatusCode::OK, Json(answer(id, &["n1"], 100))),
                    2 => (StatusCode::OK, Json(answer(id, &["n1", "n9"], 100))),
                    3 => (StatusCode::OK, Json(answer(id, &["n1"], 300))),
                    4 => (StatusCode::OK, Json(serde_json::json!({"id": id}))),
                    _ => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        Json(serde_json::json!({"error": "shutting down"})),
                    ),
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let dir = tempfile::tempdir().unwrap();
        let (recorder, handle) =
            Recorder::create(&dir.path().join("history.jsonl"), Clock::start()).unwrap();
        let plan = BankPlan {
            channels: super::super::Channels::Fifo,
            algo: SnapshotAlgo::ChandyLamport,
            snapshot_interval: Duration::from_millis(100),
            snapshot_timeout: Duration::from_millis(500),
            initial_balance: 100,
        };
        let path = dir.path().join("snapshots.jsonl");
        let stats = Arc::new(Stats::default());
        let mut task = SnapshotTask::create(
            &path,
            plan,
            1,
            Arc::new(HttpClient::new(&[addr])),
            recorder,
            stats.clone(),
            vec!["n1".into()],
        )
        .unwrap();
        for _ in 0..5 {
            task.take_one().await;
        }
        let collected = std::mem::take(&mut task.collected);
        drop(task);
        handle.finish().unwrap();

        let problems: Vec<Option<Problem>> =
            collected.taken.iter().map(|t| t.problem.clone()).collect();
        assert_eq!(problems[0], None);
        let defect = |i: usize| match &problems[i] {
            Some(Problem::Defect(why)) => why.clone(),
            other => panic!("snapshot {}: {other:?}", i + 1),
        };
        assert_eq!(defect(1), "`nodes` has n9, not in the run");
        assert_eq!(
            defect(2),
            "`initial_total` is 300, the run started with 100"
        );
        assert!(defect(3).starts_with("not a snapshot: "), "{}", defect(3));
        assert!(
            matches!(&problems[4], Some(Problem::NoAnswer(why)) if why.contains("HTTP 503")),
            "{:?}",
            problems[4]
        );
        assert_eq!(stats.snapshots_defective.load(Ordering::Relaxed), 3);
        assert_eq!(stats.snapshots_started.load(Ordering::Relaxed), 5);
        // Every answer is in the file as it came, the defective ones saying so.
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[0].get("error").is_none());
        assert!(lines[1]["error"]
            .as_str()
            .unwrap()
            .starts_with("defective: `nodes` has n9"));
        assert_eq!(lines[1]["nodes"], serde_json::json!(["n1", "n9"]));
    }
}
