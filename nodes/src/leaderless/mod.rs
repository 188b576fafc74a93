//! Leaderless active replication: Tempo (Enes, Baquero, Gotsman, Sutra, "Efficient
//! Replication via Timestamp Stability", EuroSys 2021), specialised to a store in which
//! every command conflicts with every other (one timestamp order for all keys).
//!
//! - `machine`: the protocol as a pure state machine (`step`/`tick`/`ready`, no I/O):
//!   timestamp agreement by a fast quorum, a Paxos-style slow path, execution in
//!   timestamp order once a timestamp is stable, per-command recovery with ballots.
//! - `table`: the command table, by dot, in chunks that never move.
//! - `chaos` (tests only): seeded runs with crashes, partitions, loss and reordering whose
//!   client histories are checked with the linearizability checker.
//!
//! nodes/README.md ("Leaderless mode") gives the protocol, its invariants and the
//! argument for its safety.

pub mod machine;
mod table;

#[cfg(test)]
mod chaos;

pub use machine::{Tempo, TempoMsg};
