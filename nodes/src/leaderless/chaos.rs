//! Seeded chaos runs of the leaderless protocol: simulated clients (one request at a time
//! each) against 3 or 5 pure machines, with message loss and reordering, one node
//! partitioned away and healed, and crashes of a minority with restart from exactly the
//! records it had persisted. Every run's client history is checked with the
//! linearizability checker (cas-registers per key), and every pair of replicas must have
//! executed the same sequence of commands (one a prefix of the other).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use checker::history::{Action, Completion, HistoryBuilder, Outcome as HOutcome, Value as HValue};
use checker::{CheckOptions, ModelKind, Verdict};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::machine::{Tempo, TempoMsg};
use crate::bugs::{Bug, Bugs};
use crate::command::{Command, NodeId, Op, Outcome, Request, RequestId, Value};
use crate::machine::{Machine, Timing};

const TIMING: Timing = Timing {
    heartbeat: 5,
    election_min: 10,
    election_max: 20,
};

/// One simulated client's open request.
struct Open {
    process: u64,
    node: NodeId,
    key: String,
    f: &'static str,
    since: usize,
}

impl Open {
    /// The client learns nothing more: the request ends `info` at the next event (the
    /// caller gives the slot a fresh process, as Jepsen does after an indeterminate op).
    fn give_up(self, history: &mut HistoryBuilder, event: &mut u64, info: &mut usize) {
        *event += 1;
        history
            .complete(
                self.process,
                self.f,
                Some(&self.key),
                Completion::Info,
                *event,
                *event as usize,
            )
            .unwrap();
        *info += 1;
    }
}

/// What a run showed.
#[derive(Debug, Default)]
pub struct RunResult {
    pub ok: usize,
    pub info: usize,
    pub failed: usize,
    pub verdict: Option<Verdict>,
    /// Two replicas executed different commands at the same position.
    pub diverged: Option<String>,
    pub recoveries: usize,
}

pub struct Chaos {
    pub seed: u64,
    pub n: usize,
    pub steps: usize,
    pub bugs: Bugs,
    pub loss_pct: u32,
    pub crashes: bool,
    pub partitions: bool,
}

fn hvalue(v: &Option<Value>) -> HValue {
    match v {
        None => HValue::Nil,
        Some(Value::Int(i)) => HValue::Int(*i),
        Some(Value::Str(s)) => HValue::Str(s.as_str().into()),
    }
}

impl Chaos {
    pub fn new(seed: u64, n: usize, steps: usize) -> Self {
        Chaos {
            seed,
            n,
            steps,
            bugs: Bugs::default(),
            loss_pct: 5,
            crashes: true,
            partitions: true,
        }
    }

    pub fn run(&self) -> RunResult {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let n = self.n;
        let ids = crate::sim::ids(n);
        let peers_of = |id: &str| ids.iter().filter(|p| *p != id).cloned().collect::<Vec<_>>();
        let make = |id: &str, records: &[String], seed: u64| {
            Tempo::restore(
                id.into(),
                peers_of(id),
                self.bugs.clone(),
                TIMING,
                seed,
                records,
            )
            .unwrap()
        };
        let mut nodes: BTreeMap<NodeId, Tempo> = ids
            .iter()
            .map(|id| (id.clone(), make(id, &[], rng.random())))
            .collect();
        let mut durable: BTreeMap<NodeId, Vec<String>> =
            ids.iter().map(|id| (id.clone(), vec![])).collect();
        let mut down: BTreeMap<NodeId, bool> = ids.iter().map(|id| (id.clone(), false)).collect();
        let mut wire: VecDeque<(NodeId, NodeId, TempoMsg)> = VecDeque::new();
        let mut cut: Vec<(NodeId, NodeId)> = vec![];

        let clients = 2 * n;
        let mut open: Vec<Option<Open>> = (0..clients).map(|_| None).collect();
        let mut process_of: Vec<u64> = (0..clients as u64).collect();
        let mut next_process = clients as u64;
        // Request -> (client slot, process): a late answer (e.g. re-executed after a
        // restart) for a process that already gave up must not complete its successor.
        let mut by_request: BTreeMap<(NodeId, u64), (usize, u64)> = BTreeMap::new();
        let mut history = HistoryBuilder::new();
        let mut event = 0u64;
        let mut counter = 0u64;
        let mut result = RunResult::default();
        // The execution order every replica must follow, as first seen.
        let mut order: Vec<(u64, (NodeId, u64))> = vec![];
        let mut checked: BTreeMap<NodeId, usize> = ids.iter().map(|id| (id.clone(), 0)).collect();
        let settle_from = self.steps;
        let total = self.steps + 3000;

        for step in 0..total {
            let settling = step >= settle_from;
            if settling && step == settle_from {
                cut.clear();
                for id in &ids {
                    if down[id] {
                        let recs = durable[id].clone();
                        nodes.insert(id.clone(), make(id, &recs, rng.random()));
                        down.insert(id.clone(), false);
                        checked.insert(id.clone(), 0);
                    }
                }
            }
            let roll = rng.random_range(0..100);
            match roll {
                0..=29 => {
                    for (id, m) in nodes.iter_mut() {
                        if !down[id] {
                            m.tick();
                        }
                    }
                }
                30..=44 if !settling => {
                    let slot = rng.random_range(0..clients);
                    let id = ids[rng.random_range(0..n)].clone();
                    if open[slot].is_none() && !down[&id] {
                        counter += 1;
                        let key = format!("k{}", rng.random_range(0..3));
                        let (op, action) = match rng.random_range(0..3) {
                            0 => (Op::Get { key: key.clone() }, Action::Read),
                            1 => (
                                Op::Put {
                                    key: key.clone(),
                                    value: Value::Int(counter as i64),
                                },
                                Action::Write(HValue::Int(counter as i64)),
                            ),
                            _ => {
                                let from = rng.random_range(0..counter as i64);
                                (
                                    Op::Cas {
                                        key: key.clone(),
                                        from: Value::Int(from),
                                        to: Value::Int(counter as i64),
                                    },
                                    Action::Cas {
                                        from: HValue::Int(from),
                                        to: HValue::Int(counter as i64),
                                    },
                                )
                            }
                        };
                        let f = action.f();
                        let process = process_of[slot];
                        event += 1;
                        history
                            .invoke(process, Some(&key), action, event, event as usize)
                            .unwrap();
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
                        match nodes.get_mut(&id).unwrap().client(req) {
                            Ok(()) => {
                                by_request.insert((id.clone(), counter), (slot, process));
                                open[slot] = Some(Open {
                                    process,
                                    node: id,
                                    key,
                                    f,
                                    since: step,
                                });
                            }
                            Err(_) => {
                                event += 1;
                                history
                                    .complete(
                                        process,
                                        f,
                                        Some(&key),
                                        Completion::Fail,
                                        event,
                                        event as usize,
                                    )
                                    .unwrap();
                                result.failed += 1;
                            }
                        }
                    }
                }
                45..=47 if !settling && self.partitions => {
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
                48 if !settling && self.crashes => {
                    let id = ids[rng.random_range(0..n)].clone();
                    let downs = down.values().filter(|d| **d).count();
                    if down[&id] {
                        let recs = durable[&id].clone();
                        nodes.insert(id.clone(), make(&id, &recs, rng.random()));
                        down.insert(id.clone(), false);
                        checked.insert(id, 0);
                    } else if downs < (n - 1) / 2 {
                        down.insert(id.clone(), true);
                        // Its clients learn nothing more: their requests end `info`.
                        for slot in 0..clients {
                            if open[slot].as_ref().is_some_and(|o| o.node == id) {
                                let o = open[slot].take().unwrap();
                                o.give_up(&mut history, &mut event, &mut result.info);
                                process_of[slot] = next_process;
                                next_process += 1;
                            }
                        }
                    }
                }
                _ => {
                    // Links are much faster than the tick: deliver a share of what is in
                    // flight, in random order.
                    let batch = 1 + wire.len() / 4;
                    for _ in 0..batch {
                        if wire.is_empty() {
                            break;
                        }
                        let k = rng.random_range(0..wire.len());
                        let (from, to, msg) = wire.remove(k).unwrap();
                        let blocked = cut
                            .iter()
                            .any(|(a, b)| (*a == from && *b == to) || (*a == to && *b == from));
                        let lost = !settling && rng.random_range(0..100) < self.loss_pct;
                        if down[&to] || blocked || lost {
                            if !down[&from] {
                                // A crashed node refuses connections: certainly undelivered.
                                let kind = Tempo::kind(&msg);
                                nodes
                                    .get_mut(&from)
                                    .unwrap()
                                    .undelivered(&to, kind, down[&to]);
                            }
                        } else {
                            let reply = nodes.get_mut(&to).unwrap().step(&from, msg);
                            assert!(reply.is_none(), "leaderless messages are one-way");
                            if !down[&from] {
                                nodes.get_mut(&from).unwrap().delivered(&to);
                            }
                        }
                    }
                }
            }
            // Clients that waited too long give up: `info`.
            for slot in 0..clients {
                if open[slot]
                    .as_ref()
                    .is_some_and(|o| step - o.since > 1500 && !settling)
                {
                    let o = open[slot].take().unwrap();
                    o.give_up(&mut history, &mut event, &mut result.info);
                    process_of[slot] = next_process;
                    next_process += 1;
                }
            }
            // Persist (synchronously), then put messages on the wire, answer clients.
            for (id, m) in nodes.iter_mut() {
                if down[id] {
                    continue;
                }
                let ready = m.ready();
                durable.get_mut(id).unwrap().extend(ready.records);
                if let Some(mark) = ready.mark {
                    m.persisted(mark);
                }
                for (to, msg) in ready.messages {
                    result.recoveries += msg
                        .parts()
                        .iter()
                        .filter(|m| matches!(m, TempoMsg::Recover { .. }))
                        .count();
                    wire.push_back((id.clone(), to, msg));
                }
                for (rid, outcome) in ready.replies {
                    let Some((slot, process)) = by_request.remove(&(rid.node.clone(), rid.n))
                    else {
                        continue;
                    };
                    let Some(o) = open[slot].take_if(|o| o.process == process) else {
                        continue;
                    };
                    let completion = match outcome {
                        Outcome::Value(v) => Completion::Ok(HOutcome::Read(hvalue(&v))),
                        Outcome::Written => Completion::Ok(HOutcome::Ok),
                        Outcome::CasMismatch { .. } => Completion::Fail,
                        Outcome::StaleSeq { .. } => Completion::Info,
                        Outcome::Rolled { .. } => unreachable!("the chaos clients issue no rolls"),
                    };
                    match completion {
                        Completion::Ok(_) => result.ok += 1,
                        Completion::Fail => result.failed += 1,
                        Completion::Info => result.info += 1,
                    }
                    event += 1;
                    history
                        .complete(
                            o.process,
                            o.f,
                            Some(&o.key),
                            completion,
                            event,
                            event as usize,
                        )
                        .unwrap();
                }
            }
            // Every replica executes the same sequence.
            for (id, m) in nodes.iter() {
                if down[id] || result.diverged.is_some() {
                    continue;
                }
                let seen = checked.get_mut(id).unwrap();
                for (k, e) in m.exec_order.iter().enumerate().skip(*seen) {
                    match order.get(k) {
                        None => order.push(e.clone()),
                        Some(o) if o == e => {}
                        Some(o) => {
                            result.diverged = Some(format!(
                                "seed {}: {id} executed {e:?} at position {k}, another replica {o:?}",
                                self.seed
                            ));
                            break;
                        }
                    }
                }
                *seen = m.exec_order.len();
            }
            if std::env::var("CHAOS_DEBUG").is_ok() && step % 500 == 0 {
                for (id, m) in nodes.iter() {
                    eprintln!("step {step} wire {} {id}: {}", wire.len(), m.debug_line());
                }
            }
            if settling && open.iter().all(|o| o.is_none()) && wire.is_empty() {
                break;
            }
        }
        let history = history.finish().expect("history is well formed");
        let opts = CheckOptions {
            timeout: Some(Duration::from_secs(20)),
            ..CheckOptions::default()
        };
        let report = checker::check_history(&history, ModelKind::MultiRegister, &opts)
            .expect("checkable history");
        if report.verdict != Verdict::Valid {
            eprintln!("seed {}: {}", self.seed, report.to_text());
        }
        result.verdict = Some(report.verdict);
        result
    }
}

#[test]
fn chaos_histories_are_linearizable_and_replicas_agree() {
    let mut ok = 0;
    let mut recoveries = 0;
    for seed in 0..30 {
        let n = if seed % 3 == 2 { 5 } else { 3 };
        let r = Chaos::new(seed, n, 4000).run();
        assert_eq!(r.diverged, None);
        assert_eq!(
            r.verdict,
            Some(Verdict::Valid),
            "seed {seed}: history not linearizable ({r:?})"
        );
        ok += r.ok;
        recoveries += r.recoveries;
    }
    // Enough happened to mean something: requests completed, recoveries ran.
    assert!(ok > 2000, "too little progress: {ok} ok ops");
    assert!(recoveries > 50, "recovery hardly exercised: {recoveries}");
    eprintln!("leaderless chaos: {ok} ok ops, {recoveries} recover messages");
}

/// More seeds after a protocol change (not in CI: about 1 s per 10 seeds):
/// `CHAOS_SEEDS=30..330 cargo test --release -p nodes --lib chaos_more_seeds -- --ignored`.
#[test]
#[ignore]
fn chaos_more_seeds() {
    let spec = std::env::var("CHAOS_SEEDS").unwrap_or_else(|_| "30..330".into());
    let (lo, hi) = spec
        .split_once("..")
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .unwrap_or_else(|| panic!("CHAOS_SEEDS={spec}: expected START..END"));
    let (mut ok, mut recoveries) = (0, 0);
    for seed in lo..hi {
        let n = if seed % 3 == 2 { 5 } else { 3 };
        let r = Chaos::new(seed, n, 4000).run();
        assert_eq!(r.diverged, None, "seed {seed}");
        assert_eq!(r.verdict, Some(Verdict::Valid), "seed {seed}: {r:?}");
        ok += r.ok;
        recoveries += r.recoveries;
    }
    eprintln!("seeds {lo}..{hi}: all valid, {ok} ok ops, {recoveries} recover messages");
}

#[test]
fn chaos_catches_execute_unstable() {
    let mut caught = 0;
    let runs = 10;
    for seed in 0..runs {
        let mut c = Chaos::new(seed, 3, 4000);
        c.bugs = Bugs::new([Bug::ExecuteUnstable]);
        let r = c.run();
        if r.diverged.is_some() || r.verdict != Some(Verdict::Valid) {
            caught += 1;
        }
    }
    eprintln!("execute-unstable caught in {caught}/{runs} seeds");
    assert!(
        caught >= 9,
        "execute-unstable caught in only {caught}/{runs} seeds"
    );
}

#[test]
fn quiet_network_answers_every_request() {
    let mut c = Chaos::new(0, 3, 4000);
    c.loss_pct = 0;
    c.crashes = false;
    c.partitions = false;
    let r = c.run();
    assert_eq!(r.verdict, Some(Verdict::Valid));
    assert_eq!(r.info, 0, "{r:?}");
    assert!(r.ok > 200, "{r:?}");
}
