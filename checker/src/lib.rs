//! # checker
//!
//! Linearizability (Wing–Gong–Lowe search, per-key decomposition) and snapshot
//! consistency checking of recorded histories.
//!
//! ## Layout
//! - `cli` — `faultline check`: arguments and the command.

pub mod cli;
