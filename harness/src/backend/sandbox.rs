//! The default backend: nodes as child processes in per-node network namespaces inside
//! the harness's private sandbox (see `crate::sandbox`).

use std::fs::{File, OpenOptions};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Backend, NodeSpec};
use crate::nemesis::grudge::Grudge;
use crate::nemesis::packet::{PacketDelayer, PacketFault, QUEUE_NUM};
use crate::sandbox::network::{self, NodeNet};

/// Port every node's client API listens on (each node has its own address).
pub const NODE_PORT: u16 = 7000;

/// How to launch a node: `<exe> node --id .. --listen .. --peers .. --mode .. --data-dir
/// .. [--bug ..]...`.
#[derive(Debug, Clone)]
pub struct NodeLaunch {
    pub exe: PathBuf,
    pub mode: String,
    pub bugs: Vec<String>,
    /// Further flags every node gets (the bank workload's `--channels`, `--initial-balance`).
    pub node_args: Vec<String>,
    /// `nodes/` in the results folder: `<id>.log` and `<id>.data/` go here.
    pub dir: PathBuf,
}

pub struct SandboxBackend {
    specs: Vec<NodeSpec>,
    nets: Vec<NodeNet>,
    launch: NodeLaunch,
    procs: Mutex<Vec<Option<Child>>>,
    delayer: PacketDelayer,
    /// Whether iptables steering rules may exist (so undoing needs iptables at all).
    steering: AtomicBool,
}

impl SandboxBackend {
    /// Builds the network for `count` nodes and starts them all.
    pub fn create(count: usize, launch: NodeLaunch, seed: u64) -> Result<Self, String> {
        let nets = network::build(count)?;
        let specs = nets
            .iter()
            .enumerate()
            .map(|(i, net)| NodeSpec {
                id: format!("n{}", i + 1),
                client_addr: SocketAddr::new(net.addr.into(), NODE_PORT),
            })
            .collect();
        std::fs::create_dir_all(&launch.dir)
            .map_err(|e| format!("creating {}: {e}", launch.dir.display()))?;
        let delayer = PacketDelayer::start(seed)?;
        let backend = Self {
            specs,
            nets,
            launch,
            procs: Mutex::new((0..count).map(|_| None).collect()),
            delayer,
            steering: AtomicBool::new(false),
        };
        for i in 0..count {
            backend.start(i)?;
        }
        Ok(backend)
    }

    fn log_file(&self, id: &str) -> Result<File, String> {
        let path = self.launch.dir.join(format!("{id}.log"));
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("opening {}: {e}", path.display()))
    }

    fn data_dir(&self, id: &str) -> PathBuf {
        self.launch.dir.join(format!("{id}.data"))
    }

    fn peers_arg(&self, i: usize) -> String {
        self.specs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, s)| format!("{}={}", s.id, s.client_addr))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn signal(&self, i: usize, sig: libc::c_int) -> Result<(), String> {
        let procs = self.procs.lock().unwrap();
        match &procs[i] {
            Some(child) => {
                // SAFETY: sending a signal to our own child, which we have not reaped.
                if unsafe { libc::kill(child.id() as libc::pid_t, sig) } != 0 {
                    return Err(format!(
                        "signalling {}: {}",
                        self.specs[i].id,
                        std::io::Error::last_os_error()
                    ));
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Steers packets from `from` to the delayer and adds the duplication rules.
    fn install_packet_fault(&self, from: &[usize], fault: PacketFault) -> Result<(), String> {
        self.delayer.set(Some(fault));
        self.steering.store(true, Ordering::SeqCst);
        let mut dup_rules = String::new();
        for &src in from {
            let saddr = self.nets[src].addr.to_string();
            network::iptables(&[
                "-A",
                "FORWARD",
                "-s",
                &saddr,
                "-j",
                "NFQUEUE",
                "--queue-num",
                &QUEUE_NUM.to_string(),
                "--queue-bypass",
            ])?;
            if fault.duplicate_permille > 0 {
                // The kernel clones the packet straight to the destination while the
                // original waits in the delay queue: a duplicate that also arrives early.
                for (_, net) in self.nets.iter().enumerate().filter(|(d, _)| *d != src) {
                    dup_rules.push_str(&format!(
                        "    ip saddr {saddr} ip daddr {} numgen random mod 1000 < {} counter dup to {} device \"{}\"\n",
                        net.addr, fault.duplicate_permille, net.addr, net.veth
                    ));
                }
            }
        }
        if !dup_rules.is_empty() {
            network::nft(&format!(
                "table ip faultline_dup\ndelete table ip faultline_dup\ntable ip faultline_dup {{\n  chain clone {{\n    type filter hook forward priority -5; policy accept;\n{dup_rules}  }}\n}}\n"
            ))?;
        }
        Ok(())
    }
}

impl Backend for SandboxBackend {
    fn nodes(&self) -> &[NodeSpec] {
        &self.specs
    }

    fn start(&self, i: usize) -> Result<(), String> {
        let mut procs = self.procs.lock().unwrap();
        if let Some(child) = procs[i].as_mut() {
            if child.try_wait().map(|s| s.is_none()).unwrap_or(false) {
                return Ok(()); // already running
            }
        }
        let spec = &self.specs[i];
        let log = self.log_file(&spec.id)?;
        let err_log = log
            .try_clone()
            .map_err(|e| format!("log for {}: {e}", spec.id))?;
        let data_dir = self.data_dir(&spec.id);
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
        let mut cmd = Command::new(&self.launch.exe);
        cmd.arg("node")
            .args(["--id", &spec.id])
            .args(["--listen", &spec.client_addr.to_string()])
            .args(["--peers", &self.peers_arg(i)])
            .args(["--mode", &self.launch.mode])
            .arg("--data-dir")
            .arg(&data_dir);
        for bug in &self.launch.bugs {
            cmd.args(["--bug", bug]);
        }
        cmd.args(&self.launch.node_args);
        cmd.stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .env("NO_COLOR", "1");
        network::enter_netns_on_exec(&mut cmd, self.nets[i].netns());
        // Own process group: a terminal's Ctrl-C goes to the harness, which tears down.
        cmd.process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting node {}: {e}", spec.id))?;
        procs[i] = Some(child);
        Ok(())
    }

    fn kill(&self, i: usize) -> Result<(), String> {
        let mut procs = self.procs.lock().unwrap();
        if let Some(mut child) = procs[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Ok(())
    }

    fn pause(&self, i: usize) -> Result<(), String> {
        self.signal(i, libc::SIGSTOP)
    }

    fn resume(&self, i: usize) -> Result<(), String> {
        self.signal(i, libc::SIGCONT)
    }

    fn partition(&self, grudge: &Grudge) -> Result<(), String> {
        let mut rules = String::new();
        for (dst, srcs) in grudge.iter() {
            for src in srcs {
                rules.push_str(&format!(
                    "    ip saddr {} ip daddr {} drop\n",
                    self.nets[*src].addr, self.nets[*dst].addr
                ));
            }
        }
        // Delete-and-recreate in one transaction: the new partition replaces the old one
        // atomically. Priority -10 runs before the iptables filter chain, so a cut packet
        // is dropped before it could be queued for delay.
        network::nft(&format!(
            "table ip faultline\ndelete table ip faultline\ntable ip faultline {{\n  chain cut {{\n    type filter hook forward priority -10; policy accept;\n{rules}  }}\n}}\n"
        ))
    }

    fn heal(&self) -> Result<(), String> {
        network::nft("table ip faultline\ndelete table ip faultline\n")
    }

    fn start_packet_fault(&self, from: &[usize], fault: PacketFault) -> Result<(), String> {
        self.stop_packet_fault()?;
        let result = self.install_packet_fault(from, fault);
        if result.is_err() {
            let _ = self.stop_packet_fault();
        }
        result
    }

    fn stop_packet_fault(&self) -> Result<(), String> {
        network::nft("table ip faultline_dup\ndelete table ip faultline_dup\n")?;
        if self.steering.swap(false, Ordering::SeqCst) {
            network::iptables(&["-F", "FORWARD"])?;
        }
        self.delayer.set(None);
        Ok(())
    }

    fn teardown(&self) {
        let mut procs = self.procs.lock().unwrap();
        for child in procs.iter_mut().flatten() {
            // SAFETY: our own unreaped children. SIGCONT first so a paused node can die
            // of SIGTERM.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGCONT);
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        for slot in procs.iter_mut() {
            if let Some(mut child) = slot.take() {
                while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for SandboxBackend {
    fn drop(&mut self) {
        self.teardown();
    }
}
