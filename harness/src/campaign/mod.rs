//! `faultline campaign`: runs a declared matrix of `faultline run` cells and says, in an
//! exit code CI understands, a JUnit file and one HTML page, whether every cell concluded
//! what it should (correct nodes valid, planted bugs caught).
//!
//! - `file` — the TOML campaign file and its errors (file, line, key).
//! - `matrix` — expansion into cells with fixed ids and order.
//! - `shard` — `--shard I/N`, deterministic slices.
//! - `runner` — each cell its own `faultline run` process; `--jobs`, `--budget`,
//!   `--resume`, `--keep`, signals.
//! - `outcome` — a finished run's exit code + results.json -> the cell's record.
//! - `progress` — the per-cell lines and the live line on stderr.
//! - `summary` — `summary.json` and the exit code; `junit` — `junit.xml`; `html` —
//!   `index.html`; `merge` — shards -> one summary.

pub mod file;
pub mod html;
pub mod junit;
pub mod matrix;
pub mod merge;
pub mod outcome;
pub mod progress;
pub mod runner;
pub mod shard;
pub mod summary;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use matrix::Campaign;
use runner::Keep;
use shard::Shard;
use summary::{exit, CampaignInfo, Counts, Summary, FORMAT};

/// Overrides the binary each cell runs (tests use a stand-in for `faultline run`).
pub const EXE_ENV: &str = "FAULTLINE_CAMPAIGN_EXE";

/// Run a campaign file's matrix of `faultline run` cells (or merge shards' results).
#[derive(Debug, Clone, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Writes OUT/summary.json, OUT/junit.xml and OUT/index.html; each run's results folder under OUT/runs/<cell>/.\n\
Exit status: 0 every cell as expected; 1 some verdict unexpected (a false alarm or a missed bug); 2 no unexpected verdict but some cell unknown or not run; 3 error (bad file or usage, or some run failed to run); 4 interrupted."
)]
pub struct CampaignArgs {
    #[command(subcommand)]
    pub command: Option<CampaignCommand>,

    /// The campaign file (TOML; see harness/README.md, "Campaigns").
    #[arg(value_name = "FILE.toml", required = true)]
    pub file: Option<PathBuf>,

    /// Output folder [default: store/campaigns/<name>-<UTC time>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Cells run at once [default: half the cores, at least 1].
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,

    /// Run only the I-th of N deterministic slices of the cells (1-based), e.g. 2/8.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,

    /// Start no new cell after this much time (e.g. 90m, 2h); the rest are reported not run.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub budget: Option<Duration>,

    /// Skip the cells that already have a verdict in --out (needs --out).
    #[arg(long)]
    pub resume: bool,

    /// `failed`: delete the history and node folders of runs that came out as expected
    /// (results.json and report.html stay).
    #[arg(long, value_enum, default_value_t = Keep::All)]
    pub keep: Keep,
}

#[derive(Debug, Clone, Subcommand)]
pub enum CampaignCommand {
    /// Combine the output folders of a campaign's shards into one summary.
    Merge(MergeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// Output folders of `faultline campaign --shard I/N` runs.
    #[arg(value_name = "DIR", required = true)]
    pub dirs: Vec<PathBuf>,

    /// Where the merged summary.json, junit.xml and index.html go.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Cells run at once by default: half the cores, at least one.
///
/// Each cell is a 3-node cluster plus the harness's clients, and its run ends with the
/// linearizability check, whose budget (`--check-timeout`) is wall-clock time and which
/// searches keys in parallel: a cell on a shared core turns slow checks into `unknown`
/// and stretches op latencies into timeouts (`info` ops), the very things a campaign
/// measures. With two cores per cell the checker keeps its speed; on 2 cores that is 1
/// job — pass `--jobs 2` for short, light cells (the smoke campaign does in CI).
pub fn default_jobs() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 2).max(1)
}

/// Runs `faultline campaign ...`; returns the exit code.
pub fn run(args: CampaignArgs) -> i32 {
    match args.command {
        Some(CampaignCommand::Merge(m)) => run_merge(m),
        None => match run_campaign(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("faultline campaign: {e}");
                exit::ERROR
            }
        },
    }
}

fn run_merge(m: MergeArgs) -> i32 {
    let result = merge::merge(&m.dirs, &m.out).and_then(|s| {
        write_outputs(&s, &m.out)?;
        Ok(s)
    });
    match result {
        Ok(s) => {
            print_end(&s, &m.out);
            s.exit_code
        }
        Err(e) => {
            eprintln!("faultline campaign merge: {e}");
            exit::ERROR
        }
    }
}

fn write_outputs(s: &Summary, out: &Path) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    s.write(out)?;
    summary::write_atomic(&out.join("junit.xml"), &junit::render(s)?)?;
    summary::write_atomic(&out.join("index.html"), &html::render(s))
}

fn print_end(s: &Summary, out: &Path) {
    let c = &s.counts;
    eprintln!(
        "campaign {}: {} cells: {} as expected, {} unexpected, {} unknown, {} error, {} interrupted, {} not run — exit {}",
        s.campaign.name, c.total, c.expected, c.unexpected, c.unknown, c.error, c.interrupted, c.not_run, s.exit_code
    );
    eprintln!(
        "  {}  {}  {}",
        out.join("index.html").display(),
        out.join("summary.json").display(),
        out.join("junit.xml").display()
    );
}

fn run_campaign(args: CampaignArgs) -> Result<i32, String> {
    let path = args.file.clone().ok_or("a campaign file is required")?;
    let src = file::Source::read(&path).map_err(|e| e.to_string())?;
    let campaign = Campaign::load(&src).map_err(|e| e.to_string())?;
    let shard = args.shard.unwrap_or(Shard::WHOLE);
    let cells = shard.select(&campaign.cells);
    let jobs = args.jobs.unwrap_or_else(default_jobs);
    if jobs == 0 {
        return Err("--jobs must be at least 1".into());
    }
    let out = match (&args.out, args.resume) {
        (Some(out), _) => out.clone(),
        (None, true) => {
            return Err("--resume needs the --out folder of the campaign to resume".into())
        }
        (None, false) => {
            let stamp: String = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                .to_string()
                .chars()
                .filter(|c| *c != ':' && *c != '-')
                .collect();
            PathBuf::from("store/campaigns").join(format!("{}-{stamp}", campaign.name))
        }
    };
    if !args.resume && (out.join("runs").exists() || out.join("summary.json").exists()) {
        return Err(format!(
            "{} already holds a campaign's results: pass --resume to continue it, or another --out",
            out.display()
        ));
    }
    std::fs::create_dir_all(out.join("runs"))
        .map_err(|e| format!("creating {}: {e}", out.display()))?;
    let exe = match std::env::var_os(EXE_ENV) {
        Some(exe) => PathBuf::from(exe),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find the faultline executable to run cells with: {e}"))?,
    };

    eprintln!(
        "campaign {}: {} of {} cells (shard {shard}), --jobs {jobs}{}, out {}",
        campaign.name,
        cells.len(),
        campaign.cells.len(),
        args.budget
            .map(|b| format!(", --budget {}", humantime::format_duration(b)))
            .unwrap_or_default(),
        out.display()
    );
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let wall = Instant::now();
    let mut progress = progress::Progress::new(cells.len());
    let outcome = runner::run(
        &cells,
        &runner::Options {
            out: out.clone(),
            jobs,
            budget: args.budget,
            resume: args.resume,
            keep: args.keep,
            exe,
        },
        &mut progress,
    );
    let s = Summary {
        format: FORMAT,
        campaign: CampaignInfo {
            name: campaign.name.clone(),
            description: campaign.description.clone(),
            file: path.display().to_string(),
            source: src.text.clone(),
            cells_total: campaign.cells.len(),
        },
        shards: vec![shard],
        started_at,
        wall_time_s: wall.elapsed().as_secs_f64(),
        jobs,
        budget_s: args.budget.map(|b| b.as_secs_f64()),
        counts: Counts::of(&outcome.records),
        exit_code: summary::exit_code(&outcome.records, outcome.interrupted.is_some()),
        interrupted: outcome.interrupted,
        cells: outcome.records,
    };
    let written = write_outputs(&s, &out);
    // Inside the compose file's test service the campaign runs as root; its files go to
    // the user who ran compose (as each cell's run does with its own folder).
    crate::store::hand_over(&out);
    written?;
    print_end(&s, &out);
    Ok(s.exit_code)
}
