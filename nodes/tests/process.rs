//! Real node processes: `kill -9` of the leader, failover, and restart from the data
//! directory; the command line's answers to bad flags; the process's huge-page setting.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(8);

async fn kill9_leader_then_restart(name: &str, mode: &'static str) {
    let mut p = Processes::start(name, 3, mode);
    let addrs = p.addrs.clone();
    put_until_ok(&addrs, "a", json!(1), WITHIN).await;
    let old = p.leader().await;
    p.kill9(old);
    let survivors: Vec<String> = (0..3)
        .filter(|&i| i != old)
        .map(|i| addrs[i].clone())
        .collect();
    put_until_ok(&survivors, "a", json!(2), WITHIN).await;
    let new = p.leader().await;
    assert_ne!(new, old);
    p.spawn(old);
    assert_eq!(get_until_ok(&addrs[old], "a", WITHIN).await, json!(2));
    // Its own log survived: its applied index catches up to the leader's commit.
    let target = status(&addrs[new]).await["commit_index"].as_u64().unwrap();
    let deadline = std::time::Instant::now() + WITHIN;
    while status(&addrs[old]).await["applied_index"].as_u64().unwrap() < target {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_kill9_leader_failover_and_restart() {
    kill9_leader_then_restart("pk9", "passive").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_kill9_primary_failover_and_restart() {
    kill9_leader_then_restart("ak9", "active").await;
}

fn node(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_faultline-replica"))
        .args(args)
        .env_remove("FAULTLINE_BUGS")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_flags_exit_2_with_one_clear_line() {
    let dir = temp_dir("flags");
    let d = dir.to_str().unwrap();
    let t = std::time::Instant::now();
    let (code, err) = node(&["--id", "n1", "--data-dir", d, "--bug", "bogus"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("--bug bogus: no such bug; known bugs in passive mode: stale-read"),
        "{err}"
    );
    let (code, err) = node(&["--id", "n1", "--data-dir", d, "--peers", "n2:7002"]);
    assert_eq!(code, 2);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--peers"), "{err}");
    let (code, err) = node(&[
        "--id",
        "n1",
        "--data-dir",
        d,
        "--mode",
        "active",
        "--bug",
        "stale-read",
    ]);
    assert_eq!(code, 2);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("--bug stale-read: does not exist in active mode")
            && err.contains("deliver-unagreed"),
        "{err}"
    );
    // Refused at argument parsing, before any port or data dir is touched.
    assert!(
        t.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        t.elapsed()
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, err) = node(&["--id", "n1", "--data-dir", d, "--listen", &addr]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--listen"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A node started without a cluster secret says so in one warning line, and serves.
#[test]
fn node_without_a_secret_warns_once() {
    use std::io::BufRead;
    let dir = temp_dir("nosecret");
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_faultline-replica"))
        .args([
            "--id",
            "n1",
            "--listen",
            &addr,
            "--data-dir",
            dir.to_str().unwrap(),
        ])
        .env_remove("FAULTLINE_CLUSTER_SECRET")
        .env("FAULTLINE_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut warnings = Vec::new();
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(2)) {
        if line.contains("no cluster secret") {
            warnings.push(line);
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(dir);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("FAULTLINE_CLUSTER_SECRET"),
        "{warnings:?}"
    );
}

/// A node turns transparent huge pages off for itself (their 2 MiB zero-fills inside page
/// faults stalled its loop; nodes/README.md, "Huge pages and the command table"), unless
/// `MIMALLOC_ALLOW_THP` is set, which leaves the choice to mimalloc.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_runs_without_huge_pages_unless_told() {
    fn thp_enabled(pid: u32) -> Option<bool> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("THP_enabled:"))?;
        Some(line.split_whitespace().nth(1)? == "1")
    }
    let Some(ours) = thp_enabled(std::process::id()) else {
        return; // not Linux, or a kernel without the flag: nothing to check
    };
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return; // the nodes would inherit it: the default cannot be seen here
    }
    for (env, want) in [(&[][..], false), (&[("MIMALLOC_ALLOW_THP", "1")][..], ours)] {
        let p = Processes::start_with_env("thp", 1, "passive", env);
        // Serving means `run` is past its first step, where the flag is set.
        let deadline = std::time::Instant::now() + WITHIN;
        while try_status(&p.addrs[0]).await.is_none() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got = thp_enabled(p.children[0].as_ref().unwrap().id());
        assert_eq!(got, Some(want), "env {env:?}");
    }
}

fn signal(p: &Processes, i: usize, sig: &str) {
    let pid = p.children[i].as_ref().unwrap().id().to_string();
    let ok = Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// SIGSTOP leaves the leader's TCP connections open but silent (as a hung link does):
/// the others must time out, fail over and keep serving; on SIGCONT it rejoins.
async fn paused_leader_then_resume(name: &str, mode: &'static str) {
    let mut p = Processes::start(name, 3, mode);
    let addrs = p.addrs.clone();
    put_until_ok(&addrs, "p", json!(1), WITHIN).await;
    let old = p.leader().await;
    signal(&p, old, "-STOP");
    let others: Vec<String> = (0..3)
        .filter(|&i| i != old)
        .map(|i| addrs[i].clone())
        .collect();
    let t = std::time::Instant::now();
    put_until_ok(&others, "p", json!(2), WITHIN).await;
    let failover = t.elapsed();
    signal(&p, old, "-CONT");
    assert_eq!(get_until_ok(&addrs[old], "p", WITHIN).await, json!(2));
    put_until_ok(&addrs, "p", json!(3), WITHIN).await;
    for a in &addrs {
        assert_eq!(get_until_ok(a, "p", WITHIN).await, json!(3));
    }
    assert!(
        failover < Duration::from_secs(5),
        "failover took {failover:?}"
    );
    p.kill9(old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_paused_leader_fails_over_and_rejoins() {
    paused_leader_then_resume("ppause", "passive").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_paused_primary_fails_over_and_rejoins() {
    paused_leader_then_resume("apause", "active").await;
}
