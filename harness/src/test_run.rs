//! One test from start to verdict, inside the sandbox:
//! results folder → cluster up → clients + nemesis for `--time-limit` → heal, resume,
//! restart → recovery → final reads → nodes down → check → results.json, report.html.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::backend::sandbox::NodeLaunch;
use crate::backend::Backend;
use crate::check::{self, Verdict};
use crate::cli::Plan;
use crate::client::HttpClient;
use crate::history::{Clock, Recorder};
use crate::nemesis::{self, Nemesis};
use crate::report::{self, analysis::Analysis, RunInfo};
use crate::worker::{Shared, Stats, Worker};
use crate::{progress, EXIT_ERROR};

/// Exit code of a run cut short by a signal whose history was nonetheless valid or
/// unknown (an invalid one still exits 1).
pub const EXIT_INTERRUPTED: i32 = 4;

pub fn run(plan: Plan, exe: PathBuf) -> i32 {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run_async(plan, exe)),
        Err(e) => {
            eprintln!("faultline run: cannot start the async runtime: {e}");
            EXIT_ERROR
        }
    }
}

/// Creates `STORE/<name>/<timestamp>/` and points `STORE/latest` at it.
fn results_dir(store: &Path, name: &str, started: SystemTime) -> Result<PathBuf, String> {
    let stamp: String = humantime::format_rfc3339_seconds(started)
        .to_string()
        .chars()
        .filter(|c| *c != ':' && *c != '-')
        .collect();
    let mut dir = store.join(name).join(&stamp);
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = store.join(name).join(format!("{stamp}-{n}"));
    }
    std::fs::create_dir_all(dir.join("nodes"))
        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let latest = store.join("latest");
    let _ = std::fs::remove_file(&latest);
    let target = dir.strip_prefix(store).unwrap_or(&dir);
    std::os::unix::fs::symlink(target, &latest)
        .map_err(|e| format!("linking {}: {e}", latest.display()))?;
    Ok(dir)
}

/// Waits until every node answers `/status`; `Err(node)` names the first that did not.
async fn wait_for_nodes(client: &HttpClient, n: usize, within: Duration) -> Result<(), usize> {
    let deadline = Instant::now() + within;
    for i in 0..n {
        while client.status(i, Duration::from_millis(300)).await.is_none() {
            if Instant::now() > deadline {
                return Err(i);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Waits (bounded) until some node names a leader; returns whether one did.
async fn wait_for_leader(client: &HttpClient, ids: &[String], within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if nemesis::find_leader(client, ids.len(), ids).await.is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Resolves when SIGINT, SIGTERM or SIGHUP arrives.
async fn interrupted() -> &'static str {
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    }
}

async fn run_async(plan: Plan, exe: PathBuf) -> i32 {
    let wall = Instant::now();
    let started = SystemTime::now();
    let dir = match results_dir(&plan.store, &plan.name, started) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("faultline run: {e}");
            return EXIT_ERROR;
        }
    };
    let workload = workloads::build(plan.workload, plan.keys);
    eprintln!(
        "faultline run: {} — {} {} nodes, {} workload, nemesis [{}], seed {}, results in {}",
        plan.name,
        plan.nodes,
        plan.mode.name(),
        plan.workload.name(),
        plan.nemesis
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(","),
        plan.seed,
        dir.display()
    );

    // Signals are watched from here on: a Ctrl-C during start-up still tears down.
    let interrupt: Arc<Mutex<Option<&'static str>>> = Arc::new(Mutex::new(None));
    let (stop_tx, stop_rx) = watch::channel(false);
    {
        let interrupt = interrupt.clone();
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            let sig = interrupted().await;
            *interrupt.lock().unwrap() = Some(sig);
            let _ = stop_tx.send(true);
        });
    }

    let launch = NodeLaunch {
        exe,
        mode: plan.mode.name().to_string(),
        bugs: plan.bugs.clone(),
        node_args: plan
            .bank
            .as_ref()
            .map(crate::bank::BankPlan::node_args)
            .unwrap_or_default(),
        dir: dir.join("nodes"),
    };
    let (kind, count, seed) = (plan.backend, plan.nodes, plan.seed);
    let backend: Arc<dyn Backend> = match tokio::task::spawn_blocking(move || {
        crate::backend::create(kind, count, launch, seed)
    })
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            eprintln!("faultline run: {e}");
            return EXIT_ERROR;
        }
        Err(e) => {
            eprintln!("faultline run: building the cluster panicked: {e}");
            return EXIT_ERROR;
        }
    };
    let ids: Vec<String> = backend.nodes().iter().map(|s| s.id.clone()).collect();
    let addrs: Vec<_> = backend.nodes().iter().map(|s| s.client_addr).collect();
    let client = Arc::new(HttpClient::new(&addrs));
    if let Err(i) = wait_for_nodes(&client, plan.nodes, Duration::from_secs(15)).await {
        eprintln!(
            "faultline run: node {} did not answer on {} within 15 s; see {}",
            ids[i],
            addrs[i],
            dir.join("nodes").join(format!("{}.log", ids[i])).display()
        );
        backend.teardown();
        return EXIT_ERROR;
    }
    if !wait_for_leader(&client, &ids, Duration::from_secs(10)).await {
        eprintln!("faultline run: warning: no node named a leader within 10 s; starting anyway");
    }

    let history_path = dir.join("history.jsonl");
    let clock = Clock::start();
    let (recorder, writer) = match Recorder::create(&history_path, clock) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("faultline run: creating {}: {e}", history_path.display());
            return EXIT_ERROR;
        }
    };
    let stats = Arc::new(Stats::default());
    let fault = Arc::new(Mutex::new("none".to_string()));
    let phase = Arc::new(Mutex::new("main"));
    let shared = Arc::new(Shared {
        client: client.clone(),
        recorder: recorder.clone(),
        stats: stats.clone(),
        node_ids: ids.clone(),
        op_timeout: plan.op_timeout,
        mean_gap: plan.mean_gap(),
        concurrency: plan.concurrency as u64,
    });

    let (progress_tx, progress_rx) = watch::channel(false);
    let progress = tokio::spawn(progress::run(
        stats.clone(),
        fault.clone(),
        phase.clone(),
        progress_rx,
    ));
    let workers: Vec<_> = (0..plan.concurrency)
        .filter_map(|slot| {
            // The bank workload has no register generator: its clients are `bank_run`'s.
            let workload = workload.as_ref()?;
            let mut worker = Worker::new(slot, workload.generator(plan.seed, slot), shared.clone());
            let stop = stop_rx.clone();
            Some(tokio::spawn(async move {
                worker.run(stop).await;
                worker
            }))
        })
        .collect();
    let snapshots_path = dir.join("snapshots.jsonl");
    let bank_run = match &plan.bank {
        None => None,
        Some(bank) => match crate::bank::BankRun::start(
            bank,
            plan.seed,
            plan.concurrency,
            &shared,
            &stop_rx,
            &snapshots_path,
        ) {
            Ok(run) => Some(run),
            Err(e) => {
                eprintln!("faultline run: {e}");
                let _ = stop_tx.send(true);
                let backend = backend.clone();
                let _ = tokio::task::spawn_blocking(move || backend.teardown()).await;
                return EXIT_ERROR;
            }
        },
    };
    let telemetry_path = dir.join("telemetry.jsonl");
    let telemetry = tokio::spawn(crate::telemetry::run(
        ids.clone(),
        addrs.clone(),
        clock,
        telemetry_path.clone(),
        stop_rx.clone(),
    ));
    let mut nemesis = Nemesis::new(
        plan.nemesis.clone(),
        plan.nemesis_interval,
        plan.seed,
        backend.clone(),
        client.clone(),
        recorder.clone(),
        fault.clone(),
    );
    if let Some(faults) = plan.fault_cycles {
        nemesis.limit_faults(faults);
    }
    let nemesis_task = {
        let stop = stop_rx.clone();
        tokio::spawn(async move { nemesis.run(stop).await })
    };

    // The main phase.
    {
        let mut stop = stop_rx.clone();
        tokio::select! {
            _ = tokio::time::sleep(plan.time_limit) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }
    let _ = stop_tx.send(true);
    let main_end_s = clock.now_ns() as f64 / 1e9;
    let mut finished = Vec::new();
    for w in workers {
        if let Ok(w) = w.await {
            finished.push(w);
        }
    }
    let collected = match bank_run {
        Some(run) => Some(run.finish().await),
        None => None,
    };
    let _ = nemesis_task.await;
    match telemetry.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("faultline run: warning: telemetry: {e}"),
        Err(e) => eprintln!("faultline run: warning: telemetry task: {e}"),
    }

    // Heal everything, whatever the nemesis managed to undo itself.
    *phase.lock().unwrap() = "recovery";
    *fault.lock().unwrap() = "none (healed)".into();
    {
        let backend = backend.clone();
        let n = plan.nodes;
        let _ = tokio::task::spawn_blocking(move || {
            let _ = backend.heal();
            let _ = backend.stop_packet_fault();
            for i in 0..n {
                let _ = backend.resume(i);
                let _ = backend.start(i);
            }
        })
        .await;
    }
    let was_interrupted = *interrupt.lock().unwrap();
    let mut settled = None;
    if was_interrupted.is_none() {
        let _ = wait_for_nodes(&client, plan.nodes, Duration::from_secs(10)).await;
        wait_for_leader(&client, &ids, Duration::from_secs(10)).await;
        if let Some(bank) = &plan.bank {
            *phase.lock().unwrap() = "drain";
            let clocks = plan.nemesis.contains(&nemesis::FaultKind::Clock);
            settled = Some(crate::bank::settle(&client, &ids, bank, clocks).await);
        }
        *phase.lock().unwrap() = "final reads";
        let reads: Vec<_> = std::mem::take(&mut finished)
            .into_iter()
            .map(|mut w| {
                tokio::spawn(async move {
                    w.final_reads(5).await;
                })
            })
            .collect();
        for r in reads {
            let _ = r.await;
        }
    }
    let _ = progress_tx.send(true);
    let _ = progress.await;
    drop(finished); // (empty unless interrupted) — they hold recorder clones too

    // Close the history: every recorder clone must go first.
    drop(shared);
    drop(recorder);
    let events = writer.finish();
    {
        let backend = backend.clone();
        let _ = tokio::task::spawn_blocking(move || backend.teardown()).await;
    }
    if let Err(e) = events {
        eprintln!("faultline run: writing {}: {e}", history_path.display());
        return EXIT_ERROR;
    }

    let mut bank_judgement = None;
    let outcome = match (&workload, collected) {
        (Some(workload), _) => {
            eprintln!("faultline run: checking {} ...", history_path.display());
            let model = workload.model();
            let (path, timeout) = (history_path.clone(), plan.check_timeout);
            match tokio::task::spawn_blocking(move || check::check(&path, model, timeout)).await {
                Ok(outcome) => outcome,
                Err(e) => check::CheckOutcome::failed(format!("the checker crashed: {e}")),
            }
        }
        (None, collected) => {
            eprintln!("faultline run: checking {} ...", snapshots_path.display());
            let judgement = crate::bank::judge_run(
                collected.unwrap_or_default(),
                settled,
                was_interrupted.is_some(),
                &snapshots_path,
            );
            let outcome = judgement.outcome();
            bank_judgement = Some(judgement);
            outcome
        }
    };
    let analysis = match Analysis::read(&history_path) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("faultline run: reading back {e}");
            return EXIT_ERROR;
        }
    };
    let run = RunInfo {
        test: plan.name.clone(),
        started_at: humantime::format_rfc3339_seconds(started).to_string(),
        seed: plan.seed,
        mode: plan.mode.name().into(),
        workload: plan.workload.name().into(),
        model: workload
            .as_ref()
            .map_or("bank (snapshots + conservation)", |w| {
                check::model_name(w.model())
            })
            .into(),
        nodes: plan.nodes,
        bugs: plan.bugs.clone(),
        nemesis: plan.nemesis.iter().map(|k| k.name().to_string()).collect(),
        nemesis_interval_s: plan.nemesis_interval.as_secs_f64(),
        concurrency: plan.concurrency,
        rate: plan.rate,
        keys: plan.keys,
        time_limit_s: plan.time_limit.as_secs_f64(),
        wall_time_s: wall.elapsed().as_secs_f64(),
        interrupted: was_interrupted
            .map(|s| format!("{s} received; nodes were stopped and the partial history checked")),
    };
    let mut results = report::results_json(&run, &analysis, &outcome);
    if let (Some(j), Some(bank)) = (&bank_judgement, &plan.bank) {
        results["snapshots"] = j.snapshots_json();
        results["final"] = serde_json::to_value(&j.final_state).unwrap_or_default();
        results["bank"] = serde_json::json!({
            "channels": bank.channels.name(),
            "snapshot_algo": bank.algo.name(),
            "snapshot_interval_s": bank.snapshot_interval.as_secs_f64(),
            "snapshot_timeout_s": bank.snapshot_timeout.as_secs_f64(),
            "initial_balance": bank.initial_balance,
        });
        results["files"]["snapshots"] = "snapshots.jsonl".into();
    }
    let faults = match report::faults::Faults::build(&analysis, &telemetry_path, &ids, main_end_s) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("faultline run: reading back {e}");
            return EXIT_ERROR;
        }
    };
    faults.add_to(&mut results);
    results["files"]["telemetry"] = "telemetry.jsonl".into();
    let html = report::html::render_with(&run, &analysis, &outcome, Some(&faults));
    let writes = [
        (
            "results.json",
            serde_json::to_string_pretty(&results).unwrap_or_default() + "\n",
        ),
        ("report.html", html),
    ];
    for (file, content) in writes {
        if let Err(e) = std::fs::write(dir.join(file), content) {
            eprintln!("faultline run: writing {}: {e}", dir.join(file).display());
            return EXIT_ERROR;
        }
    }

    let counts = analysis.counts();
    if let Some(j) = &bank_judgement {
        let s = &j.report.summary;
        eprintln!(
            "snapshots: {} started, {} completed, {} consistent, {} inconsistent, {} incomplete; {}",
            s.started,
            s.completed,
            s.consistent,
            s.inconsistent,
            s.incomplete,
            j.final_state.describe()
        );
    }
    if outcome.verdict != Verdict::Valid {
        eprintln!("{}", truncate_lines(&outcome.text, 30));
    }
    println!(
        "{}: {:?} — {} ops: {} ok, {} fail, {} info; availability {:.1}%; {} faults; {:.1} s; {}",
        plan.name,
        outcome.verdict,
        counts.attempted,
        counts.ok,
        counts.fail,
        counts.info,
        counts.availability() * 100.0,
        analysis.windows.len(),
        wall.elapsed().as_secs_f64(),
        dir.join("report.html").display()
    );
    match (was_interrupted, outcome.verdict) {
        (Some(_), Verdict::Valid | Verdict::Unknown) => EXIT_INTERRUPTED,
        _ => outcome.verdict.exit_code(),
    }
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
