//! The bank's data on the wire, shaped exactly like the checker's snapshot model
//! (checker/src/snapshot/model.rs) so a snapshot this node returns is the checker's input
//! as is. The nodes crate does not depend on the checker; tests assert the two agree.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::NodeId;

/// Node id → counter; an absent entry is 0.
pub type VectorClock = BTreeMap<NodeId, u64>;

/// One transfer message: `from` debited `amount` and sent it as transfer `seq` on
/// from→to. `seq` counts transfers only (1, 2, 3, ... per channel), as the checker wants;
/// the channel's frame sequence (shared with markers) lives in `channel::Frame`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub from: NodeId,
    pub to: NodeId,
    pub seq: u64,
    pub amount: i64,
    /// The sender's vector clock after the send's increment.
    pub clock: VectorClock,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    ChandyLamport,
    Clock,
}

/// What one node recorded at its cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub node: NodeId,
    pub balance: i64,
    pub clock: VectorClock,
    /// Per outgoing channel: the last transfer seq sent before the cut.
    pub sent: BTreeMap<NodeId, u64>,
    /// Per incoming channel: the last transfer seq delivered before the cut (the highest
    /// one, on unordered channels).
    pub received: BTreeMap<NodeId, u64>,
    /// Per incoming channel: transfers delivered after the cut and before that channel's
    /// marker, in delivery order.
    #[serde(default)]
    pub channels: BTreeMap<NodeId, Vec<Transfer>>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Channel {
    pub from: NodeId,
    pub to: NodeId,
}

/// One collected global snapshot, as `POST /bank/snapshot` answers it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: u64,
    pub initiator: NodeId,
    pub algorithm: Algorithm,
    pub initial_total: i64,
    pub nodes: Vec<NodeId>,
    pub checkpoints: Vec<Checkpoint>,
    pub missing: Vec<NodeId>,
    pub open_channels: Vec<Channel>,
    /// Wall clock (ns since the epoch, no offset) at the request and at the answer.
    pub started_ns: u64,
    pub finished_ns: u64,
}

/// Wall-clock milliseconds since the epoch, without any `/admin/clock` offset.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
