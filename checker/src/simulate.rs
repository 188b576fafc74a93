//! Histories of simulated concurrent clients against a sequential store, for property tests
//! and benchmarks.
//!
//! Each client process issues one op at a time. Every op gets a call time, a return time
//! and a hidden *linearization point* strictly between them; the ops are applied to a
//! sequential model in the order of those points, which decides what reads return and
//! whether a cas applies. So the history is linearizable by construction. Some ops end as
//! `info` (their effect applied or not, at random) and the client continues as a new
//! process; with `info_rate > 0`, some processes' last op never completes.

use crate::history::{Event, EventType, Process};
use serde_json::{json, Value as J};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// What the simulated clients do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// read / write.
    Register,
    /// read / write / cas.
    CasRegister,
    /// Porcupine's kv: get / put / append.
    Kv,
}

#[derive(Debug, Clone)]
pub struct Simulation {
    pub workload: Workload,
    pub processes: usize,
    /// Number of keys; 0 writes no `key` field (one register).
    pub keys: usize,
    pub ops: usize,
    /// Fraction of ops that end as `info`.
    pub info_rate: f64,
    /// Values written are drawn from 0..values (small: more cas hits and equal values).
    pub values: i64,
    /// Longest op duration; short durations mean less concurrency.
    pub max_duration: u64,
    pub seed: u64,
}

impl Default for Simulation {
    fn default() -> Self {
        Simulation {
            workload: Workload::CasRegister,
            processes: 5,
            keys: 0,
            ops: 100,
            info_rate: 0.0,
            values: 5,
            max_duration: 50,
            seed: 1,
        }
    }
}

/// SplitMix64: small, fast and stable across versions.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
}

#[derive(Debug, Clone)]
enum SimAction {
    Read,
    Write(i64),
    Cas(i64, i64),
    Get,
    Put(String),
    Append(String),
}

struct SimOp {
    process: u64,
    key: Option<usize>,
    action: SimAction,
    call: u64,
    ret: u64,
    point: u64,
    ending: Ending,
    /// Filled in when the op is applied: the completion type and value.
    result: Option<(EventType, J)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Ok,
    /// Info; `true` if its effect was applied.
    Info(bool),
    /// Never completes; `true` if its effect was applied.
    Crash(bool),
}

/// A bug injected into the simulated store, to make histories a real buggy node would.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Fault {
    /// A correct store: the history is linearizable.
    #[default]
    None,
    /// Stale reads, as a deposed leader serves them: each register read, with probability
    /// `rate`, returns the value the register held `1..=lag` time units before its
    /// linearization point — a value really written, only old. Not linearizable as soon as
    /// that value differs from every value the read could see.
    StaleReads { rate: f64, lag: u64 },
}

impl Simulation {
    /// Runs the simulation and returns the events, ordered by time.
    pub fn events(&self) -> Vec<Event> {
        self.events_with(Fault::None)
    }

    /// [`events`](Simulation::events) of a store with `fault`.
    pub fn events_with(&self, fault: Fault) -> Vec<Event> {
        let mut rng = Rng::new(self.seed);
        let mut ops: Vec<SimOp> = Vec::with_capacity(self.ops);
        // (next free time, slot); a slot is a client, whose process id changes after info.
        let mut free: BinaryHeap<Reverse<(u64, usize)>> = (0..self.processes)
            .map(|s| Reverse((rng.below(10), s)))
            .collect();
        let mut process_of: Vec<u64> = (0..self.processes as u64).collect();
        let mut next_process = self.processes as u64;
        let mut append_seq = 0u64;
        while ops.len() < self.ops {
            let Some(Reverse((t, slot))) = free.pop() else {
                break;
            };
            let call = t + 1 + rng.below(self.max_duration.max(1));
            let ret = call + 2 + rng.below(self.max_duration.max(1));
            let point = call + 1 + rng.below(ret - call - 1);
            let key = (self.keys > 0).then(|| rng.below(self.keys as u64) as usize);
            let v = rng.below(self.values.max(1) as u64) as i64;
            let action = match (self.workload, rng.below(3)) {
                (Workload::Register | Workload::CasRegister, 0) => SimAction::Read,
                (Workload::Register, _) | (Workload::CasRegister, 1) => SimAction::Write(v),
                (Workload::CasRegister, _) => {
                    SimAction::Cas(v, rng.below(self.values.max(1) as u64) as i64)
                }
                (Workload::Kv, 0) => SimAction::Get,
                (Workload::Kv, 1) => SimAction::Put(format!("p{slot}.{v}")),
                (Workload::Kv, _) => {
                    append_seq += 1;
                    SimAction::Append(format!("x{append_seq} "))
                }
            };
            let process = process_of[slot];
            let ending = if rng.chance(self.info_rate) {
                process_of[slot] = next_process;
                next_process += 1;
                Ending::Info(rng.chance(0.5))
            } else {
                Ending::Ok
            };
            ops.push(SimOp {
                process,
                key,
                action,
                call,
                ret,
                point,
                ending,
                result: None,
            });
            free.push(Reverse((ret, slot)));
        }
        // Some clients crash: their last op never completes.
        if self.info_rate > 0.0 {
            let mut last: HashMap<u64, usize> = HashMap::new();
            for (i, op) in ops.iter().enumerate() {
                last.insert(op.process, i);
            }
            let mut lasts: Vec<usize> = last.into_values().collect();
            lasts.sort_unstable();
            for i in lasts {
                if ops[i].ending == Ending::Ok && rng.chance(self.info_rate * 5.0) {
                    ops[i].ending = Ending::Crash(rng.chance(0.5));
                }
            }
        }
        self.apply(&mut ops, fault, &mut rng);
        self.emit(&ops)
    }

    /// Applies ops in linearization-point order to a sequential store.
    fn apply(&self, ops: &mut [SimOp], fault: Fault, rng: &mut Rng) {
        let mut order: Vec<usize> = (0..ops.len()).collect();
        order.sort_by_key(|&i| (ops[i].point, i));
        // Per register: (point, value written there), for stale reads.
        let mut written: HashMap<Option<usize>, Vec<(u64, J)>> = HashMap::new();
        let mut registers: HashMap<Option<usize>, J> = HashMap::new();
        let mut strings: HashMap<Option<usize>, String> = HashMap::new();
        for i in order {
            let op = &mut ops[i];
            let applied = match op.ending {
                Ending::Ok => true,
                Ending::Info(a) | Ending::Crash(a) => a,
            };
            let reg = registers.entry(op.key).or_insert(J::Null);
            let text = strings.entry(op.key).or_default();
            let ok = |v: J| Some((EventType::Ok, v));
            let log = written.entry(op.key).or_default();
            op.result = match &op.action {
                SimAction::Read => match fault {
                    Fault::StaleReads { rate, lag } if rng.chance(rate) => {
                        let at = op.point.saturating_sub(1 + rng.below(lag.max(1)));
                        let i = log.partition_point(|(p, _)| *p <= at);
                        ok(if i == 0 {
                            J::Null
                        } else {
                            log[i - 1].1.clone()
                        })
                    }
                    _ => ok(reg.clone()),
                },
                SimAction::Get => ok(J::from(text.clone())),
                SimAction::Write(v) => {
                    if applied {
                        *reg = J::from(*v);
                    }
                    ok(J::from(*v))
                }
                SimAction::Cas(from, to) => {
                    if reg.as_i64() == Some(*from) {
                        if applied {
                            *reg = J::from(*to);
                        }
                        ok(json!([from, to]))
                    } else {
                        // The compare failed: a definite failure (like a 409).
                        Some((EventType::Fail, json!([from, to])))
                    }
                }
                SimAction::Put(s) => {
                    if applied {
                        *text = s.clone();
                    }
                    ok(J::from(s.as_str()))
                }
                SimAction::Append(s) => {
                    if applied {
                        text.push_str(s);
                    }
                    ok(J::from(s.as_str()))
                }
            };
            if log.last().map(|(_, v)| v) != Some(&*reg) && !(log.is_empty() && reg.is_null()) {
                log.push((op.point, reg.clone()));
            }
        }
    }

    fn emit(&self, ops: &[SimOp]) -> Vec<Event> {
        let mut timed: Vec<(u64, u8, usize, Event)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            let (f, invoke_value) = match &op.action {
                SimAction::Read => ("read", J::Null),
                SimAction::Get => ("get", J::Null),
                SimAction::Write(v) => ("write", J::from(*v)),
                SimAction::Cas(a, b) => ("cas", json!([a, b])),
                SimAction::Put(s) => ("put", J::from(s.as_str())),
                SimAction::Append(s) => ("append", J::from(s.as_str())),
            };
            let key = op.key.map(|k| format!("k{k}"));
            let event = |kind, value, time| Event {
                kind,
                process: Process::Client(op.process),
                f: f.to_string(),
                key: key.clone(),
                value,
                time,
                extra: Default::default(),
            };
            timed.push((
                op.call,
                0,
                i,
                event(EventType::Invoke, invoke_value.clone(), op.call),
            ));
            let (kind, value) = op.result.clone().expect("applied");
            match op.ending {
                Ending::Ok => timed.push((op.ret, 1, i, event(kind, value, op.ret))),
                Ending::Info(_) => {
                    let value = if kind == EventType::Ok
                        && matches!(op.action, SimAction::Read | SimAction::Get)
                    {
                        J::Null
                    } else {
                        invoke_value
                    };
                    timed.push((op.ret, 1, i, event(EventType::Info, value, op.ret)))
                }
                Ending::Crash(_) => {}
            }
        }
        timed.sort_by_key(|(t, kind, i, _)| (*t, *kind, *i));
        timed.into_iter().map(|(.., e)| e).collect()
    }
}

/// K never-completed writes of 1, K of 2, then 2K+1 alternating reads of 1 and 2: the
/// reads need K+1 writes of 1. Identical pending ops are one class (a multiset), so this
/// takes a few dozen steps; before, K=10 ran out of a 60 s budget. (Timings: the `checking` benchmark; tests in `tests/issue9.rs`.)
/// Native JSONL, one event a line.
pub fn pending_writes_history(k: usize, reads: usize) -> String {
    let mut out = String::new();
    let mut t = 0;
    for i in 0..2 * k {
        t += 1;
        let v = if i < k { 1 } else { 2 };
        out += &format!(
            "{{\"type\":\"invoke\",\"process\":{i},\"f\":\"write\",\"value\":{v},\"time\":{t}}}\n"
        );
    }
    let p = 2 * k;
    for r in 0..reads {
        let v = if r % 2 == 0 { 1 } else { 2 };
        out += &format!(
            "{{\"type\":\"invoke\",\"process\":{p},\"f\":\"read\",\"value\":null,\"time\":{}}}\n",
            t + 1
        );
        out += &format!(
            "{{\"type\":\"ok\",\"process\":{p},\"f\":\"read\",\"value\":{v},\"time\":{}}}\n",
            t + 2
        );
        t += 2;
    }
    out
}
