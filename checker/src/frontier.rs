//! The frontier (configuration-set) linearizability search: Knossos's `linear` checker,
//! after Lowe, "Testing for linearizability" (CCPE 2017), §4 (the "JIT" tree search as a
//! breadth-first walk over the history).
//!
//! Where the Wing–Gong–Lowe search ([`crate::search`]) builds one order depth first and
//! backtracks through every earlier order when it fails, this search walks the history's
//! events once, in real-time order, keeping the *set* of every way the history so far can
//! have been linearized. It is explained by its data structures:
//!
//! - **A configuration** is (model state, which *open* definite ops are already
//!   linearized, how many info ops of each class are used). Ops that returned are not in
//!   it: at a return every surviving configuration has linearized the op, so the op is
//!   forgotten. Definite ops hold a *slot* (a bit of the configuration's bitset) from their
//!   call to their return. Info / never-completed ops are grouped in **classes** of
//!   identical ops (same key, action, outcome); the members of a class are
//!   interchangeable, so a configuration holds only a count per class (the first `n` by
//!   call are the used ones: any valid order using `n` members can use those instead, the
//!   k-th placed one being placed after at least k members' calls).
//! - **The frontier**, the configurations at the current point of the walk, in flat
//!   arenas (states, bitsets, class counts, trace) with a hash table on (state, bitset).
//!   - At a *call* (a run of calls at the same cut, taken together) the new op becomes a
//!     candidate, and the set is closed: from every configuration every candidate that is
//!     legal there is applied, and every new configuration expanded the same way, until
//!     nothing new appears. Old configurations try only the new candidates (they tried
//!     the rest before).
//!   - At a *return* of op `d`, only configurations where `d` is linearized survive, and
//!     `d`'s slot is freed. The history is not linearizable exactly when this empties the
//!     set; `d` is then the op that cannot be linearized.
//! - **Dominance.** Using fewer info ops never hurts (the rest can still happen later, or
//!   never). Among configurations with the same state and bitset only those with a
//!   minimal count vector are kept: one whose counts are all ≥ another's is dropped.
//! - **Forced reads.** A read that is legal in a configuration's state leaves it
//!   unchanged, and any valid continuation that places it later stays valid with it moved
//!   here (every op that must precede it has returned, so it is linearized already). So a
//!   configuration is stored only after every open read legal in it *without changing
//!   it* (`Step::Same`) is linearized. A read that is legal by changing the state — fixing
//!   the value an `info` roll left unknown, or the order of kv's pending appends — is a
//!   choice, tried like any other op (as in [`crate::search`]).
//! - **Hopeless reads.** A configuration in which an open read is illegal and, by the
//!   model ([`Model::may_become_legal`]), cannot become legal without a reset, is dropped
//!   when no op called before that read returns is a reset that could help.
//! - **Lazy info ops** (Lowe 2017, just-in-time linearization; the rule and its soundness
//!   argument are [`crate::search`]'s), when every op of the part overwrites or observes:
//!   an info op is taken only as part of a chain of info ops, each making the next possible,
//!   that ends at a definite op they make possible — so a configuration never records a
//!   speculative info op. An old configuration tries chains ending at a newly called op
//!   (the op an info op enables may be called long after the info op).
//! - **The relaxation** ([`Frontier::relaxed`]): one configuration per (state, bitset) with
//!   the least count of each class. Every order the exact search allows is allowed, so an
//!   empty set proves a violation; validity is accepted only with a trace that uses no op
//!   twice. Otherwise the exact search runs.
//! - **The trace**, an arena of (op, parent) links: each configuration points at the last
//!   op of one linearization reaching it, which gives the counterexample's prefix.
//!
//! Cost: each event costs (configurations at that cut) × (open ops + classes) steps, so the
//! work is linear in history length for a bounded frontier, and an invalid history costs
//! no more than a valid one — there is no backtracking. The price is that the frontier is
//! *all* configurations at a cut: with many concurrent ops that change the state
//! differently (kv appends) it can be large where the depth-first search finds one order
//! at once. The scheduler ([`crate::scheduler`]) runs both and takes the first answer.
//!
//! Exhaustive and sound: a configuration is dropped only when it cannot extend to a valid
//! order (it misses a returned op, or a read it must place is hopeless) or when a kept
//! configuration can extend to every order it could (dominance, forcing). So the set is
//! empty at some return iff no valid linearization exists.

use crate::history::{Action, Op, Outcome};
use crate::model::{mix64, Model, Step};
use crate::search::{Counterexample, GiveUp, Limits, Progress, SearchOutcome};
use hashbrown::HashTable;
use std::sync::atomic::Ordering;
use std::time::Instant;

const NIL: u32 = u32::MAX;

/// One frontier: configurations in flat arenas.
struct Configs<S> {
    states: Vec<S>,
    /// Linearized open ops, `words` per configuration.
    lin: Vec<u64>,
    /// Used info ops per class, `classes` per configuration.
    used: Vec<u32>,
    /// Last trace node of each configuration.
    trace: Vec<u32>,
    /// Dominated (or replaced by its forced form) after being stored.
    dead: Vec<bool>,
    /// Next configuration with the same (state, bitset), NIL-terminated.
    same_next: Vec<u32>,
    /// hash of (state, bitset) -> first configuration with it.
    table: HashTable<(u64, u32)>,
    heap: usize,
    words: usize,
    classes: usize,
    /// The relaxation: one configuration per (state, bitset), whose counts are the
    /// least of all that reached it (see [`Frontier::relaxed`]).
    relaxed: bool,
}

impl<S: Clone + Eq> Configs<S> {
    fn new(words: usize, classes: usize, relaxed: bool) -> Self {
        Configs {
            states: Vec::new(),
            lin: Vec::new(),
            used: Vec::new(),
            trace: Vec::new(),
            dead: Vec::new(),
            same_next: Vec::new(),
            table: HashTable::new(),
            heap: 0,
            words,
            classes,
            relaxed,
        }
    }

    fn len(&self) -> usize {
        self.states.len()
    }

    fn lin(&self, i: usize) -> &[u64] {
        &self.lin[i * self.words..(i + 1) * self.words]
    }

    fn used(&self, i: usize) -> &[u32] {
        &self.used[i * self.classes..(i + 1) * self.classes]
    }

    fn bytes(&self) -> usize {
        self.states.capacity() * std::mem::size_of::<S>()
            + self.lin.capacity() * 8
            + self.used.capacity() * 4
            + self.trace.capacity() * 4
            + self.dead.capacity()
            + self.same_next.capacity() * 4
            + self.table.capacity() * 8 / 7 * 17
            + self.heap
    }

    /// Stores a configuration unless one with the same state and bitset and counts all ≤
    /// its counts is there; kills stored ones it dominates. Returns whether it was stored.
    fn insert(
        &mut self,
        hash: u64,
        state: S,
        lin: &[u64],
        used: &[u32],
        trace: u32,
        heap: usize,
    ) -> bool {
        let (w, c) = (self.words, self.classes);
        let head = {
            let (states, lins) = (&self.states, &self.lin);
            self.table
                .find(hash, |&(h, k)| {
                    let k = k as usize;
                    h == hash && lins[k * w..(k + 1) * w] == *lin && states[k] == state
                })
                .map(|&(_, k)| k)
        };
        let merged: Vec<u32>;
        let mut used = used;
        if let (Some(head), true) = (head, self.relaxed) {
            // One configuration per key: the counts become the least of both. If that
            // lowers none, nothing is new; else the old one is replaced (to be expanded
            // again with more info ops available).
            let mut k = head;
            while self.dead[k as usize] {
                k = self.same_next[k as usize];
                if k == NIL {
                    break;
                }
            }
            if k != NIL {
                let ku = k as usize;
                let other = &self.used[ku * c..(ku + 1) * c];
                if other.iter().zip(used).all(|(o, n)| o <= n) {
                    return false;
                }
                merged = other.iter().zip(used).map(|(o, n)| *o.min(n)).collect();
                used = &merged[..];
                self.dead[ku] = true;
            }
        } else if let Some(head) = head {
            // The live ones of a chain are an antichain of count vectors (none ≤ another),
            // so the new one is either dominated by one of them or kills those it is ≤.
            // Both comparisons run in one branch-free pass over the counts; dead ones are
            // unlinked as they are met (all but the head, which the table points at), so
            // a chain does not grow with every configuration ever dominated at this cut.
            let mut prev = NIL;
            let mut k = head;
            while k != NIL {
                let ku = k as usize;
                let next = self.same_next[ku];
                let mut unlink = self.dead[ku];
                if !unlink {
                    let other = &self.used[ku * c..(ku + 1) * c];
                    let (mut other_le, mut new_le) = (true, true);
                    for (o, n) in other.iter().zip(used) {
                        other_le &= o <= n;
                        new_le &= n <= o;
                    }
                    if other_le {
                        return false;
                    }
                    if new_le {
                        self.dead[ku] = true;
                        unlink = true;
                    }
                }
                if unlink && prev != NIL {
                    self.same_next[prev as usize] = next;
                } else {
                    prev = k;
                }
                k = next;
            }
        }
        let i = self.states.len() as u32;
        self.states.push(state);
        self.lin.extend_from_slice(lin);
        self.used.extend_from_slice(used);
        self.trace.push(trace);
        self.dead.push(false);
        self.heap += heap;
        match head {
            // Chain after the head so the table entry stays put.
            Some(head) => {
                self.same_next.push(self.same_next[head as usize]);
                self.same_next[head as usize] = i;
            }
            None => {
                self.same_next.push(NIL);
                self.table.insert_unique(hash, (hash, i), |&(h, _)| h);
            }
        }
        true
    }
}

/// One part's frontier search, resumable like [`crate::search::Search`].
pub struct Frontier<'a, M: Model> {
    model: &'a M,
    ops: Vec<&'a Op>,
    /// (position, is return, op), sorted: calls before returns at equal positions.
    events: Vec<(u64, bool, u32)>,
    next_event: usize,
    /// Per definite op: its slot while open. Per info op: its class.
    slot: Vec<u32>,
    class: Vec<u32>,
    /// Per class: its members in call order.
    members: Vec<Vec<u32>>,
    /// Per class: members called so far.
    called: Vec<u32>,
    /// Per slot: the open op holding it, or NIL.
    open: Vec<u32>,
    free: Vec<u32>,
    /// Per read: no op called before its return may make it legal again once it is
    /// hopeless in a state (see the module docs).
    prunable: Vec<bool>,
    /// Lazy info ops (Lowe 2017, just-in-time linearization), when every op of the part
    /// overwrites or observes ([`Model::overwrites_or_observes`]): an info op is taken only
    /// right before an op it makes possible, as in [`crate::search`].
    lazy: bool,
    set: Configs<M::State>,
    /// Configurations of `set` below this index have tried every candidate but `fresh`.
    expanded: usize,
    /// Candidates new at this cut: open slots and classes whose count of calls grew.
    fresh_slots: Vec<u32>,
    fresh_classes: Vec<u32>,
    /// The cursor of a closure in progress (index into `set`), or None between events.
    closing: Option<usize>,
    trace_op: Vec<u32>,
    trace_parent: Vec<u32>,
    reported: usize,
    steps: u64,
    peak: usize,
    deepest: usize,
    linearized_returns: usize,
    inconclusive: bool,
}

impl<'a, M: Model> Frontier<'a, M> {
    /// The exact search.
    pub fn new(model: &'a M, ops: Vec<&'a Op>) -> Self {
        Self::with(model, ops, false)
    }

    /// The relaxation: configurations that differ only in their info counts are merged
    /// into one with the least count of each class. It allows every order the exact search
    /// allows (and maybe more: a member may be used twice), so when its set empties the
    /// part is *not linearizable* — a definite answer. When it reaches the end it answers
    /// *linearizable* only if one of the final configurations' traces uses no op twice (a
    /// real linearization); else it is inconclusive ([`Frontier::inconclusive`]). Its
    /// frontier holds one configuration per (state, bitset): bounded by states × subsets
    /// of open ops, whatever the info ops.
    pub fn relaxed(model: &'a M, ops: Vec<&'a Op>) -> Self {
        Self::with(model, ops, true)
    }

    /// The relaxation reached the end but found no real linearization among its traces.
    pub fn inconclusive(&self) -> bool {
        self.inconclusive
    }

    fn with(model: &'a M, ops: Vec<&'a Op>, relaxed: bool) -> Self {
        let mut events: Vec<(u64, bool, u32)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            events.push((op.call, false, i as u32));
            if let Some(ret) = op.ret {
                events.push((ret, true, i as u32));
            }
        }
        events.sort_unstable();
        // Slots: the most definite ops open at once.
        let (mut open_now, mut most) = (0usize, 0usize);
        for &(_, is_return, op) in &events {
            if ops[op as usize].is_definite() {
                if is_return {
                    open_now -= 1;
                } else {
                    open_now += 1;
                    most = most.max(open_now);
                }
            }
        }
        let words = most.div_ceil(64).max(1);
        let mut class = vec![NIL; ops.len()];
        let mut members: Vec<Vec<u32>> = Vec::new();
        {
            let mut index: rustc_hash::FxHashMap<(Option<u32>, &Action, &Outcome), u32> =
                Default::default();
            for &(_, is_return, op) in &events {
                let o = ops[op as usize];
                if is_return || o.is_definite() {
                    continue;
                }
                let next = members.len() as u32;
                let c = *index.entry((o.key, &o.action, &o.outcome)).or_insert(next);
                if c == next {
                    members.push(Vec::new());
                }
                members[c as usize].push(op);
                class[op as usize] = c;
            }
        }
        let classes = members.len();
        // A read can be dropped as hopeless only if no op called before its return (other
        // than itself) is a reset after which it may become legal.
        let mut prunable = vec![false; ops.len()];
        {
            let mut resets_so_far: Vec<u32> = Vec::new();
            for &(_, is_return, op) in &events {
                let o = ops[op as usize];
                if !is_return {
                    if model.resets(o) {
                        resets_so_far.push(op);
                    }
                } else if o.action.is_read_only() {
                    prunable[op as usize] = !resets_so_far.iter().any(|&r| {
                        let reset = ops[r as usize];
                        r != op && reset.key == o.key && model.may_become_legal_after(reset, o)
                    });
                }
            }
            // An op without a return is never a read that must be placed.
        }
        let lazy = ops.iter().all(|o| model.overwrites_or_observes(o));
        // The relaxation only where info ops overwrite or observe: with appends (or rolls)
        // pooled counts would let one info append extend a string again and again.
        let relaxed = relaxed && lazy;
        let mut set = Configs::new(words, classes, relaxed);
        let init = model.init();
        // As `Frontier::hash` computes it for an empty bitset.
        let hash = (0..words).fold(mix64(model.hash(&init)), |h, _| mix64(h));
        let heap = model.heap_bytes(&init);
        set.insert(hash, init, &vec![0; words], &vec![0; classes], NIL, heap);
        Frontier {
            model,
            events,
            next_event: 0,
            slot: vec![NIL; ops.len()],
            class,
            members,
            called: vec![0; classes],
            open: vec![NIL; most.max(1)],
            free: (0..most.max(1) as u32).rev().collect(),
            prunable,
            lazy,
            set,
            expanded: 1,
            fresh_slots: Vec::new(),
            fresh_classes: Vec::new(),
            closing: None,
            trace_op: Vec::new(),
            trace_parent: Vec::new(),
            reported: 0,
            steps: 0,
            peak: 1,
            deepest: 0,
            linearized_returns: 0,
            inconclusive: false,
            ops,
        }
    }

    /// Steps run so far and the largest frontier seen (for benchmarks and debugging).
    pub fn stats(&self) -> (u64, usize) {
        (self.steps, self.peak)
    }

    fn bytes(&self) -> usize {
        self.set.bytes() + self.trace_op.capacity() * 8
    }

    /// Brings the shared memory counter up to date; `false` if past the budget.
    fn account(&mut self, limits: &Limits) -> bool {
        let now = self.bytes();
        if now > self.reported {
            limits
                .memo_bytes
                .fetch_add(now - self.reported, Ordering::Relaxed);
        } else {
            limits
                .memo_bytes
                .fetch_sub(self.reported - now, Ordering::Relaxed);
        }
        self.reported = now;
        // The next doubling of the largest arena is counted before it happens, so the
        // frontier stops short of the budget rather than past it.
        let growth = (self.set.states.capacity() * std::mem::size_of::<M::State>())
            .max(self.set.lin.capacity() * 8)
            .max(self.set.used.capacity() * 4)
            .max(self.trace_op.capacity() * 4);
        limits.memo_bytes.load(Ordering::Relaxed) + growth <= limits.memo_budget
    }

    fn release(&mut self, limits: &Limits) {
        limits
            .memo_bytes
            .fetch_sub(self.reported, Ordering::Relaxed);
        self.reported = 0;
    }

    fn give_up(&mut self, reason: GiveUp, limits: &Limits) -> Progress {
        self.release(limits);
        Progress::Finished(SearchOutcome::GaveUp {
            reason,
            deepest: self.deepest,
        })
    }

    /// Runs at most about `budget` steps.
    pub fn run(&mut self, budget: u64, limits: &Limits) -> Progress {
        self.run_until(budget, None, limits)
    }

    /// Runs at most about `budget` steps, and pauses at `until` (checked every 256
    /// configurations): the scheduler gives it as much time as the other search took.
    pub fn run_until(&mut self, budget: u64, until: Option<Instant>, limits: &Limits) -> Progress {
        let mut steps = 0u64;
        loop {
            if steps > 0 && until.is_some_and(|u| Instant::now() >= u) {
                return Progress::Paused;
            }
            if let Some(reason) = limits.exceeded() {
                return self.give_up(reason, limits);
            }
            if !self.account(limits) {
                return self.give_up(GiveUp::MemoryLimit, limits);
            }
            if steps >= budget {
                return Progress::Paused;
            }
            if let Some(from) = self.closing {
                // Close the set, 256 configurations at a time.
                let end = (from + 256).min(self.set.len());
                for i in from..end {
                    self.expand(i);
                }
                steps += (end - from) as u64 * 16;
                self.steps += (end - from) as u64;
                self.closing = (end < self.set.len()).then_some(end);
                if self.closing.is_none() {
                    self.expanded = self.set.len();
                    self.fresh_slots.clear();
                    self.fresh_classes.clear();
                    self.peak = self.peak.max(self.live());
                }
                continue;
            }
            let Some(&(_, is_return, op)) = self.events.get(self.next_event) else {
                self.release(limits);
                if self.set.relaxed && !self.has_real_trace() {
                    self.inconclusive = true;
                    return Progress::Finished(SearchOutcome::GaveUp {
                        reason: GiveUp::Cancelled,
                        deepest: self.deepest,
                    });
                }
                return Progress::Finished(SearchOutcome::Linearizable);
            };
            if !is_return {
                // Take every call at this cut (up to the next return), then close once.
                while let Some(&(_, false, op)) = self.events.get(self.next_event) {
                    self.next_event += 1;
                    self.call(op);
                }
                self.closing = Some(0);
                continue;
            }
            self.next_event += 1;
            steps += self.set.len() as u64;
            if let Some(cx) = self.ret(op) {
                self.release(limits);
                return Progress::Finished(SearchOutcome::NotLinearizable(cx));
            }
        }
    }

    fn live(&self) -> usize {
        self.set.dead.iter().filter(|d| !**d).count()
    }

    fn call(&mut self, op: u32) {
        if self.ops[op as usize].is_definite() {
            let s = self.free.pop().expect("slots were counted");
            self.slot[op as usize] = s;
            self.open[s as usize] = op;
            self.fresh_slots.push(s);
        } else {
            let c = self.class[op as usize];
            self.called[c as usize] += 1;
            if !self.fresh_classes.contains(&c) {
                self.fresh_classes.push(c);
            }
        }
    }

    /// At the return of `op`: keeps the configurations that linearized it, and forgets it.
    /// `Some` counterexample if none did.
    fn ret(&mut self, op: u32) -> Option<Counterexample> {
        let s = self.slot[op as usize] as usize;
        let (word, bit) = (s / 64, 1u64 << (s % 64));
        let (w, classes) = (self.set.words, self.set.classes);
        let relaxed = self.set.relaxed;
        let mut next = Configs::new(w, classes, relaxed);
        let mut lin = vec![0u64; w];
        let mut old = std::mem::replace(&mut self.set, Configs::new(w, classes, relaxed));
        let states = std::mem::take(&mut old.states);
        for (i, state) in states.into_iter().enumerate() {
            if old.dead[i] || old.lin(i)[word] & bit == 0 {
                continue;
            }
            lin.copy_from_slice(old.lin(i));
            lin[word] &= !bit;
            let hash = self.hash(&state, &lin);
            let heap = self.model.heap_bytes(&state);
            next.insert(hash, state, &lin, old.used(i), old.trace[i], heap);
        }
        if next.len() == 0 {
            old.states = Vec::new();
            return Some(self.counterexample(&old, op));
        }
        self.open[s] = NIL;
        self.free.push(s as u32);
        if std::env::var_os("FAULTLINE_DEBUG_FRONTIER").is_some()
            && (self.linearized_returns.is_multiple_of(100) || next.len() > 2000)
        {
            let mut used_distinct: std::collections::HashSet<&[u32]> = Default::default();
            for i in 0..next.len() {
                used_distinct.insert(next.used(i));
            }
            let max_used: u32 = (0..next.len())
                .map(|i| next.used(i).iter().sum::<u32>())
                .max()
                .unwrap_or(0);
            let min_used: u32 = (0..next.len())
                .map(|i| next.used(i).iter().sum::<u32>())
                .min()
                .unwrap_or(0);
            eprintln!(
                "return {}: {} configurations, {} keys, {} used vectors, used {}..{}, called {:?}",
                self.linearized_returns,
                next.len(),
                next.table.len(),
                used_distinct.len(),
                min_used,
                max_used,
                self.called
            );
        }
        self.set = next;
        self.expanded = self.set.len();
        self.linearized_returns += 1;
        self.deepest = self.deepest.max(self.linearized_returns);
        None
    }

    fn hash(&self, state: &M::State, lin: &[u64]) -> u64 {
        let mut h = mix64(self.model.hash(state));
        for &x in lin {
            h = mix64(h ^ x);
        }
        h
    }

    /// Tries candidates from configuration `i` (all of them if it is new at this cut, else
    /// only the fresh ones) and stores what is new.
    fn expand(&mut self, i: usize) {
        if self.set.dead[i] {
            return;
        }
        // A new info member can go anywhere in a chain: old configurations try everything.
        let all = i >= self.expanded || !self.fresh_classes.is_empty();
        let state = self.set.states[i].clone();
        let lin: Vec<u64> = self.set.lin(i).to_vec();
        let used: Vec<u32> = self.set.used(i).to_vec();
        let trace = self.set.trace[i];
        // Forced reads: if a newly callable read is legal here, this configuration is
        // replaced by the one that took it (a new one is stored already normalized).
        if i < self.expanded {
            let mut forced = lin.clone();
            let mut any = false;
            let mut t = trace;
            let mark = self.trace_op.len();
            for s in self.fresh_slots.clone() {
                let op = self.open[s as usize];
                if self.is_forced(&state, op) {
                    forced[s as usize / 64] |= 1u64 << (s % 64);
                    t = self.push_trace(op, t);
                    any = true;
                }
            }
            if any {
                self.set.dead[i] = true;
                self.store(state, forced, used, t, mark);
                return;
            }
        }
        let slots: Vec<u32> = if all {
            (0..self.open.len() as u32).collect()
        } else {
            self.fresh_slots.clone()
        };
        self.definite_steps(&state, None, &lin, &used, trace, &slots);
        if self.lazy {
            let mut chain = vec![state.clone()];
            self.info_chains(&mut chain, &lin, &used, trace, &slots);
        } else {
            let classes: Vec<u32> = if all {
                (0..self.members.len() as u32).collect()
            } else {
                self.fresh_classes.clone()
            };
            for c in classes {
                let n = used[c as usize];
                if n >= self.called[c as usize] {
                    continue;
                }
                let op = self.members[c as usize][n as usize];
                // An info op that changes nothing is the same as one that never happened.
                let Step::Next(next) = self.model.step(&state, self.ops[op as usize]) else {
                    continue;
                };
                let mut u = used.clone();
                u[c as usize] += 1;
                let mark = self.trace_op.len();
                let t = self.push_trace(op, trace);
                self.store(next, lin.clone(), u, t, mark);
            }
        }
    }

    /// Linearizes each open definite op of `slots` not yet in `lin` that is legal in
    /// `state` — and, right after an info op (`before`: the state before it), illegal in
    /// `before` (one the info op made possible).
    fn definite_steps(
        &mut self,
        state: &M::State,
        before: Option<&M::State>,
        lin: &[u64],
        used: &[u32],
        trace: u32,
        slots: &[u32],
    ) {
        for &s in slots {
            let op = self.open[s as usize];
            if op == NIL || lin[s as usize / 64] & (1u64 << (s % 64)) != 0 {
                continue;
            }
            let o = self.ops[op as usize];
            let next = match self.model.step(state, o) {
                Step::Illegal => continue,
                Step::Same => state.clone(),
                Step::Next(n) => n,
            };
            if before.is_some_and(|b| !matches!(self.model.step(b, o), Step::Illegal)) {
                continue;
            }
            let mut l = lin.to_vec();
            l[s as usize / 64] |= 1u64 << (s % 64);
            let mark = self.trace_op.len();
            let t = self.push_trace(op, trace);
            self.store(next, l, used.to_vec(), t, mark);
        }
    }

    /// Lazy info ops (Lowe 2017, just-in-time linearization): an info op is taken only
    /// right before an op it makes possible, so instead of storing "info op taken, debt
    /// open" configurations, chains of info ops are followed here, each enabling the next
    /// (impossible or a no-op before it), until a definite op of `slots` they enable. A
    /// chain that comes back to a state it passed is skipped: without the loop it reaches
    /// the same place using fewer info ops. `chain` holds the states passed, last = now.
    fn info_chains(
        &mut self,
        chain: &mut Vec<M::State>,
        lin: &[u64],
        used: &[u32],
        trace: u32,
        slots: &[u32],
    ) {
        let state = chain.last().expect("a chain starts with a state").clone();
        let before = (chain.len() >= 2).then(|| chain[chain.len() - 2].clone());
        for c in 0..self.members.len() {
            let n = used[c];
            if n >= self.called[c] {
                continue;
            }
            let op = self.members[c][n as usize];
            let o = self.ops[op as usize];
            let Step::Next(next) = self.model.step(&state, o) else {
                continue;
            };
            if before
                .as_ref()
                .is_some_and(|b| matches!(self.model.step(b, o), Step::Next(_)))
            {
                continue;
            }
            if chain.contains(&next) {
                continue;
            }
            let mut u = used.to_vec();
            u[c] += 1;
            let mark = self.trace_op.len();
            let t = self.push_trace(op, trace);
            let len = self.trace_op.len();
            self.definite_steps(&next, Some(&state), lin, &u, t, slots);
            chain.push(next);
            self.info_chains(chain, lin, &u, t, slots);
            chain.pop();
            // Nothing used the node: drop it again.
            if self.trace_op.len() == len {
                self.trace_op.truncate(mark);
                self.trace_parent.truncate(mark);
            }
        }
    }

    /// A read that must be taken as soon as it is legal: it leaves the state as it is.
    fn is_forced(&self, state: &M::State, op: u32) -> bool {
        let o = self.ops[op as usize];
        o.action.is_read_only() && matches!(self.model.step(state, o), Step::Same)
    }

    fn push_trace(&mut self, op: u32, parent: u32) -> u32 {
        self.trace_op.push(op);
        self.trace_parent.push(parent);
        (self.trace_op.len() - 1) as u32
    }

    /// Normalizes a configuration (forced reads taken, hopeless ones dropped) and stores it.
    /// Trace nodes pushed for it since `mark` are dropped again if it is not stored.
    fn store(&mut self, state: M::State, lin: Vec<u64>, used: Vec<u32>, trace: u32, mark: usize) {
        if !self.try_store(state, lin, used, trace) {
            self.trace_op.truncate(mark);
            self.trace_parent.truncate(mark);
        }
    }

    fn try_store(
        &mut self,
        state: M::State,
        mut lin: Vec<u64>,
        used: Vec<u32>,
        mut trace: u32,
    ) -> bool {
        for s in 0..self.open.len() {
            let op = self.open[s];
            if op == NIL || lin[s / 64] & (1u64 << (s % 64)) != 0 {
                continue;
            }
            let o = self.ops[op as usize];
            if !o.action.is_read_only() {
                continue;
            }
            match self.model.step(&state, o) {
                Step::Same => {
                    lin[s / 64] |= 1u64 << (s % 64);
                    trace = self.push_trace(op, trace);
                }
                Step::Illegal
                    if self.prunable[op as usize] && !self.model.may_become_legal(&state, o) =>
                {
                    return false;
                }
                _ => {}
            }
        }
        let hash = self.hash(&state, &lin);
        let heap = self.model.heap_bytes(&state);
        self.set.insert(hash, state, &lin, &used, trace, heap)
    }

    /// Whether one of (at most 64) live configurations' traces uses no op twice: then it is
    /// a legal order respecting real time that places every returned op, a linearization.
    fn has_real_trace(&self) -> bool {
        let mut seen = vec![false; self.ops.len()];
        let live = (0..self.set.trace.len()).filter(|&i| !self.set.dead[i]);
        for i in live.take(64) {
            seen.iter_mut().for_each(|s| *s = false);
            let mut t = self.set.trace[i];
            let mut real = true;
            while t != NIL {
                let op = self.trace_op[t as usize] as usize;
                if std::mem::replace(&mut seen[op], true) {
                    real = false;
                    break;
                }
                t = self.trace_parent[t as usize];
            }
            if real {
                return true;
            }
        }
        false
    }

    /// The longest trace among the configurations before the return of `blocker` emptied
    /// the set.
    fn counterexample(&self, last: &Configs<M::State>, blocker: u32) -> Counterexample {
        // The longest of (at most) the first 64 live configurations' linearizations: walking
        // every trace could cost frontier size × history length.
        let mut best: Vec<u32> = Vec::new();
        let live = (0..last.trace.len()).filter(|&i| !last.dead[i]).take(64);
        for i in live {
            let mut prefix = Vec::new();
            let mut t = last.trace[i];
            while t != NIL {
                prefix.push(self.trace_op[t as usize]);
                t = self.trace_parent[t as usize];
            }
            if best.is_empty() || prefix.len() > best.len() {
                best = prefix;
            }
        }
        best.reverse();
        // The relaxation may use an info op twice: keep the real part, up to the repeat.
        let mut in_prefix = vec![false; self.ops.len()];
        let mut real = best.len();
        for (i, &op) in best.iter().enumerate() {
            if std::mem::replace(&mut in_prefix[op as usize], true) {
                real = i;
                break;
            }
        }
        best.truncate(real);
        in_prefix.iter_mut().for_each(|x| *x = false);
        for &op in &best {
            in_prefix[op as usize] = true;
        }
        let bound = self.ops[blocker as usize].ret.expect("a definite op");
        let pending = (0..self.ops.len() as u32)
            .filter(|&op| {
                !in_prefix[op as usize] && op != blocker && self.ops[op as usize].call <= bound
            })
            .collect();
        Counterexample {
            prefix: best,
            blocker,
            pending,
        }
    }
}
