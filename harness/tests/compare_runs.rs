//! `faultline compare` end to end: a short comparison (leader-kill and follower-kill, both
//! modes, one seed, one 2-s fault per run, sandbox backend), checking every output's
//! structure, that each run's verdict is carried, and one fact that cannot flake.

mod common;

use std::process::Stdio;

use common::{describe, faultline, lock};

#[test]
fn short_compare_writes_every_output_and_passive_stalls_on_its_leader() {
    let _cluster = lock();
    let store = tempfile::tempdir().unwrap();
    let out = faultline()
        .args([
            "compare",
            "--modes",
            "passive,active",
            "--scenarios",
            "leader-kill,follower-kill",
            "--seeds",
            "1",
            "--cycles",
            "1",
            "--time-limit",
            "6",
            "--backend",
            "sandbox",
            "--store",
        ])
        .arg(store.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("gap healthy (s)") && stdout.contains("leader-kill"),
        "{stdout}"
    );

    let compare = store.path().join("compare");
    let dir = std::fs::read_dir(&compare)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .next()
        .expect("a comparison folder");

    // comparison.json: settings, four runs with their verdicts, four cells.
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("comparison.json")).unwrap())
            .unwrap();
    assert_eq!(c["schema"], "faultline-comparison/1");
    assert_eq!(c["all_valid"], true);
    assert_eq!(c["exit_code"], 0);
    assert_eq!(
        c["settings"]["modes"],
        serde_json::json!(["passive", "active"])
    );
    let runs = c["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    for run in runs {
        let folder = std::path::PathBuf::from(run["dir"].as_str().expect("run folder"));
        let results: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(folder.join("results.json")).unwrap())
                .unwrap();
        // The run's own verdict is what the comparison reports.
        assert_eq!(run["verdict"], results["verdict"], "{run}");
        assert_eq!(run["verdict"], "valid");
        assert_eq!(run["usable"], true);
        assert_eq!(results["run"]["mode"], run["mode"]);
        assert_eq!(results["run"]["seed"], 1);
        // Exactly one fault window, aimed at the role the scenario names.
        let windows = results["windows"].as_array().unwrap();
        assert_eq!(windows.len(), 1, "{run}");
        let role = run["scenario"].as_str().unwrap().split('-').next().unwrap();
        assert_eq!(
            windows[0]["target_role"], role,
            "{}",
            windows[0]["description"]
        );
        for key in ["gap_s", "gap_healthy_s", "availability", "start_s", "end_s"] {
            assert!(windows[0][key].is_number(), "{key} in {}", windows[0]);
        }
        assert!(windows[0]["series"]["ok_per_s"].as_array().unwrap().len() > 10);
        assert!(
            results["cost_steady"]["msgs_per_op"].is_number(),
            "{}",
            results["cost_steady"]
        );
        assert!(folder.join("telemetry.jsonl").is_file());
        assert!(std::fs::read_to_string(folder.join("report.html"))
            .unwrap()
            .contains("Fault windows"));
    }
    let cells = c["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 4);
    let gap = |scenario: &str, mode: &str| {
        let cell = cells
            .iter()
            .find(|x| x["scenario"] == scenario && x["mode"] == mode)
            .unwrap();
        assert_eq!(cell["valid_runs"], 1);
        cell["metrics"]["gap_s"]["median"].as_f64().unwrap()
    };
    // A killed passive leader leaves every client without a success until a new leader
    // is elected (an election timeout, hundreds of ms); a killed follower costs no
    // client of the other nodes anything (ops complete every few ms).
    let (leader, follower) = (
        gap("leader-kill", "passive"),
        gap("follower-kill", "passive"),
    );
    assert!(
        leader > follower,
        "passive leader-kill gap {leader} s should exceed follower-kill gap {follower} s"
    );
    assert!(!c["reading"].as_array().unwrap().is_empty());

    // comparison.md: one table with a row per scenario × mode.
    let md = std::fs::read_to_string(dir.join("comparison.md")).unwrap();
    let rows = md
        .lines()
        .filter(|l| l.starts_with("| leader-kill") || l.starts_with("| follower-kill"));
    assert_eq!(rows.count(), 4, "{md}");

    // comparison.html: self-contained, with the aligned charts per scenario.
    let html = std::fs::read_to_string(dir.join("comparison.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("aligned at fault start"));
    // Self-contained: nothing is fetched. (An SVG's `xmlns="http://www.w3.org/2000/svg"` is
    // a namespace name, not a fetch, so it is allowed.)
    for fetch in [
        "<script src",
        "<link",
        "src=\"http",
        "href=\"http",
        "url(http",
        "@import",
    ] {
        assert!(
            !html.contains(fetch),
            "comparison.html fetches something: {fetch}"
        );
    }
}

#[test]
fn bad_compare_flags_give_one_line() {
    for (args, mentions) in [
        (vec!["--scenarios", "leader-flood"], "leader-flood"),
        (vec!["--modes", "quorumless"], "quorumless"),
        (vec!["--seeds", "5..2"], "--seeds"),
        (vec!["--cycles", "3", "--time-limit", "1"], "too short"),
    ] {
        let out = faultline()
            .arg("compare")
            .args(&args)
            .args(["--store", "/nonexistent-never-created"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(mentions), "{stderr}");
    }
}
