//! # nodes
//!
//! One replica of faultline's replicated key/value store, in one of two modes: passive
//! (a Raft-like leader replicates its log) or active (every replica receives every
//! request; a Viewstamped-Replication-style sequencer orders them; every replica executes
//! them). Either can be switched into named, deliberate bugs for the harness to catch.
//!
//! ## Layout
//! - `config`: flags and environment variables, validated into a `Config`.
//! - `command`, `store`: what clients ask and the deterministic state machine answering.
//! - `log`, `quorum`, `disk`: the replicated log, majority arithmetic, durable state.
//! - `progress`: a leader's/primary's flow control towards one follower/backup.
//! - `machine`: the `Machine` trait both protocols implement — pure `step`/`tick`/`ready`.
//! - `passive`, `active`: the two protocols, each one file, no I/O.
//! - `leaderless`: Tempo, leaderless state-machine replication, also a pure machine.
//! - `driver`: the async loop that persists, sends and answers for a machine.
//! - `transport`: peer messages over HTTP with timeouts, and the simulated partition.
//! - `api`: the HTTP routes; `metrics`: Prometheus text; `bugs`: the named bugs.
//! - `http`: what every route shares — error bodies, body parsing, the cluster secret,
//!   the server loop with its limits and timeouts.
//! - `bank`: accounts, FIFO channels and global snapshots (issue 5); independent of the
//!   kv replication, it runs in every node in either mode.

pub mod active;
pub mod api;
pub mod bank;
pub mod bugs;
pub mod command;
pub mod config;
pub mod disk;
pub mod driver;
pub mod http;
pub mod leaderless;
pub mod log;
pub mod machine;
pub mod metrics;
pub mod passive;
pub mod progress;
pub mod quorum;
#[cfg(test)]
mod sim;
pub mod store;
pub mod transport;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

pub use bugs::{Bug, BugError};
pub use config::{Channels, Config, ConfigError, Mode, NodeArgs};

use crate::disk::Disk;
use crate::driver::Driver;
use crate::machine::Machine;
use crate::metrics::Metrics;
use crate::transport::Transport;

/// The tokio runtime a node runs on, per `--worker-threads`: 1 a current-thread runtime,
/// 0 a multi-thread one with a worker per core, N that many workers. Errors: the OS
/// refused the runtime's threads or its I/O driver.
///
/// One thread is the default: the protocol loop is one task that takes every event in
/// turn, so more workers mostly add cross-thread wake-ups and task stealing; on the
/// cluster bench one thread gave more ops/s at less CPU per op in every mode
/// (nodes/README.md, "One thread per node, and the leaderless stall").
pub fn runtime(workers: u16) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match workers {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(usize::from(n));
            b
        }
    };
    builder.enable_all().build()
}

/// Turns transparent huge pages off for this process (Linux `prctl(PR_SET_THP_DISABLE)`),
/// unless `MIMALLOC_ALLOW_THP` is set, in which case the allocator's own option decides.
///
/// A node's heap grows with every command it holds, and mimalloc asks for huge pages for
/// its large regions: the kernel then zero-fills 2 MiB inside one page fault of the
/// protocol loop, and every client of the node waits for it. On the cluster bench huge
/// pages were the leaderless mode's latency tail (p99 9–14 ms against 6–8 without, the
/// longest op 26–30 ms against 12–14; nodes/README.md, "Huge pages and the command
/// table"). Errors are ignored: where the call is refused the node runs as before.
pub fn no_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Runs a node until it is stopped; returns the process exit code: 0 after SIGINT or
/// SIGTERM, 1 when it cannot run (port taken, data dir unusable), 2 for bad flags.
pub fn run(args: NodeArgs) -> i32 {
    no_huge_pages();
    let workers = args.worker_threads;
    let config = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("faultline node: {e}");
            return 2;
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FAULTLINE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match runtime(workers) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("faultline node {}: cannot start runtime: {e}", config.id);
            return 1;
        }
    };
    runtime.block_on(async move {
        let id = config.id.clone();
        let listener = match TcpListener::bind(&config.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("faultline node {id}: --listen {}: {e}", config.listen);
                return 1;
            }
        };
        tokio::select! {
            result = serve(config, listener) => match result {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("faultline node {id}: {e}");
                    1
                }
            },
            _ = shutdown_signal() => 0,
        }
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Serves one node on `listener` until the server or the protocol loop stops. Needs a
/// multi-threaded tokio runtime.
pub async fn serve(config: Config, listener: TcpListener) -> anyhow::Result<()> {
    let (disk, hard, entries) = Disk::open(&config.data_dir)?;
    let peers: Vec<String> = config.peers.iter().map(|(id, _)| id.clone()).collect();
    let seed = rand::random();
    match config.mode {
        Mode::Passive => {
            let machine = passive::Raft::restore(
                config.id.clone(),
                peers,
                config.bugs.clone(),
                config.timing,
                seed,
                hard,
                entries,
            );
            serve_machine(config, listener, disk, machine).await
        }
        Mode::Active => {
            let machine = active::Vr::restore(
                config.id.clone(),
                peers,
                config.bugs.clone(),
                config.timing,
                seed,
                hard,
                entries,
            );
            serve_machine(config, listener, disk, machine).await
        }
        Mode::Leaderless => {
            let mut disk = disk;
            let records = disk.load_records()?;
            let machine = leaderless::Tempo::restore(
                config.id.clone(),
                peers,
                config.bugs.clone(),
                config.timing,
                seed,
                &records,
            )
            .map_err(|e| anyhow::anyhow!("{}: {e}", config.data_dir.display()))?;
            serve_machine(config, listener, disk, machine).await
        }
    }
}

async fn serve_machine<M: Machine>(
    config: Config,
    listener: TcpListener,
    disk: Disk,
    machine: M,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let transport = Arc::new(Transport::new(
        config.id.clone(),
        &config.peers,
        config.peer_timeout,
        metrics,
        config.cluster_secret.as_deref(),
        config.idle_timeout,
    )?);
    let bank = bank::Bank::open(&config, transport.clone())?;
    let (events_tx, events_rx) = mpsc::channel(16 * 1024);
    let (status_tx, status_rx) = watch::channel(machine.status());
    let driver = Driver::new(
        machine,
        disk,
        events_rx,
        events_tx.clone(),
        transport.clone(),
        status_tx,
        config.tick,
    );
    let start_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    tracing::info!(
        id = %config.id,
        mode = config.mode.name(),
        listen = %listener.local_addr()?,
        bugs = ?config.bugs.names(),
        "node starting"
    );
    if config.cluster_secret.is_none() {
        tracing::warn!(
            "no cluster secret (FAULTLINE_CLUSTER_SECRET / --cluster-secret): the peer and \
             /admin routes are open to anyone who can reach this port"
        );
    }
    let idle = config.idle_timeout;
    let node = Arc::new(api::Node::<M> {
        config: Arc::new(config),
        events: events_tx,
        transport,
        status: status_rx,
        next_request: AtomicU64::new(start_ns),
    });
    let app = http::with_common_layers(api::router(node).merge(bank::api::router(bank.clone())));
    bank.start();
    let driver = tokio::spawn(driver.run());
    tokio::select! {
        r = http::serve(listener, app, idle) => r.map_err(Into::into),
        _ = driver => anyhow::bail!("protocol loop stopped (see the log above)"),
    }
}
