//! The bank workload's side of a run (issue 5): transfer clients, the snapshot task and
//! the money checks, as a `crate::workload::Workload` the pipeline drives like any other;
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

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use checker::snapshot::Algorithm;
use clap::ValueEnum;
use futures_util::future::BoxFuture;

use crate::checkers::{CheckOutcome, Checker, Recorded};
use crate::client::HttpClient;
use crate::fault::FaultKind;
use crate::system::faultline::FaultlineCluster;
use crate::system::Cluster;
use crate::worker::Shared;
use crate::workload::{RunContext, Workload, WorkloadError, WorkloadRun};

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

/// The bank workload (issue 5): `--concurrency` transfer clients, a global snapshot every
/// `--snapshot-interval`, and after the heal a drain and the money checks.
#[derive(Debug, Clone)]
pub struct BankWorkload {
    pub plan: BankPlan,
}

impl Workload for BankWorkload {
    fn name(&self) -> &'static str {
        "bank"
    }

    fn model(&self) -> String {
        "bank (snapshots + conservation)".into()
    }

    fn name_tags(&self) -> Vec<String> {
        let mut tags = Vec::new();
        if self.plan.channels != Channels::Fifo {
            tags.push(self.plan.channels.name().to_string());
        }
        if self.plan.algo != SnapshotAlgo::ChandyLamport {
            tags.push(self.plan.algo.name().to_string());
        }
        tags
    }

    fn node_flags(&self) -> Vec<String> {
        self.plan.node_args()
    }

    fn supports_system(&self, system: &str) -> Result<(), WorkloadError> {
        if system == "faultline" {
            Ok(())
        } else {
            Err(WorkloadError::Unsupported(format!(
                "--workload bank needs faultline's own nodes (their /bank routes), not {system}"
            )))
        }
    }

    fn start(&self, ctx: &RunContext) -> Result<Box<dyn WorkloadRun>, WorkloadError> {
        let client = ctx
            .cluster
            .as_any()
            .downcast_ref::<FaultlineCluster>()
            .ok_or_else(|| {
                WorkloadError::Unsupported("--workload bank needs faultline's own nodes".into())
            })?
            .http();
        let shared = Arc::new(Shared {
            client: client.clone(),
            recorder: ctx.recorder.clone(),
            stats: ctx.stats.clone(),
            node_ids: ctx.node_ids.clone(),
            op_timeout: ctx.op_timeout,
            mean_gap: ctx.mean_gap,
            concurrency: ctx.concurrency as u64,
        });
        let snapshots_path = ctx.dir.join(SNAPSHOTS_FILE);
        let task = snapshots::SnapshotTask::create(
            &snapshots_path,
            self.plan.clone(),
            ctx.seed,
            client.clone(),
            ctx.recorder.clone(),
            ctx.stats.clone(),
            ctx.node_ids.clone(),
        )?;
        let mut workers = Vec::with_capacity(ctx.concurrency);
        for slot in 0..ctx.concurrency {
            workers.push(
                worker::BankWorker::new(slot, ctx.seed, shared.clone())
                    .map_err(WorkloadError::Invalid)?,
            );
        }
        let clients = workers
            .into_iter()
            .map(|mut w| {
                let stop = ctx.stop.clone();
                tokio::spawn(async move { w.run(stop).await })
            })
            .collect();
        let snapshots = Some(tokio::spawn(task.run(ctx.stop.clone())));
        Ok(Box::new(BankRun {
            plan: self.plan.clone(),
            clients,
            snapshots,
            collected: None,
            settled: None,
            cluster: ctx.cluster.clone(),
            client,
            node_ids: ctx.node_ids.clone(),
            reset_clocks: ctx.faults.contains(&FaultKind::Clock),
            phase: ctx.phase.clone(),
            snapshots_path,
        }))
    }

    fn results(&self) -> Vec<(&'static str, serde_json::Value)> {
        let bank = &self.plan;
        vec![(
            "bank",
            serde_json::json!({
                "channels": bank.channels.name(),
                "snapshot_algo": bank.algo.name(),
                "snapshot_interval_s": bank.snapshot_interval.as_secs_f64(),
                "snapshot_timeout_s": bank.snapshot_timeout.as_secs_f64(),
                "initial_balance": bank.initial_balance,
            }),
        )]
    }
}

/// The file the snapshot task streams to, in the results folder.
pub const SNAPSHOTS_FILE: &str = "snapshots.jsonl";

/// The bank part of a running test: its transfer clients and its snapshot task.
struct BankRun {
    plan: BankPlan,
    clients: Vec<tokio::task::JoinHandle<()>>,
    snapshots: Option<tokio::task::JoinHandle<snapshots::Collected>>,
    collected: Option<snapshots::Collected>,
    settled: Option<verdict::Settled>,
    cluster: Arc<dyn Cluster>,
    client: Arc<HttpClient>,
    node_ids: Vec<String>,
    reset_clocks: bool,
    phase: Arc<std::sync::Mutex<&'static str>>,
    snapshots_path: PathBuf,
}

impl WorkloadRun for BankRun {
    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            for c in std::mem::take(&mut self.clients) {
                let _ = c.await;
            }
            if let Some(task) = self.snapshots.take() {
                self.collected = Some(task.await.unwrap_or_else(|e| snapshots::Collected {
                    write_error: Some(format!("the snapshot task crashed: {e}")),
                    ..Default::default()
                }));
            }
        })
    }

    fn settle(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            *self.phase.lock().unwrap() = "drain";
            self.settled = Some(
                settle(
                    &*self.cluster,
                    &self.client,
                    &self.node_ids,
                    &self.plan,
                    self.reset_clocks,
                )
                .await,
            );
        })
    }

    fn judge(self: Box<Self>, _interrupted: Option<&str>) -> Vec<Box<dyn Checker>> {
        vec![Box::new(BankChecker {
            collected: self.collected.unwrap_or_default(),
            settled: self.settled,
            snapshots_path: self.snapshots_path,
        })]
    }
}

/// Snapshot consistency and conservation of money (`checkers.bank` in results.json).
struct BankChecker {
    collected: snapshots::Collected,
    settled: Option<verdict::Settled>,
    snapshots_path: PathBuf,
}

impl Checker for BankChecker {
    fn name(&self) -> &'static str {
        "bank"
    }

    fn check(self: Box<Self>, recorded: &Recorded) -> CheckOutcome {
        eprintln!(
            "faultline run: checking {} ...",
            self.snapshots_path.display()
        );
        let judgement = judge_run(
            self.collected,
            self.settled,
            recorded.interrupted.is_some(),
            &self.snapshots_path,
        );
        let mut outcome = judgement.outcome();
        let s = &judgement.report.summary;
        outcome.summary = Some(format!(
            "snapshots: {} started, {} completed, {} consistent, {} inconsistent, {} incomplete; {}",
            s.started,
            s.completed,
            s.consistent,
            s.inconsistent,
            s.incomplete,
            judgement.final_state.describe()
        ));
        outcome.results = vec![
            ("snapshots", judgement.snapshots_json()),
            (
                "final",
                serde_json::to_value(&judgement.final_state).unwrap_or_default(),
            ),
        ];
        outcome.files = vec![("snapshots", SNAPSHOTS_FILE)];
        outcome
    }
}

/// After the cluster is healed and every node is back: clock offsets back to 0 (a node
/// the clock nemesis could not reach may still be skewed), the drain and final balances,
/// and the transfer log. Must run before the nodes are stopped.
pub async fn settle(
    cluster: &dyn Cluster,
    client: &HttpClient,
    node_ids: &[String],
    plan: &BankPlan,
    reset_clocks: bool,
) -> verdict::Settled {
    if reset_clocks {
        let _ = crate::nemesis::clock::apply(cluster, &vec![0; node_ids.len()]).await;
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
            Err(verdict::LogError::NotFetched(why)),
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
