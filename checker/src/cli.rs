//! `faultline check`: check recorded histories and print a verdict.
//!
//! Exit status: 0 every history valid, 1 some invalid, 2 some unknown (none invalid), 3 bad
//! usage or bad input (one line on stderr naming file, line and problem).
//!
//! A snapshots file (JSON Lines of `snapshot::Snapshot`, recognised by its first line when
//! neither --model nor --format is given) is judged by the snapshot checker instead: a
//! consistent snapshot counts as valid, an inconsistent one as invalid, an incomplete one
//! as unknown.

use crate::formats::{self, Format};
use crate::history::Value;
use crate::report::{CheckReport, Verdict};
use crate::snapshot::{self, Outcome, SnapshotsReport};
use crate::{check_file_with, CheckOptions, ModelKind, Settings};
use clap::Args;
use serde::Serialize;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Exit status for bad usage or bad input.
pub const EXIT_BAD_INPUT: i32 = 3;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// History files to check (format detected from the content unless --format is given).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Model to check against [default: kv for get/put/append, multi-register when ops
    /// carry keys, else cas-register].
    #[arg(long, value_enum)]
    pub model: Option<ModelKind>,
    /// History format [default: detected].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Give up after SECS seconds per file, reading included; unfinished parts are
    /// reported `unknown`.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// What every register holds before its first write: `nil`, an integer, or a string
    /// [default: the convention of the format's source — nil for jsonl, Jepsen EDN,
    /// jepsen-txt and etcd-log; Knossos's own tests use 0].
    #[arg(long, value_name = "VALUE", value_parser = parse_initial)]
    pub initial: Option<Value>,
    /// Memory the search may use across all parts, e.g. 512MiB (units KiB, MiB, GiB);
    /// past it a part answers `unknown` [default: FAULTLINE_MEMO_LIMIT_MB, else 2GiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory_limit: Option<usize>,
    /// Print the reports as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML page of the results to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Stop at the first invalid part instead of reporting every invalid key.
    #[arg(long)]
    pub fail_fast: bool,
    /// Do not partition by key; the checker still splits the history into parts of
    /// independent ops as the model says they commute (ops on different keys).
    #[arg(long)]
    pub no_partition: bool,
    /// With --no-partition: one search over the whole history, no split at all.
    #[arg(long, requires = "no_partition")]
    pub single_search: bool,
    /// Which linearizability search runs on each part: `wgl` (depth first), `frontier`
    /// (configuration sets), or `both` interleaved, first answer wins (the default).
    #[arg(long, value_enum, value_name = "SEARCH")]
    pub search: Option<crate::scheduler::Algorithm>,
    /// Write the (single, native JSONL) input history as Jepsen EDN to FILE, for Knossos/Elle.
    #[arg(long, value_name = "FILE")]
    pub export_edn: Option<PathBuf>,
}

/// `--initial`: `nil`, an integer, a JSON string (`"a b"`), or any other word as a string.
pub fn parse_initial(s: &str) -> Result<Value, String> {
    let s = s.trim();
    if s == "nil" || s == "null" {
        return Ok(Value::Nil);
    }
    if let Ok(i) = s.parse::<i64>() {
        return Ok(Value::Int(i));
    }
    if s.starts_with('"') {
        return serde_json::from_str::<String>(s)
            .map(|t| Value::Str(t.into()))
            .map_err(|e| format!("not a JSON string: {e}"));
    }
    if s.is_empty() {
        return Err("give nil, an integer or a string".to_string());
    }
    Ok(Value::Str(s.into()))
}

/// `--memory-limit`: a number with a unit KiB, MiB or GiB (also K/M/G, KB/MB/GB as
/// binary units).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 512MiB"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "kib" | "k" | "kb" => 10,
        "mib" | "m" | "mb" => 20,
        "gib" | "g" | "gb" => 30,
        _ => return Err(format!("{s:?} needs a unit: KiB, MiB or GiB (e.g. 512MiB)")),
    };
    let bytes = number * (1u64 << shift) as f64;
    if !(bytes >= 1.0 && bytes < usize::MAX as f64) {
        return Err(format!("{s:?} is not a usable size"));
    }
    Ok(bytes as usize)
}

#[derive(Serialize)]
struct JsonOutput<'a> {
    verdict: Option<Verdict>,
    reports: &'a [CheckReport],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    snapshots: &'a [SnapshotsFile],
    errors: &'a [String],
}

#[derive(Serialize)]
struct SnapshotsFile {
    file: String,
    #[serde(flatten)]
    report: SnapshotsReport,
}

/// Whether the file's first non-blank line is a snapshot object (it has `initiator` and
/// `checkpoints`, which no history event has). Only that line is read.
fn is_snapshots_file(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let first = std::io::BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .find(|l| !l.trim().is_empty());
    first
        .and_then(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .is_some_and(|v| v.get("initiator").is_some() && v.get("checkpoints").is_some())
}

fn check_snapshots_file(path: &Path) -> Result<SnapshotsReport, crate::Error> {
    let snapshots = snapshot::read_snapshots(path)?;
    snapshot::check_snapshots(&snapshots).map_err(|p| crate::Error::history(path, p))
}

fn snapshot_verdict(outcome: Outcome) -> Verdict {
    match outcome {
        Outcome::Consistent => Verdict::Valid,
        Outcome::Inconsistent => Verdict::Invalid,
        Outcome::Incomplete => Verdict::Unknown,
    }
}

/// Runs the command; returns the process exit code.
pub fn run(args: CheckArgs) -> i32 {
    let timeout = match args.timeout {
        None => None,
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => {
            eprintln!("faultline check: --timeout must be a positive number of seconds, not {s}");
            return EXIT_BAD_INPUT;
        }
    };
    if let Some(out) = &args.export_edn {
        return export_edn(&args, out);
    }
    let opts = CheckOptions {
        timeout,
        fail_fast: args.fail_fast,
        partition: !args.no_partition,
    };
    let settings = Settings {
        initial: args.initial.clone(),
        memory_limit: args.memory_limit,
        single_search: args.single_search,
        search: args.search,
    };
    let mut reports = Vec::new();
    let mut snapshot_files = Vec::new();
    let mut errors = Vec::new();
    for file in &args.files {
        if args.model.is_none() && args.format.is_none() && is_snapshots_file(file) {
            match check_snapshots_file(file) {
                Ok(report) => {
                    if !args.json {
                        print!("{}: {}", file.display(), report.to_text());
                    }
                    snapshot_files.push(SnapshotsFile {
                        file: file.display().to_string(),
                        report,
                    });
                }
                Err(e) => {
                    eprintln!("faultline check: {e}");
                    errors.push(e.to_string());
                }
            }
            continue;
        }
        match check_file_with(file, args.format, args.model, &opts, &settings) {
            Ok(report) => {
                for w in &report.warnings {
                    eprintln!("faultline check: warning: {w}");
                }
                if !args.json {
                    print!("{}", report.to_text());
                }
                reports.push(report);
            }
            Err(e) => {
                eprintln!("faultline check: {e}");
                errors.push(e.to_string());
            }
        }
    }
    let verdict = (!reports.is_empty() || !snapshot_files.is_empty()).then(|| {
        let v = reports
            .iter()
            .fold(Verdict::Valid, |v, r| v.merge(r.verdict));
        snapshot_files
            .iter()
            .fold(v, |v, s| v.merge(snapshot_verdict(s.report.outcome())))
    });
    if args.json {
        let out = JsonOutput {
            verdict,
            reports: &reports,
            snapshots: &snapshot_files,
            errors: &errors,
        };
        match serde_json::to_string_pretty(&out) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("faultline check: cannot write JSON: {e}");
                return EXIT_BAD_INPUT;
            }
        }
    }
    if let Some(path) = &args.html {
        let fragments: String = snapshot_files
            .iter()
            .map(|s| s.report.to_html_fragment())
            .collect();
        let page = if reports.is_empty() {
            // Only snapshots: the history page's overall badge would say nothing true.
            format!("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>faultline check: snapshots</title></head><body style=\"font:14px system-ui,sans-serif;margin:24px\">{fragments}</body></html>\n")
        } else {
            let mut page = crate::visualize::page(&reports);
            let at = page.rfind("</body>").unwrap_or(page.len());
            page.insert_str(at, &fragments);
            page
        };
        if let Err(e) = std::fs::write(path, page) {
            eprintln!("faultline check: {}: {e}", path.display());
            return EXIT_BAD_INPUT;
        }
    }
    if !errors.is_empty() {
        EXIT_BAD_INPUT
    } else {
        verdict.map_or(EXIT_BAD_INPUT, Verdict::exit_code)
    }
}

fn export_edn(args: &CheckArgs, out: &PathBuf) -> i32 {
    let [file] = args.files.as_slice() else {
        eprintln!("faultline check: --export-edn takes exactly one input file");
        return EXIT_BAD_INPUT;
    };
    if args.format.is_some_and(|f| f != Format::Jsonl) {
        eprintln!("faultline check: --export-edn reads the native jsonl format only");
        return EXIT_BAD_INPUT;
    }
    // Validate the history first: an export of a malformed history would hide the problem.
    if let Err(e) = formats::load(file, Some(Format::Jsonl)) {
        eprintln!("faultline check: {e}");
        return EXIT_BAD_INPUT;
    }
    let written = formats::jsonl::read_events(file)
        .map(|events| formats::edn::export(&events))
        .and_then(|text| {
            std::fs::write(out, text).map_err(|source| crate::Error::Io {
                path: out.clone(),
                source,
            })
        });
    match written {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("faultline check: {e}");
            EXIT_BAD_INPUT
        }
    }
}
