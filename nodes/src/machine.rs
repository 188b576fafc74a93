//! The interface between a protocol (a pure state machine, no I/O) and the async driver
//! that feeds it ticks, peer messages and client requests and carries out what it asks
//! for — in the manner of raft-rs's `step`/`tick`/`Ready`.

use serde::{de::DeserializeOwned, Serialize};

use crate::command::{NodeId, Outcome, Request, RequestId};
use crate::disk::HardState;
use crate::log::{Entry, StableMark};
use crate::store::Store;

/// Why a node did not take a client request. Every variant means the request was not
/// put in any log by this node, so it is a definite failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Passive mode: only the leader takes requests; this is who we believe leads.
    NotLeader { leader: Option<NodeId> },
    /// We have not heard from a majority recently, so the request could not commit.
    NoQuorum,
    /// A pending read was dropped because this node stopped leading before confirming it.
    LeadershipLost,
}

/// What the driver must do after feeding the machine: persist `hard_state` and the log
/// from `log_from` (fsync), and only once that (and every earlier write) is durable send
/// the messages and held peer replies that promise something about durable state
/// ([`Machine::needs_durability`]) and answer clients. Other messages may go at once.
/// When the write is done, the driver reports `mark` back through [`Machine::persisted`].
#[derive(Debug)]
pub struct Ready<M> {
    pub hard_state: Option<HardState>,
    /// Log entries from this index on changed; `entries` is the log from there to its end.
    pub log_from: Option<u64>,
    pub entries: Vec<Entry>,
    pub mark: Option<StableMark>,
    pub messages: Vec<(NodeId, M)>,
    /// Answers for client requests this node took (writes applied, reads served).
    pub replies: Vec<(RequestId, Outcome)>,
    /// Client requests this node took but now gives up on, definitely not applied.
    pub rejected: Vec<(RequestId, Rejection)>,
    /// Records to append to the data dir's `records.jsonl` (one JSON line each; used by
    /// the leaderless protocol instead of the log). Persisted and gated like the log;
    /// `mark` names them too.
    pub records: Vec<String>,
}

impl<M> Default for Ready<M> {
    fn default() -> Self {
        Ready {
            hard_state: None,
            log_from: None,
            entries: Vec::new(),
            mark: None,
            messages: Vec::new(),
            replies: Vec::new(),
            rejected: Vec::new(),
            records: Vec::new(),
        }
    }
}

/// A snapshot for `GET /status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Status {
    pub role: &'static str,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_index: u64,
    pub reachable_peers: Vec<NodeId>,
}

/// Ticks per timer, fixed at start; `election_min..=election_max` is the randomized
/// election (passive) or view-change (active) timeout.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub heartbeat: u64,
    pub election_min: u64,
    pub election_max: u64,
}

/// A protocol message's kind, without its fields. An enum, so protocol code that decides
/// something by kind (e.g. "this forward certainly never arrived, so its requests were
/// definitely not applied") matches variants: renaming one cannot compile and silently
/// change behaviour. `name` is only the metrics label.
pub trait MsgKind: Copy + Eq + std::fmt::Debug + Send + 'static {
    fn name(self) -> &'static str;
}

pub trait Machine: Send + 'static {
    type Msg: Serialize + DeserializeOwned + Send + std::fmt::Debug + 'static;
    type Kind: MsgKind;

    /// The message's kind.
    fn kind(msg: &Self::Msg) -> Self::Kind;
    /// The message's kind as a metrics label (`faultline_peer_messages_total{type}`).
    fn kind_name(msg: &Self::Msg) -> &'static str {
        Self::kind(msg).name()
    }
    /// Must this message wait until everything persisted before it was created is
    /// durable? (Replies acknowledging entries or granting votes must; a leader's own
    /// appends and read probes need not.)
    fn needs_durability(msg: &Self::Msg) -> bool;
    /// The disk finished the write that `Ready::mark` named.
    fn persisted(&mut self, mark: StableMark);
    /// One unit of logical time has passed.
    fn tick(&mut self);
    /// A message from a peer. Requests get their reply returned here; the transport
    /// carries it back on the same HTTP exchange once `ready` has been persisted.
    fn step(&mut self, from: &str, msg: Self::Msg) -> Option<Self::Msg>;
    /// A message to `peer` could not be delivered (or its reply never came).
    fn unreachable(&mut self, peer: &str);
    /// A message of type `kind` to `peer` failed; `definite` when it certainly never
    /// arrived (link cut, no connection). Protocols that track what they sent override it.
    fn undelivered(&mut self, peer: &str, kind: Self::Kind, definite: bool) {
        let _ = (kind, definite);
        self.unreachable(peer);
    }
    /// A message to `peer` was delivered and the peer's node loop answered it (a sign of
    /// life); for posts, the peer acknowledged some. Protocols with a failure detector
    /// override it.
    fn delivered(&mut self, peer: &str) {
        let _ = peer;
    }
    /// Does the sender wait for the peer's reply to this message? A protocol whose
    /// messages are all one-way says no: they are posted (`Transport::post`), and the
    /// protocol hears of them only through `delivered` and `posts_lost`.
    fn expects_reply(msg: &Self::Msg) -> bool {
        let _ = msg;
        true
    }
    /// Posts to `peer` may have been lost with their stream (`definite`: certainly never
    /// arrived).
    fn posts_lost(&mut self, peer: &str, definite: bool) {
        let _ = definite;
        self.unreachable(peer);
    }
    /// A client request taken by this node.
    fn client(&mut self, req: Request) -> Result<(), Rejection>;
    /// A client request another node forwarded here: taken only if this node can order
    /// it itself, never passed on again.
    fn client_forwarded(&mut self, req: Request) -> Result<(), Rejection> {
        self.client(req)
    }
    /// Flushes batched sends and takes everything the driver must act on.
    fn ready(&mut self) -> Ready<Self::Msg>;
    fn status(&self) -> Status;
    /// The applied index and the state it produced (for `GET /admin/state`): the replica's
    /// own copy, read without any coordination.
    fn applied_state(&self) -> (u64, &Store);
}
