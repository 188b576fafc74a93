//! Bank traffic between nodes: `POST /bank/peer` with `{"from", "msg"}` (the kv
//! transport's envelope), honouring the same `/admin/isolate` set, on the same HTTP client
//! and timeouts, and counted in the same `/metrics` counters.

use serde::{Deserialize, Serialize};

use super::channel::{Ack, Body, Frame};
use super::model::Checkpoint;
use super::Bank;
use crate::command::NodeId;
use crate::metrics::Direction;
use crate::transport::Envelope;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerMsg {
    /// Frames on channel from→to, in any order; answered with an `Ack`.
    Frames(Vec<Frame>),
    /// A finished checkpoint, sent straight to the snapshot's initiator.
    Checkpoint {
        snapshot: u64,
        checkpoint: Checkpoint,
    },
    /// The clock algorithm's "record at your clock's instant `at_ms`", from the initiator.
    ClockRecord(ClockRecord),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClockRecord {
    pub snapshot: u64,
    pub initiator: NodeId,
    /// Milliseconds since the epoch on each node's own (offset) clock.
    pub at_ms: i64,
    pub expires_unix_ms: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PeerReply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<Ack>,
}

/// Counts `msg` under its kinds in `/metrics`.
pub fn count(bank: &Bank, peer: &str, msg: &PeerMsg, dir: Direction) {
    let m = &bank.transport.metrics;
    match msg {
        PeerMsg::Frames(frames) => {
            for f in frames {
                let kind = match f.body {
                    Body::Transfer(_) => "bank_transfer",
                    Body::Marker(_) => "bank_marker",
                };
                m.message(peer, kind, dir);
            }
        }
        PeerMsg::Checkpoint { .. } => m.message(peer, "bank_checkpoint", dir),
        PeerMsg::ClockRecord(_) => m.message(peer, "bank_clock_record", dir),
    }
}

/// Why a bank peer message got no usable reply.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("isolated from {0}")]
    Isolated(NodeId),
    #[error("{0} is not a peer")]
    NotPeer(NodeId),
    #[error("{to}: {source}")]
    Http { to: NodeId, source: reqwest::Error },
    #[error("{to} answered {status}")]
    Refused {
        to: NodeId,
        status: reqwest::StatusCode,
    },
}

/// Sends one message and returns the peer's reply; `Err` says why none came.
pub async fn post(bank: &Bank, to: &str, msg: &PeerMsg) -> Result<PeerReply, PostError> {
    let t = &bank.transport;
    if t.is_isolated(to) {
        return Err(PostError::Isolated(to.to_string()));
    }
    let Some(base) = t.base_url(to) else {
        return Err(PostError::NotPeer(to.to_string()));
    };
    let http = |source| PostError::Http {
        to: to.to_string(),
        source,
    };
    count(bank, to, msg, Direction::Sent);
    let envelope = Envelope {
        from: bank.id.clone(),
        msg,
    };
    let resp = t
        .client
        .post(format!("{base}/bank/peer"))
        .json(&envelope)
        .send()
        .await
        .map_err(http)?;
    if !resp.status().is_success() {
        return Err(PostError::Refused {
            to: to.to_string(),
            status: resp.status(),
        });
    }
    let reply: PeerReply = resp.json().await.map_err(http)?;
    // A reply that arrives after the link was cut is lost like its request would be.
    if t.is_isolated(to) {
        return Err(PostError::Isolated(to.to_string()));
    }
    if reply.ack.is_some() {
        t.metrics.message(to, "bank_ack", Direction::Received);
    }
    Ok(reply)
}
