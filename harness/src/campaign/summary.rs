//! `summary.json`: every cell of a campaign (or of one shard) with what its run
//! concluded, and the campaign's exit code — the one file the JUnit and HTML writers and
//! `merge` read.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::file::Expect;
use super::matrix::Cell;
use super::shard::Shard;

/// Exit codes of `faultline campaign`.
pub mod exit {
    /// Every cell ran and concluded as expected.
    pub const ALL_EXPECTED: i32 = 0;
    /// Some cell's verdict was the opposite of its expectation (a false alarm or a
    /// missed bug).
    pub const UNEXPECTED: i32 = 1;
    /// No unexpected verdict, but some cell was `unknown` or not run.
    pub const INCOMPLETE: i32 = 2;
    /// Bad usage or campaign file, unwritable output, or some cell's run failed
    /// (exit 3+ of `faultline run`: the cluster did not start, ...).
    pub const ERROR: i32 = 3;
    /// The campaign was interrupted (SIGINT/SIGTERM/SIGHUP) before its end.
    pub const INTERRUPTED: i32 = 4;
}

/// How a cell came out against its expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// The verdict is the expected one.
    Expected,
    /// `valid` where `invalid` was expected (a missed bug) or the reverse (a false alarm).
    Unexpected,
    /// The checker gave no verdict; never a pass.
    Unknown,
    /// The run failed (exit 3+ other than an interruption the campaign asked for), or its
    /// exit code and results.json disagree.
    Error,
    /// Stopped by the campaign's own interruption.
    Interrupted,
    /// Not started: the budget was spent, or the campaign was interrupted first.
    NotRun,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Expected,
        Status::Unexpected,
        Status::Unknown,
        Status::Error,
        Status::Interrupted,
        Status::NotRun,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Status::Expected => "expected",
            Status::Unexpected => "unexpected",
            Status::Unknown => "unknown",
            Status::Error => "error",
            Status::Interrupted => "interrupted",
            Status::NotRun => "not-run",
        }
    }
}

/// One cell in `summary.json`. Paths are relative to the folder holding the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellRecord {
    pub id: String,
    /// Every setting of the cell (mode, workload, nemesis, bugs, seed, time limit, ...).
    pub settings: Cell,
    pub expect: Expect,
    pub status: Status,
    /// `valid`, `invalid` or `unknown`; absent when the run gave none.
    pub verdict: Option<String>,
    /// `faultline run`'s exit code (128+N for death by signal N).
    pub exit_code: Option<i32>,
    /// The checker's first explanation line (or the run's error line).
    pub explanation: Option<String>,
    /// From the run's results.json, as it wrote them.
    pub ops: Option<serde_json::Value>,
    pub availability: Option<f64>,
    pub latency_ms: Option<serde_json::Value>,
    /// Bank runs: snapshot counts (started, consistent, inconsistent, incomplete, ...).
    pub snapshots: Option<serde_json::Value>,
    pub wall_time_s: Option<f64>,
    /// The run's results folder (results.json, report.html, history.jsonl).
    pub results_dir: Option<String>,
    /// Its report.html, when it exists.
    pub report: Option<String>,
    /// The run's stderr, saved by the campaign.
    pub log: Option<String>,
    /// Whether `--keep failed` removed its history and node folders.
    #[serde(default)]
    pub history_dropped: bool,
    /// The one command that reruns the cell by hand.
    pub command: String,
    /// Why it was not run, when it was not.
    pub not_run_reason: Option<String>,
}

impl CellRecord {
    pub fn not_run(cell: &Cell, reason: &str) -> Self {
        Self {
            id: cell.id.clone(),
            settings: cell.clone(),
            expect: cell.expect,
            status: Status::NotRun,
            verdict: None,
            exit_code: None,
            explanation: None,
            ops: None,
            availability: None,
            latency_ms: None,
            snapshots: None,
            wall_time_s: None,
            results_dir: None,
            report: None,
            log: None,
            history_dropped: false,
            command: cell.command(),
            not_run_reason: Some(reason.into()),
        }
    }

    /// Every path field, for rebasing.
    pub fn paths_mut(&mut self) -> [&mut Option<String>; 3] {
        [&mut self.results_dir, &mut self.report, &mut self.log]
    }
}

/// The campaign a summary belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignInfo {
    pub name: String,
    pub description: Option<String>,
    /// The campaign file as given on the command line.
    pub file: String,
    /// Its full text, so `merge` can check the shards ran the same campaign and list the
    /// cells of a missing shard.
    pub source: String,
    /// Cells in the whole campaign (all shards).
    pub cells_total: usize,
}

/// Cells per status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub total: usize,
    pub expected: usize,
    pub unexpected: usize,
    pub unknown: usize,
    pub error: usize,
    pub interrupted: usize,
    pub not_run: usize,
}

impl Counts {
    pub fn of<'a>(records: impl IntoIterator<Item = &'a CellRecord>) -> Self {
        let mut c = Counts::default();
        for r in records {
            c.total += 1;
            *match r.status {
                Status::Expected => &mut c.expected,
                Status::Unexpected => &mut c.unexpected,
                Status::Unknown => &mut c.unknown,
                Status::Error => &mut c.error,
                Status::Interrupted => &mut c.interrupted,
                Status::NotRun => &mut c.not_run,
            } += 1;
        }
        c
    }
}

/// `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Version of this file's shape.
    pub format: u32,
    pub campaign: CampaignInfo,
    /// The shards this summary covers (one for a `--shard` run, all of them after `merge`).
    pub shards: Vec<Shard>,
    pub started_at: String,
    pub wall_time_s: f64,
    pub jobs: usize,
    pub budget_s: Option<f64>,
    /// Set when the campaign stopped on a signal.
    pub interrupted: Option<String>,
    pub counts: Counts,
    pub exit_code: i32,
    pub cells: Vec<CellRecord>,
}

pub const FORMAT: u32 = 1;

/// The campaign's exit code from its cells: 1 if any verdict was unexpected; else 4 if
/// the campaign was interrupted; else 3 if any run failed; else 2 if any cell is unknown
/// or not run; else 0. An empty campaign is an error: nothing was checked.
pub fn exit_code(records: &[CellRecord], interrupted: bool) -> i32 {
    let has = |s: Status| records.iter().any(|r| r.status == s);
    if has(Status::Unexpected) {
        exit::UNEXPECTED
    } else if interrupted || has(Status::Interrupted) {
        exit::INTERRUPTED
    } else if has(Status::Error) || records.is_empty() {
        exit::ERROR
    } else if has(Status::Unknown) || has(Status::NotRun) {
        exit::INCOMPLETE
    } else {
        exit::ALL_EXPECTED
    }
}

impl Summary {
    pub fn read(dir: &Path) -> Result<Self, String> {
        let path = dir.join("summary.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn write(&self, dir: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())? + "\n";
        write_atomic(&dir.join("summary.json"), &text)
    }
}

/// Writes via a temporary file and a rename, so a reader (or a kill) never sees half.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// `path` relative to `base` (both absolute or both relative to the same folder), with
/// `..` where needed.
pub fn relative(path: &Path, base: &Path) -> PathBuf {
    let p: Vec<Component> = path.components().collect();
    let b: Vec<Component> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c.as_os_str());
    }
    out
}

/// Absolute form of a path, without requiring it to exist.
pub fn absolute(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // Normalize `.` and `..` lexically so `relative` compares like with like.
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative(Path::new("/a/b/c"), Path::new("/a/x")),
            PathBuf::from("../b/c")
        );
        assert_eq!(
            relative(Path::new("/a/b"), Path::new("/a/b")),
            PathBuf::new()
        );
        assert_eq!(
            relative(Path::new("/a/b/c"), Path::new("/a/b")),
            PathBuf::from("c")
        );
    }
}
