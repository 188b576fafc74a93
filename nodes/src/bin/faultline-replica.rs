//! `faultline-replica`: the same node as `faultline node`, as its own small binary so this
//! crate's tests can start real processes and `kill -9` them.

use clap::Parser;

/// As in `faultline`: see harness/src/main.rs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "faultline-replica", about = "One faultline replica node")]
struct Cli {
    #[command(flatten)]
    args: nodes::NodeArgs,
}

fn main() {
    std::process::exit(nodes::run(Cli::parse().args));
}
