//! What one finished `faultline run` concluded: its exit code, checked against the
//! results.json it wrote, turned into a `CellRecord`.
//!
//! The exit code is the run's contract (0 valid, 1 invalid, 2 unknown, 3+ error, 4
//! interrupted); results.json supplies counts, latency and the checker's explanation.
//! A verdict exit code without a results.json that agrees is an error, never a pass.

use std::path::Path;

use super::file::Expect;
use super::matrix::Cell;
use super::summary::{relative, CellRecord, Status};

/// `faultline run`'s exit code when it was interrupted and the partial history was not
/// invalid.
const RUN_INTERRUPTED: i32 = 4;

/// How the run process ended.
#[derive(Debug, Clone, Copy)]
pub struct Ended {
    /// Exit code, or 128+N for death by signal N.
    pub code: i32,
    pub wall_time_s: f64,
    /// The campaign itself asked it to stop.
    pub stopped_by_us: bool,
}

/// Builds the record of a finished cell. `cell_dir` is `OUT/runs/<id>`; paths in the
/// record are relative to `out`.
pub fn record(cell: &Cell, ended: Ended, out: &Path, cell_dir: &Path) -> CellRecord {
    let mut r = CellRecord::not_run(cell, "");
    r.not_run_reason = None;
    r.exit_code = Some(ended.code);
    r.wall_time_s = Some(ended.wall_time_s);
    let log = cell_dir.join("stderr.log");
    r.log = Some(relative(&log, out).display().to_string());

    let results_dir = find_results_dir(cell_dir, &cell.id);
    let results: Option<serde_json::Value> = results_dir
        .as_ref()
        .and_then(|d| std::fs::read_to_string(d.join("results.json")).ok())
        .and_then(|t| serde_json::from_str(&t).ok());
    if let Some(d) = &results_dir {
        r.results_dir = Some(relative(d, out).display().to_string());
        if d.join("report.html").is_file() {
            r.report = Some(relative(&d.join("report.html"), out).display().to_string());
        }
    }
    if let Some(res) = &results {
        r.ops = res.get("ops").cloned();
        r.availability = res.get("availability").and_then(|v| v.as_f64());
        r.latency_ms = res.get("latency_ms").cloned().filter(|v| !v.is_null());
        r.snapshots = res.get("snapshots").map(|s| {
            let mut s = s.clone();
            if let Some(m) = s.as_object_mut() {
                // The summary keeps counts; the full list stays in results.json.
                m.remove("violations");
                m.remove("defective");
            }
            s
        });
    }
    let file_verdict = results
        .as_ref()
        .and_then(|v| v.get("verdict"))
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let stderr_line = || last_error_line(&log);

    let exit_verdict = match ended.code {
        0 => Some("valid"),
        1 => Some("invalid"),
        2 => Some("unknown"),
        _ => None,
    };
    match exit_verdict {
        Some(v) => {
            if file_verdict.as_deref() != Some(v) {
                r.status = Status::Error;
                r.explanation = Some(match &file_verdict {
                    None => format!("exit {} ({v}) but no readable results.json", ended.code),
                    Some(f) => format!("exit {} ({v}) but results.json says {f}", ended.code),
                });
                return r;
            }
            r.verdict = Some(v.to_string());
            r.status = match (v, cell.expect) {
                ("unknown", _) => Status::Unknown,
                ("valid", Expect::Valid) | ("invalid", Expect::Invalid) => Status::Expected,
                _ => Status::Unexpected,
            };
            r.explanation = match (v, cell.expect) {
                ("valid", Expect::Invalid) => {
                    Some("valid: the run did not catch the planted fault (expected invalid)".into())
                }
                ("valid", _) => None,
                _ => results.as_ref().and_then(explanation).or_else(stderr_line),
            };
        }
        None => {
            r.verdict = file_verdict;
            r.status = if ended.code == RUN_INTERRUPTED && ended.stopped_by_us {
                Status::Interrupted
            } else {
                Status::Error
            };
            r.explanation = Some(match stderr_line() {
                Some(line) => format!("exit {}: {line}", ended.code),
                None => format!("exit {} with nothing on stderr", ended.code),
            });
        }
    }
    r
}

/// The run's results folder: what `STORE/latest` points at, else the newest
/// `STORE/<name>/<timestamp>`.
pub fn find_results_dir(store: &Path, name: &str) -> Option<std::path::PathBuf> {
    if let Ok(target) = std::fs::read_link(store.join("latest")) {
        let d = store.join(target);
        if d.is_dir() {
            return Some(d);
        }
    }
    let mut dirs: Vec<_> = std::fs::read_dir(store.join(name))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// The checker's first explanation line, from results.json: the reason the run gives,
/// the first key that cannot be linearized, the first snapshot violation, the first key
/// the checker gave up on, or its error.
pub fn explanation(results: &serde_json::Value) -> Option<String> {
    let checkers = results.get("checkers")?.as_object()?;
    let str_at =
        |v: &serde_json::Value, p: &str| v.pointer(p).and_then(|s| s.as_str()).map(str::to_string);
    for (name, c) in checkers {
        if str_at(c, "/report/verdict").as_deref() == Some("divergent") {
            let summary = str_at(c, "/report/summary").unwrap_or_else(|| "divergent".into());
            return Some(format!("{name}: replicas {summary}"));
        }
        if let Some(reason) = str_at(c, "/report/reason") {
            return Some(reason);
        }
        if let Some(part) = c.pointer("/report/invalid/0") {
            let key = part.get("key").and_then(|k| k.as_str());
            let id = part.pointer("/blocking/id").and_then(|v| v.as_u64());
            let desc = str_at(part, "/blocking/description").unwrap_or_default();
            return Some(format!(
                "{name}: {}not linearizable: op #{} `{desc}` cannot be linearized",
                key.map(|k| format!("key {k}: ")).unwrap_or_default(),
                id.map_or("?".into(), |i| i.to_string())
            ));
        }
    }
    if let Some(text) = results
        .pointer("/snapshots/violations/0/text")
        .and_then(|t| t.as_str())
    {
        return Some(format!("snapshot: {text}"));
    }
    for (name, c) in checkers {
        if let Some(part) = c.pointer("/report/unknown/0") {
            let key = part.get("key").and_then(|k| k.as_str());
            return Some(format!(
                "{name}: {}no verdict ({}) after linearizing {} of {} ops",
                key.map(|k| format!("key {k}: ")).unwrap_or_default(),
                str_at(part, "/reason").unwrap_or_default(),
                part.get("deepest").and_then(|v| v.as_u64()).unwrap_or(0),
                part.get("ops").and_then(|v| v.as_u64()).unwrap_or(0),
            ));
        }
        if let Some(e) = str_at(c, "/report/error") {
            return Some(format!("{name}: {e}"));
        }
    }
    results
        .pointer("/run/interrupted")
        .and_then(|s| s.as_str())
        .map(str::to_string)
}

/// The last line of the run's stderr that names a problem (`faultline ...: ...`), else
/// its last non-empty line.
fn last_error_line(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let lines: Vec<&str> = text
        .lines()
        .flat_map(|l| l.split('\r'))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("faultline"))
        .or(lines.last())?;
    Some(line.chars().take(400).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn explanation_names_the_failing_key() {
        let r = json!({"checkers": {"linearizable": {"report": {"invalid": [
            {"key": "k1", "blocking": {"id": 12, "description": "read 3"}}], "unknown": []}}}});
        assert_eq!(
            explanation(&r).unwrap(),
            "linearizable: key k1: not linearizable: op #12 `read 3` cannot be linearized"
        );
        let r = json!({"checkers": {"bank": {"report": {"reason": "snapshot 4 is defective"}}}});
        assert_eq!(explanation(&r).unwrap(), "snapshot 4 is defective");
        let r = json!({"checkers": {"linearizable": {"report": {"invalid": [], "unknown": [
            {"key": "k0", "reason": "timeout", "deepest": 10, "ops": 99}]}}}});
        assert!(explanation(&r).unwrap().contains("no verdict (timeout)"));
        let r = json!({"checkers": {"convergence": {"verdict": "invalid", "report": {
            "verdict": "divergent", "summary": "divergent at applied index 9: key \"k5\": n1=71 n2=12"}}}});
        assert_eq!(
            explanation(&r).unwrap(),
            "convergence: replicas divergent at applied index 9: key \"k5\": n1=71 n2=12"
        );
    }
}
