//! # Snapshot consistency
//!
//! Judges collected global snapshots of the bank workload (Chandy–Lamport, or the naive
//! wall-clock algorithm) against four rules, each violation an enum variant naming the
//! snapshot, nodes, channel and messages involved:
//!
//! 1. **termination** — every node recorded, every channel closed;
//! 2. **consistent cut** — no recorded receive without its recorded send: per channel
//!    `received[i→j] ≤ sent[i→j]`, and per pair of nodes `VC_j[i] ≤ VC_i[i]` at the cuts;
//! 3. **channel state exact** — channel i→j holds seqs `received[i→j]+1 ..= sent[i→j]`, in
//!    order, each once, sent before i's cut (by seq and by send clock), with the logged
//!    amounts when a transfer log is given;
//! 4. **conservation** — balances plus in-flight amounts equal the initial total (judged
//!    when every node recorded); no negative balance.
//!
//! Layout: `model` — the data model (what nodes and the initiator report); `check` — the
//! rules on one snapshot; `report` — many snapshots, counts, text/JSON/HTML;
//! `simulate` — a deterministic simulator of the protocol for tests.

pub mod check;
pub mod model;
pub mod report;
pub mod simulate;

pub use check::{check_snapshot, Outcome, Rule, SnapshotReport, Violation};
pub use model::{Algorithm, Channel, Checkpoint, NodeId, Snapshot, Transfer, VectorClock};
pub use report::{
    check_snapshots, parse_snapshots, read_snapshots, Latency, SnapshotsReport, Summary,
};
