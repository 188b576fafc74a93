//! The one `faultline` binary: a thin dispatcher over the workspace's crates.

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: in a leaderless node under the cluster bench,
/// malloc/free took ~12% of the CPU (perf), and with mimalloc node CPU per op fell ~15%
/// (nodes/README.md, "Leaderless: the allocator and the load generator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Check recorded histories for linearizability, or bank snapshots for consistency; a
    /// results folder of `faultline run` stands for its snapshots.jsonl (bank) or history.jsonl.
    Check(checker::cli::CheckArgs),
    /// Run one replica node.
    Node(nodes::NodeArgs),
    /// Compare replication modes under role-targeted faults (one `run` per mode ×
    /// scenario × seed), side by side.
    Compare(harness::compare::CompareArgs),
    /// Run a campaign file's matrix of runs, each its own `faultline run`; write
    /// summary.json, junit.xml and index.html (`campaign merge` combines shards).
    Campaign(harness::campaign::CampaignArgs),
}

/// Exit code for bad usage (0–2 are verdicts).
const EXIT_USAGE: i32 = 3;

/// The file a results folder is checked by: a bank run's `snapshots.jsonl` (its history of
/// transfers has no linearizability model), else its `history.jsonl`. Anything else is
/// passed on as given, for the checker to read or to name in its error.
fn results_folder_file(path: std::path::PathBuf) -> std::path::PathBuf {
    if !path.is_dir() {
        return path;
    }
    ["snapshots.jsonl", "history.jsonl"]
        .iter()
        .map(|f| path.join(f))
        .find(|f| f.is_file())
        .unwrap_or(path)
}

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
            harness::backend::docker::leave_compose_network();
            std::process::exit(EXIT_USAGE);
        }
    };
    let in_compose = matches!(cli.command, Command::Run(_) | Command::Campaign(_));
    let code = match cli.command {
        Command::Run(args) => harness::run(args),
        Command::Check(mut args) => {
            args.files = args.files.into_iter().map(results_folder_file).collect();
            checker::cli::run(args)
        }
        Command::Node(args) => nodes::run(args),
        Command::Compare(args) => harness::compare::run(args),
        Command::Campaign(args) => harness::campaign::run(args),
    };
    if in_compose {
        // Inside docker-compose.yml's test service: leave and remove the project's
        // network on every way out (a no-op elsewhere).
        harness::backend::docker::leave_compose_network();
    }
    std::process::exit(code);
}
