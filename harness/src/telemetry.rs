//! The run's telemetry: who leads and what each node costs, sampled through the run.
//!
//! Every `EVERY` the sampler asks each node for `/status` (its view of the leader) and
//! `/metrics` (peer messages sent and received, client requests handled), and reads the
//! node process's CPU time from `/proc/<pid>/stat` when the node is a child of this
//! process (the sandbox backend; a Docker node's CPU is not visible here and stays
//! `null`). Samples go to `telemetry.jsonl` in the run's clock, one line per node per
//! round:
//!
//! ```json
//! {"time":1200345678,"node":"n1","up":true,"leader":"n2","role":"follower",
//!  "msgs_sent":812,"msgs_received":790,"requests":377,"cpu_s":0.42}
//! ```
//!
//! `results.json` derives from these the leader timeline and the cost of each interval
//! (`cost_between`): counters are deltas between the samples nearest the interval's
//! ends, a counter that went down (the node restarted) counting from zero.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::history::Clock;

/// How often the nodes are sampled: fine enough to place a leader change within a
/// 0.3-s stall, cheap enough (two small GETs per node) not to load the cluster.
pub const EVERY: Duration = Duration::from_millis(200);
/// A paused node does not answer; do not let it hold up the round.
const TIMEOUT: Duration = Duration::from_millis(150);

/// One node at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Nanoseconds on the run's clock.
    pub time: u64,
    pub node: String,
    /// Whether the node answered `/status`.
    pub up: bool,
    pub leader: Option<String>,
    pub role: Option<String>,
    pub msgs_sent: Option<u64>,
    pub msgs_received: Option<u64>,
    pub requests: Option<u64>,
    /// utime + stime of the node process, seconds.
    pub cpu_s: Option<f64>,
}

/// Sums of the counters in a Prometheus text page of a faultline node.
/// `None` when the text has none of faultline's counters (another system's `/metrics`,
/// e.g. etcd's): its cost is unknown, not zero.
fn parse_metrics(text: &str) -> Option<(u64, u64, u64)> {
    let (mut sent, mut received, mut requests) = (0, 0, 0);
    let mut ours = false;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name_labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let value = value as u64;
        if name_labels.starts_with("faultline_peer_messages_total") {
            ours = true;
            if name_labels.contains("direction=\"sent\"") {
                sent += value;
            } else if name_labels.contains("direction=\"received\"") {
                received += value;
            }
        } else if name_labels.starts_with("faultline_client_requests_total") {
            ours = true;
            requests += value;
        }
    }
    ours.then_some((sent, received, requests))
}

/// CPU seconds of this process's child running `faultline node --id <id>`, by pid as
/// this process's /proc shows it (host pids even inside the sandbox's PID namespace).
fn child_cpu(ids: &[String]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    for task in tasks.flatten() {
        let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        for pid in children.split_whitespace() {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            let Some(id) = args
                .windows(2)
                .find(|w| w[0] == b"--id")
                .and_then(|w| std::str::from_utf8(w[1]).ok())
            else {
                continue;
            };
            if !ids.iter().any(|i| i == id) || !args.iter().any(|a| *a == b"node") {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // Fields after the parenthesised command: state is field 3, utime 14, stime 15.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let (Some(u), Some(s)) = (fields.get(11), fields.get(12)) else {
                continue;
            };
            if fields.first() == Some(&"Z") {
                continue; // a killed node not yet reaped
            }
            let (Ok(u), Ok(s)) = (u.parse::<u64>(), s.parse::<u64>()) else {
                continue;
            };
            out.insert(id.to_string(), (u + s) as f64 / ticks);
        }
    }
    out
}

async fn get(http: &reqwest::Client, addr: SocketAddr, path: &str) -> Option<String> {
    let response = http
        .get(format!("http://{addr}{path}"))
        .timeout(TIMEOUT)
        .send()
        .await
        .ok()?;
    response.text().await.ok()
}

async fn sample_node(
    http: &reqwest::Client,
    id: &str,
    addr: SocketAddr,
) -> (
    String,
    bool,
    Option<String>,
    Option<String>,
    Option<(u64, u64, u64)>,
) {
    let (status, metrics) = tokio::join!(get(http, addr, "/status"), get(http, addr, "/metrics"));
    let status: Option<serde_json::Value> = status.and_then(|s| serde_json::from_str(&s).ok());
    let field = |k: &str| {
        status
            .as_ref()
            .and_then(|s| s.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    (
        id.to_string(),
        status.is_some(),
        field("leader"),
        field("role"),
        metrics.and_then(|m| parse_metrics(&m)),
    )
}

/// Samples every node every `EVERY` until `stop` turns true; writes `path`.
pub async fn run(
    ids: Vec<String>,
    addrs: Vec<SocketAddr>,
    clock: Clock,
    path: std::path::PathBuf,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .build()
        .map_err(|e| format!("telemetry client: {e}"))?;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?,
    );
    loop {
        let time = clock.now_ns();
        let rounds = ids
            .iter()
            .zip(&addrs)
            .map(|(id, addr)| sample_node(&http, id, *addr));
        let answers = futures_util::future::join_all(rounds).await;
        let cpu = {
            let ids = ids.clone();
            tokio::task::spawn_blocking(move || child_cpu(&ids))
                .await
                .unwrap_or_default()
        };
        for (node, up, leader, role, metrics) in answers {
            let sample = Sample {
                time,
                cpu_s: cpu.get(&node).copied(),
                node,
                up,
                leader,
                role,
                msgs_sent: metrics.map(|m| m.0),
                msgs_received: metrics.map(|m| m.1),
                requests: metrics.map(|m| m.2),
            };
            serde_json::to_writer(&mut out, &sample).map_err(|e| e.to_string())?;
            out.write_all(b"\n").map_err(|e| e.to_string())?;
        }
        out.flush().map_err(|e| e.to_string())?;
        if *stop.borrow() {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Reads `telemetry.jsonl`; a missing file is an empty telemetry (older runs).
pub fn read(path: &Path) -> Result<Vec<Sample>, String> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line)
                .map_err(|e| format!("{} line {}: {e}", path.display(), n + 1))?,
        );
    }
    Ok(out)
}

/// The leader at each sampling round: the claim most answering nodes make (ties: the
/// first node's), `None` when no answering node names one.
pub fn leader_timeline(samples: &[Sample]) -> Vec<(f64, Option<String>)> {
    let mut rounds: BTreeMap<u64, Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        rounds.entry(s.time).or_default().push(s);
    }
    rounds
        .into_iter()
        .map(|(time, round)| {
            let mut votes: Vec<(&str, usize)> = Vec::new();
            for l in round.iter().filter_map(|s| s.leader.as_deref()) {
                match votes.iter_mut().find(|(v, _)| *v == l) {
                    Some((_, n)) => *n += 1,
                    None => votes.push((l, 1)),
                }
            }
            let best = votes
                .iter()
                .max_by_key(|(_, n)| *n)
                .map(|(l, _)| l.to_string());
            (time as f64 / 1e9, best)
        })
        .collect()
}

/// What one node cost over an interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NodeCost {
    pub msgs_sent: u64,
    pub msgs_received: u64,
    pub requests: u64,
    /// `None` when the node's CPU time is not visible (Docker backend).
    pub cpu_s: Option<f64>,
}

/// Counter increase from `a` to `b`; a drop means the node restarted and counted from 0.
fn delta(a: Option<u64>, b: Option<u64>) -> u64 {
    match (a, b) {
        (Some(a), Some(b)) if b >= a => b - a,
        (_, Some(b)) => b,
        _ => 0,
    }
}

/// Per-node cost over `[from_s, to_s]`, between the last sample at or before `from_s`
/// with figures (else the first after) and the last at or before `to_s`.
pub fn cost_between(samples: &[Sample], from_s: f64, to_s: f64) -> BTreeMap<String, NodeCost> {
    let mut by_node: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        by_node.entry(&s.node).or_default().push(s);
    }
    let mut out = BTreeMap::new();
    for (node, list) in by_node {
        let t = |s: &Sample| s.time as f64 / 1e9;
        let first = list
            .iter()
            .rfind(|s| s.msgs_sent.is_some() && t(s) <= from_s)
            .or_else(|| list.iter().find(|s| t(s) > from_s && s.msgs_sent.is_some()));
        let last = list.iter().rfind(|s| s.msgs_sent.is_some() && t(s) <= to_s);
        let (Some(a), Some(b)) = (first, last) else {
            continue;
        };
        let cpu = |s: &Sample| s.cpu_s;
        let cpu_first = list
            .iter()
            .rfind(|s| t(s) <= from_s && s.cpu_s.is_some())
            .and_then(|s| cpu(s));
        let cpu_last = list
            .iter()
            .rfind(|s| t(s) <= to_s && s.cpu_s.is_some())
            .and_then(|s| cpu(s));
        out.insert(
            node.to_string(),
            NodeCost {
                msgs_sent: delta(a.msgs_sent, b.msgs_sent),
                msgs_received: delta(a.msgs_received, b.msgs_received),
                requests: delta(a.requests, b.requests),
                cpu_s: match (cpu_first, cpu_last) {
                    (Some(x), Some(y)) if y >= x => Some(y - x),
                    (_, Some(y)) => Some(y),
                    _ => None,
                },
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: f64, node: &str, leader: Option<&str>, sent: u64, cpu: f64) -> Sample {
        Sample {
            time: (t * 1e9) as u64,
            node: node.into(),
            up: true,
            leader: leader.map(Into::into),
            role: None,
            msgs_sent: Some(sent),
            msgs_received: Some(sent),
            requests: Some(sent / 2),
            cpu_s: Some(cpu),
        }
    }

    #[test]
    fn metrics_text_sums_by_direction() {
        let text = "# HELP x\nfaultline_peer_messages_total{node=\"n1\",peer=\"n2\",type=\"append\",direction=\"sent\"} 812\n\
faultline_peer_messages_total{node=\"n1\",peer=\"n3\",type=\"append\",direction=\"sent\"} 8\n\
faultline_peer_messages_total{node=\"n1\",peer=\"n2\",type=\"append_reply\",direction=\"received\"} 800\n\
faultline_client_requests_total{node=\"n1\",op=\"put\",outcome=\"ok\"} 377\n\
faultline_term{node=\"n1\",mode=\"passive\",role=\"leader\"} 3\n";
        assert_eq!(parse_metrics(text), Some((820, 800, 377)));
        assert_eq!(parse_metrics("etcd_server_has_leader 1\n"), None);
    }

    #[test]
    fn cost_is_a_delta_and_a_restart_counts_from_zero() {
        let samples = vec![
            s(1.0, "n1", Some("n1"), 100, 1.0),
            s(1.0, "n2", Some("n1"), 50, 0.5),
            s(3.0, "n1", Some("n1"), 400, 2.5),
            // n2 restarted: its counters began again.
            s(3.0, "n2", Some("n1"), 30, 0.1),
        ];
        let c = cost_between(&samples, 1.0, 3.0);
        assert_eq!(c["n1"].msgs_sent, 300);
        assert_eq!(c["n1"].cpu_s, Some(1.5));
        assert_eq!(c["n2"].msgs_sent, 30);
        assert_eq!(c["n2"].cpu_s, Some(0.1));
        let timeline = leader_timeline(&samples);
        assert_eq!(
            timeline,
            vec![(1.0, Some("n1".into())), (3.0, Some("n1".into()))]
        );
    }
}
