//! SVG charts for the report, drawn with plotters: latency over time per op type (with
//! the nemesis windows shaded), throughput over time by outcome in 100-ms buckets,
//! latency quantiles over time and rate per op type (as Jepsen's `latency-quantiles.png`
//! and `rate.png`). Leader changes are dashed lines labelled with the new leader.
//! Legends are drawn by the HTML page beside the charts, so they never cover data.

use plotters::prelude::*;

use super::analysis::{Analysis, Outcome, Window};
use super::windows;

/// Outcome colours, for the page's legend.
pub const OUTCOMES: [(&str, RGBColor); 3] = [
    ("ok", RGBColor(46, 139, 87)),
    ("fail", RGBColor(200, 40, 40)),
    ("info", RGBColor(230, 150, 0)),
];

/// A palette for series without a natural colour (quantiles, op types).
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

type Chart<'a, 'b, Y> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>;

/// Marks each leader change: a dashed vertical line at `y` range, labelled at the top.
fn mark_leaders<Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'_, '_, Y>,
    leaders: &[(f64, Option<String>)],
    y: (f64, f64),
) -> Result<(), PlotError> {
    let grey = RGBColor(60, 60, 60);
    for (t, leader) in leaders {
        let dashes: Vec<PathElement<(f64, f64)>> = (0..20)
            .filter(|i| i % 2 == 0)
            .map(|i| {
                let at = |k: f64| {
                    if y.0 > 0.0 {
                        // log axis: interpolate in log space
                        (y.0.ln() + (y.1.ln() - y.0.ln()) * k / 20.0).exp()
                    } else {
                        y.0 + (y.1 - y.0) * k / 20.0
                    }
                };
                PathElement::new(
                    vec![(*t, at(i as f64)), (*t, at(i as f64 + 1.0))],
                    grey.stroke_width(1),
                )
            })
            .collect();
        chart.draw_series(dashes).map_err(PlotError::from_drawing)?;
        let label = leader.clone().unwrap_or_else(|| "none".into());
        chart
            .draw_series(std::iter::once(Text::new(
                label,
                (*t, y.1),
                ("sans-serif", 11).into_font().color(&grey),
            )))
            .map_err(PlotError::from_drawing)?;
    }
    Ok(())
}

const WIDTH: u32 = 960;
const HEIGHT: u32 = 280;

fn outcome_colour(o: Outcome) -> RGBColor {
    match o {
        Outcome::Ok => RGBColor(46, 139, 87),
        Outcome::Fail => RGBColor(200, 40, 40),
        Outcome::Info => RGBColor(230, 150, 0),
        Outcome::Open => RGBColor(120, 120, 120),
    }
}

/// The shade of a nemesis window, per fault kind (also used by the HTML legend).
pub fn fault_colour(fault: &str) -> RGBColor {
    match fault {
        "partition" => RGBColor(70, 110, 220),
        "kill" => RGBColor(200, 40, 40),
        "pause" => RGBColor(150, 80, 200),
        "clock" => RGBColor(40, 160, 160),
        _ => RGBColor(230, 150, 0),
    }
}

fn shade<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, impl Ranged<ValueType = f64>>,
    >,
    windows: &[Window],
    y: (f64, f64),
) -> Result<(), PlotError> {
    chart
        .draw_series(windows.iter().map(|w| {
            Rectangle::new(
                [(w.start_s, y.0), (w.end_s, y.1)],
                fault_colour(&w.fault).mix(0.12).filled(),
            )
        }))
        .map_err(PlotError::from_drawing)?;
    Ok(())
}

/// Why a chart could not be drawn (plotters' drawing errors, as text).
#[derive(Debug, Clone, thiserror::Error)]
#[error("drawing the chart: {0}")]
pub struct PlotError(pub String);

impl PlotError {
    pub(crate) fn from_drawing(e: impl std::fmt::Display) -> Self {
        Self(e.to_string())
    }
}

/// Draws one chart into an SVG string of `size` pixels: a white canvas and a builder with
/// `caption` and the margin and label areas every faultline chart uses; `draw` builds the
/// axes and series on it. Shared by the run report and `faultline compare`'s page.
pub(crate) fn svg_chart(
    size: (u32, u32),
    caption: &str,
    draw: impl FnOnce(&mut ChartBuilder<'_, '_, SVGBackend<'_>>) -> Result<(), PlotError>,
) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(PlotError::from_drawing)?;
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(caption, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(56);
        draw(&mut builder)?;
        root.present().map_err(PlotError::from_drawing)?;
    }
    Ok(svg)
}

/// Latency scatter of one op type `f`: x = completion time (s), y = latency (ms, log).
pub fn latency_svg(
    analysis: &Analysis,
    f: &str,
    leaders: &[(f64, Option<String>)],
) -> Result<String, PlotError> {
    let points: Vec<(f64, f64, Outcome)> = analysis
        .ops
        .iter()
        .filter(|o| o.f == f)
        .filter_map(|o| {
            Some((
                o.start_ns as f64 / 1e9,
                o.latency_ms()?.max(0.01),
                o.outcome,
            ))
        })
        .collect();
    let max_ms = points.iter().map(|p| p.1).fold(1.0f64, f64::max) * 1.5;
    let end = analysis.end_s.max(1.0);
    let caption = format!("{f}: latency by invocation time");
    svg_chart((WIDTH, HEIGHT), &caption, |builder| {
        let mut chart = builder
            .build_cartesian_2d(0f64..end, (0.01f64..max_ms).log_scale())
            .map_err(PlotError::from_drawing)?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("latency (ms)")
            .draw()
            .map_err(PlotError::from_drawing)?;
        shade(&mut chart, &analysis.windows, (0.01, max_ms))?;
        mark_leaders(&mut chart, leaders, (0.01, max_ms))?;
        for outcome in [Outcome::Ok, Outcome::Fail, Outcome::Info] {
            let colour = outcome_colour(outcome);
            chart
                .draw_series(
                    points
                        .iter()
                        .filter(|p| p.2 == outcome)
                        .map(|p| Circle::new((p.0, p.1), 2, colour.mix(0.7).filled())),
                )
                .map_err(PlotError::from_drawing)?;
        }
        Ok(())
    })
}

/// Completions per second by outcome in 100-ms buckets, with the nemesis windows shaded.
pub fn throughput_svg(
    analysis: &Analysis,
    leaders: &[(f64, Option<String>)],
) -> Result<String, PlotError> {
    let bucket = windows::BUCKET_S;
    let series = windows::rate_series(&analysis.ops, analysis.end_s.max(bucket), bucket);
    let max = series
        .iter()
        .flat_map(|(_, v)| v.iter())
        .copied()
        .fold(1.0f64, f64::max)
        * 1.1;
    let end = analysis.end_s.max(1.0);
    let caption = "throughput (completions per second, 100-ms buckets)";
    svg_chart((WIDTH, HEIGHT), caption, |builder| {
        let mut chart = builder
            .build_cartesian_2d(0f64..end, 0f64..max)
            .map_err(PlotError::from_drawing)?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("ops/s")
            .draw()
            .map_err(PlotError::from_drawing)?;
        shade(&mut chart, &analysis.windows, (0.0, max))?;
        mark_leaders(&mut chart, leaders, (0.0, max))?;
        for (outcome, rates) in &series {
            let colour = outcome_colour(*outcome);
            chart
                .draw_series(LineSeries::new(
                    rates
                        .iter()
                        .enumerate()
                        .map(|(i, &r)| ((i as f64 + 0.5) * bucket, r)),
                    colour.stroke_width(1),
                ))
                .map_err(PlotError::from_drawing)?;
        }
        Ok(())
    })
}

/// Lines over time, each with a name and colour, on a chart with the windows shaded.
fn lines_svg(
    analysis: &Analysis,
    caption: &str,
    y_desc: &str,
    lines: Vec<(String, Vec<(f64, f64)>)>,
    leaders: &[(f64, Option<String>)],
    log: bool,
) -> Result<(String, Vec<(String, RGBColor)>), PlotError> {
    let max = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.1))
        .fold(1.0f64, f64::max)
        * 1.2;
    let end = analysis.end_s.max(1.0);
    let legend: Vec<(String, RGBColor)> = lines
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (name.clone(), PALETTE[i % PALETTE.len()]))
        .collect();
    let svg = svg_chart((WIDTH, HEIGHT), caption, |builder| {
        macro_rules! draw {
            ($chart:expr, $lo:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc("time (s)")
                    .y_desc(y_desc)
                    .draw()
                    .map_err(PlotError::from_drawing)?;
                shade(&mut chart, &analysis.windows, ($lo, max))?;
                mark_leaders(&mut chart, leaders, ($lo, max))?;
                for ((_, points), (_, colour)) in lines.iter().zip(&legend) {
                    chart
                        .draw_series(LineSeries::new(
                            points.iter().map(|&(x, y)| (x, y.max($lo))),
                            colour.stroke_width(1),
                        ))
                        .map_err(PlotError::from_drawing)?;
                }
            }};
        }
        if log {
            draw!(
                builder
                    .build_cartesian_2d(0f64..end, (0.1f64..max).log_scale())
                    .map_err(PlotError::from_drawing)?,
                0.1
            );
        } else {
            draw!(
                builder
                    .build_cartesian_2d(0f64..end, 0f64..max)
                    .map_err(PlotError::from_drawing)?,
                0.0
            );
        }
        Ok(())
    })?;
    Ok((svg, legend))
}

/// Bucket for the quantile and rate charts (Jepsen's default `dt` is 10 s for long runs;
/// faultline's runs are short).
const QUANTILE_BUCKET_S: f64 = 0.5;

/// Latency quantiles (p50, p95, p99, max) of ok ops over time, in 0.5-s buckets by
/// invocation time, per op type.
pub fn latency_quantiles_svg(
    analysis: &Analysis,
    leaders: &[(f64, Option<String>)],
) -> Result<(String, Vec<(String, RGBColor)>), PlotError> {
    let mut fs: Vec<&str> = analysis.ops.iter().map(|o| o.f.as_str()).collect();
    fs.sort();
    fs.dedup();
    let n = ((analysis.end_s / QUANTILE_BUCKET_S).ceil() as usize).max(1);
    let mut lines = Vec::new();
    for f in fs {
        let mut buckets: Vec<Vec<f64>> = vec![Vec::new(); n];
        for o in analysis
            .ops
            .iter()
            .filter(|o| o.f == f && o.outcome == Outcome::Ok)
        {
            if let Some(l) = o.latency_ms() {
                let b = ((o.start_ns as f64 / 1e9 / QUANTILE_BUCKET_S) as usize).min(n - 1);
                buckets[b].push(l);
            }
        }
        for (q, name) in [(0.5, "p50"), (0.95, "p95"), (0.99, "p99"), (1.0, "max")] {
            let points: Vec<(f64, f64)> = buckets
                .iter_mut()
                .enumerate()
                .filter(|(_, b)| !b.is_empty())
                .map(|(i, b)| {
                    b.sort_by(f64::total_cmp);
                    let k = ((q * b.len() as f64).ceil() as usize).clamp(1, b.len()) - 1;
                    ((i as f64 + 0.5) * QUANTILE_BUCKET_S, b[k])
                })
                .collect();
            lines.push((format!("{f} {name}"), points));
        }
    }
    lines_svg(
        analysis,
        "latency quantiles of ok ops (0.5-s buckets)",
        "latency (ms)",
        lines,
        leaders,
        true,
    )
}

/// Completions per second per op type and outcome, in 0.5-s buckets.
pub fn rate_svg(
    analysis: &Analysis,
    leaders: &[(f64, Option<String>)],
) -> Result<(String, Vec<(String, RGBColor)>), PlotError> {
    let n = ((analysis.end_s / QUANTILE_BUCKET_S).ceil() as usize).max(1);
    let mut counts: std::collections::BTreeMap<(String, Outcome), Vec<f64>> =
        std::collections::BTreeMap::new();
    for o in &analysis.ops {
        let Some(end) = o.end_ns else { continue };
        let b = ((end as f64 / 1e9 / QUANTILE_BUCKET_S) as usize).min(n - 1);
        counts
            .entry((o.f.clone(), o.outcome))
            .or_insert_with(|| vec![0.0; n])[b] += 1.0 / QUANTILE_BUCKET_S;
    }
    let lines = counts
        .into_iter()
        .map(|((f, outcome), rates)| {
            (
                format!("{f} {}", format!("{outcome:?}").to_lowercase()),
                rates
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| ((i as f64 + 0.5) * QUANTILE_BUCKET_S, r))
                    .collect(),
            )
        })
        .collect();
    lines_svg(
        analysis,
        "rate per op type (completions per second, 0.5-s buckets)",
        "ops/s",
        lines,
        leaders,
        false,
    )
}
