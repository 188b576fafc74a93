//! `faultline check`: check recorded histories and print a verdict.
//!
//! Exit status: 0 every history valid, 1 some invalid, 2 some unknown (none invalid), 3 bad
//! usage or bad input (one line on stderr naming file, line and problem).

use crate::formats::{self, Format};
use crate::report::{CheckReport, Verdict};
use crate::{check_file, CheckOptions, ModelKind};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
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
    /// Give up after SECS seconds per file; unfinished parts are reported `unknown`.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Print the reports as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML page of the results to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Stop at the first invalid part instead of reporting every invalid key.
    #[arg(long)]
    pub fail_fast: bool,
    /// Check the whole history as one object instead of one part per key.
    #[arg(long)]
    pub no_partition: bool,
    /// Write the (single, native JSONL) input history as Jepsen EDN to FILE, for Knossos/Elle.
    #[arg(long, value_name = "FILE")]
    pub export_edn: Option<PathBuf>,
}

#[derive(Serialize)]
struct JsonOutput<'a> {
    verdict: Option<Verdict>,
    reports: &'a [CheckReport],
    errors: &'a [String],
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
    let mut reports = Vec::new();
    let mut errors = Vec::new();
    for file in &args.files {
        match check_file(file, args.format, args.model, &opts) {
            Ok(report) => {
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
    let verdict = (!reports.is_empty()).then(|| {
        reports
            .iter()
            .fold(Verdict::Valid, |v, r| v.merge(r.verdict))
    });
    if args.json {
        let out = JsonOutput {
            verdict,
            reports: &reports,
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
        if let Err(e) = std::fs::write(path, crate::visualize::page(&reports)) {
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
