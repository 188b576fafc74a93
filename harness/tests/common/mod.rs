#![allow(dead_code)] // each test binary uses its own subset
//! What the end-to-end test binaries share: the binary under test, one cluster at a time,
//! and reading back the results folder a run wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Held for the whole of a run, so two clusters never compete for the machine's two cores.
/// A test that panicked while holding it leaves nothing behind to protect, so a poisoned
/// lock is taken all the same.
pub fn lock() -> MutexGuard<'static, ()> {
    ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// The `faultline` binary under test.
pub fn faultline() -> Command {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
}

/// Exit code, stdout and stderr of a finished command, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `command` (`faultline run ...`) with `--store <store>` to its end and returns its
/// output, its results.json and its results folder.
pub fn run_in_store(command: &mut Command, store: &Path) -> (Output, serde_json::Value, PathBuf) {
    let out = command
        .arg("--store")
        .arg(store)
        .stdin(Stdio::null())
        .output()
        .expect("faultline runs");
    let (results, dir) = latest_results(store, &out);
    (out, results, dir)
}

/// results.json and the folder of the latest run in `store`; a missing one panics with
/// what the run (`out`) printed.
pub fn latest_results(store: &Path, out: &Output) -> (serde_json::Value, PathBuf) {
    let dir = std::fs::canonicalize(store.join("latest"))
        .unwrap_or_else(|e| panic!("no results folder ({e}):\n{}", describe(out)));
    let results = serde_json::from_str(
        &std::fs::read_to_string(dir.join("results.json"))
            .unwrap_or_else(|e| panic!("no results.json ({e}):\n{}", describe(out))),
    )
    .expect("results.json is JSON");
    (results, dir)
}
