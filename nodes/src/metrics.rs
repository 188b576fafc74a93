//! Counters behind `GET /metrics`, rendered as Prometheus text.
//!
//! A plain mutex-guarded map: a few tens of thousands of increments a second are nothing
//! next to the HTTP work around each, and a map lets peers and message types be labels
//! without knowing them in advance.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use crate::machine::Status;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    Sent,
    Received,
}

#[derive(Default)]
pub struct Metrics {
    messages: Mutex<BTreeMap<(String, &'static str, Direction), u64>>,
    clients: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl Metrics {
    pub fn message(&self, peer: &str, kind: &'static str, dir: Direction) {
        let mut m = self.messages.lock().unwrap();
        *m.entry((peer.to_string(), kind, dir)).or_default() += 1;
    }

    pub fn client(&self, op: &'static str, outcome: &'static str) {
        *self
            .clients
            .lock()
            .unwrap()
            .entry((op, outcome))
            .or_default() += 1;
    }

    /// Total peer messages sent by this node (for benchmarks: messages per client op).
    pub fn messages_sent(&self) -> u64 {
        let m = self.messages.lock().unwrap();
        m.iter()
            .filter(|((_, _, d), _)| *d == Direction::Sent)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn render(&self, id: &str, mode: &str, status: &Status) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP faultline_peer_messages_total Peer protocol messages, replies included.\n",
        );
        out.push_str("# TYPE faultline_peer_messages_total counter\n");
        for ((peer, kind, dir), n) in self.messages.lock().unwrap().iter() {
            let dir = match dir {
                Direction::Sent => "sent",
                Direction::Received => "received",
            };
            let _ = writeln!(
                out,
                "faultline_peer_messages_total{{node=\"{id}\",peer=\"{peer}\",type=\"{kind}\",direction=\"{dir}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP faultline_client_requests_total Client requests by operation and outcome.\n",
        );
        out.push_str("# TYPE faultline_client_requests_total counter\n");
        for ((op, outcome), n) in self.clients.lock().unwrap().iter() {
            let _ = writeln!(
                out,
                "faultline_client_requests_total{{node=\"{id}\",op=\"{op}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        let gauges = [
            (
                "faultline_term",
                "Current term (passive) or view (active).",
                status.term,
            ),
            (
                "faultline_commit_index",
                "Highest log index known committed.",
                status.commit_index,
            ),
            (
                "faultline_applied_index",
                "Highest log index applied to the store.",
                status.applied_index,
            ),
            (
                "faultline_last_index",
                "Last index in the local log.",
                status.last_index,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            let _ = writeln!(
                out,
                "{name}{{node=\"{id}\",mode=\"{mode}\",role=\"{}\"}} {v}",
                status.role
            );
        }
        out
    }
}
