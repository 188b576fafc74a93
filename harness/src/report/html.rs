//! `report.html`: one self-contained page (no network fetches) with the summary, the
//! charts inlined as SVG, the fault timeline and, for an invalid history, the checker's
//! own visualization embedded as an isolated frame.

use std::fmt::Write;

use super::analysis::Analysis;
use super::plot;
use super::RunInfo;
use crate::checkers::{CheckOutcome, Verdict};

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page for a run whose checkers said `checks`, combined into `verdict`.
pub fn render(
    run: &RunInfo,
    analysis: &Analysis,
    verdict: Verdict,
    checks: &[CheckOutcome],
) -> String {
    render_with(run, analysis, verdict, checks, None)
}

/// `render`, with the fault-window and cost tables and the leader marks when `faults`
/// is given.
pub fn render_with(
    run: &RunInfo,
    analysis: &Analysis,
    verdict: Verdict,
    checks: &[CheckOutcome],
    faults: Option<&super::faults::Faults>,
) -> String {
    let counts = analysis.counts();
    let verdict = format!("{verdict:?}").to_lowercase();
    let colour = match verdict.as_str() {
        "valid" => "#2e8b57",
        "invalid" => "#c82828",
        _ => "#e69600",
    };
    let mut html = String::new();
    let _ = write!(
        html,
        r#"<!doctype html><html><head><meta charset="utf-8"><title>faultline: {test}</title>
<style>
body{{font-family:sans-serif;margin:24px;color:#222;max-width:1000px}}
table{{border-collapse:collapse;margin:8px 0}} td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:14px}}
.verdict{{font-size:28px;font-weight:bold;color:{colour}}} pre{{background:#f6f6f6;padding:8px;overflow:auto;font-size:12px;white-space:pre-wrap;overflow-wrap:anywhere}}
.swatch{{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}}
iframe{{width:100%;height:700px;border:1px solid #ccc}}
</style></head><body>
<h1>{test}</h1><div class="verdict">{verdict}</div>
"#,
        test = escape(&run.test),
    );
    if let Some(why) = &run.interrupted {
        let _ = write!(html, "<p><b>Run cut short:</b> {}</p>", escape(why));
    }
    let _ = write!(
        html,
        "<table><tr><th>started</th><td>{}</td><th>seed</th><td>{}</td></tr>\
<tr><th>system / mode</th><td>{} / {}</td><th>workload / model</th><td>{} / {}</td></tr>\
<tr><th>nodes</th><td>{}</td><th>bugs</th><td>{}</td></tr>\
<tr><th>nemesis</th><td>{} every {} s</td><th>clients</th><td>{} at {} ops/s over {} keys</td></tr>\
<tr><th>main phase</th><td>{} s</td><th>wall time</th><td>{:.1} s</td></tr></table>",
        escape(&run.started_at),
        run.seed,
        escape(&run.system),
        run.mode,
        run.workload,
        run.model,
        run.nodes,
        if run.bugs.is_empty() {
            "none".into()
        } else {
            escape(&run.bugs.join(", "))
        },
        if run.nemesis.is_empty() {
            "none".into()
        } else {
            run.nemesis.join(", ")
        },
        run.nemesis_interval_s,
        run.concurrency,
        run.rate,
        run.keys,
        run.time_limit_s,
        run.wall_time_s,
    );
    let _ = write!(
        html,
        "<h2>Operations</h2><table><tr><th>op</th><th>attempted</th><th>ok</th><th>fail</th><th>info</th><th>of fail: cas≠</th><th>availability (answered / attempted)</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th></tr>"
    );
    let mut rows: Vec<(String, serde_json::Value)> = analysis.by_f().into_iter().collect();
    rows.push((
        "all".into(),
        serde_json::json!({"ops": counts, "availability": counts.availability(), "latency_ms": analysis.latency_quantiles(None)}),
    ));
    for (f, v) in rows {
        let lat = |q: &str| {
            v["latency_ms"][q]
                .as_f64()
                .map_or("-".into(), |x| format!("{x:.2}"))
        };
        let _ = write!(
            html,
            "<tr><td>{f}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            v["ops"]["attempted"],
            v["ops"]["ok"],
            v["ops"]["fail"],
            v["ops"]["info"],
            v["ops"]["cas_mismatch"],
            v["availability"].as_f64().unwrap_or(0.0) * 100.0,
            lat("p50"),
            lat("p99"),
            lat("max")
        );
    }
    html.push_str("</table>");

    html.push_str("<h2>Latency and throughput</h2><p>Shaded: faults in force.");
    for fault in ["partition", "kill", "pause", "packet", "clock"] {
        let c = plot::fault_colour(fault);
        let _ = write!(
            html,
            "<span class=\"swatch\" style=\"background:rgba({},{},{},0.3)\"></span>{fault}",
            c.0, c.1, c.2
        );
    }
    html.push_str(" Points:");
    for (name, c) in plot::OUTCOMES {
        let _ = write!(
            html,
            "<span class=\"swatch\" style=\"background:rgb({},{},{})\"></span>{name}",
            c.0, c.1, c.2
        );
    }
    html.push_str(". Leader changes: dashed lines labelled with the new leader.</p>");
    let leaders = faults.map_or(&[][..], |f| &f.leaders[..]);
    let mut fs: Vec<&str> = analysis.ops.iter().map(|o| o.f.as_str()).collect();
    fs.sort();
    fs.dedup();
    for f in fs {
        match plot::latency_svg(analysis, f, leaders) {
            Ok(svg) => html.push_str(&svg),
            Err(e) => {
                let _ = write!(
                    html,
                    "<p>(latency chart for {f} failed: {})</p>",
                    escape(&e.to_string())
                );
            }
        }
    }
    match plot::throughput_svg(analysis, leaders) {
        Ok(svg) => html.push_str(&svg),
        Err(e) => {
            let _ = write!(
                html,
                "<p>(throughput chart failed: {})</p>",
                escape(&e.to_string())
            );
        }
    }
    for (what, chart) in [
        (
            "latency quantiles",
            plot::latency_quantiles_svg(analysis, leaders),
        ),
        ("rate", plot::rate_svg(analysis, leaders)),
    ] {
        match chart {
            Ok((svg, legend)) => {
                html.push_str(&svg);
                html.push_str("<p>");
                for (name, c) in legend {
                    let _ = write!(
                        html,
                        "<span class=\"swatch\" style=\"background:rgb({},{},{})\"></span>{}",
                        c.0,
                        c.1,
                        c.2,
                        escape(&name)
                    );
                }
                html.push_str("</p>");
            }
            Err(e) => {
                let _ = write!(
                    html,
                    "<p>({what} chart failed: {})</p>",
                    escape(&e.to_string())
                );
            }
        }
    }
    if let Some(f) = faults {
        html.push_str(&f.html());
    }

    html.push_str("<h2>Faults</h2><table><tr><th>fault</th><th>from (s)</th><th>to (s)</th><th>what</th></tr>");
    for w in &analysis.windows {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td></tr>",
            w.fault,
            w.start_s,
            w.end_s,
            escape(&w.description)
        );
    }
    html.push_str("</table>");

    // One section per checker, in the order they ran.
    for check in checks {
        // Convergence names its own verdicts (converged / divergent); skipped is said.
        let label = match (
            &check.skipped,
            check.report.get("verdict").and_then(|v| v.as_str()),
        ) {
            (Some(_), _) => "skipped".to_string(),
            (None, Some(v @ ("converged" | "divergent"))) => v.to_string(),
            _ => format!("{:?}", check.verdict).to_lowercase(),
        };
        let _ = write!(
            html,
            "<h2>Checker: {} — {}</h2><pre>{}</pre>",
            check.checker,
            label,
            escape(&check.text)
        );
        if let Some(fragment) = &check.fragment {
            html.push_str(fragment);
        }
        if let Some(page) = &check.html {
            let _ = write!(html, "<iframe srcdoc=\"{}\"></iframe>", escape(page));
        }
    }
    if checks.is_empty() {
        html.push_str("<h2>Checkers</h2><p>No checker ran: nothing was judged.</p>");
    }
    let files: String = checks
        .iter()
        .flat_map(|c| c.files.iter())
        .map(|(_, f)| format!("<code>{}</code>, ", escape(f)))
        .collect();
    let _ = writeln!(html, "<p>Files: <code>history.jsonl</code>, {files}<code>results.json</code>, <code>nodes/&lt;id&gt;.log</code>.</p></body></html>");
    html
}
