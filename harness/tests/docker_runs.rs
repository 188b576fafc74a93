//! End-to-end runs of `faultline run --backend docker` with the real nodes in containers.
//!
//! Needs a reachable Docker daemon. Without one these tests print a loud `SKIPPED` line
//! and pass — unless FAULTLINE_REQUIRE_DOCKER=1, when they fail (CI on a machine with
//! Docker sets it). The image is built from the binary under test with
//! scripts/docker-image.sh (a no-op when the image's binary hash already matches).
//! Runs are serialized: one cluster at a time on a two-core machine.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::MutexGuard;

use common::{describe, faultline, latest_results, lock, run_in_store};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness/ has a parent")
        .to_path_buf()
}

/// Whether the tests can run here; prints the reason when they cannot.
fn docker_ready() -> bool {
    let required = std::env::var("FAULTLINE_REQUIRE_DOCKER").as_deref() == Ok("1");
    let info = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .output();
    let reason = match info {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "the Docker daemon is not reachable: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("the docker client is not installed: {e}")),
    };
    match reason {
        None => true,
        Some(reason) if required => panic!("FAULTLINE_REQUIRE_DOCKER=1 but {reason}"),
        Some(reason) => {
            eprintln!(
                "\n*** SKIPPED docker_runs: {reason} (set FAULTLINE_REQUIRE_DOCKER=1 to fail instead) ***\n"
            );
            false
        }
    }
}

fn build_image() {
    let out = Command::new(repo_root().join("scripts/docker-image.sh"))
        .arg(env!("CARGO_BIN_EXE_faultline"))
        .stdin(Stdio::null())
        .output()
        .expect("scripts/docker-image.sh runs");
    assert!(
        out.status.success(),
        "building the image: {}",
        describe(&out)
    );
}

/// One cluster at a time, with an image of the binary under test.
fn lock_and_build() -> MutexGuard<'static, ()> {
    let guard = lock();
    build_image();
    guard
}

/// `lock_and_build`, or `None` (after saying why) where there is no Docker to run on.
fn docker_cluster() -> Option<MutexGuard<'static, ()>> {
    docker_ready().then(lock_and_build)
}

/// IDs of containers and networks carrying `label` (`faultline.run` or `faultline.run=ID`).
fn labelled(label: &str) -> Vec<String> {
    let mut left = Vec::new();
    for what in [&["ps", "-a"][..], &["network", "ls"][..]] {
        let out = Command::new("docker")
            .args(what)
            .args(["-q", "--filter", &format!("label={label}")])
            .output()
            .expect("docker runs");
        assert!(out.status.success(), "{}", describe(&out));
        left.extend(
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(|s| format!("{} {s}", what[0])),
        );
    }
    left
}

/// What a run left behind, found by the run label it printed.
fn leftovers_of(out: &Output) -> Vec<String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let label = stderr
        .split_whitespace()
        .find(|w| w.starts_with("faultline.run="))
        .map(|w| w.trim_end_matches(';').to_string())
        .unwrap_or_else(|| panic!("the run printed no run label:\n{}", describe(out)));
    labelled(&label)
}

fn assert_nothing_left(out: &Output) {
    assert_eq!(
        leftovers_of(out),
        Vec::<String>::new(),
        "run left Docker objects behind"
    );
}

/// A `--backend docker` run in a store of its own, which must leave a log for every node.
fn docker_run(args: &[&str]) -> (Output, serde_json::Value) {
    let store = tempfile::tempdir().unwrap();
    let (out, results, dir) = run_in_store(
        faultline()
            .args(["run", "--backend", "docker", "--seed", "11"])
            .args(args),
        store.path(),
    );
    for node in ["n1", "n2", "n3"] {
        let log = dir.join("nodes").join(format!("{node}.log"));
        let text = std::fs::read_to_string(&log)
            .unwrap_or_else(|e| panic!("no {} ({e}):\n{}", log.display(), describe(&out)));
        assert!(!text.is_empty(), "{} is empty", log.display());
    }
    (out, results)
}

#[test]
fn correct_nodes_stay_valid_under_partition_kill_and_pause() {
    let Some(_guard) = docker_cluster() else {
        return;
    };
    let (out, results) = docker_run(&[
        "--nemesis",
        "partition,kill,pause",
        "--time-limit",
        "10",
        "--nemesis-interval",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(results["verdict"], "valid", "{results:#}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("partitions via nftables"),
        "as root with nft, partitions must be real packet drops:\n{stderr}"
    );
    // Each fault family really happened against the containers.
    let faults = serde_json::to_string(&results["nemesis"]).unwrap();
    for kind in ["partition", "kill", "pause"] {
        assert!(faults.contains(kind), "no {kind} fault recorded: {faults}");
    }
    assert!(
        results["ops"]["ok"].as_u64().unwrap_or(0) > 100,
        "the cluster hardly served anything: {results:#}"
    );
    assert_partitions_dropped_packets(&results);
    assert_nothing_left(&out);
}

/// The packets the kernel counted on each partition's drop rules, read just before the
/// heal (`"ended": "heal (the cut dropped N packets)"`): every healed partition window
/// has a count, and together they dropped real packets. (One window may count 0: a cut
/// between two followers that had nothing to say to each other.)
fn assert_partitions_dropped_packets(results: &serde_json::Value) {
    let windows: Vec<&serde_json::Value> = results["nemesis"]
        .as_array()
        .expect("nemesis windows")
        .iter()
        .filter(|w| w["fault"] == "partition" && w["ended"].is_string())
        .collect();
    assert!(!windows.is_empty(), "no healed partition: {results:#}");
    let mut total = 0;
    for w in &windows {
        let ended = w["ended"].as_str().unwrap();
        let n: u64 = ended
            .split("dropped ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("partition window without a drop count: {w}"));
        total += n;
    }
    assert!(
        total > 0,
        "partitions dropped no packet at all: {windows:#?}"
    );
}

#[test]
fn a_buggy_cluster_is_caught_in_containers() {
    let Some(_guard) = docker_cluster() else {
        return;
    };
    // stale-read serves reads from a deposed leader: isolating the leader exposes it.
    let (out, results) = docker_run(&[
        "--bug",
        "stale-read",
        "--nemesis",
        "isolate-leader",
        "--time-limit",
        "10",
        "--nemesis-interval",
        "2",
        "--rate",
        "400",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(results["verdict"], "invalid", "{results:#}");
    assert_nothing_left(&out);
}

#[test]
fn packet_faults_really_delay_and_drop_between_containers() {
    let Some(_guard) = docker_cluster() else {
        return;
    };
    let (out, results) = docker_run(&[
        "--nemesis",
        "packet",
        "--time-limit",
        "8",
        "--nemesis-interval",
        "1.5",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(results["verdict"], "valid", "{results:#}");
    let windows = results["nemesis"].as_array().expect("nemesis windows");
    assert!(
        windows.iter().any(|w| w["fault"] == "packet"),
        "no packet fault recorded: {results:#}"
    );
    // Replication crosses the faulted links: some client ops must have waited for
    // delayed or retransmitted packets (without faults, p99 here is a few ms).
    let p99 = results["latency_ms"]["p99"].as_f64().unwrap_or(0.0);
    assert!(
        p99 > 40.0,
        "p99 {p99} ms: were packets delayed at all? {results:#}"
    );
    assert_nothing_left(&out);
}

#[test]
fn compose_outside_its_container_is_refused_in_one_line() {
    // --backend compose is the compose file's test service; on a host it says so (or
    // that there is no daemon) in one line, before making anything.
    let store = tempfile::tempdir().unwrap();
    let out = faultline()
        .args([
            "run",
            "--backend",
            "compose",
            "--nemesis",
            "partition",
            "--store",
        ])
        .arg(store.path())
        .stdin(Stdio::null())
        .output()
        .expect("faultline runs");
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(
        last.contains("compose") || last.contains("Docker daemon"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("faultline.run="),
        "it made something: {stderr}"
    );
}

#[test]
fn a_dead_runs_leftovers_are_removed_by_the_next_run() {
    let Some(_guard) = docker_cluster() else {
        return;
    };
    // What a SIGKILLed harness leaves: a labelled network whose owner PID is gone.
    let out = Command::new("docker")
        .args([
            "network",
            "create",
            "--internal",
            "--label",
            "faultline.run=deadbeef",
            "--label",
            "faultline.pid=999999999",
            "--label",
            "faultline.pid-start=1",
            "faultline-test-leftover",
        ])
        .output()
        .expect("docker runs");
    assert!(out.status.success(), "{}", describe(&out));
    let (out, _) = docker_run(&["--nemesis", "none", "--time-limit", "2", "--nodes", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("deadbeef"),
        "{}",
        describe(&out)
    );
    assert_eq!(labelled("faultline.run=deadbeef"), Vec::<String>::new());
    assert_nothing_left(&out);
}

/// `docker-compose` (v1), else `docker compose` (v2), if either is installed.
fn compose_command() -> Option<Vec<&'static str>> {
    let works = |cmd: &[&str]| {
        Command::new(cmd[0])
            .args(&cmd[1..])
            .arg("version")
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success())
    };
    [vec!["docker-compose"], vec!["docker", "compose"]]
        .into_iter()
        .find(|c| works(c))
}

/// `docker compose run --rm test` with these knobs, in a project and store of its own;
/// `None` (after saying why) where there is no Docker or no compose.
fn compose_run(knobs: &[(&str, &str)]) -> Option<(Output, tempfile::TempDir)> {
    if !docker_ready() {
        return None;
    }
    let Some(compose) = compose_command() else {
        if std::env::var("FAULTLINE_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!("FAULTLINE_REQUIRE_DOCKER=1 but neither docker-compose nor `docker compose` is installed");
        }
        eprintln!("\n*** SKIPPED compose test: neither docker-compose nor `docker compose` is installed ***\n");
        return None;
    };
    let _guard = lock_and_build();
    let store = tempfile::tempdir().unwrap();
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let project = format!(
        "faultline-test-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    let run = |args: &[&str]| {
        Command::new(compose[0])
            .args(&compose[1..])
            .args(["-p", &project, "-f"])
            .arg(repo_root().join("docker-compose.yml"))
            .args(args)
            .env("FAULTLINE_STORE", store.path())
            .envs(knobs.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("compose runs")
    };
    // The documented command: no --abort-on-container-exit anywhere.
    let out = run(&["run", "--rm", "test"]);
    // Whatever the run's end, the project's own (control) network is gone before `down`.
    let left = Command::new("docker")
        .args(["network", "ls", "-q", "--filter"])
        .arg(format!("label=com.docker.compose.project={project}"))
        .output()
        .expect("docker runs");
    let left = String::from_utf8_lossy(&left.stdout).trim().to_string();
    let down = run(&["down", "-t", "1"]);
    assert!(
        left.is_empty(),
        "the run left the project's network {left} until `down`:\n{}",
        describe(&out)
    );
    assert!(down.status.success(), "compose down: {}", describe(&down));
    Some((out, store))
}

/// The run label the harness printed, and that nothing carrying it is left.
fn assert_compose_left_nothing(out: &Output) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let label = all
        .split_whitespace()
        .find(|w| w.starts_with("faultline.run="))
        .map(|w| w.trim_end_matches(';').to_string())
        .unwrap_or_else(|| panic!("no run label printed:\n{}", describe(out)));
    assert_eq!(labelled(&label), Vec::<String>::new(), "left behind");
}

#[test]
fn compose_runs_real_partitions_and_packet_faults_and_names_the_host_folder() {
    // The results go to the user compose names (FAULTLINE_OWNER), not to root.
    let Some((out, store)) = compose_run(&[
        ("FAULTLINE_TIME_LIMIT", "10"),
        ("FAULTLINE_NEMESIS_INTERVAL", "1"),
        ("FAULTLINE_NEMESIS", "partition,packet,kill"),
        ("FAULTLINE_OWNER", "4321:4322"),
    ]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let verdict = stdout
        .lines()
        .find(|l| l.contains(": Valid"))
        .unwrap_or_else(|| panic!("no verdict line:\n{}", describe(&out)));
    // The folder as the host sees it, not the container's /store.
    assert!(
        verdict.contains(&store.path().display().to_string()),
        "{verdict}"
    );
    let (results, _) = latest_results(store.path(), &out);
    assert_eq!(results["verdict"], "valid", "{results:#}");
    assert_eq!(results["partition_via"], "nftables", "{results:#}");
    let faults = serde_json::to_string(&results["nemesis"]).unwrap();
    for kind in ["partition", "packet"] {
        assert!(faults.contains(kind), "no {kind} fault recorded: {faults}");
    }
    assert_partitions_dropped_packets(&results);
    // Every file and folder of the run belongs to 4321:4322, none to root.
    let (_, dir) = latest_results(store.path(), &out);
    let mut stack = vec![dir.clone(), dir.parent().unwrap().to_path_buf()];
    let mut seen = 0;
    while let Some(p) = stack.pop() {
        use std::os::unix::fs::MetadataExt;
        let meta = p.symlink_metadata().unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (4321, 4322),
            "{} is not the invoking user's",
            p.display()
        );
        seen += 1;
        if meta.is_dir() && p != dir.parent().unwrap() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    assert!(seen > 5, "too few files checked: {seen}");
    assert_compose_left_nothing(&out);
}

#[test]
fn a_refused_compose_run_leaves_nothing_behind() {
    // A bad knob: refused in one line before any node exists; the project's network
    // (made by compose for the test service) is gone too (checked in compose_run).
    let Some((out, store)) = compose_run(&[("FAULTLINE_NODES", "0")]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("--nodes"), "{all}");
    assert!(!all.contains("faultline.run="), "it made something: {all}");
    assert_eq!(
        std::fs::read_dir(store.path()).unwrap().count(),
        0,
        "a refused run made a results folder"
    );
}

/// etcd as the system under test on the Docker backend: five members in containers (the
/// binary bind-mounted into faultline's image), under partitions and kills.
#[test]
fn etcd_members_in_containers_stay_valid() {
    let Some(bin) = harness::system::etcd::bin_for_test("etcd_members_in_containers_stay_valid")
    else {
        return;
    };
    let Some(_guard) = docker_cluster() else {
        return;
    };
    let store = tempfile::tempdir().unwrap();
    let (out, results, dir) = run_in_store(
        faultline()
            .args([
                "run",
                "--backend",
                "docker",
                "--system",
                "etcd",
                "--etcd-bin",
            ])
            .arg(&bin)
            .args([
                "--nodes",
                "5",
                "--nemesis",
                "partition,kill",
                "--time-limit",
                "10",
                "--nemesis-interval",
                "1.5",
                "--seed",
                "5",
            ]),
        store.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(results["verdict"], "valid", "{results:#}");
    assert_eq!(results["run"]["system"], "etcd", "{results:#}");
    assert_eq!(results["partition_via"], "nftables", "{results:#}");
    let faults = serde_json::to_string(&results["nemesis"]).unwrap();
    for kind in ["partition", "kill"] {
        assert!(faults.contains(kind), "no {kind} fault recorded: {faults}");
    }
    assert!(
        results["ops"]["ok"].as_u64().unwrap_or(0) > 100,
        "the cluster hardly served anything: {results:#}"
    );
    assert_partitions_dropped_packets(&results);
    // Every member's log is etcd's (zap JSON lines naming the member), data kept.
    for i in 1..=5 {
        let log = std::fs::read_to_string(dir.join(format!("nodes/n{i}.log")))
            .unwrap_or_else(|e| panic!("n{i}.log: {e}\n{}", describe(&out)));
        assert!(log.contains("etcd"), "n{i}.log is not etcd's: {log:.300}");
        assert!(
            dir.join(format!("nodes/n{i}.data/member")).is_dir(),
            "n{i} kept no etcd data"
        );
    }
    assert_nothing_left(&out);
}
