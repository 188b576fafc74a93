//! The results folder: `results.json` and `report.html`, both computed from the recorded
//! `history.jsonl` (the file is the source of truth, so a report can be rebuilt from it).
//!
//! - `analysis` — pairs invocations with completions, finds nemesis windows, counts.
//! - `plot` — SVG charts (latency scatter per op type, throughput) via plotters.
//! - `html` — the self-contained `report.html`.
//! - `windows` — per-fault-window arithmetic (gap, recovery, latency, availability).
//! - `faults` — the windows, leader timeline and cost as results.json and report show them.

pub mod analysis;
pub mod faults;
pub mod html;
pub mod plot;
pub mod windows;

use serde::Serialize;

use crate::check::CheckOutcome;
use analysis::Analysis;

/// The run's facts that are not in the history.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub test: String,
    pub started_at: String,
    pub seed: u64,
    pub mode: String,
    pub workload: String,
    pub model: String,
    pub nodes: usize,
    pub bugs: Vec<String>,
    pub nemesis: Vec<String>,
    pub nemesis_interval_s: f64,
    pub concurrency: usize,
    pub rate: f64,
    pub keys: usize,
    pub time_limit_s: f64,
    pub wall_time_s: f64,
    /// Set when the run was cut short (Ctrl-C, a node that never started, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
}

/// Builds `results.json`.
pub fn results_json(run: &RunInfo, analysis: &Analysis, check: &CheckOutcome) -> serde_json::Value {
    let counts = analysis.counts();
    serde_json::json!({
        "test": run.test,
        "verdict": check.verdict,
        "run": run,
        "checkers": {
            check.checker: {
                "verdict": check.verdict,
                "report": check.report,
            }
        },
        "ops": counts,
        "availability": counts.availability(),
        "by_f": analysis.by_f(),
        "latency_ms": analysis.latency_quantiles(None),
        "nemesis": analysis.windows,
        "files": {
            "history": "history.jsonl",
            "report": "report.html",
            "node_logs": "nodes/",
        },
    })
}
