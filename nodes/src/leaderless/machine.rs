//! Tempo (Enes, Baquero, Gotsman, Sutra, EuroSys 2021) as a pure state machine, for a
//! store in which every command conflicts with every other: one clock per process, one
//! timestamp order for all commands.
//!
//! Per command (named by its `RequestId`, "dot"):
//! 1. **Propose.** The node a client reached (the coordinator) picks a fast quorum Q (itself
//!    plus `fast - 1` peers it heard from recently), proposes `clock + 1` and sends
//!    `Propose` to Q. Each member proposes `max(ts, clock + 1)` and moves its clock there;
//!    the values `(old clock, proposal]` become its *attached* votes for that command.
//! 2. **Commit.** With every member's proposal, the coordinator takes the maximum t. If at
//!    least f members proposed t (always so with 3 nodes) t is final — the fast path, one
//!    round trip. Otherwise it runs a Paxos accept at its own ballot (the lowest one for
//!    that command) and t is final once a majority accepted it — the slow path.
//!    `Commit` tells everyone; every process moves its clock up to t (detached votes).
//! 3. **Execute.** A process's *frontier* is the highest value v such that every value
//!    ≤ v of its clock is detached or attached to a command it knows committed. Processes
//!    ship their frontier to each other in `Votes`, together with the commits of every
//!    attached range it covers — except ranges attached to the receiver's own commands
//!    not yet committed at the sender, shipped as conditions the receiver waits for
//!    (its own decision, usually). So a member's `ProposeAck` carries its votes for the
//!    command and the coordinator can execute on its decision, as in Tempo's
//!    `MProposeAck`. A timestamp is *stable* at i when a majority's frontiers (as i may
//!    count them) reach it; i executes committed commands with stable timestamps in
//!    (timestamp, dot) order. The coordinator answers its client when it executes.
//! 4. **Recovery.** A process that holds an uncommitted command for a short timeout runs
//!    Paxos for it with a ballot of its own (`Recover` / `Consensus`): with answers from
//!    n - f processes it adopts a committed value if any, else the accepted value of the
//!    highest ballot, else — when the coordinator answered or a fast-quorum member first
//!    heard of the command through the recovery (so the fast path can no longer happen) —
//!    the maximum proposal of all who answered, else the maximum proposal of the fast
//!    quorum members who answered (which equals any value the fast path could have
//!    decided). Processes answering a recovery propose for the command if they had not.
//!
//! nodes/README.md ("Leaderless mode") argues why this is safe. Everything a process
//! promises (proposals, ballots, accepted values, commits) is in a record written and
//! fsync'd before any message or client answer that depends on it leaves the node.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::bugs::{Bug, Bugs};
use crate::command::{NodeId, Outcome, Request, RequestId};
use crate::log::StableMark;
use crate::machine::{Machine, MsgKind, Ready, Rejection, Status, Timing};
use crate::quorum::majority;
use crate::store::Store;

use super::table::Table;

/// Most commits shipped in one `Votes` message.
const MAX_SHIP: usize = 2048;

/// A command's identifier, as a sortable key.
type Dot = (NodeId, u64);

fn dot(id: &RequestId) -> Dot {
    (id.node.clone(), id.n)
}

/// A command and the fast quorum its coordinator chose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub req: Request,
    pub quorum: Vec<NodeId>,
    /// Propose: the coordinator's proposal (the lowest a member may propose).
    /// Consensus: the value to accept. Recover: unused (0).
    pub ts: u64,
    /// Consensus and Recover: the ballot.
    #[serde(default)]
    pub ballot: u64,
}

/// A command and its final timestamp.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decided {
    pub req: Request,
    pub ts: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BallotReply {
    pub id: RequestId,
    pub ballot: u64,
    pub ok: bool,
    /// The replier's ballot for the command (what a refused sender must exceed).
    pub bal: u64,
}

/// What a process answers to a recovery at some ballot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RecState {
    Committed {
        ts: u64,
    },
    Refused {
        bal: u64,
    },
    Promised {
        /// Its proposal for the command (made now if it had none).
        proposal: u64,
        /// Made on the coordinator's `Propose` (true) or first made for a recovery.
        normal: bool,
        abal: u64,
        ats: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoverReply {
    pub id: RequestId,
    pub ballot: u64,
    pub state: RecState,
}

/// Peer messages. All are one-way and batched per destination and type; acknowledgements
/// travel as messages of their own.
///
/// Externally tagged on the wire (`{"Propose":{"cmds":[..]}}`), not `tag = "type"`: an
/// internally tagged enum makes serde buffer the whole message into an intermediate tree
/// before decoding it, and that was over half of a node's CPU under load (callgrind on
/// `cargo bench -p nodes --bench cluster`). Peers run the same build, so only they see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TempoMsg {
    Propose {
        cmds: Vec<Proposal>,
    },
    ProposeAck {
        acks: Vec<(RequestId, u64)>,
    },
    Commit {
        cmds: Vec<Decided>,
    },
    Consensus {
        cmds: Vec<Proposal>,
    },
    ConsensusAck {
        acks: Vec<BallotReply>,
    },
    Recover {
        cmds: Vec<Proposal>,
    },
    RecoverAck {
        acks: Vec<RecoverReply>,
    },
    /// The sender's frontier moved from `base` to `upto`; `commits` are the commands its
    /// attached votes in (base, upto] belong to, except `cond`: commands the receiver
    /// coordinates that the sender holds uncommitted (its attached votes for them are in
    /// (base, upto]). The receiver counts `upto` once it knows every `cond` committed (of
    /// this and earlier `Votes`) — Tempo's attached votes in `MProposeAck`: a member's
    /// vote for a command reaches its coordinator with the ack, not a round later.
    Votes {
        base: u64,
        upto: u64,
        commits: Vec<Decided>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        cond: Vec<RequestId>,
    },
    /// "I know your frontier up to `have`"; `gap`: a `Votes` arrived whose base was above
    /// it, so resend from `have`. Also sent every heartbeat, as a keep-alive and so a peer
    /// that restarted (and lost what it knew) is caught up.
    VotesAck {
        have: u64,
        gap: bool,
    },
    /// Everything queued for one peer in one `ready`, handled in order: one frame, one
    /// stream reply and one wake-up of the peer's loop instead of one per type.
    Batch(Vec<TempoMsg>),
}

impl TempoMsg {
    /// The message and, for a batch, the messages in it.
    pub fn parts(&self) -> Vec<&TempoMsg> {
        match self {
            TempoMsg::Batch(msgs) => msgs.iter().collect(),
            m => vec![m],
        }
    }
}

/// One command's durable state, as written to `records.jsonl` (the last record of a dot
/// wins at restart).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    req: Request,
    quorum: Vec<NodeId>,
    /// This process's attached votes for the command: (first, last) clock values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    proposal: Option<(u64, u64)>,
    #[serde(default)]
    normal: bool,
    #[serde(default)]
    bal: u64,
    #[serde(default)]
    abal: u64,
    #[serde(default)]
    ats: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    committed: Option<u64>,
}

/// `Record` as written: the same fields borrowed from the command, so a step writes its
/// dirty commands without cloning their requests and quorums first. Fields and
/// attributes must stay those of `Record` (a test checks the two serialise alike).
#[derive(Serialize)]
struct RecordRef<'a> {
    req: &'a Request,
    quorum: &'a [NodeId],
    #[serde(skip_serializing_if = "Option::is_none")]
    proposal: Option<(u64, u64)>,
    normal: bool,
    bal: u64,
    abal: u64,
    ats: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    committed: Option<u64>,
}

/// A ballot this process drives for a command (slow path or recovery).
#[derive(Debug)]
enum Drive {
    Prepare {
        ballot: u64,
        replies: BTreeMap<NodeId, RecState>,
    },
    Accept {
        ballot: u64,
        ts: u64,
        acks: BTreeSet<NodeId>,
    },
}

impl Drive {
    fn ballot(&self) -> u64 {
        match self {
            Drive::Prepare { ballot, .. } | Drive::Accept { ballot, .. } => *ballot,
        }
    }
}

#[derive(Debug)]
struct Cmd {
    req: Request,
    quorum: Vec<NodeId>,
    proposal: Option<(u64, u64)>,
    normal: bool,
    /// Paxos acceptor state: promised ballot, accepted ballot and value.
    bal: u64,
    abal: u64,
    ats: u64,
    committed: Option<u64>,
    // Volatile.
    fast_acks: BTreeMap<NodeId, u64>,
    drive: Option<Drive>,
    /// Highest ballot heard of, to pick the next one above it.
    seen_bal: u64,
    /// When to (re)start recovery if still uncommitted.
    deadline: u64,
    /// Recoveries this process started for it.
    attempts: u32,
}

impl Cmd {
    fn new(req: Request, quorum: Vec<NodeId>) -> Self {
        Cmd {
            req,
            quorum,
            proposal: None,
            normal: false,
            bal: 0,
            abal: 0,
            ats: 0,
            committed: None,
            fast_acks: BTreeMap::new(),
            drive: None,
            seen_bal: 0,
            deadline: u64::MAX,
            attempts: 0,
        }
    }

    fn record(&self) -> RecordRef<'_> {
        RecordRef {
            req: &self.req,
            quorum: &self.quorum,
            proposal: self.proposal,
            normal: self.normal,
            bal: self.bal,
            abal: self.abal,
            ats: self.ats,
            committed: self.committed,
        }
    }
}

type VotesPart = (u64, u64, Vec<Decided>, Vec<RequestId>);

/// Messages queued for one peer, sent in the next `ready` as at most two messages: one
/// that goes at once (`Votes`, `VotesAck`) and one held until our records are durable.
#[derive(Debug, Default)]
struct Outbox {
    propose: Vec<Proposal>,
    propose_ack: Vec<(RequestId, u64)>,
    commit: Vec<Decided>,
    consensus: Vec<Proposal>,
    consensus_ack: Vec<BallotReply>,
    recover: Vec<Proposal>,
    recover_ack: Vec<RecoverReply>,
    /// (base, upto, commits, cond) of a `Votes` that goes at once (up to our durable
    /// clock), and of one that rides with the messages held for the disk (beyond it).
    votes: Option<VotesPart>,
    votes_held: Option<VotesPart>,
    votes_ack: Option<(u64, bool)>,
}

pub struct Tempo {
    id: NodeId,
    /// All processes, sorted.
    members: Vec<NodeId>,
    peers: Vec<NodeId>,
    me: usize,
    bugs: Bugs,
    timing: Timing,
    rng: StdRng,
    now: u64,
    /// Failures tolerated: a minority.
    f: usize,
    /// Fast quorum size: max(⌊n/2⌋ + f, majority).
    fast: usize,

    clock: u64,
    cmds: Table<Cmd>,
    /// This process's attached votes: first value -> (last value, command).
    ranges: BTreeMap<u64, (u64, Dot)>,
    /// First values of attached ranges whose command is not committed here.
    open: BTreeSet<u64>,
    /// Commands with a payload here and no commit (recovery candidates).
    uncommitted: BTreeSet<Dot>,
    /// Committed, not yet executed, in execution order.
    pending_exec: BTreeSet<(u64, Dot)>,
    store: Store,
    committed_count: u64,
    executed: u64,
    #[cfg(test)]
    pub(crate) exec_order: Vec<(u64, Dot)>,

    /// Each peer's frontier as far as its `Votes` reached us (what we acknowledge).
    frontier_of: BTreeMap<NodeId, u64>,
    /// The part of it we may count: claims whose `cond` commands we all know committed.
    usable_of: BTreeMap<NodeId, u64>,
    /// Per peer, claims (upto, cond) waiting for a command of ours to commit, in order
    /// (a later claim rests on the earlier ones' `cond` too).
    pending_of: BTreeMap<NodeId, std::collections::VecDeque<(u64, Vec<Dot>)>>,
    /// Our frontier as shipped to / acknowledged by each peer.
    sent: BTreeMap<NodeId, u64>,
    acked: BTreeMap<NodeId, u64>,
    last_heard: BTreeMap<NodeId, u64>,
    /// Per peer: the tick of the oldest message we sent it after its last sign of life
    /// (a message from it, or its stream reply to one of ours). A peer is *suspected*
    /// once that is [`Tempo::suspect_after`] ticks old, or at once when a message to it
    /// certainly never arrived (connection refused, link cut).
    awaiting: BTreeMap<NodeId, u64>,
    /// A suspected peer answered since the last tick: retry stuck commands soon.
    revived: bool,
    pull_due: u64,

    out: BTreeMap<NodeId, Outbox>,
    dirty: BTreeSet<Dot>,
    /// Batches of records handed to the driver / known durable.
    record_seq: u64,
    durable_seq: u64,
    /// Our clock as of each record batch not yet durable, and as of the last durable one:
    /// a frontier we ship never exceeds `durable_clock`, so `Votes` need not wait for
    /// the disk (a restart restores at least that clock).
    clock_at: std::collections::VecDeque<(u64, u64)>,
    durable_clock: u64,
    /// Client answers produced since the last `ready`, and answers waiting for the
    /// records (batch number) they depend on to be durable.
    unsealed: Vec<(RequestId, Outcome)>,
    waiting: Vec<(u64, RequestId, Outcome)>,
}

impl Tempo {
    /// A process starting from the records of earlier runs (`records.jsonl` lines).
    /// Errors name the first record that does not parse.
    pub fn restore(
        id: NodeId,
        peers: Vec<NodeId>,
        bugs: Bugs,
        timing: Timing,
        seed: u64,
        records: &[String],
    ) -> Result<Self, String> {
        let mut members = peers.clone();
        members.push(id.clone());
        members.sort();
        let me = members.iter().position(|m| *m == id).unwrap();
        let n = members.len();
        let f = (n - 1) / 2;
        let mut t = Tempo {
            id,
            peers,
            me,
            bugs,
            timing,
            rng: StdRng::seed_from_u64(seed),
            now: 0,
            f,
            fast: (n / 2 + f).max(majority(n)),
            members,
            clock: 0,
            cmds: Table::default(),
            ranges: BTreeMap::new(),
            open: BTreeSet::new(),
            uncommitted: BTreeSet::new(),
            pending_exec: BTreeSet::new(),
            store: Store::default(),
            committed_count: 0,
            executed: 0,
            #[cfg(test)]
            exec_order: Vec::new(),
            frontier_of: BTreeMap::new(),
            usable_of: BTreeMap::new(),
            pending_of: BTreeMap::new(),
            sent: BTreeMap::new(),
            acked: BTreeMap::new(),
            last_heard: BTreeMap::new(),
            awaiting: BTreeMap::new(),
            revived: false,
            pull_due: 0,
            out: BTreeMap::new(),
            dirty: BTreeSet::new(),
            record_seq: 0,
            durable_seq: 0,
            clock_at: std::collections::VecDeque::new(),
            durable_clock: 0,
            unsealed: Vec::new(),
            waiting: Vec::new(),
        };
        for (k, line) in records.iter().enumerate() {
            let r: Record = serde_json::from_str(line)
                .map_err(|e| format!("records.jsonl: record {} is corrupt: {e}", k + 1))?;
            let d = dot(&r.req.id);
            let mut c = Cmd::new(r.req, r.quorum);
            c.proposal = r.proposal;
            c.normal = r.normal;
            c.bal = r.bal;
            c.abal = r.abal;
            c.ats = r.ats;
            c.committed = r.committed;
            t.cmds.insert(d, c);
        }
        let dots: Vec<Dot> = t.cmds.dots();
        for d in dots {
            let c = &t.cmds[&d];
            let (proposal, committed, ats) = (c.proposal, c.committed, c.ats);
            t.clock = t
                .clock
                .max(proposal.map_or(0, |p| p.1))
                .max(committed.unwrap_or(0))
                .max(ats);
            if let Some((first, last)) = proposal {
                t.ranges.insert(first, (last, d.clone()));
                if committed.is_none() {
                    t.open.insert(first);
                }
            }
            match committed {
                Some(ts) => {
                    t.pending_exec.insert((ts, d));
                    t.committed_count += 1;
                }
                None => {
                    let deadline = t.recovery_timeout(false);
                    t.cmds.get_mut(&d).unwrap().deadline = deadline;
                    t.uncommitted.insert(d);
                }
            }
        }
        t.durable_clock = t.clock;
        Ok(t)
    }

    fn n(&self) -> usize {
        self.members.len()
    }

    fn out(&mut self, peer: &str) -> &mut Outbox {
        self.out.entry(peer.to_string()).or_default()
    }

    /// Ticks until a recovery starts: a few heartbeats, randomized so that processes
    /// holding the same stuck command rarely duel; the coordinator goes first.
    fn recovery_timeout(&mut self, coordinator: bool) -> u64 {
        let h = self.timing.heartbeat.max(1);
        let (lo, hi) = if coordinator {
            (h, 2 * h)
        } else {
            (2 * h, 4 * h)
        };
        self.now + self.rng.random_range(lo..=hi)
    }

    /// Ticks a peer may leave our messages unanswered before we suspect it: half a
    /// heartbeat, at least 2 (20–30 ms with the defaults). A wrong suspicion costs only
    /// work (a recovery of a command that was not stuck is safe, and a fast quorum without
    /// that peer is as good); a late one stalls execution at every replica.
    fn suspect_after(&self) -> u64 {
        (self.timing.heartbeat / 2).max(2)
    }

    fn suspected(&self, peer: &str) -> bool {
        self.awaiting
            .get(peer)
            .is_some_and(|&t| self.now >= t + self.suspect_after())
    }

    /// A sign of life from `peer`.
    fn alive(&mut self, peer: &str) {
        self.last_heard.insert(peer.to_string(), self.now);
        self.revived |= self.suspected(peer);
        self.awaiting.remove(peer);
    }

    /// Should `c` be recovered now rather than at its timeout? Only while no ballot has
    /// touched it (nobody is recovering it yet: two eager recoverers would only preempt
    /// each other), and when it waits on a suspected process: for its coordinator, a
    /// fast-quorum member that has not answered; for anyone else, the coordinator — and
    /// then only the first process in member order that is neither the coordinator nor
    /// suspected goes at once (the others keep their timeout as a fallback).
    fn expedite(&self, c: &Cmd) -> bool {
        if c.attempts > 0 || c.bal != 0 || c.seen_bal != 0 || c.drive.is_some() {
            return false;
        }
        let coord = &c.req.id.node;
        if *coord == self.id {
            c.quorum
                .iter()
                .any(|q| *q != self.id && !c.fast_acks.contains_key(q) && self.suspected(q))
        } else {
            self.suspected(coord)
                && self.members[..self.me]
                    .iter()
                    .all(|m| m == coord || self.suspected(m))
        }
    }

    fn heard_within(&self, peer: &str, ticks: u64) -> bool {
        self.last_heard
            .get(peer)
            .is_some_and(|&t| self.now < t + ticks)
    }

    /// The coordinator and the peers it heard from most recently, nearest in member order
    /// first (spreads the load), the silent ones last.
    fn pick_quorum(&self) -> Vec<NodeId> {
        let n = self.n();
        let mut order: Vec<(bool, usize, &NodeId)> = self
            .peers
            .iter()
            .map(|p| {
                let idx = self.members.iter().position(|m| m == p).unwrap();
                let alive =
                    !self.suspected(p) && self.heard_within(p, 3 * self.timing.heartbeat.max(1));
                (!alive, (idx + n - self.me) % n, p)
            })
            .collect();
        order.sort();
        let mut q = vec![self.id.clone()];
        q.extend(
            order
                .into_iter()
                .take(self.fast - 1)
                .map(|(_, _, p)| p.clone()),
        );
        q
    }

    /// Our frontier: every clock value up to it is detached or attached to a command
    /// committed here.
    fn frontier(&self) -> u64 {
        match self.open.first() {
            Some(&first) => (first - 1).min(self.clock),
            None => self.clock,
        }
    }

    /// Our frontier as shipped to `peer`: like [`Tempo::frontier`], but a value attached
    /// to a command that `peer` coordinates counts even before it commits here (the peer
    /// counts it only once it knows the command committed; see `TempoMsg::Votes`).
    fn frontier_for(&self, peer: &str) -> u64 {
        for &first in &self.open {
            let (_, d) = &self.ranges[&first];
            if d.0 != peer {
                return (first - 1).min(self.clock);
            }
        }
        self.clock
    }

    /// Attaches the next clock values, up to at least `min`, to `d`; returns the proposal.
    fn propose(&mut self, d: &Dot, min: u64, normal: bool) -> u64 {
        let first = self.clock + 1;
        let last = min.max(first);
        self.clock = last;
        self.ranges.insert(first, (last, d.clone()));
        let c = self.cmds.get_mut(d).unwrap();
        c.proposal = Some((first, last));
        c.normal = normal;
        if c.committed.is_none() {
            self.open.insert(first);
        }
        self.dirty.insert(d.clone());
        last
    }

    /// Makes sure we hold `req`'s command; starts its recovery timer if it is new.
    fn hold(&mut self, req: &Request, quorum: &[NodeId]) -> Dot {
        let d = dot(&req.id);
        if !self.cmds.contains_key(&d) {
            let deadline = self.recovery_timeout(req.id.node == self.id);
            let mut c = Cmd::new(req.clone(), quorum.to_vec());
            c.deadline = deadline;
            self.cmds.insert(d.clone(), c);
            self.uncommitted.insert(d.clone());
        } else {
            let c = self.cmds.get_mut(&d).unwrap();
            if c.quorum.is_empty() && !quorum.is_empty() {
                c.quorum = quorum.to_vec();
            }
        }
        d
    }

    /// `d` is final with timestamp `ts`.
    fn learn_commit(&mut self, d: &Dot, ts: u64) {
        let c = self.cmds.get_mut(d).unwrap();
        if let Some(prev) = c.committed {
            if prev != ts {
                // Agreement broken: only a bug can get here. Tests fail loudly.
                tracing::error!(cmd = ?d, prev, ts, "command committed with two timestamps");
                #[cfg(test)]
                panic!("{d:?} committed with timestamps {prev} and {ts}");
            }
            return;
        }
        c.committed = Some(ts);
        c.drive = None;
        c.fast_acks.clear();
        if let Some((first, _)) = c.proposal {
            self.open.remove(&first);
        }
        self.clock = self.clock.max(ts);
        self.uncommitted.remove(d);
        self.pending_exec.insert((ts, d.clone()));
        self.committed_count += 1;
        self.dirty.insert(d.clone());
    }

    /// We decided `d`'s timestamp: learn it and tell everyone.
    fn decide(&mut self, d: &Dot, ts: u64) {
        self.learn_commit(d, ts);
        let req = self.cmds[d].req.clone();
        for peer in self.peers.clone() {
            self.out(&peer).commit.push(Decided {
                req: req.clone(),
                ts,
            });
        }
    }

    fn on_propose(&mut self, from: &str, p: Proposal) {
        let d = self.hold(&p.req, &p.quorum);
        let c = &self.cmds[&d];
        if let Some(ts) = c.committed {
            let req = c.req.clone();
            self.out(from).commit.push(Decided { req, ts });
            return;
        }
        let reply = match c.proposal {
            // Proposed already on this Propose: answer again. Proposed for a recovery
            // first: never join the fast path (recovery counted on that).
            Some((_, last)) => c.normal.then_some(last),
            None if p.quorum.contains(&self.id) => Some(self.propose(&d, p.ts, true)),
            None => None,
        };
        if let Some(ts) = reply {
            self.out(from).propose_ack.push((p.req.id, ts));
        }
    }

    fn on_propose_ack(&mut self, from: &str, id: RequestId, ts: u64) {
        let d = dot(&id);
        let (f, me) = (self.f, self.me);
        let Some(c) = self.cmds.get_mut(&d) else {
            return;
        };
        // The fast path is ours only while no other ballot has touched the command.
        if c.committed.is_some() || c.bal != 0 || c.drive.is_some() || !c.normal {
            return;
        }
        if !c.quorum.iter().any(|q| q == from) {
            return;
        }
        c.fast_acks.insert(from.to_string(), ts);
        if c.fast_acks.len() < c.quorum.len() {
            return;
        }
        let max = *c.fast_acks.values().max().unwrap();
        let count = c.fast_acks.values().filter(|&&t| t == max).count();
        if count >= f {
            self.decide(&d, max);
        } else {
            // Slow path at our own ballot, the lowest any process uses for this command,
            // so no prepare phase is needed.
            let ballot = me as u64 + 1;
            c.bal = ballot;
            c.abal = ballot;
            c.ats = max;
            c.drive = Some(Drive::Accept {
                ballot,
                ts: max,
                acks: BTreeSet::from([self.id.clone()]),
            });
            let msg = Proposal {
                req: c.req.clone(),
                quorum: c.quorum.clone(),
                ts: max,
                ballot,
            };
            self.dirty.insert(d.clone());
            for peer in self.peers.clone() {
                self.out(&peer).consensus.push(msg.clone());
            }
            self.check_accepted(&d);
        }
    }

    fn on_consensus(&mut self, from: &str, p: Proposal) {
        let d = self.hold(&p.req, &p.quorum);
        self.defer_recovery(&d);
        let c = self.cmds.get_mut(&d).unwrap();
        if let Some(ts) = c.committed {
            let req = c.req.clone();
            self.out(from).commit.push(Decided { req, ts });
            return;
        }
        let ok = p.ballot >= c.bal;
        if ok {
            c.bal = p.ballot;
            c.abal = p.ballot;
            c.ats = p.ts;
            self.dirty.insert(d.clone());
        }
        let bal = c.bal;
        self.out(from).consensus_ack.push(BallotReply {
            id: p.req.id,
            ballot: p.ballot,
            ok,
            bal,
        });
    }

    fn on_consensus_ack(&mut self, from: &str, r: BallotReply) {
        let d = dot(&r.id);
        let Some(c) = self.cmds.get_mut(&d) else {
            return;
        };
        c.seen_bal = c.seen_bal.max(r.bal);
        if c.committed.is_some() {
            return;
        }
        match &mut c.drive {
            Some(Drive::Accept { ballot, acks, .. }) if *ballot == r.ballot => {
                if r.ok {
                    acks.insert(from.to_string());
                    self.check_accepted(&d);
                } else {
                    c.drive = None; // outbid: the recovery timer tries again higher
                }
            }
            _ => {}
        }
    }

    fn check_accepted(&mut self, d: &Dot) {
        let need = majority(self.n());
        let c = &self.cmds[d];
        if let Some(Drive::Accept { ts, acks, .. }) = &c.drive {
            if acks.len() >= need {
                let ts = *ts;
                self.decide(d, ts);
            }
        }
    }

    /// Runs Paxos for a command that has not committed in time, at a ballot of ours
    /// above any seen: k·n + index + 1, k ≥ 1 (k = 0 is the coordinator's slow path).
    fn start_recovery(&mut self, d: &Dot) {
        let n = self.n() as u64;
        let me = self.me as u64;
        // Back off exponentially: under overload, recoveries that preempt each other
        // would otherwise only add load.
        let attempts = self.cmds[d].attempts.min(5);
        let deadline =
            self.now + ((self.rng.random_range(2..=4) * self.timing.heartbeat.max(1)) << attempts);
        let c = self.cmds.get_mut(d).unwrap();
        c.deadline = deadline;
        c.attempts += 1;
        let above = c.bal.max(c.seen_bal);
        let k = (above.saturating_sub(me + 1) / n + 1).max(1);
        let ballot = k * n + me + 1;
        debug_assert!(ballot > above);
        c.bal = ballot;
        c.fast_acks.clear();
        if c.proposal.is_none() {
            self.propose(d, 0, false);
        }
        let c = self.cmds.get_mut(d).unwrap();
        let mine = RecState::Promised {
            proposal: c.proposal.unwrap().1,
            normal: c.normal,
            abal: c.abal,
            ats: c.ats,
        };
        c.drive = Some(Drive::Prepare {
            ballot,
            replies: BTreeMap::from([(self.id.clone(), mine)]),
        });
        let msg = Proposal {
            req: c.req.clone(),
            quorum: c.quorum.clone(),
            ts: 0,
            ballot,
        };
        tracing::debug!(node = %self.id, cmd = ?d, ballot, "recovering command");
        self.dirty.insert(d.clone());
        for peer in self.peers.clone() {
            self.out(&peer).recover.push(msg.clone());
        }
        self.check_promised(d);
    }

    /// Someone else is working on `d`: give it time before we compete with it.
    fn defer_recovery(&mut self, d: &Dot) {
        let later = self.recovery_timeout(false);
        let c = self.cmds.get_mut(d).unwrap();
        c.deadline = c.deadline.max(later);
    }

    fn on_recover(&mut self, from: &str, p: Proposal) {
        let d = self.hold(&p.req, &p.quorum);
        self.defer_recovery(&d);
        let c = self.cmds.get_mut(&d).unwrap();
        let state = if let Some(ts) = c.committed {
            RecState::Committed { ts }
        } else if p.ballot < c.bal {
            RecState::Refused { bal: c.bal }
        } else {
            if p.ballot > c.bal {
                c.bal = p.ballot;
                self.dirty.insert(d.clone());
            }
            if self.cmds[&d].proposal.is_none() {
                self.propose(&d, 0, false);
            }
            let c = &self.cmds[&d];
            RecState::Promised {
                proposal: c.proposal.unwrap().1,
                normal: c.normal,
                abal: c.abal,
                ats: c.ats,
            }
        };
        self.out(from).recover_ack.push(RecoverReply {
            id: p.req.id,
            ballot: p.ballot,
            state,
        });
    }

    fn on_recover_ack(&mut self, from: &str, r: RecoverReply) {
        let d = dot(&r.id);
        let Some(c) = self.cmds.get_mut(&d) else {
            return;
        };
        if c.committed.is_some() {
            return;
        }
        match r.state {
            RecState::Committed { ts } => self.decide(&d, ts),
            RecState::Refused { bal } => {
                c.seen_bal = c.seen_bal.max(bal);
                if c.drive.as_ref().is_some_and(|dr| dr.ballot() == r.ballot) {
                    c.drive = None;
                }
            }
            state @ RecState::Promised { .. } => {
                if let Some(Drive::Prepare { ballot, replies }) = &mut c.drive {
                    if *ballot == r.ballot {
                        replies.insert(from.to_string(), state);
                        self.check_promised(&d);
                    }
                }
            }
        }
    }

    /// With n - f promises, choose the value (see the module comment) and send accepts.
    fn check_promised(&mut self, d: &Dot) {
        let need = self.n() - self.f;
        let c = self.cmds.get_mut(d).unwrap();
        let Some(Drive::Prepare { ballot, replies }) = &c.drive else {
            return;
        };
        if replies.len() < need {
            return;
        }
        let ballot = *ballot;
        let mut best_abal = 0;
        let mut ts = 0;
        let mut max_all = 0;
        let mut max_quorum = 0;
        let mut fast_impossible = replies.contains_key(&c.req.id.node);
        for (who, s) in replies {
            if let RecState::Promised {
                proposal,
                normal,
                abal,
                ats,
            } = s
            {
                if *abal > best_abal {
                    best_abal = *abal;
                    ts = *ats;
                }
                max_all = max_all.max(*proposal);
                if c.quorum.contains(who) {
                    max_quorum = max_quorum.max(*proposal);
                    fast_impossible |= !normal;
                }
            }
        }
        if best_abal == 0 {
            ts = if fast_impossible || max_quorum == 0 {
                max_all
            } else {
                max_quorum
            };
        }
        if c.bal != ballot {
            // We promised a higher ballot while collecting these promises: our own accept
            // at this ballot may no longer count (that ballot's recoverer chose its value
            // from our promise, which did not include this one). Counting it anyway broke
            // agreement in the chaos test once recoveries overlapped more often. Leave the
            // command to the higher ballot; our timer retries above it.
            c.drive = None;
            return;
        }
        c.abal = ballot;
        c.ats = ts;
        self.dirty.insert(d.clone());
        c.drive = Some(Drive::Accept {
            ballot,
            ts,
            acks: BTreeSet::from([self.id.clone()]),
        });
        let msg = Proposal {
            req: c.req.clone(),
            quorum: c.quorum.clone(),
            ts,
            ballot,
        };
        for peer in self.peers.clone() {
            self.out(&peer).consensus.push(msg.clone());
        }
        self.check_accepted(d);
    }

    fn on_votes(
        &mut self,
        from: &str,
        base: u64,
        upto: u64,
        commits: Vec<Decided>,
        cond: Vec<RequestId>,
    ) {
        let have = self.frontier_of.get(from).copied().unwrap_or(0);
        if base > have {
            self.out(from).votes_ack = Some((have, true));
            return;
        }
        for c in commits {
            let d = self.hold(&c.req, &[]);
            self.learn_commit(&d, c.ts);
        }
        if upto > have {
            // Only ours can be conditions; anything else would be a sender's bug, and not
            // counting the claim until it commits here is safe either way.
            let cond: Vec<Dot> = cond.iter().map(dot).collect();
            self.pending_of
                .entry(from.to_string())
                .or_default()
                .push_back((upto, cond));
            self.resolve_claims(from);
        }
        let have = have.max(upto);
        self.frontier_of.insert(from.to_string(), have);
        self.out(from).votes_ack = Some((have, false));
    }

    /// Counts `peer`'s frontier claims whose conditions are all committed here.
    fn resolve_claims(&mut self, peer: &str) {
        let Some(q) = self.pending_of.get_mut(peer) else {
            return;
        };
        let mut usable = None;
        while let Some((upto, cond)) = q.front() {
            let known = cond
                .iter()
                .all(|d| self.cmds.get(d).is_some_and(|c| c.committed.is_some()));
            if !known {
                break;
            }
            usable = Some(*upto);
            q.pop_front();
        }
        if let Some(u) = usable {
            let e = self.usable_of.entry(peer.to_string()).or_insert(0);
            *e = (*e).max(u);
        }
    }

    fn on_message(&mut self, from: &str, msg: TempoMsg) {
        match msg {
            TempoMsg::Propose { cmds } => cmds.into_iter().for_each(|p| self.on_propose(from, p)),
            TempoMsg::ProposeAck { acks } => acks
                .into_iter()
                .for_each(|(id, ts)| self.on_propose_ack(from, id, ts)),
            TempoMsg::Commit { cmds } => {
                for c in cmds {
                    let d = self.hold(&c.req, &[]);
                    self.learn_commit(&d, c.ts);
                }
            }
            TempoMsg::Consensus { cmds } => {
                cmds.into_iter().for_each(|p| self.on_consensus(from, p))
            }
            TempoMsg::ConsensusAck { acks } => acks
                .into_iter()
                .for_each(|r| self.on_consensus_ack(from, r)),
            TempoMsg::Recover { cmds } => cmds.into_iter().for_each(|p| self.on_recover(from, p)),
            TempoMsg::RecoverAck { acks } => {
                acks.into_iter().for_each(|r| self.on_recover_ack(from, r))
            }
            TempoMsg::Votes {
                base,
                upto,
                commits,
                cond,
            } => self.on_votes(from, base, upto, commits, cond),
            TempoMsg::VotesAck { have, gap } => self.on_votes_ack(from, have, gap),
            TempoMsg::Batch(msgs) => msgs.into_iter().for_each(|m| self.on_message(from, m)),
        }
    }

    fn on_votes_ack(&mut self, from: &str, have: u64, gap: bool) {
        let acked = self.acked.get(from).copied().unwrap_or(0);
        if gap || have < acked {
            // A lost message, or a peer that restarted: resend from what it has.
            self.sent.insert(from.to_string(), have);
            self.acked.insert(from.to_string(), have);
        } else {
            self.acked.insert(from.to_string(), have);
        }
    }

    /// The highest timestamp a majority's frontiers reach.
    fn stable(&self) -> u64 {
        let mut f: Vec<u64> = self
            .peers
            .iter()
            .map(|p| self.usable_of.get(p).copied().unwrap_or(0))
            .collect();
        f.push(self.frontier());
        f.sort_unstable_by(|a, b| b.cmp(a));
        f[majority(f.len()) - 1]
    }

    fn execute(&mut self) {
        let stable = if self.bugs.has(Bug::ExecuteUnstable) {
            // Bug::ExecuteUnstable: run whatever is committed, in timestamp order among
            // what we know, without waiting for lower timestamps to be impossible.
            u64::MAX
        } else {
            self.stable()
        };
        while let Some((ts, _)) = self.pending_exec.first() {
            if *ts > stable {
                break;
            }
            let (ts, d) = self.pending_exec.pop_first().unwrap();
            let req = &self.cmds[&d].req;
            let outcome = self.store.apply(&req.cmd, &mut self.rng);
            self.executed += 1;
            #[cfg(test)]
            self.exec_order.push((ts, d.clone()));
            let _ = ts;
            if req.id.node == self.id {
                self.unsealed.push((req.id.clone(), outcome));
            }
        }
    }

    /// Every peer's frontier we have not shipped yet, with the commits it covers.
    ///
    /// A `Votes` that goes at once reaches no further than the clock of the last durable
    /// batch (a restart restores at least that). Beyond it, our frontier rides with the
    /// messages held until everything written so far is durable, if any: so a member's
    /// `ProposeAck` carries its votes for the command, and a coordinator's `Commit` its
    /// frontier past it (Tempo's `MProposeAck` and `MCommit` carry votes the same way).
    fn ship_votes(&mut self) {
        for peer in self.peers.clone() {
            // A suspected peer gets only the keep-alive until it answers: shipping to a
            // dead peer would re-serialize up to MAX_SHIP commits on every batch.
            if self.suspected(&peer) {
                continue;
            }
            let mine = self.frontier_for(&peer);
            let base = self.sent.get(&peer).copied().unwrap_or(0);
            if mine.min(self.durable_clock) > base {
                let part = self.votes_part(base, mine.min(self.durable_clock));
                self.sent.insert(peer.clone(), part.1);
                self.out(&peer).votes = Some(part);
            }
            let base = self.sent.get(&peer).copied().unwrap_or(0);
            let held = self.out.get(&peer).is_some_and(Outbox::needs_durability);
            if held && mine.min(self.clock) > base {
                let part = self.votes_part(base, mine.min(self.clock));
                self.sent.insert(peer.clone(), part.1);
                self.out(&peer).votes_held = Some(part);
            }
        }
    }

    /// A `Votes` from `base` towards `mine` (a frontier shipped to some peer): up to
    /// [`MAX_SHIP`] commits; attached ranges still open here are the peer's `cond`.
    fn votes_part(&self, base: u64, mine: u64) -> VotesPart {
        let mut upto = mine;
        let mut commits = Vec::new();
        let mut cond = Vec::new();
        for (&first, (_, d)) in self.ranges.range(base + 1..=mine) {
            if commits.len() == MAX_SHIP {
                upto = first - 1;
                break;
            }
            let c = &self.cmds[d];
            match c.committed {
                Some(ts) => commits.push(Decided {
                    req: c.req.clone(),
                    ts,
                }),
                // Under `frontier_for(peer)`, only the peer's own commands are open.
                None => cond.push(c.req.id.clone()),
            }
        }
        (base, upto, commits, cond)
    }
}

impl Outbox {
    /// (messages that may go at once, messages held for the disk).
    fn drain(&mut self) -> (Vec<TempoMsg>, Vec<TempoMsg>) {
        let votes = |(base, upto, commits, cond)| TempoMsg::Votes {
            base,
            upto,
            commits,
            cond,
        };
        let mut free = Vec::new();
        if let Some(v) = self.votes.take() {
            free.push(votes(v));
        }
        if let Some((have, gap)) = self.votes_ack.take() {
            free.push(TempoMsg::VotesAck { have, gap });
        }
        let mut msgs = Vec::new();
        if !self.propose.is_empty() {
            msgs.push(TempoMsg::Propose {
                cmds: std::mem::take(&mut self.propose),
            });
        }
        if !self.propose_ack.is_empty() {
            msgs.push(TempoMsg::ProposeAck {
                acks: std::mem::take(&mut self.propose_ack),
            });
        }
        if !self.commit.is_empty() {
            msgs.push(TempoMsg::Commit {
                cmds: std::mem::take(&mut self.commit),
            });
        }
        if !self.consensus.is_empty() {
            msgs.push(TempoMsg::Consensus {
                cmds: std::mem::take(&mut self.consensus),
            });
        }
        if !self.consensus_ack.is_empty() {
            msgs.push(TempoMsg::ConsensusAck {
                acks: std::mem::take(&mut self.consensus_ack),
            });
        }
        if !self.recover.is_empty() {
            msgs.push(TempoMsg::Recover {
                cmds: std::mem::take(&mut self.recover),
            });
        }
        if !self.recover_ack.is_empty() {
            msgs.push(TempoMsg::RecoverAck {
                acks: std::mem::take(&mut self.recover_ack),
            });
        }
        if let Some(v) = self.votes_held.take() {
            msgs.push(votes(v));
        }
        (free, msgs)
    }

    /// Does anything queued promise state that must be durable first?
    fn needs_durability(&self) -> bool {
        !(self.propose.is_empty()
            && self.propose_ack.is_empty()
            && self.commit.is_empty()
            && self.consensus.is_empty()
            && self.consensus_ack.is_empty()
            && self.recover.is_empty()
            && self.recover_ack.is_empty())
    }
}

/// [`TempoMsg`]'s variants without their fields (metrics labels and typed decisions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TempoKind {
    Propose,
    ProposeAck,
    Commit,
    Consensus,
    ConsensusAck,
    Recover,
    RecoverAck,
    Votes,
    VotesAck,
}

impl MsgKind for TempoKind {
    fn name(self) -> &'static str {
        match self {
            TempoKind::Propose => "propose",
            TempoKind::ProposeAck => "propose_ack",
            TempoKind::Commit => "commit",
            TempoKind::Consensus => "consensus",
            TempoKind::ConsensusAck => "consensus_ack",
            TempoKind::Recover => "recover",
            TempoKind::RecoverAck => "recover_ack",
            TempoKind::Votes => "votes",
            TempoKind::VotesAck => "votes_ack",
        }
    }
}

impl Machine for Tempo {
    type Msg = TempoMsg;

    type Kind = TempoKind;

    fn kind(msg: &TempoMsg) -> TempoKind {
        match msg {
            TempoMsg::Propose { .. } => TempoKind::Propose,
            TempoMsg::ProposeAck { .. } => TempoKind::ProposeAck,
            TempoMsg::Commit { .. } => TempoKind::Commit,
            TempoMsg::Consensus { .. } => TempoKind::Consensus,
            TempoMsg::ConsensusAck { .. } => TempoKind::ConsensusAck,
            TempoMsg::Recover { .. } => TempoKind::Recover,
            TempoMsg::RecoverAck { .. } => TempoKind::RecoverAck,
            TempoMsg::Votes { .. } => TempoKind::Votes,
            TempoMsg::VotesAck { .. } => TempoKind::VotesAck,
            // Named by its first part, the one the batch is for (`drain` puts the
            // protocol messages first, votes last).
            TempoMsg::Batch(msgs) => msgs.first().map_or(TempoKind::VotesAck, Self::kind),
        }
    }

    fn applied_state(&self) -> (u64, &Store) {
        (self.executed, &self.store)
    }

    fn needs_durability(msg: &TempoMsg) -> bool {
        // Everything but the frontier messages promises something about state we hold: a
        // proposal (our clock and attached votes), a ballot, an accepted value, a
        // decision. A `Votes` sent on its own never reaches past our durable clock (one
        // that does rides in a batch with such messages, so the batch is held), and the
        // commits it carries were decided (and made durable) by whoever decided them.
        match msg {
            TempoMsg::Votes { .. } | TempoMsg::VotesAck { .. } => false,
            TempoMsg::Batch(msgs) => msgs.iter().any(Self::needs_durability),
            _ => true,
        }
    }

    fn persisted(&mut self, mark: StableMark) {
        self.durable_seq = self.durable_seq.max(mark.index);
        while let Some(&(seq, clock)) = self.clock_at.front() {
            if seq > self.durable_seq {
                break;
            }
            self.durable_clock = self.durable_clock.max(clock);
            self.clock_at.pop_front();
        }
    }

    fn tick(&mut self) {
        self.now += 1;
        if self.now >= self.pull_due {
            self.pull_due = self.now + self.timing.heartbeat.max(1);
            for peer in self.peers.clone() {
                let have = self.frontier_of.get(&peer).copied().unwrap_or(0);
                let slot = &mut self.out(&peer).votes_ack;
                if slot.is_none() {
                    *slot = Some((have, false));
                }
            }
        }
        if std::mem::take(&mut self.revived) {
            // A peer is back (a heal, a restart, a resumed process). Recoveries that failed
            // while we lacked a quorum have backed off exponentially, up to seconds; their
            // commands keep our frontier down (and so, once another process fails, the
            // stability of everything after them): retry them now, backoff reset.
            let h = self.timing.heartbeat.max(1);
            for d in self.uncommitted.clone() {
                let soon = self.now + self.rng.random_range(1..=h);
                let c = self.cmds.get_mut(&d).unwrap();
                if c.attempts > 0 {
                    c.attempts = 0;
                    c.deadline = c.deadline.min(soon);
                }
            }
        }
        // A command waiting on a process we suspect is recovered at once (see `expedite`),
        // not after the full timeout.
        let due: Vec<Dot> = self
            .uncommitted
            .iter()
            .filter(|d| {
                let c = &self.cmds[*d];
                c.deadline <= self.now || self.expedite(c)
            })
            .cloned()
            .collect();
        for d in due {
            self.start_recovery(&d);
        }
    }

    fn step(&mut self, from: &str, msg: TempoMsg) -> Option<TempoMsg> {
        if !self.peers.iter().any(|p| p == from) {
            return None;
        }
        self.alive(from);
        self.on_message(from, msg);
        None
    }

    fn unreachable(&mut self, peer: &str) {
        // Whatever we shipped past the acknowledged frontier may be lost: ship it again.
        let acked = self.acked.get(peer).copied().unwrap_or(0);
        self.sent.insert(peer.to_string(), acked);
    }

    fn expects_reply(_: &TempoMsg) -> bool {
        // Tempo's messages are one-way: an answer, where there is one, is a message of
        // its own.
        false
    }

    fn undelivered(&mut self, peer: &str, _kind: TempoKind, definite: bool) {
        self.posts_lost(peer, definite);
    }

    fn posts_lost(&mut self, peer: &str, definite: bool) {
        self.unreachable(peer);
        if definite {
            // Refused or cut off: no need to wait to know it is not answering.
            let since = self.now.saturating_sub(self.suspect_after());
            self.awaiting.insert(peer.to_string(), since);
        }
    }

    fn delivered(&mut self, peer: &str) {
        if self.peers.iter().any(|p| p == peer) {
            self.alive(peer);
        }
    }

    fn client(&mut self, req: Request) -> Result<(), Rejection> {
        // Refuse (definitely not applied) rather than take a request that cannot commit:
        // when no majority was heard from within the election timeout, or when a majority
        // has left our messages unanswered for a heartbeat (a cut link: without this, a
        // cut-off node took requests for 300 ms, and recovering them after the heal held
        // up every replica's execution; nodes/README.md, "Leaderless under the harness").
        let h = self.timing.heartbeat.max(1);
        let fresh = self
            .peers
            .iter()
            .filter(|p| {
                self.heard_within(p, self.timing.election_min)
                    && self
                        .awaiting
                        .get(*p)
                        .is_none_or(|&t| self.now < t + self.suspect_after().max(h))
            })
            .count();
        if fresh + 1 < majority(self.n()) {
            return Err(Rejection::NoQuorum);
        }
        let quorum = self.pick_quorum();
        let d = dot(&req.id);
        if self.cmds.contains_key(&d) {
            return Ok(());
        }
        let d = self.hold(&req, &quorum);
        let ts = self.propose(&d, 0, true);
        self.cmds
            .get_mut(&d)
            .unwrap()
            .fast_acks
            .insert(self.id.clone(), ts);
        let msg = Proposal {
            req,
            quorum: quorum.clone(),
            ts,
            ballot: 0,
        };
        for q in quorum.iter().skip(1) {
            self.out(q).propose.push(msg.clone());
        }
        if quorum.len() == 1 {
            // A single node is its own fast quorum.
            self.decide(&d, ts);
        }
        Ok(())
    }

    fn ready(&mut self) -> Ready<TempoMsg> {
        for peer in self.peers.clone() {
            self.resolve_claims(&peer);
        }
        self.execute();
        self.ship_votes();
        let mut records = Vec::with_capacity(self.dirty.len());
        for d in std::mem::take(&mut self.dirty) {
            let r = self.cmds[&d].record();
            records.push(serde_json::to_string(&r).expect("records serialize"));
        }
        let mark = (!records.is_empty()).then(|| {
            self.record_seq += 1;
            self.clock_at.push_back((self.record_seq, self.clock));
            StableMark {
                index: self.record_seq,
                epoch: 0,
            }
        });
        // A client answer may rest on our own decisions: hold it until every record
        // written so far is durable (another process may otherwise decide differently
        // after we crash).
        let seq = self.record_seq;
        self.waiting
            .extend(self.unsealed.drain(..).map(|(id, o)| (seq, id, o)));
        let durable = self.durable_seq;
        let mut replies = Vec::new();
        self.waiting.retain(|(s, id, o)| {
            if *s <= durable {
                replies.push((id.clone(), o.clone()));
                false
            } else {
                true
            }
        });
        let mut messages = Vec::new();
        for (peer, ob) in self.out.iter_mut() {
            let (free, held) = ob.drain();
            for mut msgs in [free, held] {
                let msg = match msgs.len() {
                    0 => continue,
                    1 => msgs.pop().unwrap(),
                    _ => TempoMsg::Batch(msgs),
                };
                messages.push((peer.clone(), msg));
                if !self.awaiting.contains_key(peer) {
                    self.awaiting.insert(peer.clone(), self.now);
                }
            }
        }
        Ready {
            mark,
            records,
            messages,
            replies,
            ..Ready::default()
        }
    }

    fn status(&self) -> Status {
        Status {
            role: "replica",
            term: 0,
            leader: None,
            commit_index: self.committed_count,
            applied_index: self.executed,
            last_index: self.clock,
            reachable_peers: self
                .peers
                .iter()
                .filter(|p| self.heard_within(p, self.timing.election_max))
                .cloned()
                .collect(),
        }
    }
}

#[cfg(test)]
impl Tempo {
    pub(crate) fn debug_line(&self) -> String {
        format!(
            "clock {} frontier {} of {:?} committed {} executed {} uncommitted {} pending {:?} open {:?}",
            self.clock,
            self.frontier(),
            self.frontier_of,
            self.committed_count,
            self.executed,
            self.uncommitted.len(),
            self.pending_exec.iter().take(3).collect::<Vec<_>>(),
            self.open.iter().take(3).collect::<Vec<_>>(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, Op, Value};
    use crate::sim::{ids, Net};

    const TIMING: Timing = Timing {
        heartbeat: 2,
        election_min: 10,
        election_max: 20,
    };

    fn cluster(n: usize, bugs: Bugs) -> Net<Tempo> {
        Net::new(ids(n).into_iter().enumerate().map(|(k, id)| {
            let peers = ids(n).into_iter().filter(|p| *p != id).collect();
            let t = Tempo::restore(id.clone(), peers, bugs.clone(), TIMING, k as u64, &[]).unwrap();
            (id, t)
        }))
    }

    fn put(node: &str, n: u64, key: &str, v: i64) -> Request {
        Request {
            id: RequestId {
                node: node.into(),
                n,
            },
            cmd: Command {
                op: Op::Put {
                    key: key.into(),
                    value: Value::Int(v),
                },
                client: None,
                seq: None,
            },
        }
    }

    #[test]
    fn every_replica_executes_in_the_same_order() {
        let mut net = cluster(3, Bugs::default());
        net.run(3);
        for (k, node) in ["n1", "n2", "n3", "n2"].iter().enumerate() {
            net.node(node)
                .client(put(node, k as u64, "k", k as i64))
                .unwrap();
        }
        net.run(3);
        for k in 0..4 {
            assert_eq!(net.answered(k), Some(&Outcome::Written), "{k}");
        }
        let orders: Vec<_> = net.nodes.values().map(|t| t.exec_order.clone()).collect();
        assert_eq!(orders[0].len(), 4);
        assert!(orders.iter().all(|o| *o == orders[0]), "{orders:?}");
    }

    /// What a step writes (`RecordRef`) must read back as the `Record` restart parses,
    /// and write out again byte for byte, with optional fields absent and present.
    #[test]
    fn written_record_reads_back_as_record() {
        let mut c = Cmd::new(put("n1", 7, "k", 3), vec!["n1".into(), "n2".into()]);
        for step in 0..2 {
            if step == 1 {
                c.proposal = Some((4, 9));
                c.normal = true;
                c.bal = 5;
                c.abal = 5;
                c.ats = 9;
                c.committed = Some(9);
            }
            let written = serde_json::to_string(&c.record()).unwrap();
            let read: Record = serde_json::from_str(&written).unwrap();
            assert_eq!(read.req, c.req);
            assert_eq!(read.quorum, c.quorum);
            assert_eq!(read.proposal, c.proposal);
            assert_eq!(read.committed, c.committed);
            assert_eq!(
                serde_json::to_string(&read).unwrap(),
                written,
                "step {step}"
            );
        }
    }
}
