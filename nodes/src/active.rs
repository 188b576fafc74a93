//! Active replication: every replica receives every client request, a sequencer orders
//! them, every replica executes them in that order — Viewstamped Replication (Liskov &
//! Cowling, "VR Revisited", 2012) as a pure state machine.
//!
//! - The node a client reaches multicasts the request to every replica (`Request`); each
//!   keeps it in `pending` until it appears in its log.
//! - Views are numbered; the primary of view v is `members[v % n]`. In normal operation
//!   the primary assigns each pending request the next op number (appends it to its log)
//!   and sends `Prepare`s; a backup accepts them after the same consistency check as Raft
//!   (§5.3) and answers `PrepareOk`. Once a majority (the primary included) holds an op
//!   of the current view it is committed; the primary tells backups the commit number at
//!   once, and every replica executes committed ops in order. The node the client reached
//!   answers when it executes the request.
//! - View change: a replica that hears nothing from the primary for a randomized timeout
//!   moves to view v+1 and broadcasts `StartViewChange`. The new primary sends its own,
//!   carrying its commit number; each replica answers with `DoViewChange`: its log after
//!   that commit number. With a majority, the new primary adopts the most up-to-date log
//!   (greatest last view, then length — the comparison Raft uses for votes, which is what
//!   makes VR's "largest last-normal view" safe here with logs shipped as suffixes),
//!   appends a no-op of the new view and its pending requests, and resumes normal
//!   operation. A replica in view v refuses anything from views below v, so the old
//!   primary can commit nothing once a majority has moved on.

use std::collections::{BTreeMap, HashMap, HashSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::bugs::{Bug, Bugs};
use crate::command::{NodeId, Outcome, Request, RequestId};
use crate::disk::HardState;
use crate::log::{Entry, Log, StableMark};
use crate::machine::{Machine, MsgKind, Ready, Rejection, Status, Timing};
use crate::progress::Progress;
use crate::quorum::{majority, majority_index};
use crate::store::Store;

const MAX_BATCH: usize = 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum VrMsg {
    /// Client requests taken by the sender, multicast to every replica.
    Request {
        reqs: Vec<Request>,
    },
    /// Receipt for a `Request`: the sender may send the next batch to this replica.
    RequestAck,
    Prepare {
        view: u64,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
    },
    PrepareOk {
        view: u64,
        success: bool,
        /// On success the last op the prepare covered; on failure where to resume after.
        index: u64,
    },
    StartViewChange {
        view: u64,
        commit: u64,
    },
    /// A replica's log after `base` (the new primary's commit number), for view `view`.
    DoViewChange {
        view: u64,
        base: u64,
        /// The sender's tag at `base`, or none if its log is shorter than `base`.
        base_term: Option<u64>,
        entries: Vec<Entry>,
        commit: u64,
    },
}

/// [`VrMsg`]'s variants without their fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VrKind {
    Request,
    RequestAck,
    Prepare,
    PrepareOk,
    StartViewChange,
    DoViewChange,
}

impl MsgKind for VrKind {
    fn name(self) -> &'static str {
        match self {
            VrKind::Request => "request",
            VrKind::RequestAck => "request_ack",
            VrKind::Prepare => "prepare",
            VrKind::PrepareOk => "prepare_ok",
            VrKind::StartViewChange => "start_view_change",
            VrKind::DoViewChange => "do_view_change",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Normal,
    ViewChange,
}

/// A log suffix offered for the new view.
#[derive(Debug)]
struct Offer {
    base_term: Option<u64>,
    entries: Vec<Entry>,
    commit: u64,
}

pub struct Vr {
    id: NodeId,
    /// All replicas, sorted, so every node computes the same primary for a view.
    members: Vec<NodeId>,
    peers: Vec<NodeId>,
    bugs: Bugs,
    timing: Timing,
    rng: StdRng,
    now: u64,

    view: u64,
    phase: Phase,
    log: Log,
    commit: u64,
    applied: u64,
    store: Store,
    /// Ids of executed requests: a request ordered twice (re-proposed across a view
    /// change) executes once.
    executed: HashSet<RequestId>,
    /// Requests received but not yet in our log.
    pending: HashMap<RequestId, Request>,
    /// Requests taken from clients and not yet multicast, per peer. One multicast is in
    /// flight per peer at a time, so under load each carries many requests.
    to_multicast: BTreeMap<NodeId, Vec<Request>>,
    multicast_inflight: BTreeMap<NodeId, bool>,
    /// No multicast to a peer before this tick after a failed one (backoff).
    multicast_retry_after: BTreeMap<NodeId, u64>,

    progress: BTreeMap<NodeId, Progress>,
    last_heard: BTreeMap<NodeId, u64>,
    primary_contact: u64,
    deadline: u64,
    heartbeat_due: u64,
    /// As new primary collecting `DoViewChange`s: the base they must be relative to.
    collecting: Option<u64>,
    offers: BTreeMap<NodeId, Offer>,

    hard_dirty: bool,
    outbox: Vec<(NodeId, VrMsg)>,
    replies: Vec<(RequestId, Outcome)>,
}

impl Vr {
    pub fn restore(
        id: NodeId,
        peers: Vec<NodeId>,
        bugs: Bugs,
        timing: Timing,
        seed: u64,
        hard: HardState,
        entries: Vec<Entry>,
    ) -> Self {
        let mut members = peers.clone();
        members.push(id.clone());
        members.sort();
        let mut vr = Vr {
            id,
            members,
            peers,
            bugs,
            timing,
            rng: StdRng::seed_from_u64(seed),
            now: 0,
            view: hard.term,
            // A restarted replica waits to hear from the primary of its view (or moves
            // on to the next view when the timeout passes).
            phase: if hard.term == 0 && entries.is_empty() {
                Phase::Normal
            } else {
                Phase::ViewChange
            },
            log: Log::restore(entries),
            commit: 0,
            applied: 0,
            store: Store::default(),
            executed: HashSet::new(),
            pending: HashMap::new(),
            to_multicast: BTreeMap::new(),
            multicast_inflight: BTreeMap::new(),
            multicast_retry_after: BTreeMap::new(),
            progress: BTreeMap::new(),
            last_heard: BTreeMap::new(),
            primary_contact: 0,
            deadline: 0,
            heartbeat_due: 0,
            collecting: None,
            offers: BTreeMap::new(),
            hard_dirty: false,
            outbox: Vec::new(),
            replies: Vec::new(),
        };
        if vr.phase == Phase::Normal && vr.is_primary() {
            vr.start_normal_as_primary();
        }
        vr.reset_deadline();
        vr
    }

    fn primary_of(&self, view: u64) -> &NodeId {
        &self.members[(view % self.members.len() as u64) as usize]
    }

    fn is_primary(&self) -> bool {
        *self.primary_of(self.view) == self.id
    }

    fn reset_deadline(&mut self) {
        let t = self
            .rng
            .random_range(self.timing.election_min..=self.timing.election_max);
        self.deadline = self.now + t;
    }

    fn heard_recently(&self, peer: &str, within: u64) -> bool {
        self.last_heard
            .get(peer)
            .is_some_and(|&t| self.now < t + within)
    }

    /// Could a request taken now commit? Primary: a majority answered recently. Backup:
    /// the primary spoke recently.
    fn in_contact(&self) -> bool {
        if self.phase != Phase::Normal {
            return false;
        }
        if self.is_primary() {
            let fresh = self
                .peers
                .iter()
                .filter(|p| self.heard_recently(p, self.timing.election_min))
                .count();
            fresh + 1 >= majority(self.members.len())
        } else {
            self.now < self.primary_contact + self.timing.election_min
        }
    }

    fn start_view_change(&mut self, view: u64) {
        tracing::info!(node = %self.id, view, "starting view change");
        self.view = view;
        self.phase = Phase::ViewChange;
        self.hard_dirty = true;
        self.progress.clear();
        self.offers.clear();
        self.reset_deadline();
        self.collecting = self.is_primary().then_some(self.commit);
        for peer in self.peers.clone() {
            self.outbox.push((
                peer,
                VrMsg::StartViewChange {
                    view,
                    commit: self.commit,
                },
            ));
        }
        self.maybe_finish_view_change();
    }

    fn maybe_finish_view_change(&mut self) {
        let Some(base) = self.collecting else { return };
        if self.offers.len() + 1 < majority(self.members.len()) {
            return;
        }
        // Pick the most up-to-date log among ours and the offers (all relative to base).
        let mine = (self.log.last_term(), self.log.last_index());
        let my_base_term = self.log.term(base);
        let mut best: Option<(u64, u64, &NodeId)> = None;
        for (from, offer) in &self.offers {
            if offer.base_term.is_none() || offer.base_term != my_base_term {
                continue; // its log is shorter than our committed prefix
            }
            let last_index = base + offer.entries.len() as u64;
            let last_term = offer
                .entries
                .last()
                .map_or(offer.base_term.unwrap(), |e| e.term);
            if (last_term, last_index) > best.map_or(mine, |b| (b.0, b.1)) {
                best = Some((last_term, last_index, from));
            }
        }
        let commit = self.offers.values().map(|o| o.commit).max().unwrap_or(0);
        if let Some((_, _, from)) = best {
            let from = from.clone();
            let offer = self.offers.remove(&from).unwrap();
            self.log.truncate_after(base);
            for e in offer.entries {
                self.log.append(e);
            }
        }
        self.commit = self.commit.max(commit.min(self.log.last_index()));
        self.collecting = None;
        self.offers.clear();
        self.phase = Phase::Normal;
        tracing::info!(node = %self.id, view = self.view, "view change done: primary");
        self.start_normal_as_primary();
        self.apply();
    }

    fn start_normal_as_primary(&mut self) {
        let next = self.log.last_index() + 1;
        self.progress = self
            .peers
            .iter()
            .map(|p| (p.clone(), Progress::new(next)))
            .collect();
        for p in &self.peers {
            self.last_heard.insert(p.clone(), self.now);
        }
        // A no-op of the new view: only current-view ops commit by counting, and this
        // one carries the inherited ones with it.
        self.log.append(Entry::noop(self.view));
        self.drop_logged_from_pending();
        self.heartbeat_due = self.now;
    }

    fn drop_logged_from_pending(&mut self) {
        for i in self.applied + 1..=self.log.last_index() {
            if let Some(Entry { req: Some(r), .. }) = self.log.entry(i) {
                self.pending.remove(&r.id);
            }
        }
    }

    /// The primary gives each pending request the next op number.
    fn order_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut logged = HashSet::new();
        for i in self.applied + 1..=self.log.last_index() {
            if let Some(Entry { req: Some(r), .. }) = self.log.entry(i) {
                logged.insert(r.id.clone());
            }
        }
        let mut batch: Vec<Request> = self
            .pending
            .drain()
            .map(|(_, r)| r)
            .filter(|r| !logged.contains(&r.id) && !self.executed.contains(&r.id))
            .collect();
        batch.sort_by(|a, b| (&a.id.node, a.id.n).cmp(&(&b.id.node, b.id.n)));
        for req in batch {
            self.log.append(Entry::request(self.view, req));
        }
    }

    fn send_prepare(&mut self, peer: &str, heartbeat: bool) {
        let Some(p) = self.progress.get(peer) else {
            return;
        };
        let has_entries = p.next <= self.log.last_index();
        if !p.can_send(self.now, has_entries) {
            return;
        }
        if !(has_entries || heartbeat || p.commit_sent < self.commit) {
            return;
        }
        let prev_index = p.next - 1;
        let entries = self.log.slice(p.next, MAX_BATCH);
        let count = entries.len() as u64;
        let msg = VrMsg::Prepare {
            view: self.view,
            prev_index,
            prev_term: self.log.term(prev_index).unwrap_or(0),
            entries,
            commit: self.commit,
        };
        let p = self.progress.get_mut(peer).unwrap();
        p.on_send(self.now, count);
        p.commit_sent = self.commit;
        self.outbox.push((peer.to_string(), msg));
    }

    fn maybe_commit(&mut self) {
        let mut matched = vec![self.log.stable()];
        matched.extend(self.progress.values().map(|p| p.matched));
        let n = majority_index(&matched);
        if n > self.commit && self.log.term(n) == Some(self.view) {
            self.commit = n;
            self.apply();
        }
    }

    fn apply(&mut self) {
        while self.applied < self.commit {
            self.execute_next();
        }
    }

    fn execute_next(&mut self) {
        self.applied += 1;
        let Some(Entry { req: Some(req), .. }) = self.log.entry(self.applied) else {
            return;
        };
        if !self.executed.insert(req.id.clone()) {
            return;
        }
        // Every replica executes, each with its own random source: a roll without a
        // pre-drawn value sets a different value on each (the active scheme's lesson).
        let outcome = self.store.apply(&req.cmd, &mut self.rng);
        let id = req.id.clone();
        self.pending.remove(&id);
        if id.node == self.id {
            self.replies.push((id, outcome));
        }
    }

    /// Bug::DeliverUnagreed: execute everything in the log now, agreed or not.
    fn execute_unagreed(&mut self) {
        if self.bugs.has(Bug::DeliverUnagreed) {
            while self.applied < self.log.last_index() {
                self.execute_next();
            }
        }
    }

    fn on_prepare(
        &mut self,
        from: &str,
        view: u64,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
    ) -> VrMsg {
        let refuse = |vr: &Vr| VrMsg::PrepareOk {
            view: vr.view,
            success: false,
            index: vr.log.last_index(),
        };
        if view < self.view || self.primary_of(view) != from {
            return refuse(self);
        }
        if view > self.view || self.phase == Phase::ViewChange {
            if view > self.view {
                self.hard_dirty = true;
            }
            self.view = view;
            self.phase = Phase::Normal;
            self.collecting = None;
            self.progress.clear();
        }
        self.primary_contact = self.now;
        self.reset_deadline();
        let ids: Vec<RequestId> = entries
            .iter()
            .filter_map(|e| e.req.as_ref().map(|r| r.id.clone()))
            .collect();
        match self.log.accept(prev_index, prev_term, entries) {
            Ok(last) => {
                for id in ids {
                    self.pending.remove(&id);
                }
                let commit = commit.min(last);
                if commit > self.commit {
                    self.commit = commit;
                    self.apply();
                }
                self.execute_unagreed();
                VrMsg::PrepareOk {
                    view: self.view,
                    success: true,
                    index: last,
                }
            }
            Err(m) => VrMsg::PrepareOk {
                view: self.view,
                success: false,
                index: m.hint,
            },
        }
    }

    fn on_prepare_ok(&mut self, from: &str, view: u64, success: bool, index: u64) {
        if view > self.view {
            // We were deposed: wait in the newer view for its primary.
            self.view = view;
            self.phase = Phase::ViewChange;
            self.hard_dirty = true;
            self.collecting = None;
            self.progress.clear();
            self.reset_deadline();
            return;
        }
        if view < self.view || self.phase != Phase::Normal || !self.is_primary() {
            return;
        }
        if let Some(p) = self.progress.get_mut(from) {
            p.on_reply(success, index);
            if success {
                self.maybe_commit();
            }
        }
    }

    fn on_start_view_change(&mut self, from: &str, view: u64, commit: u64) -> Option<VrMsg> {
        if view < self.view {
            // Tell a lagging replica about the newer view.
            return Some(VrMsg::StartViewChange {
                view: self.view,
                commit: self.commit,
            });
        }
        if view > self.view {
            self.start_view_change(view);
        }
        // From the new primary: offer our log after its commit number.
        (self.primary_of(view) == from && self.phase == Phase::ViewChange)
            .then(|| self.do_view_change_for(view, commit))
    }

    fn do_view_change_for(&self, view: u64, base: u64) -> VrMsg {
        VrMsg::DoViewChange {
            view,
            base,
            base_term: self.log.term(base),
            entries: self.log.slice(base + 1, usize::MAX),
            commit: self.commit,
        }
    }
}

impl Machine for Vr {
    type Msg = VrMsg;

    type Kind = VrKind;

    fn kind(msg: &VrMsg) -> VrKind {
        match msg {
            VrMsg::Request { .. } => VrKind::Request,
            VrMsg::RequestAck => VrKind::RequestAck,
            VrMsg::Prepare { .. } => VrKind::Prepare,
            VrMsg::PrepareOk { .. } => VrKind::PrepareOk,
            VrMsg::StartViewChange { .. } => VrKind::StartViewChange,
            VrMsg::DoViewChange { .. } => VrKind::DoViewChange,
        }
    }

    fn needs_durability(msg: &VrMsg) -> bool {
        // Unlike a Raft leader, a primary may resume after a restart in a view it already
        // led (view 0 at first start, or the same view again after a stalled view change),
        // so it must never have sent an op it could forget: prepares wait for its fsync.
        !matches!(
            msg,
            VrMsg::Request { .. } | VrMsg::RequestAck | VrMsg::StartViewChange { .. }
        )
    }

    fn persisted(&mut self, mark: StableMark) {
        self.log.persisted(mark);
    }

    fn tick(&mut self) {
        self.now += 1;
        if self.phase == Phase::Normal && self.is_primary() {
            for p in self.progress.values_mut() {
                p.expire(self.now, self.timing.election_max);
            }
            if self.now >= self.heartbeat_due {
                self.heartbeat_due = self.now + self.timing.heartbeat;
                for peer in self.peers.clone() {
                    self.send_prepare(&peer, true);
                }
            }
            return;
        }
        if self.phase == Phase::ViewChange
            && self.collecting.is_some()
            && self.now >= self.heartbeat_due
        {
            // Ask again whoever has not offered a log yet.
            self.heartbeat_due = self.now + self.timing.heartbeat;
            let missing: Vec<NodeId> = self
                .peers
                .iter()
                .filter(|p| !self.offers.contains_key(*p))
                .cloned()
                .collect();
            for peer in missing {
                self.outbox.push((
                    peer,
                    VrMsg::StartViewChange {
                        view: self.view,
                        commit: self.commit,
                    },
                ));
            }
        }
        if self.now >= self.deadline {
            self.start_view_change(self.view + 1);
        }
    }

    fn step(&mut self, from: &str, msg: VrMsg) -> Option<VrMsg> {
        if !self.peers.iter().any(|p| p == from) {
            return None;
        }
        self.last_heard.insert(from.to_string(), self.now);
        match msg {
            VrMsg::Request { reqs } => {
                for r in reqs {
                    if !self.executed.contains(&r.id) {
                        self.pending.insert(r.id.clone(), r);
                    }
                }
                Some(VrMsg::RequestAck)
            }
            VrMsg::RequestAck => {
                self.multicast_inflight.insert(from.to_string(), false);
                None
            }
            VrMsg::Prepare {
                view,
                prev_index,
                prev_term,
                entries,
                commit,
            } => Some(self.on_prepare(from, view, prev_index, prev_term, entries, commit)),
            VrMsg::PrepareOk {
                view,
                success,
                index,
            } => {
                self.on_prepare_ok(from, view, success, index);
                None
            }
            VrMsg::StartViewChange { view, commit } => {
                self.on_start_view_change(from, view, commit)
            }
            VrMsg::DoViewChange {
                view,
                base,
                base_term,
                entries,
                commit,
            } => {
                if view == self.view && self.collecting == Some(base) {
                    self.offers.insert(
                        from.to_string(),
                        Offer {
                            base_term,
                            entries,
                            commit,
                        },
                    );
                    self.maybe_finish_view_change();
                }
                None
            }
        }
    }

    fn unreachable(&mut self, peer: &str) {
        // Multicast is best effort: a replica that missed requests gets them in prepares.
        let retry = self.now + self.timing.heartbeat;
        self.multicast_inflight.insert(peer.to_string(), false);
        self.multicast_retry_after.insert(peer.to_string(), retry);
        if let Some(p) = self.progress.get_mut(peer) {
            p.on_unreachable(retry);
        }
    }

    fn client(&mut self, req: Request) -> Result<(), Rejection> {
        if !self.in_contact() {
            return Err(Rejection::NoQuorum);
        }
        self.pending.insert(req.id.clone(), req.clone());
        for peer in &self.peers {
            self.to_multicast
                .entry(peer.clone())
                .or_default()
                .push(req.clone());
        }
        Ok(())
    }

    fn ready(&mut self) -> Ready<VrMsg> {
        for (peer, reqs) in self.to_multicast.iter_mut() {
            if self
                .multicast_retry_after
                .get(peer)
                .is_some_and(|&t| self.now < t)
            {
                // Down or cut off: drop rather than pile up (it will get them in prepares).
                reqs.clear();
                continue;
            }
            let busy = self.multicast_inflight.entry(peer.clone()).or_default();
            if !*busy && !reqs.is_empty() {
                *busy = true;
                let reqs = std::mem::take(reqs);
                self.outbox.push((peer.clone(), VrMsg::Request { reqs }));
            }
        }
        if self.phase == Phase::Normal && self.is_primary() {
            self.order_pending();
            self.execute_unagreed();
            self.maybe_commit();
            for peer in self.peers.clone() {
                self.send_prepare(&peer, false);
            }
        }
        let hard_state = std::mem::take(&mut self.hard_dirty).then_some(HardState {
            term: self.view,
            vote: None,
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
            rejected: Vec::new(),
            records: Vec::new(),
        }
    }

    fn applied_state(&self) -> (u64, &Store) {
        (self.applied, &self.store)
    }

    fn status(&self) -> Status {
        let role = match (self.phase, self.is_primary()) {
            (Phase::ViewChange, _) => "view-change",
            (Phase::Normal, true) => "primary",
            (Phase::Normal, false) => "backup",
        };
        Status {
            role,
            term: self.view,
            leader: (self.phase == Phase::Normal).then(|| self.primary_of(self.view).clone()),
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
    use crate::command::{Command, Op, Value};
    use crate::sim::{chaos, ids, Inspect, Net};

    impl Inspect for Vr {
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
            Vr::restore(id.into(), peers, Bugs::default(), TIMING, seed, hard, log)
        });
    }

    const TIMING: Timing = Timing {
        heartbeat: 2,
        election_min: 10,
        election_max: 20,
    };

    fn replica(id: &str, n: usize, bugs: Bugs, seed: u64) -> Vr {
        let peers = ids(n).into_iter().filter(|p| p != id).collect();
        Vr::restore(
            id.into(),
            peers,
            bugs,
            TIMING,
            seed,
            HardState::default(),
            vec![],
        )
    }

    fn cluster(n: usize, bugs: Bugs) -> Net<Vr> {
        Net::new(ids(n).into_iter().enumerate().map(|(k, id)| {
            let r = replica(&id, n, bugs.clone(), k as u64);
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

    #[test]
    fn every_replica_executes_in_the_same_order() {
        let mut net = cluster(3, Bugs::default());
        net.run(5);
        assert_eq!(net.leaders(), vec!["n1".to_string()]);
        // Requests reach different replicas; all end in one order everywhere.
        for (k, node) in ["n1", "n2", "n3", "n2"].iter().enumerate() {
            net.node(node)
                .client(put(node, k as u64, k as i64))
                .unwrap();
        }
        net.run(5);
        for k in 0..4 {
            assert_eq!(net.answered(k), Some(&Outcome::Written));
        }
        let orders: Vec<Vec<u64>> = net
            .nodes
            .values()
            .map(|r| {
                (1..=r.commit)
                    .filter_map(|i| r.log.entry(i).and_then(|e| e.req.as_ref()).map(|q| q.id.n))
                    .collect()
            })
            .collect();
        assert_eq!(orders[0].len(), 4);
        assert!(orders.iter().all(|o| *o == orders[0]), "{orders:?}");
    }

    #[test]
    fn view_change_keeps_committed_and_orders_pending() {
        let mut net = cluster(3, Bugs::default());
        net.run(5);
        net.node("n2").client(put("n2", 1, 1)).unwrap();
        net.run(3);
        assert_eq!(net.answered(1), Some(&Outcome::Written));
        // The primary dies; a request reaches n3 meanwhile.
        net.isolate("n1");
        net.node("n3").client(put("n3", 2, 2)).unwrap();
        net.run(60);
        let leaders: Vec<_> = net.leaders().into_iter().filter(|l| l != "n1").collect();
        assert_eq!(leaders.len(), 1, "{leaders:?}");
        assert_eq!(net.answered(2), Some(&Outcome::Written));
        for id in ["n2", "n3"] {
            assert_eq!(net.nodes[id].store.get("k"), Some(Value::Int(2)));
        }
        // The old primary rejoins as a backup and catches up.
        net.heal();
        net.run(30);
        assert_eq!(net.nodes["n1"].store.get("k"), Some(Value::Int(2)));
        assert_eq!(net.nodes["n1"].status().role, "backup");
    }

    #[test]
    fn isolated_primary_cannot_commit() {
        let mut net = cluster(3, Bugs::default());
        net.run(5);
        net.isolate("n1");
        net.node("n1").client(put("n1", 1, 1)).unwrap();
        net.run(3);
        assert_eq!(net.answered(1), None);
        assert_eq!(net.nodes["n1"].store.get("k"), None);
    }

    fn roll(node: &str, n: u64, key: &str, drawn: Option<i64>) -> Request {
        Request {
            id: RequestId {
                node: node.into(),
                n,
            },
            cmd: Command {
                op: Op::Roll {
                    key: key.into(),
                    drawn,
                },
                client: None,
                seq: None,
            },
        }
    }

    /// Every replica executes every roll with its own random source: the replicas'
    /// states diverge though they executed one order; a value drawn in advance and
    /// ordered with the request (`--deterministic-roll`) keeps them equal.
    #[test]
    fn rolls_diverge_across_replicas_unless_pre_drawn() {
        for drawn in [false, true] {
            let mut net = cluster(3, Bugs::default());
            net.run(5);
            for k in 0..6u64 {
                let node = ["n1", "n2", "n3"][k as usize % 3];
                let pre = drawn.then_some(k as i64 * 1000 + 7);
                net.node(node)
                    .client(roll(node, k, &format!("k{k}"), pre))
                    .unwrap();
            }
            net.run(10);
            let states: Vec<(u64, String)> = net
                .nodes
                .values()
                .map(|r| (r.applied, r.store.digest()))
                .collect();
            assert!(states.iter().all(|s| s.0 == states[0].0), "{states:?}");
            let converged = states.iter().all(|s| s.1 == states[0].1);
            assert_eq!(converged, drawn, "pre-drawn {drawn}: {states:?}");
            for r in net.nodes.values() {
                assert_eq!(r.store.len(), 6);
                assert!(r.store.executions() >= 6);
            }
        }
    }

    #[test]
    fn deliver_unagreed_bug_executes_before_agreement() {
        let mut net = cluster(3, Bugs::new([Bug::DeliverUnagreed]));
        net.run(5);
        net.isolate("n1");
        net.node("n1").client(put("n1", 1, 1)).unwrap();
        net.run(3);
        assert_eq!(net.answered(1), Some(&Outcome::Written));
        assert_eq!(net.nodes["n1"].store.get("k"), Some(Value::Int(1)));
    }
}
