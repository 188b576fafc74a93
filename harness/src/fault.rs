//! The fault vocabulary the nemesis plans in and the backends apply: which kinds of fault
//! a run may inject (`FaultKind`), who drops whose packets (`Grudge`) and what happens to
//! a delayed packet (`PacketFault`). Plain data, so the planner (`crate::nemesis`) and the
//! backends (`crate::backend`) both depend on it and not on each other.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use serde::Serialize;

/// The fault families `--nemesis` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    Partition,
    /// Only the "isolate the current leader" partition: the fault that exposes most
    /// leader-side bugs (a deposed leader that still answers).
    IsolateLeader,
    Kill,
    /// Only kill's "majority restarted apart" shape (`Target::MajorityApart`): the fault
    /// that exposes a node forgetting its term across restarts.
    KillMajorityApart,
    Pause,
    Packet,
    /// Per-node wall-clock offsets (only the `clock` snapshot algorithm reads them).
    Clock,
    /// One fault aimed at one role, e.g. `leader-kill` (`crate::nemesis::scenario`).
    Scenario(crate::nemesis::scenario::Scenario),
}

impl FaultKind {
    /// What `all` means (`isolate-leader` is already one of partition's shapes).
    pub const ALL: [FaultKind; 4] = [Self::Partition, Self::Kill, Self::Pause, Self::Packet];
    pub const NAMED: [FaultKind; 7] = [
        Self::Partition,
        Self::IsolateLeader,
        Self::Kill,
        Self::KillMajorityApart,
        Self::Pause,
        Self::Packet,
        Self::Clock,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Partition => "partition",
            Self::IsolateLeader => "isolate-leader",
            Self::Kill => "kill",
            Self::KillMajorityApart => "kill-majority-apart",
            Self::Pause => "pause",
            Self::Packet => "packet",
            Self::Clock => "clock",
            Self::Scenario(s) => s.name(),
        }
    }

    /// Whether the packet delayer must be available.
    pub fn needs_packet(self) -> bool {
        match self {
            Self::Packet => true,
            Self::Scenario(s) => s.needs_packet(),
            _ => false,
        }
    }
}

impl FromStr for FaultKind {
    type Err = UnknownFault;

    fn from_str(s: &str) -> Result<Self, UnknownFault> {
        if let Some(kind) = Self::NAMED.into_iter().find(|k| k.name() == s) {
            return Ok(kind);
        }
        s.parse::<crate::nemesis::scenario::Scenario>()
            .map(Self::Scenario)
            .map_err(|_| UnknownFault(s.to_string()))
    }
}

/// Parses `--nemesis`: a comma list of fault kinds, `all`, or `none`.
pub fn parse_list(list: &str) -> Result<Vec<FaultKind>, UnknownFault> {
    let mut kinds = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item {
            "none" => {}
            "all" => kinds.extend(FaultKind::ALL),
            other => kinds.push(other.parse()?),
        }
    }
    kinds.sort();
    kinds.dedup();
    Ok(kinds)
}

/// A `--nemesis` item that names no fault kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown nemesis `{0}` (expected partition, isolate-leader, kill, kill-majority-apart, pause, packet, clock, all, none, or a scenario: leader-kill, leader-pause, leader-isolate, leader-slow, follower-kill, follower-pause, follower-isolate, follower-slow, minority-partition)")]
pub struct UnknownFault(pub String);

/// node → the nodes whose packets it drops. Nodes are indices `0..n`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grudge(BTreeMap<usize, BTreeSet<usize>>);

impl From<BTreeMap<usize, BTreeSet<usize>>> for Grudge {
    fn from(map: BTreeMap<usize, BTreeSet<usize>>) -> Self {
        Self(map)
    }
}

impl Grudge {
    pub fn iter(&self) -> impl Iterator<Item = (&usize, &BTreeSet<usize>)> {
        self.0.iter()
    }

    /// Whether `dst` drops packets from `src`.
    pub fn cuts(&self, src: usize, dst: usize) -> bool {
        self.0.get(&dst).is_some_and(|s| s.contains(&src))
    }

    /// Every node drops packets from every node outside its own component.
    pub fn complete(components: &[Vec<usize>]) -> Self {
        let mut grudge = BTreeMap::new();
        for (c, component) in components.iter().enumerate() {
            let others: BTreeSet<usize> = components
                .iter()
                .enumerate()
                .filter(|(o, _)| *o != c)
                .flat_map(|(_, nodes)| nodes.iter().copied())
                .collect();
            for &node in component {
                grudge.insert(node, others.clone());
            }
        }
        Self(grudge)
    }
}

/// What happens to each steered packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PacketFault {
    pub delay_ms: u32,
    pub jitter_ms: u32,
    /// Drop probability, per thousand.
    pub loss_permille: u32,
    /// Duplication probability, per thousand (done by the kernel's nft `dup`).
    pub duplicate_permille: u32,
}

impl PacketFault {
    pub fn describe(&self) -> String {
        format!(
            "delay {}±{} ms, loss {:.1}%, dup {:.1}%",
            self.delay_ms,
            self.jitter_ms,
            self.loss_permille as f64 / 10.0,
            self.duplicate_permille as f64 / 10.0
        )
    }
}
