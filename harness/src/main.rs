//! The one `faultline` binary: a thin dispatcher over the workspace's crates.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "faultline", version, about = "Jepsen-style fault-injection test harness")]
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

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run(args) => harness::run(args),
        Command::Check(args) => checker::cli::run(args),
        Command::Node(args) => nodes::run(args),
    };
    std::process::exit(code);
}
