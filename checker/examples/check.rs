//! `faultline check` without the rest of the workspace: the same `checker::cli` code, for
//! benchmarks (`/usr/bin/time -v`) and for trying the checker alone.
use clap::Parser;

#[derive(Parser)]
#[command(name = "check")]
struct Cli {
    #[command(flatten)]
    args: checker::cli::CheckArgs,
}

fn main() {
    std::process::exit(checker::cli::run(Cli::parse().args));
}
