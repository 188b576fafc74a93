//! Where a cluster runs and how faults reach it: the `Backend` trait.
//!
//! The nemesis and the clients only use this trait, so a Docker backend can follow the
//! sandbox without touching them. Fault verbs come in pairs: `kill`/`restart`,
//! `pause`/`resume`, `partition`/`heal`, `start_packet_fault`/`stop_packet_fault`.
//! Calls block briefly (signals, one `nft` run) and are made off the async runtime.

pub mod docker;
pub mod sandbox;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::nemesis::grudge::Grudge;
use crate::nemesis::packet::PacketFault;

/// What the harness knows about one node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// `n1`, `n2`, ...
    pub id: String,
    /// Where the node's client API listens, reachable from the harness.
    pub client_addr: SocketAddr,
}

pub trait Backend: Send + Sync {
    fn nodes(&self) -> &[NodeSpec];
    /// Starts node `i` (again, after a kill), keeping its data directory.
    fn start(&self, i: usize) -> Result<(), String>;
    /// SIGKILLs node `i`; see `start` to bring it back.
    fn kill(&self, i: usize) -> Result<(), String>;
    /// Freezes node `i` (SIGSTOP); see `resume`.
    fn pause(&self, i: usize) -> Result<(), String>;
    /// Thaws node `i` (SIGCONT); see `pause`.
    fn resume(&self, i: usize) -> Result<(), String>;
    /// Replaces the current partition: each node drops packets from its grudge set.
    fn partition(&self, grudge: &Grudge) -> Result<(), String>;
    /// Removes every partition rule at once; see `partition`.
    fn heal(&self) -> Result<(), String>;
    /// Delays, drops, duplicates and reorders packets sent by `from` nodes to other nodes.
    fn start_packet_fault(&self, from: &[usize], fault: PacketFault) -> Result<(), String>;
    /// Lets packets flow freely again (and releases every held packet).
    fn stop_packet_fault(&self) -> Result<(), String>;
    /// Stops every node (SIGKILL after a grace period). Idempotent.
    fn teardown(&self);
}

/// Builds the backend `kind` names and starts its `count` nodes.
pub fn create(
    kind: crate::cli::BackendKind,
    count: usize,
    launch: sandbox::NodeLaunch,
    seed: u64,
) -> Result<Arc<dyn Backend>, String> {
    use crate::cli::BackendKind;
    Ok(match kind {
        BackendKind::Sandbox => Arc::new(sandbox::SandboxBackend::create(count, launch, seed)?),
        BackendKind::Docker => {
            let backend = docker::DockerBackend::create(count, launch, seed)?;
            let (id, label) = (backend.run_id(), docker::RUN_LABEL);
            eprintln!(
                "faultline run: docker backend: label {label}={id}; partitions via {}",
                backend.partition_via().describe()
            );
            Arc::new(backend)
        }
        BackendKind::Compose => Arc::new(docker::DockerBackend::attach_compose(count, launch)?),
    })
}
