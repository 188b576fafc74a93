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

use crate::checkers::{CheckOutcome, Verdict};
use analysis::Analysis;

/// The run's facts that are not in the history.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub test: String,
    pub started_at: String,
    pub seed: u64,
    /// The system under test (`faultline`, ...).
    pub system: String,
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

/// Builds `results.json`: the run, the combined `verdict`, one entry per checker under
/// `checkers` (`{"verdict", "report"}`), the op counts and latencies, the nemesis windows,
/// each checker's extra top-level fields and the files.
pub fn results_json(
    run: &RunInfo,
    analysis: &Analysis,
    verdict: Verdict,
    checks: &[CheckOutcome],
    extra: &[(&'static str, serde_json::Value)],
) -> serde_json::Value {
    let counts = analysis.counts();
    let checkers: serde_json::Map<String, serde_json::Value> = checks
        .iter()
        .map(|c| {
            let entry = match &c.skipped {
                Some(why) => {
                    serde_json::json!({ "verdict": "skipped", "skipped": why, "report": c.report })
                }
                None => serde_json::json!({ "verdict": c.verdict, "report": c.report }),
            };
            (c.checker.to_string(), entry)
        })
        .collect();
    let mut results = serde_json::json!({
        "test": run.test,
        "verdict": verdict,
        "run": run,
        "checkers": checkers,
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
    });
    for (key, value) in extra
        .iter()
        .chain(checks.iter().flat_map(|c| c.results.iter()))
    {
        results[*key] = value.clone();
    }
    for (key, file) in checks.iter().flat_map(|c| c.files.iter()) {
        results["files"][*key] = (*file).into();
    }
    results
}
