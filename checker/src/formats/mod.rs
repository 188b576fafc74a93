//! History file formats: detection and loading.
//!
//! - `jsonl` — the native format (see [`crate::history::Event`]).
//! - `edn` — Jepsen/Knossos `history.edn` (a vector or list of op maps, or one map a line);
//!   also the exporter to it.
//! - `porcupine` — Jepsen's plain-text histories (`history.txt`, and the
//!   `INFO  jepsen.util - ` log lines of Porcupine's etcd files).
//!
//! Every reader streams its file ([`lines::LineReader`]: one line in memory at a time, at
//! most [`lines::MAX_LINE`] bytes), bounds the nesting it accepts, checks the deadline as it
//! goes, and drops a torn last line (one with no newline after it that does not parse)
//! with a warning — the crash case a streamed history exists for.

pub mod edn;
pub mod jsonl;
pub mod lines;
pub mod porcupine;

use crate::error::Error;
use crate::history::History;
use serde::Serialize;
use std::io::Read;
use std::path::Path;
use std::time::Instant;

/// A history file format, chosen with `--format` or detected from the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Native JSON Lines, one event a line (written by `faultline run`).
    Jsonl,
    /// Jepsen/Knossos history EDN.
    Edn,
    /// Porcupine's kv test files: one EDN map a line with :get/:put/:append.
    PorcupineKv,
    /// Porcupine's Jepsen etcd logs: `INFO  jepsen.util - P :type :f value`.
    EtcdLog,
    /// Jepsen's plain-text history (`history.txt`): `process type f value`, tab- or
    /// space-separated, with or without the `INFO  jepsen.util - ` prefix.
    JepsenTxt,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Edn => "edn",
            Format::PorcupineKv => "porcupine-kv",
            Format::EtcdLog => "etcd-log",
            Format::JepsenTxt => "jepsen-txt",
        }
    }

    /// Guesses the format from the first bytes of a file.
    pub fn detect(head: &[u8]) -> Option<Format> {
        let text = String::from_utf8_lossy(head);
        let first = first_meaningful_line(&text)?;
        if first.contains("jepsen.util - ") {
            return Some(Format::EtcdLog);
        }
        if porcupine::looks_like_text_event(first) {
            return Some(Format::JepsenTxt);
        }
        let body = first.trim_start_matches(['[', '(']).trim_start();
        if let Some(rest) = body.strip_prefix('{') {
            let rest = rest.trim_start();
            if rest.starts_with('"') || rest.starts_with('}') {
                return Some(Format::Jsonl);
            }
            if rest.starts_with(':') {
                let kv = [":f :get", ":f :put", ":f :append"];
                let is_kv = first.starts_with('{') && kv.iter().any(|f| first.contains(f));
                return Some(if is_kv {
                    Format::PorcupineKv
                } else {
                    Format::Edn
                });
            }
        }
        if first.starts_with('[') || first.starts_with('(') {
            return Some(Format::Edn);
        }
        None
    }
}

fn first_meaningful_line(text: &str) -> Option<&str> {
    text.lines()
        .map(str::trim_start)
        .find(|l| !l.is_empty() && !l.starts_with(';'))
}

/// The one line for a transactional history (Elle's list-append / rw-register shape).
pub const TRANSACTIONAL: &str = "a transactional op (a :txn, or a read whose value is a list of micro-ops like [[:r :x nil] [:append :y 3]]): this is an Elle list-append / rw-register history, not a register or kv history; check it with a transactional checker (Elle)";

/// Where reading stands against the deadline of the whole command.
pub(crate) struct Budget {
    deadline: Option<Instant>,
    count: u32,
}

impl Budget {
    pub(crate) fn until(deadline: Option<Instant>) -> Self {
        Budget { deadline, count: 0 }
    }

    /// Called once per line or form; looks at the clock every 1024 calls.
    pub(crate) fn tick(&mut self, line: usize) -> Result<(), ReadError> {
        self.count = self.count.wrapping_add(1);
        if self.count.is_multiple_of(1024) && self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(ReadError::OutOfTime(line));
        }
        Ok(())
    }
}

/// Why reading stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    Bad(Error),
    /// The deadline passed at this line.
    OutOfTime(usize),
}

impl From<Error> for ReadError {
    fn from(e: Error) -> Self {
        ReadError::Bad(e)
    }
}

impl ReadError {
    /// For readers called without a deadline, where running out cannot happen.
    pub(crate) fn into_error(self, path: &Path) -> Error {
        match self {
            ReadError::Bad(e) => e,
            ReadError::OutOfTime(line) => Error::input(path, line, "the timeout ran out"),
        }
    }
}

/// What reading a file gave.
pub enum Loaded {
    /// The history, and its format (`None` for a file with no events at all).
    History(History, Option<Format>),
    /// The deadline passed while reading, at this line.
    OutOfTime { format: Option<Format>, line: usize },
}

/// Reads a whole history file in the given format, or the detected one. A file with no
/// events (empty, blank, comments only) is an empty history in the native format.
pub fn load(path: &Path, format: Option<Format>) -> Result<(History, Format), Error> {
    match load_until(path, format, None)? {
        Loaded::History(h, f) => Ok((h, f.unwrap_or(Format::Jsonl))),
        Loaded::OutOfTime { line, .. } => Err(Error::input(path, line, "the timeout ran out")),
    }
}

/// [`load`], giving up at `deadline`.
pub fn load_until(
    path: &Path,
    format: Option<Format>,
    deadline: Option<Instant>,
) -> Result<Loaded, Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let format = match format {
        Some(f) => f,
        None => {
            let mut head = Vec::with_capacity(4096);
            let file = std::fs::File::open(path).map_err(io)?;
            let n = file.take(4096).read_to_end(&mut head).map_err(io)?;
            match Format::detect(&head) {
                Some(f) => f,
                // Nothing but blanks and comments in a short file: no events, nothing to
                // linearize — valid, as Porcupine judges its own empty etcd_095.log.
                None if n < 4096 && first_meaningful_line(&String::from_utf8_lossy(&head)).is_none() => {
                    return Ok(Loaded::History(History::default(), None))
                }
                None => {
                    return Err(Error::history(
                        path,
                        "cannot tell the history format; pass --format jsonl|edn|porcupine-kv|etcd-log|jepsen-txt",
                    ))
                }
            }
        }
    };
    let mut budget = Budget::until(deadline);
    let read = match format {
        Format::Jsonl => jsonl::read_history_within(path, &mut budget),
        Format::Edn => edn::read_file(path, edn::Flavor::Jepsen, &mut budget),
        Format::PorcupineKv => edn::read_file(path, edn::Flavor::PorcupineKv, &mut budget),
        Format::EtcdLog => porcupine::read_file(path, porcupine::Flavor::EtcdLog, &mut budget),
        Format::JepsenTxt => porcupine::read_file(path, porcupine::Flavor::Jepsen, &mut budget),
    };
    match read {
        Ok(history) => Ok(Loaded::History(history, Some(format))),
        Err(ReadError::Bad(e)) => Err(e),
        Err(ReadError::OutOfTime(line)) => Ok(Loaded::OutOfTime {
            format: Some(format),
            line,
        }),
    }
}
