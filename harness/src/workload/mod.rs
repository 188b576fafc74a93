//! The workload as a value that brings its own phases (Jepsen's client + generator +
//! checker, bundled): the pipeline (`crate::test_run`) calls them in order without
//! knowing which workload it runs.
//!
//! | phase    | when                                   | kv / register            | bank                                  |
//! |----------|----------------------------------------|--------------------------|---------------------------------------|
//! | `start`  | cluster up, history open               | one worker per process   | transfer clients + the snapshot task  |
//! | `stop`   | `stop` turned true (time, signal, disk)| join the workers         | join clients, collect snapshots       |
//! | `settle` | faults healed, nodes answering         | final reads of every key | clocks to 0, drain, conservation, log |
//! | `judge`  | nodes still up; history then closed    | `linearizable`           | `bank` (snapshots + conservation)     |
//!
//! `settle` is skipped when the run was cut short; `judge` always runs, on what was
//! recorded. The registry that maps `--workload` to an implementation is
//! `crate::plan::build_workload`.

pub mod register;

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::watch;

use crate::checkers::Checker;
use crate::fault::FaultKind;
use crate::history::Recorder;
use crate::system::Cluster;
use crate::worker::Stats;

/// What a workload gets to run with.
#[derive(Clone)]
pub struct RunContext {
    pub cluster: Arc<dyn Cluster>,
    pub recorder: Recorder,
    pub stats: Arc<Stats>,
    /// `n1`, `n2`, ... in index order.
    pub node_ids: Vec<String>,
    pub seed: u64,
    /// Client processes (workers).
    pub concurrency: usize,
    pub op_timeout: Duration,
    /// Mean pause between one worker's ops (concurrency / rate); zero = flat out.
    pub mean_gap: Duration,
    /// The results folder (a workload may write its own files there).
    pub dir: PathBuf,
    /// The faults the nemesis may inject (a workload may have to undo their traces).
    pub faults: Vec<FaultKind>,
    /// Turns true when the main phase ends.
    pub stop: watch::Receiver<bool>,
    /// The phase name the progress line shows; a workload may set its own ("drain").
    pub phase: Arc<Mutex<&'static str>>,
}

/// Why a workload could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The workload cannot run on this system or with these settings.
    #[error("{0}")]
    Unsupported(String),
    /// A workload flag is out of range or given to the wrong workload.
    #[error("{0}")]
    Invalid(String),
}

/// A workload, before it runs: its settings and what it asks of the plan.
pub trait Workload: Send + Sync + Debug {
    /// `register`, `kv`, `bank` — as in `--workload` and results.json.
    fn name(&self) -> &'static str;
    /// What judges it, for results.json's `run.model` (e.g. `cas-register`).
    fn model(&self) -> String;
    /// Words the default test name gets after `<mode>-<workload>-<nemesis>`.
    fn name_tags(&self) -> Vec<String> {
        Vec::new()
    }
    /// Flags every node needs for this workload (the bank's `--channels ...`).
    fn node_flags(&self) -> Vec<String> {
        Vec::new()
    }
    /// Refuses a system it cannot run on (checked before anything starts).
    fn supports_system(&self, system: &str) -> Result<(), WorkloadError> {
        let _ = system;
        Ok(())
    }
    /// Starts its clients and background tasks.
    fn start(&self, ctx: &RunContext) -> Result<Box<dyn WorkloadRun>, WorkloadError>;
    /// Settings for results.json (merged at the top level, e.g. `bank`).
    fn results(&self) -> Vec<(&'static str, serde_json::Value)> {
        Vec::new()
    }
}

/// A running workload.
pub trait WorkloadRun: Send {
    /// Waits for its clients and tasks to stop (the stop signal has been sent).
    fn stop(&mut self) -> BoxFuture<'_, ()>;
    /// The cluster is healed and answering: final reads, drain. Skipped when cut short.
    fn settle(&mut self) -> BoxFuture<'_, ()>;
    /// Its checkers, holding what they need; `interrupted` says why settle was skipped.
    /// After this the workload holds no recorder, so the history can close.
    fn judge(self: Box<Self>, interrupted: Option<&str>) -> Vec<Box<dyn Checker>>;
}
