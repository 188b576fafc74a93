//! `faultline run` flags: what the user typed (stage one). `crate::plan` validates them
//! into the `Plan` the run follows (stage two).

use std::path::PathBuf;

use clap::Args;
use workloads::WorkloadKind;

use crate::bank::{Channels, SnapshotAlgo};
use crate::system::SystemKind;

pub use crate::backend::BackendKind;
/// The replication mode is the nodes' own flag, passed to every node.
pub use nodes::Mode;

/// Start a cluster, drive concurrent clients while a nemesis injects faults, record the
/// history, check it and write a results folder.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Exit status: 0 valid, 1 invalid, 2 unknown, 3 or more: error (bad usage, sandbox not available, cluster did not start)."
)]
pub struct RunArgs {
    /// The system under test.
    #[arg(long, value_enum, default_value_t = SystemKind::Faultline)]
    pub system: SystemKind,

    /// etcd: the etcd binary (3.4) [default: $FAULTLINE_ETCD_BIN, else /usr/bin/etcd].
    #[arg(long, value_name = "PATH")]
    pub etcd_bin: Option<PathBuf>,

    /// etcd: how reads are served — linearizable (read index) or serializable (the
    /// member's local state) [default: linearizable].
    #[arg(long, value_enum)]
    pub read_consistency: Option<crate::system::etcd::ReadConsistency>,

    /// Replication mode of the nodes.
    #[arg(long, value_enum, default_value_t = Mode::Passive)]
    pub mode: Mode,

    /// What clients do: `register` (one cas-register), `kv` (cas-registers over --keys keys)
    /// or `bank` (transfers between the nodes' accounts, with global snapshots).
    #[arg(long, default_value = "kv", value_parser = parse_workload)]
    pub workload: WorkloadKind,

    /// Number of nodes in the cluster (1..=50).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,

    /// Run every node with this named bug (repeatable, or a comma-separated list; empty
    /// names are ignored, so `--bug=` is no bug), e.g. stale-read, ack-before-commit;
    /// a bug must exist in --mode.
    #[arg(long = "bug", value_name = "NAME")]
    pub bugs: Vec<String>,

    /// Client workers (Jepsen processes, 1..=10000); worker i talks to node i mod --nodes.
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,

    /// Target ops/s over all workers (0..=1000000), with randomized stagger; 0 = as fast as
    /// possible.
    #[arg(long, default_value_t = 200.0, allow_negative_numbers = true)]
    pub rate: f64,

    /// Number of keys for the kv workload (1..=1000000).
    #[arg(long, default_value_t = 8)]
    pub keys: usize,

    /// Seconds of the main phase (clients + nemesis), before heal, recovery and final reads.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 30.0,
        allow_negative_numbers = true
    )]
    pub time_limit: f64,

    /// Faults to inject: comma list of partition, isolate-leader, kill, kill-majority-apart
    /// (a killed majority restarts cut off from the rest), pause, packet, clock (per-node
    /// clock offsets, for --snapshot-algo clock); or all (partition, kill, pause, packet),
    /// or none.
    #[arg(long, value_name = "LIST", default_value = "partition")]
    pub nemesis: String,

    /// Seconds between faults, and how long each fault is held.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 5.0,
        allow_negative_numbers = true
    )]
    pub nemesis_interval: f64,

    /// Inject at most N faults, then leave the cluster healthy for the rest of the main
    /// phase [default: no limit].
    #[arg(long, value_name = "N")]
    pub fault_cycles: Option<usize>,

    /// Seed for the op generators and the fault schedule [default: random, printed].
    #[arg(long)]
    pub seed: Option<u64>,

    /// Results go to STORE/<test-name>/<timestamp>/, with STORE/latest pointing at the last run.
    #[arg(long, value_name = "DIR", default_value = "store")]
    pub store: PathBuf,

    /// Where the cluster runs.
    #[arg(long, value_enum, default_value_t = BackendKind::Sandbox)]
    pub backend: BackendKind,

    /// Per-op deadline in milliseconds (1..=3600000); a write past it is recorded as `info`.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub op_timeout: u64,

    /// Name of the test (the folder under --store) [default: <mode>-<workload>-<nemesis>[-<bugs>]].
    #[arg(long)]
    pub name: Option<String>,

    /// Seconds the checker may spend before answering `unknown`.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 60.0,
        allow_negative_numbers = true
    )]
    pub check_timeout: f64,

    /// kv / register: percent (0..=100) of writes that are non-deterministic rolls
    /// (`POST /kv/{key}/roll`: the server draws the value) [default: 0].
    #[arg(long, value_name = "P")]
    pub nondeterministic: Option<u32>,

    /// Nodes order a roll's value with the request (the node the client reached draws it),
    /// so active modes stay deterministic (node flag `--deterministic-roll`).
    #[arg(long)]
    pub deterministic_roll: bool,

    /// Bank: how nodes deliver frames on their peer channels [default: fifo].
    #[arg(long, value_enum)]
    pub channels: Option<Channels>,

    /// Bank: seconds between global snapshots, each from a random initiator [default: 2].
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    pub snapshot_interval: Option<f64>,

    /// Bank: seconds the initiator waits for every checkpoint before it reports the
    /// snapshot incomplete [default: 3].
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    pub snapshot_timeout: Option<f64>,

    /// Bank: the snapshot algorithm [default: chandy-lamport].
    #[arg(long, value_enum)]
    pub snapshot_algo: Option<SnapshotAlgo>,

    /// Bank: every node's starting balance [default: 1000].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub initial_balance: Option<i64>,
}

fn parse_workload(s: &str) -> Result<WorkloadKind, String> {
    s.parse()
}
