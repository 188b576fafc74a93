//! History file formats: detection and loading.
//!
//! - `jsonl` — the native format (see [`crate::history::Event`]).
//! - `edn` — Jepsen/Knossos `history.edn` (a vector or list of op maps, or one map a line);
//!   also the exporter to it.
//! - `porcupine` — Porcupine's kv `.txt` files and its Jepsen etcd `.log` files.

pub mod edn;
pub mod jsonl;
pub mod porcupine;

use crate::error::Error;
use crate::history::History;
use serde::Serialize;
use std::io::Read;
use std::path::Path;

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
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Edn => "edn",
            Format::PorcupineKv => "porcupine-kv",
            Format::EtcdLog => "etcd-log",
        }
    }

    /// Guesses the format from the first bytes of a file.
    pub fn detect(head: &[u8]) -> Option<Format> {
        let text = String::from_utf8_lossy(head);
        let first = text
            .lines()
            .map(str::trim_start)
            .find(|l| !l.is_empty() && !l.starts_with(';'))?;
        if first.contains("jepsen.util - ") {
            return Some(Format::EtcdLog);
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

/// Reads a whole history file in the given format, or the detected one.
pub fn load(path: &Path, format: Option<Format>) -> Result<(History, Format), Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let format = match format {
        Some(f) => f,
        None => {
            let mut head = vec![0u8; 4096];
            let mut file = std::fs::File::open(path).map_err(io)?;
            let n = file.read(&mut head).map_err(io)?;
            head.truncate(n);
            Format::detect(&head).ok_or_else(|| {
                Error::history(
                    path,
                    if head.iter().all(u8::is_ascii_whitespace) {
                        "empty history: the file has no events".to_string()
                    } else {
                        "cannot tell the history format; pass --format jsonl|edn|porcupine-kv|etcd-log"
                            .to_string()
                    },
                )
            })?
        }
    };
    let history = match format {
        Format::Jsonl => jsonl::read_history(path)?,
        Format::Edn => edn::read_history(path, &read_text(path)?, edn::Flavor::Jepsen)?,
        Format::PorcupineKv => {
            edn::read_history(path, &read_text(path)?, edn::Flavor::PorcupineKv)?
        }
        Format::EtcdLog => porcupine::read_etcd_log(path, &read_text(path)?)?,
    };
    Ok((history, format))
}

pub(crate) fn read_text(path: &Path) -> Result<String, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        Error::input(path, line, "not valid UTF-8")
    })
}
