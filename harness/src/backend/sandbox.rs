//! The default backend: nodes as child processes in per-node network namespaces inside
//! the harness's private sandbox (see `crate::sandbox`).

use std::fs::{File, OpenOptions};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::packet::{PacketDelayer, QUEUE_NUM};
use super::{Backend, BackendError, LaunchSpec, NodeSpec};
use crate::fault::{Grudge, PacketFault};
use crate::sandbox::network::{self, NodeNet};
use crate::system::NodeSite;

pub struct SandboxBackend {
    specs: Vec<NodeSpec>,
    nets: Vec<NodeNet>,
    launch: LaunchSpec,
    /// Every node's address and data directory, as the system's command lines see them.
    sites: Vec<NodeSite>,
    procs: Mutex<Vec<Option<Child>>>,
    delayer: PacketDelayer,
    /// Whether iptables steering rules may exist (so undoing needs iptables at all).
    steering: AtomicBool,
}

impl SandboxBackend {
    /// Builds the network for `count` nodes and starts them all.
    pub fn create(launch: &LaunchSpec) -> Result<Self, BackendError> {
        let count = launch.count;
        let nets = network::build(count)?;
        let port = launch.system.client_port();
        let specs: Vec<NodeSpec> = nets
            .iter()
            .enumerate()
            .map(|(i, net)| NodeSpec {
                id: format!("n{}", i + 1),
                client_addr: SocketAddr::new(net.addr.into(), port),
            })
            .collect();
        std::fs::create_dir_all(&launch.dir).map_err(BackendError::io(format!(
            "creating {}",
            launch.dir.display()
        )))?;
        let sites = specs
            .iter()
            .map(|s| NodeSite {
                id: s.id.clone(),
                ip: s.client_addr.ip(),
                data_dir: launch.dir.join(format!("{}.data", s.id)),
            })
            .collect();
        let delayer = PacketDelayer::start(launch.seed)?;
        let backend = Self {
            specs,
            nets,
            launch: launch.clone(),
            sites,
            procs: Mutex::new((0..count).map(|_| None).collect()),
            delayer,
            steering: AtomicBool::new(false),
        };
        for i in 0..count {
            backend.start(i)?;
        }
        Ok(backend)
    }

    fn log_file(&self, id: &str) -> Result<File, BackendError> {
        let path = self.launch.dir.join(format!("{id}.log"));
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(BackendError::io(format!("opening {}", path.display())))
    }

    fn signal(&self, i: usize, sig: libc::c_int) -> Result<(), BackendError> {
        let procs = self.procs.lock().unwrap();
        match &procs[i] {
            Some(child) => {
                // SAFETY: sending a signal to our own child, which we have not reaped.
                if unsafe { libc::kill(child.id() as libc::pid_t, sig) } != 0 {
                    return Err(BackendError::Io {
                        what: format!("signalling {}", self.specs[i].id),
                        source: std::io::Error::last_os_error(),
                    });
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Steers packets from `from` to the delayer and adds the duplication rules.
    fn install_packet_fault(&self, from: &[usize], fault: PacketFault) -> Result<(), BackendError> {
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

    fn start(&self, i: usize) -> Result<(), BackendError> {
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
            .map_err(BackendError::io(format!("log for {}", spec.id)))?;
        let site = &self.sites[i];
        std::fs::create_dir_all(&site.data_dir).map_err(BackendError::io(format!(
            "creating {}",
            site.data_dir.display()
        )))?;
        let command = self.launch.system.node_command(i, &self.sites);
        let mut cmd = Command::new(&command.program);
        cmd.args(&command.args)
            .envs(command.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log);
        network::enter_netns_on_exec(&mut cmd, self.nets[i].netns());
        // Own process group: a terminal's Ctrl-C goes to the harness, which tears down.
        cmd.process_group(0);
        let child = cmd
            .spawn()
            .map_err(BackendError::io(format!("starting node {}", spec.id)))?;
        procs[i] = Some(child);
        Ok(())
    }

    fn kill(&self, i: usize) -> Result<(), BackendError> {
        let mut procs = self.procs.lock().unwrap();
        if let Some(mut child) = procs[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Ok(())
    }

    fn pause(&self, i: usize) -> Result<(), BackendError> {
        self.signal(i, libc::SIGSTOP)
    }

    fn resume(&self, i: usize) -> Result<(), BackendError> {
        self.signal(i, libc::SIGCONT)
    }

    fn partition(&self, grudge: &Grudge) -> Result<(), BackendError> {
        let mut rules = String::new();
        for (dst, srcs) in grudge.iter() {
            for src in srcs {
                rules.push_str(&format!(
                    "    ip saddr {} ip daddr {} counter drop\n",
                    self.nets[*src].addr, self.nets[*dst].addr
                ));
            }
        }
        // Delete-and-recreate in one transaction: the new partition replaces the old one
        // atomically. Priority -10 runs before the iptables filter chain, so a cut packet
        // is dropped before it could be queued for delay.
        Ok(network::nft(&format!(
            "table ip faultline\ndelete table ip faultline\ntable ip faultline {{\n  chain cut {{\n    type filter hook forward priority -10; policy accept;\n{rules}  }}\n}}\n"
        ))?)
    }

    fn partition_drops(&self) -> Option<u64> {
        network::nft_list("ip", "faultline")
            .ok()
            .map(|l| super::nft_counted_packets(&l))
    }

    fn heal(&self) -> Result<(), BackendError> {
        Ok(network::nft(
            "table ip faultline\ndelete table ip faultline\n",
        )?)
    }

    fn start_packet_fault(&self, from: &[usize], fault: PacketFault) -> Result<(), BackendError> {
        self.stop_packet_fault()?;
        let result = self.install_packet_fault(from, fault);
        if result.is_err() {
            let _ = self.stop_packet_fault();
        }
        result
    }

    fn stop_packet_fault(&self) -> Result<(), BackendError> {
        network::nft("table ip faultline_dup\ndelete table ip faultline_dup\n")?;
        if self.steering.swap(false, Ordering::SeqCst) {
            network::iptables(&["-F", "FORWARD"])?;
        }
        self.delayer.set(None);
        Ok(())
    }

    fn teardown(&self) {
        let mut procs = self.procs.lock().unwrap();
        let grace = self.launch.system.stop_grace();
        for child in procs.iter_mut().flatten() {
            let signal = if grace.is_zero() {
                libc::SIGKILL
            } else {
                libc::SIGTERM
            };
            // SAFETY: our own unreaped children. SIGCONT first so a paused node can die
            // of SIGTERM.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGCONT);
                libc::kill(child.id() as libc::pid_t, signal);
            }
        }
        let deadline = Instant::now() + grace;
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
