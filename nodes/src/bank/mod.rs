//! The bank: every node holds an account and moves money to the others over channels, and
//! any node can take a global snapshot of all accounts and channels (issue 5). It runs in
//! every node next to the kv replication and shares nothing with it but the HTTP server,
//! the peer HTTP client, the `/admin/isolate` set and the metrics.
//!
//! ## Layout
//! - `model`: the wire types, shaped like the checker's snapshot model.
//! - `channel`: FIFO (or deliberately unordered) reliable channels: frames, outbox,
//!   hold-back inbox, retransmission.
//! - `snapshot`: Chandy–Lamport and the naive clock algorithm; collection at the initiator.
//! - `disk`: the write-ahead log that makes all of the bank's state durable.
//! - `peer`: messages between nodes; `api`: the HTTP routes.
//!
//! Here: the account state as a fold of WAL records (`State::apply`), and the two
//! operations that change it — sending a transfer and delivering frames.

pub mod api;
pub mod channel;
pub mod disk;
pub mod model;
pub mod peer;
pub mod snapshot;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::bugs::{Bug, Bugs};
use crate::command::NodeId;
use crate::config::{Channels, Config};
use crate::transport::Transport;

use channel::{Ack, Body, Frame, Inbox, Outbox};
use disk::{Record, Wal};
use model::{Transfer, VectorClock};

pub struct Bank {
    pub id: NodeId,
    /// Every node of the mesh, self included, sorted.
    pub nodes: Vec<NodeId>,
    pub peers: Vec<NodeId>,
    pub fifo: bool,
    pub channels: Channels,
    pub bugs: Bugs,
    /// Per node; the money in the system is this times the number of nodes.
    pub initial_balance: i64,
    pub transport: Arc<Transport>,
    pub max_body_bytes: usize,
    wal: Wal,
    /// One lock for all bank state: each critical section is a few map operations, and a
    /// single order of events is exactly what the WAL and the snapshot cut need.
    state: Mutex<State>,
    /// `/admin/clock`: what this node's wall clock is off by (clock algorithm only).
    clock_offset_ms: AtomicI64,
}

/// What the WAL records fold into, plus the (volatile) snapshot state.
pub struct State {
    pub balance: i64,
    pub clock: VectorClock,
    pub out: BTreeMap<NodeId, Outgoing>,
    pub inc: BTreeMap<NodeId, Incoming>,
    /// Every transfer this node ever sent, in send order (`GET /bank/transfers`).
    pub transfers: Vec<Transfer>,
    pub snap: snapshot::SnapState,
}

#[derive(Default)]
pub struct Outgoing {
    pub last_frame: u64,
    pub last_transfer: u64,
    pub outbox: Outbox,
}

#[derive(Default)]
pub struct Incoming {
    pub inbox: Inbox,
    /// Highest transfer seq delivered (with FIFO, all of `1..=last_transfer` are).
    pub last_transfer: u64,
}

/// Why a bank request was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Malformed or impossible (400); nothing happened.
    #[error("{0}")]
    Bad(String),
    /// Not now: insufficient funds, a snapshot already running (409); nothing happened.
    #[error("{0}")]
    Conflict(String),
    /// The WAL write failed after the change was made in memory: outcome unknown (500).
    #[error("{0}")]
    Disk(String),
}

/// A WAL record that names a node that is not a peer (a WAL from another cluster).
#[derive(Debug, thiserror::Error)]
#[error("record {action} {peer}, which is not a peer")]
pub struct UnknownPeer {
    action: &'static str,
    peer: NodeId,
}

/// Work a state change leaves for after its WAL records are durable.
#[derive(Default)]
pub struct Effects {
    pub frames: Vec<(NodeId, Frame)>,
    pub snapshot: snapshot::SnapEffects,
}

impl State {
    /// Applies one WAL record. Live changes go through here too (via `Bank::log`), so a
    /// replay after a crash rebuilds exactly the state the node had.
    fn apply(
        &mut self,
        me: &str,
        rec: &Record,
        wal_pos: u64,
        posting: bool,
    ) -> Result<(), UnknownPeer> {
        match rec {
            Record::Genesis { initial_balance } => self.balance = *initial_balance,
            Record::Sent { to, frame } => {
                let ch = self.out.get_mut(to).ok_or_else(|| UnknownPeer {
                    action: "sends to",
                    peer: to.clone(),
                })?;
                // Maxima, not assignments: live records come in seq order, but a log whose
                // writes once landed out of order must still never reuse a seq on replay.
                ch.last_frame = ch.last_frame.max(frame.seq);
                if let Body::Transfer(t) = &frame.body {
                    self.balance -= t.amount;
                    // The send's clock dominates the node's (a send is an event), so live
                    // this is the transfer's clock; merged for the same reason as above.
                    for (n, c) in &t.clock {
                        let e = self.clock.entry(n.clone()).or_default();
                        *e = (*e).max(*c);
                    }
                    ch.last_transfer = ch.last_transfer.max(t.seq);
                    self.transfers.push(t.clone());
                }
                ch.outbox.insert(frame.clone(), wal_pos, posting);
            }
            Record::Delivered {
                from,
                seq,
                transfer,
            } => {
                let ch = self.inc.get_mut(from).ok_or_else(|| UnknownPeer {
                    action: "delivers from",
                    peer: from.clone(),
                })?;
                ch.inbox.mark_delivered(*seq);
                if let Some(t) = transfer {
                    ch.last_transfer = ch.last_transfer.max(t.seq);
                    self.balance += t.amount;
                    // Delivery is an event: merge the sender's clock, then count it.
                    for (n, c) in &t.clock {
                        let e = self.clock.entry(n.clone()).or_default();
                        *e = (*e).max(*c);
                    }
                    *self.clock.entry(me.to_string()).or_default() += 1;
                }
            }
            Record::Acked { to, upto, also } => {
                if let Some(ch) = self.out.get_mut(to) {
                    ch.outbox.remove_acked(*upto, also);
                }
            }
            Record::Joined { snapshot } => {
                self.snap.highest = self.snap.highest.max(*snapshot);
            }
        }
        Ok(())
    }
}

impl Bank {
    /// Loads the bank's WAL from the data directory (creating it) and rebuilds the state.
    pub fn open(config: &Config, transport: Arc<Transport>) -> anyhow::Result<Arc<Bank>> {
        let (wal, records) = Wal::open(&config.data_dir, config.initial_balance)?;
        let peers: Vec<NodeId> = config.peers.iter().map(|(p, _)| p.clone()).collect();
        let mut nodes = peers.clone();
        nodes.push(config.id.clone());
        nodes.sort();
        let mut state = State {
            balance: 0,
            clock: VectorClock::new(),
            out: peers
                .iter()
                .map(|p| (p.clone(), Outgoing::default()))
                .collect(),
            inc: peers
                .iter()
                .map(|p| (p.clone(), Incoming::default()))
                .collect(),
            transfers: Vec::new(),
            snap: snapshot::SnapState::default(),
        };
        for (i, rec) in records.iter().enumerate() {
            if let Record::Genesis { initial_balance } = rec {
                if *initial_balance != config.initial_balance {
                    tracing::warn!(
                        "bank.wal starts from balance {initial_balance}; --initial-balance {} ignored",
                        config.initial_balance
                    );
                }
            }
            state
                .apply(&config.id, rec, 0, false)
                .map_err(|e| anyhow::anyhow!("bank.wal record {}: {e}", i + 1))?;
        }
        Ok(Arc::new(Bank {
            id: config.id.clone(),
            nodes,
            peers,
            fifo: config.channels == Channels::Fifo,
            channels: config.channels,
            bugs: config.bugs.clone(),
            initial_balance: match records.first() {
                Some(Record::Genesis { initial_balance }) => *initial_balance,
                _ => config.initial_balance,
            },
            transport,
            max_body_bytes: config.max_body_bytes,
            wal,
            state: Mutex::new(state),
            clock_offset_ms: AtomicI64::new(0),
        }))
    }

    /// Starts the background work: one retransmit loop per outgoing channel.
    pub fn start(self: &Arc<Self>) {
        for p in &self.peers {
            tokio::spawn(channel::retransmit_loop(self.clone(), p.clone()));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Appends `rec` to the WAL and applies it; returns its durability position.
    fn log(&self, st: &mut State, rec: Record, posting: bool) -> u64 {
        let pos = self.wal.append(&rec);
        if let Err(e) = st.apply(&self.id, &rec, pos, posting) {
            // Live records only name known peers; reaching this is a bug in this module.
            tracing::error!("bank: applying a live record failed: {e}");
        }
        pos
    }

    /// Puts a frame with `body` on channel self→`to` and returns it (to be posted once
    /// durable).
    fn enqueue(&self, st: &mut State, to: &str, body: Body) -> Frame {
        let seq = st.out[to].last_frame + 1;
        let frame = Frame { seq, body };
        let rec = Record::Sent {
            to: to.to_string(),
            frame: frame.clone(),
        };
        self.log(st, rec, true);
        frame
    }

    /// Debits locally and queues the transfer on self→`to`; answers once durable.
    pub async fn transfer(self: &Arc<Self>, to: &str, amount: i64) -> Result<(u64, i64), Refusal> {
        if to == self.id {
            return Err(Refusal::Bad(format!("cannot transfer to self ({to})")));
        }
        if !self.peers.iter().any(|p| p == to) {
            return Err(Refusal::Bad(format!("{to} is not a peer of {}", self.id)));
        }
        if amount <= 0 {
            return Err(Refusal::Bad(format!("amount {amount}: must be positive")));
        }
        let (frame, seq, balance, pos) = {
            let mut st = self.lock();
            if st.balance < amount {
                return Err(Refusal::Conflict(format!(
                    "insufficient funds: {} has {}, cannot send {amount}",
                    self.id, st.balance
                )));
            }
            let mut clock = st.clock.clone();
            *clock.entry(self.id.clone()).or_default() += 1;
            let t = Transfer {
                from: self.id.clone(),
                to: to.to_string(),
                seq: st.out[to].last_transfer + 1,
                amount,
                clock,
            };
            let seq = t.seq;
            let frame = self.enqueue(&mut st, to, Body::Transfer(t));
            (frame, seq, st.balance, self.wal.appended())
        };
        self.wal
            .sync(pos)
            .await
            .map_err(|e| Refusal::Disk(format!("bank.wal: {e}")))?;
        channel::post_frames(self, to.to_string(), vec![frame]);
        Ok((seq, balance))
    }

    /// Takes frames arriving on `from`→self: delivers what is deliverable, makes it
    /// durable, then acknowledges. A malformed frame refuses the whole request.
    pub async fn receive(self: &Arc<Self>, from: &str, frames: Vec<Frame>) -> Result<Ack, Refusal> {
        if !self.peers.iter().any(|p| p == from) {
            return Err(Refusal::Bad(format!("{from} is not a peer")));
        }
        for f in &frames {
            if f.seq == 0 {
                return Err(Refusal::Bad(format!("frame from {from} has seq 0")));
            }
            if let Body::Transfer(t) = &f.body {
                if t.from != from || t.to != self.id || t.amount <= 0 || t.seq == 0 {
                    return Err(Refusal::Bad(format!(
                        "frame {} from {from}: transfer {}→{} seq {} amount {} does not belong on {from}→{}",
                        f.seq, t.from, t.to, t.seq, t.amount, self.id
                    )));
                }
            }
        }
        let seqs: Vec<u64> = frames.iter().map(|f| f.seq).collect();
        let mut eff = Effects::default();
        let (ack, pos) = {
            let mut st = self.lock();
            for f in frames {
                let ready = st.inc.get_mut(from).unwrap().inbox.accept(f, self.fifo);
                for d in ready {
                    self.deliver(&mut st, from, d, &mut eff);
                }
            }
            (
                st.inc[from].inbox.ack(seqs.into_iter()),
                self.wal.appended(),
            )
        };
        self.wal
            .sync(pos)
            .await
            .map_err(|e| Refusal::Disk(format!("bank.wal: {e}")))?;
        self.run_effects(eff);
        Ok(ack)
    }

    fn deliver(&self, st: &mut State, from: &str, frame: Frame, eff: &mut Effects) {
        let transfer = match &frame.body {
            Body::Transfer(t) => Some(t.clone()),
            Body::Marker(_) => None,
        };
        let rec = Record::Delivered {
            from: from.to_string(),
            seq: frame.seq,
            transfer,
        };
        self.log(st, rec, false);
        match frame.body {
            Body::Transfer(t) => snapshot::on_transfer(st, from, t),
            Body::Marker(m) => snapshot::on_marker(self, st, from, m, eff),
        }
    }

    /// The receiver acknowledged frames on self→`to`.
    pub fn on_ack(&self, to: &str, ack: Ack) {
        let mut st = self.lock();
        if st.out.get(to).is_some_and(|ch| ch.outbox.acks_any(&ack)) {
            // Not synced on purpose: losing an ack record only means a retransmission
            // after a restart, which the receiver drops as a duplicate.
            let rec = Record::Acked {
                to: to.to_string(),
                upto: ack.upto,
                also: ack.also,
            };
            self.log(&mut st, rec, false);
        }
    }

    /// Frames on self→`peer` due for retransmission.
    fn due_frames(&self, peer: &str, rto: Duration) -> Vec<Frame> {
        let mut st = self.lock();
        match st.out.get_mut(peer) {
            Some(ch) => ch.outbox.due(rto, |pos| self.wal.is_durable(pos)),
            None => Vec::new(),
        }
    }

    /// The WAL position to sync for frames on self→`peer` stuck before the wire.
    fn stalled_frames(&self, peer: &str) -> Option<u64> {
        let st = self.lock();
        st.out
            .get(peer)?
            .outbox
            .stalled(channel::STALL_AFTER, |pos| self.wal.is_durable(pos))
    }

    /// Runs what a state change left to do; its WAL records must already be durable.
    fn run_effects(self: &Arc<Self>, eff: Effects) {
        for (to, frame) in eff.frames {
            channel::post_frames(self, to, vec![frame]);
        }
        snapshot::run_effects(self, eff.snapshot);
    }

    /// This node's wall clock as the clock algorithm sees it, in ms since the epoch.
    pub fn now_ms(&self) -> i64 {
        model::unix_ms() as i64 + self.clock_offset_ms.load(Ordering::Relaxed)
    }

    pub fn set_clock_offset(&self, ms: i64) {
        self.clock_offset_ms.store(ms, Ordering::Relaxed);
    }

    pub fn clock_offset(&self) -> i64 {
        self.clock_offset_ms.load(Ordering::Relaxed)
    }

    /// The node's state right now, as a checkpoint with empty channels (a cut).
    fn cut(&self, st: &State) -> model::Checkpoint {
        model::Checkpoint {
            node: self.id.clone(),
            balance: st.balance,
            clock: st.clock.clone(),
            sent: st
                .out
                .iter()
                .map(|(p, ch)| (p.clone(), ch.last_transfer))
                .collect(),
            received: st
                .inc
                .iter()
                .map(|(p, ch)| (p.clone(), ch.last_transfer))
                .collect(),
            channels: BTreeMap::new(),
        }
    }

    pub fn has_bug(&self, bug: Bug) -> bool {
        self.bugs.has(bug)
    }
}

/// A bank to drive by hand in unit tests: n1 with peers n2 and n3 at an address nothing
/// listens on (frames it posts just fail and stay queued).
#[cfg(test)]
pub(crate) fn test_bank(name: &str, wal: &[Record]) -> (Arc<Bank>, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("faultline-bank-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    if !wal.is_empty() {
        let mut lines = Vec::new();
        for r in wal {
            serde_json::to_writer(&mut lines, r).unwrap();
            lines.push(b'\n');
        }
        std::fs::write(dir.join("bank.wal"), lines).unwrap();
    }
    let config = Config::from_args(crate::config::NodeArgs {
        id: "n1".into(),
        listen: "127.0.0.1:9".into(),
        peers: "n2=127.0.0.1:9,n3=127.0.0.1:9".into(),
        mode: crate::config::Mode::Passive,
        data_dir: dir.clone(),
        bugs: Vec::new(),
        tick_ms: 10,
        heartbeat_ms: 50,
        election_timeout_ms: 300,
        peer_timeout_ms: 200,
        request_timeout_ms: 1000,
        max_body_bytes: 65536,
        worker_threads: 0,
        initial_balance: 100,
        channels: Channels::Fifo,
        cluster_secret: None,
        deterministic_roll: false,
        idle_timeout_ms: 30_000,
    })
    .unwrap();
    let transport = Transport::new(
        config.id.clone(),
        &config.peers,
        config.peer_timeout,
        Arc::default(),
        None,
        config.idle_timeout,
    )
    .unwrap();
    (Bank::open(&config, Arc::new(transport)).unwrap(), dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(frame: u64, transfer: u64, amount: i64) -> Record {
        Record::Sent {
            to: "n2".into(),
            frame: Frame {
                seq: frame,
                body: Body::Transfer(Transfer {
                    from: "n1".into(),
                    to: "n2".into(),
                    seq: transfer,
                    amount,
                    clock: [("n1".to_string(), transfer)].into(),
                }),
            },
        }
    }

    /// A log whose records landed out of order (as a cancelled WAL sync once allowed) must
    /// not make the node reuse a seq: the receiver would drop the new frame as a duplicate
    /// and its money would be debited and never credited.
    #[tokio::test]
    async fn replay_of_out_of_order_sends_never_reuses_a_seq() {
        let genesis = Record::Genesis {
            initial_balance: 100,
        };
        let (bank, dir) = test_bank("replay", &[genesis, sent(2, 2, 7), sent(1, 1, 5)]);
        {
            let st = bank.lock();
            assert_eq!(st.balance, 88);
            assert_eq!(st.clock.get("n1"), Some(&2));
            assert_eq!(st.out["n2"].last_frame, 2);
            assert_eq!(st.out["n2"].last_transfer, 2);
        }
        let (seq, balance) = bank.transfer("n2", 3).await.ok().unwrap();
        assert_eq!((seq, balance), (3, 85));
        let st = bank.lock();
        assert_eq!(st.out["n2"].last_frame, 3);
        assert_eq!(st.clock.get("n1"), Some(&3));
        drop(st);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A frame whose request was dropped before its WAL sync must still become durable
    /// (and so postable): otherwise the channel stalls behind it for good.
    #[tokio::test]
    async fn retransmit_loop_syncs_frames_a_dropped_request_left_behind() {
        let (bank, dir) = test_bank("stalled", &[]);
        bank.start();
        let pos = {
            let mut st = bank.lock();
            let m = channel::Marker {
                snapshot: 1,
                initiator: "n1".into(),
                expires_unix_ms: 0,
            };
            bank.enqueue(&mut st, "n2", Body::Marker(m));
            bank.wal.appended()
        };
        assert!(!bank.wal.is_durable(pos));
        let start = std::time::Instant::now();
        while !bank.wal.is_durable(pos) && start.elapsed() < Duration::from_secs(3) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(bank.wal.is_durable(pos), "still not durable after 3 s");
        assert!(
            start.elapsed() >= channel::STALL_AFTER,
            "synced before it was stuck"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
