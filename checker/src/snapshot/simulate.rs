//! A small deterministic simulator of the bank workload with Chandy–Lamport snapshots, for
//! tests: N nodes move money over channels (FIFO, or unordered on purpose), one snapshot at
//! a time is started from a random initiator, and each collected snapshot comes out in the
//! checker's data model with the full transfer log. The lecture's failure modes can be
//! switched on: unordered channels, the marker-after-send bug, and a crashed node.
//!
//! The simulator also notes, from its global view, every message that crossed a marker on
//! its channel the wrong way (`Crossing`), so tests can demand the checker names them.

use super::model::{Algorithm, Channel, Checkpoint, Snapshot, Transfer, VectorClock};
use std::collections::{BTreeMap, VecDeque};

/// How channels deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// In send order (what seqs plus a hold-back queue give).
    Fifo,
    /// Any queued message may be delivered next.
    Unordered,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub nodes: usize,
    pub initial_balance: i64,
    /// Scheduler steps (each sends a transfer, delivers a message or starts a snapshot).
    pub steps: usize,
    /// Chance per step of starting a snapshot when none is running.
    pub snapshot_chance: f64,
    /// Steps after which the initiator gives up and reports the snapshot incomplete.
    pub snapshot_timeout: usize,
    pub delivery: Delivery,
    /// After recording its state, a node sends a transfer of 1 to every peer before its
    /// markers (breaking "markers before any other message").
    pub marker_after_send: bool,
    /// (node index, step): the node stops for good at that step.
    pub crash: Option<(usize, usize)>,
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nodes: 3,
            initial_balance: 100,
            steps: 300,
            snapshot_chance: 0.05,
            snapshot_timeout: 2_000,
            delivery: Delivery::Fifo,
            marker_after_send: false,
            crash: None,
            seed: 1,
        }
    }
}

/// A message that crossed a marker on its channel, seen from the simulator's global view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Crossing {
    /// Sent before the sender's cut, delivered after the marker (reordering).
    MarkerOvertook {
        snapshot: u64,
        channel: Channel,
        seq: u64,
    },
    /// Sent after the sender's cut, delivered before the marker (bug or reordering).
    SentAfterCutArrivedFirst {
        snapshot: u64,
        channel: Channel,
        seq: u64,
    },
}

impl Crossing {
    pub fn snapshot(&self) -> u64 {
        match self {
            Crossing::MarkerOvertook { snapshot, .. }
            | Crossing::SentAfterCutArrivedFirst { snapshot, .. } => *snapshot,
        }
    }
    pub fn channel(&self) -> &Channel {
        match self {
            Crossing::MarkerOvertook { channel, .. }
            | Crossing::SentAfterCutArrivedFirst { channel, .. } => channel,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Run {
    pub snapshots: Vec<Snapshot>,
    pub crossings: Vec<Crossing>,
    pub transfers: usize,
}

/// splitmix64: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

enum Msg {
    Transfer(Transfer),
    Marker(u64),
}

/// A node's part in the running snapshot.
struct Recording {
    checkpoint: Checkpoint,
    /// Per peer: whether its channel is still being recorded / its marker has arrived.
    recording: Vec<bool>,
    marker_from: Vec<bool>,
}

struct Node {
    balance: i64,
    clock: Vec<u64>,
    sent: Vec<u64>,
    received: Vec<u64>,
    snap: Option<(u64, Recording)>,
    crashed: bool,
}

struct Active {
    id: u64,
    initiator: usize,
    started: usize,
}

struct Sim {
    cfg: Config,
    names: Vec<String>,
    nodes: Vec<Node>,
    /// from * n + to.
    queues: Vec<VecDeque<Msg>>,
    log: Vec<Transfer>,
    active: Option<Active>,
    next_id: u64,
    step: usize,
    rng: Rng,
    run: Run,
}

impl Sim {
    fn n(&self) -> usize {
        self.names.len()
    }

    fn clock_map(&self, clock: &[u64]) -> VectorClock {
        self.names
            .iter()
            .zip(clock)
            .filter(|(_, c)| **c > 0)
            .map(|(n, c)| (n.clone(), *c))
            .collect()
    }

    fn send_transfer(&mut self, from: usize, to: usize, amount: i64) {
        let node = &mut self.nodes[from];
        node.balance -= amount;
        node.clock[from] += 1;
        node.sent[to] += 1;
        let (seq, clock) = (node.sent[to], node.clock.clone());
        let msg = Transfer {
            from: self.names[from].clone(),
            to: self.names[to].clone(),
            seq,
            amount,
            clock: self.clock_map(&clock),
        };
        self.log.push(msg.clone());
        self.run.transfers += 1;
        let n = self.n();
        self.queues[from * n + to].push_back(Msg::Transfer(msg));
    }

    /// Records `k`'s state for snapshot `id` (its marker arrived from `via`, or it is the
    /// initiator), then sends markers — after pending transfers under the bug.
    fn record(&mut self, k: usize, id: u64, via: Option<usize>) {
        let n = self.n();
        let node = &self.nodes[k];
        let peers = |v: &[u64]| -> BTreeMap<String, u64> {
            (0..n)
                .filter(|&p| p != k)
                .map(|p| (self.names[p].clone(), v[p]))
                .collect()
        };
        let checkpoint = Checkpoint {
            node: self.names[k].clone(),
            balance: node.balance,
            clock: self.clock_map(&node.clock),
            sent: peers(&node.sent),
            received: peers(&node.received),
            channels: (0..n)
                .filter(|&p| p != k)
                .map(|p| (self.names[p].clone(), Vec::new()))
                .collect(),
        };
        let mut recording = vec![true; n];
        let mut marker_from = vec![false; n];
        recording[k] = false;
        if let Some(v) = via {
            recording[v] = false;
            marker_from[v] = true;
        }
        self.nodes[k].snap = Some((
            id,
            Recording {
                checkpoint,
                recording,
                marker_from,
            },
        ));
        if self.cfg.marker_after_send {
            for p in (0..n).filter(|&p| p != k) {
                if self.nodes[k].balance >= 1 {
                    self.send_transfer(k, p, 1);
                }
            }
        }
        for p in (0..n).filter(|&p| p != k) {
            self.queues[k * n + p].push_back(Msg::Marker(id));
        }
    }

    fn deliver(&mut self, from: usize, to: usize) {
        let n = self.n();
        let len = self.queues[from * n + to].len();
        let i = match self.cfg.delivery {
            Delivery::Fifo => 0,
            Delivery::Unordered => self.rng.below(len),
        };
        let msg = self.queues[from * n + to]
            .remove(i)
            .expect("deliver is called on non-empty queues");
        let channel = || Channel::new(&self.names[from], &self.names[to]);
        match msg {
            Msg::Transfer(m) => {
                // The simulator's global view: did this message cross a marker?
                if let Some(a) = &self.active {
                    if let Some((sid, rec)) = &self.nodes[from].snap {
                        if *sid == a.id {
                            let cut_sent = rec.checkpoint.sent_to(&self.names[to]);
                            let marker_arrived = matches!(&self.nodes[to].snap,
                                Some((s2, r2)) if *s2 == a.id && r2.marker_from[from]);
                            if m.seq <= cut_sent && marker_arrived {
                                self.run.crossings.push(Crossing::MarkerOvertook {
                                    snapshot: a.id,
                                    channel: channel(),
                                    seq: m.seq,
                                });
                            } else if m.seq > cut_sent && !marker_arrived {
                                self.run.crossings.push(Crossing::SentAfterCutArrivedFirst {
                                    snapshot: a.id,
                                    channel: channel(),
                                    seq: m.seq,
                                });
                            }
                        }
                    }
                }
                let node = &mut self.nodes[to];
                node.balance += m.amount;
                for (i, name) in self.names.iter().enumerate() {
                    node.clock[i] = node.clock[i].max(m.clock.get(name).copied().unwrap_or(0));
                }
                node.clock[to] += 1;
                node.received[from] = node.received[from].max(m.seq);
                if let Some((_, rec)) = &mut node.snap {
                    if rec.recording[from] {
                        rec.checkpoint
                            .channels
                            .get_mut(&self.names[from])
                            .expect("every peer has a channel entry")
                            .push(m);
                    }
                }
            }
            Msg::Marker(id) => {
                if self.active.as_ref().map(|a| a.id) != Some(id) {
                    return; // a marker of a snapshot already given up
                }
                match &mut self.nodes[to].snap {
                    Some((sid, rec)) if *sid == id => {
                        rec.recording[from] = false;
                        rec.marker_from[from] = true;
                    }
                    _ => self.record(to, id, Some(from)),
                }
                self.finish_if_done();
            }
        }
    }

    fn done(&self, k: usize, id: u64) -> bool {
        matches!(&self.nodes[k].snap, Some((s, r)) if *s == id
            && (0..self.n()).all(|p| p == k || r.marker_from[p]))
    }

    fn finish_if_done(&mut self) {
        let Some(a) = &self.active else { return };
        let id = a.id;
        if (0..self.n()).all(|k| self.done(k, id)) {
            self.collect(false);
        }
    }

    /// Ends the running snapshot: the checkpoints of finished nodes, and (when giving up)
    /// the nodes and channels never heard from.
    fn collect(&mut self, gave_up: bool) {
        let Some(a) = self.active.take() else { return };
        let n = self.n();
        let mut snap = Snapshot {
            id: a.id,
            initiator: self.names[a.initiator].clone(),
            algorithm: Algorithm::ChandyLamport,
            initial_total: self.cfg.initial_balance * n as i64,
            nodes: self.names.clone(),
            checkpoints: Vec::new(),
            missing: Vec::new(),
            open_channels: Vec::new(),
            started_ns: Some(a.started as u64 * STEP_NS),
            finished_ns: Some(self.step as u64 * STEP_NS),
            transfers: Some(self.log.clone()),
        };
        for k in 0..n {
            if self.done(k, a.id) {
                let (_, rec) = self.nodes[k].snap.take().expect("done implies recorded");
                snap.checkpoints.push(rec.checkpoint);
            } else {
                snap.missing.push(self.names[k].clone());
                for p in (0..n).filter(|&p| p != k) {
                    let closed = matches!(&self.nodes[k].snap,
                        Some((s, r)) if *s == a.id && r.marker_from[p]);
                    if !closed {
                        snap.open_channels
                            .push(Channel::new(&self.names[p], &self.names[k]));
                    }
                }
                self.nodes[k].snap = None;
            }
        }
        debug_assert!(gave_up != snap.missing.is_empty());
        self.run.snapshots.push(snap);
    }
}

/// Simulated time per scheduler step, for the snapshots' timestamps.
pub const STEP_NS: u64 = 1_000_000;

/// Runs one simulation.
pub fn simulate(cfg: &Config) -> Run {
    let n = cfg.nodes.max(2);
    let mut sim = Sim {
        names: (1..=n).map(|i| format!("n{i}")).collect(),
        nodes: (0..n)
            .map(|_| Node {
                balance: cfg.initial_balance,
                clock: vec![0; n],
                sent: vec![0; n],
                received: vec![0; n],
                snap: None,
                crashed: false,
            })
            .collect(),
        queues: (0..n * n).map(|_| VecDeque::new()).collect(),
        log: Vec::new(),
        active: None,
        next_id: 1,
        step: 0,
        rng: Rng(cfg.seed),
        run: Run::default(),
        cfg: cfg.clone(),
    };
    for step in 0..cfg.steps {
        sim.step = step;
        sim.tick(true);
    }
    // Drain: no new transfers or snapshots; deliver what is queued so the running snapshot
    // can finish, or give up on it.
    for _ in 0..(cfg.snapshot_timeout + n * n * 4 + sim.log.len() * 2) {
        if sim.active.is_none() {
            break;
        }
        sim.step += 1;
        sim.tick(false);
    }
    if sim.active.is_some() {
        sim.collect(true);
    }
    sim.run
}

impl Sim {
    fn tick(&mut self, traffic: bool) {
        let n = self.n();
        if let Some((k, at)) = self.cfg.crash {
            if self.step >= at && k < n {
                self.nodes[k].crashed = true;
            }
        }
        if let Some(a) = &self.active {
            if self.step >= a.started + self.cfg.snapshot_timeout {
                self.collect(true);
            }
        }
        if traffic && self.active.is_none() && self.rng.chance(self.cfg.snapshot_chance) {
            let k = self.rng.below(n);
            if !self.nodes[k].crashed {
                let id = self.next_id;
                self.next_id += 1;
                self.active = Some(Active {
                    id,
                    initiator: k,
                    started: self.step,
                });
                self.record(k, id, None);
                return;
            }
        }
        let deliverable: Vec<(usize, usize)> = (0..n)
            .flat_map(|f| (0..n).map(move |t| (f, t)))
            .filter(|&(f, t)| !self.queues[f * n + t].is_empty() && !self.nodes[t].crashed)
            .collect();
        if traffic && (deliverable.is_empty() || self.rng.chance(0.45)) {
            let from = self.rng.below(n);
            let to = (from + 1 + self.rng.below(n - 1)) % n;
            let balance = self.nodes[from].balance;
            if !self.nodes[from].crashed && balance > 0 {
                let amount = 1 + self.rng.below(balance.min(10) as usize) as i64;
                self.send_transfer(from, to, amount);
            }
        } else if !deliverable.is_empty() {
            let (from, to) = deliverable[self.rng.below(deliverable.len())];
            self.deliver(from, to);
        }
    }
}
