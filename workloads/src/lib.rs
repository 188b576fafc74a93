//! # workloads
//!
//! What clients do (generators) and which model their history is checked against —
//! Jepsen's client / generator split, kept apart from the harness that runs them so each
//! piece can be replaced alone.
//!
//! ## Layout
//! - `op` — one operation (`Op`, `OpFn`) and how it ended (`Completion`).
//! - `client` — the `Client` trait: how an op reaches a system under test.
//! - `generator` — a seeded, per-process stream of ops over a set of keys.
//! - `register` — a single cas-register (one key, read/write/cas).
//! - `kv` — a multi-key store of cas-registers over `--keys K`.
//! - `bank` — transfers between the nodes' accounts; judged by money, not by a model.
//!
//! A `Workload` names its keys, produces a `Generator` per client process and says which
//! checker model judges its history. The bank workload is not one: its ops and its
//! checks (snapshots, conservation) have their own types in `bank`.

pub mod bank;
pub mod client;
pub mod generator;
pub mod kv;
pub mod op;
pub mod register;

pub use client::Client;
pub use generator::{Generator, OpMix};
pub use op::{Completion, Op, OpFn};

use std::str::FromStr;

/// Which checker model judges a workload's history.
pub use checker::ModelKind as Model;

/// The workloads `faultline run --workload` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    Register,
    Kv,
    Bank,
}

impl FromStr for WorkloadKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "register" => Ok(Self::Register),
            "kv" => Ok(Self::Kv),
            "bank" => Ok(Self::Bank),
            other => Err(format!(
                "unknown workload `{other}` (expected register, kv or bank)"
            )),
        }
    }
}

impl WorkloadKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Kv => "kv",
            Self::Bank => "bank",
        }
    }
}

/// A workload: the keys it touches, the ops it generates and the model that checks them.
pub trait Workload: Send + Sync {
    /// Short name used in test names and reports.
    fn name(&self) -> &'static str;
    /// The model the checker judges this workload's history with.
    fn model(&self) -> Model;
    /// A generator for one client process slot. Same `(seed, slot)` ⇒ same op sequence.
    fn generator(&self, seed: u64, slot: usize) -> Generator;
}

/// Builds the register workload `kind` over `keys` keys (ignored by the single
/// register); `None` for `bank`, which is not a register workload (see `bank`).
pub fn build(kind: WorkloadKind, keys: usize) -> Option<Box<dyn Workload>> {
    match kind {
        WorkloadKind::Register => Some(Box::new(register::Register::default())),
        WorkloadKind::Kv => Some(Box::new(kv::Kv::new(keys))),
        WorkloadKind::Bank => None,
    }
}
