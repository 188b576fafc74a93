//! `faultline campaign` with a stand-in for `faultline run` (a shell script, through
//! `FAULTLINE_CAMPAIGN_EXE`), so the campaign's own logic — expectations, exit codes,
//! sharding and merge, resume after an interruption, budget, `--keep failed`, the files it
//! writes — is tested in seconds and without clusters. The stand-in decides its verdict
//! from the flags it gets: `--bug caught` -> invalid, `--bug missed` -> valid, `--mode
//! undecided` -> unknown, `--mode broken` -> exit 3 with an error line, else valid.
//! `campaign_smoke.rs` runs real clusters.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{describe, faultline};

const FAKE_RUN: &str = r#"#!/usr/bin/env bash
# Stand-in for `faultline run`: writes a results folder like the real one and exits 0/1/2/3.
shift  # "run"
store= name= seed= bug= mode=
while [ $# -gt 0 ]; do
  case $1 in
    --store) store=$2; shift ;;
    --name) name=$2; shift ;;
    --seed) seed=$2; shift ;;
    --bug) bug=$2; shift ;;
    --mode) mode=$2; shift ;;
  esac
  shift
done
echo "$name" >> "$FAKE_LOG"
sleep "${FAKE_SLEEP:-0}"
if [ "$mode" = broken ]; then
  echo "faultline run: --mode broken: unknown mode" >&2
  exit 3
fi
verdict=valid code=0
[ "$bug" = caught ] && verdict=invalid code=1
[ "$mode" = undecided ] && verdict=unknown code=2
dir=$store/$name/20261201T000000Z
mkdir -p "$dir/nodes"
ln -sfn "$name/20261201T000000Z" "$store/latest"
invalid='[]'
[ $code = 1 ] && invalid='[{"key": "k1", "blocking": {"id": 41, "description": "read 3"}}]'
cat > "$dir/results.json" <<JSON
{"verdict": "$verdict", "ops": {"attempted": 100, "ok": 90, "fail": 5, "info": 5},
 "availability": 0.9, "latency_ms": {"p50": 1.5, "p99": 9.0, "max": 12.0},
 "checkers": {"linearizable": {"verdict": "$verdict", "report": {"invalid": $invalid, "unknown": []}}},
 "run": {"seed": $seed}}
JSON
echo '<html>report</html>' > "$dir/report.html"
echo '{"type":"invoke"}' > "$dir/history.jsonl"
echo "$name: $verdict"
exit $code
"#;

struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("fake-faultline");
        std::fs::write(&exe, FAKE_RUN).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        Fake { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn campaign(&self, args: &[&str], sleep: f64) -> Command {
        let mut cmd = faultline();
        cmd.arg("campaign")
            .args(args)
            .env("FAULTLINE_CAMPAIGN_EXE", self.path("fake-faultline"))
            .env("FAKE_LOG", self.path("runs.log"))
            .env("FAKE_SLEEP", sleep.to_string());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.campaign(args, 0.0).output().unwrap()
    }

    /// How many times the stand-in ran each cell.
    fn invocations(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for l in std::fs::read_to_string(self.path("runs.log"))
            .unwrap_or_default()
            .lines()
        {
            *m.entry(l.to_string()).or_default() += 1;
        }
        m
    }
}

fn summary(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("summary.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", out.join("summary.json").display()));
    serde_json::from_str(&text).unwrap()
}

fn statuses(s: &serde_json::Value) -> BTreeMap<String, String> {
    s["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// What must be equal between a merged and an unsharded summary: everything but times
/// and paths.
fn essence(s: &serde_json::Value) -> serde_json::Value {
    let cells: Vec<serde_json::Value> = s["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            serde_json::json!([
                c["id"],
                c["settings"],
                c["expect"],
                c["status"],
                c["verdict"],
                c["exit_code"],
                c["explanation"],
                c["ops"],
                c["availability"],
                c["latency_ms"],
                c["command"]
            ])
        })
        .collect();
    serde_json::json!({"counts": s["counts"], "exit": s["exit_code"], "cells": cells,
        "campaign": s["campaign"]})
}

/// Every `href` of index.html names a file that exists.
fn assert_links_resolve(out: &Path) {
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    let hrefs: Vec<&str> = html
        .split("href=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap())
        .collect();
    assert!(!hrefs.is_empty());
    for h in hrefs {
        assert!(
            out.join(h).is_file(),
            "index.html links {h}, which does not exist"
        );
    }
}

fn junit(out: &Path) -> String {
    let text = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    roxmltree::Document::parse(&text)
        .unwrap_or_else(|e| panic!("junit.xml does not parse: {e}\n{text}"));
    text
}

#[test]
fn a_detection_cell_passes_when_invalid_and_fails_when_valid() {
    let f = Fake::new();
    let file = f.file(
        "detect.toml",
        r#"
name = "detect"
[[cell]]
name = "caught"
bug = "caught"
nemesis = "isolate-leader"
seed = 3
[[cell]]
name = "missed"
bug = "missed"
nemesis = "isolate-leader"
seed = 4
[[cell]]
name = "correct"
seed = 5
[[cell]]
name = "false-alarm"
bug = "caught"
expect = "valid"
seed = 6
"#,
    );
    let out = f.path("out");
    let o = f.run(&[file.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let s = summary(&out);
    assert_eq!(
        statuses(&s),
        BTreeMap::from([
            ("caught-seed3".to_string(), "expected".to_string()),
            ("missed-seed4".to_string(), "unexpected".to_string()),
            ("correct-seed5".to_string(), "expected".to_string()),
            ("false-alarm-seed6".to_string(), "unexpected".to_string()),
        ])
    );
    let caught = &s["cells"][0];
    assert_eq!(caught["expect"], "invalid");
    assert_eq!(caught["verdict"], "invalid");
    assert_eq!(caught["exit_code"], 1);
    assert_eq!(caught["availability"], 0.9);
    assert_eq!(caught["latency_ms"]["p99"], 9.0);
    assert_eq!(
        caught["explanation"],
        "linearizable: key k1: not linearizable: op #41 `read 3` cannot be linearized"
    );
    let report = out.join(caught["report"].as_str().unwrap());
    assert!(report.is_file(), "{}", report.display());
    let missed = &s["cells"][1];
    assert_eq!(missed["verdict"], "valid");
    assert!(missed["command"].as_str().unwrap().contains("--bug missed"));
    assert!(missed["command"].as_str().unwrap().ends_with("--seed 4"));

    let xml = junit(&out);
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let failures: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("failure"))
        .collect();
    assert_eq!(failures.len(), 2, "{xml}");
    let messages: Vec<&str> = failures
        .iter()
        .map(|n| n.attribute("message").unwrap())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("did not catch")
            && m.contains("faultline run")
            && m.contains("--seed 4")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("op #41") && m.contains("--seed 6")),
        "{messages:?}"
    );
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .count(),
        4
    );

    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(
        html.contains("--bug missed --backend sandbox"),
        "rerun command on the page"
    );
    assert_links_resolve(&out);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("unexpected") && stderr.contains("rerun: faultline run"),
        "{stderr}"
    );
}

#[test]
fn unknown_is_never_a_pass_and_a_failed_run_is_an_error() {
    let f = Fake::new();
    let file = f.file(
        "u.toml",
        "[[matrix]]\nname = \"u\"\nmodes = [\"passive\", \"undecided\"]\nseeds = 1\n",
    );
    let out = f.path("out-u");
    let o = f.run(&[file.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert_eq!(summary(&out)["counts"]["unknown"], 1);
    assert!(
        junit(&out).contains("<failure"),
        "unknown is a failure in junit"
    );

    let file = f.file(
        "e.toml",
        "[[matrix]]\nname = \"e\"\nmodes = [\"passive\", \"broken\", \"undecided\"]\nseeds = 1\n",
    );
    let out = f.path("out-e");
    let o = f.run(&[file.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    let s = summary(&out);
    let broken = &s["cells"][1];
    assert_eq!(broken["status"], "error");
    assert_eq!(broken["exit_code"], 3);
    assert!(
        broken["explanation"]
            .as_str()
            .unwrap()
            .contains("--mode broken: unknown mode"),
        "{broken}"
    );
    assert!(junit(&out).contains("<error"));
    assert_links_resolve(&out);
}

const ELEVEN: &str = r#"
name = "eleven"
[[matrix]]
name = "v"
modes = ["passive", "active"]
nemeses = ["partition", "kill"]
seeds = 2
[[matrix]]
name = "b"
bugs = ["caught"]
nemeses = ["isolate-leader"]
seeds = [1, 2]
[[cell]]
name = "u"
mode = "undecided"
seed = 9
"#;

#[test]
fn every_cell_is_in_exactly_one_shard_and_merge_equals_the_unsharded_run() {
    let f = Fake::new();
    let file = f.file("eleven.toml", ELEVEN);
    let file = file.to_str().unwrap();
    let whole = f.path("whole");
    let o = f.run(&[file, "--out", whole.to_str().unwrap(), "--jobs", "3"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "one unknown cell: {}",
        describe(&o)
    );
    let whole_summary = summary(&whole);
    let all: Vec<String> = statuses(&whole_summary).into_keys().collect();
    assert_eq!(all.len(), 11);

    for n in 1..=7 {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut dirs = Vec::new();
        for i in 1..=n {
            let out = f.path(&format!("n{n}-s{i}"));
            let o = f.run(&[
                file,
                "--out",
                out.to_str().unwrap(),
                "--shard",
                &format!("{i}/{n}"),
                "--jobs",
                "2",
            ]);
            assert!(matches!(o.status.code(), Some(0 | 2)), "{}", describe(&o));
            for id in statuses(&summary(&out)).into_keys() {
                *seen.entry(id).or_default() += 1;
            }
            dirs.push(out);
        }
        assert_eq!(
            seen.keys().cloned().collect::<Vec<_>>(),
            all,
            "N={n}: every cell in some shard"
        );
        assert!(
            seen.values().all(|&k| k == 1),
            "N={n}: a cell in two shards: {seen:?}"
        );

        let merged = f.path(&format!("merged-{n}"));
        let mut args = vec!["merge"];
        args.extend(dirs.iter().rev().map(|d| d.to_str().unwrap()));
        args.extend(["--out", merged.to_str().unwrap()]);
        let o = f.run(&args);
        assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
        let m = summary(&merged);
        assert_eq!(essence(&m), essence(&whole_summary), "N={n}");
        assert_eq!(m["shards"].as_array().unwrap().len(), n);
        junit(&merged);
        // The merged page links into the shards' folders.
        for c in m["cells"].as_array().unwrap() {
            let report = merged.join(c["report"].as_str().unwrap());
            assert!(report.is_file(), "{}", report.display());
        }
    }

    // A shard left out: its cells are not run, never passed.
    let merged = f.path("merged-missing");
    let o = f.run(&[
        "merge",
        f.path("n3-s1").to_str().unwrap(),
        f.path("n3-s2").to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    let m = summary(&merged);
    assert_eq!(m["counts"]["total"], 11);
    assert!(
        m["counts"]["not_run"].as_u64().unwrap() >= 3,
        "{}",
        m["counts"]
    );
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    // The same shard twice is refused.
    let o = f.run(&[
        "merge",
        f.path("n3-s1").to_str().unwrap(),
        f.path("n3-s1").to_str().unwrap(),
        "--out",
        f.path("m2").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
}

fn wait_for_cells(out: &Path, n: usize, limit: Duration) {
    let start = Instant::now();
    loop {
        let done = std::fs::read_dir(out.join("runs"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().join("cell.json").is_file())
                    .count()
            })
            .unwrap_or(0);
        if done >= n {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "{n} cells did not finish in {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_interrupted_campaign_resumes_where_it_stopped() {
    let f = Fake::new();
    let file = f.file(
        "six.toml",
        "[[matrix]]\nname = \"r\"\nmodes = [\"passive\", \"active\"]\nseeds = 3\n",
    );
    let out = f.path("out");
    let args = [
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--jobs",
        "1",
    ];

    // SIGTERM after two cells: the running one is stopped, the rest are not run, exit 4.
    let child = f
        .campaign(&args, 0.4)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_cells(&out, 2, Duration::from_secs(20));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", describe(&o));
    let s = summary(&out);
    assert!(s["interrupted"].as_str().unwrap().contains("SIGTERM"));
    let done_before: Vec<String> = statuses(&s)
        .into_iter()
        .filter(|(_, st)| st == "expected")
        .map(|(id, _)| id)
        .collect();
    assert!(
        done_before.len() >= 2 && s["counts"]["not_run"].as_u64().unwrap() >= 2,
        "{}",
        s["counts"]
    );

    // SIGKILL in the middle of the resumed campaign: no summary, but cell.json files stay.
    let child = f
        .campaign(&[&args[..], &["--resume"]].concat(), 0.4)
        .spawn()
        .unwrap();
    wait_for_cells(&out, done_before.len() + 1, Duration::from_secs(20));
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait_with_output();

    // Resume: only the cells without a verdict run; the end result is complete.
    let before = f.invocations();
    let o = f
        .campaign(&[&args[..], &["--resume"]].concat(), 0.0)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let s = summary(&out);
    assert_eq!(s["counts"]["expected"], 6, "{}", s["counts"]);
    let after = f.invocations();
    for id in &done_before {
        assert_eq!(
            after[id], before[id],
            "{id} already had a verdict and must not run again"
        );
        assert_eq!(after[id], 1, "{id}");
    }
    assert_eq!(after.len(), 6);

    // Without --resume an output folder with results is refused.
    let o = f.run(&args);
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--resume"));
}

#[test]
fn the_budget_leaves_cells_not_run_and_keep_failed_drops_passing_histories() {
    let f = Fake::new();
    let file = f.file(
        "b.toml",
        "[[matrix]]\nname = \"k\"\nbugs = [\"none\", \"missed\"]\nseeds = 4\n",
    );
    let out = f.path("out");
    let o = f
        .campaign(
            &[
                file.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--jobs",
                "1",
                "--budget",
                "1s",
                "--keep",
                "failed",
            ],
            0.4,
        )
        .output()
        .unwrap();
    let s = summary(&out);
    let c = &s["counts"];
    assert!(c["not_run"].as_u64().unwrap() >= 3, "{c}");
    assert!(c["expected"].as_u64().unwrap() >= 1, "{c}");
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(junit(&out).contains("<skipped"));
    for cell in s["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "expected")
    {
        let dir = out.join(cell["results_dir"].as_str().unwrap());
        assert!(!dir.join("history.jsonl").exists() && !dir.join("nodes").exists());
        assert!(dir.join("results.json").is_file() && dir.join("report.html").is_file());
        assert_eq!(cell["history_dropped"], true);
    }

    // Every cell run; the unexpected ones keep their history.
    let out = f.path("out-all");
    let o = f.run(&[
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--jobs",
        "2",
        "--keep",
        "failed",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    for cell in summary(&out)["cells"].as_array().unwrap() {
        let dir = out.join(cell["results_dir"].as_str().unwrap());
        let unexpected = cell["status"] == "unexpected";
        assert_eq!(
            dir.join("history.jsonl").exists(),
            unexpected,
            "{}",
            cell["id"]
        );
    }
}

#[test]
fn a_malformed_campaign_file_names_file_line_and_key() {
    let f = Fake::new();
    let cases = [
        (
            "[[matrix]]\nname = \"a\"\nseeds = 2\ntimelimit = 5\n",
            ":4: key `matrix.timelimit`",
            "unknown field",
        ),
        (
            "[defaults]\nrate = \"fast\"\n",
            ":2: key `defaults.rate`",
            "invalid type",
        ),
        (
            "[[matrix]]\nname = \"a\"\nseeds = 2\nexpect = \"maybe\"\n",
            ":4: key `matrix.expect`",
            "maybe",
        ),
        (
            "[[matrix]]\nname = \"a\"\nmodes = [\"passive\"]\n",
            ":1: key `matrix`",
            "missing field `seeds`",
        ),
        ("name = \"x\"\n[[matrix]\n", ":2", "bad.toml"),
    ];
    for (text, at, what) in cases {
        let file = f.file("bad.toml", text);
        let o = f.run(&[
            file.to_str().unwrap(),
            "--out",
            f.path("never").to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(3), "{text}: {}", describe(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(
            err.contains(&format!("{}{at}", file.display())),
            "{text}: {err}"
        );
        assert!(err.contains(what), "{text}: {err}");
        assert!(f.invocations().is_empty(), "no cell runs on a bad file");
    }
    let o = f.run(&["/nonexistent/c.toml"]);
    assert_eq!(o.status.code(), Some(3));
    let o = f.run(&[f.path("bad.toml").to_str().unwrap(), "--shard", "4/3"]);
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
}
