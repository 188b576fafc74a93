//! SVG charts for the report, drawn with plotters: latency over time per op type (with
//! the nemesis windows shaded) and throughput over time by outcome.

use plotters::prelude::*;

use super::analysis::{Analysis, Outcome, Window};

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
    fn from_drawing(e: impl std::fmt::Display) -> Self {
        Self(e.to_string())
    }
}

/// Latency scatter of one op type `f`: x = completion time (s), y = latency (ms, log).
pub fn latency_svg(analysis: &Analysis, f: &str) -> Result<String, PlotError> {
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
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(PlotError::from_drawing)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{f}: latency by invocation time"),
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..end, (0.01f64..max_ms).log_scale())
            .map_err(PlotError::from_drawing)?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("latency (ms)")
            .draw()
            .map_err(PlotError::from_drawing)?;
        shade(&mut chart, &analysis.windows, (0.01, max_ms))?;
        for outcome in [Outcome::Ok, Outcome::Fail, Outcome::Info] {
            let colour = outcome_colour(outcome);
            chart
                .draw_series(
                    points
                        .iter()
                        .filter(|p| p.2 == outcome)
                        .map(|p| Circle::new((p.0, p.1), 2, colour.mix(0.7).filled())),
                )
                .map_err(PlotError::from_drawing)?
                .label(format!("{outcome:?}").to_lowercase())
                .legend(move |(x, y)| Circle::new((x, y), 3, colour.filled()));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(PlotError::from_drawing)?;
        root.present().map_err(PlotError::from_drawing)?;
    }
    Ok(svg)
}

/// Completions per second by outcome, with the nemesis windows shaded.
pub fn throughput_svg(analysis: &Analysis) -> Result<String, PlotError> {
    let series = analysis.throughput();
    let max = series
        .values()
        .flat_map(|v| v.iter())
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let end = analysis.end_s.max(1.0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(PlotError::from_drawing)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("throughput (completions per second)", ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..end, 0f64..max)
            .map_err(PlotError::from_drawing)?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("ops/s")
            .draw()
            .map_err(PlotError::from_drawing)?;
        shade(&mut chart, &analysis.windows, (0.0, max))?;
        for (outcome, counts) in &series {
            let colour = outcome_colour(*outcome);
            chart
                .draw_series(LineSeries::new(
                    counts
                        .iter()
                        .enumerate()
                        .map(|(s, &c)| (s as f64 + 0.5, c as f64)),
                    colour.stroke_width(2),
                ))
                .map_err(PlotError::from_drawing)?
                .label(format!("{outcome:?}").to_lowercase())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(PlotError::from_drawing)?;
        root.present().map_err(PlotError::from_drawing)?;
    }
    Ok(svg)
}
