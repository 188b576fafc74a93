//! The fault-window part of a run's results: per-window figures (`windows`), the leader
//! timeline and the cost of the run and of each window, from `history.jsonl` and
//! `telemetry.jsonl`. `faultline compare` reads exactly these fields back.
//!
//! In `results.json`:
//! - `windows`: one object per fault window — `WindowStats` (fault, description,
//!   start_s, end_s, horizon_s, targets, target_role, leader_before, gap_s,
//!   gap_healthy_s, pre_ok_per_s, recovery_s, recovery_healthy_s,
//!   recovery_after_heal_s, latency_steady_ms, latency_fault_ms, ops, answered,
//!   availability, series) plus `cost` over `[start_s, end_s]`.
//! - `cost`: over the main phase `[0, main_phase_s]` — `per_node` {id: {msgs_sent,
//!   msgs_received, requests, cpu_s}}, `msgs_sent`, `ok_ops`, `msgs_per_op`.
//! - `cost_steady`: the same over `[0, first fault start]`, before any fault.
//! - `leaders`: `[[t_s, id or null], …]`, one entry per change.
//! - `main_phase_s`: when the clients stopped (seconds on the history's clock).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use serde::Serialize;

use super::analysis::{Analysis, Outcome};
use super::html::escape;
use super::windows::{self, WindowStats};
use crate::telemetry::{self, NodeCost};

/// Cost over an interval, summed over nodes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cost {
    pub from_s: f64,
    pub to_s: f64,
    pub per_node: BTreeMap<String, NodeCost>,
    /// Peer messages sent by all nodes (replies included).
    pub msgs_sent: u64,
    /// Client ops that completed ok in the interval.
    pub ok_ops: u64,
    /// `msgs_sent / ok_ops`; `None` without ok ops or without telemetry.
    pub msgs_per_op: Option<f64>,
}

impl Cost {
    fn between(analysis: &Analysis, samples: &[telemetry::Sample], from_s: f64, to_s: f64) -> Self {
        let per_node = telemetry::cost_between(samples, from_s, to_s);
        let msgs_sent = per_node.values().map(|c| c.msgs_sent).sum();
        let ok_ops = analysis
            .ops
            .iter()
            .filter(|o| o.outcome == Outcome::Ok)
            .filter_map(|o| o.end_ns)
            .filter(|&e| (from_s..to_s).contains(&(e as f64 / 1e9)))
            .count() as u64;
        Self {
            from_s,
            to_s,
            msgs_per_op: (ok_ops > 0 && !per_node.is_empty())
                .then(|| msgs_sent as f64 / ok_ops as f64),
            per_node,
            msgs_sent,
            ok_ops,
        }
    }
}

pub struct Faults {
    pub windows: Vec<WindowStats>,
    pub window_costs: Vec<Cost>,
    pub cost: Cost,
    /// Cost before the first fault (the whole main phase without one): steady state.
    pub cost_steady: Cost,
    /// Leader changes: `(t_s, leader)`.
    pub leaders: Vec<(f64, Option<String>)>,
    pub main_end_s: f64,
}

impl Faults {
    pub fn build(
        analysis: &Analysis,
        telemetry_path: &Path,
        nodes: &[String],
        main_end_s: f64,
    ) -> Result<Self, String> {
        let samples = telemetry::read(telemetry_path)?;
        let timeline = telemetry::leader_timeline(&samples);
        let windows = windows::analyze(
            &analysis.ops,
            &analysis.windows,
            nodes,
            &timeline,
            main_end_s,
        );
        let window_costs = windows
            .iter()
            .map(|w| Cost::between(analysis, &samples, w.start_s, w.end_s))
            .collect();
        let mut leaders: Vec<(f64, Option<String>)> = Vec::new();
        for (t, l) in timeline {
            if leaders.last().is_none_or(|(_, last)| *last != l) {
                leaders.push((t, l));
            }
        }
        let first_fault = analysis.windows.first().map_or(main_end_s, |w| w.start_s);
        Ok(Self {
            cost_steady: Cost::between(analysis, &samples, 0.0, first_fault),
            windows,
            window_costs,
            cost: Cost::between(analysis, &samples, 0.0, main_end_s),
            leaders,
            main_end_s,
        })
    }

    /// Adds `windows`, `cost`, `leaders` and `main_phase_s` to `results.json`.
    pub fn add_to(&self, results: &mut serde_json::Value) {
        let windows: Vec<serde_json::Value> = self
            .windows
            .iter()
            .zip(&self.window_costs)
            .map(|(w, c)| {
                let mut v = serde_json::to_value(w).unwrap_or_default();
                v["cost"] = serde_json::to_value(c).unwrap_or_default();
                v
            })
            .collect();
        results["windows"] = windows.into();
        results["cost"] = serde_json::to_value(&self.cost).unwrap_or_default();
        results["cost_steady"] = serde_json::to_value(&self.cost_steady).unwrap_or_default();
        results["leaders"] = serde_json::to_value(&self.leaders).unwrap_or_default();
        results["main_phase_s"] = self.main_end_s.into();
    }

    /// The report's fault-window table and cost table.
    pub fn html(&self) -> String {
        let mut h = String::new();
        let opt = |x: Option<f64>, scale: f64| {
            x.map_or("–".to_string(), |x| format!("{:.2}", x * scale))
        };
        h.push_str("<h2>Fault windows</h2><p>gap: longest time with no successful op (all clients / clients of nodes the fault did not target); recovery: until throughput is back to ≥ 90 % of the level before the fault (from fault start; from its undo); availability: answered / attempted among ops invoked in the window (a cas answered \"value differs\" is an answer).</p>");
        h.push_str("<table><tr><th>fault</th><th>from–to (s)</th><th>target</th><th>role</th><th>gap s</th><th>gap healthy s</th><th>recovery s</th><th>after undo s</th><th>p50 / p99 / max ms (steady)</th><th>p50 / p99 / max ms (fault)</th><th>availability</th><th>fail / info / cas≠</th><th>msgs/op</th></tr>");
        for (w, c) in self.windows.iter().zip(&self.window_costs) {
            let lat = |l: &Option<windows::Latency>| {
                l.map_or("–".into(), |l| {
                    format!("{:.1} / {:.1} / {:.1}", l.p50, l.p99, l.max)
                })
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{:.2}–{:.2}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {} / {}</td><td>{}</td></tr>",
                escape(&w.fault),
                w.start_s,
                w.end_s,
                escape(&w.targets.join(" ")),
                escape(&w.target_role),
                w.gap_s,
                opt(w.gap_healthy_s, 1.0),
                opt(w.recovery_s, 1.0),
                opt(w.recovery_after_heal_s, 1.0),
                lat(&w.latency_steady_ms),
                lat(&w.latency_fault_ms),
                w.availability.map_or("–".into(), |a| format!("{:.1}%", a * 100.0)),
                w.ops.fail - w.ops.cas_mismatch,
                w.ops.info,
                w.ops.cas_mismatch,
                opt(c.msgs_per_op, 1.0),
            );
        }
        h.push_str("</table>");
        let _ = write!(
            h,
            "<h2>Cost (main phase, {:.1} s)</h2><p>Peer messages sent per ok client op: {}. Per node (from /metrics and /proc):</p><table><tr><th>node</th><th>msgs sent</th><th>msgs received</th><th>client requests</th><th>CPU s</th></tr>",
            self.main_end_s,
            opt(self.cost.msgs_per_op, 1.0)
        );
        for (node, c) in &self.cost.per_node {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(node),
                c.msgs_sent,
                c.msgs_received,
                c.requests,
                opt(c.cpu_s, 1.0)
            );
        }
        h.push_str("</table><p>Leader: ");
        let changes: Vec<String> = self
            .leaders
            .iter()
            .map(|(t, l)| format!("{:.1} s → {}", t, l.as_deref().unwrap_or("none")))
            .collect();
        h.push_str(&escape(&changes.join("; ")));
        h.push_str("</p>");
        h
    }
}
