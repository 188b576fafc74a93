//! Test-only: pure machines wired together with synchronous, loss-free delivery (except
//! across cut links), so protocol tests need no network, disk or clock.

use std::collections::{BTreeMap, BTreeSet};

use crate::command::{NodeId, Outcome, RequestId};
use crate::machine::Machine;

pub struct Net<M: Machine> {
    pub nodes: BTreeMap<NodeId, M>,
    cut: BTreeSet<(NodeId, NodeId)>,
    pub replies: Vec<(NodeId, RequestId, Outcome)>,
}

pub fn ids(n: usize) -> Vec<NodeId> {
    (1..=n).map(|i| format!("n{i}")).collect()
}

impl<M: Machine> Net<M> {
    pub fn new(nodes: impl IntoIterator<Item = (NodeId, M)>) -> Self {
        Net {
            nodes: nodes.into_iter().collect(),
            cut: BTreeSet::new(),
            replies: vec![],
        }
    }

    fn up(&self, a: &str, b: &str) -> bool {
        !self.cut.contains(&(a.into(), b.into())) && !self.cut.contains(&(b.into(), a.into()))
    }

    pub fn node(&mut self, id: &str) -> &mut M {
        self.nodes.get_mut(id).unwrap()
    }

    /// Delivers messages (and their replies) until none are left.
    pub fn settle(&mut self) {
        for _ in 0..100 {
            let mut msgs = vec![];
            for (id, m) in self.nodes.iter_mut() {
                let ready = m.ready();
                // Synchronous "disk": durable at once.
                if let Some(mark) = ready.mark {
                    m.persisted(mark);
                }
                for (rid, o) in ready.replies {
                    self.replies.push((id.clone(), rid, o));
                }
                msgs.extend(
                    ready
                        .messages
                        .into_iter()
                        .map(|(to, msg)| (id.clone(), to, msg)),
                );
            }
            if msgs.is_empty() {
                return;
            }
            for (from, to, msg) in msgs {
                if !self.up(&from, &to) {
                    self.node(&from).unreachable(&to);
                    continue;
                }
                if let Some(reply) = self.node(&to).step(&from, msg) {
                    self.node(&from).step(&to, reply);
                }
            }
        }
    }

    pub fn run(&mut self, ticks: usize) {
        for _ in 0..ticks {
            for m in self.nodes.values_mut() {
                m.tick();
            }
            self.settle();
        }
    }

    /// Nodes whose status says they lead.
    pub fn leaders(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, m)| matches!(m.status().role, "leader" | "primary"))
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub fn isolate(&mut self, id: &str) {
        for other in self.nodes.keys().cloned().collect::<Vec<_>>() {
            if other != id {
                self.cut.insert((id.into(), other));
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    pub fn answered(&self, n: u64) -> Option<&Outcome> {
        self.replies
            .iter()
            .find(|(_, id, _)| id.n == n)
            .map(|(_, _, o)| o)
    }
}

/// Lets the chaos test read a machine's log and commit index.
pub trait Inspect {
    fn log(&self) -> &crate::log::Log;
    fn commit(&self) -> u64;
}

/// A seeded run with lossy, reordering delivery, partitions and crashes (a crashed node
/// restarts from exactly what it persisted), checking after every step that no two nodes
/// ever disagree on a committed entry, and that no committed entry ever changes.
pub mod chaos {
    use std::collections::{BTreeMap, VecDeque};

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use crate::command::{Command, NodeId, Op, Request, RequestId, Value};
    use crate::disk::HardState;
    use crate::log::Entry;
    use crate::machine::Machine;

    use super::Inspect;

    /// What survives a crash: the hard state and log as last persisted.
    #[derive(Default, Clone)]
    struct Durable {
        hard: HardState,
        log: Vec<Entry>,
    }

    /// Forty seeded chaos runs of 4000 steps, alternating 3- and 5-node clusters, of the
    /// correct protocol `make` builds; panics if they made too little progress to mean
    /// anything (`run` itself panics on a broken committed prefix).
    pub fn run_many<M, F>(make: F)
    where
        M: Machine + Inspect,
        F: Fn(&str, Vec<NodeId>, HardState, Vec<Entry>, u64) -> M,
    {
        let mut answered = 0;
        for seed in 0..40 {
            let n = if seed % 2 == 0 { 3 } else { 5 };
            answered += run(seed, n, 4000, &make);
        }
        assert!(
            answered > 1000,
            "too little progress to mean anything: {answered}"
        );
    }

    pub fn run<M, F>(seed: u64, n: usize, steps: usize, make: F) -> usize
    where
        M: Machine + Inspect,
        F: Fn(&str, Vec<NodeId>, HardState, Vec<Entry>, u64) -> M,
    {
        let mut rng = StdRng::seed_from_u64(seed);
        let ids = super::ids(n);
        let peers_of = |id: &str| ids.iter().filter(|p| *p != id).cloned().collect::<Vec<_>>();
        let mut nodes: BTreeMap<NodeId, M> = ids
            .iter()
            .map(|id| {
                (
                    id.clone(),
                    make(id, peers_of(id), HardState::default(), vec![], rng.random()),
                )
            })
            .collect();
        let mut durable: BTreeMap<NodeId, Durable> = ids
            .iter()
            .map(|id| (id.clone(), Durable::default()))
            .collect();
        let mut down: BTreeMap<NodeId, bool> = ids.iter().map(|id| (id.clone(), false)).collect();
        // In flight: (from, to, msg, whether it is a reply).
        let mut wire: VecDeque<(NodeId, NodeId, M::Msg, bool)> = VecDeque::new();
        let mut cut: Vec<(NodeId, NodeId)> = vec![];
        let mut committed: BTreeMap<u64, Entry> = BTreeMap::new();
        let mut counter = 0u64;
        let mut answered = 0usize;

        for _ in 0..steps {
            match rng.random_range(0..100) {
                0..=29 => {
                    for (id, m) in nodes.iter_mut() {
                        if !down[id] {
                            m.tick();
                        }
                    }
                }
                30..=44 => {
                    let id = &ids[rng.random_range(0..n)];
                    if !down[id] {
                        counter += 1;
                        let key = format!("k{}", rng.random_range(0..3));
                        let op = match rng.random_range(0..3) {
                            0 => Op::Get { key },
                            1 => Op::Put {
                                key,
                                value: Value::Int(counter as i64),
                            },
                            _ => Op::Cas {
                                key,
                                from: Value::Int(rng.random_range(0..counter as i64)),
                                to: Value::Int(counter as i64),
                            },
                        };
                        let req = Request {
                            id: RequestId {
                                node: id.clone(),
                                n: counter,
                            },
                            cmd: Command {
                                op,
                                client: None,
                                seq: None,
                            },
                        };
                        let _ = nodes.get_mut(id).unwrap().client(req);
                    }
                }
                45..=47 => {
                    // Partition one node away, or heal.
                    if cut.is_empty() {
                        let a = ids[rng.random_range(0..n)].clone();
                        cut = ids
                            .iter()
                            .filter(|b| **b != a)
                            .map(|b| (a.clone(), b.clone()))
                            .collect();
                    } else {
                        cut.clear();
                    }
                }
                48 => {
                    // Crash a node (at most a minority down at once) or restart one.
                    let id = ids[rng.random_range(0..n)].clone();
                    let downs = down.values().filter(|d| **d).count();
                    if down[&id] {
                        let d = durable[&id].clone();
                        nodes.insert(
                            id.clone(),
                            make(&id, peers_of(&id), d.hard, d.log, rng.random()),
                        );
                        down.insert(id, false);
                    } else if downs < (n - 1) / 2 {
                        down.insert(id, true);
                    }
                }
                _ => {
                    // Deliver (or lose) a random message in flight.
                    if !wire.is_empty() {
                        let k = rng.random_range(0..wire.len());
                        let (from, to, msg, is_reply) = wire.remove(k).unwrap();
                        let blocked = cut
                            .iter()
                            .any(|(a, b)| (*a == from && *b == to) || (*a == to && *b == from));
                        let lost = rng.random_range(0..100) < 5;
                        if down[&to] || blocked || lost {
                            if !down[&from] {
                                // The sender learns of the failure (timeout) either way.
                                let sender = if is_reply { &to } else { &from };
                                let peer = if is_reply { &from } else { &to };
                                if !down[sender] {
                                    nodes.get_mut(sender).unwrap().unreachable(peer);
                                }
                            }
                        } else if let Some(reply) = nodes.get_mut(&to).unwrap().step(&from, msg) {
                            wire.push_back((to.clone(), from.clone(), reply, true));
                        }
                    }
                }
            }
            // Collect output: persist first (synchronously), then put messages on the wire.
            for (id, m) in nodes.iter_mut() {
                if down[id] {
                    continue;
                }
                let ready = m.ready();
                let d = durable.get_mut(id).unwrap();
                if let Some(h) = ready.hard_state {
                    d.hard = h;
                }
                if let Some(from) = ready.log_from {
                    d.log.truncate((from - 1) as usize);
                    d.log.extend(ready.entries);
                }
                if let Some(mark) = ready.mark {
                    m.persisted(mark);
                }
                answered += ready.replies.len();
                for (to, msg) in ready.messages {
                    wire.push_back((id.clone(), to, msg, false));
                }
            }
            // Safety: committed entries agree everywhere and never change.
            for (id, m) in nodes.iter() {
                if down[id] {
                    continue;
                }
                let log = m.log();
                for i in 1..=m.commit() {
                    let e = log.entry(i).unwrap_or_else(|| {
                        panic!("seed {seed}: {id} commit {} beyond log", m.commit())
                    });
                    match committed.get(&i) {
                        Some(c) => {
                            assert_eq!(c, e, "seed {seed}: {id} disagrees at committed index {i}")
                        }
                        None => {
                            committed.insert(i, e.clone());
                        }
                    }
                }
            }
        }
        answered
    }
}
