//! The nemesis: faults on a seeded schedule, each recorded in the history.
//!
//! Every `interval` it starts one fault drawn from the enabled kinds, holds it for
//! `interval`, then undoes it — Jepsen's `start`/`stop` cycle. Planning (which fault,
//! which nodes) draws only from the nemesis's own seeded RNG, so the same seed gives the
//! same schedule; only "the leader" targets depend on what the cluster reports. Applying a
//! plan is the backend's job (`crate::backend::Backend`).
//!
//! - `grudge` — pure partition planners (halves, isolate, majorities ring, bridge).
//! - `clock` — per-node clock offsets for the bank workload's `clock` snapshots.
//! - `scenario` — one fault aimed at one role (leader, follower, minority), for compare.

pub mod clock;
pub mod grudge;
pub mod scenario;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use tokio::sync::watch;

use crate::backend::{Backend, BackendError};
pub use crate::fault::{parse_list, FaultKind, PacketFault, UnknownFault};
use crate::history::{Event, EventType, Recorder};
use crate::system::Cluster;
use grudge::PartitionKind;

/// A fault that is in force and how to undo it.
#[derive(Debug)]
enum Active {
    Partition,
    Killed(Vec<usize>),
    /// A killed majority that is to restart cut off from the rest (`Target::MajorityApart`).
    KilledApart(Vec<usize>),
    Paused(Vec<usize>),
    Packet,
    Clock,
}

/// Packet profiles the nemesis draws from: slow-and-reordering, lossy, duplicating, all.
const PACKET_PROFILES: [PacketFault; 4] = [
    PacketFault {
        delay_ms: 60,
        jitter_ms: 50,
        loss_permille: 0,
        duplicate_permille: 0,
    },
    PacketFault {
        delay_ms: 5,
        jitter_ms: 5,
        loss_permille: 150,
        duplicate_permille: 0,
    },
    PacketFault {
        delay_ms: 20,
        jitter_ms: 20,
        loss_permille: 0,
        duplicate_permille: 200,
    },
    PacketFault {
        delay_ms: 40,
        jitter_ms: 35,
        loss_permille: 50,
        duplicate_permille: 50,
    },
];

/// Which nodes a kill or pause targets: a fixed one, whoever leads when it starts
/// (`fallback` when no node names a leader), or a random majority at once (Jepsen's
/// `:majority`: the cluster loses quorum, and every member restarts or wakes together).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Node(usize),
    Leader {
        fallback: usize,
    },
    Majority(Vec<usize>),
    /// Kill only: a random majority dies, then restarts cut off from the other nodes for one
    /// more interval (a rack that lost power and came back before its uplink). The restarted
    /// majority must elect among itself from what it persisted alone, so a node that forgets
    /// its term on restart elects at a term the survivors already passed, and its writes are
    /// later overwritten when the partition heals.
    MajorityApart(Vec<usize>),
}

/// One planned fault, before it meets the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Planned {
    /// `plan` is `None` for isolate-leader, which is planned when the leader is known.
    Partition {
        kind: PartitionKind,
        plan: Option<grudge::Plan>,
        fallback: usize,
    },
    Kill(Target),
    Pause(Target),
    Packet {
        fault: PacketFault,
        from: Vec<usize>,
    },
    /// Node i's clock runs `offsets_ms[i]` ahead (negative: behind).
    Clock {
        offsets_ms: Vec<i64>,
    },
    /// A scenario's fault, aimed when it starts (`scenario::aim`): `pick` chooses the
    /// follower or fallback node, `minority` is the seeded minority.
    Aimed {
        scenario: scenario::Scenario,
        pick: usize,
        minority: Vec<usize>,
    },
}

/// Draws the fault schedule from the seed alone: the same seed, kinds and cluster size
/// give the same sequence of planned faults, whatever happens while they run.
pub struct Planner {
    rng: StdRng,
    kinds: Vec<FaultKind>,
    nodes: usize,
}

impl Planner {
    pub fn new(seed: u64, kinds: Vec<FaultKind>, nodes: usize) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed ^ 0x4e45_4d45_5349_5300),
            kinds,
            nodes,
        }
    }

    /// The next fault; `None` when no fault kinds are enabled.
    pub fn next_fault(&mut self) -> Option<Planned> {
        let n = self.nodes;
        let rng = &mut self.rng;
        let kind = *self.kinds.choose(rng)?;
        Some(match kind {
            FaultKind::IsolateLeader => Planned::Partition {
                kind: PartitionKind::IsolateLeader,
                plan: None,
                fallback: rng.random_range(0..n),
            },
            FaultKind::Partition => {
                let how = *PartitionKind::ALL.choose(rng).expect("non-empty");
                let fallback = rng.random_range(0..n);
                let plan = match how {
                    PartitionKind::Halves => Some(grudge::halves(n, rng)),
                    PartitionKind::IsolateOne => Some(grudge::isolate(n, fallback)),
                    PartitionKind::IsolateLeader => None,
                    PartitionKind::MajoritiesRing => Some(grudge::majorities_ring(n, rng)),
                    PartitionKind::Bridge => Some(grudge::bridge(n, rng)),
                };
                Planned::Partition {
                    kind: how,
                    plan,
                    fallback,
                }
            }
            FaultKind::KillMajorityApart => {
                Planned::Kill(Target::MajorityApart(random_majority(n, rng)))
            }
            FaultKind::Kill | FaultKind::Pause => {
                let which = if kind == FaultKind::Kill {
                    rng.random_range(0..4)
                } else {
                    rng.random_range(0..3)
                };
                let node = rng.random_range(0..n);
                let majority = random_majority(n, rng);
                let target = match which {
                    0 => Target::Leader { fallback: node },
                    1 => Target::Node(node),
                    2 => Target::Majority(majority),
                    _ => Target::MajorityApart(majority),
                };
                if kind == FaultKind::Kill {
                    Planned::Kill(target)
                } else {
                    Planned::Pause(target)
                }
            }
            FaultKind::Packet => {
                let fault = *PACKET_PROFILES.choose(rng).expect("non-empty");
                let all = rng.random_bool(0.5);
                let one = rng.random_range(0..n);
                Planned::Packet {
                    fault,
                    from: if all { (0..n).collect() } else { vec![one] },
                }
            }
            FaultKind::Clock => Planned::Clock {
                offsets_ms: clock::plan(n, rng),
            },
            FaultKind::Scenario(scenario) => {
                let pick = rng.random_range(0..1usize << 16);
                let majority = random_majority(n, rng);
                let minority = (0..n).filter(|i| !majority.contains(i)).collect();
                Planned::Aimed {
                    scenario,
                    pick,
                    minority,
                }
            }
        })
    }
}

/// A random majority of `n` nodes, in index order.
fn random_majority(n: usize, rng: &mut StdRng) -> Vec<usize> {
    let mut majority: Vec<usize> = (0..n).collect();
    majority.shuffle(rng);
    majority.truncate(n / 2 + 1);
    majority.sort();
    majority
}

pub struct Nemesis {
    pub interval: Duration,
    pub backend: Arc<dyn Backend>,
    /// The running system: who leads, and clock offsets.
    pub cluster: Arc<dyn Cluster>,
    pub recorder: Recorder,
    /// What is in force now, for the progress line.
    pub current: Arc<Mutex<String>>,
    planner: Planner,
    active: Option<Active>,
    /// Stop after this many faults (`--fault-cycles`); the clients run on.
    fault_limit: Option<usize>,
}

impl Nemesis {
    pub fn new(
        kinds: Vec<FaultKind>,
        interval: Duration,
        seed: u64,
        backend: Arc<dyn Backend>,
        cluster: Arc<dyn Cluster>,
        recorder: Recorder,
        current: Arc<Mutex<String>>,
    ) -> Self {
        let planner = Planner::new(seed, kinds, backend.nodes().len());
        Self {
            interval,
            backend,
            cluster,
            recorder,
            current,
            planner,
            active: None,
            fault_limit: None,
        }
    }

    /// Starts at most `faults` faults; after the last one is undone the cluster stays
    /// healthy for the rest of the main phase.
    pub fn limit_faults(&mut self, faults: usize) {
        self.fault_limit = Some(faults);
    }

    /// Runs the schedule until `stop` turns true, then undoes whatever is in force.
    pub async fn run(&mut self, mut stop: watch::Receiver<bool>) {
        let mut started = 0usize;
        loop {
            if self.fault_limit.is_some_and(|limit| started >= limit) {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
            let Some(planned) = self.planner.next_fault() else {
                break;
            };
            self.start(planned).await;
            started += 1;
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = stop.changed() => {}
            }
            self.stop().await;
            if self.active.is_some() {
                // Undoing it started a second phase (a majority restarted apart): hold that
                // too, then undo it.
                tokio::select! {
                    _ = tokio::time::sleep(self.interval) => {}
                    _ = stop.changed() => {}
                }
                self.stop().await;
            }
            if *stop.borrow() {
                break;
            }
        }
        while self.active.is_some() {
            self.stop().await;
        }
    }

    fn record(&self, kind: EventType, f: &'static str, value: &str) {
        self.recorder
            .record(Event::nemesis(kind, f, value.into(), 0));
    }

    /// Runs a blocking backend call off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn Backend) -> Result<T, BackendError> + Send + 'static,
    ) -> Result<T, String> {
        let backend = self.backend.clone();
        match tokio::task::spawn_blocking(move || call(&*backend)).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(e) => Err(format!("the backend call panicked: {e}")),
        }
    }

    fn ids(&self) -> Vec<String> {
        self.backend.nodes().iter().map(|s| s.id.clone()).collect()
    }

    fn names(&self, nodes: &[usize]) -> String {
        let ids: Vec<&str> = nodes
            .iter()
            .map(|&i| self.backend.nodes()[i].id.as_str())
            .collect();
        ids.join(" ")
    }

    /// The nodes a target means now, and how to name them.
    async fn resolve(&self, target: Target) -> (Vec<usize>, String) {
        let id = |i: usize| self.backend.nodes()[i].id.clone();
        match target {
            Target::Node(i) => (vec![i], id(i)),
            Target::Majority(nodes) => {
                let names: Vec<String> = nodes.iter().map(|&i| id(i)).collect();
                (nodes, format!("{} (majority)", names.join(" ")))
            }
            Target::MajorityApart(nodes) => {
                let names: Vec<String> = nodes.iter().map(|&i| id(i)).collect();
                (
                    nodes,
                    format!("{} (majority, to restart apart)", names.join(" ")),
                )
            }
            Target::Leader { fallback } => match self.leader().await {
                Some(i) => (vec![i], format!("{} (leader)", id(i))),
                None => (
                    vec![fallback],
                    format!("{} (no leader known)", id(fallback)),
                ),
            },
        }
    }

    async fn start(&mut self, planned: Planned) {
        let n = self.backend.nodes().len();
        let (f, description, result, active) = match planned {
            Planned::Partition {
                kind,
                plan,
                fallback,
            } => {
                let plan = match plan {
                    Some(plan) => plan,
                    None => grudge::isolate(n, self.leader().await.unwrap_or(fallback)),
                };
                let description = format!("{} {}", kind.name(), plan.description);
                self.record(EventType::Invoke, "start-partition", &description);
                let grudge = plan.grudge;
                let result = self.blocking(move |b| b.partition(&grudge)).await;
                ("start-partition", description, result, Active::Partition)
            }
            Planned::Kill(target) => {
                let apart = matches!(target, Target::MajorityApart(_));
                let (nodes, who) = self.resolve(target).await;
                self.record(EventType::Invoke, "kill", &who);
                let targets = nodes.clone();
                let result = self.blocking(move |b| each(&targets, |i| b.kill(i))).await;
                let active = if apart {
                    Active::KilledApart(nodes)
                } else {
                    Active::Killed(nodes)
                };
                ("kill", who, result, active)
            }
            Planned::Pause(target) => {
                let (nodes, who) = self.resolve(target).await;
                self.record(EventType::Invoke, "pause", &who);
                let targets = nodes.clone();
                let result = self.blocking(move |b| each(&targets, |i| b.pause(i))).await;
                ("pause", who, result, Active::Paused(nodes))
            }
            Planned::Packet { fault, from } => {
                let scope = if from.len() == n {
                    "all nodes".to_string()
                } else {
                    format!("from {}", self.backend.nodes()[from[0]].id)
                };
                let description = format!("{}, {scope}", fault.describe());
                self.record(EventType::Invoke, "start-packet", &description);
                let result = self
                    .blocking(move |b| b.start_packet_fault(&from, fault))
                    .await;
                ("start-packet", description, result, Active::Packet)
            }
            Planned::Aimed {
                scenario,
                pick,
                minority,
            } => {
                let leadership = self.leadership().await;
                let aim = scenario::aim(scenario, leadership, n, pick, &minority);
                let who = format!("{} ({})", self.names(&aim.nodes), aim.role);
                let nodes = aim.nodes;
                match scenario.action {
                    scenario::Action::Kill => {
                        self.record(EventType::Invoke, "kill", &who);
                        let targets = nodes.clone();
                        let result = self.blocking(move |b| each(&targets, |i| b.kill(i))).await;
                        ("kill", who, result, Active::Killed(nodes))
                    }
                    scenario::Action::Pause => {
                        self.record(EventType::Invoke, "pause", &who);
                        let targets = nodes.clone();
                        let result = self.blocking(move |b| each(&targets, |i| b.pause(i))).await;
                        ("pause", who, result, Active::Paused(nodes))
                    }
                    scenario::Action::Isolate => {
                        let rest: Vec<usize> = (0..n).filter(|i| !nodes.contains(i)).collect();
                        let description = format!(
                            "{} [{}] [{}] ({})",
                            scenario.name(),
                            self.names(&nodes),
                            self.names(&rest),
                            aim.role
                        );
                        self.record(EventType::Invoke, "start-partition", &description);
                        let grudge = crate::fault::Grudge::complete(&[nodes, rest]);
                        let result = self.blocking(move |b| b.partition(&grudge)).await;
                        ("start-partition", description, result, Active::Partition)
                    }
                    scenario::Action::Slow => {
                        let fault = scenario::SLOW;
                        let description = format!("{}, from {who}", fault.describe());
                        self.record(EventType::Invoke, "start-packet", &description);
                        let result = self
                            .blocking(move |b| b.start_packet_fault(&nodes, fault))
                            .await;
                        ("start-packet", description, result, Active::Packet)
                    }
                }
            }
            Planned::Clock { offsets_ms } => {
                let ids = self.ids();
                let description = clock::describe(&ids, &offsets_ms);
                self.record(EventType::Invoke, "start-clock", &description);
                let result = clock::apply(&*self.cluster, &offsets_ms)
                    .await
                    .map_err(|e| e.to_string());
                ("start-clock", description, result, Active::Clock)
            }
        };
        match result {
            Ok(()) => {
                self.record(EventType::Info, f, &description);
                *self.current.lock().unwrap() = format!("{f} {description}");
                self.active = Some(active);
            }
            Err(e) => {
                self.record(EventType::Info, f, &format!("{description}: failed: {e}"));
                *self.current.lock().unwrap() = format!("{f} failed: {e}");
                // Undo whatever part of it took effect; every undo is idempotent.
                self.active = Some(active);
            }
        }
    }

    /// Undoes the fault in force, if any.
    async fn stop(&mut self) {
        let Some(active) = self.active.take() else {
            return;
        };
        let (f, value, result) = match active {
            Active::KilledApart(nodes) => return self.restart_apart(nodes).await,
            Active::Partition => {
                // Read the kernel's count of packets the cut dropped before the heal
                // deletes the rules: the record shows the partition was real.
                let dropped = self
                    .blocking(|b| Ok(b.partition_drops()))
                    .await
                    .ok()
                    .flatten();
                let value = match dropped {
                    Some(n) => format!("heal (the cut dropped {n} packets)"),
                    None => "heal".to_string(),
                };
                ("stop-partition", value, self.blocking(|b| b.heal()).await)
            }
            Active::Killed(nodes) => (
                "restart",
                self.names(&nodes),
                self.blocking(move |b| each(&nodes, |i| b.start(i))).await,
            ),
            Active::Paused(nodes) => (
                "resume",
                self.names(&nodes),
                self.blocking(move |b| each(&nodes, |i| b.resume(i))).await,
            ),
            Active::Packet => (
                "stop-packet",
                "all links".to_string(),
                self.blocking(|b| b.stop_packet_fault()).await,
            ),
            Active::Clock => {
                let ids = self.ids();
                let zeros = vec![0; ids.len()];
                (
                    "stop-clock",
                    "every offset 0".to_string(),
                    clock::apply(&*self.cluster, &zeros)
                        .await
                        .map_err(|e| e.to_string()),
                )
            }
        };
        self.record(EventType::Invoke, f, &value);
        let value = match result {
            Ok(()) => value,
            Err(e) => format!("{value}: failed: {e}"),
        };
        self.record(EventType::Info, f, &value);
        *self.current.lock().unwrap() = "none".into();
    }

    /// Cuts the killed majority `nodes` off from every other node, then restarts them; the
    /// partition stays in force (`Active::Partition`) until the next `stop`.
    async fn restart_apart(&mut self, nodes: Vec<usize>) {
        let n = self.backend.nodes().len();
        let rest: Vec<usize> = (0..n).filter(|i| !nodes.contains(i)).collect();
        let value = format!(
            "{} (cut off from {})",
            self.names(&nodes),
            self.names(&rest)
        );
        // The cut is a fault window of its own (`start-partition` … `stop-partition`), so
        // the failures of the restarted-apart phase are not mistaken for a healthy cluster.
        let components = [nodes.clone(), rest];
        let cut_description = format!(
            "restarted-apart {} (killed majority restarts cut off)",
            components
                .iter()
                .map(|c| format!("[{}]", self.names(c)))
                .collect::<Vec<_>>()
                .join(" ")
        );
        self.record(EventType::Invoke, "start-partition", &cut_description);
        let grudge = crate::fault::Grudge::complete(&components);
        let cut = self.blocking(move |b| b.partition(&grudge)).await;
        let cut_value = match &cut {
            Ok(()) => cut_description,
            Err(e) => format!("{cut_description}: failed: {e}"),
        };
        self.record(EventType::Info, "start-partition", &cut_value);
        self.record(EventType::Invoke, "restart", &value);
        let started = self.blocking(move |b| each(&nodes, |i| b.start(i))).await;
        let result = cut.and(started);
        // Whatever happened, heal at the next stop (healing is idempotent); a failed
        // partition call may have restarted nothing, which the recovery phase also covers.
        self.active = Some(Active::Partition);
        let value = match result {
            Ok(()) => value,
            Err(e) => format!("{value}: failed: {e}"),
        };
        self.record(EventType::Info, "restart", &value);
        *self.current.lock().unwrap() = format!("partition: restarted {value}");
    }

    /// Who leads, as a scenario needs it when its fault starts: while the cluster names
    /// no leader (an election in progress, or a mode without one) asks again for up to
    /// `LEADER_WAIT`, then reports none known.
    async fn leadership(&self) -> scenario::Leadership {
        const LEADER_WAIT: Duration = Duration::from_secs(1);
        if !self.cluster.has_leader() {
            return scenario::Leadership::None;
        }
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            if let Some(leader) = self.leader().await {
                return scenario::Leadership::Leader(leader);
            }
            if tokio::time::Instant::now() >= deadline {
                return scenario::Leadership::Unknown;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The node the cluster says leads now, if any.
    pub async fn leader(&self) -> Option<usize> {
        self.cluster.leader().await
    }
}

/// Applies `step` to every node, going on past failures; reports the first.
fn each(
    nodes: &[usize],
    step: impl Fn(usize) -> Result<(), BackendError>,
) -> Result<(), BackendError> {
    let mut first = Ok(());
    for &i in nodes {
        let result = step(i);
        if first.is_ok() {
            first = result;
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(seed: u64, kinds: &[FaultKind]) -> Vec<Planned> {
        let mut planner = Planner::new(seed, kinds.to_vec(), 5);
        (0..40).map(|_| planner.next_fault().unwrap()).collect()
    }

    #[test]
    fn same_seed_same_fault_schedule() {
        assert_eq!(schedule(11, &FaultKind::ALL), schedule(11, &FaultKind::ALL));
        assert_ne!(schedule(11, &FaultKind::ALL), schedule(12, &FaultKind::ALL));
    }

    #[test]
    fn kills_include_a_majority_restarted_apart_and_pauses_do_not() {
        let kills = schedule(3, &[FaultKind::Kill]);
        assert!(kills
            .iter()
            .any(|p| matches!(p, Planned::Kill(Target::MajorityApart(m)) if m.len() == 3)));
        let pauses = schedule(3, &[FaultKind::Pause]);
        assert!(!pauses
            .iter()
            .any(|p| matches!(p, Planned::Pause(Target::MajorityApart(_)))));
    }

    #[test]
    fn clock_faults_offset_every_node() {
        let plans = schedule(4, &[FaultKind::Clock]);
        assert!(plans.iter().all(
            |p| matches!(p, Planned::Clock { offsets_ms } if offsets_ms.len() == 5 && offsets_ms.iter().all(|o| o.abs() >= 50))
        ));
    }

    #[test]
    fn schedule_uses_only_enabled_kinds_and_covers_them() {
        let plans = schedule(3, &[FaultKind::Kill, FaultKind::Packet]);
        assert!(plans
            .iter()
            .all(|p| matches!(p, Planned::Kill(_) | Planned::Packet { .. })));
        assert!(plans.iter().any(|p| matches!(p, Planned::Kill(_))));
        assert!(plans.iter().any(|p| matches!(p, Planned::Packet { .. })));
        assert!(Planner::new(1, vec![], 3).next_fault().is_none());
    }

    #[test]
    fn isolate_leader_always_plans_the_leader_cut() {
        let plans = schedule(8, &[FaultKind::IsolateLeader]);
        assert!(plans.iter().all(|p| matches!(
            p,
            Planned::Partition {
                kind: PartitionKind::IsolateLeader,
                plan: None,
                ..
            }
        )));
    }

    #[test]
    fn partition_plans_cover_every_kind() {
        let plans = schedule(5, &[FaultKind::Partition]);
        for kind in PartitionKind::ALL {
            assert!(
                plans
                    .iter()
                    .any(|p| matches!(p, Planned::Partition { kind: k, .. } if *k == kind)),
                "{kind:?} never planned"
            );
        }
    }

    #[test]
    fn nemesis_list_parses() {
        assert_eq!(
            parse_list("partition,kill").unwrap(),
            vec![FaultKind::Partition, FaultKind::Kill]
        );
        assert_eq!(parse_list("all").unwrap(), FaultKind::ALL.to_vec());
        assert!(parse_list("none").unwrap().is_empty());
        assert_eq!(
            parse_list("isolate-leader").unwrap(),
            vec![FaultKind::IsolateLeader]
        );
        assert!(parse_list("partition,flood")
            .unwrap_err()
            .to_string()
            .contains("flood"));
        assert_eq!(
            parse_list("clock,packet").unwrap(),
            vec![FaultKind::Packet, FaultKind::Clock]
        );
        assert!(!parse_list("all").unwrap().contains(&FaultKind::Clock));
    }
}
