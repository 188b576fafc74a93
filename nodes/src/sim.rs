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
