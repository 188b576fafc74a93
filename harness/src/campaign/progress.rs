//! The campaign's stderr: one line per finished cell, and a live line (cells done /
//! running / left, unexpected so far, budget left) — redrawn in place on a terminal,
//! printed every 30 s otherwise (CI logs), so a long campaign never looks hung.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::summary::{CellRecord, Status};

pub struct Progress {
    total: usize,
    done: usize,
    unexpected: usize,
    not_passing: usize,
    tty: bool,
    live_shown: bool,
    last_plain: Option<Instant>,
    start: Instant,
}

impl Progress {
    pub fn new(total: usize) -> Self {
        Self {
            total,
            done: 0,
            unexpected: 0,
            not_passing: 0,
            tty: std::io::stderr().is_terminal(),
            live_shown: false,
            last_plain: None,
            start: Instant::now(),
        }
    }

    fn count(&mut self, r: &CellRecord) {
        self.done += 1;
        if r.status == Status::Unexpected {
            self.unexpected += 1;
        }
        if r.status != Status::Expected {
            self.not_passing += 1;
        }
    }

    pub fn clear_live(&mut self) {
        if self.live_shown {
            eprint!("\r\x1b[2K");
            self.live_shown = false;
        }
    }

    pub fn note(&mut self, line: &str) {
        self.clear_live();
        eprintln!("{line}");
    }

    pub fn resumed(&mut self, r: &CellRecord) {
        self.count(r);
        self.note(&format!(
            "[{:>w$}/{}] {:<11} {}  (resumed: kept from the earlier run)",
            self.done,
            self.total,
            r.status.name(),
            r.id,
            w = digits(self.total)
        ));
    }

    pub fn finished(&mut self, r: &CellRecord) {
        self.count(r);
        let verdict = r.verdict.as_deref().unwrap_or("-");
        let mut line = format!(
            "[{:>w$}/{}] {:<11} {}  {verdict} (expected {}), exit {}, {:.1} s",
            self.done,
            self.total,
            r.status.name(),
            r.id,
            r.expect.name(),
            r.exit_code.map_or("-".into(), |c| c.to_string()),
            r.wall_time_s.unwrap_or(0.0),
            w = digits(self.total)
        );
        if r.status != Status::Expected {
            if let Some(e) = &r.explanation {
                line.push_str(&format!("\n      {e}"));
            }
            if let Some(dir) = &r.results_dir {
                line.push_str(&format!("\n      results: {dir}"));
            } else if let Some(log) = &r.log {
                line.push_str(&format!("\n      log: {log}"));
            }
            line.push_str(&format!("\n      rerun: {}", r.command));
        }
        self.note(&line);
    }

    /// The live line; `left` counts cells not yet started.
    pub fn live(&mut self, running: usize, left: usize, budget_left: Option<Duration>) {
        let budget = match budget_left {
            Some(b) => format!(
                "; budget left {}",
                humantime::format_duration(Duration::from_secs(b.as_secs()))
            ),
            None => String::new(),
        };
        let line = format!(
            "campaign: {}/{} done, {running} running, {left} left; {} unexpected, {} not passing so far; {} elapsed{budget}",
            self.done,
            self.total,
            self.unexpected,
            self.not_passing,
            humantime::format_duration(Duration::from_secs(self.start.elapsed().as_secs())),
        );
        if self.tty {
            eprint!("\r\x1b[2K{line}");
            let _ = std::io::stderr().flush();
            self.live_shown = true;
        } else if self
            .last_plain
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(30))
        {
            eprintln!("{line}");
            self.last_plain = Some(Instant::now());
        }
    }
}

fn digits(n: usize) -> usize {
    n.to_string().len()
}
