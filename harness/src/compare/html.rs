//! `comparison.html`: one self-contained page. Per scenario, the modes' throughput and
//! latency aligned at fault start (x = seconds since the fault began; every cycle a thin
//! line, the median over cycles a thick one per mode; the fault shaded); then bars
//! (median, min–max whiskers) for unavailability, recovery, messages per op and CPU per
//! node. Charts are plotters SVG inlined in the page.

use std::collections::BTreeMap;
use std::fmt::Write;

use plotters::prelude::*;

use super::summary::{Comparison, Spread, METRICS};
use super::RunOutcome;
use crate::report::html::escape;
use crate::report::plot::{svg_chart, PlotError};

const WIDTH: u32 = 900;
const HEIGHT: u32 = 260;

const MODE_COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

fn colour(i: usize) -> RGBColor {
    MODE_COLOURS[i % MODE_COLOURS.len()]
}

/// One cycle's aligned series: `(x = s since fault start, value)`.
type Line = Vec<(f64, f64)>;

/// Every cycle's aligned (throughput, latency) lines of one mode in one scenario.
fn aligned(outcomes: &[RunOutcome], scenario: &str, mode: &str) -> (Vec<Line>, Vec<Line>) {
    let (mut tput, mut lat) = (Vec::new(), Vec::new());
    for o in outcomes
        .iter()
        .filter(|o| o.scenario.name() == scenario && o.mode == mode && o.error.is_none())
    {
        let Some(r) = &o.results else { continue };
        for w in r["windows"].as_array().into_iter().flatten() {
            let s = &w["series"];
            let (Some(from), Some(bucket)) = (s["from_s"].as_f64(), s["bucket_s"].as_f64()) else {
                continue;
            };
            let x = |i: usize| from + (i as f64 + 0.5) * bucket;
            tput.push(
                s["ok_per_s"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                    .filter_map(|(i, v)| Some((x(i), v.as_f64()?)))
                    .collect(),
            );
            lat.push(
                s["max_latency_ms"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                    .filter_map(|(i, v)| Some((x(i), v.as_f64()?)))
                    .collect(),
            );
        }
    }
    (tput, lat)
}

/// The median over lines at each x (binned to 1 ms).
fn median_line(lines: &[Line]) -> Line {
    let mut at: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for line in lines {
        for &(x, y) in line {
            at.entry((x * 1000.0).round() as i64).or_default().push(y);
        }
    }
    at.into_iter()
        .map(|(x, mut ys)| {
            ys.sort_by(f64::total_cmp);
            let n = ys.len();
            let m = if n % 2 == 1 {
                ys[n / 2]
            } else {
                (ys[n / 2 - 1] + ys[n / 2]) / 2.0
            };
            (x as f64 / 1000.0, m)
        })
        .collect()
}

fn aligned_svg(
    caption: &str,
    y_desc: &str,
    modes: &[(String, Vec<Line>)],
    fault_s: f64,
    log: bool,
) -> Result<String, PlotError> {
    let xs = modes
        .iter()
        .flat_map(|(_, ls)| ls.iter().flatten().map(|p| p.0));
    let (x0, x1) = xs.fold((0.0f64, fault_s), |(a, b), x| (a.min(x), b.max(x)));
    let y1 = modes
        .iter()
        .flat_map(|(_, ls)| ls.iter().flatten().map(|p| p.1))
        .fold(1.0f64, f64::max)
        * 1.15;
    svg_chart((WIDTH, HEIGHT), caption, |b| {
        macro_rules! draw {
            ($chart:expr, $lo:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc("seconds since the fault started")
                    .y_desc(y_desc)
                    .draw()
                    .map_err(PlotError::from_drawing)?;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(0.0, $lo), (fault_s, y1)],
                        RGBColor(200, 40, 40).mix(0.1).filled(),
                    )))
                    .map_err(PlotError::from_drawing)?;
                for (i, (_, lines)) in modes.iter().enumerate() {
                    let c = colour(i);
                    for line in lines {
                        chart
                            .draw_series(LineSeries::new(
                                line.iter().map(|&(x, y)| (x, y.max($lo))),
                                c.mix(0.25).stroke_width(1),
                            ))
                            .map_err(PlotError::from_drawing)?;
                    }
                    chart
                        .draw_series(LineSeries::new(
                            median_line(lines).into_iter().map(|(x, y)| (x, y.max($lo))),
                            c.stroke_width(3),
                        ))
                        .map_err(PlotError::from_drawing)?;
                }
            }};
        }
        if log {
            draw!(
                b.build_cartesian_2d(x0..x1, (0.1f64..y1).log_scale())
                    .map_err(PlotError::from_drawing)?,
                0.1
            );
        } else {
            draw!(
                b.build_cartesian_2d(x0..x1, 0f64..y1)
                    .map_err(PlotError::from_drawing)?,
                0.0
            );
        }
        Ok(())
    })
}

/// Grouped bars: for each group, one bar per series at the median, whiskers min–max.
fn bars_svg(
    caption: &str,
    y_desc: &str,
    groups: &[String],
    series: &[String],
    value: impl Fn(usize, usize) -> Option<Spread>,
) -> Result<String, PlotError> {
    let k = series.len().max(1) as f64;
    let top = (0..groups.len())
        .flat_map(|g| (0..series.len()).map(move |s| (g, s)))
        .filter_map(|(g, s)| value(g, s))
        .map(|v| v.max)
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.15;
    svg_chart((WIDTH, HEIGHT), caption, |b| {
        let mut chart = b
            .build_cartesian_2d(0f64..groups.len().max(1) as f64, 0f64..top)
            .map_err(PlotError::from_drawing)?;
        let names = groups.to_vec();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(groups.len().max(1) * 2 + 1)
            .x_label_formatter(&move |x: &f64| {
                let g = x.floor() as usize;
                if (x - g as f64 - 0.5).abs() < 0.26 {
                    names.get(g).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc(y_desc)
            .draw()
            .map_err(PlotError::from_drawing)?;
        for g in 0..groups.len() {
            for s in 0..series.len() {
                let Some(v) = value(g, s) else { continue };
                let left = g as f64 + 0.1 + 0.8 * s as f64 / k;
                let right = left + 0.8 / k * 0.9;
                let mid = (left + right) / 2.0;
                let c = colour(s);
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(left, 0.0), (right, v.median)],
                        c.mix(0.7).filled(),
                    )))
                    .map_err(PlotError::from_drawing)?;
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(mid, v.min), (mid, v.max)],
                        BLACK.stroke_width(1),
                    )))
                    .map_err(PlotError::from_drawing)?;
            }
        }
        Ok(())
    })
}

fn legend(names: &[String]) -> String {
    let mut h = String::from("<p>");
    for (i, n) in names.iter().enumerate() {
        let c = colour(i);
        let _ = write!(
            h,
            "<span class=\"sw\" style=\"background:rgb({},{},{})\"></span>{}",
            c.0,
            c.1,
            c.2,
            escape(n)
        );
    }
    h.push_str("</p>");
    h
}

fn push_chart(h: &mut String, what: &str, chart: Result<String, PlotError>) {
    match chart {
        Ok(svg) => h.push_str(&svg),
        Err(e) => {
            let _ = write!(h, "<p>({what} chart failed: {})</p>", escape(&e.0));
        }
    }
}

pub fn render(c: &Comparison, outcomes: &[RunOutcome]) -> String {
    let modes = &c.plan.modes;
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!doctype html><html><head><meta charset="utf-8"><title>faultline compare {}</title>
<style>body{{font-family:sans-serif;margin:24px;color:#222;max-width:1100px}}
table{{border-collapse:collapse;margin:8px 0}} td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left;font-size:13px}}
.sw{{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}}
.bad{{color:#c82828;font-weight:bold}}</style></head><body>
<h1>faultline compare</h1><p>{}: modes {}; {} nodes, {} clients at {} ops/s; {} faults of {:.2} s per run, healthy gaps as long; seeds {:?}.</p>"#,
        escape(&c.started_at),
        escape(&c.started_at),
        escape(&modes.join(", ")),
        c.plan.nodes,
        c.plan.concurrency,
        c.plan.rate,
        c.plan.cycles,
        c.plan.interval_s,
        c.plan.seeds,
    );
    h.push_str("<h2>Reading</h2>");
    for line in &c.reading {
        let class = if line.starts_with("NOT A RESULT") {
            " class=\"bad\""
        } else {
            ""
        };
        let _ = write!(h, "<p{class}>{}</p>", escape(line));
    }
    h.push_str("<h2>Table</h2><p>median (min–max) over cycles × seeds.</p><table>");
    let md = c.markdown();
    for (i, line) in md.lines().filter(|l| l.starts_with('|')).enumerate() {
        if i == 1 {
            continue;
        }
        let tag = if i == 0 { "th" } else { "td" };
        h.push_str("<tr>");
        for cell in line.trim_matches('|').split(" | ") {
            let _ = write!(h, "<{tag}>{}</{tag}>", escape(cell.trim()));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
    h.push_str(&legend(modes));

    let scenarios: Vec<String> = c
        .plan
        .scenarios
        .iter()
        .map(|s| s.name().to_string())
        .collect();
    h.push_str("<h2>Bars</h2><p>Bar: median; whisker: min–max.</p>");
    for key in [
        "gap_healthy_s",
        "gap_s",
        "recovery_healthy_s",
        "msgs_per_op",
    ] {
        let m = METRICS.iter().find(|m| m.key == key).expect("metric");
        push_chart(
            &mut h,
            m.label,
            bars_svg(m.label, m.unit, &scenarios, modes, |g, s| {
                c.cell(&scenarios[g], &modes[s])
                    .and_then(|cell| cell.metrics.get(key).cloned().flatten())
            }),
        );
    }
    // CPU per node, busiest first, pooled over every scenario's steady state.
    let ranks = c
        .cells
        .iter()
        .map(|x| x.cpu_by_rank.len())
        .max()
        .unwrap_or(0);
    let rank_names: Vec<String> = (0..ranks)
        .map(|r| {
            if r == 0 {
                "busiest node".into()
            } else {
                format!("node #{}", r + 1)
            }
        })
        .collect();
    let pooled = |mode: &str, rank: usize| {
        let all: Vec<Option<f64>> = outcomes
            .iter()
            .filter(|o| o.mode == mode && o.error.is_none())
            .filter_map(|o| o.results.as_ref())
            .map(|r| super::summary::cpu_ranked(r).get(rank).copied())
            .collect();
        Spread::of(&all)
    };
    push_chart(
        &mut h,
        "cpu",
        bars_svg(
            "CPU seconds per second per node before any fault, busiest first (bars: node rank; groups: mode)",
            "CPU s/s",
            modes,
            &rank_names,
            |g, s| pooled(&modes[g], s),
        ),
    );
    h.push_str(&legend(&rank_names));

    for scenario in &scenarios {
        let _ = write!(h, "<h2>{}</h2>", escape(scenario));
        let mut tput = Vec::new();
        let mut lat = Vec::new();
        for mode in modes {
            let (t, l) = aligned(outcomes, scenario, mode);
            tput.push((mode.clone(), t));
            lat.push((mode.clone(), l));
        }
        push_chart(
            &mut h,
            "throughput",
            aligned_svg(
                &format!("{scenario}: ok ops per second (100-ms buckets), aligned at fault start"),
                "ok ops/s",
                &tput,
                c.plan.interval_s,
                false,
            ),
        );
        push_chart(
            &mut h,
            "latency",
            aligned_svg(
                &format!("{scenario}: slowest ok op per 100-ms bucket (ms, log)"),
                "latency (ms)",
                &lat,
                c.plan.interval_s,
                true,
            ),
        );
        h.push_str(&legend(modes));
    }
    h.push_str("<h2>Runs</h2><table><tr><th>mode</th><th>scenario</th><th>seed</th><th>verdict</th><th>folder / problem</th></tr>");
    for o in outcomes {
        let what = match (&o.error, &o.dir) {
            (Some(e), _) => format!("<span class=\"bad\">{}</span>", escape(e)),
            (None, Some(d)) => escape(&d.display().to_string()),
            (None, None) => "–".into(),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{what}</td></tr>",
            escape(&o.mode),
            o.scenario.name(),
            o.seed,
            escape(o.verdict())
        );
    }
    h.push_str("</table></body></html>\n");
    h
}
