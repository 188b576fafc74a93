//! # nodes
//!
//! One replica of faultline's replicated key/value store.

use clap::Args;

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// This node's id, e.g. n1.
    #[arg(long, env = "FAULTLINE_ID")]
    pub id: String,
}

/// Runs a node until it is stopped; returns the process exit code.
pub fn run(args: NodeArgs) -> i32 {
    eprintln!("faultline node {}: not built yet", args.id);
    3
}
