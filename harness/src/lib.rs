//! # harness
//!
//! `faultline run`: start a real cluster, drive concurrent clients against it while a
//! nemesis injects faults, record the history, check it and write a results folder.
//!
//! A test is a value made of parts (Jepsen's shape), assembled in `plan::Plan`:
//!
//! - `system` — the system under test: how each node is launched, its client, leader
//!   discovery, metrics (`System`, `Cluster`); faultline's own nodes are the first.
//! - `workload` — what clients do and what judges it, with its own phases (start, stop,
//!   settle, judge); `workload::register` (kv, register) and `bank`.
//! - `checkers` — the list of checkers a run's verdict combines.
//! - `backend` — where the nodes run and how faults reach them (sandbox, docker, compose),
//!   with the packet delayer (`backend::packet`).
//! - `nemesis` — the seeded fault schedule (`Planner`) and its application (`Nemesis`);
//!   `fault` is the vocabulary it shares with the backends.
//!
//! And the machinery: `cli` (the flags), `plan` (flags → the validated `Plan`, and the
//! `--system` / `--workload` registries), `sandbox` (the private namespaces the run
//! lives in), `client` (the HTTP client for faultline's nodes), `worker` (one Jepsen
//! process), `history` (the streaming recorder), `store` (results folders), `report`
//! (`results.json`, `report.html`), `progress` (the live line) and `test_run` (the
//! pipeline: calls the parts' phases in order, knowing none of them).
//! `campaign` runs a matrix of tests, each its own `faultline run` process; `compare`
//! runs modes side by side under role-targeted faults the same way, from each run's
//! `telemetry` (leader, messages, CPU sampled) and per-fault-window figures.

pub mod backend;
pub mod bank;
pub mod campaign;
pub mod checkers;
pub mod cli;
pub mod client;
pub mod compare;
pub mod fault;
pub mod history;
pub mod nemesis;
pub mod plan;
pub mod progress;
pub mod report;
pub mod sandbox;
pub mod store;
pub mod system;
pub mod telemetry;
pub mod test_run;
pub mod worker;
pub mod workload;

pub use cli::RunArgs;

/// Exit code for every error that is not a verdict.
pub const EXIT_ERROR: i32 = 3;

/// Runs a test; returns the process exit code (0 valid, 1 invalid, 2 unknown, 3 error,
/// 4 cut short but not invalid).
///
/// Must be called before any thread is started: the sandbox needs a single-threaded
/// process to create its user namespace.
pub fn run(args: RunArgs) -> i32 {
    let plan = match plan::Plan::from_args(args) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("faultline run: {e}");
            return EXIT_ERROR;
        }
    };
    if let Err(e) = backend::preflight(plan.backend, &plan.nemesis) {
        eprintln!("faultline run: {e}");
        return EXIT_ERROR;
    }
    match plan.backend {
        backend::BackendKind::Sandbox => match sandbox::enter(move || test_run::run(plan)) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("faultline run: {e}");
                EXIT_ERROR
            }
        },
        backend::BackendKind::Docker | backend::BackendKind::Compose => test_run::run(plan),
    }
}
