//! Peer messages over HTTP: `POST /peer/message` with `{"from", "msg"}`, the reply to a
//! request riding back in the response body. Every call has a connect and a total
//! timeout, so a peer that is down, paused or cut off costs at most one timeout.
//!
//! Also the simulated partition: peers named in `isolated` get no messages from us and
//! their messages to us are refused (see `POST /admin/isolate`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::command::NodeId;
use crate::metrics::{Direction, Metrics};

#[derive(Serialize, Deserialize)]
pub struct Envelope<M> {
    pub from: NodeId,
    pub msg: M,
}

/// Why a message was not delivered.
#[derive(Debug)]
pub enum SendFailure {
    Isolated,
    /// The connection was never made: the request did not leave this node.
    Connect(String),
    /// The request may have arrived; no usable reply came.
    NoReply(String),
}

pub struct Transport {
    pub id: NodeId,
    pub client: reqwest::Client,
    peers: BTreeMap<NodeId, String>,
    isolated: RwLock<BTreeSet<NodeId>>,
    pub metrics: Arc<Metrics>,
}

impl Transport {
    pub fn new(
        id: NodeId,
        peers: &[(NodeId, String)],
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Transport {
            id,
            client,
            peers: peers
                .iter()
                .map(|(id, addr)| (id.clone(), format!("http://{addr}")))
                .collect(),
            isolated: RwLock::new(BTreeSet::new()),
            metrics,
        })
    }

    pub fn peer_ids(&self) -> impl Iterator<Item = &NodeId> {
        self.peers.keys()
    }

    pub fn is_peer(&self, id: &str) -> bool {
        self.peers.contains_key(id)
    }

    /// `http://HOST:PORT` of a peer.
    pub fn base_url(&self, id: &str) -> Option<&str> {
        self.peers.get(id).map(String::as_str)
    }

    pub fn is_isolated(&self, peer: &str) -> bool {
        self.isolated.read().unwrap().contains(peer)
    }

    pub fn isolate(&self, peers: &[NodeId]) {
        self.isolated.write().unwrap().extend(peers.iter().cloned());
    }

    pub fn heal(&self) {
        self.isolated.write().unwrap().clear();
    }

    pub fn isolated(&self) -> Vec<NodeId> {
        self.isolated.read().unwrap().iter().cloned().collect()
    }

    /// Sends `msg` and returns the peer's reply, if its protocol gives one.
    pub async fn send<M: Serialize + DeserializeOwned>(
        &self,
        to: &str,
        msg: M,
        kind: fn(&M) -> &'static str,
    ) -> Result<Option<M>, SendFailure> {
        if self.is_isolated(to) {
            return Err(SendFailure::Isolated);
        }
        let Some(base) = self.peers.get(to) else {
            return Err(SendFailure::Connect(format!("unknown peer {to}")));
        };
        self.metrics.message(to, kind(&msg), Direction::Sent);
        let envelope = Envelope {
            from: self.id.clone(),
            msg,
        };
        let resp = self
            .client
            .post(format!("{base}/peer/message"))
            .json(&envelope)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    SendFailure::Connect(e.to_string())
                } else {
                    SendFailure::NoReply(e.to_string())
                }
            })?;
        if !resp.status().is_success() {
            return Err(SendFailure::NoReply(format!(
                "{to} answered {}",
                resp.status()
            )));
        }
        let reply: Option<M> = resp
            .json()
            .await
            .map_err(|e| SendFailure::NoReply(e.to_string()))?;
        // A reply that arrives after we cut the link is dropped like its request would be.
        if self.is_isolated(to) {
            return Err(SendFailure::Isolated);
        }
        if let Some(r) = &reply {
            self.metrics.message(to, kind(r), Direction::Received);
        }
        Ok(reply)
    }
}
