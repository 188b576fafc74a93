//! The register workloads (`register`, `kv`): one Jepsen worker per client process doing
//! seeded reads, writes and cas over the keys, final reads of every key touched, and the
//! linearizability checker over the whole history.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use workloads::{Model, WorkloadKind};

use super::{RunContext, Workload, WorkloadError, WorkloadRun};
use crate::checkers::linearizable::Linearizable;
use crate::checkers::Checker;
use crate::system::OpClient;
use crate::worker::{Shared, Worker};

/// How many times a final read is tried before the key is left unread.
const FINAL_READ_ATTEMPTS: usize = 5;

#[derive(Debug, Clone, Copy)]
pub struct RegisterWorkload {
    kind: WorkloadKind,
    keys: usize,
    model: Model,
    /// Percent of writes that are rolls (`--nondeterministic`).
    rolls: u32,
    /// Whether the nodes run with `--deterministic-roll` (recorded in results.json).
    deterministic_roll: bool,
}

impl RegisterWorkload {
    pub fn new(kind: WorkloadKind, keys: usize) -> Result<Self, WorkloadError> {
        let model = workloads::build(kind, keys)
            .ok_or_else(|| {
                WorkloadError::Unsupported(format!("{} is not a register workload", kind.name()))
            })?
            .model();
        Ok(Self {
            kind,
            keys,
            model,
            rolls: 0,
            deterministic_roll: false,
        })
    }

    /// `percent` of writes become rolls; `deterministic` records the nodes' setting.
    pub fn with_rolls(mut self, percent: u32, deterministic: bool) -> Self {
        self.rolls = percent.min(100);
        self.deterministic_roll = deterministic;
        self
    }
}

impl Workload for RegisterWorkload {
    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn model(&self) -> String {
        self.model.name().to_string()
    }

    fn name_tags(&self) -> Vec<String> {
        let mut tags = Vec::new();
        if self.rolls > 0 {
            tags.push(format!("roll{}", self.rolls));
        }
        if self.deterministic_roll {
            tags.push("detroll".into());
        }
        tags
    }

    fn results(&self) -> Vec<(&'static str, serde_json::Value)> {
        if self.rolls == 0 && !self.deterministic_roll {
            return Vec::new();
        }
        vec![(
            "rolls",
            serde_json::json!({
                "percent_of_writes": self.rolls,
                "deterministic_roll": self.deterministic_roll,
            }),
        )]
    }

    fn start(&self, ctx: &RunContext) -> Result<Box<dyn WorkloadRun>, WorkloadError> {
        let workload = workloads::build(self.kind, self.keys).ok_or_else(|| {
            WorkloadError::Unsupported(format!("{} is not a register workload", self.kind.name()))
        })?;
        let shared = Arc::new(Shared {
            client: Arc::new(OpClient(ctx.cluster.clone())),
            recorder: ctx.recorder.clone(),
            stats: ctx.stats.clone(),
            node_ids: ctx.node_ids.clone(),
            op_timeout: ctx.op_timeout,
            mean_gap: ctx.mean_gap,
            concurrency: ctx.concurrency as u64,
        });
        let workers = (0..ctx.concurrency)
            .map(|slot| {
                let mut worker = Worker::new(
                    slot,
                    workload.generator(ctx.seed, slot).with_rolls(self.rolls),
                    shared.clone(),
                );
                let stop = ctx.stop.clone();
                tokio::spawn(async move {
                    worker.run(stop).await;
                    worker
                })
            })
            .collect();
        Ok(Box::new(RegisterRun {
            running: workers,
            stopped: Vec::new(),
            model: self.model,
            phase: ctx.phase.clone(),
        }))
    }
}

struct RegisterRun {
    running: Vec<tokio::task::JoinHandle<Worker<OpClient>>>,
    /// Workers after the main phase, kept for their final reads.
    stopped: Vec<Worker<OpClient>>,
    model: Model,
    phase: Arc<std::sync::Mutex<&'static str>>,
}

impl WorkloadRun for RegisterRun {
    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            for w in std::mem::take(&mut self.running) {
                if let Ok(w) = w.await {
                    self.stopped.push(w);
                }
            }
        })
    }

    fn settle(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            *self.phase.lock().unwrap() = "final reads";
            let reads: Vec<_> = std::mem::take(&mut self.stopped)
                .into_iter()
                .map(|mut w| {
                    tokio::spawn(async move {
                        w.final_reads(FINAL_READ_ATTEMPTS).await;
                    })
                })
                .collect();
            for r in reads {
                let _ = r.await;
            }
        })
    }

    fn judge(self: Box<Self>, _interrupted: Option<&str>) -> Vec<Box<dyn Checker>> {
        vec![Box::new(Linearizable { model: self.model })]
    }
}
