//! Runs a campaign's cells: each one its own `faultline run` child process (its own
//! sandbox, its own `--store`), at most `--jobs` at once, launched in campaign order
//! until the budget is spent or a signal arrives.
//!
//! One thread does everything (spawn, poll, report): the children are asked to die with
//! SIGTERM if the campaign dies (`PR_SET_PDEATHSIG`, which follows the thread that
//! spawned them — hence no worker threads), so a `kill -9` of the campaign still lets
//! every run tear its cluster down and keep the history it recorded.
//!
//! Layout of `OUT/runs/<cell id>/`: `stdout.log`, `stderr.log`, the run's store
//! (`<cell id>/<timestamp>/` and `latest`), and `cell.json` — the cell's record, written
//! last, atomically; its presence is what `--resume` trusts.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use clap::ValueEnum;

use super::matrix::Cell;
use super::outcome::{self, Ended};
use super::progress::Progress;
use super::summary::{write_atomic, CellRecord, Status};

/// What to keep of a run's results folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Keep {
    /// Everything.
    All,
    /// Everything for cells not as expected; for the others only results.json and
    /// report.html (history, snapshots and node folders are deleted).
    Failed,
}

pub struct Options {
    pub out: PathBuf,
    pub jobs: usize,
    pub budget: Option<Duration>,
    pub resume: bool,
    pub keep: Keep,
    /// The `faultline` binary each cell runs.
    pub exe: PathBuf,
}

/// The cells' records (in campaign order) and the signal that stopped the campaign.
pub struct Outcome {
    pub records: Vec<CellRecord>,
    pub interrupted: Option<String>,
}

static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNAL.store(sig, Ordering::SeqCst);
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

pub fn cell_dir(out: &Path, cell: &Cell) -> PathBuf {
    out.join("runs").join(&cell.id)
}

/// A record from an earlier run of the same cell with a verdict, for `--resume`.
/// Errors and interrupted cells are run again; so is a cell whose settings changed.
pub fn previous(out: &Path, cell: &Cell) -> Option<CellRecord> {
    let text = std::fs::read_to_string(cell_dir(out, cell).join("cell.json")).ok()?;
    let r: CellRecord = serde_json::from_str(&text).ok()?;
    let has_verdict = matches!(
        r.status,
        Status::Expected | Status::Unexpected | Status::Unknown
    );
    (has_verdict && r.settings == *cell).then_some(r)
}

struct Running {
    index: usize,
    child: Child,
    started: Instant,
    /// When it was sent SIGTERM for running past its deadline.
    overdue_since: Option<Instant>,
}

/// How long a cell may run before the campaign stops it: its main phase twice over plus
/// ten minutes for start, heal, final reads and the check (60 s by default). A run that
/// takes longer is stuck, and a stuck cell must not hang a nightly job.
fn deadline(cell: &Cell) -> Duration {
    Duration::from_secs_f64(2.0 * cell.time_limit_s + 600.0)
}

/// After SIGTERM, how long a stuck run gets to tear down before SIGKILL.
const KILL_AFTER: Duration = Duration::from_secs(30);

fn spawn(cell: &Cell, dir: &Path, exe: &Path) -> std::io::Result<Child> {
    if dir.exists() {
        // Leftovers of an interrupted attempt: start clean.
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let mut cmd = Command::new(exe);
    cmd.arg("run")
        .arg("--store")
        .arg(dir)
        .arg("--name")
        .arg(&cell.id)
        .args(cell.run_args())
        .stdin(Stdio::null())
        .stdout(File::create(dir.join("stdout.log"))?)
        .stderr(File::create(dir.join("stderr.log"))?);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Deletes a passing run's history, snapshots and node folders (`--keep failed`).
fn drop_history(out: &Path, r: &mut CellRecord) {
    let Some(dir) = &r.results_dir else { return };
    let dir = out.join(dir);
    for f in ["history.jsonl", "snapshots.jsonl"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let _ = std::fs::remove_dir_all(dir.join("nodes"));
    r.history_dropped = true;
}

/// Runs `cells` (already this shard's, in order); returns one record per cell.
pub fn run(cells: &[Cell], opts: &Options, progress: &mut Progress) -> Outcome {
    install_signal_handlers();
    let start = Instant::now();
    let mut records: Vec<Option<CellRecord>> = vec![None; cells.len()];
    let mut queue: VecDeque<usize> = VecDeque::new();
    for (i, cell) in cells.iter().enumerate() {
        match opts.resume.then(|| previous(&opts.out, cell)).flatten() {
            Some(r) => {
                progress.resumed(&r);
                records[i] = Some(r);
            }
            None => queue.push_back(i),
        }
    }
    let mut running: Vec<Running> = Vec::new();
    let mut stop: Option<String> = None;
    let mut budget_spent = false;
    let mut forwarded = false;

    loop {
        let sig = SIGNAL.load(Ordering::SeqCst);
        if sig != 0 && stop.is_none() {
            stop = Some(format!("{} received", signal_name(sig)));
            progress.note(&format!(
                "campaign: {} received: starting no more cells, stopping {} running",
                signal_name(sig),
                running.len()
            ));
        }
        if stop.is_some() && !forwarded {
            for r in &running {
                // SAFETY: plain kill(2) of our own child.
                unsafe {
                    libc::kill(r.child.id() as i32, libc::SIGTERM);
                }
            }
            forwarded = true;
        }
        if let Some(b) = opts.budget {
            if !budget_spent && start.elapsed() >= b && !queue.is_empty() {
                budget_spent = true;
                progress.note(&format!(
                    "campaign: budget of {} spent: {} cells will not run",
                    humantime::format_duration(b),
                    queue.len()
                ));
            }
        }
        while stop.is_none() && !budget_spent && running.len() < opts.jobs {
            let Some(i) = queue.pop_front() else { break };
            let cell = &cells[i];
            let dir = cell_dir(&opts.out, cell);
            match spawn(cell, &dir, &opts.exe) {
                Ok(child) => running.push(Running {
                    index: i,
                    child,
                    started: Instant::now(),
                    overdue_since: None,
                }),
                Err(e) => {
                    let mut r = CellRecord::not_run(cell, "");
                    r.not_run_reason = None;
                    r.status = Status::Error;
                    r.explanation =
                        Some(format!("could not start {} run: {e}", opts.exe.display()));
                    let _ = std::fs::create_dir_all(&dir);
                    let _ = write_atomic(
                        &dir.join("cell.json"),
                        &serde_json::to_string_pretty(&r).unwrap_or_default(),
                    );
                    progress.finished(&r);
                    records[i] = Some(r);
                }
            }
        }

        for r in running.iter_mut() {
            let pid = r.child.id() as i32;
            match r.overdue_since {
                None if r.started.elapsed() > deadline(&cells[r.index]) => {
                    progress.note(&format!(
                        "campaign: {} still running after {} s: stopping it",
                        cells[r.index].id,
                        r.started.elapsed().as_secs()
                    ));
                    // SAFETY: plain kill(2) of our own child.
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                    r.overdue_since = Some(Instant::now());
                }
                Some(t) if t.elapsed() > KILL_AFTER => {
                    let _ = r.child.kill();
                }
                _ => {}
            }
        }

        let mut k = 0;
        while k < running.len() {
            let status = match running[k].child.try_wait() {
                Ok(Some(status)) => Some(status),
                Ok(None) => None,
                Err(_) => running[k].child.wait().ok(),
            };
            let Some(status) = status else {
                k += 1;
                continue;
            };
            let done = running.swap_remove(k);
            let cell = &cells[done.index];
            let code = status.code().unwrap_or_else(|| {
                use std::os::unix::process::ExitStatusExt;
                128 + status.signal().unwrap_or(0)
            });
            let dir = cell_dir(&opts.out, cell);
            let mut r = outcome::record(
                cell,
                Ended {
                    code,
                    wall_time_s: done.started.elapsed().as_secs_f64(),
                    stopped_by_us: forwarded,
                },
                &opts.out,
                &dir,
            );
            if done.overdue_since.is_some() {
                r.status = Status::Error;
                r.explanation = Some(format!(
                    "stopped by the campaign after {:.0} s (deadline: 2 x time limit + 600 s); {}",
                    deadline(cell).as_secs_f64(),
                    r.explanation.as_deref().unwrap_or("")
                ));
            }
            if opts.keep == Keep::Failed && r.status == Status::Expected {
                drop_history(&opts.out, &mut r);
            }
            if let Err(e) = write_atomic(
                &dir.join("cell.json"),
                &serde_json::to_string_pretty(&r).unwrap_or_default(),
            ) {
                progress.note(&format!("campaign: {e}"));
            }
            progress.finished(&r);
            records[done.index] = Some(r);
        }

        let nothing_left = queue.is_empty() || stop.is_some() || budget_spent;
        if running.is_empty() && nothing_left {
            break;
        }
        progress.live(
            running.len(),
            queue.len(),
            opts.budget.map(|b| b.saturating_sub(start.elapsed())),
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    progress.clear_live();

    let reason = match (&stop, budget_spent) {
        (Some(s), _) => format!("campaign interrupted ({s})"),
        (None, true) => "budget spent".to_string(),
        (None, false) => "not started".to_string(),
    };
    let records = records
        .into_iter()
        .zip(cells)
        .map(|(r, c)| r.unwrap_or_else(|| CellRecord::not_run(c, &reason)))
        .collect();
    Outcome {
        records,
        interrupted: stop,
    }
}
