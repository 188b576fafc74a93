//! End-to-end runs with non-deterministic writes (rolls, issue 14) in the sandbox, one per
//! replication mode, judged by the replica-convergence checker:
//!
//! - passive ships each roll's effect → linearizable and converged (exit 0);
//! - active executes each roll on every replica → divergent (exit 1), naming the key and
//!   each replica's value;
//! - active with `--deterministic-roll` (the value ordered with the request) → converged.
//!
//! Serialized with the other sandbox runs (one cluster at a time); they fail, never skip,
//! when the sandbox cannot be built.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{describe, faultline, lock, run_in_store};

/// A short kv run where half the writes are rolls, no faults (the divergence needs none).
///
/// 16 keys, not 4: a rolled key converges again when its last write is a put (the same
/// value everywhere), so the end states differ only if some key's last write was a roll —
/// with half the writes rolls, all keys converged in about 1 run of 16 with 4 keys (seen in
/// CI: linearizability `invalid`, convergence `converged`), about 1 in 65,000 with 16.
fn roll_run(store: &Path, args: &[&str]) -> (Output, serde_json::Value, PathBuf) {
    run_in_store(
        faultline()
            .arg("run")
            .args([
                "--workload",
                "kv",
                "--keys",
                "16",
                "--nondeterministic",
                "50",
                "--time-limit",
                "4",
                "--nemesis",
                "none",
                "--seed",
                "14",
            ])
            .args(args),
        store,
    )
}

/// Checks the history really holds ok rolls with the value each returned.
fn assert_rolls_recorded(dir: &Path) {
    let history = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    let ok_rolls = history
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["f"] == "roll" && e["type"] == "ok")
        .inspect(|e| assert!(e["value"].is_i64(), "ok roll without its value: {e}"))
        .count();
    assert!(ok_rolls > 10, "only {ok_rolls} ok rolls in the history");
}

#[test]
fn passive_with_rolls_is_linearizable_and_converged() {
    let _guard = lock();
    let store = tempfile::tempdir().unwrap();
    let (out, results, dir) = roll_run(store.path(), &["--mode", "passive"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(results["verdict"], "valid", "{:#}", results["checkers"]);
    assert_eq!(results["checkers"]["linearizable"]["verdict"], "valid");
    assert_eq!(
        results["convergence"], "converged",
        "{:#}",
        results["checkers"]
    );
    let conv = &results["checkers"]["convergence"]["report"];
    assert_eq!(conv["verdict"], "converged");
    assert_eq!(conv["compared"], 3, "{conv:#}");
    assert_eq!(results["rolls"]["percent_of_writes"], 50);
    assert_rolls_recorded(&dir);
}

#[test]
fn active_with_rolls_is_divergent_naming_key_and_replicas() {
    rolls_diverge_naming_key_and_replicas("active");
}

/// The leaderless mode executes every request on every replica too: the same lesson.
#[test]
fn leaderless_with_rolls_is_divergent_naming_key_and_replicas() {
    rolls_diverge_naming_key_and_replicas("leaderless");
}

fn rolls_diverge_naming_key_and_replicas(mode: &str) {
    let _guard = lock();
    let store = tempfile::tempdir().unwrap();
    let (out, results, dir) = roll_run(store.path(), &["--mode", mode]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(results["verdict"], "invalid", "{:#}", results["checkers"]);
    assert_eq!(
        results["convergence"], "divergent",
        "{:#}",
        results["checkers"]
    );
    let conv = &results["checkers"]["convergence"];
    assert_eq!(conv["verdict"], "invalid");
    let report = &conv["report"];
    assert_eq!(report["verdict"], "divergent");
    let key = report["key"].as_str().expect("the divergent key is named");
    assert!(key.starts_with('k'), "{report:#}");
    let values = report["values"].as_object().unwrap();
    assert!(values.len() >= 2, "{report:#}");
    let distinct: std::collections::BTreeSet<String> =
        values.values().map(|v| v.to_string()).collect();
    assert!(
        distinct.len() >= 2,
        "named values do not differ: {report:#}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("divergent") && stderr.contains(key),
        "{}",
        describe(&out)
    );
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("Checker: convergence — divergent"));
    assert_rolls_recorded(&dir);
}

#[test]
fn active_with_deterministic_roll_converges() {
    deterministic_roll_converges("active");
}

#[test]
fn leaderless_with_deterministic_roll_converges() {
    deterministic_roll_converges("leaderless");
}

fn deterministic_roll_converges(mode: &str) {
    let _guard = lock();
    let store = tempfile::tempdir().unwrap();
    let (out, results, dir) = roll_run(store.path(), &["--mode", mode, "--deterministic-roll"]);
    assert_eq!(
        results["convergence"], "converged",
        "{:#}",
        results["checkers"]
    );
    assert_eq!(results["rolls"]["deterministic_roll"], true);
    assert_eq!(
        results["checkers"]["convergence"]["report"]["compared"], 3,
        "{:#}",
        results["checkers"]
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_rolls_recorded(&dir);
}
