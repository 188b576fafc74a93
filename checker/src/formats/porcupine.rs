//! Jepsen's plain-text histories: `history.txt` in a Jepsen store (what people paste into
//! issues), and the `INFO  jepsen.util - ` log lines of Porcupine's etcd files
//! (`test_data/jepsen/etcd_NNN.log`).
//!
//! One event a line: `<process> <type> <f> <value>`, fields split on any whitespace (Jepsen
//! writes tabs; some of Porcupine's files use spaces), optionally after the
//! `INFO  jepsen.util - ` log prefix. The process is an integer or `:nemesis` (skipped);
//! the value is EDN (`nil`, `3`, `[1 2]`, jepsen.independent's `[k v]`, ...), and anything
//! after it on a completion (an error such as `:timed-out`) is ignored.
//!
//! - `:invoke :read nil`, `:invoke :write N`, `:invoke :cas [FROM TO]`, `:invoke :roll nil`
//! - `:ok :read V`, `:ok :write N`, `:ok :cas [F T]`
//! - `:fail ...` — definitely did not happen: left out, as Jepsen does
//! - `:info ...` — outcome unknown: may take effect any time after the call, or never
//!
//! Conventions ([`Flavor`]): Porcupine's etcd logs (`etcd-log`) read nil as the value nil
//! and a `:fail :read :timed-out` as a read that returned nothing; Jepsen's history.txt
//! (`jepsen-txt`) reads a nil read as "not recorded" (Knossos). Registers start at nil in
//! both. With the prefix, lines without it are other log output and are skipped; without
//! it, every non-blank line must be an event.

use super::edn::{apply_op, read_form, Flavor as EdnFlavor, Who};
use super::lines::{torn_warning, LineReader};
use super::{Budget, ReadError};
use crate::error::{excerpt, Error, LineError};
use crate::history::{History, HistoryBuilder};
use clojure_reader::edn::Edn;
use std::path::Path;

const MARKER: &str = "jepsen.util - ";

/// Which tool's conventions a text history follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Porcupine's etcd logs.
    EtcdLog,
    /// Jepsen's history.txt.
    Jepsen,
}

/// Whether a line looks like a text history event: `<int or :nemesis> :<type> :<f>`.
pub fn looks_like_text_event(line: &str) -> bool {
    let mut tokens = line.split_whitespace();
    let process = tokens.next().unwrap_or_default();
    let kind = tokens.next().unwrap_or_default();
    (process == ":nemesis" || process.parse::<u64>().is_ok())
        && [":invoke", ":ok", ":fail", ":info"].contains(&kind)
        && tokens.next().is_some_and(|f| f.starts_with(':'))
}

/// Reads a text history from a string (kept for callers holding text).
pub fn read_etcd_log(path: &Path, text: &str) -> Result<History, Error> {
    let mut builder = HistoryBuilder::new();
    let mut position = 0u64;
    for (i, raw) in text.lines().enumerate() {
        if let Some(event) = event_text(raw, Flavor::EtcdLog) {
            position += 1;
            parse_event(&mut builder, event, Flavor::EtcdLog, position, i + 1)
                .map_err(|(e, _)| e.in_file(path))?;
        }
    }
    builder.finish().map_err(|p| Error::history(path, p))
}

/// The event part of a line, or `None` for a line that is not an event (blank; or, in an
/// etcd log, other log output).
fn event_text(raw: &str, flavor: Flavor) -> Option<&str> {
    match raw.find(MARKER) {
        Some(at) => Some(&raw[at + MARKER.len()..]),
        None if flavor == Flavor::EtcdLog => None,
        None => Some(raw).filter(|l| !l.trim().is_empty()),
    }
}

/// Reads a text history file, streaming it.
pub(crate) fn read_file(
    path: &Path,
    flavor: Flavor,
    budget: &mut Budget,
) -> Result<History, ReadError> {
    let mut builder = HistoryBuilder::new();
    let mut reader = LineReader::open(path)?;
    let mut position = 0u64;
    let mut events = 0usize;
    let mut other_lines = 0usize;
    while let Some(line) = reader.next_line()? {
        budget.tick(line.number)?;
        let mut semantic = false;
        let parsed = line
            .text(path)
            .map_err(|_| LineError::new(line.number, "not valid UTF-8"))
            .and_then(|raw| match event_text(raw, flavor) {
                None => {
                    other_lines += usize::from(!raw.trim().is_empty());
                    Ok(())
                }
                Some(event) => {
                    position += 1;
                    events += 1;
                    parse_event(&mut builder, event, flavor, position, line.number).map_err(
                        |(e, rule)| {
                            semantic = rule;
                            e
                        },
                    )
                }
            });
        match parsed {
            Ok(()) => {}
            // A torn last line: it does not parse (an op that parses but breaks a rule stays
            // an error).
            Err(e) if !line.terminated && !semantic => {
                builder.warn(torn_warning(path, line.number, &e.problem));
                break;
            }
            Err(e) => return Err(e.in_file(path).into()),
        }
    }
    // Skipping every line would make "no events" out of a file we could not read at all.
    if events == 0 && other_lines > 0 {
        return Err(Error::history(
            path,
            format!("no `{MARKER}` event lines among {other_lines} lines: not an etcd log (try --format jepsen-txt)"),
        )
        .into());
    }
    builder
        .finish()
        .map_err(|p| ReadError::Bad(Error::history(path, p)))
}

fn parse_event(
    builder: &mut HistoryBuilder,
    body: &str,
    flavor: Flavor,
    position: u64,
    line: usize,
) -> Result<(), (LineError, bool)> {
    let syntax = |e: LineError| (e, false);
    let body = body.trim_start();
    let mut rest = body;
    let mut next_token = || {
        let t = rest.trim_start();
        let end = t.find(char::is_whitespace).unwrap_or(t.len());
        let (token, after) = t.split_at(end);
        rest = after;
        token
    };
    let (process, kind, f) = (next_token(), next_token(), next_token());
    if f.is_empty() {
        return Err(syntax(LineError::new(
            line,
            "truncated line: expected <process> <type> <f> <value>",
        )));
    }
    let value_text = rest.trim();
    let who = if process == ":nemesis" {
        Who::Nemesis
    } else {
        Who::Client(
            process
                .parse::<u64>()
                .map_err(|_| {
                    LineError::new(
                        line,
                        format!(
                            "expected a process (an integer or :nemesis), found {}",
                            excerpt(process)
                        ),
                    )
                })
                .map_err(syntax)?,
        )
    };
    let kind = kind
        .strip_prefix(':')
        .ok_or_else(|| {
            LineError::new(
                line,
                format!("expected a :type keyword, found {}", excerpt(kind)),
            )
        })
        .map_err(syntax)?;
    let f = f
        .strip_prefix(':')
        .ok_or_else(|| {
            LineError::new(
                line,
                format!("expected an :f keyword, found {}", excerpt(f)),
            )
        })
        .map_err(syntax)?;
    if matches!(who, Who::Nemesis) {
        return apply_op(
            builder,
            who,
            kind,
            f,
            None,
            &Edn::Nil,
            EdnFlavor::Jepsen,
            position,
            line,
        )
        .map_err(|e| (e, true));
    }
    if value_text.is_empty() {
        return Err(syntax(LineError::new(line, "truncated line: no value")));
    }
    let (value, after) = read_form(value_text, line).map_err(syntax)?;
    if (kind == "invoke" || kind == "ok") && !after.trim().is_empty() {
        return Err(syntax(LineError::new(
            line,
            format!("unexpected text after the value: {}", excerpt(after.trim())),
        )));
    }
    let flavor = match flavor {
        Flavor::EtcdLog => EdnFlavor::EtcdLog,
        Flavor::Jepsen => EdnFlavor::Jepsen,
    };
    apply_op(builder, who, kind, f, None, &value, flavor, position, line).map_err(|e| (e, true))
}
