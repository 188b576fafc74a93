//! How many recorded ops/s the harness's client side sustains against a node that answers
//! instantly — the figure that shows the harness is never the bottleneck.
//!
//! A stub node (a minimal HTTP/1.1 responder on 127.0.0.1, its own thread) answers every
//! request at once; the
//! real `Worker` + `HttpClient` + `Recorder` stack runs flat out (`--rate 0`) and writes a
//! real history file. Run: `cargo bench -p harness --bench client_throughput`.
//! Env: `BENCH_SECONDS` (default 10), `BENCH_CONCURRENCY` (default 32).

use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::client::HttpClient;
use harness::history::{Clock, Recorder};
use harness::worker::{Shared, Stats, Worker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

    // The instant node, on one thread of its own: a minimal HTTP/1.1 responder (reads a
    // request head and body, answers a fixed 200), so the figure measures the client side
    // and as little server as possible.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        tid_tx.send(unsafe { libc::gettid() }).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (conn, _) = listener.accept().await.unwrap();
                tokio::spawn(instant_node(conn));
            }
        });
    });

    let server_tid = tid_rx.recv().unwrap();
    let cpu_before = (process_cpu_seconds(), thread_cpu_seconds(server_tid));
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
        let workload = workloads::build(WorkloadKind::Kv, 100).expect("kv is a register workload");
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
    let process_cpu = process_cpu_seconds() - cpu_before.0;
    let server_cpu = thread_cpu_seconds(server_tid) - cpu_before.1;
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
    let client_cpu = process_cpu - server_cpu;
    println!(
        "CPU per op: client side {:.1} us, stub node {:.1} us => client side alone on 2 cores: {:.0} ops/s at most; load average now {}",
        client_cpu / ops as f64 * 1e6,
        server_cpu / ops as f64 * 1e6,
        2.0 * ops as f64 / client_cpu,
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split(' ').take(3).collect::<Vec<_>>().join(" ")
    );
}

/// User + system CPU seconds of this whole process so far.
fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// User + system CPU seconds of one thread of this process, from /proc.
fn thread_cpu_seconds(tid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    // Fields after the parenthesised name: state is field 3; utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(14) + ticks(15)) / hz
}

/// Answers every request on `conn` with `200 {"value":1}` as soon as it has fully arrived.
async fn instant_node(mut conn: tokio::net::TcpStream) {
    const REPLY: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"value\":1}";
    let _ = conn.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        // Serve every complete request already buffered.
        while let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..head_end]).unwrap_or("");
            let body_len: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            let total = head_end + 4 + body_len;
            if buf.len() < total {
                break;
            }
            buf.drain(..total);
            if conn.write_all(REPLY).await.is_err() {
                return;
            }
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
