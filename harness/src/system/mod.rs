//! The system under test as a value: how each node is launched, how clients and the
//! harness talk to it, how its leader is found and its metrics read.
//!
//! Two traits, one per stage:
//!
//! - [`System`] — the plan's side, known before anything starts: the command line of each
//!   node (program, arguments, environment, data directory, ports), which faults and
//!   external nodes it accepts, and [`System::connect`] to a running cluster.
//! - [`Cluster`] — a running cluster's handle: readiness, leader discovery, the op client
//!   (read / write / cas, classified ok / fail / info), metrics, and optional control
//!   calls such as clock offsets.
//!
//! faultline's own nodes are [`faultline::FaultlineSystem`]. A second system (etcd: launch
//! line `etcd --name .. --listen-client-urls ..`, the v3 JSON gateway as its op client,
//! leader via the maintenance status endpoint, Prometheus `/metrics`) is one new module
//! implementing both traits, a [`SystemKind`] variant and one arm in
//! `crate::plan::build_system` (etcd is the second: `etcd`); the pipeline, the backends,
//! the nemesis and the checkers do not change.

pub mod etcd;
pub mod faultline;

use std::any::Any;
use std::collections::HashMap;
use std::fmt::Debug;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use futures_util::future::BoxFuture;
use workloads::{Completion, Op};

use crate::fault::FaultKind;

/// Which system `faultline run --system` tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SystemKind {
    /// faultline's own replica nodes (`faultline node`), in `--mode`.
    Faultline,
    /// etcd 3.4 members (`--etcd-bin`, `--read-consistency`); see `etcd`.
    Etcd,
}

impl SystemKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Faultline => "faultline",
            Self::Etcd => "etcd",
        }
    }

    /// Refuses `--bug` for a system that has no named bugs (they are faultline's own).
    pub fn check_bugs(self, names: &[String]) -> Result<(), SystemError> {
        match (self, names.first()) {
            (Self::Etcd, Some(name)) => Err(SystemError::Unsupported(format!(
                "--bug {name}: named bugs are planted in faultline's own nodes; --system etcd runs etcd as released"
            ))),
            _ => Ok(()),
        }
    }
}

/// What the harness knows about one running node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// `n1`, `n2`, ...
    pub id: String,
    /// Where the node's client API listens, reachable from the harness.
    pub client_addr: std::net::SocketAddr,
}

/// Where one node lives, as its command line must name it. `data_dir` is the path the
/// node itself sees (a host path in the sandbox, `/data` in a container).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSite {
    /// `n1`, `n2`, ...
    pub id: String,
    pub ip: IpAddr,
    pub data_dir: PathBuf,
}

/// How to start one node: `program` (a path on the host; container backends bind-mount
/// it) with `args` and `env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// A system under test, before it runs.
pub trait System: Send + Sync + Debug {
    /// Short name (`faultline`, `etcd`), as in `--system` and results.json.
    fn name(&self) -> &'static str;
    /// One line for the start banner, e.g. `3 passive nodes`.
    fn describe(&self, nodes: usize) -> String;
    /// What the default test name starts with (faultline: the mode, e.g. `passive`).
    fn label(&self) -> String {
        self.name().to_string()
    }
    /// The TCP port of every node's client API (each node has its own address).
    fn client_port(&self) -> u16;
    /// The command line that starts node `node` of `cluster` (every node's site, in
    /// index order). Called again, with the same data directory, to restart after a kill.
    fn node_command(&self, node: usize, cluster: &[NodeSite]) -> NodeCommand;
    /// Refuses a fault this system cannot take part in (e.g. clock offsets need a control
    /// endpoint). Called before anything starts.
    /// The default refuses `clock`, which needs [`Cluster::set_clock`]; every other fault
    /// is applied by the backend and needs nothing of the system.
    fn supports(&self, fault: FaultKind) -> Result<(), SystemError> {
        match fault {
            FaultKind::Clock => Err(SystemError::Unsupported(format!(
                "--nemesis clock needs nodes whose clock can be offset; {} has no such control",
                self.name()
            ))),
            _ => Ok(()),
        }
    }
    /// For nodes something else started (docker compose): refuses one whose environment
    /// says it runs something other than what this value describes.
    fn check_external(&self, id: &str, env: &HashMap<String, String>) -> Result<(), SystemError> {
        let _ = (id, env);
        Ok(())
    }
    /// Headers every control request (admin, peer) carries, e.g. the cluster secret.
    fn admin_headers(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Checkers every run of this system gets, whatever the workload (replica
    /// convergence will be one: it gathers each replica's state after the settle phase).
    fn checkers(&self) -> Vec<Box<dyn crate::checkers::Checker>> {
        Vec::new()
    }
    /// How long teardown waits after SIGTERM before SIGKILL; zero sends SIGKILL at once
    /// (the history is complete by then, and a crash-safe system's data survives it).
    fn stop_grace(&self) -> Duration {
        Duration::from_secs(2)
    }
    /// A handle on the running cluster whose nodes are `nodes`.
    fn connect(&self, nodes: &[NodeSpec]) -> Arc<dyn Cluster>;
}

/// Why a system refuses a plan or a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SystemError {
    /// A fault or setting this system cannot take part in.
    #[error("{0}")]
    Unsupported(String),
    /// A node something else started runs something other than the plan says.
    #[error("{0}")]
    Mismatch(String),
    /// The system's program cannot be found.
    #[error("cannot find {program} to start nodes with: {why}")]
    NoProgram { program: &'static str, why: String },
}

/// Why a control call (clock, admin state, metrics) to a node failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// This system has no such control endpoint.
    #[error("{system} does not support {what}")]
    Unsupported {
        system: &'static str,
        what: &'static str,
    },
    /// The node did not answer, or answered with an error.
    #[error("{node}: {why}")]
    Node { node: String, why: String },
}

/// A running cluster: what the pipeline, the workloads and the nemesis ask of it.
pub trait Cluster: Send + Sync {
    /// Whether node `node` answers at all within `timeout` (its status endpoint).
    fn ready(&self, node: usize, timeout: Duration) -> BoxFuture<'_, bool>;
    /// The node the cluster says leads now, if any (a system without a leader: `None`).
    fn leader(&self) -> BoxFuture<'_, Option<usize>>;
    /// Whether this cluster has a distinguished node at all (a leaderless protocol has
    /// none, so a leader-targeted scenario aims at a seeded random node at once instead of
    /// waiting for a leader that will never be named).
    fn has_leader(&self) -> bool {
        true
    }
    /// Performs `op` on node `node`, classified as in `workloads::Client::invoke`.
    fn invoke<'a>(
        &'a self,
        node: usize,
        op: &'a Op,
        deadline: Duration,
    ) -> BoxFuture<'a, Completion>;
    /// Node `node`'s metrics, as Prometheus text.
    fn metrics(&self, node: usize) -> BoxFuture<'_, Result<String, ControlError>>;
    /// Sets node `node`'s wall-clock offset (0 = none); most systems cannot.
    fn set_clock(&self, node: usize, offset_ms: i64) -> BoxFuture<'_, Result<(), ControlError>> {
        let _ = (node, offset_ms);
        Box::pin(async {
            Err(ControlError::Unsupported {
                system: "this system",
                what: "clock offsets",
            })
        })
    }
    /// Node `node`'s own view of its replicated state, read directly from it (not through
    /// the leader): for a replica-convergence checker after the settle phase. `full` asks
    /// for every key, not just a summary (applied index, digest). The shape is the
    /// system's; most systems have no such endpoint.
    fn replica_state(
        &self,
        node: usize,
        full: bool,
    ) -> BoxFuture<'_, Result<serde_json::Value, ControlError>> {
        let _ = (node, full);
        Box::pin(async {
            Err(ControlError::Unsupported {
                system: "this system",
                what: "reading a replica's state",
            })
        })
    }
    /// The concrete handle, for a workload that only runs on one system (the bank needs
    /// faultline's `/bank/*` routes).
    fn as_any(&self) -> &dyn Any;
}

/// The op client of a cluster as a `workloads::Client`, so `crate::worker::Worker` drives
/// any system.
#[derive(Clone)]
pub struct OpClient(pub Arc<dyn Cluster>);

impl workloads::Client for OpClient {
    async fn invoke(&self, node: usize, op: &Op, deadline: Duration) -> Completion {
        self.0.invoke(node, op, deadline).await
    }
}

/// Waits until every node answers; `Err(node)` names the first that did not.
pub async fn wait_for_nodes(
    cluster: &dyn Cluster,
    n: usize,
    within: Duration,
) -> Result<(), usize> {
    let deadline = Instant::now() + within;
    for i in 0..n {
        while !cluster.ready(i, Duration::from_millis(300)).await {
            if Instant::now() > deadline {
                return Err(i);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Waits (bounded) until the cluster names a leader; returns whether it did.
pub async fn wait_for_leader(cluster: &dyn Cluster, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cluster.leader().await.is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
