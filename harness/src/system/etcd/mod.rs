//! etcd (v3.4, the Debian `etcd-server` package) as the system under test: the first
//! system faultline tests that it did not write.
//!
//! - this file — [`EtcdSystem`] (how members are launched) and [`EtcdCluster`] (a running
//!   cluster: readiness, leader, ops, metrics), the two seams of `crate::system`.
//! - `launch` — a member's command line: name, client and peer URLs on the node's
//!   address, data directory, cluster token, short raft timing.
//! - `client` — read / write / cas over the v3 JSON gateway, classified ok / fail / info;
//!   member status, leader discovery and `/metrics`.
//!
//! etcd keys start absent, which is the checker's default initial value (`nil`), as for
//! faultline's own nodes: nothing to configure.

pub mod client;
pub mod launch;

use std::any::Any;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use clap::ValueEnum;
use futures_util::future::BoxFuture;
use workloads::{Client, Completion, Op};

pub use client::{EtcdClient, MemberStatus};
use launch::{Member, Timing};

use super::NodeSpec;
use super::{Cluster, ControlError, NodeCommand, NodeSite, System, SystemError};

/// The etcd binary used when `--etcd-bin` is not given: `FAULTLINE_ETCD_BIN`, else the
/// Debian package's `/usr/bin/etcd`.
pub fn default_bin() -> PathBuf {
    std::env::var_os("FAULTLINE_ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"))
}

/// The etcd binary for a test named `test`: [`default_bin`] if it exists, else `None`
/// after a loud `*** SKIPPED ***` line on stderr. With `FAULTLINE_REQUIRE_ETCD=1` (which
/// `.ci/run` sets after installing etcd-server) a missing binary panics instead, so CI
/// cannot skip silently.
#[doc(hidden)]
pub fn bin_for_test(test: &str) -> Option<PathBuf> {
    let bin = default_bin();
    if bin.is_file() {
        return Some(bin);
    }
    let reason = format!(
        "no etcd binary at {} (apt-get install etcd-server, or set FAULTLINE_ETCD_BIN)",
        bin.display()
    );
    if std::env::var("FAULTLINE_REQUIRE_ETCD").as_deref() == Ok("1") {
        panic!("{test}: {reason}, and FAULTLINE_REQUIRE_ETCD=1");
    }
    eprintln!("\n*** SKIPPED {test}: {reason} ***\n");
    None
}

/// How reads are served (etcd's `RangeRequest.serializable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ReadConsistency {
    /// Through raft's read index: the member confirms with a quorum that the leader is
    /// still the leader and waits until it has applied that commit index (etcd's default).
    #[default]
    Linearizable,
    /// From the member's local state, without asking anyone: may be stale.
    Serializable,
}

impl ReadConsistency {
    pub fn name(self) -> &'static str {
        match self {
            Self::Linearizable => "linearizable",
            Self::Serializable => "serializable",
        }
    }
}

/// etcd members started from one binary, all with the same read consistency.
#[derive(Debug, Clone)]
pub struct EtcdSystem {
    pub bin: PathBuf,
    /// What `<bin> --version` says (`3.4.23`).
    pub version: String,
    pub consistency: ReadConsistency,
    /// `--initial-cluster-token`: fresh per run, so no member of another run can join.
    pub token: String,
    pub timing: Timing,
}

impl EtcdSystem {
    /// Checks that `bin` runs and is an etcd (`<bin> --version`); refuses it in one line
    /// otherwise.
    pub fn new(bin: &Path, consistency: ReadConsistency) -> Result<Self, SystemError> {
        let no_program = |why: String| {
            SystemError::NoProgram {
            program: "the etcd binary (--etcd-bin, FAULTLINE_ETCD_BIN; Debian: apt-get install etcd-server)",
            why,
        }
        };
        let out = Command::new(bin)
            .arg("--version")
            .output()
            .map_err(|e| no_program(format!("{}: {e}", bin.display())))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let version = text
            .lines()
            .find_map(|l| l.strip_prefix("etcd Version:"))
            .map(|v| v.trim().to_string())
            .filter(|_| out.status.success())
            .ok_or_else(|| {
                no_program(format!(
                    "{} --version printed {:?}, not an etcd version",
                    bin.display(),
                    text.lines().next().unwrap_or("").trim()
                ))
            })?;
        Ok(Self {
            bin: bin.to_path_buf(),
            version,
            consistency,
            token: format!("faultline-{:016x}", rand::random::<u64>()),
            timing: Timing::default(),
        })
    }
}

impl System for EtcdSystem {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn describe(&self, nodes: usize) -> String {
        format!(
            "{nodes} etcd {} members ({} reads)",
            self.version,
            self.consistency.name()
        )
    }

    fn label(&self) -> String {
        match self.consistency {
            ReadConsistency::Linearizable => "etcd".into(),
            ReadConsistency::Serializable => "etcd-serializable".into(),
        }
    }

    fn client_port(&self) -> u16 {
        launch::CLIENT_PORT
    }

    fn node_command(&self, node: usize, cluster: &[NodeSite]) -> NodeCommand {
        let members: Vec<Member> = cluster
            .iter()
            .map(|s| Member::new(s.id.clone(), s.ip))
            .collect();
        NodeCommand {
            program: self.bin.clone(),
            args: launch::args(
                node,
                &members,
                &cluster[node].data_dir,
                &self.token,
                self.timing,
            ),
            env: Vec::new(),
        }
    }

    fn check_external(&self, id: &str, _env: &HashMap<String, String>) -> Result<(), SystemError> {
        Err(SystemError::Mismatch(format!(
            "compose node {id} runs faultline's own node, not etcd; use --backend sandbox or docker with --system etcd"
        )))
    }

    /// SIGKILL at teardown, as for the nemesis's kill: on SIGTERM an etcd leader first
    /// tries to hand leadership over (`TransferLeadership`), which took 1.4 s and more of
    /// every 5-member run's teardown here; etcd's WAL is crash-safe, so the data directory
    /// kept in the results folder is as good after SIGKILL.
    fn stop_grace(&self) -> Duration {
        Duration::ZERO
    }

    fn connect(&self, nodes: &[NodeSpec]) -> Arc<dyn Cluster> {
        let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
        let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.client_addr).collect();
        Arc::new(EtcdCluster {
            client: EtcdClient::new(&ids, &addrs, self.consistency),
            ids,
        })
    }
}

/// A running etcd cluster.
pub struct EtcdCluster {
    client: EtcdClient,
    ids: Vec<String>,
}

impl Cluster for EtcdCluster {
    fn ready(&self, node: usize, timeout: Duration) -> BoxFuture<'_, bool> {
        Box::pin(async move { self.client.status(node, timeout).await.is_some() })
    }

    fn leader(&self) -> BoxFuture<'_, Option<usize>> {
        Box::pin(self.client.leader())
    }

    fn invoke<'a>(
        &'a self,
        node: usize,
        op: &'a Op,
        deadline: Duration,
    ) -> BoxFuture<'a, Completion> {
        Box::pin(Client::invoke(&self.client, node, op, deadline))
    }

    fn metrics(&self, node: usize) -> BoxFuture<'_, Result<String, ControlError>> {
        Box::pin(async move {
            self.client
                .metrics(node, Duration::from_secs(2))
                .await
                .map_err(|why| ControlError::Node {
                    node: self.ids[node].clone(),
                    why,
                })
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests;
