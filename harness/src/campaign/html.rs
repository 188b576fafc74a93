//! `index.html`: the campaign on one self-contained page (no scripts, no external
//! files) that a person reads in a minute — the matrix coloured by outcome (rows: group ·
//! mode · workload · bug; columns: nemesis; one square per seed linking that run's
//! report.html), counts per row and column, and for every cell that did not come out as
//! expected what happened and the one command that reruns it.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::summary::{CellRecord, Counts, Status, Summary};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Every href the page links to a run's file uses this, so tests can find them.
fn href(path: &str) -> String {
    esc(&path
        .split('/')
        .map(|seg| {
            seg.chars()
                .map(|c| match c {
                    ' ' => "%20".to_string(),
                    '#' => "%23".to_string(),
                    '?' => "%3F".to_string(),
                    '%' => "%25".to_string(),
                    c => c.to_string(),
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/"))
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}
th{background:#f4f4f4;text-align:left}td.n{text-align:right;white-space:nowrap}
a.c{display:inline-block;min-width:1.6em;height:1.6em;margin:1px;text-align:center;line-height:1.6em;font-size:11px;color:#000;text-decoration:none;border-radius:3px}
.expected{background:#7ccf7c}.unexpected{background:#e55353;color:#fff!important}.unknown{background:#f2c14e}
.error{background:#a070d0;color:#fff!important}.interrupted{background:#c9a0dc}.not-run{background:#ddd}
.verdict{font-size:1.3em;font-weight:bold;padding:.4em .8em;display:inline-block;border-radius:4px}
code{background:#f4f4f4;padding:2px 4px;display:inline-block;word-break:break-all}
.legend span{padding:2px 8px;margin-right:6px;border-radius:3px}";

fn counts_text(c: &Counts) -> String {
    let mut parts = vec![format!("{}/{} as expected", c.expected, c.total)];
    for (n, what) in [
        (c.unexpected, "unexpected"),
        (c.unknown, "unknown"),
        (c.error, "error"),
        (c.interrupted, "interrupted"),
        (c.not_run, "not run"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    parts.join(", ")
}

fn cell_link(r: &CellRecord) -> String {
    let title = format!(
        "{}: {} (verdict {}, expected {}){}",
        r.id,
        r.status.name(),
        r.verdict.as_deref().unwrap_or("none"),
        r.expect.name(),
        r.explanation
            .as_deref()
            .map(|e| format!(" — {e}"))
            .unwrap_or_default()
    );
    let target = r.report.as_ref().or(r.log.as_ref());
    match target {
        Some(t) => format!(
            "<a class=\"c {}\" href=\"{}\" title=\"{}\">{}</a>",
            r.status.name(),
            href(t),
            esc(&title),
            r.settings.seed
        ),
        None => format!(
            "<a class=\"c {}\" title=\"{}\">{}</a>",
            r.status.name(),
            esc(&title),
            r.settings.seed
        ),
    }
}

/// Renders the page; links are relative to the folder holding the summary.
pub fn render(summary: &Summary) -> String {
    let mut rows: Vec<String> = Vec::new();
    let mut cols: Vec<String> = Vec::new();
    let mut grid: BTreeMap<(usize, usize), Vec<&CellRecord>> = BTreeMap::new();
    for r in &summary.cells {
        let row = r.settings.row();
        let col = r.settings.nemesis.clone();
        let ri = rows.iter().position(|x| *x == row).unwrap_or_else(|| {
            rows.push(row);
            rows.len() - 1
        });
        let ci = cols.iter().position(|x| *x == col).unwrap_or_else(|| {
            cols.push(col);
            cols.len() - 1
        });
        grid.entry((ri, ci)).or_default().push(r);
    }

    let c = &summary.counts;
    let (headline, class) = match summary.exit_code {
        0 => ("PASS: every cell as expected", "expected"),
        1 => ("FAIL: unexpected verdicts", "unexpected"),
        2 => ("INCOMPLETE: unknown or not-run cells", "unknown"),
        4 => ("INTERRUPTED", "interrupted"),
        _ => ("ERROR: some runs failed", "error"),
    };
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>faultline campaign {name}</title><style>{STYLE}</style></head><body>\
<h1>faultline campaign {name}</h1><div class=\"verdict {class}\">{headline} (exit {code})</div>\
<p>{counts}. Started {started}, {wall:.0} s wall, --jobs {jobs}{budget}; shards {shards}; file <code>{file}</code>.{desc}</p>",
        name = esc(&summary.campaign.name),
        code = summary.exit_code,
        counts = esc(&counts_text(c)),
        started = esc(&summary.started_at),
        wall = summary.wall_time_s,
        jobs = summary.jobs,
        budget = summary
            .budget_s
            .map(|b| format!(", --budget {b:.0} s"))
            .unwrap_or_default(),
        shards = esc(
            &summary
                .shards
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        file = esc(&summary.campaign.file),
        desc = summary
            .campaign
            .description
            .as_deref()
            .map(|d| format!(" {}", esc(d)))
            .unwrap_or_default(),
    );
    if let Some(i) = &summary.interrupted {
        let _ = write!(h, "<p><b>Interrupted:</b> {}</p>", esc(i));
    }
    h.push_str("<p class=\"legend\">");
    for s in Status::ALL {
        let _ = write!(h, "<span class=\"{0}\">{0}</span>", s.name());
    }
    h.push_str("— each square is one seed (its number), linking that run's report.html.</p>");

    h.push_str("<table><tr><th>group · mode · workload · bug · expectation</th>");
    for col in &cols {
        let _ = write!(h, "<th>{}</th>", esc(col));
    }
    h.push_str("<th>row</th></tr>");
    for (ri, row) in rows.iter().enumerate() {
        let _ = write!(h, "<tr><th>{}</th>", esc(row));
        let mut row_cells = Vec::new();
        for ci in 0..cols.len() {
            h.push_str("<td>");
            if let Some(cells) = grid.get(&(ri, ci)) {
                for r in cells {
                    h.push_str(&cell_link(r));
                    row_cells.push(*r);
                }
            }
            h.push_str("</td>");
        }
        let _ = write!(
            h,
            "<td class=\"n\">{}</td></tr>",
            esc(&counts_text(&Counts::of(row_cells)))
        );
    }
    h.push_str("<tr><th>column</th>");
    for ci in 0..cols.len() {
        let col_cells = grid
            .iter()
            .filter(|((_, c), _)| *c == ci)
            .flat_map(|(_, v)| v.iter().copied());
        let _ = write!(
            h,
            "<td class=\"n\">{}</td>",
            esc(&counts_text(&Counts::of(col_cells)))
        );
    }
    let _ = write!(
        h,
        "<td class=\"n\">{}</td></tr></table>",
        esc(&counts_text(c))
    );

    let odd: Vec<&CellRecord> = summary
        .cells
        .iter()
        .filter(|r| r.status != Status::Expected && r.status != Status::NotRun)
        .collect();
    if odd.is_empty() {
        h.push_str("<h2>Every cell that ran came out as expected</h2>");
    } else {
        let _ = write!(h, "<h2>{} cells not as expected</h2><table><tr><th>cell</th><th>outcome</th><th>what happened</th><th>rerun</th><th>files</th></tr>", odd.len());
        for r in odd {
            let mut files = Vec::new();
            if let Some(p) = &r.report {
                files.push(format!("<a href=\"{}\">report</a>", href(p)));
            }
            // `ops` is set exactly when the run's results.json was read.
            if let (Some(p), Some(_)) = (&r.results_dir, &r.ops) {
                files.push(format!(
                    "<a href=\"{}/results.json\">results.json</a>",
                    href(p)
                ));
            }
            if let Some(p) = &r.log {
                files.push(format!("<a href=\"{}\">log</a>", href(p)));
            }
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"{}\">{} (verdict {}, expected {}, exit {})</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                esc(&r.id),
                r.status.name(),
                r.status.name(),
                esc(r.verdict.as_deref().unwrap_or("none")),
                r.expect.name(),
                r.exit_code.map_or("-".into(), |c| c.to_string()),
                esc(r.explanation.as_deref().unwrap_or("")),
                esc(&r.command),
                files.join(" · ")
            );
        }
        h.push_str("</table>");
    }
    if c.not_run > 0 {
        let _ = write!(
            h,
            "<p>{} cells were not run ({}); rerun the campaign with <code>--resume</code> to run only those.</p>",
            c.not_run,
            esc(summary
                .cells
                .iter()
                .find_map(|r| r.not_run_reason.as_deref())
                .unwrap_or("-"))
        );
    }
    h.push_str("</body></html>\n");
    h
}
