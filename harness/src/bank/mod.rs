//! The bank workload's side of a run (issue 5): transfer clients, the snapshot task and
//! the money checks. `test_run` drives it at the same joints as the register workloads;
//! the wire API is the contract in the nodes' bank routes (`/bank/*`, `/admin/clock`).
//!
//! - `client` — the bank and admin calls on `HttpClient`, and what each response proves.
//! - `worker` — one transfer client (a Jepsen process), like `crate::worker` for kv.
//! - `snapshots` — a global snapshot every `--snapshot-interval` from a seeded random
//!   initiator, streamed to `snapshots.jsonl`, never waiting past its timeout.
//! - `verdict` — after the cluster is healed: drain, final conservation, the transfer log
//!   attached to each snapshot, the snapshot checker, and the run's verdict.

pub mod client;
pub mod snapshots;
pub mod verdict;
pub mod worker;

use std::time::Duration;

use checker::snapshot::Algorithm;
use clap::ValueEnum;

/// How nodes deliver frames on their peer channels: the nodes' own `--channels` type, so
/// the flag the harness takes is the one it passes on.
pub use nodes::Channels;

/// Which snapshot algorithm the initiator runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SnapshotAlgo {
    /// Markers on every channel; channel state recorded.
    ChandyLamport,
    /// Every node records at an agreed wall-clock instant; no markers, no channel state.
    Clock,
}

impl SnapshotAlgo {
    pub fn algorithm(self) -> Algorithm {
        match self {
            Self::ChandyLamport => Algorithm::ChandyLamport,
            Self::Clock => Algorithm::Clock,
        }
    }

    pub fn name(self) -> &'static str {
        self.algorithm().as_str()
    }
}

/// The bank settings of a validated run.
#[derive(Debug, Clone)]
pub struct BankPlan {
    pub channels: Channels,
    pub algo: SnapshotAlgo,
    pub snapshot_interval: Duration,
    /// How long the initiator may wait for checkpoints before it reports the snapshot
    /// incomplete.
    pub snapshot_timeout: Duration,
    pub initial_balance: i64,
}

impl BankPlan {
    /// Flags every node gets on top of the common ones.
    pub fn node_args(&self) -> Vec<String> {
        vec![
            "--channels".into(),
            self.channels.name().into(),
            "--initial-balance".into(),
            self.initial_balance.to_string(),
        ]
    }

    /// The money in the system: every node starts with the same balance.
    pub fn initial_total(&self, nodes: usize) -> i64 {
        self.initial_balance * nodes as i64
    }
}

/// The bank part of a running test: its transfer clients and its snapshot task.
pub struct BankRun {
    clients: Vec<tokio::task::JoinHandle<()>>,
    snapshots: tokio::task::JoinHandle<snapshots::Collected>,
}

impl BankRun {
    /// Starts `concurrency` transfer clients and the snapshot task, which writes
    /// `snapshots_path`; both stop when `stop` turns true.
    pub fn start(
        plan: &BankPlan,
        seed: u64,
        concurrency: usize,
        shared: &std::sync::Arc<crate::worker::Shared<crate::client::HttpClient>>,
        stop: &tokio::sync::watch::Receiver<bool>,
        snapshots_path: &std::path::Path,
    ) -> Result<Self, String> {
        let task = snapshots::SnapshotTask::create(
            snapshots_path,
            plan.clone(),
            seed,
            shared.client.clone(),
            shared.recorder.clone(),
            shared.stats.clone(),
            shared.node_ids.clone(),
        )?;
        let mut workers = Vec::with_capacity(concurrency);
        for slot in 0..concurrency {
            workers.push(worker::BankWorker::new(slot, seed, shared.clone())?);
        }
        let clients = workers
            .into_iter()
            .map(|mut w| {
                let stop = stop.clone();
                tokio::spawn(async move { w.run(stop).await })
            })
            .collect();
        let snapshots = tokio::spawn(task.run(stop.clone()));
        Ok(Self { clients, snapshots })
    }

    /// Waits for the clients and the snapshot task to stop (after `stop` turned true);
    /// returns every snapshot taken.
    pub async fn finish(self) -> snapshots::Collected {
        for c in self.clients {
            let _ = c.await;
        }
        self.snapshots
            .await
            .unwrap_or_else(|e| snapshots::Collected {
                write_error: Some(format!("the snapshot task crashed: {e}")),
                ..Default::default()
            })
    }
}

/// After the cluster is healed and every node is back: clock offsets back to 0 (a node
/// the clock nemesis could not reach may still be skewed), the drain and final balances,
/// and the transfer log. Must run before the nodes are stopped.
pub async fn settle(
    client: &crate::client::HttpClient,
    node_ids: &[String],
    plan: &BankPlan,
    reset_clocks: bool,
) -> verdict::Settled {
    if reset_clocks {
        let _ = crate::nemesis::clock::apply(client, node_ids, &vec![0; node_ids.len()]).await;
    }
    let final_state = verdict::drain(
        client,
        node_ids,
        plan.initial_total(node_ids.len()),
        DRAIN_WITHIN,
    )
    .await;
    let log = verdict::transfer_log(client, node_ids).await;
    (final_state, log)
}

/// How long the drain may take before the final state is reported as not judged.
pub const DRAIN_WITHIN: Duration = Duration::from_secs(20);

/// Judges a finished bank run (`settled` is `None` when the run was cut short before the
/// drain) and rewrites `snapshots_path` with each snapshot's transfer log attached.
pub fn judge_run(
    collected: snapshots::Collected,
    settled: Option<verdict::Settled>,
    interrupted: bool,
    snapshots_path: &std::path::Path,
) -> verdict::BankJudgement {
    let (final_state, log) = settled.unwrap_or_else(|| {
        let why = if interrupted {
            "the run was cut short before the drain"
        } else {
            "the drain never ran"
        };
        (
            verdict::FinalState {
                drained: false,
                waited_ms: 0,
                balances: Default::default(),
                conservation: None,
                note: Some(why.into()),
            },
            Err(why.into()),
        )
    });
    if let Some(e) = &collected.write_error {
        eprintln!("faultline run: warning: {e}");
    }
    let judgement = verdict::judge(&collected, log.as_ref().map_err(Clone::clone), final_state);
    if let Err(e) = judgement.rewrite_snapshots(snapshots_path) {
        eprintln!("faultline run: warning: {e}");
    }
    judgement
}
