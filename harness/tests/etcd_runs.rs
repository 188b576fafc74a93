//! End-to-end runs of `faultline run --system etcd` in the sandbox, with real etcd
//! members. Without an etcd binary the runs print a loud SKIPPED line and pass, unless
//! `FAULTLINE_REQUIRE_ETCD=1` (`.ci/run` sets it after installing etcd-server), which
//! makes a missing binary a failure. The refusals need no etcd.

mod common;

use std::time::{Duration, Instant};

use common::{describe, faultline, lock, run_in_store};

use harness::system::etcd::bin_for_test as etcd_bin;

/// Three etcd members under partitions and kills for a few seconds: a valid verdict, the
/// faults applied, members' logs and data in the results folder.
#[test]
fn etcd_under_partition_and_kill_is_valid() {
    let Some(bin) = etcd_bin("etcd_runs") else {
        return;
    };
    let _guard = lock();
    let store = tempfile::tempdir().unwrap();
    let (out, results, dir) = run_in_store(
        faultline()
            .args(["run", "--system", "etcd", "--etcd-bin"])
            .arg(&bin)
            .args([
                "--nemesis",
                "partition,kill",
                "--time-limit",
                "8",
                "--nemesis-interval",
                "2",
                "--seed",
                "3",
            ]),
        store.path(),
    );
    assert_eq!(
        results["verdict"],
        "valid",
        "{}\n{:#}",
        describe(&out),
        results["checkers"]
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let windows = results["nemesis"].as_array().expect("nemesis windows");
    assert!(!windows.is_empty(), "no fault recorded: {results:#}");
    assert!(
        windows
            .iter()
            .all(|w| !w["description"].as_str().unwrap_or("").contains("failed")),
        "a fault failed to apply: {windows:#?}"
    );
    assert!(
        results["ops"]["ok"].as_u64().unwrap() > 50,
        "{:#}",
        results["ops"]
    );
    // etcd's own log and data, per member.
    for i in 1..=3 {
        let log = std::fs::read_to_string(dir.join(format!("nodes/n{i}.log"))).unwrap();
        assert!(log.contains("etcd"), "n{i}.log is not etcd's: {log:.300}");
        assert!(
            dir.join(format!("nodes/n{i}.data/member")).is_dir(),
            "n{i}'s etcd data dir missing in {}",
            dir.display()
        );
    }
}

/// Each refusal is one line, exit 3, within a second, before anything starts.
#[test]
fn etcd_refusals_are_one_line() {
    let store = tempfile::tempdir().unwrap();
    for (args, expect) in [
        (vec!["--system", "etcd", "--bug", "stale-read"], "--bug"),
        (vec!["--system", "etcd", "--bug", "no-such-bug"], "--bug"),
        (
            vec!["--system", "etcd", "--etcd-bin", "/nonexistent/etcd"],
            "etcd",
        ),
        (vec!["--system", "etcd", "--etcd-bin", "/bin/true"], "etcd"),
        (vec!["--read-consistency", "serializable"], "--system etcd"),
        (vec!["--etcd-bin", "/usr/bin/etcd"], "--system etcd"),
        (vec!["--system", "etcd", "--workload", "bank"], "bank"),
        (vec!["--system", "etcd", "--nemesis", "clock"], "clock"),
        (
            vec!["--system", "etcd", "--backend", "compose"],
            "--backend docker",
        ),
    ] {
        let started = Instant::now();
        let out = faultline()
            .arg("run")
            .args(&args)
            .arg("--store")
            .arg(store.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", describe(&out));
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{args:?} took {:?}",
            started.elapsed()
        );
    }
    assert!(
        std::fs::read_dir(store.path()).unwrap().next().is_none(),
        "a refused run left something in the store"
    );
}
