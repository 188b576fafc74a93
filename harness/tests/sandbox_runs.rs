//! End-to-end runs of `faultline run` in the sandbox, with the real nodes.
//!
//! These fail — they never skip — when the sandbox cannot be built on the machine: CI
//! runs them as root on the same kind of machine they were written on, so a sandbox
//! error there is a real regression. Runs are serialized (one cluster at a time) so two
//! clusters never compete for the machine's two cores.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{describe, faultline, lock, run_in_store};

/// Runs a short test and returns (exit code, results.json, results folder).
fn short_run(store: &Path, args: &[&str]) -> (Output, serde_json::Value, PathBuf) {
    run_in_store(
        faultline()
            .arg("run")
            .args([
                "--time-limit",
                "5",
                "--nemesis-interval",
                "1",
                "--seed",
                "7",
            ])
            .args(args),
        store,
    )
}

fn assert_valid_run(mode: &str, nemesis: &str) {
    let _guard = lock();
    let store = tempfile::tempdir().unwrap();
    let (out, results, dir) = short_run(store.path(), &["--mode", mode, "--nemesis", nemesis]);
    assert_eq!(
        results["verdict"],
        "valid",
        "{mode}/{nemesis}: {}\n{:#}",
        describe(&out),
        results["checkers"]
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // The fault really happened, and was recorded with times.
    let windows = results["nemesis"].as_array().expect("nemesis windows");
    assert!(
        !windows.is_empty(),
        "no {nemesis} fault recorded: {results:#}"
    );
    assert!(windows.iter().all(|w| w["fault"] == nemesis), "{windows:?}");
    assert!(
        windows
            .iter()
            .all(|w| !w["description"].as_str().unwrap_or("").contains("failed")),
        "a fault failed to apply: {windows:#?}"
    );
    // A partition is packets really dropped: the kernel's counters on the cut rules,
    // read just before each heal, add up to more than nothing.
    if nemesis == "partition" {
        let dropped: u64 = windows
            .iter()
            .filter_map(|w| w["ended"].as_str())
            .filter_map(|e| {
                e.split("dropped ")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        assert!(dropped > 0, "no packet counted as dropped: {windows:#?}");
    }
    // Clients got work done and the results folder is complete.
    assert!(
        results["ops"]["ok"].as_u64().unwrap() > 50,
        "{:#}",
        results["ops"]
    );
    for file in [
        "history.jsonl",
        "report.html",
        "nodes/n1.log",
        "nodes/n3.log",
    ] {
        assert!(
            dir.join(file).exists(),
            "{file} missing in {}",
            dir.display()
        );
    }
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(
        html.contains("<svg") && !html.contains("src=\"http") && !html.contains("href=\"http"),
        "report.html must be self-contained"
    );
}

#[test]
fn passive_partition_valid() {
    assert_valid_run("passive", "partition");
}

#[test]
fn passive_kill_valid() {
    assert_valid_run("passive", "kill");
}

#[test]
fn passive_pause_valid() {
    assert_valid_run("passive", "pause");
}

#[test]
fn passive_packet_valid() {
    assert_valid_run("passive", "packet");
}

#[test]
fn active_partition_valid() {
    assert_valid_run("active", "partition");
}

#[test]
fn active_kill_valid() {
    assert_valid_run("active", "kill");
}

#[test]
fn active_pause_valid() {
    assert_valid_run("active", "pause");
}

#[test]
fn active_packet_valid() {
    assert_valid_run("active", "packet");
}

/// Network namespaces in use by any process on the machine.
fn netns_in_use() -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(link) = std::fs::read_link(entry.path().join("ns/net")) {
            set.insert(link.to_string_lossy().into_owned());
        }
    }
    set
}

/// PIDs whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(needle)
                .then_some(pid)
        })
        .collect()
}

/// Starts a 60 s run under `nemesis` in the background and waits until the cluster is up
/// and its clients are recording.
fn start_long_run(store: &Path, nemesis: &str) -> Child {
    let child = faultline()
        .args(["run", "--time-limit", "60", "--nemesis", nemesis])
        .args(["--nemesis-interval", "1", "--store"])
        .arg(store)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let history = store.join("latest/history.jsonl");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&history)
        .map(|s| s.lines().count())
        .unwrap_or(0)
        <= 200
    {
        assert!(Instant::now() < deadline, "the run never started recording");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

/// Guards the sandbox's central promise: SIGKILL of the harness mid-run (no chance to
/// clean up) leaves no node process and no network namespace behind.
#[test]
fn kill_9_of_the_harness_leaves_nothing_behind() {
    let _guard = lock();
    let store = tempfile::tempdir().unwrap();
    let store_path = store.path().to_str().unwrap().to_string();
    let before = netns_in_use();
    let mut child = start_long_run(store.path(), "partition,pause");
    let history = store.path().join("latest/history.jsonl");
    let nodes = processes_mentioning(&format!("{store_path}/"));
    assert!(
        nodes.len() >= 3,
        "expected node processes mentioning the store, found {nodes:?}"
    );
    assert!(
        netns_in_use().len() > before.len(),
        "the run's namespaces should be visible while it runs"
    );

    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_mentioning(&format!("{store_path}/"));
        let extra: Vec<String> = netns_in_use().difference(&before).cloned().collect();
        if left.is_empty() && extra.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: processes {left:?}, namespaces {extra:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // What was recorded before the kill is still a parseable history.
    let text = std::fs::read_to_string(&history).unwrap();
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("bad history line {line:?}: {e}"));
    }
}

/// SIGTERM to the visible harness process reaches the sandboxed one: it stops, tears
/// down, checks the partial history and writes results.
#[test]
fn sigterm_tears_down_gracefully_and_still_reports() {
    let _guard = lock();
    let store = tempfile::tempdir().unwrap();
    let store_path = store.path().to_str().unwrap().to_string();
    let mut child = start_long_run(store.path(), "pause");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the harness did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        status.code(),
        Some(4),
        "interrupted runs exit 4 unless invalid"
    );
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(store.path().join("latest/results.json")).unwrap(),
    )
    .unwrap();
    assert!(results["run"]["interrupted"]
        .as_str()
        .unwrap()
        .contains("SIGTERM"));
    assert!(processes_mentioning(&format!("{store_path}/")).is_empty());
}

fn assert_one_line_error(args: &[&str], mentions: &str) {
    let out = faultline().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one line, got:\n{stderr}"
    );
    assert!(
        stderr.contains(mentions),
        "error should mention {mentions:?}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_flags_give_one_line_errors() {
    assert_one_line_error(&["run", "--bogus"], "--bogus");
    assert_one_line_error(&["run", "--nodes", "0"], "--nodes");
    assert_one_line_error(&["run", "--nemesis", "earthquake"], "earthquake");
    assert_one_line_error(&["run", "--mode", "hybrid"], "hybrid");
    assert_one_line_error(&["run", "--time-limit=-1"], "time-limit");
    assert_one_line_error(&["run", "--time-limit", "0"], "time-limit");
}

/// Where user namespaces are not allowed (simulated by a nested namespace whose limit
/// is 0), the harness says so in one line and names the way out.
#[test]
fn blocked_user_namespaces_give_one_line_with_the_way_out() {
    let script = format!(
        "echo 0 > /proc/sys/user/max_user_namespaces && exec {} run --time-limit 1",
        env!("CARGO_BIN_EXE_faultline")
    );
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "sh", "-c", &script])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("user namespace") && stderr.contains("run as root"),
        "{stderr}"
    );
}

/// A full disk (the history capped at 30 kB, through `FAULTLINE_HISTORY_CAP_BYTES`) stops
/// the main phase at once and says so; what was written is whole lines and is checked,
/// and the verdict is written and carried by the exit code (4: cut short, not invalid).
#[test]
fn a_full_disk_stops_the_run_at_once_and_the_recorded_part_is_still_judged() {
    let _guard = lock();
    let store = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let (out, results, dir) = run_in_store(
        faultline()
            .args(["run", "--time-limit", "30", "--nemesis", "partition"])
            .args(["--nemesis-interval", "1", "--seed", "3"])
            .env("FAULTLINE_HISTORY_CAP_BYTES", "30000"),
        store.path(),
    );
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("No space left on device") && stderr.contains("stopping the main phase"),
        "{}",
        describe(&out)
    );
    assert!(
        took < Duration::from_secs(20),
        "the 30-s run went on after the history failed ({took:?})"
    );
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    assert_eq!(results["verdict"], "valid", "{}", describe(&out));
    assert_eq!(results["checkers"]["linearizable"]["verdict"], "valid");
    assert!(results["run"]["interrupted"]
        .as_str()
        .unwrap_or("")
        .contains("writing the history failed"));
    let text = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    assert!(
        text.len() <= 30_000 && text.ends_with('\n'),
        "{} bytes",
        text.len()
    );
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("bad history line {line:?}: {e}"));
    }
    assert!(results["ops"]["attempted"].as_u64().unwrap_or(0) > 0);
}
