//! etcd (v3.4, the Debian `etcd-server` package) as a system under test: the first
//! system faultline tests that it did not write.
//!
//! - `launch` — a member's command line: names, client and peer URLs on the node's
//!   address, data directory, cluster token, short raft timing.
//! - `client` — read / write / cas over the v3 JSON gateway, classified ok / fail / info;
//!   member status, leader discovery and `/metrics`.

pub mod client;
pub mod launch;

use std::path::PathBuf;

use clap::ValueEnum;

pub use client::{EtcdClient, MemberStatus};

/// The etcd binary used when `--etcd-bin` is not given: `FAULTLINE_ETCD_BIN`, else the
/// Debian package's `/usr/bin/etcd`.
pub fn default_bin() -> PathBuf {
    std::env::var_os("FAULTLINE_ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"))
}

/// How reads are served (etcd's `RangeRequest.serializable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ReadConsistency {
    /// Through raft's read index: the member confirms with a quorum that it is (or asks)
    /// the current leader and waits until it has applied the commit index (etcd's default).
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

#[cfg(test)]
mod tests;
