//! Faults inside a container's network namespace, applied from the host with
//! `nsenter -t <pid> -n`: nftables partitions, and packet faults through a delayer whose
//! NFQUEUE is bound in that namespace.

use crate::backend::BackendError;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::DockerBackend;
use crate::backend::packet::{PacketDelayer, QUEUE_NUM};
use crate::fault::PacketFault;

/// A packet fault on one node: the iptables rules that steer its packets to the
/// delayer, and the delayer (bound to a queue in that node's network namespace).
pub(super) struct PacketState {
    pub(super) node: usize,
    pub(super) pid: i64,
    /// Peers whose packets are steered (one OUTPUT rule each).
    pub(super) steered: Vec<Ipv4Addr>,
    pub(super) delayer: PacketDelayer,
}

/// The iptables rule (without -A/-D) that queues `src`'s packets to `dst`; `bypass` lets
/// traffic through untouched if the delayer is gone.
pub(super) fn steer_rule(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<String> {
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
pub(super) fn delayer_in_netns(pid: i64, seed: u64) -> Result<PacketDelayer, BackendError> {
    let path = format!("/proc/{pid}/ns/net");
    std::thread::Builder::new()
        .name("netns-enter".into())
        .spawn(move || {
            let ns =
                std::fs::File::open(&path).map_err(BackendError::io(format!("opening {path}")))?;
            use std::os::fd::AsRawFd;
            // SAFETY: a valid namespace fd; only this short-lived thread changes namespace.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(BackendError::Io {
                    what: format!("entering {path}"),
                    source: std::io::Error::last_os_error(),
                });
            }
            PacketDelayer::start(seed)
        })
        .map_err(BackendError::io("starting a thread for the packet delayer"))?
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Whether the nftables route is open to this process: root, with `nft` and `nsenter`.
pub(super) fn nftables_usable() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && find_tool("nft").is_some() && find_tool("nsenter").is_some()
}

pub(super) fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Checks, before any cluster is made, that the plan can run on a Docker backend:
/// packet faults need the host-side route (root, nft, nsenter, iptables).
pub fn preflight(compose: bool, packet_faults: bool) -> Result<(), BackendError> {
    if !packet_faults {
        return Ok(());
    }
    if compose && !(nftables_usable() && super::compose::sees_host_pids()) {
        return Err(BackendError::Unavailable(
            "packet faults under compose need the test service to enter the nodes' network namespaces \
             (root, pid: host, cap_add NET_ADMIN + SYS_ADMIN, and an image with nft/nsenter/iptables from \
             scripts/docker-image.sh, as docker-compose.yml sets up); or drop `packet` from --nemesis"
                .into(),
        ));
    }
    if !nftables_usable() || find_tool("iptables").is_none() {
        return Err(BackendError::Unavailable(
            "packet faults with --backend docker need root and nft, nsenter and iptables on the host \
             (apt-get install nftables iptables util-linux); or drop `packet` from --nemesis"
                .into(),
        ));
    }
    Ok(())
}

impl DockerBackend {
    /// Runs an nft script in node `i`'s network namespace; a stopped node has none.
    pub(super) fn nft_in(&self, i: usize, script: &str) -> Result<(), BackendError> {
        let (running, _, pid) = self.state(i)?;
        if !running || pid <= 0 {
            return Ok(());
        }
        self.run_in_netns(i, pid, "nft", &["-f", "-"], Some(script))
    }

    /// Runs `tool args` in the network namespace of process `pid` (node `i`'s), with
    /// `nsenter -t pid -n`.
    pub(super) fn run_in_netns(
        &self,
        i: usize,
        pid: i64,
        tool: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<(), BackendError> {
        self.output_in_netns(i, pid, tool, args, stdin).map(drop)
    }

    /// `run_in_netns`, returning what the tool printed.
    pub(super) fn output_in_netns(
        &self,
        i: usize,
        pid: i64,
        tool: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, BackendError> {
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
            .stdout(Stdio::piped())
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
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{tool} in {id}'s namespace failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )
            .into())
        }
    }

    /// Steers node `src`'s packets to its peers through a delayer bound to an NFQUEUE in
    /// its own network namespace, and adds the duplication rules there.
    pub(super) fn install_packet_fault(
        &self,
        src: usize,
        fault: PacketFault,
    ) -> Result<(), BackendError> {
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
}
