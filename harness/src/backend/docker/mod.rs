//! Nodes as Docker containers, driven through the Docker Engine API (`bollard`).
//!
//! Two flavours share this code:
//!
//! - `--backend docker` (`DockerBackend::create`): the harness makes everything itself —
//!   an internal bridge network (`internal: true`, an explicit /24 in 10.213.0.0/16, no
//!   route out) and one container per node at a pinned address. Containers run the
//!   system's own command line (`crate::system::System::node_command`) with its program
//!   bind-mounted at `/sut/<file name>` — for faultline's nodes the harness's own binary,
//!   so nodes can never be a stale build; the image (`scripts/docker-image.sh`) only has
//!   to supply the shared libraries. Each node's data directory is a bind mount of
//!   `nodes/<id>.data/` in the results folder, so a killed and restarted container keeps
//!   its state. Partitions are nftables rules inside each container's network namespace,
//!   applied from the host with `nsenter -t <pid> -n nft` (needs root and `nft`); without
//!   them, the nodes' own `/admin/isolate` is used instead (see below).
//! - `--backend compose` (`DockerBackend::attach_compose`): the nodes are containers a
//!   `docker-compose.yml` already started (labelled `faultline.node=<id>`); the harness,
//!   usually itself the compose file's `test` service with the Docker socket mounted,
//!   finds them, kills/starts and pauses/unpauses them by id, and partitions through the
//!   nodes' `POST /admin/isolate` / `/admin/heal` — an application-level drop, since a
//!   container cannot reach its siblings' network namespaces.
//!   When the test ends it removes the node containers too (their logs are saved
//!   first): a node's data lives in its container, and a cluster left with one test's
//!   data would make the next test's history look wrong. The next `up` makes them anew.
//!
//! Kill is `docker kill` (SIGKILL) then `docker start`; pause is `docker pause` (the
//! cgroup freezer). Packet faults (docker flavour only) reuse the sandbox's NFQUEUE
//! delayer: one per faulted node, its queue bound inside that container's network
//! namespace (a thread `setns`es there before starting it), with iptables OUTPUT rules
//! in the same namespace steering the node's packets to its peers, and nft `dup` for
//! duplicates. The compose flavour refuses `--nemesis packet` at start.
//!
//! Everything `create` makes carries the label `faultline.run=<run id>` plus the
//! harness's PID and process start time, and is removed on teardown (normal exit, error,
//! Ctrl-C). A harness killed with SIGKILL cannot clean up; the next `--backend docker` run
//! removes whatever a dead harness left (its PID is gone or belongs to another process).
//!
//! Backend calls are synchronous (see `Backend`), bollard is async: the backend owns a
//! small runtime of its own and blocks on it, from a scoped thread when the caller is
//! itself inside a runtime (block_on would panic there).
//!
//! One job per file: `engine` (daemon connection, runtime), `network` (the run's network,
//! routing checks), `containers` (creating the nodes' containers, their logs), `compose`
//! (attaching to a compose project, the admin-API partition route), `netns` (nftables and
//! packet faults inside a container's namespace), `leftovers` (ownership labels, removing
//! a dead run's objects); this file holds the lifecycle verbs of `Backend`.

mod compose;
mod containers;
mod engine;
mod leftovers;
mod netns;
mod network;

use std::future::Future;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{KillContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::Docker;

use super::{Backend, BackendError, NodeSpec};
use crate::fault::{Grudge, PacketFault};
use engine::{api_error, block_on, is_not_found};
use netns::{steer_rule, PacketState};

pub use compose::{leave_compose_network, LEAVE_NETWORK_ENV};
pub use netns::preflight;

/// The image the containers run (override with `FAULTLINE_IMAGE`).
pub const DEFAULT_IMAGE: &str = "faultline:latest";

/// Label on everything a `--backend docker` run creates; the value is the run id.
pub const RUN_LABEL: &str = "faultline.run";

/// Label naming the node a compose service runs (`faultline.node: n1`).
pub const NODE_LABEL: &str = "faultline.node";

/// How partitions reach the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionVia {
    /// nftables in each container's network namespace: real dropped packets.
    Nftables,
    /// The nodes' `/admin/isolate`: each node refuses and stops sending to its grudge set.
    AdminApi,
}

impl PartitionVia {
    /// The name in results.json (`partition_via`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Nftables => "nftables",
            Self::AdminApi => "admin-api",
        }
    }

    /// `describe`, with the fallback said loudly.
    pub fn announce(self) -> String {
        match self {
            Self::Nftables => self.describe().to_string(),
            Self::AdminApi => format!(
                "{} — FALLBACK: this process cannot enter the nodes' network namespaces \
                 (needs root, pid: host, cap_add NET_ADMIN + SYS_ADMIN, nft and nsenter); no packet is dropped",
                self.describe()
            ),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Nftables => "nftables in each container's network namespace",
            Self::AdminApi => "the nodes' /admin/isolate API (application-level drop)",
        }
    }
}

/// One node's container.
#[derive(Debug, Clone)]
struct Node {
    /// Container id (compose) or name (created here); both work in every API call.
    container: String,
    addr: Ipv4Addr,
}

pub struct DockerBackend {
    rt: Option<tokio::runtime::Runtime>,
    docker: Docker,
    http: reqwest::Client,
    /// Headers every admin request carries (the cluster secret).
    admin_headers: Vec<(String, String)>,
    specs: Vec<NodeSpec>,
    nodes: Vec<Node>,
    /// The network this run created (removed on teardown); `None` for compose.
    network: Option<String>,
    partition_via: PartitionVia,
    /// The `faultline.run` label value of everything this run made (empty for compose).
    run_id: String,
    /// Seeds the packet delayers.
    seed: u64,
    /// The packet fault in force, per faulted node.
    packet: Mutex<Vec<PacketState>>,
    /// The partition in force (nftables route): a container started again gets a new
    /// network namespace, without the rules, so `start` puts its side of the cut back.
    cut: Mutex<Option<Grudge>>,
    /// `nodes/` in the results folder: `<id>.log` is written here on teardown.
    log_dir: PathBuf,
    torn_down: AtomicBool,
    /// Set when the harness itself runs in a container (the compose file's `test`
    /// service): its id, and how its paths map to the host's.
    site: Option<compose::InContainer>,
}

impl DockerBackend {
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn partition_via(&self) -> PartitionVia {
        self.partition_via
    }

    fn block<F>(&self, f: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        block_on(self.rt.as_ref().expect("the runtime lives until drop"), f)
    }

    async fn inspect(&self, i: usize) -> Result<ContainerInspectResponse, BackendError> {
        let name = &self.nodes[i].container;
        self.docker
            .inspect_container(name, None)
            .await
            .map_err(|e| api_error(&format!("inspecting {}", self.specs[i].id), e))
    }

    /// (running, paused, pid) of node `i`'s container.
    fn state(&self, i: usize) -> Result<(bool, bool, i64), BackendError> {
        let info = self.block(self.inspect(i))?;
        let state = info.state.unwrap_or_default();
        Ok((
            state.running.unwrap_or(false),
            state.paused.unwrap_or(false),
            state.pid.unwrap_or(0),
        ))
    }
}

impl DockerBackend {
    /// Node `i`'s side of `grudge`: an input chain dropping (and counting) packets from
    /// every peer it holds a grudge against. Delete-and-recreate in one transaction, as in
    /// the sandbox: the new partition replaces the old one atomically, per node.
    fn cut_script(&self, i: usize, grudge: &Grudge) -> String {
        let mut rules = String::new();
        for (dst, srcs) in grudge.iter().filter(|(d, _)| **d == i) {
            for src in srcs {
                rules.push_str(&format!(
                    "    ip saddr {} ip daddr {} counter drop\n",
                    self.nodes[*src].addr, self.nodes[*dst].addr
                ));
            }
        }
        format!(
            "table inet faultline\ndelete table inet faultline\ntable inet faultline {{\n  chain cut {{\n    type filter hook input priority -10; policy accept;\n{rules}  }}\n}}\n"
        )
    }
}

impl Backend for DockerBackend {
    fn nodes(&self) -> &[NodeSpec] {
        &self.specs
    }

    fn partition_via(&self) -> Option<&'static str> {
        Some(self.partition_via.name())
    }

    fn start(&self, i: usize) -> Result<(), BackendError> {
        let (running, _, _) = self.state(i)?;
        if running {
            return Ok(());
        }
        let name = &self.nodes[i].container;
        self.block(self.docker.start_container(name, None))
            .map_err(|e| api_error(&format!("starting {}", self.specs[i].id), e))?;
        // A killed majority restarted apart must come back cut off on its own side too
        // (the sandbox's rules live outside the nodes and need no such step). The node's
        // first milliseconds run before the rules are in; its peers' rules drop its
        // packets meanwhile.
        let cut = self.cut.lock().unwrap().clone();
        match (self.partition_via, cut) {
            (PartitionVia::Nftables, Some(grudge)) => self.nft_in(i, &self.cut_script(i, &grudge)),
            _ => Ok(()),
        }
    }

    fn kill(&self, i: usize) -> Result<(), BackendError> {
        let (running, paused, _) = self.state(i)?;
        if !running {
            return Ok(());
        }
        let name = &self.nodes[i].container;
        self.block(async {
            // The daemon refuses to kill a frozen container.
            if paused {
                self.docker.unpause_container(name).await?;
            }
            let opts = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
            self.docker.kill_container(name, Some(opts)).await
        })
        .map_err(|e| api_error(&format!("killing {}", self.specs[i].id), e))?;
        // The kill call returns once the signal is sent; wait until the daemon has seen
        // the exit, so an immediate start is not taken for "already running".
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.state(i)?.0 {
            if Instant::now() > deadline {
                return Err(
                    format!("{} still running 10 s after SIGKILL", self.specs[i].id).into(),
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn pause(&self, i: usize) -> Result<(), BackendError> {
        let (running, paused, _) = self.state(i)?;
        if !running || paused {
            return Ok(());
        }
        self.block(self.docker.pause_container(&self.nodes[i].container))
            .map_err(|e| api_error(&format!("pausing {}", self.specs[i].id), e))
    }

    fn resume(&self, i: usize) -> Result<(), BackendError> {
        let (_, paused, _) = self.state(i)?;
        if !paused {
            return Ok(());
        }
        self.block(self.docker.unpause_container(&self.nodes[i].container))
            .map_err(|e| api_error(&format!("resuming {}", self.specs[i].id), e))
    }

    fn partition(&self, grudge: &Grudge) -> Result<(), BackendError> {
        match self.partition_via {
            PartitionVia::Nftables => {
                *self.cut.lock().unwrap() = Some(grudge.clone());
                for i in 0..self.nodes.len() {
                    self.nft_in(i, &self.cut_script(i, grudge))?;
                }
                Ok(())
            }
            PartitionVia::AdminApi => {
                self.heal()?;
                for (dst, srcs) in grudge.iter() {
                    let peers: Vec<&str> =
                        srcs.iter().map(|s| self.specs[*s].id.as_str()).collect();
                    self.admin(
                        *dst,
                        "/admin/isolate",
                        serde_json::json!({ "peers": peers }),
                    )?;
                }
                Ok(())
            }
        }
    }

    fn partition_drops(&self) -> Option<u64> {
        if self.partition_via != PartitionVia::Nftables {
            return None;
        }
        let mut total = None;
        for i in 0..self.nodes.len() {
            let Ok((true, _, pid)) = self.state(i) else {
                continue;
            };
            if let Ok(listing) =
                self.output_in_netns(i, pid, "nft", &["list", "table", "inet", "faultline"], None)
            {
                *total.get_or_insert(0) += crate::backend::nft_counted_packets(&listing);
            }
        }
        total
    }

    fn heal(&self) -> Result<(), BackendError> {
        *self.cut.lock().unwrap() = None;
        let mut first_err = None;
        for i in 0..self.nodes.len() {
            let result = match self.partition_via {
                PartitionVia::Nftables => {
                    self.nft_in(i, "table inet faultline\ndelete table inet faultline\n")
                }
                // A node that is down or frozen cannot be told; a restarted node starts
                // healed anyway (isolation lives in its memory only).
                PartitionVia::AdminApi => match self.state(i) {
                    Ok((true, false, _)) => self.admin(i, "/admin/heal", serde_json::json!({})),
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = result {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn start_packet_fault(&self, from: &[usize], fault: PacketFault) -> Result<(), BackendError> {
        if self.partition_via != PartitionVia::Nftables {
            return Err(BackendError::Unsupported(
                "packet faults need root, nft and iptables on the host (the compose backend has none)".into(),
            ));
        }
        self.stop_packet_fault()?;
        for &src in from {
            if let Err(e) = self.install_packet_fault(src, fault) {
                let _ = self.stop_packet_fault();
                return Err(e);
            }
        }
        Ok(())
    }

    fn stop_packet_fault(&self) -> Result<(), BackendError> {
        let states = std::mem::take(&mut *self.packet.lock().unwrap());
        let mut first_err = None;
        for state in states {
            // The container may have been killed since: its namespace (and rules) is gone.
            let alive = matches!(self.state(state.node), Ok((true, _, pid)) if pid == state.pid);
            if alive {
                let src = self.nodes[state.node].addr;
                for peer in &state.steered {
                    let rule = steer_rule(src, *peer);
                    let mut args = vec!["-D"];
                    args.extend(rule.iter().map(String::as_str));
                    if let Err(e) =
                        self.run_in_netns(state.node, state.pid, "iptables", &args, None)
                    {
                        first_err.get_or_insert(e);
                    }
                }
                if let Err(e) = self.run_in_netns(
                    state.node,
                    state.pid,
                    "nft",
                    &["-f", "-"],
                    Some("table ip faultline_dup\ndelete table ip faultline_dup\n"),
                ) {
                    first_err.get_or_insert(e);
                }
            }
            // Releases every held packet, then stops the delayer's thread.
            state.delayer.set(None);
            drop(state.delayer);
        }
        first_err.map_or(Ok(()), Err)
    }

    fn teardown(&self) {
        if self.torn_down.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = self.stop_packet_fault();
        self.save_logs();
        let containers: Vec<String> = self.nodes.iter().map(|n| n.container.clone()).collect();
        let network = self.network.clone();
        self.block(async {
            for name in &containers {
                let opts = RemoveContainerOptionsBuilder::new()
                    .force(true)
                    .v(true)
                    .build();
                if let Err(e) = self.docker.remove_container(name, Some(opts)).await {
                    if !is_not_found(&e) {
                        eprintln!("faultline run: warning: removing container {name}: {e}");
                    }
                }
            }
            if let Some(net) = network {
                if let Some(site) = &self.site {
                    let opts = bollard::models::NetworkDisconnectRequest {
                        container: site.container.clone(),
                        force: Some(true),
                    };
                    let _ = self.docker.disconnect_network(&net, opts).await;
                }
                if let Err(e) = self.docker.remove_network(&net).await {
                    if !is_not_found(&e) {
                        eprintln!("faultline run: warning: removing network {net}: {e}");
                    }
                }
            }
        });
    }
}

impl Drop for DockerBackend {
    fn drop(&mut self) {
        self.teardown();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
