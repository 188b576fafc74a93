//! How many recorded ops/s the harness's client side sustains against a node that answers
//! instantly — the figure that shows the harness is never the bottleneck.
//!
//! A stub node (axum on 127.0.0.1, its own runtime) answers every request at once; the
//! real `Worker` + `HttpClient` + `Recorder` stack runs flat out (`--rate 0`) and writes a
//! real history file. Run: `cargo bench -p harness --bench client_throughput`.
//! Env: `BENCH_SECONDS` (default 10), `BENCH_CONCURRENCY` (default 32).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::{Json, Router};
use harness::client::HttpClient;
use harness::history::{Clock, Recorder};
use harness::worker::{Shared, Stats, Worker};
use tokio::sync::watch;
use workloads::WorkloadKind;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let seconds = env_or("BENCH_SECONDS", 10);
    let concurrency = env_or("BENCH_CONCURRENCY", 32) as usize;

    // The instant node, on one thread of its own.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = server_rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route(
            "/kv/{key}",
            get(|| async { Json(serde_json::json!({ "value": 1 })) }).put(|| async { "" }),
        )
        .route("/kv/{key}/cas", post(|| async { "" }))
        .route(
            "/status",
            get(|| async { Json(serde_json::json!({ "id": "n1", "leader": "n1" })) }),
        );
    server_rt.spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.jsonl");
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (ops, elapsed, events) = client_rt.block_on(async {
        let (recorder, writer) = Recorder::create(&history, Clock::start()).unwrap();
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(Shared {
            client: Arc::new(HttpClient::new(&[addr])),
            recorder: recorder.clone(),
            stats: stats.clone(),
            node_ids: vec!["n1".into()],
            op_timeout: Duration::from_secs(2),
            mean_gap: Duration::ZERO,
            concurrency: concurrency as u64,
        });
        let workload = workloads::build(WorkloadKind::Kv, 100);
        let (stop_tx, stop_rx) = watch::channel(false);
        let start = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
            .map(|slot| {
                let mut w = Worker::new(slot, workload.generator(1, slot), shared.clone());
                let stop = stop_rx.clone();
                tokio::spawn(async move { w.run(stop).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop_tx.send(true).unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        let elapsed = start.elapsed();
        drop(shared);
        drop(recorder);
        let events = writer.finish().unwrap();
        (stats.completed(), elapsed, events)
    });
    let lines = std::fs::read_to_string(&history).unwrap().lines().count() as u64;
    assert_eq!(lines, events, "every event reached the file");
    println!(
        "client side vs instant node: {} ops in {:.2} s = {:.0} recorded ops/s ({} workers, {} history lines)",
        ops,
        elapsed.as_secs_f64(),
        ops as f64 / elapsed.as_secs_f64(),
        concurrency,
        lines
    );
}
