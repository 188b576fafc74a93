//! A self-contained HTML page for check reports: no scripts or styles from the network, just
//! inline CSS and SVG. For each invalid part it draws the part's ops on one lane per process
//! (x = order of calls and returns), marks the longest linearization with its step numbers,
//! the op that breaks it in red and the other candidates in orange, and lists the steps with
//! the model state after each.

use crate::report::{CheckReport, InvalidPart, OpView, Verdict};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// How many invalid parts one report draws; the rest are listed by key.
const MAX_PARTS_DRAWN: usize = 10;

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 17px; margin-top: 28px; } h3 { font-size: 15px; }
.badge { padding: 2px 8px; border-radius: 4px; color: #fff; font-weight: bold; }
.valid { background: #2e7d32; } .invalid { background: #c62828; } .unknown { background: #ef6c00; }
table { border-collapse: collapse; margin: 8px 0; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; font-family: ui-monospace, monospace; font-size: 12px; }
tr.breaks td { background: #ffebee; font-weight: bold; }
.legend span { display: inline-block; margin-right: 14px; }
.sw { display: inline-block; width: 14px; height: 10px; margin-right: 4px; vertical-align: middle; }
.timeline { overflow-x: auto; border: 1px solid #eee; }
.muted { color: #777; }
"#;

/// Renders reports as one page.
pub fn page(reports: &[CheckReport]) -> String {
    let mut out = String::new();
    let overall = reports
        .iter()
        .fold(Verdict::Valid, |v, r| v.merge(r.verdict));
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>faultline check: {}</title><style>{STYLE}</style></head><body>",
        overall.as_str()
    );
    let _ = write!(
        out,
        "<h1>faultline check <span class=\"badge {0}\">{0}</span></h1>",
        overall.as_str()
    );
    for report in reports {
        report_section(&mut out, report);
    }
    // Inline (nothing is fetched): scroll each timeline so the breaking op is in view.
    out.push_str("<script>for (const t of document.querySelectorAll('.timeline')) { const b = t.querySelector('.breaks'); if (b) t.scrollLeft = Math.max(0, b.getBBox().x - t.clientWidth / 2); }</script>");
    out.push_str("</body></html>\n");
    out
}

fn report_section(out: &mut String, r: &CheckReport) {
    let verdict = r.verdict.as_str();
    let _ = write!(
        out,
        "<h2>{} <span class=\"badge {verdict}\">{verdict}</span></h2><p class=\"muted\">model {}, {} ops ({} info, {} failed), {} part(s){}, parsed in {:.1} ms, checked in {:.1} ms</p>",
        esc(&r.file),
        r.model.name(),
        r.ops,
        r.indefinite_ops,
        r.failed_ops,
        r.parts,
        if r.partitioned { " by key" } else { "" },
        r.parse_seconds * 1e3,
        r.check_seconds * 1e3
    );
    for part in r.invalid.iter().take(MAX_PARTS_DRAWN) {
        invalid_section(out, part);
    }
    if r.invalid.len() > MAX_PARTS_DRAWN {
        let rest: Vec<String> = r.invalid[MAX_PARTS_DRAWN..]
            .iter()
            .map(|p| esc(p.key.as_deref().unwrap_or("-")))
            .collect();
        let _ = write!(
            out,
            "<p>Also not linearizable: keys {}</p>",
            rest.join(", ")
        );
    }
    if !r.unknown.is_empty() {
        out.push_str("<h3>Parts without an answer</h3><ul>");
        for u in &r.unknown {
            let why = u.reason.describe();
            let _ = write!(
                out,
                "<li>{}: {} ops, unknown: {why}; at most {} linearized at once</li>",
                esc(u.key.as_deref().unwrap_or("whole history")),
                u.ops,
                u.deepest
            );
        }
        out.push_str("</ul>");
    }
    if r.skipped_parts > 0 {
        let _ = write!(
            out,
            "<p class=\"muted\">{} part(s) not finished: --fail-fast stopped at the first invalid part.</p>",
            r.skipped_parts
        );
    }
}

fn invalid_section(out: &mut String, part: &InvalidPart) {
    let name = part
        .key
        .as_ref()
        .map_or("the history".to_string(), |k| format!("key {}", esc(k)));
    let _ = write!(
        out,
        "<h3>{name}: not linearizable</h3><p>Op #{} <b>{}</b> (line {}) cannot be linearized: after the {} steps below, no order of the remaining ops reaches its return.</p>",
        part.blocking.id,
        esc(&part.blocking.description),
        part.blocking.call_line,
        part.linearization.len()
    );
    timeline_svg(out, part);
    out.push_str("<table><tr><th>step</th><th>op</th><th>lines</th><th>state after</th></tr>");
    let _ = write!(
        out,
        "<tr><td>0</td><td class=\"muted\">initial state</td><td></td><td>{}</td></tr>",
        esc(&part.initial_state)
    );
    for (i, step) in part.linearization.iter().enumerate() {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>#{} {}</td><td>{}</td><td>{}</td></tr>",
            i + 1,
            step.op.id,
            esc(&step.op.description),
            lines(&step.op),
            esc(&step.state)
        );
    }
    let _ = write!(
        out,
        "<tr class=\"breaks\"><td>✗</td><td>#{} {}</td><td>{}</td><td>cannot be linearized here</td></tr></table>",
        part.blocking.id,
        esc(&part.blocking.description),
        lines(&part.blocking)
    );
    let others: Vec<String> = part
        .pending
        .iter()
        .filter(|p| p.id != part.blocking.id)
        .map(|p| format!("#{} {}", p.id, esc(&p.description)))
        .collect();
    if !others.is_empty() {
        let _ = write!(
            out,
            "<p>Other ops that could have gone next, all tried: {}</p>",
            others.join("; ")
        );
    }
    if !part.overlapping.is_empty() {
        let ops: Vec<String> = part
            .overlapping
            .iter()
            .map(|p| {
                format!(
                    "<span class=\"muted\">{} ({}, line {})</span>",
                    esc(&p.description),
                    p.completion,
                    lines(p)
                )
            })
            .collect();
        let _ = write!(
            out,
            "<p>Failed and pending ops overlapping it (greyed in the timeline): {}</p>",
            ops.join("; ")
        );
    }
}

fn lines(op: &OpView) -> String {
    match op.ret_line {
        Some(r) if r != op.call_line => format!("{}–{}", op.call_line, r),
        _ => op.call_line.to_string(),
    }
}

/// One lane per process; x is the rank of each call/return position among the drawn ops,
/// so both clock-timed and file-ordered histories read evenly.
fn timeline_svg(out: &mut String, part: &InvalidPart) {
    let ops = &part.timeline;
    if ops.is_empty() {
        return;
    }
    let mut positions: Vec<u64> = ops
        .iter()
        .flat_map(|o| [Some(o.call), o.ret])
        .flatten()
        .collect();
    positions.sort_unstable();
    positions.dedup();
    let rank = |p: u64| positions.partition_point(|&x| x < p);
    let lanes: BTreeMap<u64, usize> = {
        let mut ps: Vec<u64> = ops.iter().map(|o| o.process).collect();
        ps.sort_unstable();
        ps.dedup();
        ps.into_iter().enumerate().map(|(i, p)| (p, i)).collect()
    };
    let step_of: BTreeMap<usize, usize> = part
        .linearization
        .iter()
        .enumerate()
        .map(|(i, s)| (s.op.id, i + 1))
        .collect();
    let pending: Vec<usize> = part.pending.iter().map(|p| p.id).collect();
    let (dx, lane_h, left) = (26.0, 26.0, 8.0);
    let width = left + dx * (positions.len() as f64 + 2.0);
    let height = lane_h * lanes.len() as f64 + 30.0;
    out.push_str("<div class=\"legend\"><span><i class=\"sw\" style=\"background:#66bb6a\"></i>in the longest linearization (step number)</span><span><i class=\"sw\" style=\"background:#e53935\"></i>cannot be linearized</span><span><i class=\"sw\" style=\"background:#ffa726\"></i>other candidates</span><span><i class=\"sw\" style=\"background:#bdbdbd\"></i>other ops</span><span>dashed: info / never completed</span><span><i class=\"sw\" style=\"background:#f5f5f5;border:1px dotted #999\"></i>failed (did not happen)</span></div>");
    // Lane names in their own column, so they stay in view when the lanes scroll.
    let _ = write!(
        out,
        "<div style=\"display:flex\"><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"52\" height=\"{height}\" font-family=\"monospace\" font-size=\"11\">"
    );
    for (process, lane) in &lanes {
        let y = 20.0 + lane_h * *lane as f64;
        let _ = write!(out, "<text x=\"4\" y=\"{}\">p{process}</text>", y + 14.0);
    }
    let _ = write!(
        out,
        "</svg><div class=\"timeline\"><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"monospace\" font-size=\"11\">"
    );
    for lane in lanes.values() {
        let y = 30.0 + lane_h * *lane as f64;
        let _ = write!(
            out,
            "<line x1=\"0\" y1=\"{y}\" x2=\"{width}\" y2=\"{y}\" stroke=\"#eee\"/>"
        );
    }
    for op in ops {
        let y = 20.0 + lane_h * lanes[&op.process] as f64;
        let x1 = left + dx * rank(op.call) as f64;
        let x2 = match op.ret {
            Some(r) => left + dx * rank(r) as f64 + dx * 0.8,
            None => width - 4.0,
        };
        let (fill, label) = if op.id == part.blocking.id {
            ("#e53935", "✗".to_string())
        } else if let Some(step) = step_of.get(&op.id) {
            ("#66bb6a", step.to_string())
        } else if op.completion == "fail" {
            ("#f5f5f5", "fail".to_string())
        } else if pending.contains(&op.id) {
            ("#ffa726", String::new())
        } else {
            ("#bdbdbd", String::new())
        };
        let dash = if op.completion == "fail" {
            " stroke=\"#999\" stroke-dasharray=\"1 2\""
        } else if op.ret.is_none() {
            " stroke=\"#555\" stroke-dasharray=\"4 3\" fill-opacity=\"0.5\""
        } else {
            ""
        };
        let class = if op.id == part.blocking.id {
            " class=\"breaks\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "<g{class}><title>#{} {} (line {}{})</title><rect x=\"{x1}\" y=\"{y}\" width=\"{}\" height=\"20\" rx=\"3\" fill=\"{fill}\"{dash}/><text x=\"{}\" y=\"{}\">{} {}</text></g>",
            op.id,
            esc(&op.description),
            op.call_line,
            op.ret_line.map_or(String::new(), |r| format!("–{r}")),
            (x2 - x1).max(6.0),
            x1 + 3.0,
            y + 14.0,
            esc(&label),
            esc(&fit(&short(&op.description), (x2 - x1).max(6.0)))
        );
    }
    out.push_str("</svg></div></div>");
}

/// Cuts a label to about what fits in `width` pixels of 11px monospace (the full text is in
/// the tooltip).
fn fit(label: &str, width: f64) -> String {
    let max = ((width / 6.6) as usize).saturating_sub(2).max(1);
    if label.chars().count() <= max {
        label.to_string()
    } else {
        label
            .chars()
            .take(max.saturating_sub(1))
            .chain(['…'])
            .collect()
    }
}

/// The description without the process prefix (the lane says it).
fn short(description: &str) -> String {
    description
        .split_once(' ')
        .map_or(description, |(_, rest)| rest)
        .to_string()
}
