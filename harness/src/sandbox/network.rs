//! The sandbox's network: one network namespace per node, each joined to the sandbox's
//! own root namespace by a veth pair, routed (not bridged) through that root namespace.
//!
//! ```text
//!   node n1 netns            sandbox root netns (harness + clients)        node n2 netns
//!   eth0 10.77.1.2/24 <-veth-> vh1 10.77.1.1   vh2 10.77.2.1 <-veth-> eth0 10.77.2.2/24
//!   route 10.77.0.0/16 via 10.77.1.1     ip_forward=1      route 10.77.0.0/16 via 10.77.2.1
//! ```
//!
//! Every node-to-node packet crosses the root namespace's FORWARD hook, so partitions and
//! packet faults are rules in one place; the harness's clients talk to nodes from the root
//! namespace directly (input/output, not forward), so they are never partitioned — like
//! Jepsen's control node. No namespace here has a default route: an address outside
//! 10.77.0.0/16 is unreachable, and the 10.77 addresses exist only inside the sandbox.

use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// One node's place in the network.
#[derive(Debug)]
pub struct NodeNet {
    /// The node's address (inside its namespace, on `eth0`).
    pub addr: Ipv4Addr,
    /// The root-namespace end of its veth pair.
    pub veth: String,
    /// Keeps the namespace alive while the harness runs, across node restarts.
    netns: OwnedFd,
}

impl NodeNet {
    pub fn netns(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.netns.as_fd()
    }
}

/// The address of node `index` (0-based).
pub fn node_addr(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, index as u8 + 1, 2)
}

/// Builds the network for `count` nodes. Fails if the current namespace is not a fresh,
/// empty one — the guard that keeps test traffic from ever using a real network.
pub fn build(count: usize) -> Result<Vec<NodeNet>, NetworkError> {
    assert!(
        count <= 200,
        "node count is validated before the sandbox is built"
    );
    ensure_isolated()?;
    ip(None, &["link", "set", "lo", "up"])?;
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(|source| {
        NetworkError::Namespace {
            what: "enabling forwarding in the sandbox",
            source,
        }
    })?;
    let root_pid = std::process::id().to_string();
    (0..count)
        .map(|index| {
            let netns = new_netns()?;
            let addr = node_addr(index);
            let hub = Ipv4Addr::new(10, 77, index as u8 + 1, 1);
            let veth = format!("vh{}", index + 1);
            let ns = Some(std::os::fd::AsFd::as_fd(&netns));
            // Created from inside the node's namespace so the peer lands in ours: `netns
            // PID` is resolved by the kernel in our own PID namespace.
            ip(
                ns,
                &[
                    "link", "add", "eth0", "type", "veth", "peer", "name", &veth, "netns",
                    &root_pid,
                ],
            )?;
            ip(ns, &["link", "set", "lo", "up"])?;
            ip(ns, &["addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
            ip(ns, &["link", "set", "eth0", "up"])?;
            ip(
                ns,
                &["route", "add", "10.77.0.0/16", "via", &hub.to_string()],
            )?;
            ip(None, &["addr", "add", &format!("{hub}/24"), "dev", &veth])?;
            ip(None, &["link", "set", &veth, "up"])?;
            Ok(NodeNet { addr, veth, netns })
        })
        .collect()
}

/// Why the sandbox's network could not be built or changed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A tool (`ip`, `nft`, `iptables-nft`) could not be run.
    #[error("{what} `{tool}`: {source}")]
    Spawn {
        what: &'static str,
        tool: String,
        #[source]
        source: std::io::Error,
    },
    /// A tool ran and failed; its stderr says why.
    #[error("`{command}` failed: {stderr}")]
    Tool { command: String, stderr: String },
    /// A namespace operation failed.
    #[error("{what}: {source}")]
    Namespace {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The namespace to build in is not the sandbox's own.
    #[error(
        "refusing to build the test network: this network namespace is not empty (links {0:?})"
    )]
    NotIsolated(Vec<String>),
}

/// Refuses to build unless this namespace has nothing but a loopback device and no
/// routes, i.e. unless `sandbox::enter` really moved us into a new network namespace.
fn ensure_isolated() -> Result<(), NetworkError> {
    let links = tool_output(None, "ip", &["-o", "link", "show"])?;
    let names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(str::trim)
        .collect();
    let routes = tool_output(None, "ip", &["route", "show", "table", "all"])?;
    let real_routes = routes
        .lines()
        .any(|l| !l.contains("dev lo") && !l.trim().is_empty());
    if names != ["lo"] || real_routes {
        return Err(NetworkError::NotIsolated(
            names.into_iter().map(String::from).collect(),
        ));
    }
    Ok(())
}

/// Creates a network namespace and returns a descriptor that keeps it alive. Done on a
/// short-lived thread because `unshare(CLONE_NEWNET)` moves only the calling thread.
fn new_netns() -> Result<OwnedFd, NetworkError> {
    std::thread::spawn(|| {
        // SAFETY: unshare affects only this throwaway thread.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        File::open("/proc/thread-self/ns/net").map(OwnedFd::from)
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
    .map_err(|source| NetworkError::Namespace {
        what: "creating a node network namespace",
        source,
    })
}

/// Runs `ip ARGS` in the sandbox root namespace, or in `netns` if given.
pub fn ip(netns: Option<BorrowedFd<'_>>, args: &[&str]) -> Result<(), NetworkError> {
    tool_output(netns, "ip", args).map(drop)
}

/// Applies an nftables script atomically in the sandbox root namespace.
pub fn nft(script: &str) -> Result<(), NetworkError> {
    run_tool(None, "nft", &["-f", "-"], Some(script)).map(drop)
}

/// `nft list table FAMILY NAME` in the sandbox root namespace (rules with their counters).
pub fn nft_list(family: &str, name: &str) -> Result<String, NetworkError> {
    tool_output(None, "nft", &["list", "table", family, name])
}

/// Runs `iptables-nft ARGS` in the sandbox root namespace. (nft itself cannot queue
/// packets on this kernel — no `nft_queue` — but the xtables NFQUEUE target works.)
pub fn iptables(args: &[&str]) -> Result<(), NetworkError> {
    run_tool(None, "iptables-nft", args, None).map(drop)
}

fn tool_output(
    netns: Option<BorrowedFd<'_>>,
    tool: &str,
    args: &[&str],
) -> Result<String, NetworkError> {
    run_tool(netns, tool, args, None)
}

fn run_tool(
    netns: Option<BorrowedFd<'_>>,
    tool: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, NetworkError> {
    let mut cmd = Command::new(super::tool_path(tool));
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(ns) = netns {
        enter_netns_on_exec(&mut cmd, ns);
    }
    let spawn = |what| {
        move |source| NetworkError::Spawn {
            what,
            tool: tool.to_string(),
            source,
        }
    };
    let mut child = cmd.spawn().map_err(spawn("running"))?;
    if let (Some(script), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(script.as_bytes())
            .map_err(spawn("feeding"))?;
    }
    let out = child.wait_with_output().map_err(spawn("running"))?;
    if !out.status.success() {
        return Err(NetworkError::Tool {
            command: format!("{tool} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Makes `cmd`'s child join `netns` between fork and exec — the only safe place, since
/// `setns` moves just the calling thread and the harness's threads must stay put.
pub fn enter_netns_on_exec(cmd: &mut Command, netns: BorrowedFd<'_>) {
    let fd = netns.as_raw_fd();
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
