//! The sandbox: a private user + network + PID namespace the whole test runs in.
//!
//! `enter` is called while the process is still single-threaded (unsharing a user
//! namespace fails in a threaded process). It unshares a user namespace (mapping the
//! caller to root inside it), a network namespace and a PID namespace, then forks:
//!
//! - the child is PID 1 of the new PID namespace and runs the test. When PID 1 exits for
//!   any reason the kernel SIGKILLs every other process in the namespace, so no node can
//!   outlive the harness; the network namespaces die with their last process and file
//!   descriptor, so no partition or packet rule can outlive it either;
//! - the parent stays outside, forwards SIGINT/SIGTERM/SIGHUP to the child (so `kill`
//!   of the visible PID still tears down gracefully) and exits with the child's status.
//!   The child asks for SIGKILL when the parent dies (`PR_SET_PDEATHSIG`), so even
//!   `kill -9` of the parent takes the whole sandbox down.
//!
//! The new network namespace starts with only a loopback device and no routes, so
//! nothing sent from inside can leave the machine; `network` checks that before use.

pub mod network;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

/// Why the sandbox could not be made, each with the way out for the user.
#[derive(Debug)]
pub enum SandboxError {
    MissingTool {
        tool: &'static str,
        package: &'static str,
    },
    UserNamespaceDenied(io::Error),
    Namespace {
        what: &'static str,
        err: io::Error,
    },
}

impl fmt::Display for SandboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingTool { tool, package } => write!(
                f,
                "the sandbox needs `{tool}`, which is not installed: install it with `apt-get install {package}`"
            ),
            Self::UserNamespaceDenied(err) => write!(
                f,
                "cannot create a user namespace ({err}); unprivileged user namespaces are blocked here \
                 (e.g. Ubuntu 24.04: kernel.apparmor_restrict_unprivileged_userns=1): run as root, or allow them with \
                 `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`"
            ),
            Self::Namespace { what, err } => write!(f, "cannot create the sandbox: {what}: {err}"),
        }
    }
}

/// Tools the sandbox shells out to, with the Debian package that provides each.
const TOOLS: [(&str, &str); 2] = [("ip", "iproute2"), ("nft", "nftables")];
/// Needed only for packet faults: nft cannot queue packets on this kernel, iptables can.
const PACKET_TOOL: (&str, &str) = ("iptables-nft", "iptables");

/// Absolute paths of the tools, found once by `preflight` (before the fork, so the
/// sandboxed child inherits them). Absolute because `ip` and `nft` live in `/usr/sbin`,
/// which an ordinary user's PATH often lacks.
static TOOL_PATHS: OnceLock<Vec<(&'static str, PathBuf)>> = OnceLock::new();

/// Checks the tools the sandbox needs (with `packet_faults`, also for packet faults) are
/// installed and remembers where.
pub fn preflight(packet_faults: bool) -> Result<(), SandboxError> {
    let mut found = Vec::new();
    let packet = packet_faults.then_some(PACKET_TOOL);
    for (tool, package) in TOOLS.into_iter().chain(packet) {
        match find_on_path(tool) {
            Some(path) => found.push((tool, path)),
            None => return Err(SandboxError::MissingTool { tool, package }),
        }
    }
    let _ = TOOL_PATHS.set(found);
    Ok(())
}

/// Where `tool` is (its bare name if `preflight` did not find it).
pub fn tool_path(tool: &str) -> PathBuf {
    TOOL_PATHS
        .get()
        .and_then(|tools| tools.iter().find(|(name, _)| *name == tool))
        .map_or_else(|| PathBuf::from(tool), |(_, path)| path.clone())
}

fn find_on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into(), "/usr/bin".into()])
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// The child's PID as the parent sees it, for the signal forwarder.
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let child = CHILD.load(Ordering::Relaxed);
    if child > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(child, sig) };
    }
}

/// Runs `inner` as PID 1 of a fresh user + network + PID namespace and returns its exit
/// code (in the parent; the child never returns from here).
///
/// Must be called before any thread is started.
pub fn enter(inner: impl FnOnce() -> i32) -> Result<i32, SandboxError> {
    // SAFETY: plain syscalls; the process is single-threaded here (documented contract),
    // so fork() duplicates the only thread and the child may run arbitrary Rust code.
    unsafe {
        let uid = libc::getuid();
        let gid = libc::getgid();
        if libc::unshare(libc::CLONE_NEWUSER) != 0 {
            return Err(SandboxError::UserNamespaceDenied(io::Error::last_os_error()));
        }
        // Map ourselves to root inside: that gives CAP_NET_ADMIN over namespaces we own,
        // and nothing outside them.
        let _ = std::fs::write("/proc/self/setgroups", "deny");
        std::fs::write("/proc/self/uid_map", format!("0 {uid} 1")).map_err(|err| {
            SandboxError::Namespace {
                what: "writing uid_map",
                err,
            }
        })?;
        std::fs::write("/proc/self/gid_map", format!("0 {gid} 1")).map_err(|err| {
            SandboxError::Namespace {
                what: "writing gid_map",
                err,
            }
        })?;
        if libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWPID) != 0 {
            let err = io::Error::last_os_error();
            return Err(SandboxError::Namespace {
                what: "unshare(net, pid)",
                err,
            });
        }

        // A pipe whose write end only the parent holds: if the parent is already gone
        // when the child asks for PDEATHSIG, the child sees EOF and exits.
        let mut fds = [0; 2];
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            let err = io::Error::last_os_error();
            return Err(SandboxError::Namespace { what: "pipe", err });
        }
        let (read_end, write_end) = (fds[0], fds[1]);

        match libc::fork() {
            -1 => {
                let err = io::Error::last_os_error();
                Err(SandboxError::Namespace { what: "fork", err })
            }
            0 => {
                libc::close(write_end);
                libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                );
                let mut poll = libc::pollfd {
                    fd: read_end,
                    events: libc::POLLIN,
                    revents: 0,
                };
                if libc::poll(&mut poll, 1, 0) > 0 {
                    // EOF (or anything) on the pipe: the parent died before PDEATHSIG.
                    libc::_exit(3);
                }
                let code = inner();
                std::process::exit(code);
            }
            child => {
                libc::close(read_end);
                CHILD.store(child, Ordering::Relaxed);
                for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                    libc::signal(sig, forward_signal as *const () as libc::sighandler_t);
                }
                let mut status = 0;
                loop {
                    if libc::waitpid(child, &mut status, 0) == child {
                        break;
                    }
                    let err = io::Error::last_os_error();
                    if err.kind() != io::ErrorKind::Interrupted {
                        return Err(SandboxError::Namespace {
                            what: "waitpid",
                            err,
                        });
                    }
                }
                libc::close(write_end);
                if libc::WIFEXITED(status) {
                    Ok(libc::WEXITSTATUS(status))
                } else {
                    let sig = libc::WTERMSIG(status);
                    eprintln!("faultline run: the sandboxed harness was killed by signal {sig}");
                    Ok(128 + sig)
                }
            }
        }
    }
}
