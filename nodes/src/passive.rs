//! Passive replication: a Raft-like leader/follower protocol as a pure state machine.
//!
//! Section numbers cite the Raft paper (Ongaro & Ousterhout, 2014). The machine does no
//! I/O: the driver persists what [`Ready`] says before sending the messages it holds, so
//! a reply that grants a vote or acknowledges entries is only sent once they are durable.
//!
//! - Leader election with randomized timeouts; votes only for an up-to-date log (§5.2,
//!   §5.4.1). A pre-vote round (thesis §9.6) comes first, and a node that heard from a
//!   live leader within the minimum election timeout refuses (pre-)votes (§4.2.3), so a
//!   node returning from a partition does not depose a healthy leader.
//! - Replication with the consistency check (§5.3), at most one append in flight per
//!   follower: entries proposed meanwhile travel together in the next one, which is what
//!   batches replication (and the fsync) under load.
//! - A leader commits only entries of its own term by majority (§5.4.2), starting each
//!   term with a no-op, and answers a write only once it is applied.
//! - Primary–backup in the course's sense: only the leader executes a client's write. It
//!   runs the executor (`Store::execute`) against its *speculative* state — the applied
//!   state plus every entry after it in its log — when it appends the request, and the
//!   entry carries the [`Effect`](crate::command::Effect) (the key's new value, or no
//!   change). Every replica, the leader included, applies effects in log order once
//!   committed and never executes a logged request, so a roll (a random value) commits
//!   like any write. An effect depends only on the log before it, which log matching
//!   makes the same on every replica that commits the entry.
//! - Reads use ReadIndex (thesis §6.4): record the commit index, confirm leadership by a
//!   round of probes (or appends) acknowledged by a majority, wait until applied, read
//!   locally. All reads that arrive together share one round.
//! - A follower does not pass client requests on one by one: it batches them. Writes go
//!   to the leader in one `Forward` per round trip; the leader appends them and the
//!   follower answers each client when it applies the entry itself (the leader tells it
//!   the commit index promptly). Reads use the follower variant of ReadIndex (thesis
//!   §6.4.1): one `ReadIndex` asks the leader for its commit index, the leader confirms
//!   leadership with its next round and returns the index, and the follower serves
//!   every read of the batch once it has applied that far. Anything the leader refuses
//!   (or a lost batch known never to have arrived) goes back to the client path, which
//!   forwards it over HTTP as before.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::bugs::{Bug, Bugs};
use crate::command::{NodeId, Op, Outcome, Request, RequestId};
use crate::disk::HardState;
use crate::log::{Entry, Log, StableMark};
use crate::machine::{Machine, MsgKind, Ready, Rejection, Status, Timing};
use crate::progress::Progress;
use crate::quorum::{majority, majority_index};
use crate::store::Store;

/// Most entries in one append: bounds message size while a follower catches up.
const MAX_BATCH: usize = 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum RaftMsg {
    Append {
        term: u64,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
        /// The leader's ReadIndex round when it sent this; echoed in the reply.
        round: u64,
    },
    AppendReply {
        term: u64,
        success: bool,
        /// On success the last index the append covered; on failure where to retry after.
        index: u64,
        round: u64,
    },
    Vote {
        term: u64,
        last_index: u64,
        last_term: u64,
    },
    VoteReply {
        term: u64,
        granted: bool,
    },
    /// Pre-vote (thesis §9.6): "would you vote for me in `term`?" Changes no state, so a
    /// node cut off from the cluster cannot inflate its term and depose the leader when
    /// it returns.
    PreVote {
        term: u64,
        last_index: u64,
        last_term: u64,
    },
    PreVoteReply {
        term: u64,
        granted: bool,
    },
    /// ReadIndex confirmation: "do you still follow me in `term`?" Carries no entries, so
    /// it is answered without waiting for the disk.
    ReadProbe {
        term: u64,
        round: u64,
    },
    ReadAck {
        term: u64,
        round: u64,
        ok: bool,
    },
    /// Client writes a follower took, for the leader to append (batch `batch`).
    Forward {
        term: u64,
        batch: u64,
        reqs: Vec<Request>,
    },
    /// Whether the leader appended a `Forward`'s requests; if not, none of them.
    ForwardReply {
        term: u64,
        batch: u64,
        accepted: bool,
        leader: Option<NodeId>,
    },
    /// A follower's reads of batch `batch` want a read index.
    ReadIndex {
        term: u64,
        batch: u64,
    },
    /// The commit index once leadership was confirmed after the request arrived; `None`
    /// if the leader refuses (not leading, no quorum).
    ReadIndexReply {
        term: u64,
        batch: u64,
        index: Option<u64>,
        leader: Option<NodeId>,
    },
}

/// [`RaftMsg`]'s variants without their fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaftKind {
    Append,
    AppendReply,
    Vote,
    VoteReply,
    PreVote,
    PreVoteReply,
    ReadProbe,
    ReadAck,
    Forward,
    ForwardReply,
    ReadIndex,
    ReadIndexReply,
}

impl MsgKind for RaftKind {
    fn name(self) -> &'static str {
        match self {
            RaftKind::Append => "append",
            RaftKind::AppendReply => "append_reply",
            RaftKind::Vote => "vote",
            RaftKind::VoteReply => "vote_reply",
            RaftKind::PreVote => "pre_vote",
            RaftKind::PreVoteReply => "pre_vote_reply",
            RaftKind::ReadProbe => "read_probe",
            RaftKind::ReadAck => "read_ack",
            RaftKind::Forward => "forward",
            RaftKind::ForwardReply => "forward_reply",
            RaftKind::ReadIndex => "read_index",
            RaftKind::ReadIndexReply => "read_index_reply",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// A read a follower took: waiting to be sent (`batch` none), waiting for the leader's
/// read index, or waiting for `applied` to reach it.
#[derive(Debug)]
struct FollowerRead {
    id: RequestId,
    key: String,
    batch: Option<u64>,
    index: Option<u64>,
}

/// A follower's read-index request, served like a local read but answered by message.
#[derive(Debug)]
struct RemoteRead {
    from: NodeId,
    batch: u64,
    index: u64,
    round: u64,
}

/// A batch sent to the leader and not yet answered.
#[derive(Debug)]
struct Inflight {
    batch: u64,
    to: NodeId,
    sent_at: u64,
    ids: Vec<RequestId>,
}

#[derive(Debug)]
struct PendingRead {
    id: RequestId,
    key: String,
    /// Serve once applied reaches this (the commit index when the read arrived).
    index: u64,
    /// Serve once a majority acknowledged an append of this round.
    round: u64,
}

pub struct Raft {
    id: NodeId,
    peers: Vec<NodeId>,
    bugs: Bugs,
    timing: Timing,
    rng: StdRng,
    now: u64,

    // Persistent (§5.1, Figure 2).
    term: u64,
    vote: Option<NodeId>,
    log: Log,

    // Volatile.
    commit: u64,
    applied: u64,
    /// The state after the applied prefix (replies to reads come from here).
    store: Store,
    /// Leader only: the state after the whole log, against which the executor runs new
    /// requests. Rebuilt from `store` and the unapplied effects on becoming leader.
    spec: Option<Store>,
    role: Role,
    leader: Option<NodeId>,
    leader_contact: u64,
    election_deadline: u64,
    heartbeat_due: u64,
    votes: BTreeSet<NodeId>,
    progress: BTreeMap<NodeId, Progress>,
    /// Index of this leader's no-op: reads wait for it so the commit index is current.
    term_start: u64,
    round: u64,
    round_wanted: bool,
    /// When the latest probe round went out; one round at a time, so reads arriving
    /// meanwhile share the next one.
    probe_sent_at: Option<u64>,
    reads: Vec<PendingRead>,
    remote_reads: Vec<RemoteRead>,
    last_heard: BTreeMap<NodeId, u64>,

    // Follower side of batched forwarding.
    to_forward: Vec<Request>,
    forward_inflight: Option<Inflight>,
    follower_reads: Vec<FollowerRead>,
    read_index_inflight: Option<Inflight>,
    next_batch: u64,

    // Output, drained by `ready`.
    hard_dirty: bool,
    outbox: Vec<(NodeId, RaftMsg)>,
    replies: Vec<(RequestId, Outcome)>,
    rejected: Vec<(RequestId, Rejection)>,
}

impl Raft {
    /// Rebuilds a node from what its data directory held.
    pub fn restore(
        id: NodeId,
        peers: Vec<NodeId>,
        bugs: Bugs,
        timing: Timing,
        seed: u64,
        hard: HardState,
        entries: Vec<Entry>,
    ) -> Self {
        // Bug::ForgetVote: the term and vote on disk are ignored, as if never written.
        let hard = if bugs.has(Bug::ForgetVote) {
            HardState::default()
        } else {
            hard
        };
        let mut raft = Raft {
            id,
            peers,
            bugs,
            timing,
            rng: StdRng::seed_from_u64(seed),
            now: 0,
            term: hard.term,
            vote: hard.vote,
            log: Log::restore(entries),
            commit: 0,
            applied: 0,
            store: Store::default(),
            spec: None,
            role: Role::Follower,
            leader: None,
            leader_contact: 0,
            election_deadline: 0,
            heartbeat_due: 0,
            votes: BTreeSet::new(),
            progress: BTreeMap::new(),
            term_start: 0,
            round: 0,
            round_wanted: false,
            probe_sent_at: None,
            reads: Vec::new(),
            remote_reads: Vec::new(),
            last_heard: BTreeMap::new(),
            to_forward: Vec::new(),
            forward_inflight: None,
            follower_reads: Vec::new(),
            read_index_inflight: None,
            next_batch: 1,
            hard_dirty: false,
            outbox: Vec::new(),
            replies: Vec::new(),
            rejected: Vec::new(),
        };
        raft.reset_election_timer();
        raft
    }

    /// Bug::NoFencing: a leader that never learns it was deposed — no term it sees in any
    /// message makes it step down, so after a partition heals it keeps leading (and
    /// committing with followers that accept its appends) next to the new leader.
    fn unfenced_leader(&self) -> bool {
        self.bugs.has(Bug::NoFencing) && self.role == Role::Leader
    }

    fn cluster_size(&self) -> usize {
        self.peers.len() + 1
    }

    fn reset_election_timer(&mut self) {
        let t = self
            .rng
            .random_range(self.timing.election_min..=self.timing.election_max);
        self.election_deadline = self.now + t;
    }

    fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        if term > self.term {
            self.term = term;
            self.vote = None;
            self.hard_dirty = true;
        }
        if self.role == Role::Leader {
            for read in self.reads.drain(..) {
                self.rejected.push((read.id, Rejection::LeadershipLost));
            }
            for r in std::mem::take(&mut self.remote_reads) {
                let refusal = RaftMsg::ReadIndexReply {
                    term: self.term,
                    batch: r.batch,
                    index: None,
                    leader: leader.clone(),
                };
                self.outbox.push((r.from, refusal));
            }
            self.progress.clear();
            self.spec = None;
        }
        self.role = Role::Follower;
        if leader.is_some() {
            self.leader_contact = self.now;
        }
        self.leader = leader;
        self.votes.clear();
        self.reset_election_timer();
    }

    /// Election timeout: first ask whether a majority would vote for us at all.
    fn pre_campaign(&mut self) {
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes = BTreeSet::from([self.id.clone()]);
        self.reset_election_timer();
        if self.votes.len() >= majority(self.cluster_size()) {
            self.campaign();
            return;
        }
        for peer in self.peers.clone() {
            self.outbox.push((
                peer,
                RaftMsg::PreVote {
                    term: self.term + 1,
                    last_index: self.log.last_index(),
                    last_term: self.log.last_term(),
                },
            ));
        }
    }

    fn on_pre_vote(&mut self, term: u64, last_index: u64, last_term: u64) -> RaftMsg {
        let granted = term > self.term
            && !self.leader_is_live()
            && self.log.is_behind_or_equal(last_index, last_term);
        RaftMsg::PreVoteReply {
            term: self.term,
            granted,
        }
    }

    fn on_pre_vote_reply(&mut self, from: &str, term: u64, granted: bool) {
        if term > self.term && !granted && !self.unfenced_leader() {
            self.become_follower(term, None);
            return;
        }
        if self.role == Role::PreCandidate && granted {
            self.votes.insert(from.to_string());
            if self.votes.len() >= majority(self.cluster_size()) {
                self.campaign();
            }
        }
    }

    fn campaign(&mut self) {
        self.role = Role::Candidate;
        self.term += 1;
        self.vote = Some(self.id.clone());
        self.hard_dirty = true;
        self.leader = None;
        self.votes = BTreeSet::from([self.id.clone()]);
        self.reset_election_timer();
        tracing::info!(node = %self.id, term = self.term, "campaigning");
        if self.votes.len() >= majority(self.cluster_size()) {
            self.become_leader();
            return;
        }
        for peer in self.peers.clone() {
            self.outbox.push((
                peer,
                RaftMsg::Vote {
                    term: self.term,
                    last_index: self.log.last_index(),
                    last_term: self.log.last_term(),
                },
            ));
        }
    }

    fn become_leader(&mut self) {
        tracing::info!(node = %self.id, term = self.term, "became leader");
        self.role = Role::Leader;
        self.leader = Some(self.id.clone());
        let next = self.log.last_index() + 1;
        for peer in &self.peers {
            self.progress.insert(peer.clone(), Progress::new(next));
        }
        let mut spec = self.store.clone();
        for i in self.applied + 1..=self.log.last_index() {
            if let Some(effect) = self.log.entry(i).and_then(|e| e.effect.as_ref()) {
                spec.apply_effect(effect);
            }
        }
        self.spec = Some(spec);
        // §5.4.2 / §8: a no-op of the new term lets earlier entries commit, and marks
        // the point from which this leader's commit index is known to be current.
        self.term_start = self.log.append(Entry::noop(self.term));
        self.heartbeat_due = self.now + self.timing.heartbeat;
        self.maybe_commit();
    }

    /// A node that heard from a live leader (or, as leader, from a majority) within the
    /// minimum election timeout.
    fn leader_is_live(&self) -> bool {
        match self.role {
            Role::Leader => self.quorum_fresh(),
            _ => self.leader.is_some() && self.now < self.leader_contact + self.timing.election_min,
        }
    }

    fn quorum_fresh(&self) -> bool {
        let fresh = self
            .peers
            .iter()
            .filter(|p| self.heard_recently(p, self.timing.election_min))
            .count();
        fresh + 1 >= majority(self.cluster_size())
    }

    fn heard_recently(&self, peer: &str, within: u64) -> bool {
        self.last_heard
            .get(peer)
            .is_some_and(|&t| self.now < t + within)
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "AppendEntries' fields, as in Figure 2"
    )]
    fn on_append(
        &mut self,
        from: &str,
        term: u64,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
        round: u64,
    ) -> RaftMsg {
        let reject = |raft: &Raft| RaftMsg::AppendReply {
            term: raft.term,
            success: false,
            index: raft.log.last_index(),
            round,
        };
        if self.bugs.has(Bug::NoFencing) {
            // Bug::NoFencing: terms in appends are ignored — a leader never yields to
            // one, and a follower takes entries from a leader of an older term.
            if self.role == Role::Leader {
                return reject(self);
            }
        } else if term < self.term {
            return reject(self);
        }
        if term > self.term || self.role != Role::Follower {
            self.become_follower(term, Some(from.to_string()));
        }
        self.leader = Some(from.to_string());
        self.leader_contact = self.now;
        self.reset_election_timer();
        match self.log.accept(prev_index, prev_term, entries) {
            Ok(last) => {
                let commit = commit.min(last);
                if commit > self.commit {
                    self.commit = commit;
                    self.apply();
                }
                RaftMsg::AppendReply {
                    term: self.term,
                    success: true,
                    index: last,
                    round,
                }
            }
            Err(m) => RaftMsg::AppendReply {
                term: self.term,
                success: false,
                index: m.hint,
                round,
            },
        }
    }

    fn on_vote(&mut self, from: &str, term: u64, last_index: u64, last_term: u64) -> RaftMsg {
        if term > self.term && (self.leader_is_live() || self.unfenced_leader()) {
            return RaftMsg::VoteReply {
                term: self.term,
                granted: false,
            };
        }
        if term > self.term {
            self.become_follower(term, None);
        }
        let granted = term == self.term
            && self.vote.as_deref().is_none_or(|v| v == from)
            && self.log.is_behind_or_equal(last_index, last_term);
        if granted {
            self.vote = Some(from.to_string());
            self.hard_dirty = true;
            self.reset_election_timer();
        }
        RaftMsg::VoteReply {
            term: self.term,
            granted,
        }
    }

    fn on_append_reply(&mut self, from: &str, term: u64, success: bool, index: u64, round: u64) {
        if term > self.term {
            // Bug::NoFencing: a deposed leader ignores the newer term and keeps leading.
            if !self.bugs.has(Bug::NoFencing) {
                self.become_follower(term, None);
                return;
            }
        } else if term < self.term {
            return;
        }
        if self.role != Role::Leader {
            return;
        }
        let Some(p) = self.progress.get_mut(from) else {
            return;
        };
        p.acked_round = p.acked_round.max(round);
        p.on_reply(success, index);
        if success {
            self.maybe_commit();
        }
    }

    fn on_vote_reply(&mut self, from: &str, term: u64, granted: bool) {
        if term > self.term && !self.unfenced_leader() {
            self.become_follower(term, None);
            return;
        }
        if self.role == Role::Candidate && term == self.term && granted {
            self.votes.insert(from.to_string());
            if self.votes.len() >= majority(self.cluster_size()) {
                self.become_leader();
            }
        }
    }

    fn on_read_probe(&mut self, from: &str, term: u64, round: u64) -> RaftMsg {
        // Bug::NoFencing: a follower confirms any leader's round, whatever its term; a
        // leader refuses the other leader's round but does not step down for it.
        let refuse = if self.bugs.has(Bug::NoFencing) {
            self.role == Role::Leader
        } else {
            term < self.term
        };
        if refuse {
            return RaftMsg::ReadAck {
                term: self.term,
                round,
                ok: false,
            };
        }
        if term > self.term || self.role != Role::Follower {
            self.become_follower(term, Some(from.to_string()));
        }
        self.leader = Some(from.to_string());
        self.leader_contact = self.now;
        self.reset_election_timer();
        RaftMsg::ReadAck {
            term,
            round,
            ok: true,
        }
    }

    fn on_read_ack(&mut self, from: &str, term: u64, round: u64, ok: bool) {
        if term > self.term && !self.unfenced_leader() {
            self.become_follower(term, None);
            return;
        }
        if ok && term == self.term && self.role == Role::Leader {
            if let Some(p) = self.progress.get_mut(from) {
                p.acked_round = p.acked_round.max(round);
            }
        }
    }

    /// Leader side of a follower's write batch: append them all, or none.
    fn on_forward(&mut self, from: &str, term: u64, batch: u64, reqs: Vec<Request>) -> RaftMsg {
        let refuse = |raft: &Raft, leader: Option<NodeId>| RaftMsg::ForwardReply {
            term: raft.term,
            batch,
            accepted: false,
            leader,
        };
        if self.role != Role::Leader || term > self.term {
            return refuse(self, self.leader.clone());
        }
        // Bug::AckBeforeCommit answers at the leader; so such a leader takes writes only
        // on the path where it answers the client itself (the follower forwards them
        // over HTTP instead). Without a quorum, that path gives the definite 503.
        if self.bugs.has(Bug::AckBeforeCommit) || !self.quorum_fresh() {
            return refuse(self, Some(self.id.clone()));
        }
        for req in reqs {
            self.append_executed(req);
        }
        let last = self.log.last_index();
        if let Some(p) = self.progress.get_mut(from) {
            p.commit_wanted = p.commit_wanted.max(last);
        }
        RaftMsg::ForwardReply {
            term: self.term,
            batch,
            accepted: true,
            leader: None,
        }
    }

    fn on_forward_reply(&mut self, batch: u64, accepted: bool, leader: Option<NodeId>) {
        if self
            .forward_inflight
            .as_ref()
            .is_none_or(|f| f.batch != batch)
        {
            return;
        }
        let inflight = self.forward_inflight.take().unwrap();
        if !accepted {
            // Definitely in no log: back to the client path (HTTP forward or 503).
            let leader = leader.or_else(|| self.leader.clone());
            for id in inflight.ids {
                let leader = leader.clone();
                self.rejected.push((id, Rejection::NotLeader { leader }));
            }
        }
        // Accepted: each is answered when this node applies it.
    }

    /// Leader side of a follower's read batch: answered once a round started after it
    /// arrived is confirmed by a majority.
    fn on_read_index(&mut self, from: &str, term: u64, batch: u64) {
        let leading = self.role == Role::Leader && term <= self.term;
        // Bug::StaleRead serves reads at the leader without a round; such a leader takes
        // reads only on that path (the follower forwards them over HTTP).
        if !leading || self.bugs.has(Bug::StaleRead) || !self.quorum_fresh() {
            let leader = if leading {
                Some(self.id.clone())
            } else {
                self.leader.clone()
            };
            let refusal = RaftMsg::ReadIndexReply {
                term: self.term,
                batch,
                index: None,
                leader,
            };
            self.outbox.push((from.to_string(), refusal));
            return;
        }
        self.remote_reads.push(RemoteRead {
            from: from.to_string(),
            batch,
            index: self.commit.max(self.term_start),
            round: self.round + 1,
        });
        self.round_wanted = true;
    }

    fn on_read_index_reply(&mut self, batch: u64, index: Option<u64>, leader: Option<NodeId>) {
        if self
            .read_index_inflight
            .as_ref()
            .is_some_and(|r| r.batch == batch)
        {
            self.read_index_inflight = None;
        }
        match index {
            Some(index) => {
                for r in &mut self.follower_reads {
                    if r.batch == Some(batch) {
                        r.index = Some(index);
                    }
                }
            }
            None => {
                let leader = leader.or_else(|| self.leader.clone());
                self.reject_follower_reads(Some(batch), leader);
            }
        }
    }

    /// Rejects the follower reads of `batch` (all of them if `None`) as not served here.
    fn reject_follower_reads(&mut self, batch: Option<u64>, leader: Option<NodeId>) {
        let (gone, kept) = std::mem::take(&mut self.follower_reads)
            .into_iter()
            .partition(|r| batch.is_none() || r.batch == batch);
        self.follower_reads = kept;
        for r in gone {
            let leader = leader.clone();
            self.rejected.push((r.id, Rejection::NotLeader { leader }));
        }
    }

    /// The leader a follower may batch client requests to, if any.
    fn batch_target(&self) -> Option<NodeId> {
        if self.role != Role::Follower {
            return None;
        }
        self.leader.clone().filter(|l| *l != self.id)
    }

    /// Follower side, once per batch: send what queued, serve reads that may be served,
    /// give back what can no longer go to the leader.
    fn follower_ready(&mut self) {
        let Some(leader) = self.batch_target() else {
            let leader = self.leader.clone();
            for req in std::mem::take(&mut self.to_forward) {
                let leader = leader.clone();
                self.rejected
                    .push((req.id, Rejection::NotLeader { leader }));
            }
            // Requests already forwarded may still commit; they are answered if this node
            // applies them, else the client times out (unknown), as over HTTP.
            self.forward_inflight = None;
            self.read_index_inflight = None;
            self.reject_follower_reads(None, leader);
            return;
        };
        // A batch whose answer never came (lost with no failure report) stops blocking.
        let expired = |f: &Option<Inflight>, now: u64, after: u64, to: &str| {
            f.as_ref()
                .is_some_and(|f| now > f.sent_at + after || f.to != to)
        };
        if expired(
            &self.forward_inflight,
            self.now,
            self.timing.election_max,
            &leader,
        ) {
            self.forward_inflight = None;
        }
        if expired(
            &self.read_index_inflight,
            self.now,
            self.timing.election_max,
            &leader,
        ) {
            let batch = self.read_index_inflight.take().map(|r| r.batch);
            self.reject_follower_reads(batch, Some(leader.clone()));
        }
        if !self.to_forward.is_empty() && self.forward_inflight.is_none() {
            let batch = self.next_batch;
            self.next_batch += 1;
            let reqs = std::mem::take(&mut self.to_forward);
            self.forward_inflight = Some(Inflight {
                batch,
                to: leader.clone(),
                sent_at: self.now,
                ids: reqs.iter().map(|r| r.id.clone()).collect(),
            });
            let msg = RaftMsg::Forward {
                term: self.term,
                batch,
                reqs,
            };
            self.outbox.push((leader.clone(), msg));
        }
        let unsent = self.follower_reads.iter().any(|r| r.batch.is_none());
        if unsent && self.read_index_inflight.is_none() {
            let batch = self.next_batch;
            self.next_batch += 1;
            for r in &mut self.follower_reads {
                if r.batch.is_none() {
                    r.batch = Some(batch);
                }
            }
            self.read_index_inflight = Some(Inflight {
                batch,
                to: leader.clone(),
                sent_at: self.now,
                ids: Vec::new(),
            });
            let msg = RaftMsg::ReadIndex {
                term: self.term,
                batch,
            };
            self.outbox.push((leader, msg));
        }
        let applied = self.applied;
        let mut k = 0;
        while k < self.follower_reads.len() {
            if self.follower_reads[k].index.is_some_and(|i| i <= applied) {
                let r = self.follower_reads.swap_remove(k);
                let value = self.store.get(&r.key);
                self.replies.push((r.id, Outcome::Value(value)));
            } else {
                k += 1;
            }
        }
    }

    fn maybe_commit(&mut self) {
        let mut matched = vec![self.log.stable()];
        matched.extend(self.progress.values().map(|p| p.matched));
        let n = majority_index(&matched);
        if n > self.commit && self.log.term(n) == Some(self.term) {
            self.commit = n;
            self.apply();
        }
    }

    fn apply(&mut self) {
        while self.applied < self.commit {
            self.apply_next();
        }
    }

    /// Applies the next committed entry's effect: no replica (the leader included)
    /// executes a logged request.
    fn apply_next(&mut self) {
        self.applied += 1;
        let Some(Entry {
            req: Some(req),
            effect: Some(effect),
            ..
        }) = self.log.entry(self.applied)
        else {
            return; // a no-op
        };
        let outcome = self.store.apply_effect(effect);
        if req.id.node == self.id {
            self.replies.push((req.id.clone(), outcome));
        }
    }

    /// Leader: executes `req` against the speculative state and appends it with its
    /// effect.
    fn append_executed(&mut self, req: Request) {
        let spec = self.spec.get_or_insert_with(|| self.store.clone());
        let effect = spec.execute(&req.cmd, &mut self.rng);
        spec.apply_effect(&effect);
        self.log.append(Entry {
            term: self.term,
            req: Some(req),
            effect: Some(effect),
        });
    }

    fn send_append(&mut self, peer: &str, heartbeat: bool) {
        let Some(p) = self.progress.get(peer) else {
            return;
        };
        let has_entries = p.next <= self.log.last_index();
        if !p.can_send(self.now, has_entries) {
            return;
        }
        // A follower waiting to answer its own clients (forwarded writes, reads at a
        // read index) learns the commit index at once rather than at the next heartbeat.
        let commit_news = p.commit_sent < self.commit.min(p.commit_wanted);
        if !(has_entries || heartbeat || commit_news) {
            return;
        }
        let prev_index = p.next - 1;
        let entries = self.log.slice(p.next, MAX_BATCH);
        let count = entries.len() as u64;
        let msg = RaftMsg::Append {
            term: self.term,
            prev_index,
            prev_term: self.log.term(prev_index).unwrap_or(0),
            entries,
            commit: self.commit,
            round: self.round,
        };
        let p = self.progress.get_mut(peer).unwrap();
        p.on_send(self.now, count);
        p.sent_round = self.round;
        p.commit_sent = self.commit;
        self.outbox.push((peer.to_string(), msg));
    }

    /// The latest round a majority (us included) has acknowledged.
    fn confirmed_round(&self) -> u64 {
        let mut acked = vec![self.round];
        acked.extend(self.progress.values().map(|p| p.acked_round));
        majority_index(&acked)
    }

    fn serve_reads(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let confirmed = self.confirmed_round();
        let mut k = 0;
        while k < self.remote_reads.len() {
            if self.remote_reads[k].round <= confirmed {
                let r = self.remote_reads.swap_remove(k);
                if let Some(p) = self.progress.get_mut(&r.from) {
                    p.commit_wanted = p.commit_wanted.max(r.index);
                }
                let reply = RaftMsg::ReadIndexReply {
                    term: self.term,
                    batch: r.batch,
                    index: Some(r.index),
                    leader: None,
                };
                self.outbox.push((r.from, reply));
            } else {
                k += 1;
            }
        }
        let mut i = 0;
        while i < self.reads.len() {
            let r = &self.reads[i];
            if r.round <= confirmed && self.applied >= r.index {
                let r = self.reads.swap_remove(i);
                let value = self.store.get(&r.key);
                self.replies.push((r.id, Outcome::Value(value)));
            } else {
                i += 1;
            }
        }
    }
}

impl Machine for Raft {
    type Msg = RaftMsg;

    type Kind = RaftKind;

    fn kind(msg: &RaftMsg) -> RaftKind {
        match msg {
            RaftMsg::Append { .. } => RaftKind::Append,
            RaftMsg::AppendReply { .. } => RaftKind::AppendReply,
            RaftMsg::Vote { .. } => RaftKind::Vote,
            RaftMsg::VoteReply { .. } => RaftKind::VoteReply,
            RaftMsg::PreVote { .. } => RaftKind::PreVote,
            RaftMsg::PreVoteReply { .. } => RaftKind::PreVoteReply,
            RaftMsg::ReadProbe { .. } => RaftKind::ReadProbe,
            RaftMsg::ReadAck { .. } => RaftKind::ReadAck,
            RaftMsg::Forward { .. } => RaftKind::Forward,
            RaftMsg::ForwardReply { .. } => RaftKind::ForwardReply,
            RaftMsg::ReadIndex { .. } => RaftKind::ReadIndex,
            RaftMsg::ReadIndexReply { .. } => RaftKind::ReadIndexReply,
        }
    }

    fn needs_durability(msg: &RaftMsg) -> bool {
        // A leader's appends may precede its own fsync (it counts itself only up to
        // `Log::stable`); acknowledgements and votes must not precede ours. Forwarding
        // and read indexes promise nothing about durable state.
        matches!(
            msg,
            RaftMsg::AppendReply { .. } | RaftMsg::Vote { .. } | RaftMsg::VoteReply { .. }
        )
    }

    fn persisted(&mut self, mark: StableMark) {
        self.log.persisted(mark);
    }

    fn tick(&mut self) {
        self.now += 1;
        match self.role {
            Role::Leader => {
                for p in self.progress.values_mut() {
                    p.expire(self.now, self.timing.election_max);
                }
                if self.now >= self.heartbeat_due {
                    self.heartbeat_due = self.now + self.timing.heartbeat;
                    for peer in self.peers.clone() {
                        self.send_append(&peer, true);
                    }
                }
            }
            Role::Follower | Role::PreCandidate | Role::Candidate => {
                if self.now >= self.election_deadline {
                    self.pre_campaign();
                }
            }
        }
    }

    fn step(&mut self, from: &str, msg: RaftMsg) -> Option<RaftMsg> {
        if !self.peers.iter().any(|p| p == from) {
            return None;
        }
        self.last_heard.insert(from.to_string(), self.now);
        match msg {
            RaftMsg::Append {
                term,
                prev_index,
                prev_term,
                entries,
                commit,
                round,
            } => Some(self.on_append(from, term, prev_index, prev_term, entries, commit, round)),
            RaftMsg::Vote {
                term,
                last_index,
                last_term,
            } => Some(self.on_vote(from, term, last_index, last_term)),
            RaftMsg::AppendReply {
                term,
                success,
                index,
                round,
            } => {
                self.on_append_reply(from, term, success, index, round);
                None
            }
            RaftMsg::VoteReply { term, granted } => {
                self.on_vote_reply(from, term, granted);
                None
            }
            RaftMsg::PreVote {
                term,
                last_index,
                last_term,
            } => Some(self.on_pre_vote(term, last_index, last_term)),
            RaftMsg::PreVoteReply { term, granted } => {
                self.on_pre_vote_reply(from, term, granted);
                None
            }
            RaftMsg::ReadProbe { term, round } => Some(self.on_read_probe(from, term, round)),
            RaftMsg::ReadAck { term, round, ok } => {
                self.on_read_ack(from, term, round, ok);
                None
            }
            RaftMsg::Forward { term, batch, reqs } => {
                Some(self.on_forward(from, term, batch, reqs))
            }
            RaftMsg::ForwardReply {
                batch,
                accepted,
                leader,
                ..
            } => {
                self.on_forward_reply(batch, accepted, leader);
                None
            }
            RaftMsg::ReadIndex { term, batch } => {
                self.on_read_index(from, term, batch);
                None
            }
            RaftMsg::ReadIndexReply {
                batch,
                index,
                leader,
                ..
            } => {
                self.on_read_index_reply(batch, index, leader);
                None
            }
        }
    }

    fn unreachable(&mut self, peer: &str) {
        let retry = self.now + self.timing.heartbeat;
        if let Some(p) = self.progress.get_mut(peer) {
            p.on_unreachable(retry);
        }
    }

    fn undelivered(&mut self, peer: &str, kind: RaftKind, definite: bool) {
        self.unreachable(peer);
        let to_peer = |f: &Option<Inflight>| f.as_ref().is_some_and(|f| f.to == peer);
        match kind {
            RaftKind::Forward if to_peer(&self.forward_inflight) => {
                let inflight = self.forward_inflight.take().unwrap();
                if definite {
                    for id in inflight.ids {
                        let leader = Some(peer.to_string());
                        self.rejected.push((id, Rejection::NotLeader { leader }));
                    }
                }
            }
            RaftKind::ReadIndex if to_peer(&self.read_index_inflight) => {
                let batch = self.read_index_inflight.take().map(|r| r.batch);
                self.reject_follower_reads(batch, Some(peer.to_string()));
            }
            _ => {}
        }
    }

    fn client_forwarded(&mut self, req: Request) -> Result<(), Rejection> {
        if self.role != Role::Leader {
            return Err(Rejection::NotLeader {
                leader: self.leader.clone(),
            });
        }
        self.client(req)
    }

    fn client(&mut self, req: Request) -> Result<(), Rejection> {
        if self.role != Role::Leader {
            let not_leader = Rejection::NotLeader {
                leader: self.leader.clone(),
            };
            if self.batch_target().is_none() {
                return Err(not_leader);
            }
            match req.cmd.op {
                // Bug::StaleRead and Bug::AckBeforeCommit act where the leader answers
                // the client itself, so with them requests take the HTTP path there.
                Op::Get { .. } if self.bugs.has(Bug::StaleRead) => return Err(not_leader),
                Op::Get { key } => self.follower_reads.push(FollowerRead {
                    id: req.id,
                    key,
                    batch: None,
                    index: None,
                }),
                _ if self.bugs.has(Bug::AckBeforeCommit) => return Err(not_leader),
                _ => self.to_forward.push(req),
            }
            return Ok(());
        }
        if let Op::Get { key } = &req.cmd.op {
            // Bug::StaleRead: answer from local state with no leadership check.
            if self.bugs.has(Bug::StaleRead) {
                let value = self.store.get(key);
                self.replies.push((req.id, Outcome::Value(value)));
                return Ok(());
            }
            if !self.quorum_fresh() {
                return Err(Rejection::NoQuorum);
            }
            self.reads.push(PendingRead {
                id: req.id,
                key: key.clone(),
                index: self.commit.max(self.term_start),
                round: self.round + 1,
            });
            self.round_wanted = true;
            return Ok(());
        }
        if !self.quorum_fresh() {
            return Err(Rejection::NoQuorum);
        }
        self.append_executed(req);
        // Bug::AckBeforeCommit: apply (and so answer) as soon as it is in our own log.
        if self.bugs.has(Bug::AckBeforeCommit) {
            while self.applied < self.log.last_index() {
                self.apply_next();
            }
        }
        Ok(())
    }

    fn ready(&mut self) -> Ready<RaftMsg> {
        if self.role == Role::Leader {
            let outstanding = self.round > self.confirmed_round()
                && self
                    .probe_sent_at
                    .is_some_and(|t| self.now < t + self.timing.heartbeat);
            if self.round_wanted && !outstanding {
                self.round += 1;
                self.round_wanted = false;
                self.probe_sent_at = Some(self.now);
                let last_index = self.log.last_index();
                for peer in self.peers.clone() {
                    let Some(p) = self.progress.get(&peer) else {
                        continue;
                    };
                    let backoff = self.now < p.retry_after;
                    // An append that goes out below, in this same batch, carries the new
                    // round and its reply acknowledges it: no separate probe needed.
                    let appends_now = p.next <= last_index && p.can_send(self.now, true);
                    if !backoff && !appends_now {
                        let probe = RaftMsg::ReadProbe {
                            term: self.term,
                            round: self.round,
                        };
                        self.outbox.push((peer, probe));
                    }
                }
            }
            self.maybe_commit();
            // Before the appends go out: they then carry the newest commit index, and
            // any commit a follower now waits for (a read index just granted).
            self.serve_reads();
            for peer in self.peers.clone() {
                self.send_append(&peer, false);
            }
        } else {
            self.follower_ready();
        }
        let hard_state = std::mem::take(&mut self.hard_dirty).then(|| HardState {
            term: self.term,
            vote: self.vote.clone(),
        });
        let log_from = self.log.take_unstable();
        let entries = log_from.map_or_else(Vec::new, |from| self.log.slice(from, usize::MAX));
        Ready {
            hard_state,
            log_from,
            entries,
            mark: log_from.map(|_| self.log.mark()),
            messages: std::mem::take(&mut self.outbox),
            replies: std::mem::take(&mut self.replies),
            rejected: std::mem::take(&mut self.rejected),
            records: Vec::new(),
        }
    }

    fn applied_state(&self) -> (u64, &Store) {
        (self.applied, &self.store)
    }

    fn status(&self) -> Status {
        Status {
            role: match self.role {
                Role::Follower => "follower",
                Role::PreCandidate => "pre-candidate",
                Role::Candidate => "candidate",
                Role::Leader => "leader",
            },
            term: self.term,
            leader: self.leader.clone(),
            commit_index: self.commit,
            applied_index: self.applied,
            last_index: self.log.last_index(),
            reachable_peers: self
                .peers
                .iter()
                .filter(|p| self.heard_recently(p, self.timing.election_max))
                .cloned()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, Value};
    use crate::sim::{chaos, ids, Inspect, Net};

    impl Inspect for Raft {
        fn log(&self) -> &Log {
            &self.log
        }
        fn commit(&self) -> u64 {
            self.commit
        }
    }

    #[test]
    fn chaos_never_breaks_committed_prefix() {
        chaos::run_many(|id, peers, hard, log, seed| {
            Raft::restore(id.into(), peers, Bugs::default(), TIMING, seed, hard, log)
        });
    }

    /// The chaos check can fail: with fencing off, a deposed leader overwrites committed
    /// entries, and some seed shows it.
    #[test]
    fn chaos_catches_no_fencing() {
        let caught = (0..40).any(|seed| {
            std::panic::catch_unwind(|| {
                chaos::run(seed, 3, 4000, |id, peers, hard, log, seed| {
                    let bugs = Bugs::new([Bug::NoFencing]);
                    Raft::restore(id.into(), peers, bugs, TIMING, seed, hard, log)
                })
            })
            .is_err()
        });
        assert!(caught);
    }

    const TIMING: Timing = Timing {
        heartbeat: 2,
        election_min: 10,
        election_max: 20,
    };

    fn node(id: &str, n: usize, bugs: Bugs, hard: HardState, log: Vec<Entry>, seed: u64) -> Raft {
        let peers = ids(n).into_iter().filter(|p| p != id).collect();
        Raft::restore(id.into(), peers, bugs, TIMING, seed, hard, log)
    }

    fn cluster(n: usize) -> Net<Raft> {
        Net::new(ids(n).into_iter().enumerate().map(|(k, id)| {
            let r = node(
                &id,
                n,
                Bugs::default(),
                HardState::default(),
                vec![],
                k as u64,
            );
            (id, r)
        }))
    }

    fn put(node: &str, n: u64, v: i64) -> Request {
        Request {
            id: RequestId {
                node: node.into(),
                n,
            },
            cmd: Command {
                op: Op::Put {
                    key: "k".into(),
                    value: Value::Int(v),
                },
                client: None,
                seq: None,
            },
        }
    }

    fn read(node: &str, n: u64) -> Request {
        Request {
            id: RequestId {
                node: node.into(),
                n,
            },
            cmd: Command {
                op: Op::Get { key: "k".into() },
                client: None,
                seq: None,
            },
        }
    }

    fn cmd(node: &str, n: u64, op: Op, session: Option<(&str, u64)>) -> Request {
        Request {
            id: RequestId {
                node: node.into(),
                n,
            },
            cmd: Command {
                op,
                client: session.map(|s| s.0.to_string()),
                seq: session.map(|s| s.1),
            },
        }
    }

    /// Primary–backup: the leader executes every write (rolls included, taken at the
    /// leader or forwarded by a follower) and ships the effect; followers apply effects
    /// and never call the executor, and every replica ends in the leader's state — also
    /// across a failover, where the new leader executes a retried roll's session from the
    /// effects alone.
    #[test]
    fn followers_apply_effects_and_never_execute() {
        let mut net = cluster(3);
        net.run(50);
        let l = net.leaders()[0].clone();
        let f = net.nodes.keys().find(|id| **id != l).unwrap().clone();
        let roll = |key: &str| Op::Roll {
            key: key.into(),
            drawn: None,
        };
        net.node(&l)
            .client(cmd(&l, 1, roll("a"), Some(("c", 1))))
            .unwrap();
        net.node(&f).client(cmd(&f, 2, roll("b"), None)).unwrap();
        let cas = Op::Cas {
            key: "a".into(),
            from: Value::Int(-1),
            to: Value::Int(0),
        };
        net.node(&l).client(cmd(&l, 3, cas, None)).unwrap();
        net.run(5);
        let Some(Outcome::Rolled { value: a }) = net.answered(1).cloned() else {
            panic!("roll at the leader: {:?}", net.answered(1));
        };
        assert!(matches!(net.answered(2), Some(Outcome::Rolled { .. })));
        assert_eq!(
            net.answered(3),
            Some(&Outcome::CasMismatch {
                current: Some(Value::Int(a))
            })
        );
        let digest = net.nodes[&l].store.digest();
        for (id, r) in &net.nodes {
            assert_eq!(r.applied, net.nodes[&l].applied, "{id}");
            assert_eq!(r.store.digest(), digest, "{id}");
            assert_eq!(r.store.executions(), 0, "{id} executed a logged request");
            let spec = r.spec.as_ref().map_or(0, Store::executions);
            assert_eq!(spec > 0, *id == l, "{id}: executor calls {spec}");
        }
        // Failover: the old leader goes; the retry of (c, 1) at the new leader gets the
        // first roll's answer from the replicated session, and nothing changes.
        net.isolate(&l);
        net.run(60);
        let new = net.leaders().into_iter().find(|x| *x != l).unwrap();
        net.node(&new)
            .client(cmd(&new, 4, roll("a"), Some(("c", 1))))
            .unwrap();
        net.run(5);
        assert_eq!(net.answered(4), Some(&Outcome::Rolled { value: a }));
        assert_eq!(net.nodes[&new].store.get("a"), Some(Value::Int(a)));
        for (id, r) in &net.nodes {
            if *id != new {
                assert_eq!(r.store.executions(), 0, "{id}");
                assert!(r.spec.is_none() || *id == l, "{id}");
            }
        }
    }

    #[test]
    fn elects_one_leader_and_commits_on_majority() {
        let mut net = cluster(3);
        net.run(50);
        let leaders = net.leaders();
        assert_eq!(leaders.len(), 1, "{leaders:?}");
        let l = leaders[0].clone();
        net.node(&l).client(put(&l, 1, 7)).unwrap();
        net.run(3);
        assert_eq!(net.answered(1), Some(&Outcome::Written));
        for r in net.nodes.values() {
            assert_eq!(r.store.get("k"), Some(Value::Int(7)));
        }
    }

    #[test]
    fn isolated_leader_cannot_commit_and_majority_moves_on() {
        let mut net = cluster(3);
        net.run(50);
        let old = net.leaders()[0].clone();
        net.isolate(&old);
        net.node(&old).client(put(&old, 1, 1)).unwrap();
        net.run(60);
        assert!(net.replies.is_empty(), "isolated leader answered a write");
        let others: Vec<_> = net.leaders().into_iter().filter(|l| *l != old).collect();
        assert_eq!(others.len(), 1);
        let new = others[0].clone();
        net.node(&new).client(put(&new, 2, 2)).unwrap();
        net.run(5);
        net.heal();
        net.run(30);
        // The old leader's uncommitted write was overwritten, never applied.
        for r in net.nodes.values() {
            assert_eq!(r.store.get("k"), Some(Value::Int(2)), "{}", r.id);
        }
        assert!(!net.replies.iter().any(|(_, id, _)| id.n == 1));
    }

    #[test]
    fn returning_partitioned_follower_does_not_depose_the_leader() {
        let mut net = cluster(3);
        net.run(50);
        let l = net.leaders()[0].clone();
        let term = net.nodes[&l].term;
        let f = net.nodes.keys().find(|k| **k != l).unwrap().clone();
        net.isolate(&f);
        net.run(200);
        assert_eq!(
            net.nodes[&f].term, term,
            "pre-vote keeps a cut-off node's term"
        );
        net.heal();
        net.run(30);
        assert_eq!(net.leaders(), vec![l.clone()]);
        assert!(net.nodes.values().all(|r| r.term == term));
    }

    #[test]
    fn vote_needs_an_up_to_date_log() {
        let e = Entry::noop;
        let mut voter = node(
            "n1",
            3,
            Bugs::default(),
            HardState {
                term: 3,
                vote: None,
            },
            vec![e(1), e(3)],
            1,
        );
        // Shorter log with the same last term: refused.
        let r = voter.step(
            "n2",
            RaftMsg::Vote {
                term: 4,
                last_index: 1,
                last_term: 3,
            },
        );
        assert_eq!(
            r,
            Some(RaftMsg::VoteReply {
                term: 4,
                granted: false
            })
        );
        // Older last term, longer log: refused.
        let r = voter.step(
            "n2",
            RaftMsg::Vote {
                term: 4,
                last_index: 9,
                last_term: 2,
            },
        );
        assert_eq!(
            r,
            Some(RaftMsg::VoteReply {
                term: 4,
                granted: false
            })
        );
        let r = voter.step(
            "n3",
            RaftMsg::Vote {
                term: 4,
                last_index: 2,
                last_term: 3,
            },
        );
        assert_eq!(
            r,
            Some(RaftMsg::VoteReply {
                term: 4,
                granted: true
            })
        );
        // One vote per term.
        let r = voter.step(
            "n2",
            RaftMsg::Vote {
                term: 4,
                last_index: 5,
                last_term: 3,
            },
        );
        assert_eq!(
            r,
            Some(RaftMsg::VoteReply {
                term: 4,
                granted: false
            })
        );
    }

    #[test]
    fn leader_does_not_commit_an_old_term_entry_by_counting() {
        // Figure 8: a leader of term 3 holding an entry of term 2 replicated to a
        // majority must not commit it until an entry of term 3 is also there.
        let e = Entry::noop;
        let mut l = node(
            "n1",
            3,
            Bugs::default(),
            HardState {
                term: 2,
                vote: None,
            },
            vec![e(1), e(2)],
            1,
        );
        l.campaign();
        l.step(
            "n2",
            RaftMsg::VoteReply {
                term: 3,
                granted: true,
            },
        );
        assert_eq!(l.role, Role::Leader);
        let mark = l.log.mark();
        l.persisted(mark);
        l.progress.get_mut("n2").unwrap().matched = 2;
        l.maybe_commit();
        assert_eq!(l.commit, 0);
        l.progress.get_mut("n2").unwrap().matched = 3;
        l.maybe_commit();
        assert_eq!(l.commit, 3);
    }

    #[test]
    fn read_waits_for_a_majority_round() {
        let mut net = cluster(3);
        net.run(50);
        let l = net.leaders()[0].clone();
        let follower = net.nodes.keys().find(|k| **k != l).unwrap().clone();
        let other = net
            .nodes
            .keys()
            .find(|k| **k != l && **k != follower)
            .unwrap()
            .clone();
        net.isolate(&follower);
        net.isolate(&other);
        net.node(&l).client(read(&l, 9)).unwrap();
        net.settle();
        assert!(net.replies.is_empty(), "read served without confirmation");
        net.heal();
        net.run(5);
        assert!(net
            .replies
            .iter()
            .any(|(_, id, o)| id.n == 9 && *o == Outcome::Value(None)));
    }

    /// A follower batches writes to the leader and answers them when it applies them;
    /// its reads wait for a read index the leader confirmed, and see those writes.
    #[test]
    fn follower_forwards_batches_and_reads_at_a_confirmed_index() {
        let mut net = cluster(3);
        net.run(50);
        let l = net.leaders()[0].clone();
        let f = net.nodes.keys().find(|k| **k != l).unwrap().clone();
        for n in 1..=5 {
            net.node(&f).client(put(&f, n, n as i64)).unwrap();
        }
        net.settle();
        for n in 1..=5 {
            assert_eq!(net.answered(n), Some(&Outcome::Written), "write {n}");
            let (who, _, _) = net.replies.iter().find(|(_, id, _)| id.n == n).unwrap();
            assert_eq!(*who, f, "answered by the follower that took it");
        }
        let forwards = net.node(&l).log.last_index();
        assert!(forwards <= 7, "5 writes + no-op in few entries: {forwards}");
        net.node(&f).client(read(&f, 6)).unwrap();
        net.node(&f).client(read(&f, 7)).unwrap();
        net.settle();
        assert_eq!(net.answered(6), Some(&Outcome::Value(Some(Value::Int(5)))));
        assert_eq!(net.answered(7), Some(&Outcome::Value(Some(Value::Int(5)))));
    }

    /// A follower cut off from the leader serves no read: the read index never comes,
    /// and once the batch is given up the read goes back to the client path.
    #[test]
    fn follower_read_needs_the_leaders_confirmation() {
        let mut net = cluster(3);
        net.run(50);
        let l = net.leaders()[0].clone();
        let f = net.nodes.keys().find(|k| **k != l).unwrap().clone();
        net.isolate(&f);
        net.node(&f).client(read(&f, 9)).unwrap();
        net.settle();
        assert!(
            net.answered(9).is_none(),
            "read served without a read index"
        );
        // Nothing comes back; within the election timeout the batch is given up.
        for _ in 0..=TIMING.election_max {
            net.node(&f).tick();
        }
        let ready = net.node(&f).ready();
        assert!(ready.replies.is_empty(), "{:?}", ready.replies);
        assert!(
            ready
                .rejected
                .iter()
                .any(|(id, r)| id.n == 9 && matches!(r, Rejection::NotLeader { .. })),
            "undelivered read index gives the read back: {:?}",
            ready.rejected
        );
    }

    /// A leader refuses a forwarded batch it cannot commit, and the follower gives the
    /// requests back as definitely not applied.
    #[test]
    fn refused_forward_gives_requests_back() {
        let mut net = cluster(3);
        net.run(50);
        let l = net.leaders()[0].clone();
        let f = net.nodes.keys().find(|k| **k != l).unwrap().clone();
        let reply = net.node(&l).step(
            &f,
            RaftMsg::Forward {
                term: 99,
                batch: 1,
                reqs: vec![put(&f, 1, 1)],
            },
        );
        assert!(
            matches!(
                reply,
                Some(RaftMsg::ForwardReply {
                    accepted: false,
                    ..
                })
            ),
            "{reply:?}"
        );
        net.node(&f).client(put(&f, 2, 2)).unwrap();
        let batch = {
            let ready = net.node(&f).ready();
            match &ready.messages[..] {
                [(to, RaftMsg::Forward { batch, .. })] if *to == l => *batch,
                other => panic!("expected one forward to the leader: {other:?}"),
            }
        };
        let refusal = RaftMsg::ForwardReply {
            term: 1,
            batch,
            accepted: false,
            leader: Some(l.clone()),
        };
        net.node(&f).step(&l, refusal);
        let ready = net.node(&f).ready();
        assert!(ready.rejected.iter().any(|(id, r)| id.n == 2
            && *r
                == Rejection::NotLeader {
                    leader: Some(l.clone())
                }));
    }

    #[test]
    fn stale_read_bug_serves_without_confirmation() {
        let mut net = cluster(3);
        net.run(50);
        let l = net.leaders()[0].clone();
        let raft = net.node(&l);
        raft.bugs = Bugs::new([Bug::StaleRead]);
        net.isolate(&l);
        net.node(&l).client(read(&l, 9)).unwrap();
        net.settle();
        assert!(net.replies.iter().any(|(_, id, _)| id.n == 9));
    }

    /// A deposed leader learns of the newer term from a refused read round: the correct
    /// one steps down; with no-fencing it keeps leading.
    #[test]
    fn no_fencing_bug_leader_never_steps_down() {
        let deposed_role = |bugs: Bugs, msg: RaftMsg| {
            let mut net = cluster(3);
            net.run(50);
            let l = net.leaders()[0].clone();
            let other = ids(3).into_iter().find(|k| *k != l).unwrap();
            let leader = net.node(&l);
            leader.bugs = bugs;
            let term = leader.term;
            let msg = match msg {
                RaftMsg::ReadAck { round, ok, .. } => RaftMsg::ReadAck {
                    term: term + 1,
                    round,
                    ok,
                },
                other => other,
            };
            leader.step(&other, msg);
            leader.role
        };
        let probe_refused = RaftMsg::ReadAck {
            term: 0,
            round: 1,
            ok: false,
        };
        assert_eq!(
            deposed_role(Bugs::default(), probe_refused.clone()),
            Role::Follower
        );
        assert_eq!(
            deposed_role(Bugs::new([Bug::NoFencing]), probe_refused),
            Role::Leader
        );
    }

    #[test]
    fn forget_vote_bug_votes_twice_in_a_term_across_restart() {
        let vote_in_term_5 = |bugs: Bugs| {
            let mut v = node("n1", 3, bugs.clone(), HardState::default(), vec![], 1);
            let first = v.step(
                "n2",
                RaftMsg::Vote {
                    term: 5,
                    last_index: 0,
                    last_term: 0,
                },
            );
            assert_eq!(
                first,
                Some(RaftMsg::VoteReply {
                    term: 5,
                    granted: true
                })
            );
            let saved = v.ready().hard_state.expect("vote must be persisted");
            // Restart from what was saved, then a rival asks in the same term.
            let mut v = node("n1", 3, bugs, saved, vec![], 2);
            v.step(
                "n3",
                RaftMsg::Vote {
                    term: 5,
                    last_index: 0,
                    last_term: 0,
                },
            )
        };
        assert_eq!(
            vote_in_term_5(Bugs::default()),
            Some(RaftMsg::VoteReply {
                term: 5,
                granted: false
            })
        );
        assert_eq!(
            vote_in_term_5(Bugs::new([Bug::ForgetVote])),
            Some(RaftMsg::VoteReply {
                term: 5,
                granted: true
            })
        );
    }
}
