//! Many snapshots judged together: summary counts, text, JSON and an HTML fragment.

use super::check::{check_snapshot, Outcome, SnapshotReport};
use super::model::Snapshot;
use crate::error::{Error, LineError};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// Snapshot latency quantiles, over snapshots that carry both timestamps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Counts over a run's snapshots: `started = consistent + inconsistent + incomplete`;
/// `completed` counts those that terminated (every node recorded, every channel closed),
/// each of them consistent or inconsistent. An inconsistent snapshot need not have
/// terminated: a violation in its recorded part counts even when some node timed out.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub started: usize,
    pub completed: usize,
    pub consistent: usize,
    pub inconsistent: usize,
    pub incomplete: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
}

/// The judgement of a run's snapshots.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotsReport {
    pub summary: Summary,
    pub snapshots: Vec<SnapshotReport>,
}

/// Judges every snapshot. `Err` names the first malformed one.
pub fn check_snapshots(snapshots: &[Snapshot]) -> Result<SnapshotsReport, String> {
    let reports = snapshots
        .iter()
        .map(check_snapshot)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SnapshotsReport::new(reports))
}

/// Reads a snapshots file: JSON Lines, one `Snapshot` a line; blank lines skipped. Each
/// snapshot is validated; errors name file and line.
pub fn read_snapshots(path: &Path) -> Result<Vec<Snapshot>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_snapshots(&text).map_err(|e| e.in_file(path))
}

/// Parses JSON Lines text into validated snapshots.
pub fn parse_snapshots(text: &str) -> Result<Vec<Snapshot>, LineError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let s: Snapshot = serde_json::from_str(line)
            .map_err(|e| LineError::new(i + 1, format!("not a snapshot: {e}")))?;
        s.validate().map_err(|p| LineError::new(i + 1, p))?;
        out.push(s);
    }
    if out.is_empty() {
        return Err(LineError::new(1, "no snapshots in the file"));
    }
    Ok(out)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

impl SnapshotsReport {
    pub fn new(snapshots: Vec<SnapshotReport>) -> Self {
        let mut summary = Summary {
            started: snapshots.len(),
            ..Summary::default()
        };
        for r in &snapshots {
            match r.outcome {
                Outcome::Consistent => summary.consistent += 1,
                Outcome::Inconsistent => summary.inconsistent += 1,
                Outcome::Incomplete => summary.incomplete += 1,
            }
        }
        summary.completed = snapshots.iter().filter(|r| r.terminated).count();
        let mut lat: Vec<f64> = snapshots.iter().filter_map(|r| r.latency_ms).collect();
        lat.sort_by(f64::total_cmp);
        if !lat.is_empty() {
            summary.latency = Some(Latency {
                count: lat.len(),
                p50_ms: quantile(&lat, 0.5),
                p90_ms: quantile(&lat, 0.9),
                p99_ms: quantile(&lat, 0.99),
                max_ms: lat[lat.len() - 1],
            });
        }
        SnapshotsReport { summary, snapshots }
    }

    /// The overall outcome: inconsistent if any snapshot is, else incomplete if any is.
    pub fn outcome(&self) -> Outcome {
        if self.summary.inconsistent > 0 {
            Outcome::Inconsistent
        } else if self.summary.incomplete > 0 {
            Outcome::Incomplete
        } else {
            Outcome::Consistent
        }
    }

    /// What the terminal shows: the counts, then one line per violation.
    pub fn to_text(&self) -> String {
        let s = &self.summary;
        let mut out = format!(
            "snapshots: {} started, {} completed, {} consistent, {} inconsistent, {} incomplete\n",
            s.started, s.completed, s.consistent, s.inconsistent, s.incomplete
        );
        if let Some(l) = &s.latency {
            let _ = writeln!(
                out,
                "snapshot latency: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} snapshots)",
                l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.count
            );
        }
        for r in &self.snapshots {
            if r.outcome == Outcome::Consistent {
                continue;
            }
            let _ = writeln!(
                out,
                "snapshot {} ({}, initiator {}): {}{}, {} of {} nodes recorded, {} violation(s)",
                r.snapshot,
                r.algorithm.as_str(),
                r.initiator,
                r.outcome.as_str(),
                if r.outcome == Outcome::Inconsistent && !r.terminated {
                    " (did not terminate)"
                } else {
                    ""
                },
                r.recorded,
                r.nodes,
                r.violations.len()
            );
            for v in &r.violations {
                let _ = writeln!(out, "  [{}] {v}", v.rule().as_str());
            }
        }
        out
    }

    /// A self-contained HTML fragment (a `<section>`, inline styles only, nothing fetched)
    /// for the harness's report page.
    pub fn to_html_fragment(&self) -> String {
        let s = &self.summary;
        let color = |o: Outcome| match o {
            Outcome::Consistent => "#2e7d32",
            Outcome::Inconsistent => "#c62828",
            Outcome::Incomplete => "#ef6c00",
        };
        let badge = |o: Outcome| {
            format!(
                "<span style=\"padding:1px 6px;border-radius:4px;color:#fff;background:{}\">{}</span>",
                color(o),
                o.as_str()
            )
        };
        let mut out = String::from("<section class=\"faultline-snapshots\">");
        let _ = write!(
            out,
            "<h2>Snapshots {}</h2><p>{} started, {} completed, {} consistent, {} inconsistent, {} incomplete",
            badge(self.outcome()),
            s.started,
            s.completed,
            s.consistent,
            s.inconsistent,
            s.incomplete
        );
        if let Some(l) = &s.latency {
            let _ = write!(
                out,
                "; latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
            );
        }
        out.push_str("</p>");
        let cell = "border:1px solid #ddd;padding:2px 8px;text-align:left;font:12px ui-monospace,monospace";
        let _ = write!(
            out,
            "<table style=\"border-collapse:collapse\"><tr><th style=\"{cell}\">snapshot</th><th style=\"{cell}\">algorithm</th><th style=\"{cell}\">initiator</th><th style=\"{cell}\">outcome</th><th style=\"{cell}\">recorded</th><th style=\"{cell}\">in flight</th><th style=\"{cell}\">violations</th></tr>"
        );
        for r in &self.snapshots {
            let list = if r.violations.is_empty() {
                String::new()
            } else {
                let items: String = r
                    .violations
                    .iter()
                    .map(|v| format!("<li>[{}] {}</li>", v.rule().as_str(), esc(&v.to_string())))
                    .collect();
                format!("<ul style=\"margin:0;padding-left:16px\">{items}</ul>")
            };
            let _ = write!(
                out,
                "<tr><td style=\"{cell}\">{}</td><td style=\"{cell}\">{}</td><td style=\"{cell}\">{}</td><td style=\"{cell}\">{}</td><td style=\"{cell}\">{}/{}</td><td style=\"{cell}\">{} msgs, {}</td><td style=\"{cell}\">{list}</td></tr>",
                r.snapshot,
                r.algorithm.as_str(),
                esc(&r.initiator),
                badge(r.outcome),
                r.recorded,
                r.nodes,
                r.in_flight_messages,
                r.in_flight_amount
            );
        }
        out.push_str("</table></section>\n");
        out
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
