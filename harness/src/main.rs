//! The one `faultline` binary: a thin dispatcher over the workspace's crates.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "faultline",
    version,
    about = "Jepsen-style fault-injection test harness"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a cluster, run clients under a nemesis, and check the history.
    Run(harness::RunArgs),
    /// Check recorded histories for linearizability.
    Check(checker::cli::CheckArgs),
    /// Run one replica node.
    Node(nodes::NodeArgs),
}

/// Exit code for bad usage (0–2 are verdicts).
const EXIT_USAGE: i32 = 3;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help / --version: print as clap formats it, exit 0.
            let _ = e.print();
            std::process::exit(0);
        }
        Err(e) => {
            // One line naming the problem; clap's usage block would hide it.
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("bad usage");
            eprintln!(
                "faultline: {} (see --help)",
                first.trim_start_matches("error: ")
            );
            std::process::exit(EXIT_USAGE);
        }
    };
    let code = match cli.command {
        Command::Run(args) => harness::run(args),
        Command::Check(args) => checker::cli::run(args),
        Command::Node(args) => nodes::run(args),
    };
    std::process::exit(code);
}
