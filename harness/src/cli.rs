//! `faultline run` flags (stage one: what the user typed) and the validated `Plan`
//! derived from them (stage two: what the run does).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use workloads::WorkloadKind;

use crate::bank::{BankPlan, Channels, SnapshotAlgo};
use crate::nemesis::{self, FaultKind};

/// The replication mode is the nodes' own flag, passed to every node.
pub use nodes::Mode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// Private user + network + PID namespaces; no Docker, no root needed.
    Sandbox,
    /// One container per node on an internal Docker network the run creates and removes
    /// (image faultline:latest, see scripts/docker-image.sh).
    Docker,
    /// The node containers of the docker-compose.yml project this harness runs in
    /// (see docker-compose.yml); partitions via the nodes' /admin/isolate; no packet faults.
    Compose,
}

/// Start a cluster, drive concurrent clients while a nemesis injects faults, record the
/// history, check it and write a results folder.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Exit status: 0 valid, 1 invalid, 2 unknown, 3 or more: error (bad usage, sandbox not available, cluster did not start)."
)]
pub struct RunArgs {
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

    /// Run every node with this named bug (repeatable), e.g. stale-read, ack-before-commit.
    #[arg(long = "bug", value_name = "NAME")]
    pub bugs: Vec<String>,

    /// Client workers (Jepsen processes); worker i talks to node i mod --nodes.
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,

    /// Target ops/s over all workers, with randomized stagger; 0 = as fast as possible.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,

    /// Number of keys for the kv workload.
    #[arg(long, default_value_t = 8)]
    pub keys: usize,

    /// Seconds of the main phase (clients + nemesis), before heal, recovery and final reads.
    #[arg(long, value_name = "S", default_value_t = 30.0)]
    pub time_limit: f64,

    /// Faults to inject: comma list of partition, isolate-leader, kill, kill-majority-apart
    /// (a killed majority restarts cut off from the rest), pause, packet, clock (per-node
    /// clock offsets, for --snapshot-algo clock); or all (partition, kill, pause, packet),
    /// or none; or role-targeted scenarios (one fault at one role, resolved when it
    /// starts): leader-kill, leader-pause, leader-isolate, leader-slow, follower-kill,
    /// follower-pause, follower-isolate, follower-slow, minority-partition.
    #[arg(long, value_name = "LIST", default_value = "partition")]
    pub nemesis: String,

    /// Seconds between faults, and how long each fault is held.
    #[arg(long, value_name = "S", default_value_t = 5.0)]
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

    /// Per-op deadline in milliseconds; a write past it is recorded as `info`.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub op_timeout: u64,

    /// Name of the test (the folder under --store) [default: <mode>-<workload>-<nemesis>[-<bugs>]].
    #[arg(long)]
    pub name: Option<String>,

    /// Seconds the checker may spend before answering `unknown`.
    #[arg(long, value_name = "S", default_value_t = 60.0)]
    pub check_timeout: f64,

    /// Bank: how nodes deliver frames on their peer channels [default: fifo].
    #[arg(long, value_enum)]
    pub channels: Option<Channels>,

    /// Bank: seconds between global snapshots, each from a random initiator [default: 2].
    #[arg(long, value_name = "S")]
    pub snapshot_interval: Option<f64>,

    /// Bank: seconds the initiator waits for every checkpoint before it reports the
    /// snapshot incomplete [default: 3].
    #[arg(long, value_name = "S")]
    pub snapshot_timeout: Option<f64>,

    /// Bank: the snapshot algorithm [default: chandy-lamport].
    #[arg(long, value_enum)]
    pub snapshot_algo: Option<SnapshotAlgo>,

    /// Bank: every node's starting balance [default: 1000].
    #[arg(long, value_name = "N")]
    pub initial_balance: Option<i64>,
}

fn parse_workload(s: &str) -> Result<WorkloadKind, String> {
    s.parse()
}

/// A validated run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: Mode,
    pub workload: WorkloadKind,
    pub nodes: usize,
    pub bugs: Vec<String>,
    pub concurrency: usize,
    pub rate: f64,
    pub keys: usize,
    pub time_limit: Duration,
    pub nemesis: Vec<FaultKind>,
    pub nemesis_interval: Duration,
    /// `--fault-cycles`: the most faults the nemesis starts.
    pub fault_cycles: Option<usize>,
    pub seed: u64,
    pub store: PathBuf,
    pub backend: BackendKind,
    pub op_timeout: Duration,
    pub name: String,
    pub check_timeout: Duration,
    /// Set exactly when the workload is bank.
    pub bank: Option<BankPlan>,
}

fn positive_secs(flag: &str, s: f64) -> Result<Duration, String> {
    if s.is_finite() && s > 0.0 && s < 1e7 {
        Ok(Duration::from_secs_f64(s))
    } else {
        Err(format!(
            "--{flag} must be a positive number of seconds, got {s}"
        ))
    }
}

/// The bank flags, validated; `None` for the other workloads, which must not be given them.
fn bank_plan(args: &RunArgs) -> Result<Option<BankPlan>, String> {
    if args.workload != WorkloadKind::Bank {
        let given = [
            ("--channels", args.channels.is_some()),
            ("--snapshot-interval", args.snapshot_interval.is_some()),
            ("--snapshot-timeout", args.snapshot_timeout.is_some()),
            ("--snapshot-algo", args.snapshot_algo.is_some()),
            ("--initial-balance", args.initial_balance.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, given)| *given) {
            return Err(format!(
                "{flag} only applies to --workload bank (this run's workload is {})",
                args.workload.name()
            ));
        }
        return Ok(None);
    }
    if args.nodes < 2 {
        return Err(format!(
            "--workload bank needs at least 2 nodes to move money between, got --nodes {}",
            args.nodes
        ));
    }
    let initial_balance = args.initial_balance.unwrap_or(1000);
    if !(1..=1_000_000_000_000).contains(&initial_balance) {
        return Err(format!(
            "--initial-balance must be between 1 and 10^12, got {initial_balance}"
        ));
    }
    Ok(Some(BankPlan {
        channels: args.channels.unwrap_or(Channels::Fifo),
        algo: args.snapshot_algo.unwrap_or(SnapshotAlgo::ChandyLamport),
        snapshot_interval: positive_secs(
            "snapshot-interval",
            args.snapshot_interval.unwrap_or(2.0),
        )?,
        snapshot_timeout: positive_secs("snapshot-timeout", args.snapshot_timeout.unwrap_or(3.0))?,
        initial_balance,
    }))
}

impl Plan {
    pub fn from_args(args: RunArgs) -> Result<Self, String> {
        if !(1..=50).contains(&args.nodes) {
            return Err(format!(
                "--nodes must be between 1 and 50, got {}",
                args.nodes
            ));
        }
        if !(1..=10_000).contains(&args.concurrency) {
            return Err(format!(
                "--concurrency must be between 1 and 10000, got {}",
                args.concurrency
            ));
        }
        if !(args.rate.is_finite() && args.rate >= 0.0) {
            return Err(format!("--rate must be >= 0, got {}", args.rate));
        }
        if args.keys == 0 {
            return Err("--keys must be at least 1".into());
        }
        if args.op_timeout == 0 {
            return Err("--op-timeout must be at least 1 ms".into());
        }
        for bug in &args.bugs {
            if bug.is_empty() || !bug.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(format!("--bug `{bug}`: expected a name like stale-read"));
            }
        }
        let nemesis = nemesis::parse_list(&args.nemesis).map_err(|e| format!("--nemesis: {e}"))?;
        let bank = bank_plan(&args)?;
        let name = match args.name {
            Some(name) if !name.is_empty() && !name.contains('/') && name != "latest" => name,
            Some(name) => return Err(format!("--name `{name}`: must be a plain folder name")),
            None => {
                let faults = if nemesis.is_empty() {
                    "none".to_string()
                } else {
                    nemesis
                        .iter()
                        .map(|k| k.name())
                        .collect::<Vec<_>>()
                        .join("+")
                };
                let mut name = format!("{}-{}-{}", args.mode.name(), args.workload.name(), faults);
                if let Some(bank) = &bank {
                    if bank.channels != Channels::Fifo {
                        name.push_str(&format!("-{}", bank.channels.name()));
                    }
                    if bank.algo != SnapshotAlgo::ChandyLamport {
                        name.push_str(&format!("-{}", bank.algo.name()));
                    }
                }
                for bug in &args.bugs {
                    name.push_str(&format!("-{bug}"));
                }
                name
            }
        };
        Ok(Self {
            mode: args.mode,
            workload: args.workload,
            nodes: args.nodes,
            bugs: args.bugs,
            concurrency: args.concurrency,
            rate: args.rate,
            keys: args.keys,
            time_limit: positive_secs("time-limit", args.time_limit)?,
            nemesis,
            nemesis_interval: positive_secs("nemesis-interval", args.nemesis_interval)?,
            fault_cycles: args.fault_cycles,
            seed: args.seed.unwrap_or_else(rand::random),
            store: args.store,
            backend: args.backend,
            op_timeout: Duration::from_millis(args.op_timeout),
            name,
            check_timeout: positive_secs("check-timeout", args.check_timeout)?,
            bank,
        })
    }

    /// Mean pause between one worker's ops for the requested total rate.
    pub fn mean_gap(&self) -> Duration {
        if self.rate == 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(self.concurrency as f64 / self.rate)
        }
    }
}
