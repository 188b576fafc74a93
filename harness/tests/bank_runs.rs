//! End-to-end bank runs of `faultline run --workload bank` in the sandbox, with the real
//! nodes: Chandy–Lamport on FIFO channels stays consistent under every fault family, and
//! each way of breaking it (unordered channels, markers sent after transfers, snapshots by
//! wall clock) is caught. Like `sandbox_runs.rs`, these fail — never skip — when the
//! sandbox cannot be built, and run one cluster at a time.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{describe, faultline, lock, run_in_store};

/// A short bank run: 8 s of 9 clients (3 per node, so money flows evenly) at 200
/// transfers/s, a snapshot every half second (about 15 per run: with one a second, an
/// unordered-channels run once caught only 1 of 7).
fn bank_run(store: &Path, args: &[&str]) -> (Output, serde_json::Value, PathBuf) {
    run_in_store(
        faultline()
            .args(["run", "--workload", "bank", "--time-limit", "8"])
            .args(["--concurrency", "9", "--rate", "200"])
            .args(["--snapshot-interval", "0.5", "--snapshot-timeout", "2"])
            .args(["--nemesis-interval", "1", "--seed", "7"])
            .args(args),
        store,
    )
}

fn count(results: &serde_json::Value, what: &str) -> u64 {
    results["snapshots"][what]
        .as_u64()
        .unwrap_or_else(|| panic!("results.json has no snapshots.{what}: {results:#}"))
}

/// The counts add up, every snapshot is in `snapshots.jsonl` and in the history, and the
/// money was all there at the end (the nodes conserve it even when a snapshot is wrong).
fn assert_well_formed(results: &serde_json::Value, dir: &Path) {
    let (started, completed) = (count(results, "started"), count(results, "completed"));
    assert_eq!(
        completed,
        count(results, "consistent") + count(results, "inconsistent"),
        "{:#}",
        results["snapshots"]
    );
    assert_eq!(
        started,
        completed + count(results, "incomplete"),
        "{:#}",
        results["snapshots"]
    );
    assert!(
        started >= 4,
        "too few snapshots: {:#}",
        results["snapshots"]
    );
    let lines = std::fs::read_to_string(dir.join("snapshots.jsonl")).unwrap();
    assert_eq!(lines.lines().count() as u64, started);
    let history = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    let snapshot_events = history
        .lines()
        .filter(|l| l.contains("\"f\":\"snapshot\""))
        .count() as u64;
    assert!(
        snapshot_events >= 2 * started,
        "start and end of each snapshot"
    );
    assert!(history.contains("\"f\":\"transfer\""));
    let c = &results["final"]["conservation"];
    assert_eq!(c["total"], 3000, "final state: {:#}", results["final"]);
    assert_eq!(c["expected"], 3000);
    assert_eq!(c["negative"].as_array().map(Vec::len), Some(0));
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("faultline-snapshots") && html.contains("final balances"));
}

/// The rules broken across the run's snapshots.
fn rules(results: &serde_json::Value) -> Vec<String> {
    let mut rules: Vec<String> = results["snapshots"]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["outcome"] == "inconsistent")
        .map(|v| v["rule"].as_str().unwrap().to_string())
        .collect();
    rules.sort();
    rules.dedup();
    rules
}

#[test]
fn fifo_chandy_lamport_is_consistent_under_every_fault() {
    let _guard = lock();
    let store = tempfile::tempdir().unwrap();
    let (out, results, dir) = bank_run(store.path(), &["--nemesis", "partition,kill,pause,packet"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(results["verdict"], "valid");
    assert_well_formed(&results, &dir);
    assert!(
        count(&results, "consistent") >= 1,
        "{:#}",
        results["snapshots"]
    );
    assert_eq!(
        count(&results, "inconsistent"),
        0,
        "{:#}",
        results["snapshots"]
    );
    assert!(
        results["snapshots"]["latency_ms"]["p50"].as_f64().unwrap() > 0.0,
        "{:#}",
        results["snapshots"]
    );
    assert_eq!(results["snapshots"]["transfer_log"], "attached");
    let windows = results["nemesis"].as_array().unwrap();
    assert!(windows.len() >= 3, "faults applied: {windows:#?}");
}

#[test]
fn unordered_channels_with_reordering_are_caught() {
    let _guard = lock();
    let store = tempfile::tempdir().unwrap();
    let (out, results, dir) = bank_run(
        store.path(),
        &["--channels", "unordered", "--nemesis", "packet"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_well_formed(&results, &dir);
    assert!(count(&results, "inconsistent") >= 1);
    // The results folder checks alone (its snapshots.jsonl carries the transfer log),
    // with the same judgement.
    let check = faultline().arg("check").arg(&dir).output().unwrap();
    assert_eq!(check.status.code(), Some(1), "{}", describe(&check));
    assert!(String::from_utf8_lossy(&check.stdout).contains("inconsistent"));
}

#[test]
fn markers_sent_after_transfers_are_caught() {
    let _guard = lock();
    let store = tempfile::tempdir().unwrap();
    let (out, results, dir) = bank_run(
        store.path(),
        &["--bug", "marker-after-send", "--nemesis", "none"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_well_formed(&results, &dir);
    assert!(count(&results, "inconsistent") >= 1);
    // Transfers sent after the sender's cut arrive before its marker: the receiver
    // records a receive whose send is not in the cut.
    let broken = rules(&results);
    assert!(
        broken.iter().any(|r| r == "consistent-cut"),
        "broken rules: {broken:?}"
    );
}

#[test]
fn wall_clock_snapshots_under_clock_skew_are_caught() {
    let _guard = lock();
    let store = tempfile::tempdir().unwrap();
    let (out, results, dir) = bank_run(
        store.path(),
        &["--snapshot-algo", "clock", "--nemesis", "clock"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_well_formed(&results, &dir);
    assert!(count(&results, "inconsistent") >= 1);
    let windows = results["nemesis"].as_array().unwrap();
    assert!(
        windows.iter().any(|w| w["fault"] == "clock"
            && w["description"].as_str().unwrap().contains(" ms")
            && !w["description"].as_str().unwrap().contains("failed")),
        "{windows:#?}"
    );
    // No channel state is recorded: what was in flight at the instant is lost.
    let broken = rules(&results);
    assert!(
        broken.iter().any(|r| r == "channel-state"),
        "broken rules: {broken:?}"
    );
}

#[test]
fn bank_flags_are_checked() {
    for (args, mentions) in [
        (
            &["--channels", "unordered"][..],
            "only applies to --workload bank",
        ),
        (
            &["--workload", "bank", "--nodes", "1"][..],
            "at least 2 nodes",
        ),
        (
            &["--workload", "bank", "--initial-balance", "0"][..],
            "--initial-balance",
        ),
        (
            &["--workload", "bank", "--snapshot-interval", "0"][..],
            "snapshot-interval",
        ),
        (&["--workload", "bank", "--snapshot-algo", "ntp"][..], "ntp"),
    ] {
        let out = faultline().arg("run").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(mentions), "{args:?}: {stderr}");
    }
}
