//! Throughput and latency of a 3-node loopback cluster, per mode.
//!
//! `cargo bench -p nodes --bench cluster` starts three `faultline-replica` processes,
//! then 32 concurrent clients run a 50/50 read/write mix over 100 keys for a fixed time
//! and print ops/s, p50/p99/max latency, failures, and peer messages per client op
//! (from the nodes' /metrics), node CPU time per op, and the load generator's own CPU
//! (it shares the machine with the nodes: each client keeps one HTTP/1.1 connection per
//! node, hyper's client without a pool, about half the CPU per op that reqwest took).
//! Env: BENCH_SECS (default 5), BENCH_ROUNDS (1: run the modes this many times,
//! interleaved, then print each mode's min / median / max), BENCH_PAUSE (seconds between
//! runs, 0), BENCH_FLOOR (e.g. `8000:10`: count the runs with at least 8,000 ops/s and
//! p99 under 10 ms), BENCH_CLIENTS (32), BENCH_MODES (passive,active,leaderless),
//! BENCH_TARGET (spread: clients use every node; leader: clients use the leader/primary
//! only — in leaderless mode, the first node), BENCH_NODES (3),
//! BENCH_WRITE_PCT (50), BENCH_REPLICA (path of the node binary; default this build's).

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Method;

const KEYS: u64 = 100;

struct Cluster {
    children: Vec<Child>,
    addrs: Vec<String>,
    dir: std::path::PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// BENCH_REPLICA names another build of the node (e.g. a saved copy of the previous
/// commit's), so two versions can be compared back to back under the same load.
fn replica_binary() -> std::path::PathBuf {
    std::env::var_os("BENCH_REPLICA")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_faultline-replica").into())
}

fn start(mode: &str, n: usize) -> Cluster {
    let dir = std::env::temp_dir().join(format!("faultline-bench-{}-{mode}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let addrs: Vec<String> = (0..n)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let mut children = Vec::new();
    for i in 0..n {
        let peers: Vec<String> = (0..n)
            .filter(|&j| j != i)
            .map(|j| format!("n{}={}", j + 1, addrs[j]))
            .collect();
        let child = Command::new(replica_binary())
            .args(["--id", &format!("n{}", i + 1), "--listen", &addrs[i]])
            .args(["--peers", &peers.join(","), "--mode", mode])
            .arg("--data-dir")
            .arg(dir.join(format!("n{}", i + 1)))
            .env("FAULTLINE_LOG", "warn")
            // As a deployed cluster runs: peers authenticate every call (the header check
            // is part of the per-message cost measured here).
            .env(
                "FAULTLINE_CLUSTER_SECRET",
                format!("bench-{}", std::process::id()),
            )
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn faultline-replica");
        children.push(child);
    }
    Cluster {
        children,
        addrs,
        dir,
    }
}

async fn leader(client: &reqwest::Client, addrs: &[String]) -> Option<usize> {
    for (i, a) in addrs.iter().enumerate() {
        let Ok(resp) = client.get(format!("http://{a}/status")).send().await else {
            continue;
        };
        let Ok(v) = resp.json::<serde_json::Value>().await else {
            continue;
        };
        if v["role"] == "leader" || v["role"] == "primary" {
            return Some(i);
        }
        // Leaderless: no node leads; ready once a node hears from every peer.
        let reachable = v["reachable_peers"].as_array().map_or(0, |a| a.len());
        if v["role"] == "replica" && reachable + 1 == addrs.len() {
            return Some(i);
        }
    }
    None
}

async fn messages_sent(client: &reqwest::Client, addrs: &[String]) -> u64 {
    let mut total = 0;
    for a in addrs {
        let text = client
            .get(format!("http://{a}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        total += text
            .lines()
            .filter(|l| {
                l.starts_with("faultline_peer_messages_total") && l.contains("direction=\"sent\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

/// CPU time (user + system) a process has used so far, in seconds (0 once it is gone).
fn cpu_secs(pid: &str) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the ")" that closes the command name; utime and stime are 14 and 15
    // in proc(5) numbering.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / tick
}

/// CPU time used so far by each node process, in seconds.
fn nodes_cpu_secs(cluster: &Cluster) -> Vec<f64> {
    cluster
        .children
        .iter()
        .map(|c| cpu_secs(&c.id().to_string()))
        .collect()
}

struct Figures {
    ops: u64,
    failed: u64,
    secs: f64,
    hist: Histogram<u64>,
    msgs: u64,
}

/// One client's kept-alive HTTP/1.1 connection to one node; reopened after an error.
struct Conn {
    addr: String,
    send: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl Conn {
    async fn open(addr: &str) -> Self {
        let mut c = Conn {
            addr: addr.to_string(),
            send: None,
        };
        c.connect().await;
        c
    }

    async fn connect(&mut self) {
        self.send = None;
        let Ok(tcp) = tokio::net::TcpStream::connect(&self.addr).await else {
            return;
        };
        let _ = tcp.set_nodelay(true);
        let io = hyper_util::rt::TokioIo::new(tcp);
        if let Ok((send, conn)) = hyper::client::conn::http1::handshake(io).await {
            tokio::spawn(conn);
            self.send = Some(send);
        }
    }

    /// `METHOD /kv/k{key}` with an optional JSON body; true on a 2xx answer read in full
    /// within 5 s.
    async fn call(&mut self, method: Method, key: u64, body: Option<String>) -> bool {
        if self.send.as_ref().is_none_or(|s| s.is_closed()) {
            self.connect().await;
        }
        let Some(send) = self.send.as_mut() else {
            return false;
        };
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("/kv/k{key}"))
            .header(hyper::header::HOST, &self.addr);
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .unwrap();
        let exchange = async {
            let resp = send.send_request(req).await.ok()?;
            let ok = resp.status().is_success();
            resp.into_body().collect().await.ok()?;
            Some(ok)
        };
        match tokio::time::timeout(Duration::from_secs(5), exchange).await {
            Ok(Some(ok)) => ok,
            _ => {
                self.send = None; // a late answer must not be taken for the next request's
                false
            }
        }
    }
}

/// `http` reads the nodes' /metrics; the load itself goes over [`Conn`]s.
async fn run_load(
    http: &reqwest::Client,
    addrs: Vec<String>,
    clients: usize,
    secs: u64,
    write_pct: u64,
) -> Figures {
    // Warm up connections and the leader.
    let warm_until = Instant::now() + Duration::from_millis(500);
    let stop = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let msgs_before = Arc::new(AtomicU64::new(u64::MAX));
    let mut tasks = Vec::new();
    let start_at = warm_until;
    let end_at = start_at + Duration::from_secs(secs);
    for c in 0..clients {
        let addrs = addrs.clone();
        let failed = failed.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut conns = Vec::new();
            for a in &addrs {
                conns.push(Conn::open(a).await);
            }
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let mut ops = 0u64;
            let mut x: u64 = 0x9E3779B97F4A7C15 ^ (c as u64 + 1);
            let mut n = 0u64;
            loop {
                let now = Instant::now();
                if now >= end_at || stop.load(Ordering::Relaxed) == 1 {
                    break;
                }
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let key = x % KEYS;
                let conn = &mut conns[(x as usize >> 8) % addrs.len()];
                n += 1;
                let t = Instant::now();
                let ok = if (x >> 20) % 100 >= write_pct {
                    conn.call(Method::GET, key, None).await
                } else {
                    conn.call(Method::PUT, key, Some(format!("{{\"value\":{n}}}")))
                        .await
                };
                if t >= start_at {
                    if ok {
                        hist.record(t.elapsed().as_micros() as u64).unwrap();
                        ops += 1;
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            (hist, ops)
        }));
    }
    tokio::time::sleep_until(start_at.into()).await;
    msgs_before.store(messages_sent(http, &addrs).await, Ordering::Relaxed);
    let t0 = Instant::now();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut ops = 0;
    for t in tasks {
        let (h, o) = t.await.unwrap();
        hist.add(h).unwrap();
        ops += o;
    }
    let secs = t0.elapsed().as_secs_f64();
    let msgs = messages_sent(http, &addrs).await - msgs_before.load(Ordering::Relaxed);
    Figures {
        ops,
        failed: failed.load(Ordering::Relaxed),
        secs,
        hist,
        msgs,
    }
}

/// The environment variable `name` parsed, or `default` when unset or unparsable.
fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let secs: u64 = env_or("BENCH_SECS", 5);
    let clients: usize = env_or("BENCH_CLIENTS", 32);
    let modes = std::env::var("BENCH_MODES").unwrap_or_else(|_| "passive,active,leaderless".into());
    let target = std::env::var("BENCH_TARGET").unwrap_or_else(|_| "spread".into());
    let nodes: usize = env_or("BENCH_NODES", 3);
    let write_pct: u64 = env_or("BENCH_WRITE_PCT", 50);
    let rounds: usize = env_or("BENCH_ROUNDS", 1);
    let pause: u64 = env_or("BENCH_PAUSE", 0);
    let floor: Option<(f64, f64)> = std::env::var("BENCH_FLOOR").ok().map(|f| {
        f.split_once(':')
            .and_then(|(o, p)| Some((o.parse().ok()?, p.parse().ok()?)))
            .unwrap_or_else(|| panic!("BENCH_FLOOR={f}: expected OPS_PER_S:P99_MS"))
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "{nodes}-node loopback cluster, {clients} clients, {write_pct}% writes over {KEYS} keys, {secs} s per mode, clients -> {target}"
    );
    // (mode, ops/s, p99 ms) of every run, for the summary of repeated rounds.
    let mut runs: Vec<(&str, f64, f64)> = Vec::new();
    let plan: Vec<&str> = (0..rounds).flat_map(|_| modes.split(',')).collect();
    for (k, mode) in plan.into_iter().enumerate() {
        if k > 0 && pause > 0 {
            // Lets the previous cluster's exit and writeback settle before the next run.
            std::thread::sleep(Duration::from_secs(pause));
        }
        let cluster = start(mode, nodes);
        let mut cpu_before = Vec::new();
        let mut load_cpu_before = 0.0;
        let figures = rt.block_on(async {
            let http = reqwest::Client::new();
            let deadline = Instant::now() + Duration::from_secs(10);
            let lead = loop {
                if let Some(l) = leader(&http, &cluster.addrs).await {
                    break l;
                }
                assert!(Instant::now() < deadline, "no leader/primary within 10 s");
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let addrs = if target == "leader" {
                vec![cluster.addrs[lead].clone()]
            } else {
                cluster.addrs.clone()
            };
            cpu_before = nodes_cpu_secs(&cluster);
            load_cpu_before = cpu_secs("self");
            run_load(&http, addrs, clients, secs, write_pct).await
        });
        // Includes the 0.5 s warm-up, so slightly over-counts.
        let per_node: Vec<f64> = nodes_cpu_secs(&cluster)
            .iter()
            .zip(&cpu_before)
            .map(|(a, b)| a - b)
            .collect();
        let cpu: f64 = per_node.iter().sum();
        let load_cpu = cpu_secs("self") - load_cpu_before;
        let h = &figures.hist;
        runs.push((
            mode,
            figures.ops as f64 / figures.secs,
            h.value_at_quantile(0.99) as f64 / 1000.0,
        ));
        println!(
            "{mode:>8}: {:>8.0} ops/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  failed {}  peer msgs/op {:.2}  node CPU {:.0} us/op",
            figures.ops as f64 / figures.secs,
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0,
            figures.failed,
            figures.msgs as f64 / figures.ops.max(1) as f64,
            cpu * 1e6 / figures.ops.max(1) as f64,
        );
        let shares: Vec<String> = per_node
            .iter()
            .map(|c| format!("{:.0}%", 100.0 * c / figures.secs))
            .collect();
        println!(
            "          node CPU use n1..: {}  load generator: {:.0}% ({:.0} us/op)",
            shares.join(" "),
            100.0 * load_cpu / figures.secs,
            load_cpu * 1e6 / figures.ops.max(1) as f64
        );
        drop(cluster);
    }
    if rounds > 1 {
        summarize(&modes, &runs, floor);
    }
}

/// Per mode over repeated rounds: ops/s and p99 as min / median / max, and how many runs
/// met the floor (ops/s at least, p99 under) — one run on a shared VM proves little.
fn summarize(modes: &str, runs: &[(&str, f64, f64)], floor: Option<(f64, f64)>) {
    let spread = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let mid = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        (v[0], mid, v[n - 1])
    };
    for mode in modes.split(',') {
        let mine: Vec<_> = runs.iter().filter(|r| r.0 == mode).collect();
        let (lo, mid, hi) = spread(mine.iter().map(|r| r.1).collect());
        let (plo, pmid, phi) = spread(mine.iter().map(|r| r.2).collect());
        let met = floor.map_or(String::new(), |(ops, p99)| {
            let k = mine.iter().filter(|r| r.1 >= ops && r.2 < p99).count();
            format!(
                "  at floor (>= {ops} ops/s, p99 < {p99} ms): {k} of {}",
                mine.len()
            )
        });
        println!(
            "{mode:>8} over {} runs: ops/s {lo:.0} / {mid:.0} / {hi:.0}  p99 ms {plo:.2} / {pmid:.2} / {phi:.2} (min / median / max){met}",
            mine.len()
        );
    }
}
