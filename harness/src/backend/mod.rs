//! Where a cluster runs and how faults reach it: the `Backend` trait.
//!
//! The nemesis and the clients only use this trait, so a backend can be added without
//! touching them. Fault verbs come in pairs: `kill`/`restart`, `pause`/`resume`,
//! `partition`/`heal`, `start_packet_fault`/`stop_packet_fault`. Calls block briefly
//! (signals, one `nft` run) and are made off the async runtime.
//!
//! A backend knows nothing of what runs on its nodes: it asks the system under test
//! (`crate::system::System`) for each node's command line, given the node's address and
//! data directory. It depends on the fault vocabulary (`crate::fault`) only, never on the
//! nemesis that plans faults or the CLI.
//!
//! - `sandbox` — nodes as child processes in per-node network namespaces.
//! - `docker/` — nodes as containers (`--backend docker` and `--backend compose`).
//! - `packet` — the userspace NFQUEUE packet delayer both use for packet faults.

pub mod docker;
pub mod packet;
pub mod sandbox;

use std::path::PathBuf;
use std::sync::Arc;

use clap::ValueEnum;

use crate::fault::{FaultKind, Grudge, PacketFault};
use crate::sandbox::network::NetworkError;
use crate::system::{System, SystemError};

/// Which backend runs the cluster (`--backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// Private user + network + PID namespaces; no Docker, no root needed.
    Sandbox,
    /// One container per node on an internal Docker network the run creates and removes
    /// (image faultline:latest, see scripts/docker-image.sh).
    Docker,
    /// From inside the docker-compose.yml `test` service: as `docker`, made and faulted
    /// from that container (see docker-compose.yml).
    Compose,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sandbox => "sandbox",
            Self::Docker => "docker",
            Self::Compose => "compose",
        }
    }

    /// Refuses, before anything starts, a fault this backend cannot apply.
    pub fn supports(self, fault: FaultKind) -> Result<(), BackendError> {
        let _ = (self, fault);
        Ok(())
    }
}

/// Why a backend call failed. Every variant's text is one line naming the node or the
/// object and what went wrong.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The plan asks for something this backend cannot do (refused before start).
    #[error("{0}")]
    Unsupported(String),
    /// Something the backend needs on this machine is missing or unreachable (a tool, the
    /// Docker daemon or image, a free network range, a permission).
    #[error("{0}")]
    Unavailable(String),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A command or API call answered with an error (its output is in the text).
    #[error("{0}")]
    Failed(String),
}

impl BackendError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

/// The internal helpers report in plain text; at the trait's boundary their text is a
/// failed step.
impl From<String> for BackendError {
    fn from(text: String) -> Self {
        Self::Failed(text)
    }
}

/// What the harness knows about one node (the system's type: backends fill it in).
pub use crate::system::NodeSpec;

impl From<SystemError> for BackendError {
    fn from(e: SystemError) -> Self {
        Self::Unsupported(e.to_string())
    }
}

impl From<NetworkError> for BackendError {
    fn from(e: NetworkError) -> Self {
        match e {
            NetworkError::NotIsolated(_) | NetworkError::Spawn { .. } => {
                Self::Unavailable(e.to_string())
            }
            other => Self::Failed(other.to_string()),
        }
    }
}

/// What a backend needs to start a cluster: the system, how many nodes, where their logs
/// and data go, and the seed (packet delayers draw from it).
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub system: Arc<dyn System>,
    pub count: usize,
    /// `nodes/` in the results folder: `<id>.log` and `<id>.data/` go here.
    pub dir: PathBuf,
    pub seed: u64,
}

/// The sum of every `counter packets N` in an `nft list` listing.
pub fn nft_counted_packets(listing: &str) -> u64 {
    let words: Vec<&str> = listing.split_whitespace().collect();
    words
        .windows(3)
        .filter(|w| w[0] == "counter" && w[1] == "packets")
        .filter_map(|w| w[2].parse::<u64>().ok())
        .sum()
}

pub trait Backend: Send + Sync {
    fn nodes(&self) -> &[NodeSpec];
    /// Starts node `i` (again, after a kill), keeping its data directory.
    fn start(&self, i: usize) -> Result<(), BackendError>;
    /// SIGKILLs node `i`; see `start` to bring it back.
    fn kill(&self, i: usize) -> Result<(), BackendError>;
    /// Freezes node `i` (SIGSTOP); see `resume`.
    fn pause(&self, i: usize) -> Result<(), BackendError>;
    /// Thaws node `i` (SIGCONT); see `pause`.
    fn resume(&self, i: usize) -> Result<(), BackendError>;
    /// Replaces the current partition: each node drops packets from its grudge set.
    fn partition(&self, grudge: &Grudge) -> Result<(), BackendError>;
    /// How partitions reach the nodes (`nftables`, `admin-api`, ...), for results.json
    /// (`partition_via`); `None` when the backend has one route only.
    fn partition_via(&self) -> Option<&'static str> {
        None
    }
    /// Packets the partition in force has dropped so far, counted by the kernel (nft
    /// `counter` on every cut rule) — the proof that a partition is real packets lost, not
    /// a promise. `None` where the backend has no such count (the admin-API route) or no
    /// rule could be read. A node killed during the cut loses its rules' counts.
    fn partition_drops(&self) -> Option<u64> {
        None
    }
    /// Removes every partition rule at once; see `partition`.
    fn heal(&self) -> Result<(), BackendError>;
    /// Delays, drops, duplicates and reorders packets sent by `from` nodes to other nodes.
    fn start_packet_fault(&self, from: &[usize], fault: PacketFault) -> Result<(), BackendError>;
    /// Lets packets flow freely again (and releases every held packet).
    fn stop_packet_fault(&self) -> Result<(), BackendError>;
    /// Stops every node (SIGKILL after a grace period). Idempotent.
    fn teardown(&self);
}

/// Checks, before any cluster is made or the sandbox entered, that `kind` can run a plan
/// with these faults on this machine.
pub fn preflight(kind: BackendKind, faults: &[FaultKind]) -> Result<(), BackendError> {
    for &fault in faults {
        kind.supports(fault)?;
    }
    let packet_faults = faults.iter().any(|k| k.needs_packet());
    match kind {
        BackendKind::Sandbox => crate::sandbox::preflight(packet_faults)
            .map_err(|e| BackendError::Unavailable(e.to_string())),
        BackendKind::Docker | BackendKind::Compose => {
            docker::preflight(kind == BackendKind::Compose, packet_faults)
        }
    }
}

/// Builds the backend `kind` names and starts its nodes.
pub fn create(kind: BackendKind, launch: &LaunchSpec) -> Result<Arc<dyn Backend>, BackendError> {
    Ok(match kind {
        BackendKind::Sandbox => Arc::new(sandbox::SandboxBackend::create(launch)?),
        BackendKind::Docker => {
            let backend = docker::DockerBackend::create(launch)?;
            let (id, label) = (backend.run_id(), docker::RUN_LABEL);
            eprintln!(
                "faultline run: docker backend: label {label}={id}; partitions via {}",
                backend.partition_via().describe()
            );
            Arc::new(backend)
        }
        BackendKind::Compose => {
            let backend = docker::DockerBackend::create_in_compose(launch)?;
            eprintln!(
                "faultline run: compose backend: label {}={}; partitions via {}",
                docker::RUN_LABEL,
                backend.run_id(),
                backend.partition_via().announce()
            );
            Arc::new(backend)
        }
    })
}
