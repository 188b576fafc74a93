//! Reads `history.jsonl` back and derives what the report shows: one record per client
//! op (call, return, outcome), the nemesis windows, counts and latency quantiles.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Fail,
    Info,
    /// Invoked but never completed (the run was cut short).
    Open,
}

#[derive(Debug, Clone)]
pub struct OpRecord {
    pub f: String,
    pub start_ns: u64,
    pub end_ns: Option<u64>,
    pub outcome: Outcome,
    /// The node the client talked to (the invocation's `node`), when recorded.
    pub node: Option<String>,
    /// A `fail` that is an answer: a cas refused because the current value differs.
    pub cas_mismatch: bool,
}

impl OpRecord {
    pub fn latency_ms(&self) -> Option<f64> {
        self.end_ns
            .map(|e| e.saturating_sub(self.start_ns) as f64 / 1e6)
    }
}

/// A fault in force from `start_s` to `end_s` (seconds since the test started).
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub fault: String,
    pub description: String,
    pub start_s: f64,
    pub end_s: f64,
    /// What the fault's undoing reported (`heal (the cut dropped 812 packets)`); empty
    /// when the run ended with the fault in force.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ended: String,
}

#[derive(Debug, Default)]
pub struct Analysis {
    pub ops: Vec<OpRecord>,
    pub windows: Vec<Window>,
    pub end_s: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub attempted: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    pub open: u64,
    /// Of `fail`: cas ops answered "the current value differs" — the system working.
    pub cas_mismatch: u64,
}

impl Counts {
    /// ok plus cas mismatches: requests the system answered.
    pub fn answered(&self) -> u64 {
        self.ok + self.cas_mismatch
    }

    /// answered / attempted: the share of client requests the system answered (a cas
    /// refused because the value differs is an answer, not an outage).
    pub fn availability(&self) -> f64 {
        if self.attempted == 0 {
            0.0
        } else {
            self.answered() as f64 / self.attempted as f64
        }
    }
}

#[derive(Deserialize)]
struct Line {
    #[serde(rename = "type")]
    kind: String,
    process: serde_json::Value,
    f: String,
    #[serde(default)]
    value: serde_json::Value,
    time: u64,
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// The error the client records for a cas refused because the value differs
/// (`crate::client`); such a `fail` is an answer.
pub const CAS_MISMATCH: &str = "cas mismatch";

/// The fault a nemesis event opens or closes.
fn nemesis_edge(f: &str) -> Option<(&'static str, bool)> {
    Some(match f {
        "start-partition" => ("partition", true),
        "stop-partition" => ("partition", false),
        "kill" => ("kill", true),
        "restart" => ("kill", false),
        "pause" => ("pause", true),
        "resume" => ("pause", false),
        "start-packet" => ("packet", true),
        "stop-packet" => ("packet", false),
        "start-clock" => ("clock", true),
        "stop-clock" => ("clock", false),
        _ => return None,
    })
}

/// Why a history could not be read back for the report.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} line {line}: {source}", path.display())]
    Parse {
        path: std::path::PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

impl Analysis {
    pub fn read(path: &Path) -> Result<Self, AnalysisError> {
        let io = |source| AnalysisError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut analysis = Analysis::default();
        let mut open: HashMap<u64, usize> = HashMap::new();
        // One open window per fault kind: a majority restarted apart is cut off by a
        // partition that starts before its kill window closes.
        let mut open_windows: Vec<(String, String, f64)> = Vec::new();
        let mut last_ns = 0;
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(io)?;
            if line.trim().is_empty() {
                continue;
            }
            let ev: Line = serde_json::from_str(&line).map_err(|source| AnalysisError::Parse {
                path: path.to_path_buf(),
                line: n + 1,
                source,
            })?;
            last_ns = last_ns.max(ev.time);
            let t = ev.time as f64 / 1e9;
            match ev.process.as_u64() {
                Some(p) => {
                    if ev.kind == "invoke" {
                        open.insert(p, analysis.ops.len());
                        analysis.ops.push(OpRecord {
                            f: ev.f,
                            start_ns: ev.time,
                            end_ns: None,
                            outcome: Outcome::Open,
                            node: ev.node,
                            cas_mismatch: false,
                        });
                    } else if let Some(i) = open.remove(&p) {
                        let op = &mut analysis.ops[i];
                        op.end_ns = Some(ev.time);
                        op.outcome = match ev.kind.as_str() {
                            "ok" => Outcome::Ok,
                            "fail" => Outcome::Fail,
                            _ => Outcome::Info,
                        };
                        op.cas_mismatch = op.outcome == Outcome::Fail
                            && ev.error.as_deref() == Some(CAS_MISMATCH);
                    }
                }
                None if ev.kind == "info" => {
                    // Nemesis: windows open at the start's completion, close at the stop's.
                    let Some((fault, starts)) = nemesis_edge(&ev.f) else {
                        continue;
                    };
                    let description = ev
                        .value
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| ev.value.to_string());
                    if starts {
                        open_windows.retain(|(f, _, _)| f != fault);
                        open_windows.push((fault.to_string(), description, t));
                    } else if let Some(i) = open_windows.iter().position(|(f, _, _)| f == fault) {
                        let (fault, start_description, start_s) = open_windows.remove(i);
                        analysis.windows.push(Window {
                            fault,
                            description: start_description,
                            start_s,
                            end_s: t,
                            ended: description,
                        });
                    }
                }
                None => {}
            }
        }
        analysis.end_s = last_ns as f64 / 1e9;
        for (fault, description, start_s) in open_windows {
            analysis.windows.push(Window {
                fault,
                description,
                start_s,
                end_s: analysis.end_s,
                ended: String::new(),
            });
        }
        analysis
            .windows
            .sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
        Ok(analysis)
    }

    pub fn counts(&self) -> Counts {
        count(self.ops.iter())
    }

    /// Counts and latency quantiles per op type.
    pub fn by_f(&self) -> BTreeMap<String, serde_json::Value> {
        let mut fs: Vec<&str> = self.ops.iter().map(|o| o.f.as_str()).collect();
        fs.sort();
        fs.dedup();
        fs.into_iter()
            .map(|f| {
                let counts = count(self.ops.iter().filter(|o| o.f == f));
                let value = serde_json::json!({
                    "ops": counts,
                    "availability": counts.availability(),
                    "latency_ms": self.latency_quantiles(Some(f)),
                });
                (f.to_string(), value)
            })
            .collect()
    }

    /// Latency quantiles (ms) of ok ops, all types or one.
    pub fn latency_quantiles(&self, f: Option<&str>) -> serde_json::Value {
        let mut hist =
            Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
        for op in self
            .ops
            .iter()
            .filter(|o| o.outcome == Outcome::Ok && f.is_none_or(|f| o.f == f))
        {
            if let Some(end) = op.end_ns {
                let micros = (end.saturating_sub(op.start_ns) / 1000).clamp(1, 3_600_000_000);
                hist.saturating_record(micros);
            }
        }
        if hist.is_empty() {
            return serde_json::Value::Null;
        }
        let q = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
        serde_json::json!({
            "count": hist.len(),
            "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999),
            "max": hist.max() as f64 / 1000.0, "mean": hist.mean() / 1000.0,
        })
    }

    /// Completions per second, by outcome: `(second, outcome) -> count`.
    pub fn throughput(&self) -> BTreeMap<Outcome, Vec<u64>> {
        let seconds = self.end_s.ceil() as usize + 1;
        let mut out: BTreeMap<Outcome, Vec<u64>> = BTreeMap::new();
        for op in &self.ops {
            if let Some(end) = op.end_ns {
                let bucket = ((end / 1_000_000_000) as usize).min(seconds - 1);
                out.entry(op.outcome).or_insert_with(|| vec![0; seconds])[bucket] += 1;
            }
        }
        out
    }
}

fn count<'a>(ops: impl Iterator<Item = &'a OpRecord>) -> Counts {
    let mut c = Counts::default();
    for op in ops {
        c.attempted += 1;
        match op.outcome {
            Outcome::Ok => c.ok += 1,
            Outcome::Fail => {
                c.fail += 1;
                c.cas_mismatch += op.cas_mismatch as u64;
            }
            Outcome::Info => c.info += 1,
            Outcome::Open => c.open += 1,
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_ops_and_nemesis_windows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        std::fs::write(
            &path,
            r#"{"type":"invoke","process":0,"f":"write","key":"k1","value":1,"time":1000000000}
{"type":"invoke","process":1,"f":"read","key":"k1","value":null,"time":1100000000}
{"type":"ok","process":0,"f":"write","key":"k1","value":1,"time":1002000000}
{"type":"invoke","process":"nemesis","f":"start-partition","value":"halves","time":1500000000}
{"type":"info","process":"nemesis","f":"start-partition","value":"halves","time":1600000000}
{"type":"info","process":1,"f":"read","key":"k1","value":null,"time":2100000000}
{"type":"invoke","process":"nemesis","f":"stop-partition","value":"heal","time":3000000000}
{"type":"info","process":"nemesis","f":"stop-partition","value":"heal","time":3100000000}
{"type":"invoke","process":11,"f":"cas","key":"k1","value":[1,2],"time":3200000000}
"#,
        )
        .unwrap();
        let a = Analysis::read(&path).unwrap();
        let c = a.counts();
        assert_eq!((c.attempted, c.ok, c.fail, c.info, c.open), (3, 1, 0, 1, 1));
        assert!((c.availability() - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(a.windows.len(), 1);
        assert_eq!(a.windows[0].fault, "partition");
        assert!(
            (a.windows[0].start_s - 1.6).abs() < 1e-9 && (a.windows[0].end_s - 3.1).abs() < 1e-9
        );
        let lat = a.latency_quantiles(Some("write"));
        assert!((lat["p50"].as_f64().unwrap() - 2.0).abs() < 0.01, "{lat}");
    }
}
