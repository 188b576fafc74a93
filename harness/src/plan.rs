//! The validated run (stage two): `Plan::from_args` turns the flags into the parts of a
//! test — the system, the workload, the faults, the backend — refusing, in one line and
//! before anything starts, whatever cannot run. The registries that map `--system` and
//! `--workload` to implementations live here, so the parts never import the CLI.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::ValueEnum;
use nodes::Bug;
use workloads::WorkloadKind;

use crate::bank::{BankPlan, BankWorkload, Channels, SnapshotAlgo};
use crate::cli::{BackendKind, Mode, RunArgs};
use crate::fault::{self, FaultKind};
use crate::system::etcd;
use crate::system::faultline::FaultlineSystem;
use crate::system::{System, SystemError, SystemKind};
use crate::workload::register::RegisterWorkload;
use crate::workload::{Workload, WorkloadError};

/// Why a run was refused before anything started: one line naming the flag and what it
/// accepts.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("--{flag} must be {expected}, got {got}")]
    OutOfRange {
        flag: &'static str,
        expected: &'static str,
        got: String,
    },
    #[error("--bug {name}: no such bug; known bugs: {known}")]
    UnknownBug { name: String, known: String },
    #[error("--bug {name} exists only in {exists_in}, not in --mode {mode}; {mode} mode's bugs: {known}")]
    BugNotInMode {
        name: &'static str,
        exists_in: String,
        mode: &'static str,
        known: String,
    },
    /// A combination the workload, system or backend cannot run.
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Workload(#[from] crate::workload::WorkloadError),
    #[error(transparent)]
    System(#[from] crate::system::SystemError),
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
    #[error("{0}")]
    Invalid(String),
}

/// A validated run: the system under test, the workload, and how to run them.
#[derive(Debug, Clone)]
pub struct Plan {
    pub system: Arc<dyn System>,
    pub workload: Arc<dyn Workload>,
    pub mode: Mode,
    pub nodes: usize,
    pub bugs: Vec<Bug>,
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
}

/// A positive, finite number of seconds below ~4 months (a `Duration` cannot hold more
/// than that safely in every sum the run makes).
pub fn positive_secs(flag: &'static str, s: f64) -> Result<Duration, PlanError> {
    if s.is_finite() && s > 0.0 && s < 1e7 {
        Ok(Duration::from_secs_f64(s))
    } else {
        Err(PlanError::OutOfRange {
            flag,
            expected: "a positive number of seconds (below 10^7)",
            got: s.to_string(),
        })
    }
}

fn in_range<T: PartialOrd + std::fmt::Display>(
    flag: &'static str,
    value: T,
    range: std::ops::RangeInclusive<T>,
    expected: &'static str,
) -> Result<T, PlanError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(PlanError::OutOfRange {
            flag,
            expected,
            got: value.to_string(),
        })
    }
}

/// The bugs a node in `mode` can run: the mode's own and the mode-free (bank) ones.
pub fn bugs_in(mode: Mode) -> Vec<Bug> {
    Bug::value_variants()
        .iter()
        .copied()
        .filter(|b| b.mode().is_none_or(|m| m == mode))
        .collect()
}

fn bug_list(bugs: &[Bug]) -> String {
    bugs.iter()
        .map(|b| match b.mode() {
            Some(_) => b.name().to_string(),
            None => format!("{} (bank)", b.name()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every known bug, by mode.
fn known_bugs() -> String {
    let mut parts: Vec<String> = Mode::value_variants()
        .iter()
        .map(|m| {
            let own: Vec<Bug> = Bug::value_variants()
                .iter()
                .copied()
                .filter(|b| b.mode() == Some(*m))
                .collect();
            format!("{}: {}", m.name(), bug_list(&own))
        })
        .collect();
    let any: Vec<Bug> = Bug::value_variants()
        .iter()
        .copied()
        .filter(|b| b.mode().is_none())
        .collect();
    if !any.is_empty() {
        parts.push(format!("any mode: {}", bug_list(&any)));
    }
    parts.join("; ")
}

/// `--bug NAME` for `mode`: a known bug that exists in that mode.
pub fn parse_bug(name: &str, mode: Mode) -> Result<Bug, PlanError> {
    let bug = Bug::value_variants()
        .iter()
        .copied()
        .find(|b| b.name() == name)
        .ok_or_else(|| PlanError::UnknownBug {
            name: name.to_string(),
            known: known_bugs(),
        })?;
    match bug.mode() {
        Some(m) if m != mode => Err(PlanError::BugNotInMode {
            name: bug.name(),
            exists_in: format!("{} mode", m.name()),
            mode: mode.name(),
            known: bug_list(&bugs_in(mode)),
        }),
        _ => Ok(bug),
    }
}

impl Plan {
    pub fn from_args(args: RunArgs) -> Result<Self, PlanError> {
        let nodes = in_range("nodes", args.nodes, 1..=50, "between 1 and 50")?;
        let concurrency = in_range(
            "concurrency",
            args.concurrency,
            1..=10_000,
            "between 1 and 10000",
        )?;
        if !(args.rate.is_finite() && (0.0..=1_000_000.0).contains(&args.rate)) {
            return Err(PlanError::OutOfRange {
                flag: "rate",
                expected: "between 0 and 1000000 ops/s",
                got: args.rate.to_string(),
            });
        }
        let keys = in_range("keys", args.keys, 1..=1_000_000, "between 1 and 1000000")?;
        let op_timeout = in_range(
            "op-timeout",
            args.op_timeout,
            1..=3_600_000,
            "between 1 and 3600000 ms",
        )?;
        let time_limit = positive_secs("time-limit", args.time_limit)?;
        let nemesis_interval = positive_secs("nemesis-interval", args.nemesis_interval)?;
        let check_timeout = positive_secs("check-timeout", args.check_timeout)?;
        args.system.check_bugs(&args.bugs)?;
        let mut bugs = Vec::new();
        // docker-compose.yml passes `--bug=${FAULTLINE_BUGS:-}`: a list, maybe empty.
        let names = args.bugs.iter().flat_map(|b| b.split(',')).map(str::trim);
        for name in names.filter(|n| !n.is_empty()) {
            let bug = parse_bug(name, args.mode)?;
            if !bugs.contains(&bug) {
                bugs.push(bug);
            }
        }
        let nemesis = fault::parse_list(&args.nemesis)
            .map_err(|e| PlanError::Invalid(format!("--nemesis: {e}")))?;
        let workload = build_workload(&args)?;
        let mut node_flags = workload.node_flags();
        if args.deterministic_roll {
            node_flags.push("--deterministic-roll".into());
        }
        let system = build_system(&args, &bugs, node_flags)?;
        workload.supports_system(system.name())?;
        for &kind in &nemesis {
            args.backend.supports(kind)?;
            system.supports(kind)?;
        }
        let name = match args.name {
            Some(name)
                if !name.is_empty()
                    && !name.contains('/')
                    && name != "latest"
                    && name != "."
                    && name != ".." =>
            {
                name
            }
            Some(name) => {
                return Err(PlanError::Invalid(format!(
                    "--name `{name}`: must be a plain folder name"
                )))
            }
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
                let mut name = format!("{}-{}-{}", system.label(), workload.name(), faults);
                for tag in workload.name_tags() {
                    name.push_str(&format!("-{tag}"));
                }
                for bug in &bugs {
                    name.push_str(&format!("-{}", bug.name()));
                }
                name
            }
        };
        Ok(Self {
            system,
            workload,
            mode: args.mode,
            nodes,
            bugs,
            concurrency,
            rate: args.rate,
            keys,
            time_limit,
            nemesis,
            nemesis_interval,
            fault_cycles: args.fault_cycles,
            seed: args.seed.unwrap_or_else(rand::random),
            store: args.store,
            backend: args.backend,
            op_timeout: Duration::from_millis(op_timeout),
            name,
            check_timeout,
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

/// The registry: `--workload` → its implementation, with its flags validated.
pub fn build_workload(args: &RunArgs) -> Result<Arc<dyn Workload>, WorkloadError> {
    let bank_only = bank_flag_given(args);
    if args.workload != WorkloadKind::Bank {
        if let Some(flag) = bank_only {
            return Err(WorkloadError::Invalid(format!(
                "{flag} only applies to --workload bank (this run's workload is {})",
                args.workload.name()
            )));
        }
    }
    let rolls = args.nondeterministic.unwrap_or(0);
    if let Some(p) = args.nondeterministic {
        if p > 100 {
            return Err(WorkloadError::Invalid(format!(
                "--nondeterministic must be a percent between 0 and 100, got {p}"
            )));
        }
        if args.workload == WorkloadKind::Bank {
            return Err(WorkloadError::Invalid(
                "--nondeterministic only applies to --workload kv or register (this run's workload is bank)".into(),
            ));
        }
    }
    Ok(match args.workload {
        WorkloadKind::Register | WorkloadKind::Kv => Arc::new(
            RegisterWorkload::new(args.workload, args.keys)?
                .with_rolls(rolls, args.deterministic_roll),
        ),
        WorkloadKind::Bank => Arc::new(bank_workload(args)?),
    })
}

/// The first bank-only flag given, if any (refused for other workloads).
fn bank_flag_given(args: &RunArgs) -> Option<&'static str> {
    [
        ("--channels", args.channels.is_some()),
        ("--snapshot-interval", args.snapshot_interval.is_some()),
        ("--snapshot-timeout", args.snapshot_timeout.is_some()),
        ("--snapshot-algo", args.snapshot_algo.is_some()),
        ("--initial-balance", args.initial_balance.is_some()),
    ]
    .into_iter()
    .find(|(_, given)| *given)
    .map(|(flag, _)| flag)
}

/// The bank flags, validated.
fn bank_workload(args: &RunArgs) -> Result<BankWorkload, WorkloadError> {
    if args.nodes < 2 {
        return Err(WorkloadError::Invalid(format!(
            "--workload bank needs at least 2 nodes to move money between, got --nodes {}",
            args.nodes
        )));
    }
    let initial_balance = args.initial_balance.unwrap_or(1000);
    if !(1..=1_000_000_000_000).contains(&initial_balance) {
        return Err(WorkloadError::Invalid(format!(
            "--initial-balance must be between 1 and 10^12, got {initial_balance}"
        )));
    }
    let secs = |flag, s| positive_secs(flag, s).map_err(|e| WorkloadError::Invalid(e.to_string()));
    Ok(BankWorkload {
        plan: BankPlan {
            channels: args.channels.unwrap_or(Channels::Fifo),
            algo: args.snapshot_algo.unwrap_or(SnapshotAlgo::ChandyLamport),
            snapshot_interval: secs("snapshot-interval", args.snapshot_interval.unwrap_or(2.0))?,
            snapshot_timeout: secs("snapshot-timeout", args.snapshot_timeout.unwrap_or(3.0))?,
            initial_balance,
        },
    })
}

/// The registry: `--system` → its implementation, for these (validated) bugs and the
/// workload's node flags.
pub fn build_system(
    args: &RunArgs,
    bugs: &[nodes::Bug],
    node_flags: Vec<String>,
) -> Result<Arc<dyn System>, SystemError> {
    let etcd_only = [
        ("--etcd-bin", args.etcd_bin.is_some()),
        ("--read-consistency", args.read_consistency.is_some()),
    ];
    if args.system == SystemKind::Etcd && args.nondeterministic.unwrap_or(0) > 0 {
        return Err(SystemError::Unsupported(
            "--nondeterministic needs a server-side roll (POST /kv/{key}/roll); etcd has none"
                .into(),
        ));
    }
    if args.system != SystemKind::Etcd {
        if let Some((flag, _)) = etcd_only.iter().find(|(_, given)| *given) {
            return Err(SystemError::Unsupported(format!(
                "{flag} only applies to --system etcd (this run's system is {})",
                args.system.name()
            )));
        }
    }
    if args.system == SystemKind::Etcd && args.backend == crate::backend::BackendKind::Compose {
        return Err(SystemError::Unsupported(
            "--system etcd with --backend compose: the compose file's nodes run faultline's image, which has no etcd binary; use --backend docker (it bind-mounts --etcd-bin into each container) or sandbox".into(),
        ));
    }
    match args.system {
        SystemKind::Etcd => {
            let bin = args.etcd_bin.clone().unwrap_or_else(etcd::default_bin);
            let consistency = args.read_consistency.unwrap_or_default();
            Ok(Arc::new(etcd::EtcdSystem::new(&bin, consistency)?))
        }
        SystemKind::Faultline => {
            let exe = std::env::current_exe().map_err(|e| SystemError::NoProgram {
                program: "the faultline executable",
                why: e.to_string(),
            })?;
            Ok(Arc::new(FaultlineSystem {
                exe,
                mode: args.mode,
                bugs: bugs.to_vec(),
                node_flags,
                secret: FaultlineSystem::new_secret(),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn plan(args: &[&str]) -> Result<Plan, PlanError> {
        let cli = Cli::try_parse_from(std::iter::once("run").chain(args.iter().copied()))
            .expect("flags parse");
        Plan::from_args(cli.run)
    }

    fn refusal(args: &[&str]) -> String {
        match plan(args) {
            Ok(_) => panic!("{args:?} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_misspelt_bug_is_refused_naming_the_known_bugs_per_mode() {
        let e = refusal(&["--bug", "stale-raed"]);
        assert!(e.contains("stale-raed") && e.contains("no such bug"), "{e}");
        assert!(e.contains("passive: stale-read"), "{e}");
        assert!(e.contains("active: deliver-unagreed"), "{e}");
    }

    #[test]
    fn a_bug_of_another_mode_is_refused_naming_this_modes_bugs() {
        let e = refusal(&["--mode", "active", "--bug", "stale-read"]);
        assert!(e.contains("only in passive mode"), "{e}");
        assert!(e.contains("active mode's bugs: deliver-unagreed"), "{e}");
        assert!(!e.contains("stale-read,"), "{e}");
        assert!(plan(&["--mode", "active", "--bug", "deliver-unagreed"]).is_ok());
        assert!(plan(&["--bug", "marker-after-send", "--workload", "bank"]).is_ok());
    }

    #[test]
    fn every_out_of_range_value_is_refused_naming_its_flag() {
        for (args, flag) in [
            (&["--nodes", "0"][..], "--nodes"),
            (&["--nodes", "51"][..], "--nodes"),
            (&["--concurrency", "0"][..], "--concurrency"),
            (&["--concurrency", "10001"][..], "--concurrency"),
            (&["--rate=-1"][..], "--rate"),
            (&["--rate", "-1"][..], "--rate"),
            (&["--time-limit", "-3"][..], "--time-limit"),
            (&["--rate", "NaN"][..], "--rate"),
            (&["--rate", "1e9"][..], "--rate"),
            (&["--keys", "0"][..], "--keys"),
            (&["--op-timeout", "0"][..], "--op-timeout"),
            (&["--time-limit", "0"][..], "--time-limit"),
            (&["--time-limit", "inf"][..], "--time-limit"),
            (&["--nemesis-interval=-2"][..], "--nemesis-interval"),
            (&["--check-timeout", "0"][..], "--check-timeout"),
            (&["--name", ".."][..], "--name"),
        ] {
            let e = refusal(args);
            assert!(e.contains(flag), "{args:?}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn every_backend_plans_every_fault_and_bug_lists_split() {
        // Compose runs the same faults as docker now (issue 15); whether this machine can
        // apply them is the backend preflight's call, not the plan's.
        assert!(plan(&["--backend", "compose", "--nemesis", "partition,packet"]).is_ok());
        assert!(plan(&["--backend", "docker", "--nemesis", "packet"]).is_ok());
        let p = plan(&["--bug=", "--bug", "stale-read,", "--bug=stale-read"]).unwrap();
        assert_eq!(p.bugs.len(), 1);
        assert!(refusal(&["--bug=stale-read,nonsense"]).contains("nonsense"));
    }

    #[test]
    fn bank_flags_belong_to_the_bank() {
        let e = refusal(&["--channels", "unordered"]);
        assert!(e.contains("only applies to --workload bank"), "{e}");
        let e = refusal(&["--workload", "bank", "--nodes", "1"]);
        assert!(e.contains("at least 2 nodes"), "{e}");
    }

    #[test]
    fn the_default_name_is_made_of_the_parts() {
        let p = plan(&[
            "--workload",
            "bank",
            "--channels",
            "unordered",
            "--nemesis",
            "kill,partition",
            "--bug",
            "marker-after-send",
        ])
        .unwrap();
        assert_eq!(
            p.name,
            "passive-bank-partition+kill-unordered-marker-after-send"
        );
        let p = plan(&["--mode", "active"]).unwrap();
        assert_eq!(p.name, "active-kv-partition");
        assert_eq!(p.system.name(), "faultline");
    }
}
