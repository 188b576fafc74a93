//! # harness
//!
//! `faultline run`: start a real cluster, drive concurrent clients against it while a
//! nemesis injects faults, record the history, check it and write a results folder.
//!
//! ## Layout
//! - `cli` — the flags (`RunArgs`) and the validated `Plan`.
//! - `sandbox` — the private user + network + PID namespace the run lives in, and the
//!   per-node network namespaces inside it (`sandbox::network`).
//! - `backend` — the `Backend` trait (node lifecycle, partitions, packet faults) and its
//!   sandbox implementation.
//! - `client` — the HTTP `workloads::Client` for faultline's nodes: what each response proves.
//! - `bank` — the bank workload: transfer clients, the snapshot task, the money checks.
//! - `worker` — one Jepsen process: generator → client → history.
//! - `nemesis` — the fault schedule; `grudge` plans partitions, `packet` delays packets.
//! - `history` — the streaming `history.jsonl` recorder and the one clock.
//! - `check` — the checker stage (linearizability via the `checker` crate).
//! - `report` — `results.json` and the self-contained `report.html`.
//! - `progress` — the live progress line.
//! - `test_run` — one test from start to verdict, in that order.
//! - `campaign` — `faultline campaign`: a matrix of runs, each its own `faultline run`.
//!
//! The generator (workloads), client, nemesis and checker meet only in `test_run`, so
//! each can be replaced alone, as in Jepsen.

pub mod backend;
pub mod bank;
pub mod campaign;
pub mod check;
pub mod cli;
pub mod client;
pub mod etcd;
pub mod history;
pub mod nemesis;
pub mod progress;
pub mod report;
pub mod sandbox;
pub mod test_run;
pub mod worker;

pub use cli::RunArgs;

/// Exit code for every error that is not a verdict.
pub const EXIT_ERROR: i32 = 3;

/// Runs a test; returns the process exit code (0 valid, 1 invalid, 2 unknown, 3+ error).
///
/// Must be called before any thread is started: the sandbox needs a single-threaded
/// process to create its user namespace.
pub fn run(args: RunArgs) -> i32 {
    let plan = match cli::Plan::from_args(args) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("faultline run: {e}");
            return EXIT_ERROR;
        }
    };
    match plan.backend {
        cli::BackendKind::Sandbox => {
            let packet_faults = plan.nemesis.contains(&nemesis::FaultKind::Packet);
            if let Err(e) = sandbox::preflight(packet_faults) {
                eprintln!("faultline run: {e}");
                return EXIT_ERROR;
            }
            let exe = match std::env::current_exe() {
                Ok(exe) => exe,
                Err(e) => {
                    eprintln!("faultline run: cannot find the faultline executable to start nodes with: {e}");
                    return EXIT_ERROR;
                }
            };
            match sandbox::enter(move || test_run::run(plan, exe)) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("faultline run: {e}");
                    EXIT_ERROR
                }
            }
        }
        cli::BackendKind::Docker | cli::BackendKind::Compose => {
            let packet_faults = plan.nemesis.contains(&nemesis::FaultKind::Packet);
            let compose = plan.backend == cli::BackendKind::Compose;
            if let Err(e) = backend::docker::preflight(compose, packet_faults) {
                eprintln!("faultline run: {e}");
                return EXIT_ERROR;
            }
            match std::env::current_exe() {
                Ok(exe) => test_run::run(plan, exe),
                Err(e) => {
                    eprintln!("faultline run: cannot find the faultline executable to start nodes with: {e}");
                    EXIT_ERROR
                }
            }
        }
    }
}
