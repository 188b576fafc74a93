//! The data model of one collected snapshot, as the initiator reports it (one JSON object;
//! a snapshots file is JSON Lines, one snapshot a line).
//!
//! Conventions the nodes must follow so the checker can judge a snapshot on its own:
//! - Channels are ordered pairs of distinct nodes of `Snapshot::nodes` (a full mesh).
//!   Transfers on channel i→j carry sequence numbers 1, 2, 3, ... per channel; `0` means
//!   "none yet".
//! - Vector clocks map node id to counter (absent = 0). A node increments its own entry on
//!   every transfer send and every transfer delivery (after merging the message's clock);
//!   a transfer carries the sender's clock *after* the send's increment. Markers are
//!   control messages: they neither carry nor change clocks, and recording a checkpoint is
//!   not an event. The clock at the cut is the node's clock at the instant it records.
//! - `sent` and `received` are read at that same instant. `received[i]` is the last seq on
//!   i→j *delivered* to the application (credited); with FIFO delivery the delivered seqs
//!   are exactly `1..=received[i]`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A node's name, as in `faultline node --id`.
pub type NodeId = String;

/// Node id → counter; an absent entry is 0.
pub type VectorClock = BTreeMap<NodeId, u64>;

/// The value of `node`'s entry in `clock`.
pub fn clock_entry(clock: &VectorClock, node: &str) -> u64 {
    clock.get(node).copied().unwrap_or(0)
}

/// How the snapshot was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// Markers on FIFO channels; channel state recorded.
    ChandyLamport,
    /// Every node records at an agreed wall-clock instant; no markers, no channel state.
    Clock,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::ChandyLamport => "chandy-lamport",
            Algorithm::Clock => "clock",
        }
    }
}

/// An ordered pair of nodes: messages go from `from` to `to`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Channel {
    pub from: NodeId,
    pub to: NodeId,
}

impl Channel {
    pub fn new(from: &str, to: &str) -> Self {
        Channel {
            from: from.to_string(),
            to: to.to_string(),
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}→{}", self.from, self.to)
    }
}

/// One transfer message: `from` debited `amount` and sent it as message `seq` on from→to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub from: NodeId,
    pub to: NodeId,
    pub seq: u64,
    pub amount: i64,
    /// The sender's vector clock at the send (after its increment).
    #[serde(default)]
    pub clock: VectorClock,
}

impl Transfer {
    pub fn channel(&self) -> Channel {
        Channel::new(&self.from, &self.to)
    }
}

/// What one node recorded at its cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub node: NodeId,
    /// The account balance at the cut.
    pub balance: i64,
    /// The vector clock at the cut.
    #[serde(default)]
    pub clock: VectorClock,
    /// Per outgoing channel (keyed by receiver): last seq sent before the cut. Absent = 0.
    #[serde(default)]
    pub sent: BTreeMap<NodeId, u64>,
    /// Per incoming channel (keyed by sender): last seq delivered before the cut. Absent = 0.
    #[serde(default)]
    pub received: BTreeMap<NodeId, u64>,
    /// Per incoming channel (keyed by sender): the transfers recorded as in flight, in the
    /// order they arrived. Absent = none (always so for the clock algorithm).
    #[serde(default)]
    pub channels: BTreeMap<NodeId, Vec<Transfer>>,
}

impl Checkpoint {
    pub fn sent_to(&self, to: &str) -> u64 {
        self.sent.get(to).copied().unwrap_or(0)
    }
    pub fn received_from(&self, from: &str) -> u64 {
        self.received.get(from).copied().unwrap_or(0)
    }
    pub fn in_flight_from(&self, from: &str) -> &[Transfer] {
        self.channels.get(from).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// One collected global snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Unique per run.
    pub id: u64,
    pub initiator: NodeId,
    pub algorithm: Algorithm,
    /// The money in the system: the sum of the initial balances.
    pub initial_total: i64,
    /// Every node that takes part; channels are every ordered pair of them.
    pub nodes: Vec<NodeId>,
    /// The checkpoints received, one per node at most.
    #[serde(default)]
    pub checkpoints: Vec<Checkpoint>,
    /// Nodes the initiator never heard from (it gave up waiting). Nodes of `nodes` without a
    /// checkpoint count as missing whether listed here or not.
    #[serde(default)]
    pub missing: Vec<NodeId>,
    /// Chandy–Lamport channels whose closing marker never arrived (recording never stopped).
    #[serde(default)]
    pub open_channels: Vec<Channel>,
    /// Harness clock (ns) when the snapshot was requested and when it completed or was
    /// given up; for latency figures only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ns: Option<u64>,
    /// Optional ground truth: every transfer message sent during the run (at least up to
    /// the cut), from the senders' own logs. With it, amounts and send clocks of in-flight
    /// messages are checked against what was really sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfers: Option<Vec<Transfer>>,
}

impl Snapshot {
    pub fn checkpoint(&self, node: &str) -> Option<&Checkpoint> {
        self.checkpoints.iter().find(|c| c.node == node)
    }

    /// Every channel, in a fixed order.
    pub fn channels(&self) -> Vec<Channel> {
        let mut out = Vec::new();
        for from in &self.nodes {
            for to in &self.nodes {
                if from != to {
                    out.push(Channel::new(from, to));
                }
            }
        }
        out
    }

    /// Structural rules: bad input is an error naming what is wrong, never a verdict.
    pub fn validate(&self) -> Result<(), String> {
        let id = self.id;
        let err = |p: String| Err(format!("snapshot {id}: {p}"));
        if self.nodes.is_empty() {
            return err("`nodes` is empty".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for n in &self.nodes {
            if !seen.insert(n.as_str()) {
                return err(format!("node {n} is listed twice in `nodes`"));
            }
        }
        let known = |n: &str| seen.contains(n);
        if !known(&self.initiator) {
            return err(format!("initiator {} is not in `nodes`", self.initiator));
        }
        let mut recorded = std::collections::BTreeSet::new();
        for c in &self.checkpoints {
            let node = &c.node;
            if !known(node) {
                return err(format!(
                    "checkpoint of node {node}, which is not in `nodes`"
                ));
            }
            if !recorded.insert(node.as_str()) {
                return err(format!("two checkpoints of node {node}"));
            }
            for (what, map) in [("sent", &c.sent), ("received", &c.received)] {
                if let Some(peer) = map.keys().find(|p| !known(p) || *p == node) {
                    return err(format!(
                        "checkpoint of {node}: `{what}` names {peer}, which is not a peer"
                    ));
                }
            }
            for (from, msgs) in &c.channels {
                if !known(from) || from == node {
                    return err(format!(
                        "checkpoint of {node}: `channels` names {from}, which is not a peer"
                    ));
                }
                if let Some(m) = msgs.iter().find(|m| &m.from != from || &m.to != node) {
                    return err(format!(
                        "checkpoint of {node}: channel from {from} holds a message {}→{} seq {}",
                        m.from, m.to, m.seq
                    ));
                }
                check_messages(msgs).or_else(err)?;
            }
        }
        if let Some(n) = self.missing.iter().find(|n| !known(n)) {
            return err(format!("missing node {n} is not in `nodes`"));
        }
        if let Some(ch) = self
            .open_channels
            .iter()
            .find(|ch| !known(&ch.from) || !known(&ch.to) || ch.from == ch.to)
        {
            return err(format!("open channel {ch} is not a channel between nodes"));
        }
        if let Some(log) = &self.transfers {
            if let Some(m) = log
                .iter()
                .find(|m| !known(&m.from) || !known(&m.to) || m.from == m.to)
            {
                return err(format!(
                    "transfer log: message {}→{} seq {} is not on a channel between nodes",
                    m.from, m.to, m.seq
                ));
            }
            check_messages(log).or_else(err)?;
            let mut ids = std::collections::BTreeSet::new();
            if let Some(m) = log.iter().find(|m| !ids.insert((&m.from, &m.to, m.seq))) {
                return err(format!(
                    "transfer log: message {}→{} seq {} appears twice",
                    m.from, m.to, m.seq
                ));
            }
        }
        Ok(())
    }
}

fn check_messages(msgs: &[Transfer]) -> Result<(), String> {
    for m in msgs {
        if m.seq == 0 {
            return Err(format!(
                "message {}→{} has seq 0 (seqs start at 1)",
                m.from, m.to
            ));
        }
        if m.amount <= 0 {
            return Err(format!(
                "message {}→{} seq {} has amount {} (transfers move a positive amount)",
                m.from, m.to, m.seq, m.amount
            ));
        }
    }
    Ok(())
}
