//! `faultline compare`: replication modes — and other systems — side by side under the
//! same faults.
//!
//! A column of the comparison is a (system, mode) pair, [`Column`]: `--modes
//! passive,active` is shorthand for `--systems faultline:passive,faultline:active`, and
//! `--systems faultline:passive,etcd` puts etcd's failure-time latency beside passive
//! mode's. For every scenario (one fault aimed at one role, `nemesis::scenario`), seed and
//! column it
//! runs `faultline run` as a child process (this same executable, so the one run pipeline
//! does the work: cluster, clients, nemesis, checker, results folder), with the same seed
//! — hence the same op sequence per worker and the same fault times — in every mode.
//! Then it reads each run's `results.json` (its `windows`, `cost_steady`, `verdict`),
//! summarises every figure over cycles × seeds as median and min–max, marks a difference
//! between modes as clear only when the ranges do not overlap, and writes
//! `STORE/compare/<timestamp>/` with each run's folder under `runs/`, `comparison.json`,
//! `comparison.md` and `comparison.html`.
//!
//! - `summary` — aggregation, the clear/unclear rule, comparison.json/.md and the reading.
//! - `html` — comparison.html: aligned per-scenario charts and bars, plotters SVG.
//!
//! Exit status: 0 when every run was valid; 1 if any run was invalid, 2 if any was
//! unknown (and none invalid), 3 when a run could not be made or read. Latency of a
//! wrong system is not a result, so a comparison with such a run is never a pass.

pub mod html;
pub mod summary;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime};

use clap::Args;

use crate::cli::{BackendKind, Mode};
use crate::nemesis::scenario::Scenario;
use crate::system::etcd::ReadConsistency;
use crate::system::SystemKind;
use crate::EXIT_ERROR;

/// Compare replication modes (and systems) under role-targeted faults.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Exit status: 0 every run valid, 1 a run invalid, 2 a run unknown, 3 or more: error (bad usage, a run that did not finish)."
)]
pub struct CompareArgs {
    /// Replication modes of faultline's nodes to compare, comma-separated [default:
    /// passive,active]; shorthand for `--systems faultline:M1,faultline:M2`.
    #[arg(long, value_name = "LIST", conflicts_with = "systems")]
    pub modes: Option<String>,

    /// Columns to compare, comma-separated, each a system and its setting:
    /// `faultline:MODE` (e.g. faultline:passive), `etcd` (linearizable reads) or
    /// `etcd:serializable`. E.g. `--systems faultline:passive,etcd`.
    #[arg(long, value_name = "LIST")]
    pub systems: Option<String>,

    /// The etcd binary for `etcd` columns (as `faultline run --etcd-bin`).
    #[arg(long, value_name = "PATH")]
    pub etcd_bin: Option<PathBuf>,

    /// Scenarios, comma-separated: leader-kill, leader-pause, leader-isolate, leader-slow,
    /// follower-kill, follower-pause, follower-isolate, follower-slow, minority-partition;
    /// or all.
    #[arg(
        long,
        value_name = "LIST",
        default_value = "leader-kill,leader-pause,follower-kill,follower-pause"
    )]
    pub scenarios: String,

    /// Seeds: a count N (seeds 1..=N) or an inclusive range A..B.
    #[arg(long, value_name = "N|A..B", default_value = "1")]
    pub seeds: String,

    /// Faults per run; each is held for one interval, with a healthy interval before,
    /// between and after.
    #[arg(long, value_name = "C", default_value_t = 3)]
    pub cycles: usize,

    /// Seconds of each run's main phase [default: 2 s × (2 × cycles + 1)]; the fault
    /// interval is this divided by (2 × cycles + 1).
    #[arg(long, value_name = "S")]
    pub time_limit: Option<f64>,

    /// Target ops/s over all client workers of a run.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,

    /// Client workers per run.
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,

    /// Nodes per cluster.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,

    /// Results go to STORE/compare/<timestamp>/.
    #[arg(long, value_name = "DIR", default_value = "store")]
    pub store: PathBuf,

    /// Where the clusters run.
    #[arg(long, value_enum, default_value_t = BackendKind::Sandbox)]
    pub backend: BackendKind,
}

/// One column of a comparison: a system under test and its setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The column's name in every table, chart and run name: the mode for faultline's
    /// nodes (`passive`), `etcd` or `etcd-serializable` for etcd.
    pub label: String,
    /// `faultline run --system`.
    pub system: SystemKind,
    /// `--mode` (faultline) or `--read-consistency` (etcd).
    pub setting: String,
}

impl Column {
    /// Parses one `--systems` item: `faultline:MODE`, `etcd` or `etcd:CONSISTENCY`.
    pub fn parse(item: &str) -> Result<Self, String> {
        let (system, setting) = match item.split_once(':') {
            Some((s, v)) => (s.trim(), Some(v.trim())),
            None => (item.trim(), None),
        };
        match system {
            "faultline" => {
                let m = setting.ok_or_else(|| {
                    format!("--systems: `{item}`: name the mode, e.g. faultline:passive")
                })?;
                Self::faultline(m).map_err(|e| format!("--systems: {e}"))
            }
            "etcd" => {
                let c = setting.unwrap_or("linearizable");
                let consistency = <ReadConsistency as clap::ValueEnum>::from_str(c, false)
                    .map_err(|_| {
                        format!("--systems: `{item}`: etcd reads are linearizable or serializable, not `{c}`")
                    })?;
                Ok(Self {
                    label: match consistency {
                        ReadConsistency::Linearizable => "etcd".into(),
                        ReadConsistency::Serializable => "etcd-serializable".into(),
                    },
                    system: SystemKind::Etcd,
                    setting: consistency.name().into(),
                })
            }
            other => Err(format!(
                "--systems: unknown system `{other}` in `{item}` (faultline:MODE, etcd, etcd:serializable)"
            )),
        }
    }

    /// faultline's nodes in mode `m`, labelled by the mode alone.
    pub fn faultline(m: &str) -> Result<Self, String> {
        let mode = <Mode as clap::ValueEnum>::from_str(m, false)
            .map_err(|_| format!("unknown mode `{m}`"))?;
        Ok(Self {
            label: mode.name().to_string(),
            system: SystemKind::Faultline,
            setting: mode.name().to_string(),
        })
    }

    /// The `faultline run` flags that select this column's system.
    fn run_args(&self, etcd_bin: Option<&Path>) -> Vec<String> {
        let mut a = vec!["--system".to_string(), self.system.name().to_string()];
        match self.system {
            SystemKind::Faultline => a.extend(["--mode".into(), self.setting.clone()]),
            SystemKind::Etcd => {
                a.extend(["--read-consistency".into(), self.setting.clone()]);
                if let Some(bin) = etcd_bin {
                    a.extend(["--etcd-bin".into(), bin.display().to_string()]);
                }
            }
        }
        a
    }
}

/// The validated comparison.
#[derive(Debug, Clone)]
pub struct ComparePlan {
    /// The columns' labels, in order (`columns[i].label`).
    pub modes: Vec<String>,
    pub columns: Vec<Column>,
    pub etcd_bin: Option<PathBuf>,
    pub scenarios: Vec<Scenario>,
    pub seeds: Vec<u64>,
    pub cycles: usize,
    pub time_limit_s: f64,
    pub interval_s: f64,
    pub rate: f64,
    pub concurrency: usize,
    pub nodes: usize,
    pub store: PathBuf,
    pub backend: BackendKind,
}

/// Parses `--seeds`: `N` (1..=N) or `A..B` (inclusive).
pub fn parse_seeds(s: &str) -> Result<Vec<u64>, String> {
    let bad = || format!("--seeds `{s}`: expected a count N or a range A..B");
    let seeds: Vec<u64> = match s.split_once("..") {
        Some((a, b)) => {
            let (a, b): (u64, u64) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim()
                    .trim_start_matches('=')
                    .parse()
                    .map_err(|_| bad())?,
            );
            if a > b {
                return Err(bad());
            }
            (a..=b).collect()
        }
        None => {
            let n: u64 = s.trim().parse().map_err(|_| bad())?;
            (1..=n).collect()
        }
    };
    if seeds.is_empty() || seeds.len() > 1000 {
        return Err(format!("--seeds `{s}`: between 1 and 1000 seeds, please"));
    }
    Ok(seeds)
}

impl ComparePlan {
    pub fn from_args(args: CompareArgs) -> Result<Self, String> {
        let mut columns: Vec<Column> = Vec::new();
        let (flag, list) = match (&args.systems, &args.modes) {
            (Some(_), Some(_)) => {
                return Err("--modes and --systems both name the columns; use one (e.g. --systems faultline:passive,etcd)".into())
            }
            (Some(s), None) => ("--systems", s.clone()),
            (None, Some(m)) => ("--modes", m.clone()),
            (None, None) => ("--modes", "passive,active".to_string()),
        };
        for item in list.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            let column = if flag == "--systems" {
                Column::parse(item)?
            } else {
                Column::faultline(item).map_err(|e| format!("--modes: {e}"))?
            };
            if !columns.iter().any(|c| c.label == column.label) {
                columns.push(column);
            }
        }
        if columns.is_empty() {
            return Err(format!("{flag}: name at least one column"));
        }
        let has_etcd = columns.iter().any(|c| c.system == SystemKind::Etcd);
        if args.etcd_bin.is_some() && !has_etcd {
            return Err("--etcd-bin: no etcd column (add etcd to --systems)".into());
        }
        if has_etcd {
            let bin = args
                .etcd_bin
                .clone()
                .unwrap_or_else(crate::system::etcd::default_bin);
            crate::system::etcd::EtcdSystem::new(&bin, ReadConsistency::Linearizable)
                .map_err(|e| format!("--systems etcd: {e}"))?;
        }
        let modes: Vec<String> = columns.iter().map(|c| c.label.clone()).collect();
        let mut scenarios = Vec::new();
        for s in args
            .scenarios
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            if s == "all" {
                scenarios.extend(Scenario::ALL);
                continue;
            }
            let scenario: Scenario = s.parse().map_err(|e| format!("--scenarios: {e}"))?;
            scenarios.push(scenario);
        }
        scenarios.dedup();
        if scenarios.is_empty() {
            return Err("--scenarios: name at least one scenario".into());
        }
        if !(1..=100).contains(&args.cycles) {
            return Err(format!(
                "--cycles must be between 1 and 100, got {}",
                args.cycles
            ));
        }
        let slots = (2 * args.cycles + 1) as f64;
        let time_limit_s = args.time_limit.unwrap_or(2.0 * slots);
        if !(time_limit_s.is_finite() && time_limit_s > 0.0 && time_limit_s < 1e6) {
            return Err(format!(
                "--time-limit must be a positive number of seconds, got {time_limit_s}"
            ));
        }
        let interval_s = time_limit_s / slots;
        if interval_s < 0.5 {
            return Err(format!(
                "--time-limit {time_limit_s} s is too short for {} cycles: each fault and each healthy gap would last {interval_s:.2} s (at least 0.5 s)",
                args.cycles
            ));
        }
        if !(args.rate.is_finite() && args.rate > 0.0) {
            return Err(format!("--rate must be > 0, got {}", args.rate));
        }
        if !(1..=10_000).contains(&args.concurrency) {
            return Err(format!(
                "--concurrency must be between 1 and 10000, got {}",
                args.concurrency
            ));
        }
        if !(2..=50).contains(&args.nodes) {
            return Err(format!(
                "--nodes must be between 2 and 50 to have a leader and a follower, got {}",
                args.nodes
            ));
        }
        if args.backend == BackendKind::Compose {
            return Err("--backend compose cannot restart the compose project per run; use sandbox or docker".into());
        }
        Ok(Self {
            modes,
            columns,
            etcd_bin: args.etcd_bin,
            scenarios,
            seeds: parse_seeds(&args.seeds)?,
            cycles: args.cycles,
            time_limit_s,
            interval_s,
            rate: args.rate,
            concurrency: args.concurrency,
            nodes: args.nodes,
            store: args.store,
            backend: args.backend,
        })
    }
}

/// One child run and what became of it.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The column's label (`Column::label`).
    pub mode: String,
    /// The column's system (`faultline`, `etcd`).
    pub system: &'static str,
    pub scenario: Scenario,
    pub seed: u64,
    pub name: String,
    /// The run's results folder, when it made one.
    pub dir: Option<PathBuf>,
    pub exit_code: Option<i32>,
    /// `results.json`, when it could be read.
    pub results: Option<serde_json::Value>,
    /// Why the run is not usable, if it is not.
    pub error: Option<String>,
    pub wall_s: f64,
}

impl RunOutcome {
    pub fn verdict(&self) -> &str {
        self.results
            .as_ref()
            .and_then(|r| r["verdict"].as_str())
            .unwrap_or("error")
    }
}

fn backend_name(b: BackendKind) -> &'static str {
    match b {
        BackendKind::Sandbox => "sandbox",
        BackendKind::Docker => "docker",
        BackendKind::Compose => "compose",
    }
}

/// The single results folder `faultline run --name <name>` made under `runs`.
fn run_folder(runs: &Path, name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(runs.join(name))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn run_one(
    exe: &Path,
    plan: &ComparePlan,
    runs: &Path,
    column: &Column,
    scenario: Scenario,
    seed: u64,
) -> RunOutcome {
    let mode = column.label.as_str();
    let name = format!("{mode}-{}-seed{seed}", scenario.name());
    let started = Instant::now();
    let log_path = runs.join(format!("{name}.log"));
    let mut outcome = RunOutcome {
        mode: mode.to_string(),
        system: column.system.name(),
        scenario,
        seed,
        name: name.clone(),
        dir: None,
        exit_code: None,
        results: None,
        error: None,
        wall_s: 0.0,
    };
    let log = match std::fs::File::create(&log_path) {
        Ok(f) => f,
        Err(e) => {
            outcome.error = Some(format!("creating {}: {e}", log_path.display()));
            return outcome;
        }
    };
    let err_log = log.try_clone();
    let mut cmd = Command::new(exe);
    cmd.arg("run")
        .args(column.run_args(plan.etcd_bin.as_deref()))
        .args(["--nemesis", scenario.name()])
        .args(["--nemesis-interval", &format!("{}", plan.interval_s)])
        .args(["--fault-cycles", &plan.cycles.to_string()])
        .args(["--time-limit", &format!("{}", plan.time_limit_s)])
        .args(["--seed", &seed.to_string()])
        .args(["--rate", &format!("{}", plan.rate)])
        .args(["--concurrency", &plan.concurrency.to_string()])
        .args(["--nodes", &plan.nodes.to_string()])
        .args(["--backend", backend_name(plan.backend)])
        .args(["--name", &name])
        .arg("--store")
        .arg(runs)
        .stdin(Stdio::null())
        .stdout(log);
    if let Ok(err_log) = err_log {
        cmd.stderr(err_log);
    }
    match cmd.status() {
        Ok(status) => outcome.exit_code = status.code(),
        Err(e) => {
            outcome.error = Some(format!("starting {}: {e}", exe.display()));
            return outcome;
        }
    }
    outcome.wall_s = started.elapsed().as_secs_f64();
    outcome.dir = run_folder(runs, &name);
    let Some(dir) = &outcome.dir else {
        outcome.error = Some(format!(
            "the run made no results folder (exit {:?}); see {}",
            outcome.exit_code,
            log_path.display()
        ));
        return outcome;
    };
    let path = dir.join("results.json");
    match std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).map_err(|e| e.to_string()))
    {
        Ok(results) => {
            if results["windows"].as_array().is_none() {
                outcome.error = Some(format!(
                    "{}: no `windows` (a run of an older faultline?)",
                    path.display()
                ));
            } else if results["verdict"].as_str() != Some("valid") {
                outcome.error = Some(format!(
                    "verdict {} (exit {:?}): latency of a run that is not valid is not a result; see {}",
                    results["verdict"].as_str().unwrap_or("missing"),
                    outcome.exit_code,
                    dir.join("report.html").display()
                ));
            }
            outcome.results = Some(results);
        }
        Err(e) => {
            outcome.error = Some(format!(
                "reading {}: {e} (exit {:?}); see {}",
                path.display(),
                outcome.exit_code,
                log_path.display()
            ))
        }
    }
    outcome
}

/// Runs the comparison; returns the exit code.
pub fn run(args: CompareArgs) -> i32 {
    let plan = match ComparePlan::from_args(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("faultline compare: {e}");
            return EXIT_ERROR;
        }
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("faultline compare: cannot find the faultline executable: {e}");
            return EXIT_ERROR;
        }
    };
    let started = SystemTime::now();
    let stamp: String = humantime::format_rfc3339_seconds(started)
        .to_string()
        .chars()
        .filter(|c| *c != ':' && *c != '-')
        .collect();
    let mut dir = plan.store.join("compare").join(&stamp);
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = plan.store.join("compare").join(format!("{stamp}-{n}"));
    }
    let runs = dir.join("runs");
    if let Err(e) = std::fs::create_dir_all(&runs) {
        eprintln!("faultline compare: creating {}: {e}", runs.display());
        return EXIT_ERROR;
    }
    let total = plan.scenarios.len() * plan.seeds.len() * plan.modes.len();
    eprintln!(
        "faultline compare: {} columns ({}) × {} scenarios × {} seeds = {total} runs of {:.1} s ({} faults of {:.2} s each); results in {}",
        plan.modes.len(),
        plan.modes.join(", "),
        plan.scenarios.len(),
        plan.seeds.len(),
        plan.time_limit_s,
        plan.cycles,
        plan.interval_s,
        dir.display()
    );
    let mut outcomes = Vec::with_capacity(total);
    for &scenario in &plan.scenarios {
        for &seed in &plan.seeds {
            for column in &plan.columns {
                let o = run_one(&exe, &plan, &runs, column, scenario, seed);
                eprintln!(
                    "  [{}/{total}] {:<8} {:<20} seed {:<4} {:<8} {:.1} s{}",
                    outcomes.len() + 1,
                    o.mode,
                    o.scenario.name(),
                    o.seed,
                    o.verdict(),
                    o.wall_s,
                    o.error
                        .as_ref()
                        .map_or(String::new(), |e| format!(" — {e}"))
                );
                outcomes.push(o);
            }
        }
    }
    let comparison = summary::Comparison::build(&plan, &outcomes, started);
    let files = [
        (
            "comparison.json",
            serde_json::to_string_pretty(&comparison.json()).unwrap_or_default() + "\n",
        ),
        ("comparison.md", comparison.markdown()),
        ("comparison.html", html::render(&comparison, &outcomes)),
    ];
    for (file, content) in files {
        if let Err(e) = std::fs::write(dir.join(file), content) {
            eprintln!(
                "faultline compare: writing {}: {e}",
                dir.join(file).display()
            );
            return EXIT_ERROR;
        }
    }
    println!("{}", comparison.table());
    for line in &comparison.reading {
        println!("{line}");
    }
    println!("\n{}", dir.join("comparison.html").display());
    comparison.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse() {
        assert_eq!(parse_seeds("3").unwrap(), vec![1, 2, 3]);
        assert_eq!(parse_seeds("7..9").unwrap(), vec![7, 8, 9]);
        assert!(parse_seeds("9..7").is_err());
        assert!(parse_seeds("x").unwrap_err().contains("--seeds"));
        assert!(parse_seeds("0").is_err());
    }

    #[test]
    fn columns_parse() {
        let c = Column::parse("faultline:passive").unwrap();
        assert_eq!(
            (c.label.as_str(), c.system),
            ("passive", SystemKind::Faultline)
        );
        assert_eq!(
            c.run_args(None),
            ["--system", "faultline", "--mode", "passive"]
        );
        let e = Column::parse("etcd").unwrap();
        assert_eq!((e.label.as_str(), e.system), ("etcd", SystemKind::Etcd));
        assert_eq!(
            e.run_args(Some(Path::new("/x/etcd"))),
            [
                "--system",
                "etcd",
                "--read-consistency",
                "linearizable",
                "--etcd-bin",
                "/x/etcd"
            ]
        );
        assert_eq!(
            Column::parse("etcd:serializable").unwrap().label,
            "etcd-serializable"
        );
        assert!(Column::parse("faultline")
            .unwrap_err()
            .contains("faultline:passive"));
        assert!(Column::parse("etcd:stale").unwrap_err().contains("`stale`"));
        assert!(Column::parse("zookeeper")
            .unwrap_err()
            .contains("unknown system `zookeeper`"));
        assert!(Column::parse("faultline:fast")
            .unwrap_err()
            .contains("unknown mode `fast`"));
    }
}
