//! Summaries over cycles × seeds, the clear-difference rule, and the written outputs
//! (`comparison.json`, `comparison.md`, the terminal table and reading).
//!
//! Every figure is summarised as median and min–max over its samples (one per fault
//! window for window figures, one per run for cost figures). A difference between two
//! modes is **clear** only when their min–max ranges do not overlap: with a handful of
//! cycles and seeds that is the honest test; a difference of medians inside overlapping
//! ranges is reported as "no clear difference".

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::SystemTime;

use serde::Serialize;

use super::{ComparePlan, RunOutcome};

/// Fewest samples on each side for a difference to be called clear.
pub const MIN_SAMPLES: usize = 3;

/// Median, range and count of a figure's samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Samples with a value.
    pub n: usize,
    /// Samples without one (e.g. throughput never recovered within the horizon).
    pub missing: usize,
}

impl Spread {
    pub fn of(values: &[Option<f64>]) -> Option<Self> {
        let mut v: Vec<f64> = values
            .iter()
            .flatten()
            .copied()
            .filter(|x| x.is_finite())
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: v[0],
            max: v[n - 1],
            n,
            missing: values.len() - n,
        })
    }

    /// Ranges that do not overlap, each from at least `MIN_SAMPLES` samples (a range of
    /// one or two samples says nothing about spread).
    pub fn clearly_apart(&self, other: &Spread) -> bool {
        self.n >= MIN_SAMPLES
            && other.n >= MIN_SAMPLES
            && (self.max < other.min || other.max < self.min)
    }
}

/// A figure the comparison reports.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    /// Whether lower is better (for the reading's wording).
    pub lower_is_better: bool,
    /// One sample per fault window (else one per run).
    pub per_window: bool,
}

pub const METRICS: [Metric; 10] = [
    Metric {
        key: "gap_s",
        label: "longest gap, all clients",
        unit: "s",
        lower_is_better: true,
        per_window: true,
    },
    Metric {
        key: "gap_healthy_s",
        label: "longest gap, clients of healthy nodes",
        unit: "s",
        lower_is_better: true,
        per_window: true,
    },
    Metric {
        key: "recovery_healthy_s",
        label: "recovery to 90 %, healthy clients",
        unit: "s",
        lower_is_better: true,
        per_window: true,
    },
    Metric {
        key: "recovery_after_heal_s",
        label: "recovery after the fault is undone",
        unit: "s",
        lower_is_better: true,
        per_window: true,
    },
    Metric {
        key: "availability",
        label: "availability in fault (answered / attempted)",
        unit: "",
        lower_is_better: false,
        per_window: true,
    },
    Metric {
        key: "p99_fault_ms",
        label: "p99 latency of ok ops in fault",
        unit: "ms",
        lower_is_better: true,
        per_window: true,
    },
    Metric {
        key: "p99_steady_ms",
        label: "p99 latency of ok ops before the fault",
        unit: "ms",
        lower_is_better: true,
        per_window: true,
    },
    Metric {
        key: "msgs_per_op",
        label: "peer messages per ok op (steady state)",
        unit: "",
        lower_is_better: true,
        per_window: false,
    },
    Metric {
        key: "cpu_per_node_s",
        label: "CPU s per node per s (steady state, mean)",
        unit: "",
        lower_is_better: true,
        per_window: false,
    },
    Metric {
        key: "busiest_cpu_share",
        label: "busiest node's share of cluster CPU (steady)",
        unit: "",
        lower_is_better: false,
        per_window: false,
    },
];

/// A run's per-window and per-run samples, read from its results.json.
pub fn samples(results: &serde_json::Value, metric: &Metric) -> Vec<Option<f64>> {
    let f = |v: &serde_json::Value| v.as_f64();
    if metric.per_window {
        let windows = results["windows"].as_array().cloned().unwrap_or_default();
        return windows
            .iter()
            .map(|w| match metric.key {
                "p99_fault_ms" => f(&w["latency_fault_ms"]["p99"]),
                "p99_steady_ms" => f(&w["latency_steady_ms"]["p99"]),
                key => f(&w[key]),
            })
            .collect();
    }
    let cost = &results["cost_steady"];
    let span = f(&cost["to_s"])
        .zip(f(&cost["from_s"]))
        .map(|(t, s)| t - s)
        .filter(|d| *d > 0.0);
    let cpus: Vec<f64> = cost["per_node"]
        .as_object()
        .map(|m| m.values().filter_map(|c| c["cpu_s"].as_f64()).collect())
        .unwrap_or_default();
    let total: f64 = cpus.iter().sum();
    vec![match metric.key {
        "msgs_per_op" => f(&cost["msgs_per_op"]),
        "cpu_per_node_s" => span
            .filter(|_| !cpus.is_empty())
            .map(|d| total / cpus.len() as f64 / d),
        "busiest_cpu_share" => {
            (total > 0.0).then(|| cpus.iter().copied().fold(0.0, f64::max) / total)
        }
        _ => None,
    }]
}

/// Steady-state CPU seconds per second of each node, busiest first (one run).
pub fn cpu_ranked(results: &serde_json::Value) -> Vec<f64> {
    let cost = &results["cost_steady"];
    let span = cost["to_s"].as_f64().unwrap_or(0.0) - cost["from_s"].as_f64().unwrap_or(0.0);
    let mut cpus: Vec<f64> = cost["per_node"]
        .as_object()
        .map(|m| m.values().filter_map(|c| c["cpu_s"].as_f64()).collect())
        .unwrap_or_default();
    if span <= 0.0 {
        return Vec::new();
    }
    cpus.iter_mut().for_each(|c| *c /= span);
    cpus.sort_by(|a, b| b.total_cmp(a));
    cpus
}

/// One (scenario, mode) cell.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub scenario: String,
    pub mode: String,
    pub runs: usize,
    pub valid_runs: usize,
    pub windows: usize,
    /// How many fault windows hit each role (`leader`, `follower`, `none`, …).
    pub target_roles: BTreeMap<String, usize>,
    pub metrics: BTreeMap<String, Option<Spread>>,
    /// Steady CPU s/s of the busiest, second, … node: spread over runs.
    pub cpu_by_rank: Vec<Option<Spread>>,
}

/// Two modes' spreads of one figure in one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub scenario: String,
    pub metric: String,
    pub a: String,
    pub b: String,
    pub clear: bool,
    /// The better mode when the difference is clear.
    pub better: Option<String>,
}

pub struct Comparison {
    pub plan: ComparePlan,
    pub started_at: String,
    pub cells: Vec<Cell>,
    pub differences: Vec<Difference>,
    pub runs: Vec<serde_json::Value>,
    pub reading: Vec<String>,
    pub invalid: usize,
    pub unknown: usize,
    pub errors: usize,
}

fn fmt_spread(s: &Option<Spread>, metric: &Metric) -> String {
    match s {
        None => "–".into(),
        Some(s) => {
            let f = |x: f64| {
                if metric.key == "availability" || metric.key == "busiest_cpu_share" {
                    format!("{:.0}%", x * 100.0)
                } else if x >= 100.0 {
                    format!("{x:.0}")
                } else if x >= 10.0 {
                    format!("{x:.1}")
                } else {
                    format!("{x:.2}")
                }
            };
            let missing = if s.missing > 0 {
                format!(" [{} n/a]", s.missing)
            } else {
                String::new()
            };
            format!("{} ({}–{}){missing}", f(s.median), f(s.min), f(s.max))
        }
    }
}

impl Comparison {
    pub fn build(plan: &ComparePlan, outcomes: &[RunOutcome], started: SystemTime) -> Self {
        let mut cells = Vec::new();
        for scenario in &plan.scenarios {
            for mode in &plan.modes {
                let runs: Vec<&RunOutcome> = outcomes
                    .iter()
                    .filter(|o| &o.scenario == scenario && &o.mode == mode)
                    .collect();
                let usable: Vec<&serde_json::Value> = runs
                    .iter()
                    .filter(|o| o.error.is_none())
                    .filter_map(|o| o.results.as_ref())
                    .collect();
                let mut roles = BTreeMap::new();
                let mut windows = 0;
                for r in &usable {
                    for w in r["windows"].as_array().into_iter().flatten() {
                        windows += 1;
                        let role = w["target_role"].as_str().unwrap_or("none").to_string();
                        *roles.entry(role).or_insert(0) += 1;
                    }
                }
                let metrics = METRICS
                    .iter()
                    .map(|m| {
                        let all: Vec<Option<f64>> =
                            usable.iter().flat_map(|r| samples(r, m)).collect();
                        (m.key.to_string(), Spread::of(&all))
                    })
                    .collect();
                let ranked: Vec<Vec<f64>> = usable.iter().map(|r| cpu_ranked(r)).collect();
                let width = ranked.iter().map(Vec::len).max().unwrap_or(0);
                let cpu_by_rank = (0..width)
                    .map(|k| {
                        Spread::of(&ranked.iter().map(|r| r.get(k).copied()).collect::<Vec<_>>())
                    })
                    .collect();
                cells.push(Cell {
                    scenario: scenario.name().to_string(),
                    mode: mode.clone(),
                    runs: runs.len(),
                    valid_runs: usable.len(),
                    windows,
                    target_roles: roles,
                    metrics,
                    cpu_by_rank,
                });
            }
        }
        let mut differences = Vec::new();
        for scenario in &plan.scenarios {
            let here: Vec<&Cell> = cells
                .iter()
                .filter(|c| c.scenario == scenario.name())
                .collect();
            for m in &METRICS {
                for (i, a) in here.iter().enumerate() {
                    for b in &here[i + 1..] {
                        let (Some(Some(sa)), Some(Some(sb))) =
                            (a.metrics.get(m.key), b.metrics.get(m.key))
                        else {
                            continue;
                        };
                        let clear = sa.clearly_apart(sb);
                        let a_better = (sa.median < sb.median) == m.lower_is_better;
                        differences.push(Difference {
                            scenario: scenario.name().to_string(),
                            metric: m.key.to_string(),
                            a: a.mode.clone(),
                            b: b.mode.clone(),
                            clear,
                            better: clear.then(|| {
                                if a_better {
                                    a.mode.clone()
                                } else {
                                    b.mode.clone()
                                }
                            }),
                        });
                    }
                }
            }
        }
        let runs = outcomes
            .iter()
            .map(|o| {
                serde_json::json!({
                    "mode": o.mode,
                    "system": o.system,
                    "scenario": o.scenario.name(),
                    "seed": o.seed,
                    "name": o.name,
                    "dir": o.dir.as_ref().map(|d| d.display().to_string()),
                    "exit_code": o.exit_code,
                    "verdict": o.verdict(),
                    "usable": o.error.is_none(),
                    "error": o.error,
                    "wall_s": o.wall_s,
                    "windows": o.results.as_ref().and_then(|r| r["windows"].as_array().map(Vec::len)),
                })
            })
            .collect();
        let invalid = outcomes.iter().filter(|o| o.verdict() == "invalid").count();
        let unknown = outcomes.iter().filter(|o| o.verdict() == "unknown").count();
        let errors = outcomes
            .iter()
            .filter(|o| o.error.is_some() && !matches!(o.verdict(), "invalid" | "unknown"))
            .count();
        let mut c = Self {
            plan: plan.clone(),
            started_at: humantime::format_rfc3339_seconds(started).to_string(),
            cells,
            differences,
            runs,
            reading: Vec::new(),
            invalid,
            unknown,
            errors,
        };
        c.reading = c.read();
        c
    }

    pub fn cell(&self, scenario: &str, mode: &str) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.scenario == scenario && c.mode == mode)
    }

    fn metric(key: &str) -> &'static Metric {
        METRICS.iter().find(|m| m.key == key).expect("known metric")
    }

    /// The plain-language reading: per scenario the stall, then cost.
    fn read(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.invalid + self.unknown + self.errors > 0 {
            lines.push(format!(
                "NOT A RESULT: {} run(s) invalid, {} unknown, {} failed — their figures are left out; see the runs table in comparison.json.",
                self.invalid, self.unknown, self.errors
            ));
        }
        let s = |x: &Spread, unit: &str| {
            format!("{:.2} {unit} median ({:.2}–{:.2})", x.median, x.min, x.max)
        };
        for scenario in &self.plan.scenarios {
            let name = scenario.name();
            let mut parts = Vec::new();
            for mode in &self.plan.modes {
                let Some(cell) = self.cell(name, mode) else {
                    continue;
                };
                match cell.metrics.get("gap_healthy_s").cloned().flatten() {
                    Some(g) => parts.push(format!("{mode} {}", s(&g, "s"))),
                    None => parts.push(format!("{mode}: no figures")),
                }
            }
            let diffs: Vec<&Difference> = self
                .differences
                .iter()
                .filter(|d| d.scenario == name && d.metric == "gap_healthy_s")
                .collect();
            let verdict = if diffs.is_empty() {
                String::new()
            } else if diffs.iter().all(|d| !d.clear) {
                let few = self.cells.iter().filter(|c| c.scenario == name).any(|c| {
                    c.metrics
                        .get("gap_healthy_s")
                        .cloned()
                        .flatten()
                        .is_none_or(|s| s.n < MIN_SAMPLES)
                });
                if few {
                    format!(": too few samples to call a difference (fewer than {MIN_SAMPLES} per mode)")
                } else {
                    ": no clear difference (ranges overlap)".into()
                }
            } else {
                let clear: Vec<String> = diffs
                    .iter()
                    .filter(|d| d.clear)
                    .map(|d| {
                        format!(
                            "{} clearly shorter than {}",
                            d.better.as_deref().unwrap_or("?"),
                            if d.better.as_deref() == Some(&d.a) {
                                &d.b
                            } else {
                                &d.a
                            }
                        )
                    })
                    .collect();
                format!(": {}", clear.join("; "))
            };
            lines.push(format!(
                "{name}: clients of healthy nodes waited at most — {}{verdict}.",
                parts.join("; ")
            ));
            for mode in &self.plan.modes {
                let Some(cell) = self.cell(name, mode) else {
                    continue;
                };
                let untargeted = cell.target_roles.get("none").copied().unwrap_or(0);
                if untargeted > 0 && scenario.role != crate::nemesis::scenario::Role::Minority {
                    lines.push(format!(
                        "  {mode}: {untargeted} of {} faults found no leader (a mode without one, or an election in progress) and hit a seeded random node.",
                        cell.windows
                    ));
                }
            }
        }
        // Cost, pooled over every scenario's runs (it is measured before the first fault).
        let mut cost_parts = Vec::new();
        for mode in &self.plan.modes {
            let pooled = |key: &str| {
                self.cells
                    .iter()
                    .filter(|c| &c.mode == mode)
                    .filter_map(|c| c.metrics.get(key).cloned().flatten())
                    .map(|s| s.median)
                    .collect::<Vec<f64>>()
            };
            let msgs = Spread::of(
                &pooled("msgs_per_op")
                    .into_iter()
                    .map(Some)
                    .collect::<Vec<_>>(),
            );
            let share = Spread::of(
                &pooled("busiest_cpu_share")
                    .into_iter()
                    .map(Some)
                    .collect::<Vec<_>>(),
            );
            cost_parts.push(format!(
                "{mode}: {} peer messages per op, busiest node {} of the cluster's CPU",
                msgs.map_or("–".into(), |m| format!("{:.1}", m.median)),
                share.map_or("–".into(), |m| format!("{:.0}%", m.median * 100.0)),
            ));
        }
        lines.push(format!(
            "Cost before any fault (median over scenarios): {}.",
            cost_parts.join("; ")
        ));
        lines
    }

    /// Exit code: any invalid → 1, else any unknown → 2, else any error → 3, else 0.
    pub fn exit_code(&self) -> i32 {
        if self.invalid > 0 {
            1
        } else if self.unknown > 0 {
            2
        } else if self.errors > 0 {
            crate::EXIT_ERROR
        } else {
            0
        }
    }

    const COLUMNS: [&'static str; 8] = [
        "gap_s",
        "gap_healthy_s",
        "recovery_healthy_s",
        "recovery_after_heal_s",
        "availability",
        "p99_fault_ms",
        "msgs_per_op",
        "busiest_cpu_share",
    ];
    const HEADERS: [&'static str; 8] = [
        "gap all (s)",
        "gap healthy (s)",
        "recovery healthy (s)",
        "after undo (s)",
        "availability",
        "p99 in fault (ms)",
        "msgs/op",
        "busiest CPU",
    ];

    fn rows(&self) -> Vec<Vec<String>> {
        self.cells
            .iter()
            .map(|c| {
                let mut row = vec![c.scenario.clone(), c.mode.clone()];
                for key in Self::COLUMNS {
                    row.push(fmt_spread(
                        c.metrics.get(key).unwrap_or(&None),
                        Self::metric(key),
                    ));
                }
                row.push(format!("{}/{}", c.valid_runs, c.runs));
                row
            })
            .collect()
    }

    fn header(&self) -> Vec<String> {
        let mut h = vec!["scenario".to_string(), "mode".to_string()];
        h.extend(Self::HEADERS.iter().map(|s| s.to_string()));
        h.push("valid runs".into());
        h
    }

    /// comparison.md: one table and the reading.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# faultline compare — {}\n\n{} nodes, {} clients at {} ops/s, {} faults of {:.2} s per run (healthy gaps as long), seeds {:?}, backend {:?}. Cells: median (min–max) over cycles × seeds — gap/recovery/latency/availability per fault window (cycles × seeds), cost per run before the first fault. `[k n/a]`: k windows where the figure does not exist (e.g. throughput never back to 90 % within the window).\n",
            self.started_at,
            self.plan.nodes,
            self.plan.concurrency,
            self.plan.rate,
            self.plan.cycles,
            self.plan.interval_s,
            self.plan.seeds,
            self.plan.backend
        );
        let header = self.header();
        let _ = writeln!(md, "| {} |", header.join(" | "));
        let _ = writeln!(md, "|{}|", vec!["---"; header.len()].join("|"));
        for row in self.rows() {
            let _ = writeln!(md, "| {} |", row.join(" | "));
        }
        md.push('\n');
        for line in &self.reading {
            let _ = writeln!(md, "{line}\n");
        }
        md
    }

    /// The terminal table (aligned columns).
    pub fn table(&self) -> String {
        let header = self.header();
        let rows = self.rows();
        let widths: Vec<usize> = (0..header.len())
            .map(|i| {
                rows.iter()
                    .map(|r| r[i].chars().count())
                    .chain([header[i].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
        };
        let mut out = line(&header);
        for r in &rows {
            out.push('\n');
            out.push_str(&line(r));
        }
        out
    }

    /// comparison.json (schema in harness/README.md).
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "schema": "faultline-comparison/1",
            "started_at": self.started_at,
            "settings": {
                "modes": self.plan.modes,
                "columns": self.plan.columns.iter().map(|c| serde_json::json!({
                    "label": c.label,
                    "system": c.system.name(),
                    "setting": c.setting,
                })).collect::<Vec<_>>(),
                "scenarios": self.plan.scenarios.iter().map(|s| s.name()).collect::<Vec<_>>(),
                "seeds": self.plan.seeds,
                "cycles": self.plan.cycles,
                "time_limit_s": self.plan.time_limit_s,
                "interval_s": self.plan.interval_s,
                "rate": self.plan.rate,
                "concurrency": self.plan.concurrency,
                "nodes": self.plan.nodes,
                "backend": format!("{:?}", self.plan.backend).to_lowercase(),
            },
            "metrics": METRICS.iter().map(|m| serde_json::json!({
                "key": m.key, "label": m.label, "unit": m.unit,
                "lower_is_better": m.lower_is_better,
                "per": if m.per_window { "window" } else { "run" },
            })).collect::<Vec<_>>(),
            "runs": self.runs,
            "cells": self.cells,
            "differences": self.differences,
            "reading": self.reading,
            "all_valid": self.invalid + self.unknown + self.errors == 0,
            "exit_code": self.exit_code(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_and_the_clear_rule() {
        let a = Spread::of(&[Some(0.3), Some(0.5), None, Some(0.4)]).unwrap();
        assert_eq!(
            (a.median, a.min, a.max, a.n, a.missing),
            (0.4, 0.3, 0.5, 3, 1)
        );
        let b = Spread::of(&[Some(0.02), Some(0.05)]).unwrap();
        assert!((b.median - 0.035).abs() < 1e-12);
        assert!(!a.clearly_apart(&b), "two samples are too few");
        let b = Spread::of(&[Some(0.02), Some(0.05), Some(0.04)]).unwrap();
        assert!(a.clearly_apart(&b));
        let c = Spread::of(&[Some(0.45), Some(0.9)]).unwrap();
        assert!(!a.clearly_apart(&c));
        assert!(Spread::of(&[None]).is_none());
    }

    #[test]
    fn samples_come_from_windows_and_cost() {
        let r = serde_json::json!({
            "windows": [
                {"gap_s": 0.4, "latency_fault_ms": {"p99": 12.0}},
                {"gap_s": 0.3, "latency_fault_ms": null},
            ],
            "cost_steady": {"from_s": 0.0, "to_s": 2.0, "msgs_per_op": 3.5,
                "per_node": {"n1": {"cpu_s": 0.6}, "n2": {"cpu_s": 0.2}, "n3": {"cpu_s": 0.2}}},
        });
        let m = |k| METRICS.iter().find(|m| m.key == k).unwrap();
        assert_eq!(samples(&r, m("gap_s")), vec![Some(0.4), Some(0.3)]);
        assert_eq!(samples(&r, m("p99_fault_ms")), vec![Some(12.0), None]);
        assert_eq!(samples(&r, m("msgs_per_op")), vec![Some(3.5)]);
        let share = samples(&r, m("busiest_cpu_share"))[0].unwrap();
        assert!((share - 0.6).abs() < 1e-9);
        assert_eq!(cpu_ranked(&r), vec![0.3, 0.1, 0.1]);
    }
}
