//! Test clusters on 127.0.0.1: nodes in-process (each on its own thread and the runtime
//! `faultline node` would give it — one thread by default; "killed" by shutting
//! the runtime down with no graceful shutdown) or as real processes of the
//! `faultline-replica` binary (killed with SIGKILL).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nodes::{Bug, Channels, Config, Mode, NodeArgs};
use serde_json::{json, Value};

/// The cluster secret every test cluster runs with; the test HTTP client sends it.
pub const SECRET: &str = "test-cluster-secret";

/// Fast timers so elections and view changes take a fraction of a second.
pub fn args(
    id: &str,
    listen: &str,
    peers: &str,
    mode: Mode,
    dir: &std::path::Path,
    bugs: &[Bug],
) -> NodeArgs {
    NodeArgs {
        id: id.into(),
        listen: listen.into(),
        peers: peers.into(),
        mode,
        data_dir: dir.to_path_buf(),
        bugs: bugs.iter().map(|b| b.name().to_string()).collect(),
        tick_ms: 5,
        // Short enough for quick failovers, long enough that a CI machine running many
        // clusters on 2 cores does not miss heartbeats and depose healthy leaders.
        heartbeat_ms: 40,
        election_timeout_ms: 300,
        peer_timeout_ms: 300,
        request_timeout_ms: 1500,
        max_body_bytes: 4096,
        worker_threads: 1,
        initial_balance: 1000,
        channels: Channels::Fifo,
        cluster_secret: Some(SECRET.into()),
        deterministic_roll: false,
        idle_timeout_ms: 30_000,
    }
}

pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("faultline-nodes-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Member {
    id: String,
    addr: SocketAddr,
    thread: Option<NodeThread>,
}

/// A node's thread: it runs the node's runtime until told to stop, then
/// drops every task of it at once (no graceful shutdown).
struct NodeThread {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// An in-process cluster.
pub struct Cluster {
    members: Vec<Member>,
    mode: Mode,
    bugs: Vec<Bug>,
    dir: PathBuf,
    /// Adjusts every node's flags (e.g. the bank's) before it starts.
    tweak: fn(&mut NodeArgs),
}

impl Cluster {
    pub fn start(name: &str, n: usize, mode: Mode, bugs: &[Bug]) -> Cluster {
        Cluster::start_with(name, n, mode, bugs, |_| {})
    }

    pub fn start_with(
        name: &str,
        n: usize,
        mode: Mode,
        bugs: &[Bug],
        tweak: fn(&mut NodeArgs),
    ) -> Cluster {
        let dir = temp_dir(name);
        let listeners: Vec<std::net::TcpListener> = (0..n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let members = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| Member {
                id: format!("n{}", i + 1),
                addr: l.local_addr().unwrap(),
                thread: None,
            })
            .collect();
        let mut cluster = Cluster {
            members,
            mode,
            bugs: bugs.to_vec(),
            dir,
            tweak,
        };
        for (i, l) in listeners.into_iter().enumerate() {
            cluster.launch(i, l);
        }
        cluster
    }

    fn args(&self, i: usize) -> NodeArgs {
        let peers: Vec<String> = self
            .members
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, m)| format!("{}={}", m.id, m.addr))
            .collect();
        let m = &self.members[i];
        let mut a = args(
            &m.id,
            &m.addr.to_string(),
            &peers.join(","),
            self.mode,
            &self.dir.join(&m.id),
            &self.bugs,
        );
        (self.tweak)(&mut a);
        a
    }

    fn launch(&mut self, i: usize, listener: std::net::TcpListener) {
        let args = self.args(i);
        let rt = nodes::runtime(args.worker_threads).unwrap();
        let config = Config::from_args(args).unwrap();
        listener.set_nonblocking(true).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                tokio::select! {
                    result = nodes::serve(config, listener) => if let Err(e) = result {
                        eprintln!("node stopped: {e}");
                    },
                    _ = stopped => {}
                }
            });
            rt.shutdown_background();
        });
        self.members[i].thread = Some(NodeThread { stop, thread });
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn id(&self, i: usize) -> String {
        self.members[i].id.clone()
    }

    pub fn addr(&self, i: usize) -> String {
        self.members[i].addr.to_string()
    }

    pub fn addrs(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.addr(i)).collect()
    }

    /// Crash node i: its runtime stops with no graceful shutdown; only what it fsync'd
    /// counts.
    pub fn kill(&mut self, i: usize) {
        if let Some(node) = self.members[i].thread.take() {
            let _ = node.stop.send(());
            let _ = node.thread.join();
        }
    }

    pub fn restart(&mut self, i: usize) {
        let addr = self.members[i].addr;
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match std::net::TcpListener::bind(addr) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("rebind {addr}: {e}"),
            }
        };
        self.launch(i, listener);
    }

    /// Two-way cut between the groups, via the nodes' admin endpoints.
    pub async fn partition(&self, a: &[usize], b: &[usize]) {
        let ids = |g: &[usize]| g.iter().map(|&i| self.id(i)).collect::<Vec<_>>();
        for &i in a {
            isolate(&self.addr(i), &ids(b)).await;
        }
        for &i in b {
            isolate(&self.addr(i), &ids(a)).await;
        }
    }

    pub async fn heal(&self) {
        for i in 0..self.len() {
            if self.members[i].thread.is_some() {
                heal(&self.addr(i)).await;
            }
        }
    }

    /// Waits until some node among `among` says it leads (passive leader / active
    /// primary) and returns its index.
    pub async fn leader_among(&self, among: &[usize]) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for &i in among {
                if self.members[i].thread.is_none() {
                    continue;
                }
                if let Some(s) = try_status(&self.addr(i)).await {
                    if s["role"] == "leader" || s["role"] == "primary" {
                        return i;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader among {among:?} within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn leader(&self) -> usize {
        self.leader_among(&(0..self.len()).collect::<Vec<_>>())
            .await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A cluster of real `faultline-replica` processes.
pub struct Processes {
    pub children: Vec<Option<Child>>,
    pub addrs: Vec<String>,
    pub dir: PathBuf,
    mode: &'static str,
    /// Extra environment for every node (e.g. the bank's flags).
    env: Vec<(String, String)>,
}

impl Processes {
    pub fn start(name: &str, n: usize, mode: &'static str) -> Processes {
        Processes::start_with_env(name, n, mode, &[])
    }

    pub fn start_with_env(
        name: &str,
        n: usize,
        mode: &'static str,
        env: &[(&str, &str)],
    ) -> Processes {
        let dir = temp_dir(name);
        let addrs: Vec<String> = (0..n)
            .map(|_| {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().to_string()
            })
            .collect();
        let mut p = Processes {
            children: (0..n).map(|_| None).collect(),
            addrs,
            dir,
            mode,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        for i in 0..n {
            p.spawn(i);
        }
        p
    }

    pub fn spawn(&mut self, i: usize) {
        let peers: Vec<String> = (0..self.addrs.len())
            .filter(|&j| j != i)
            .map(|j| format!("n{}={}", j + 1, self.addrs[j]))
            .collect();
        let child = Command::new(env!("CARGO_BIN_EXE_faultline-replica"))
            .env("FAULTLINE_ID", format!("n{}", i + 1))
            .env("FAULTLINE_LISTEN", &self.addrs[i])
            .env("FAULTLINE_PEERS", peers.join(","))
            .env("FAULTLINE_MODE", self.mode)
            .env("FAULTLINE_DATA_DIR", self.dir.join(format!("n{}", i + 1)))
            .env("FAULTLINE_TICK_MS", "5")
            .env("FAULTLINE_HEARTBEAT_MS", "25")
            .env("FAULTLINE_ELECTION_TIMEOUT_MS", "150")
            .env("FAULTLINE_REQUEST_TIMEOUT_MS", "1500")
            .env("FAULTLINE_LOG", "warn")
            .env("FAULTLINE_CLUSTER_SECRET", SECRET)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn faultline-replica");
        self.children[i] = Some(child);
    }

    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }

    pub async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for i in 0..self.addrs.len() {
                if self.children[i].is_none() {
                    continue;
                }
                if let Some(s) = try_status(&self.addrs[i]).await {
                    if s["role"] == "leader" || s["role"] == "primary" {
                        return i;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill9(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn http() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-faultline-secret", SECRET.parse().unwrap());
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// (status code, JSON body).
pub async fn request(method: &str, url: String, body: Option<Value>) -> (u16, Value) {
    let c = http();
    let mut rb = match method {
        "GET" => c.get(url),
        "PUT" => c.put(url),
        _ => c.post(url),
    };
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    match rb.send().await {
        Ok(r) => {
            let code = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            (
                code,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        }
        Err(e) => (0, json!({"error": e.to_string()})),
    }
}

pub async fn put(addr: &str, key: &str, value: Value) -> (u16, Value) {
    request(
        "PUT",
        format!("http://{addr}/kv/{key}"),
        Some(json!({ "value": value })),
    )
    .await
}

pub async fn put_body(addr: &str, key: &str, body: Value) -> (u16, Value) {
    request("PUT", format!("http://{addr}/kv/{key}"), Some(body)).await
}

pub async fn cas(addr: &str, key: &str, body: Value) -> (u16, Value) {
    request("POST", format!("http://{addr}/kv/{key}/cas"), Some(body)).await
}

pub async fn get(addr: &str, key: &str) -> (u16, Value) {
    request("GET", format!("http://{addr}/kv/{key}"), None).await
}

pub async fn try_status(addr: &str) -> Option<Value> {
    let (code, v) = request("GET", format!("http://{addr}/status"), None).await;
    (code == 200).then_some(v)
}

pub async fn status(addr: &str) -> Value {
    try_status(addr).await.expect("status")
}

pub async fn isolate(addr: &str, peers: &[String]) {
    let (code, v) = request(
        "POST",
        format!("http://{addr}/admin/isolate"),
        Some(json!({ "peers": peers })),
    )
    .await;
    assert_eq!(code, 200, "{v}");
}

pub async fn heal(addr: &str) {
    let (code, v) = request("POST", format!("http://{addr}/admin/heal"), None).await;
    assert_eq!(code, 200, "{v}");
}

/// Retries a put through `addrs` (round robin) until one answers 200.
pub async fn put_until_ok(addrs: &[String], key: &str, value: Value, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    let mut k = 0;
    loop {
        let i = k % addrs.len();
        let (code, body) = put(&addrs[i], key, value.clone()).await;
        if code == 200 {
            return i;
        }
        assert!(
            Instant::now() < deadline,
            "put {key} never succeeded; last {code} {body}"
        );
        k += 1;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// Sends a request again while the node answers a definite 503 (no leader known right
/// now, e.g. during an election): such an answer guarantees nothing was applied, so a
/// retry is the same request, not a second one. Any other answer is returned.
pub async fn retry_definite<F, Fut>(within: Duration, mut send: F) -> (u16, Value)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (u16, Value)>,
{
    let deadline = Instant::now() + within;
    loop {
        let (code, body) = send().await;
        if code != 503 || body["definite"] != json!(true) || Instant::now() >= deadline {
            return (code, body);
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// Retries a read through `addr` until it answers 200; returns the value.
pub async fn get_until_ok(addr: &str, key: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (code, body) = get(addr, key).await;
        if code == 200 {
            return body["value"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "get {key} at {addr} never succeeded; last {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}
