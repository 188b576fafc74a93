//! One test from start to verdict — the pipeline. It knows no workload and no system:
//! it calls their phases in order.
//!
//! results folder → cluster up (backend + system) → history open → workload `start` +
//! nemesis, for `--time-limit` or until stopped (signal, failed history write) → workload
//! `stop` → heal, resume, restart → workload `settle` → checkers `gather` → history closed,
//! nodes down → checkers `check` → results.json, report.html, verdict.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::backend::{self, Backend, LaunchSpec};
use crate::checkers::{self, CheckOutcome, Recorded, Verdict};
use crate::history::{CappedSink, Clock, HistoryError, HistorySink, Recorder, CAP_ENV};
use crate::nemesis::Nemesis;
use crate::plan::Plan;
use crate::report::{self, analysis::Analysis, RunInfo};
use crate::system::{wait_for_leader, wait_for_nodes, Cluster};
use crate::worker::Stats;
use crate::workload::RunContext;
use crate::{progress, EXIT_ERROR};

/// Exit code of a run cut short (a signal, a failed history write) whose recorded
/// history was nonetheless valid or unknown (an invalid one still exits 1).
pub const EXIT_INTERRUPTED: i32 = 4;

/// How long nodes get to answer at start, and again after the heal.
const NODES_WITHIN: Duration = Duration::from_secs(15);
const RECOVERY_WITHIN: Duration = Duration::from_secs(10);
const LEADER_WITHIN: Duration = Duration::from_secs(10);

pub fn run(plan: Plan) -> i32 {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => {
            let store = plan.store.clone();
            let code = rt.block_on(run_async(plan));
            crate::store::hand_over(&store);
            code
        }
        Err(e) => {
            eprintln!("faultline run: cannot start the async runtime: {e}");
            EXIT_ERROR
        }
    }
}

/// Ends the main phase early, remembering the first reason.
#[derive(Clone)]
struct Stop {
    tx: watch::Sender<bool>,
    reason: Arc<Mutex<Option<String>>>,
}

impl Stop {
    fn new() -> (Self, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(false);
        let reason = Arc::new(Mutex::new(None));
        (Self { tx, reason }, rx)
    }

    /// Stops the main phase; `why` (if any) says the run was cut short.
    fn now(&self, why: Option<String>) {
        if let Some(why) = why {
            self.reason.lock().unwrap().get_or_insert(why);
        }
        let _ = self.tx.send(true);
    }

    fn cut_short(&self) -> Option<String> {
        self.reason.lock().unwrap().clone()
    }
}

async fn run_async(plan: Plan) -> i32 {
    let (wall, started) = (Instant::now(), SystemTime::now());
    let dir = match crate::store::create_run_dir(&plan.store, &plan.name, started) {
        Ok(dir) => dir,
        Err(e) => return fail(e),
    };
    eprintln!(
        "faultline run: {} — {}, {} workload, nemesis [{}], seed {}, results in {}",
        plan.name,
        plan.system.describe(plan.nodes),
        plan.workload.name(),
        fault_names(&plan).join(","),
        plan.seed,
        crate::store::shown(&plan.store, &dir).display()
    );
    // Signals are watched from here on: a Ctrl-C during start-up still tears down.
    let (stop, stop_rx) = Stop::new();
    watch_signals(stop.clone());

    let Some((backend, cluster)) = start_cluster(&plan, &dir).await else {
        return EXIT_ERROR;
    };
    let partition_via = backend.partition_via();
    let history_path = dir.join("history.jsonl");
    let (recorder, writer) = match open_history(&history_path, stop.clone()) {
        Ok(r) => r,
        Err(e) => {
            teardown(&backend).await;
            return fail(format!("creating {}: {e}", history_path.display()));
        }
    };
    let stats = Arc::new(Stats::default());
    let fault = Arc::new(Mutex::new("none".to_string()));
    let phase = Arc::new(Mutex::new("main"));
    let ctx = RunContext {
        cluster: cluster.clone(),
        recorder: recorder.clone(),
        stats: stats.clone(),
        node_ids: backend.nodes().iter().map(|s| s.id.clone()).collect(),
        seed: plan.seed,
        concurrency: plan.concurrency,
        op_timeout: plan.op_timeout,
        mean_gap: plan.mean_gap(),
        dir: dir.clone(),
        faults: plan.nemesis.clone(),
        stop: stop_rx.clone(),
        phase: phase.clone(),
    };
    let (progress_tx, progress_rx) = watch::channel(false);
    let progress = tokio::spawn(progress::run(
        stats,
        fault.clone(),
        phase.clone(),
        progress_rx,
    ));
    let mut workload = match plan.workload.start(&ctx) {
        Ok(w) => w,
        Err(e) => {
            stop.now(None);
            teardown(&backend).await;
            return fail(e);
        }
    };
    let node_ids: Vec<String> = backend.nodes().iter().map(|s| s.id.clone()).collect();
    let clock = recorder.clock();
    let telemetry_path = dir.join("telemetry.jsonl");
    let telemetry = tokio::spawn(crate::telemetry::run(
        node_ids.clone(),
        backend.nodes().iter().map(|s| s.client_addr).collect(),
        clock,
        telemetry_path,
        stop_rx.clone(),
    ));
    let mut nemesis = Nemesis::new(
        plan.nemesis.clone(),
        plan.nemesis_interval,
        plan.seed,
        backend.clone(),
        cluster.clone(),
        recorder.clone(),
        fault.clone(),
    );
    if let Some(faults) = plan.fault_cycles {
        nemesis.limit_faults(faults);
    }
    let nemesis_task = tokio::spawn(async move { nemesis.run(stop_rx).await });

    // The main phase.
    {
        let mut stopped = ctx.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(plan.time_limit) => {}
            _ = stopped.wait_for(|s| *s) => {}
        }
    }
    stop.now(None);
    let main_end_s = clock.now_ns() as f64 / 1e9;
    workload.stop().await;
    let _ = nemesis_task.await;
    match telemetry.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("faultline run: warning: telemetry: {e}"),
        Err(e) => eprintln!("faultline run: warning: telemetry task: {e}"),
    }

    *phase.lock().unwrap() = "recovery";
    *fault.lock().unwrap() = "none (healed)".into();
    heal_all(&backend).await;
    let cut_short = stop.cut_short();
    if cut_short.is_none() {
        let _ = wait_for_nodes(&*cluster, plan.nodes, RECOVERY_WITHIN).await;
        if cluster.has_leader() {
            wait_for_leader(&*cluster, LEADER_WITHIN).await;
        }
        workload.settle().await;
    }
    let mut checkers = workload.judge(cut_short.as_deref());
    checkers.extend(plan.system.checkers());
    // Every run, every workload: a system without a replica-state endpoint says `skipped`.
    checkers.push(Box::new(checkers::convergence::ReplicaConvergence::new(
        backend.nodes().iter().map(|s| s.id.clone()).collect(),
    )));
    if cut_short.is_none() {
        *phase.lock().unwrap() = "gather";
        for checker in &mut checkers {
            checker.gather(&*cluster).await;
        }
    }
    let _ = progress_tx.send(true);
    let _ = progress.await;
    drop((ctx, recorder));
    let closed = writer.finish();
    teardown(&backend).await;
    if let Err(HistoryError::Panicked) = closed {
        return fail(format!(
            "writing {}: the history writer panicked",
            history_path.display()
        ));
    }
    let cut_short = stop.cut_short();

    let recorded = Recorded {
        dir: dir.clone(),
        history: history_path.clone(),
        check_timeout: plan.check_timeout,
        interrupted: cut_short.clone(),
    };
    let mut outcomes = Vec::with_capacity(checkers.len());
    for checker in checkers {
        outcomes.push(checkers::run_check(checker, recorded.clone()).await);
    }
    let verdict = checkers::combine(&outcomes);
    let run = run_info(&plan, started, wall, cut_short.clone());
    let sampled = Sampled {
        node_ids,
        main_end_s,
        partition_via,
    };
    report_and_exit(&plan, &dir, &run, verdict, &outcomes, wall, &sampled)
}

/// What the report needs beyond the history: the node ids and when the main phase ended
/// (telemetry.jsonl is read back from the results folder).
struct Sampled {
    node_ids: Vec<String>,
    main_end_s: f64,
    /// How the backend partitions (results.json `partition_via`), if it has a choice.
    partition_via: Option<&'static str>,
}

/// Prints `e` as the run's one error line; returns the error exit code.
fn fail(e: impl std::fmt::Display) -> i32 {
    eprintln!("faultline run: {e}");
    EXIT_ERROR
}

fn fault_names(plan: &Plan) -> Vec<String> {
    plan.nemesis.iter().map(|k| k.name().to_string()).collect()
}

/// Stops the main phase on SIGINT, SIGTERM or SIGHUP.
fn watch_signals(stop: Stop) {
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        let sig = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
            _ = hup.recv() => "SIGHUP",
        };
        stop.now(Some(format!(
            "{sig} received; nodes were stopped and the partial history checked"
        )));
    });
}

/// Starts the nodes and waits until every one answers; `None` after saying why (and
/// tearing down what was started).
async fn start_cluster(plan: &Plan, dir: &Path) -> Option<(Arc<dyn Backend>, Arc<dyn Cluster>)> {
    let launch = LaunchSpec {
        system: plan.system.clone(),
        count: plan.nodes,
        dir: dir.join("nodes"),
        seed: plan.seed,
    };
    let kind = plan.backend;
    let backend = match tokio::task::spawn_blocking(move || backend::create(kind, &launch)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            fail(e);
            return None;
        }
        Err(e) => {
            fail(format!("building the cluster panicked: {e}"));
            return None;
        }
    };
    let cluster = plan.system.connect(backend.nodes());
    if let Err(i) = wait_for_nodes(&*cluster, plan.nodes, NODES_WITHIN).await {
        let node = &backend.nodes()[i];
        fail(format!(
            "node {} did not answer on {} within {} s; see {}",
            node.id,
            node.client_addr,
            NODES_WITHIN.as_secs(),
            dir.join("nodes").join(format!("{}.log", node.id)).display()
        ));
        teardown(&backend).await;
        return None;
    }
    // A leaderless cluster never names a leader: waiting for one would only cost time.
    if cluster.has_leader() && !wait_for_leader(&*cluster, LEADER_WITHIN).await {
        eprintln!("faultline run: warning: no node named a leader within 10 s; starting anyway");
    }
    Some((backend, cluster))
}

/// Opens `history.jsonl`; its first write error stops the main phase at once.
fn open_history(
    path: &Path,
    stop: Stop,
) -> std::io::Result<(Recorder, crate::history::RecorderHandle)> {
    let file = File::create(path)?;
    let sink: Box<dyn HistorySink> = match std::env::var(CAP_ENV).ok().and_then(|v| v.parse().ok())
    {
        Some(cap) => Box::new(CappedSink::new(file, cap)),
        None => Box::new(file),
    };
    let shown = path.display().to_string();
    let on_error = Box::new(move |e: &HistoryError| {
        eprintln!("faultline run: {shown}: {e}; stopping the main phase now (what was written will be checked)");
        stop.now(Some(format!(
            "{e}; the main phase was stopped and the history written up to then was checked"
        )));
    });
    Recorder::create_with(sink, Clock::start(), on_error)
}

/// Heals everything, whatever the nemesis managed to undo itself.
async fn heal_all(backend: &Arc<dyn Backend>) {
    let backend = backend.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let _ = backend.heal();
        let _ = backend.stop_packet_fault();
        for i in 0..backend.nodes().len() {
            let _ = backend.resume(i);
            let _ = backend.start(i);
        }
    })
    .await;
}

async fn teardown(backend: &Arc<dyn Backend>) {
    let backend = backend.clone();
    let _ = tokio::task::spawn_blocking(move || backend.teardown()).await;
}

fn run_info(plan: &Plan, started: SystemTime, wall: Instant, cut_short: Option<String>) -> RunInfo {
    RunInfo {
        test: plan.name.clone(),
        started_at: humantime::format_rfc3339_seconds(started).to_string(),
        seed: plan.seed,
        system: plan.system.name().into(),
        mode: plan.mode.name().into(),
        workload: plan.workload.name().into(),
        model: plan.workload.model(),
        nodes: plan.nodes,
        bugs: plan.bugs.iter().map(|b| b.name().to_string()).collect(),
        nemesis: fault_names(plan),
        nemesis_interval_s: plan.nemesis_interval.as_secs_f64(),
        concurrency: plan.concurrency,
        rate: plan.rate,
        keys: plan.keys,
        time_limit_s: plan.time_limit.as_secs_f64(),
        wall_time_s: wall.elapsed().as_secs_f64(),
        interrupted: cut_short,
    }
}

/// Writes results.json (first: it carries the verdict) and report.html, prints the
/// verdict line, and returns the exit code. Only a results.json that cannot be written
/// is an error exit; a failed report.html is a warning, never hiding the verdict.
fn report_and_exit(
    plan: &Plan,
    dir: &Path,
    run: &RunInfo,
    verdict: Verdict,
    outcomes: &[CheckOutcome],
    wall: Instant,
    sampled: &Sampled,
) -> i32 {
    let history = dir.join("history.jsonl");
    let analysis = match Analysis::read(&history) {
        Ok(a) => a,
        Err(e) => return fail(format!("reading back {e}")),
    };
    let mut results =
        report::results_json(run, &analysis, verdict, outcomes, &plan.workload.results());
    if let (Some(via), Some(map)) = (sampled.partition_via, results.as_object_mut()) {
        map.insert("partition_via".into(), via.into());
    }
    let faults = match report::faults::Faults::build(
        &analysis,
        &dir.join("telemetry.jsonl"),
        &sampled.node_ids,
        sampled.main_end_s,
    ) {
        Ok(f) => f,
        Err(e) => return fail(format!("reading back {e}")),
    };
    faults.add_to(&mut results);
    results["files"]["telemetry"] = "telemetry.jsonl".into();
    let results_written = write_whole(
        &dir.join("results.json"),
        &(serde_json::to_string_pretty(&results).unwrap_or_default() + "\n"),
    );
    let html = report::html::render_with(run, &analysis, verdict, outcomes, Some(&faults));
    let report_path = dir.join("report.html");
    if let Err(e) = write_whole(&report_path, &html) {
        eprintln!("faultline run: warning: {e}; results.json has the verdict");
    }
    for outcome in outcomes {
        if let Some(summary) = &outcome.summary {
            eprintln!("{summary}");
        }
        if outcome.verdict != Verdict::Valid {
            eprintln!("{}", truncate_lines(&outcome.text, 30));
        }
    }
    let counts = analysis.counts();
    println!(
        "{}: {:?} — {} ops: {} ok, {} fail, {} info; availability {:.1}%; {} faults; {:.1} s; {}",
        plan.name,
        verdict,
        counts.attempted,
        counts.ok,
        counts.fail,
        counts.info,
        counts.availability() * 100.0,
        analysis.windows.len(),
        wall.elapsed().as_secs_f64(),
        crate::store::shown(&plan.store, &report_path).display()
    );
    if let Err(e) = results_written {
        return fail(format!("{e}; the verdict above was not saved"));
    }
    match (&run.interrupted, verdict) {
        (Some(_), Verdict::Valid | Verdict::Unknown) => EXIT_INTERRUPTED,
        _ => verdict.exit_code(),
    }
}

/// Writes `content` to `path` whole or not at all (a temporary file renamed over it), so a
/// full disk never leaves a torn results.json behind.
fn write_whole(path: &Path, content: &str) -> Result<(), crate::store::StoreError> {
    let tmp: PathBuf = path.with_extension("tmp");
    std::fs::write(&tmp, content)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|source| {
            let _ = std::fs::remove_file(&tmp);
            crate::store::StoreError::new("writing", path, source)
        })
}

fn truncate_lines(text: &str, max: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= max {
        return text.to_string();
    }
    format!(
        "{}\n... ({} more lines in results.json)",
        lines[..max].join("\n"),
        lines.len() - max
    )
}
