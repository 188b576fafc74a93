//! `faultline check`: check recorded histories and print a verdict.

use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// History files to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Runs the command; returns the process exit code.
pub fn run(args: CheckArgs) -> i32 {
    eprintln!("faultline check: not built yet ({} files)", args.files.len());
    3
}
