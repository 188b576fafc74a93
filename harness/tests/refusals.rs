//! Runs that cannot be run are refused at once: one line naming what is wrong, exit 3,
//! in well under a second, and nothing created (no results folder, no process).

mod common;

use std::time::{Duration, Instant};

use common::{describe, faultline};

/// Runs `faultline run ARGS --store <tmp>` and checks the refusal; returns stderr.
fn assert_refused(args: &[&str], mentions: &[&str]) -> String {
    let store = tempfile::tempdir().unwrap();
    let store_path = store.path().join("store");
    let start = Instant::now();
    let out = faultline()
        .arg("run")
        .args(args)
        .arg("--store")
        .arg(&store_path)
        .output()
        .unwrap();
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(3), "{args:?}: {}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "{args:?}: one line, got:\n{stderr}"
    );
    for m in mentions {
        assert!(
            stderr.contains(m),
            "{args:?}: should mention {m:?}: {stderr}"
        );
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        took < Duration::from_secs(1),
        "{args:?}: refused after {took:?}"
    );
    assert!(
        !store_path.exists(),
        "{args:?}: a refused run created its store"
    );
    stderr
}

#[test]
fn unknown_and_wrong_mode_bugs_are_refused_naming_the_bugs_of_each_mode() {
    assert_refused(
        &["--bug", "stale-raed"],
        &[
            "stale-raed",
            "no such bug",
            "passive: stale-read",
            "active: deliver-unagreed",
        ],
    );
    assert_refused(
        &["--mode", "active", "--bug", "stale-read"],
        &[
            "stale-read",
            "only in passive mode",
            "active mode's bugs: deliver-unagreed",
        ],
    );
}

#[test]
fn every_out_of_range_value_is_refused() {
    for (args, flag) in [
        (&["--nodes", "0"][..], "--nodes"),
        (&["--nodes", "51"][..], "--nodes"),
        (&["--concurrency", "0"][..], "--concurrency"),
        (&["--rate=-5"][..], "--rate"),
        (&["--rate", "-1"][..], "--rate"),
        (&["--keys", "0"][..], "--keys"),
        (&["--op-timeout", "0"][..], "--op-timeout"),
        (&["--time-limit", "0"][..], "--time-limit"),
        (&["--nemesis-interval", "nan"][..], "--nemesis-interval"),
        (&["--check-timeout=-1"][..], "--check-timeout"),
        (
            &["--workload", "bank", "--initial-balance", "0"][..],
            "--initial-balance",
        ),
        (
            &["--workload", "bank", "--snapshot-timeout", "0"][..],
            "snapshot-timeout",
        ),
        (&["--nemesis", "earthquake"][..], "earthquake"),
    ] {
        assert_refused(args, &[flag]);
    }
}
