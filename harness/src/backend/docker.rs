//! Nodes as Docker containers, driven through the Docker Engine API (`bollard`).
//!
//! Two flavours share this code:
//!
//! - `--backend docker` (`DockerBackend::create`): the harness makes everything itself —
//!   an internal bridge network (`internal: true`, an explicit /24 in 10.213.0.0/16, no
//!   route out) and one container per node at a pinned address. Containers run the
//!   harness's own binary, bind-mounted over the image's `/faultline`, so nodes can never
//!   be a stale build; the image (`scripts/docker-image.sh`) only has to supply the
//!   shared libraries. Each node's data directory is a bind mount of
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

use std::collections::HashMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerSummary, EndpointIpamConfig,
    EndpointSettings, HostConfig, Ipam, IpamConfig, NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    ListNetworksOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;

use super::sandbox::{NodeLaunch, NODE_PORT};
use super::{Backend, NodeSpec};
use crate::nemesis::grudge::Grudge;
use crate::nemesis::packet::{PacketDelayer, PacketFault, QUEUE_NUM};

/// The image the containers run (override with `FAULTLINE_IMAGE`).
pub const DEFAULT_IMAGE: &str = "faultline:latest";
/// Label on everything a `--backend docker` run creates; the value is the run id.
pub const RUN_LABEL: &str = "faultline.run";
/// Label naming the node a compose service runs (`faultline.node: n1`).
pub const NODE_LABEL: &str = "faultline.node";
const PID_LABEL: &str = "faultline.pid";
const PID_START_LABEL: &str = "faultline.pid-start";
/// Test networks are /24s inside this /16, one per run; 10.213 is not used by Docker's
/// default pools, and each candidate is checked against the host's routes first.
const SUBNET_BASE: [u8; 2] = [10, 213];
/// The harness-side address of a node's network is .1 (the bridge), nodes are .11, .12, ...
const FIRST_NODE_HOST: u8 = 11;

/// The one-line answer when the daemon cannot be reached.
fn unreachable(e: impl std::fmt::Display) -> String {
    format!(
        "the Docker daemon is not reachable ({e}); start it (`dockerd &`, or `systemctl start docker`) \
         or use --backend sandbox"
    )
}

/// Connects to the local daemon (`DOCKER_HOST` or `/var/run/docker.sock`) and agrees on an
/// API version, so an older engine (e.g. 20.10, API 1.41) is spoken to in its own version.
async fn connect() -> Result<Docker, String> {
    let docker = Docker::connect_with_local_defaults().map_err(unreachable)?;
    let docker = tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version())
        .await
        .map_err(|_| unreachable("no answer within 10 s"))?
        .map_err(unreachable)?;
    docker.ping().await.map_err(unreachable)?;
    Ok(docker)
}

/// A small multi-thread runtime: `block_on` may be entered from several threads at once.
fn own_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("docker-backend")
        .enable_all()
        .build()
        .map_err(|e| format!("starting the Docker backend's runtime: {e}"))
}

/// Runs `f` to completion on `rt`, from whatever thread calls.
fn block_on<F>(rt: &tokio::runtime::Runtime, f: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| {
            s.spawn(|| rt.block_on(f))
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    } else {
        rt.block_on(f)
    }
}

/// How partitions reach the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionVia {
    /// nftables in each container's network namespace: real dropped packets.
    Nftables,
    /// The nodes' `/admin/isolate`: each node refuses and stops sending to its grudge set.
    AdminApi,
}

impl PartitionVia {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Nftables => "nftables in each container's network namespace",
            Self::AdminApi => "the nodes' /admin/isolate API (application-level drop)",
        }
    }
}

/// A packet fault on one node: the iptables rules that steer its packets to the
/// delayer, and the delayer (bound to a queue in that node's network namespace).
struct PacketState {
    node: usize,
    pid: i64,
    /// Peers whose packets are steered (one OUTPUT rule each).
    steered: Vec<Ipv4Addr>,
    delayer: PacketDelayer,
}

/// The iptables rule (without -A/-D) that queues `src`'s packets to `dst`; `bypass` lets
/// traffic through untouched if the delayer is gone.
fn steer_rule(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<String> {
    [
        "OUTPUT",
        "-s",
        &src.to_string(),
        "-d",
        &dst.to_string(),
        "-j",
        "NFQUEUE",
        "--queue-num",
        &QUEUE_NUM.to_string(),
        "--queue-bypass",
    ]
    .map(String::from)
    .to_vec()
}

/// Starts a packet delayer whose queue lives in the network namespace of process `pid`:
/// a dedicated thread enters the namespace (setns is per thread) and starts the delayer
/// there, whose own thread inherits the namespace.
fn delayer_in_netns(pid: i64, seed: u64) -> Result<PacketDelayer, String> {
    let path = format!("/proc/{pid}/ns/net");
    std::thread::Builder::new()
        .name("netns-enter".into())
        .spawn(move || {
            let ns = std::fs::File::open(&path).map_err(|e| format!("opening {path}: {e}"))?;
            use std::os::fd::AsRawFd;
            // SAFETY: a valid namespace fd; only this short-lived thread changes namespace.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!(
                    "entering {path}: {}",
                    std::io::Error::last_os_error()
                ));
            }
            PacketDelayer::start(seed)
        })
        .map_err(|e| format!("starting a thread for the packet delayer: {e}"))?
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
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
    /// `nodes/` in the results folder: `<id>.log` is written here on teardown.
    log_dir: PathBuf,
    torn_down: AtomicBool,
}

/// Whether the nftables route is open to this process: root, with `nft` and `nsenter`.
fn nftables_usable() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && find_tool("nft").is_some() && find_tool("nsenter").is_some()
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Checks, before any cluster is made, that the plan can run on a Docker backend:
/// packet faults need the host-side route (root, nft, nsenter, iptables).
pub fn preflight(compose: bool, packet_faults: bool) -> Result<(), String> {
    if !packet_faults {
        return Ok(());
    }
    if compose {
        return Err(
            "packet faults are not supported by the compose backend (a container cannot enter its siblings' \
             network namespaces); drop `packet` from --nemesis, or use --backend docker or sandbox"
                .into(),
        );
    }
    if !nftables_usable() || find_tool("iptables").is_none() {
        return Err(
            "packet faults with --backend docker need root and nft, nsenter and iptables on the host \
             (apt-get install nftables iptables util-linux); or drop `packet` from --nemesis"
                .into(),
        );
    }
    Ok(())
}

/// Start time of process `pid` in clock ticks since boot (field 22 of /proc/PID/stat):
/// with the PID it identifies a process even after PID reuse.
fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19).map(str::to_string)
}

/// Whether the harness that labelled a resource is still running.
fn owner_alive(labels: &HashMap<String, String>) -> bool {
    let Some(pid) = labels.get(PID_LABEL).and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    process_start(pid).as_deref() == labels.get(PID_START_LABEL).map(String::as_str)
}

/// The host's IPv4 routes from /proc/net/route: (interface, destination, mask, gateway).
fn routes() -> Vec<(String, u32, u32, u32)> {
    parse_routes(&std::fs::read_to_string("/proc/net/route").unwrap_or_default())
}

fn parse_routes(text: &str) -> Vec<(String, u32, u32, u32)> {
    // The kernel prints each address as the native-endian u32 of its network-order
    // bytes: the native bytes of the parsed number are the address's bytes.
    let addr = |s: &str| {
        u32::from_str_radix(s, 16)
            .ok()
            .map(|v| u32::from_be_bytes(v.to_ne_bytes()))
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            Some((f[0].to_string(), addr(f[1])?, addr(f[7])?, addr(f[2])?))
        })
        .collect()
}

/// The most specific route to `addr`: (interface, prefix length, gateway).
fn route_to(addr: Ipv4Addr) -> Option<(String, u32, Ipv4Addr)> {
    let a = u32::from(addr);
    routes()
        .into_iter()
        .filter(|(_, dest, mask, _)| a & mask == *dest)
        .max_by_key(|(_, _, mask, _)| mask.count_ones())
        .map(|(iface, _, mask, gw)| (iface, mask.count_ones(), Ipv4Addr::from(gw)))
}

/// Refuses to send test traffic to `addr` unless it is on a directly attached network
/// (no gateway) — and, when `iface` is given, that network is the one this run made. A
/// 10.x or 172.x address that is not is routed off the machine, which must never happen.
fn ensure_on_link(addr: Ipv4Addr, iface: Option<&str>) -> Result<(), String> {
    match route_to(addr) {
        Some((dev, len, gw)) if len > 0 && gw.is_unspecified() => match iface {
            Some(want) if dev != want => Err(format!(
                "node address {addr} is routed via {dev}, not this run's bridge {want}; refusing to send test traffic there"
            )),
            _ => Ok(()),
        },
        other => Err(format!(
            "node address {addr} is not on a directly attached network (route: {other:?}); \
             refusing to send test traffic off the machine"
        )),
    }
}

fn api_error(what: &str, e: DockerError) -> String {
    format!("{what}: {e}")
}

/// Whether the daemon said "no such container/network".
fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl DockerBackend {
    /// `--backend docker`: cleans up after dead runs, creates the network and one
    /// container per node, and starts them all.
    pub fn create(count: usize, launch: NodeLaunch, seed: u64) -> Result<Self, String> {
        let rt = own_runtime()?;
        let docker = block_on(&rt, connect())?;
        let image = std::env::var("FAULTLINE_IMAGE").unwrap_or_else(|_| DEFAULT_IMAGE.into());
        block_on(&rt, async {
            docker.inspect_image(&image).await.map_err(|e| {
                if is_not_found(&e) {
                    format!("the Docker image {image} does not exist; build it with scripts/docker-image.sh")
                } else {
                    api_error(&format!("inspecting image {image}"), e)
                }
            })
        })?;
        block_on(&rt, remove_stale(&docker));

        let run_id = format!("{:08x}", rand::random::<u32>());
        let pid = std::process::id();
        let labels: HashMap<String, String> = [
            (RUN_LABEL.to_string(), run_id.clone()),
            (PID_LABEL.to_string(), pid.to_string()),
            (
                PID_START_LABEL.to_string(),
                process_start(pid).unwrap_or_default(),
            ),
        ]
        .into();
        std::fs::create_dir_all(&launch.dir)
            .map_err(|e| format!("creating {}: {e}", launch.dir.display()))?;
        let log_dir = std::fs::canonicalize(&launch.dir)
            .map_err(|e| format!("resolving {}: {e}", launch.dir.display()))?;

        let network = format!("faultline-{run_id}");
        let bridge = format!("fl-{run_id}");
        let subnet = block_on(
            &rt,
            create_network(&docker, &network, &bridge, &run_id, &labels),
        );
        let mut backend = Self {
            rt: Some(rt),
            docker,
            http: admin_client(),
            specs: Vec::new(),
            nodes: Vec::new(),
            network: Some(network.clone()),
            seed,
            run_id: run_id.clone(),
            packet: Mutex::new(Vec::new()),
            partition_via: if nftables_usable() {
                PartitionVia::Nftables
            } else {
                PartitionVia::AdminApi
            },
            log_dir: log_dir.clone(),
            torn_down: AtomicBool::new(false),
        };
        // From here on, an error drops `backend`, which removes whatever was made.
        let subnet = match subnet {
            Ok(s) => s,
            Err(e) => {
                backend.network = None;
                return Err(e);
            }
        };
        for i in 0..count {
            let host = FIRST_NODE_HOST as usize + i;
            let addr = Ipv4Addr::new(subnet[0], subnet[1], subnet[2], host as u8);
            let id = format!("n{}", i + 1);
            backend.specs.push(NodeSpec {
                id: id.clone(),
                client_addr: SocketAddr::new(addr.into(), NODE_PORT),
            });
            backend.nodes.push(Node {
                container: format!("faultline-{run_id}-{id}"),
                addr,
            });
        }
        ensure_on_link(backend.nodes[0].addr, Some(&bridge))?;
        let exe = std::fs::canonicalize(&launch.exe)
            .map_err(|e| format!("resolving {}: {e}", launch.exe.display()))?;
        for i in 0..count {
            let body =
                backend.container_body(i, &launch, &exe, &log_dir, &image, &network, &labels)?;
            let name = backend.nodes[i].container.clone();
            backend.block(async {
                let opts = CreateContainerOptionsBuilder::new().name(&name).build();
                backend
                    .docker
                    .create_container(Some(opts), body)
                    .await
                    .map_err(|e| api_error(&format!("creating container {name}"), e))
            })?;
        }
        for i in 0..count {
            backend.start(i)?;
        }
        Ok(backend)
    }

    /// `--backend compose`: finds the node containers of the compose project this
    /// harness belongs to (`COMPOSE_PROJECT_NAME`, or the project of the container the
    /// harness runs in) and checks they run what the plan says.
    pub fn attach_compose(count: usize, launch: NodeLaunch) -> Result<Self, String> {
        if !launch.node_args.is_empty() {
            return Err(format!(
                "this run needs node flags ({}) that compose nodes do not get; use --backend docker or sandbox",
                launch.node_args.join(" ")
            ));
        }
        let rt = own_runtime()?;
        let docker = block_on(&rt, connect())?;
        let found = block_on(&rt, find_compose_nodes(&docker))?;
        if found.len() != count {
            return Err(format!(
                "--nodes {count}, but the compose project has {} containers labelled {NODE_LABEL} ({})",
                found.len(),
                found.iter().map(|(id, ..)| id.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        let mut specs = Vec::new();
        let mut nodes = Vec::new();
        for (id, container, env) in found {
            let listen = env.get("FAULTLINE_LISTEN").ok_or_else(|| {
                format!("compose node {id}: FAULTLINE_LISTEN is not set; give it the node's pinned address, e.g. 10.213.0.11:7000")
            })?;
            let addr: SocketAddr = listen.parse().map_err(|_| {
                format!("compose node {id}: FAULTLINE_LISTEN={listen} is not IP:PORT (pin the address; a name is lost when the container is killed)")
            })?;
            let std::net::IpAddr::V4(v4) = addr.ip() else {
                return Err(format!(
                    "compose node {id}: FAULTLINE_LISTEN={listen} must be an IPv4 address"
                ));
            };
            let mode = env
                .get("FAULTLINE_MODE")
                .map(String::as_str)
                .unwrap_or("passive");
            if mode != launch.mode {
                return Err(format!(
                    "--mode {} but compose node {id} runs FAULTLINE_MODE={mode}; set both the same",
                    launch.mode
                ));
            }
            let mut bugs: Vec<&str> = env
                .get("FAULTLINE_BUGS")
                .map(|b| {
                    b.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            let mut want: Vec<&str> = launch.bugs.iter().map(String::as_str).collect();
            bugs.sort();
            want.sort();
            if bugs != want {
                return Err(format!(
                    "--bug [{}] but compose node {id} runs FAULTLINE_BUGS=[{}]; set both the same",
                    want.join(","),
                    bugs.join(",")
                ));
            }
            ensure_on_link(v4, None)?;
            specs.push(NodeSpec {
                id,
                client_addr: addr,
            });
            nodes.push(Node {
                container,
                addr: v4,
            });
        }
        std::fs::create_dir_all(&launch.dir)
            .map_err(|e| format!("creating {}: {e}", launch.dir.display()))?;
        Ok(Self {
            rt: Some(rt),
            docker,
            http: admin_client(),
            specs,
            nodes,
            network: None,
            partition_via: PartitionVia::AdminApi,
            run_id: String::new(),
            seed: 0,
            packet: Mutex::new(Vec::new()),
            log_dir: launch.dir,
            torn_down: AtomicBool::new(false),
        })
    }

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

    #[allow(clippy::too_many_arguments)]
    fn container_body(
        &self,
        i: usize,
        launch: &NodeLaunch,
        exe: &Path,
        log_dir: &Path,
        image: &str,
        network: &str,
        labels: &HashMap<String, String>,
    ) -> Result<ContainerCreateBody, String> {
        let spec = &self.specs[i];
        let data = log_dir.join(format!("{}.data", spec.id));
        std::fs::create_dir_all(&data).map_err(|e| format!("creating {}: {e}", data.display()))?;
        let peers = self
            .specs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, s)| format!("{}={}", s.id, s.client_addr))
            .collect::<Vec<_>>()
            .join(",");
        let mut cmd = vec![
            "node".to_string(),
            "--id".into(),
            spec.id.clone(),
            "--listen".into(),
            spec.client_addr.to_string(),
            "--peers".into(),
            peers,
            "--mode".into(),
            launch.mode.clone(),
            "--data-dir".into(),
            "/data".into(),
        ];
        for bug in &launch.bugs {
            cmd.extend(["--bug".to_string(), bug.clone()]);
        }
        cmd.extend(launch.node_args.iter().cloned());
        let mut labels = labels.clone();
        labels.insert(NODE_LABEL.into(), spec.id.clone());
        Ok(ContainerCreateBody {
            image: Some(image.to_string()),
            entrypoint: Some(vec!["/faultline".into()]),
            cmd: Some(cmd),
            env: Some(vec!["NO_COLOR=1".into()]),
            hostname: Some(spec.id.clone()),
            labels: Some(labels),
            host_config: Some(HostConfig {
                binds: Some(vec![
                    format!("{}:/data", data.display()),
                    format!("{}:/faultline:ro", exe.display()),
                ]),
                network_mode: Some(network.to_string()),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(
                    [(
                        network.to_string(),
                        EndpointSettings {
                            ipam_config: Some(EndpointIpamConfig {
                                ipv4_address: Some(self.nodes[i].addr.to_string()),
                                ..Default::default()
                            }),
                            aliases: Some(vec![spec.id.clone()]),
                            ..Default::default()
                        },
                    )]
                    .into(),
                ),
            }),
            ..Default::default()
        })
    }

    async fn inspect(&self, i: usize) -> Result<ContainerInspectResponse, String> {
        let name = &self.nodes[i].container;
        self.docker
            .inspect_container(name, None)
            .await
            .map_err(|e| api_error(&format!("inspecting {}", self.specs[i].id), e))
    }

    /// (running, paused, pid) of node `i`'s container.
    fn state(&self, i: usize) -> Result<(bool, bool, i64), String> {
        let info = self.block(self.inspect(i))?;
        let state = info.state.unwrap_or_default();
        Ok((
            state.running.unwrap_or(false),
            state.paused.unwrap_or(false),
            state.pid.unwrap_or(0),
        ))
    }

    /// Runs an nft script in node `i`'s network namespace; a stopped node has none.
    fn nft_in(&self, i: usize, script: &str) -> Result<(), String> {
        let (running, _, pid) = self.state(i)?;
        if !running || pid <= 0 {
            return Ok(());
        }
        self.run_in_netns(i, pid, "nft", &["-f", "-"], Some(script))
    }

    /// Runs `tool args` in the network namespace of process `pid` (node `i`'s), with
    /// `nsenter -t pid -n`.
    fn run_in_netns(
        &self,
        i: usize,
        pid: i64,
        tool: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<(), String> {
        let id = &self.specs[i].id;
        let mut child = Command::new(find_tool("nsenter").unwrap_or_else(|| "nsenter".into()))
            .args(["-t", &pid.to_string(), "-n", "--"])
            .arg(find_tool(tool).unwrap_or_else(|| tool.into()))
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running nsenter/{tool} for {id}: {e}"))?;
        if let (Some(script), Some(mut pipe)) = (stdin, child.stdin.take()) {
            use std::io::Write;
            pipe.write_all(script.as_bytes())
                .map_err(|e| format!("feeding {tool} for {id}: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("{tool} for {id}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{tool} in {id}'s namespace failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Steers node `src`'s packets to its peers through a delayer bound to an NFQUEUE in
    /// its own network namespace, and adds the duplication rules there.
    fn install_packet_fault(&self, src: usize, fault: PacketFault) -> Result<(), String> {
        let (running, _, pid) = self.state(src)?;
        if !running || pid <= 0 {
            return Ok(()); // a stopped node sends nothing
        }
        let delayer = delayer_in_netns(pid, self.seed ^ (src as u64 + 1))?;
        delayer.set(Some(fault));
        let saddr = self.nodes[src].addr;
        let peers: Vec<Ipv4Addr> = (0..self.nodes.len())
            .filter(|&d| d != src)
            .map(|d| self.nodes[d].addr)
            .collect();
        let mut steered = Vec::new();
        let mut result = Ok(());
        for peer in &peers {
            let rule = steer_rule(saddr, *peer);
            let mut args = vec!["-A"];
            args.extend(rule.iter().map(String::as_str));
            result = self.run_in_netns(src, pid, "iptables", &args, None);
            if result.is_err() {
                break;
            }
            steered.push(*peer);
        }
        if result.is_ok() && fault.duplicate_permille > 0 {
            // The kernel clones the packet straight to the peer while the original waits
            // in the delay queue: a duplicate that also arrives early.
            let dup: String = peers
                .iter()
                .map(|peer| {
                    format!(
                        "    ip daddr {peer} numgen random mod 1000 < {} counter dup to {peer} device \"eth0\"\n",
                        fault.duplicate_permille
                    )
                })
                .collect();
            result = self.nft_in(
                src,
                &format!(
                    "table ip faultline_dup\ndelete table ip faultline_dup\ntable ip faultline_dup {{\n  chain clone {{\n    type filter hook output priority -5; policy accept;\n{dup}  }}\n}}\n"
                ),
            );
        }
        self.packet.lock().unwrap().push(PacketState {
            node: src,
            pid,
            steered,
            delayer,
        });
        result
    }

    /// POSTs to node `i`'s admin API; a node that is down or paused cannot answer, and
    /// is reported as an error naming it.
    fn admin(&self, i: usize, path: &str, body: serde_json::Value) -> Result<(), String> {
        let url = format!("http://{}{path}", self.specs[i].client_addr);
        let http = self.http.clone();
        let id = self.specs[i].id.clone();
        self.block(async move {
            let resp = http
                .post(&url)
                .json(&body)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .map_err(|e| format!("{path} on {id}: {e}"))?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(format!(
                    "{path} on {id}: HTTP {}: {}",
                    resp.status(),
                    resp.text().await.unwrap_or_default()
                ))
            }
        })
    }

    /// Writes each container's output to `nodes/<id>.log` (all of it, across restarts).
    fn save_logs(&self) {
        for (i, spec) in self.specs.iter().enumerate() {
            let name = self.nodes[i].container.clone();
            let bytes = self.block(async {
                let opts = LogsOptionsBuilder::new().stdout(true).stderr(true).build();
                let mut stream = self.docker.logs(&name, Some(opts));
                let mut out = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(10);
                while let Ok(Some(chunk)) =
                    tokio::time::timeout(Duration::from_secs(5), stream.next()).await
                {
                    match chunk {
                        Ok(c) => out.extend_from_slice(&c.into_bytes()),
                        Err(e) => {
                            out.extend_from_slice(
                                format!("\n[faultline: reading logs: {e}]\n").as_bytes(),
                            );
                            break;
                        }
                    }
                    if Instant::now() > deadline {
                        break;
                    }
                }
                out
            });
            let path = self.log_dir.join(format!("{}.log", spec.id));
            if let Err(e) = std::fs::write(&path, bytes) {
                eprintln!("faultline run: writing {}: {e}", path.display());
            }
        }
    }
}

fn admin_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_millis(500))
        .build()
        .expect("a plain-HTTP reqwest client always builds")
}

/// Creates the run's internal network on the first free /24 of 10.213.0.0/16; returns
/// its first three octets.
async fn create_network(
    docker: &Docker,
    name: &str,
    bridge: &str,
    run_id: &str,
    labels: &HashMap<String, String>,
) -> Result<[u8; 3], String> {
    let start = u32::from_str_radix(run_id, 16).unwrap_or(0) % 250;
    let mut last_err = String::new();
    for k in 0..250 {
        let third = ((start + k) % 250 + 1) as u8;
        let net = [SUBNET_BASE[0], SUBNET_BASE[1], third];
        let gateway = Ipv4Addr::new(net[0], net[1], net[2], 1);
        // Someone (another run, a VPN, ...) already routes this range: try the next.
        if route_to(gateway).is_some_and(|(_, len, _)| len > 0) {
            continue;
        }
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            internal: Some(true),
            ipam: Some(Ipam {
                driver: Some("default".into()),
                config: Some(vec![IpamConfig {
                    subnet: Some(format!("{}.{}.{}.0/24", net[0], net[1], net[2])),
                    gateway: Some(gateway.to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            options: Some(
                [(
                    "com.docker.network.bridge.name".to_string(),
                    bridge.to_string(),
                )]
                .into(),
            ),
            labels: Some(labels.clone()),
            ..Default::default()
        };
        match docker.create_network(req).await {
            Ok(_) => return Ok(net),
            // A concurrent run took the same range between our check and the create.
            Err(e) if e.to_string().contains("overlap") => last_err = e.to_string(),
            Err(e) => return Err(api_error("creating the test network", e)),
        }
    }
    Err(format!(
        "no free /24 left in {}.{}.0.0/16 for the test network ({last_err})",
        SUBNET_BASE[0], SUBNET_BASE[1]
    ))
}

/// Removes containers and networks left by `--backend docker` runs whose harness is gone
/// (SIGKILLed, or the machine lost power). Best effort: failures only print a warning.
async fn remove_stale(docker: &Docker) {
    let filter: HashMap<String, Vec<String>> =
        [("label".to_string(), vec![RUN_LABEL.to_string()])].into();
    let mut stale_runs = std::collections::BTreeSet::new();
    if let Ok(list) = all_containers(docker, &filter).await {
        for c in list {
            if !is_stale(c.labels, &mut stale_runs) {
                continue;
            }
            if let Some(id) = c.id {
                let opts = RemoveContainerOptionsBuilder::new()
                    .force(true)
                    .v(true)
                    .build();
                let removed = docker.remove_container(&id, Some(opts)).await;
                warn_unless_gone("container", &id, removed);
            }
        }
    }
    if let Ok(list) = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::new().filters(&filter).build(),
        ))
        .await
    {
        for n in list {
            if !is_stale(n.labels, &mut stale_runs) {
                continue;
            }
            if let Some(id) = n.id {
                let removed = docker.remove_network(&id).await;
                warn_unless_gone("network", &id, removed);
            }
        }
    }
    if !stale_runs.is_empty() {
        eprintln!(
            "faultline run: removed the leftovers of {} dead run(s): {}",
            stale_runs.len(),
            stale_runs.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
}

/// Every container matching `filter`, running or not.
async fn all_containers(
    docker: &Docker,
    filter: &HashMap<String, Vec<String>>,
) -> Result<Vec<ContainerSummary>, DockerError> {
    docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(filter)
                .build(),
        ))
        .await
}

/// Whether a Docker object with `labels` outlived the harness that made it; if so, notes
/// its run in `stale_runs`.
fn is_stale(
    labels: Option<HashMap<String, String>>,
    stale_runs: &mut std::collections::BTreeSet<String>,
) -> bool {
    let labels = labels.unwrap_or_default();
    if owner_alive(&labels) {
        return false;
    }
    if let Some(run) = labels.get(RUN_LABEL) {
        stale_runs.insert(run.clone());
    }
    true
}

/// Cleanup of a dead run's leftovers is best effort: a failure is only a warning, and an
/// object someone else removed meanwhile is not even that.
fn warn_unless_gone(what: &str, id: &str, removed: Result<(), DockerError>) {
    if let Err(e) = removed {
        if !is_not_found(&e) {
            eprintln!("faultline run: warning: removing stale {what} {id}: {e}");
        }
    }
}

/// The compose project's node containers: (node id, container id, environment), sorted
/// by node id.
async fn find_compose_nodes(
    docker: &Docker,
) -> Result<Vec<(String, String, HashMap<String, String>)>, String> {
    let project = match std::env::var("COMPOSE_PROJECT_NAME") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            // Inside a container the hostname is the container's id prefix by default.
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            let host = host.trim();
            let me = docker.inspect_container(host, None).await.map_err(|e| {
                format!(
                    "--backend compose: cannot tell which compose project this is (not in a compose container: {e}); \
                     set COMPOSE_PROJECT_NAME"
                )
            })?;
            me.config
                .and_then(|c| c.labels)
                .and_then(|l| l.get("com.docker.compose.project").cloned())
                .ok_or_else(|| {
                    "--backend compose: this container has no com.docker.compose.project label; set COMPOSE_PROJECT_NAME".to_string()
                })?
        }
    };
    let filter: HashMap<String, Vec<String>> = [(
        "label".to_string(),
        vec![
            format!("com.docker.compose.project={project}"),
            NODE_LABEL.to_string(),
        ],
    )]
    .into();
    let list = all_containers(docker, &filter)
        .await
        .map_err(|e| api_error("listing the compose project's containers", e))?;
    let mut nodes = Vec::new();
    for c in list {
        let (Some(id), Some(labels)) = (c.id, c.labels) else {
            continue;
        };
        let Some(node) = labels.get(NODE_LABEL).cloned() else {
            continue;
        };
        let info = docker
            .inspect_container(&id, None)
            .await
            .map_err(|e| api_error(&format!("inspecting compose node {node}"), e))?;
        let env = info
            .config
            .and_then(|c| c.env)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        nodes.push((node, id, env));
    }
    if nodes.is_empty() {
        return Err(format!(
            "--backend compose: compose project {project} has no containers labelled {NODE_LABEL}; \
             start the nodes first (docker-compose up)"
        ));
    }
    nodes.sort_by_key(|n| natural_key(&n.0));
    Ok(nodes)
}

/// `n2` before `n10`.
fn natural_key(id: &str) -> (String, u64) {
    let digits = id.trim_start_matches(|c: char| !c.is_ascii_digit());
    let prefix = &id[..id.len() - digits.len()];
    (prefix.to_string(), digits.parse().unwrap_or(0))
}

impl Backend for DockerBackend {
    fn nodes(&self) -> &[NodeSpec] {
        &self.specs
    }

    fn start(&self, i: usize) -> Result<(), String> {
        let (running, _, _) = self.state(i)?;
        if running {
            return Ok(());
        }
        let name = &self.nodes[i].container;
        self.block(self.docker.start_container(name, None))
            .map_err(|e| api_error(&format!("starting {}", self.specs[i].id), e))
    }

    fn kill(&self, i: usize) -> Result<(), String> {
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
                return Err(format!(
                    "{} still running 10 s after SIGKILL",
                    self.specs[i].id
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn pause(&self, i: usize) -> Result<(), String> {
        let (running, paused, _) = self.state(i)?;
        if !running || paused {
            return Ok(());
        }
        self.block(self.docker.pause_container(&self.nodes[i].container))
            .map_err(|e| api_error(&format!("pausing {}", self.specs[i].id), e))
    }

    fn resume(&self, i: usize) -> Result<(), String> {
        let (_, paused, _) = self.state(i)?;
        if !paused {
            return Ok(());
        }
        self.block(self.docker.unpause_container(&self.nodes[i].container))
            .map_err(|e| api_error(&format!("resuming {}", self.specs[i].id), e))
    }

    fn partition(&self, grudge: &Grudge) -> Result<(), String> {
        match self.partition_via {
            PartitionVia::Nftables => {
                for i in 0..self.nodes.len() {
                    let mut rules = String::new();
                    for (dst, srcs) in grudge.iter().filter(|(d, _)| **d == i) {
                        for src in srcs {
                            rules.push_str(&format!(
                                "    ip saddr {} ip daddr {} drop\n",
                                self.nodes[*src].addr, self.nodes[*dst].addr
                            ));
                        }
                    }
                    // Delete-and-recreate in one transaction, as in the sandbox: the new
                    // partition replaces the old one atomically, per node.
                    self.nft_in(
                        i,
                        &format!(
                            "table inet faultline\ndelete table inet faultline\ntable inet faultline {{\n  chain cut {{\n    type filter hook input priority -10; policy accept;\n{rules}  }}\n}}\n"
                        ),
                    )?;
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

    fn heal(&self) -> Result<(), String> {
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

    fn start_packet_fault(&self, from: &[usize], fault: PacketFault) -> Result<(), String> {
        if self.partition_via != PartitionVia::Nftables {
            return Err("packet faults need root, nft and iptables on the host (the compose backend has none)".into());
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

    fn stop_packet_fault(&self) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_of_node_ids() {
        let mut ids = vec!["n10", "n2", "n1"];
        ids.sort_by_key(|id| natural_key(id));
        assert_eq!(ids, ["n1", "n2", "n10"]);
    }

    #[test]
    fn an_address_without_a_route_of_its_own_is_refused() {
        // Only the default route covers it: traffic would leave the machine.
        if route_to(Ipv4Addr::new(10, 213, 250, 9)).is_some_and(|(_, len, _)| len > 0) {
            return; // a test network happens to exist; nothing to learn here
        }
        assert!(ensure_on_link(Ipv4Addr::new(10, 213, 250, 9), None).is_err());
    }

    #[test]
    fn proc_net_route_lines_parse_to_addresses() {
        let text =
            "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    fl-1\t0007D50A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        let routes = parse_routes(text);
        let ip = |a, b, c, d| u32::from(Ipv4Addr::new(a, b, c, d));
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0], ("eth0".into(), 0, 0, ip(192, 0, 2, 1)));
        assert_eq!(
            routes[1],
            ("fl-1".into(), ip(10, 213, 7, 0), ip(255, 255, 255, 0), 0)
        );
    }

    #[test]
    fn process_start_identifies_this_process() {
        let pid = std::process::id();
        let labels: HashMap<String, String> = [
            (PID_LABEL.to_string(), pid.to_string()),
            (PID_START_LABEL.to_string(), process_start(pid).unwrap()),
        ]
        .into();
        assert!(owner_alive(&labels));
        let mut wrong = labels.clone();
        wrong.insert(PID_START_LABEL.into(), "1".into());
        assert!(!owner_alive(&wrong));
        assert!(!owner_alive(&HashMap::new()));
    }
}
