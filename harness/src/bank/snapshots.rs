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
/// every node records at: past the largest offset the clock nemesis sets (500 ms), so a
/// node whose clock runs ahead still sees the instant in its future.
pub const CLOCK_DELAY: Duration = Duration::from_millis(600);

/// Extra time the harness gives an initiator past its own timeout to answer.
const ANSWER_MARGIN: Duration = Duration::from_millis(1500);

/// One snapshot as the run recorded it.
#[derive(Debug, Clone)]
pub struct Taken {
    pub snapshot: Snapshot,
    /// Why the harness had to make this snapshot up (no answer from the initiator), or
    /// what was wrong with the answer.
    pub error: Option<String>,
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
    ) -> Result<Self, String> {
        let out = File::create(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
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
        let (snapshot, error) = match answer {
            Ok(mut s) => {
                let mut problems = Vec::new();
                if s.id != id {
                    problems.push(format!("asked for snapshot {id}, got {}", s.id));
                }
                if s.initiator != initiator_id {
                    problems.push(format!(
                        "asked {initiator_id} to initiate, the snapshot names {}",
                        s.initiator
                    ));
                }
                if let Err(e) = s.validate() {
                    problems.push(format!("malformed: {e}"));
                }
                s.started_ns = Some(started_ns);
                (s, (!problems.is_empty()).then(|| problems.join("; ")))
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
            Err(SnapshotError::Failed(why)) => {
                let s = Snapshot {
                    id,
                    initiator: initiator_id.clone(),
                    algorithm: self.plan.algo.algorithm(),
                    initial_total: self.plan.initial_total(self.node_ids.len()),
                    nodes: self.node_ids.clone(),
                    checkpoints: Vec::new(),
                    missing: self.node_ids.clone(),
                    open_channels: Vec::new(),
                    started_ns: Some(started_ns),
                    finished_ns: None,
                    transfers: None,
                };
                (s, Some(format!("no snapshot from {initiator_id}: {why}")))
            }
        };
        // Judged live, without the transfer log, only for the progress line.
        let outcome = check_snapshot(&snapshot).ok().map(|r| r.outcome);
        let value = serde_json::json!({
            "id": id,
            "initiator": initiator_id,
            "outcome": outcome.map(Outcome::as_str),
            "recorded": snapshot.checkpoints.len(),
            "missing": snapshot.missing,
        });
        let kind = if error.is_none() {
            EventType::Ok
        } else {
            EventType::Info
        };
        let finished_ns = self.record(kind, value, error.clone());
        let mut snapshot = snapshot;
        snapshot.finished_ns = Some(finished_ns);
        self.count(outcome);
        self.write(&snapshot, error.as_deref());
        self.collected.taken.push(Taken { snapshot, error });
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

    fn count(&self, outcome: Option<Outcome>) {
        let s = &self.stats;
        s.snapshots_started.fetch_add(1, Ordering::Relaxed);
        let counter = match outcome {
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
