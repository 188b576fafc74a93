//! One client worker — a Jepsen *process*: takes ops from its generator, invokes them
//! through the `Client`, records invoke and completion, and after an `info` continues
//! under a new process id (its old op may still be pending forever).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use workloads::{Client, Completion, Generator, Op, OpFn};

use crate::history::{Event, Recorder};

/// Counters for the progress line and the summary.
#[derive(Debug, Default)]
pub struct Stats {
    pub ok: AtomicU64,
    pub fail: AtomicU64,
    pub info: AtomicU64,
    /// Bank snapshots so far, as judged live without the transfer log (the final
    /// judgement, with it, is in the results).
    pub snapshots_started: AtomicU64,
    pub snapshots_consistent: AtomicU64,
    pub snapshots_inconsistent: AtomicU64,
    pub snapshots_incomplete: AtomicU64,
    /// Answers that disagree with the run or do not parse (a node defect).
    pub snapshots_defective: AtomicU64,
}

impl Stats {
    pub fn count(&self, c: &Completion) {
        let counter = match c {
            Completion::Ok { .. } => &self.ok,
            Completion::Fail { .. } => &self.fail,
            Completion::Info { .. } => &self.info,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn completed(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
            + self.fail.load(Ordering::Relaxed)
            + self.info.load(Ordering::Relaxed)
    }
}

/// What every worker shares.
pub struct Shared<C> {
    pub client: Arc<C>,
    pub recorder: Recorder,
    pub stats: Arc<Stats>,
    pub node_ids: Vec<String>,
    pub op_timeout: Duration,
    /// Mean pause between one worker's ops (concurrency / rate); zero = flat out.
    pub mean_gap: Duration,
    pub concurrency: u64,
}

impl<C> Shared<C> {
    /// Counts a finished op of `process`. After an `info` the op may still be in flight,
    /// so that process can never invoke again: the worker goes on under a fresh id.
    pub(crate) fn settle(&self, process: &mut u64, completion: &Completion) {
        self.stats.count(completion);
        if matches!(completion, Completion::Info { .. }) {
            *process += self.concurrency;
        }
    }
}

/// The gap between one worker's ops, cut short when `stop` changes.
pub(crate) async fn pause(gap: Duration, stop: &mut watch::Receiver<bool>) {
    if !gap.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(gap) => {}
            _ = stop.changed() => {}
        }
    }
}

pub struct Worker<C> {
    slot: usize,
    process: u64,
    generator: Generator,
    shared: Arc<Shared<C>>,
    touched: BTreeSet<Option<String>>,
}

impl<C: Client> Worker<C> {
    pub fn new(slot: usize, generator: Generator, shared: Arc<Shared<C>>) -> Self {
        Self {
            slot,
            process: slot as u64,
            generator,
            shared,
            touched: BTreeSet::new(),
        }
    }

    fn node(&self) -> usize {
        self.slot % self.shared.node_ids.len()
    }

    async fn invoke(&mut self, op: Op) -> Completion {
        let shared = &*self.shared;
        let node = self.node();
        let invoke = Event::invoke(self.process, &op, &shared.node_ids[node], 0);
        shared.recorder.record(invoke.clone());
        let completion = shared.client.invoke(node, &op, shared.op_timeout).await;
        shared
            .recorder
            .record(Event::complete(&invoke, &completion, 0));
        shared.settle(&mut self.process, &completion);
        completion
    }

    /// The main phase: ops until `stop` turns true.
    pub async fn run(&mut self, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            let op = self.generator.next_op();
            self.touched.insert(op.key.clone());
            self.invoke(op).await;
            pause(self.generator.stagger(self.shared.mean_gap), &mut stop).await;
        }
    }

    /// After recovery: read every key this worker touched, retrying a few times, so the
    /// history ends with each key's settled value.
    pub async fn final_reads(&mut self, attempts: usize) {
        for key in std::mem::take(&mut self.touched) {
            for attempt in 0..attempts {
                let op = Op {
                    key: key.clone(),
                    f: OpFn::Read,
                };
                if let Completion::Ok { .. } = self.invoke(op).await {
                    break;
                }
                if attempt + 1 < attempts {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}
