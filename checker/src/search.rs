//! The Wing–Gong–Lowe linearizability search, as Porcupine's `checker.go` does it.
//!
//! A history part is linearizable if its ops can be put in one sequential order that (a)
//! respects real time — an op whose return comes before another's call is ordered first —
//! and (b) is legal for the model, step by step. The search builds that order one op at a
//! time, depth first, and is explained by its data structures:
//!
//! - **Entries.** Every op has a *call entry* and, if it completed, a *return entry*; all
//!   entries are sorted by position (calls before returns at equal positions, see
//!   [`crate::history`]). An entry's index in that order is its rank.
//! - **The main list**, a doubly linked list over the entries of completed ("definite")
//!   ops. Its head is the earliest not-yet-linearized entry. The ops that may go next are
//!   exactly the call entries in front of the first return entry. Meeting a return entry
//!   means that op had to be linearized by now: nothing more can be tried at this node.
//! - **The info list** holds the call entries of `info` / never-completed ops. They have no
//!   return entry: such an op may take effect at any time after its call, or never — and
//!   "never" needs no branch of its own, because an op that is never linearized is simply
//!   left out when every definite op has been placed. They are tried only after every
//!   definite candidate has failed, and only if their call comes before the first return
//!   of the main list (rank below the *bound*).
//! - **Lift / unlift.** Linearizing an op removes (lifts) its entries from the lists;
//!   backtracking puts them back (unlift) in reverse order, dancing-links style: a removed
//!   entry keeps its own links, so reinsertion is O(1) and the scan resumes right after it.
//! - **The stack** of linearized ops, each with the state before it (moved, not cloned;
//!   `None` when the op left the state unchanged) and how it was chosen.
//! - **The memo** of nodes already explored: (linearized set, state). Reaching the same set
//!   in the same state again can only repeat work, so that branch is cut. The set is two
//!   bitsets, definite ops and info ops. The hash covers the definite bitset (kept
//!   incrementally, Zobrist-style: XOR of one random word per linearized op) and the
//!   state's hash; bitsets and states are compared only when hashes match. Entries live in
//!   flat arenas.
//!
//! Four cuts on top of Porcupine's search, each sound because it only skips nodes from which
//! no valid order exists, or whose success would imply the success of a node explored anyway:
//! - **Reads first, and forced.** A read that is legal now leaves the state as it is, and
//!   any valid order that puts it later stays valid with it moved here (nothing it must
//!   follow is still pending, or its call would come after a pending return). So at each
//!   node the search first looks for such a read; if there is one it is taken and nothing
//!   else is tried at that node: if the read's subtree fails, the node fails.
//! - **Info ops that change nothing are not tried** (e.g. an unknown cas whose compare
//!   fails): taking one is the same as never taking it.
//! - **Info ops are subsumed.** Linearizing fewer info ops never hurts, since the rest can
//!   still happen later or never. So a node (definite set D, info set I, state s) is cut
//!   when the memo holds (D, I', s) with I' ⊆ I: the memo keeps, per (D, s), the info sets
//!   seen. Without this, k pending info ops multiply the nodes by up to 2^k.
//! - **Hopeless reads.** A read that is illegal now still has to be placed before its
//!   return. If the model says it cannot become legal without a reset
//!   ([`Model::may_become_legal`]) and none of the ops that may still go before that return
//!   is a reset of its key after which it could ([`Model::resets`],
//!   [`Model::may_become_legal_after`]), the node is a dead end at once. For kv (appends only
//!   extend a string; a put helps only if its value starts the string read) this cuts every
//!   order of pending appends after a wrong one.
//!
//! - **Lazy info ops** (Lowe, "Testing for linearizability", 2017: just-in-time
//!   linearization), when every op of the part overwrites or observes
//!   ([`Model::overwrites_or_observes`]: registers, cas registers, kv without appends). An
//!   info op x is then only linearized if the op right after it is impossible in the state
//!   before x — one x makes legal (a definite op illegal there, or another info op whose
//!   compare needs x's value: illegal or a no-op there). Sound: in a valid order, an info op x followed by an op z legal before x
//!   can move past z (z observes: same states; z overwrites its object: x becomes a no-op
//!   and is dropped, or is on another object and commutes), an info op that changes nothing
//!   is dropped, and one left at the end is dropped; this ends (info ops only move later or
//!   vanish) in an order where every info op is followed by an op it makes legal, which the
//!   search covers. Forced reads stay sound: a forced read after x is one x makes legal. A
//!   node right after an info op carries that obligation, which the memo key does not
//!   hold, so it is neither recorded nor cut; nodes after definite ops are as before.
//!   Without this, proving a violation explores up to 2^(info ops) speculative orders.
//!
//! The search succeeds when every definite op is linearized. It fails when it has to
//! backtrack past the first op: every order died at some return entry. The deepest stack
//! seen at such a dead end is the longest linearizable prefix, and the op whose return
//! stopped it is the op that cannot be linearized.
//!
//! The search is a loop over an explicit cursor, so it can stop after any number of steps
//! and resume later: the scheduler time-slices many parts this way, and the deadline and
//! the cancel flag are checked inside the loop.

use crate::history::Op;
use crate::model::{mix64, Model, Step};
use hashbrown::HashTable;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

const NIL: u32 = u32::MAX;
/// Sentinel heads of the two lists; real entries start at index 2.
const MAIN_HEAD: u32 = 0;
const INFO_HEAD: u32 = 1;

/// Why a search stopped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    Deadline,
    MemoryLimit,
    Cancelled,
}

/// Why a part is not linearizable, as local op indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counterexample {
    /// The longest linearizable prefix found, in linearization order.
    pub prefix: Vec<u32>,
    /// The op whose return was reached with no way to linearize it (or what precedes it).
    pub blocker: u32,
    /// Ops called before the blocker returned and not in the prefix: the candidates that
    /// were all tried and failed after the prefix.
    pub pending: Vec<u32>,
}

/// The answer for one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchOutcome {
    Linearizable,
    NotLinearizable(Counterexample),
    /// No answer; `deepest` ops were linearized at the furthest point reached.
    GaveUp {
        reason: GiveUp,
        deepest: usize,
    },
}

/// Result of running a slice of the search.
#[derive(Debug)]
pub enum Progress {
    Finished(SearchOutcome),
    Paused,
}

/// Limits shared by all parts of one check.
pub struct Limits<'a> {
    pub deadline: Option<Instant>,
    pub cancel: &'a AtomicBool,
    /// Memo bytes held by all running searches together, and the most allowed.
    pub memo_bytes: &'a AtomicUsize,
    pub memo_budget: usize,
}

impl Limits<'_> {
    pub(crate) fn exceeded(&self) -> Option<GiveUp> {
        if self.cancel.load(Ordering::Relaxed) {
            Some(GiveUp::Cancelled)
        } else if self.deadline.is_some_and(|d| Instant::now() >= d) {
            Some(GiveUp::Deadline)
        } else if self.memo_bytes.load(Ordering::Relaxed) > self.memo_budget {
            Some(GiveUp::MemoryLimit)
        } else {
            None
        }
    }
}

/// Where the scan stands.
#[derive(Debug, Clone, Copy)]
enum Cursor {
    /// Phase 1 at a node: looking in the main list for a read that is legal now.
    Reads(u32),
    /// Phase 2: trying the ops that change the state, from this main-list entry.
    Main(u32),
    /// Phase 3: trying info ops from this info-list entry (NIL: exhausted); `bound` is the
    /// first return entry of the main list, which info calls must precede.
    Info { entry: u32, bound: u32 },
    /// The node is a dead end: pop the stack.
    Backtrack,
}

/// How the op on a stack frame was chosen, which decides what to try after it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    /// A legal read taken in phase 1: if it fails, the whole node fails.
    Forced,
    /// From the main list: continue with the next main-list entry.
    Main,
    /// From the info list under this bound.
    Info { bound: u32 },
}

/// What trying one op gave.
enum Attempt {
    Taken,
    Illegal,
    /// Legal, but the resulting (linearized set, state) was explored before.
    Seen,
    /// A read that is legal only by changing the state (fixing an unknown value): not
    /// forced in phase 1.
    NotForcible,
    /// Legal, but in lazy mode it does not use the info op just taken (legal before it too).
    Barred,
}

struct Frame<S> {
    entry: u32,
    choice: Choice,
    /// The state before this op, or `None` if the op did not change it.
    previous: Option<S>,
}

/// Explored nodes: per (definite bitset, state), the info sets seen with it.
struct Memo<S> {
    /// (hash of (definite bitset, state), index of its node key): the hash sits in the
    /// table so probes and growth never touch the arenas.
    table: HashTable<(u64, u32)>,
    /// Definite bitsets, `def_words` each.
    def_bits: Vec<u64>,
    states: Vec<S>,
    /// First info set of each node key (index into `info_next`), NIL-terminated list.
    info_first: Vec<u32>,
    /// Info sets, `info_words` each, and the next one of the same node key.
    info_bits: Vec<u64>,
    info_next: Vec<u32>,
    def_words: usize,
    info_words: usize,
    /// Bytes of arena and table capacity, and of states' own heap, added to the shared
    /// counter (`Limits::memo_bytes`).
    reported: usize,
    /// States' heap bytes, all of them and at the last report (reported in 1 MiB chunks).
    heap: usize,
    heap_reported: usize,
}

/// What recording a node gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Insert {
    New,
    /// It, or one with a subset of its info ops, was there.
    Seen,
    /// Recording it would take the memo past the memory budget.
    OverBudget,
}

/// Bytes a vector would allocate to make room for `extra` more elements (0 if it has room):
/// it doubles, as `Vec` does, and reserving exactly that keeps the figure true.
fn growth<T>(v: &Vec<T>, extra: usize) -> usize {
    if v.len() + extra <= v.capacity() {
        0
    } else {
        (v.capacity() * 2).max(v.len() + extra).max(1024) * std::mem::size_of::<T>()
    }
}

/// Makes room for `extra` elements exactly as [`growth`] counted; `false` if the allocator
/// refuses (never an abort).
fn reserve<T>(v: &mut Vec<T>, extra: usize) -> bool {
    if v.len() + extra <= v.capacity() {
        return true;
    }
    let target = (v.capacity() * 2).max(v.len() + extra).max(1024);
    v.try_reserve_exact(target - v.len()).is_ok()
}

impl<S: Eq + Clone> Memo<S> {
    fn new(def_words: usize, info_words: usize) -> Self {
        Memo {
            table: HashTable::new(),
            def_bits: Vec::new(),
            states: Vec::new(),
            info_first: Vec::new(),
            info_bits: Vec::new(),
            info_next: Vec::new(),
            def_words,
            info_words,
            reported: 0,
            heap: 0,
            heap_reported: 0,
        }
    }

    /// Bytes the arenas and the table hold now (capacities: what is really allocated).
    fn capacity_bytes(&self) -> usize {
        self.def_bits.capacity() * 8
            + self.states.capacity() * std::mem::size_of::<S>()
            + self.info_first.capacity() * 4
            + self.info_next.capacity() * 4
            + self.info_bits.capacity() * 8
            + table_bytes(self.table.capacity())
    }

    /// Records the node unless it, or one with a subset of its info ops, was there. Every
    /// allocation is checked against the budget *before* it is made — the new buffer of a
    /// doubling vector or table is counted while the old one still exists — so the memo
    /// never passes `limits.memo_budget`, and an allocation failure is `OverBudget`, not
    /// an abort. `heap` is what the state owns on the heap beyond its own size.
    fn insert_if_new(
        &mut self,
        hash: u64,
        def: &[u64],
        info: &[u64],
        state: &S,
        heap: usize,
        limits: &Limits,
    ) -> Insert {
        let (dw, iw) = (self.def_words, self.info_words);
        let Memo {
            table,
            def_bits,
            states,
            ..
        } = self;
        let found = table
            .find(hash, |&(h, k)| {
                let k = k as usize;
                h == hash && def_bits[k * dw..(k + 1) * dw] == *def && states[k] == *state
            })
            .map(|&(_, k)| k);
        if let Some(k) = found {
            let mut n = self.info_first[k as usize];
            while n != NIL {
                let seen = &self.info_bits[n as usize * iw..(n as usize + 1) * iw];
                if seen.iter().zip(info).all(|(s, i)| s & !i == 0) {
                    return Insert::Seen;
                }
                n = self.info_next[n as usize];
            }
        }
        // Room first, then the insert.
        let mut needed = growth(&self.info_bits, iw) + growth(&self.info_next, 1);
        let new_key = found.is_none();
        if new_key {
            needed += growth(&self.def_bits, dw)
                + growth(&self.states, 1)
                + growth(&self.info_first, 1)
                + heap;
            if self.table.len() == self.table.capacity() {
                needed += table_bytes((self.table.capacity() * 2).max(64));
            }
        }
        if needed > 0 {
            let used = limits.memo_bytes.load(Ordering::Relaxed);
            if used + needed > limits.memo_budget {
                return Insert::OverBudget;
            }
            let ok = reserve(&mut self.info_bits, iw)
                && reserve(&mut self.info_next, 1)
                && (!new_key
                    || (reserve(&mut self.def_bits, dw)
                        && reserve(&mut self.states, 1)
                        && reserve(&mut self.info_first, 1)
                        && self.table.try_reserve(1, |&(h, _)| h).is_ok()));
            if !ok {
                return Insert::OverBudget;
            }
        }
        let info_node = self.info_next.len() as u32;
        match found {
            Some(k) => {
                self.info_next.push(self.info_first[k as usize]);
                self.info_first[k as usize] = info_node;
            }
            None => {
                let k = self.states.len() as u32;
                self.def_bits.extend_from_slice(def);
                self.states.push(state.clone());
                self.table.insert_unique(hash, (hash, k), |&(h, _)| h);
                self.info_first.push(info_node);
                self.info_next.push(NIL);
                self.heap += heap;
            }
        }
        self.info_bits.extend_from_slice(info);
        if needed > 0 || self.heap - self.heap_reported > 1 << 20 {
            let now = self.capacity_bytes() + self.heap;
            self.heap_reported = self.heap;
            if now > self.reported {
                limits
                    .memo_bytes
                    .fetch_add(now - self.reported, Ordering::Relaxed);
                self.reported = now;
            }
        }
        Insert::New
    }

    fn len(&self) -> usize {
        self.info_next.len()
    }

    fn release(&mut self, shared: &AtomicUsize) {
        shared.fetch_sub(self.reported, Ordering::Relaxed);
        self.reported = 0;
    }
}

/// Bytes of a hashbrown table of `capacity` entries: (u64, u32) slots padded to 16 bytes
/// and one control byte each, over buckets = capacity · 8/7.
fn table_bytes(capacity: usize) -> usize {
    capacity * 8 / 7 * (std::mem::size_of::<(u64, u32)>() + 1)
}

/// One part's search, resumable.
pub struct Search<'a, M: Model> {
    model: &'a M,
    ops: Vec<&'a Op>,
    /// Per entry: its op, and for a definite call the index of its return entry.
    entry_op: Vec<u32>,
    entry_match: Vec<u32>,
    entry_is_return: Vec<bool>,
    /// Links of both lists (an entry is in exactly one).
    next: Vec<u32>,
    prev: Vec<u32>,
    /// Per op: the entry of its call.
    call_entry: Vec<u32>,
    /// Per op: a read (changes no state), tried first and forced when legal.
    read_only: Vec<bool>,
    /// Some op of the part can leave the state unknown ([`Model::leaves_state_unknown`]), so
    /// a legal read may change the state: reads are then also tried in phase 2.
    binding_reads: bool,
    /// Lazy info ops (every op of the part overwrites or observes, see
    /// [`Model::overwrites_or_observes`]): an info op is only linearized right before an op
    /// it makes legal, which must come next (see the module docs).
    lazy: bool,
    /// Per info op: the previous info op (in call order) identical to it — same key, same
    /// action — or NIL. Identical pending ops are interchangeable, so the search treats a
    /// class as a multiset: it takes a class's members in call order only (a member waits
    /// until the one before it is linearized), and the linearized members of a class are
    /// always a prefix of it, so the info bitset is a count per class. Sound: in any valid
    /// order using m members, the first m by call can take their places (the k-th placed
    /// one is placed after at least k members' calls).
    class_prev: Vec<u32>,
    /// Per op: its bit in the definite or the info bitset, and its Zobrist word (0 for info
    /// ops, which the memo compares by subset instead).
    bit: Vec<u32>,
    zobrist: Vec<u64>,
    definite_set: Vec<u64>,
    info_set: Vec<u64>,
    definite_hash: u64,
    definite: usize,
    lifted_definite: usize,
    state: M::State,
    stack: Vec<Frame<M::State>>,
    cursor: Cursor,
    memo: Memo<M::State>,
    best: Option<(Vec<u32>, u32)>,
    deepest: usize,
    steps: u64,
    /// The memo could not record a node within the memory budget.
    out_of_memory: bool,
}

impl<'a, M: Model> Search<'a, M> {
    pub fn new(model: &'a M, ops: Vec<&'a Op>) -> Self {
        assert!(ops.len() < (u32::MAX / 2 - 2) as usize, "part too large");
        // (position, call before return, op): the real-time order of entries.
        let mut order: Vec<(u64, bool, u32)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            order.push((op.call, false, i as u32));
            if let Some(ret) = op.ret {
                order.push((ret, true, i as u32));
            }
        }
        order.sort_unstable();
        let n = order.len() + 2;
        let mut entry_op = vec![NIL; n];
        let mut entry_match = vec![NIL; n];
        let mut entry_is_return = vec![false; n];
        let mut call_entry = vec![NIL; ops.len()];
        let mut next = vec![NIL; n];
        let mut prev = vec![NIL; n];
        let (mut main_tail, mut info_tail) = (MAIN_HEAD, INFO_HEAD);
        for (rank, &(_, is_return, op)) in order.iter().enumerate() {
            let e = rank as u32 + 2;
            entry_op[e as usize] = op;
            entry_is_return[e as usize] = is_return;
            let tail = if is_return {
                entry_match[call_entry[op as usize] as usize] = e;
                &mut main_tail
            } else {
                call_entry[op as usize] = e;
                if ops[op as usize].is_definite() {
                    &mut main_tail
                } else {
                    &mut info_tail
                }
            };
            next[*tail as usize] = e;
            prev[e as usize] = *tail;
            *tail = e;
        }
        let (mut definite, mut info) = (0u32, 0u32);
        let mut bit = Vec::with_capacity(ops.len());
        let mut zobrist = Vec::with_capacity(ops.len());
        for op in &ops {
            if op.is_definite() {
                bit.push(definite);
                zobrist.push(mix64(
                    u64::from(definite).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5151,
                ));
                definite += 1;
            } else {
                bit.push(info);
                zobrist.push(0);
                info += 1;
            }
        }
        let mut class_prev = vec![NIL; ops.len()];
        {
            let mut last_of_class: rustc_hash::FxHashMap<
                (Option<u32>, &crate::history::Action),
                u32,
            > = Default::default();
            // Call entries are in call order, so walking the info list visits each class in
            // call order.
            let mut e = next[INFO_HEAD as usize];
            while e != NIL {
                let op = entry_op[e as usize];
                let o = ops[op as usize];
                if let Some(prev) = last_of_class.insert((o.key, &o.action), op) {
                    if ops[prev as usize].outcome == o.outcome {
                        class_prev[op as usize] = prev;
                    }
                }
                e = next[e as usize];
            }
        }
        let binding_reads = ops.iter().any(|o| model.leaves_state_unknown(o));
        let lazy = ops.iter().all(|o| model.overwrites_or_observes(o));
        let def_words = (definite as usize).div_ceil(64);
        let info_words = (info as usize).div_ceil(64);
        Search {
            model,
            state: model.init(),
            cursor: Cursor::Reads(next[MAIN_HEAD as usize]),
            read_only: ops.iter().map(|o| o.action.is_read_only()).collect(),
            binding_reads,
            lazy,
            class_prev,
            ops,
            entry_op,
            entry_match,
            entry_is_return,
            next,
            prev,
            call_entry,
            bit,
            zobrist,
            definite_set: vec![0; def_words],
            info_set: vec![0; info_words],
            definite_hash: 0,
            definite: definite as usize,
            lifted_definite: 0,
            stack: Vec::new(),
            memo: Memo::new(def_words, info_words),
            best: None,
            deepest: 0,
            steps: 0,
            out_of_memory: false,
        }
    }

    /// Steps run so far and nodes in the memo (for benchmarks and debugging).
    pub fn stats(&self) -> (u64, usize) {
        (self.steps, self.memo.len())
    }

    /// Runs at most about `budget` steps.
    pub fn run(&mut self, budget: u64, limits: &Limits) -> Progress {
        let mut steps = 0u64;
        if let Some(reason) = limits.exceeded() {
            return self.give_up(reason, limits);
        }
        loop {
            if self.lifted_definite == self.definite {
                self.memo.release(limits.memo_bytes);
                return Progress::Finished(SearchOutcome::Linearizable);
            }
            if self.out_of_memory {
                return self.give_up(GiveUp::MemoryLimit, limits);
            }
            steps += 1;
            if steps.is_multiple_of(1024) {
                self.steps += 1024;
                if let Some(reason) = limits.exceeded() {
                    return self.give_up(reason, limits);
                }
                if steps >= budget {
                    return Progress::Paused;
                }
            }
            self.cursor = match self.cursor {
                Cursor::Reads(e) if self.entry_is_return[e as usize] => {
                    Cursor::Main(self.next[MAIN_HEAD as usize])
                }
                Cursor::Reads(e) if !self.read_only[self.entry_op[e as usize] as usize] => {
                    Cursor::Reads(self.next[e as usize])
                }
                Cursor::Reads(e) => {
                    match self.try_linearize(e, Choice::Forced, limits) {
                        Attempt::Taken => Cursor::Reads(self.next[MAIN_HEAD as usize]),
                        // Legal, but it would fix an unknown value: tried in phase 2.
                        Attempt::NotForcible => Cursor::Reads(self.next[e as usize]),
                        Attempt::Illegal if self.read_is_hopeless(self.entry_match[e as usize]) => {
                            self.note_dead_end(self.entry_match[e as usize]);
                            Cursor::Backtrack
                        }
                        Attempt::Illegal | Attempt::Barred => Cursor::Reads(self.next[e as usize]),
                        // The node after this read was a dead end, so this node is one too.
                        Attempt::Seen => Cursor::Backtrack,
                    }
                }
                Cursor::Main(e) if self.entry_is_return[e as usize] => Cursor::Info {
                    entry: self.next[INFO_HEAD as usize],
                    bound: e,
                },
                // Phase 1 found every read here illegal (or, with unknown values about,
                // legal only by fixing one: those are tried like any other op).
                Cursor::Main(e)
                    if self.read_only[self.entry_op[e as usize] as usize]
                        && !self.binding_reads =>
                {
                    Cursor::Main(self.next[e as usize])
                }
                Cursor::Main(e) => match self.try_linearize(e, Choice::Main, limits) {
                    Attempt::Taken => Cursor::Reads(self.next[MAIN_HEAD as usize]),
                    _ => Cursor::Main(self.next[e as usize]),
                },
                // Identical info ops are one class, taken in call order (see `class_prev`).
                Cursor::Info { entry, bound }
                    if entry != NIL && entry < bound && !self.waits_for_its_class(entry) =>
                {
                    match self.try_linearize(entry, Choice::Info { bound }, limits) {
                        Attempt::Taken => Cursor::Reads(self.next[MAIN_HEAD as usize]),
                        _ => Cursor::Info {
                            entry: self.next[entry as usize],
                            bound,
                        },
                    }
                }
                Cursor::Info { entry, bound } if entry != NIL && entry < bound => Cursor::Info {
                    entry: self.next[entry as usize],
                    bound,
                },
                Cursor::Info { bound, .. } => {
                    // Dead end: the op of `bound` must be linearized by now and nothing fits.
                    self.note_dead_end(bound);
                    Cursor::Backtrack
                }
                Cursor::Backtrack => {
                    let Some(frame) = self.stack.pop() else {
                        self.memo.release(limits.memo_bytes);
                        return Progress::Finished(SearchOutcome::NotLinearizable(
                            self.counterexample(),
                        ));
                    };
                    if let Some(previous) = frame.previous {
                        self.state = previous;
                    }
                    self.unlift(frame.entry);
                    let after = self.next[frame.entry as usize];
                    match frame.choice {
                        Choice::Forced => Cursor::Backtrack,
                        Choice::Main => Cursor::Main(after),
                        Choice::Info { bound } => Cursor::Info {
                            entry: after,
                            bound,
                        },
                    }
                }
            };
        }
    }

    /// For a read that is illegal now, with return entry `r`: if the model says the read
    /// cannot become legal without a reset, and no op that may still be linearized before
    /// `r` (called before it and not yet linearized) is a reset of the read's key after which
    /// it could, the node is a dead end: the read has to be placed before `r` and nothing
    /// can make it fit.
    fn read_is_hopeless(&self, r: u32) -> bool {
        let read = self.ops[self.entry_op[r as usize] as usize];
        if !read.action.is_read_only() || self.model.may_become_legal(&self.state, read) {
            return false;
        }
        let resets = |e: u32| {
            let op = self.ops[self.entry_op[e as usize] as usize];
            op.key == read.key
                && self.model.resets(op)
                && self.model.may_become_legal_after(op, read)
        };
        let mut e = self.next[MAIN_HEAD as usize];
        while e != r {
            if !self.entry_is_return[e as usize] && resets(e) {
                return false;
            }
            e = self.next[e as usize];
        }
        let mut e = self.next[INFO_HEAD as usize];
        while e != NIL && e < r {
            if resets(e) {
                return false;
            }
            e = self.next[e as usize];
        }
        true
    }

    /// Whether the info op of call entry `e` has an identical op called before it that is
    /// not linearized yet (then that one is taken first, see `class_prev`).
    fn waits_for_its_class(&self, e: u32) -> bool {
        let prev = self.class_prev[self.entry_op[e as usize] as usize];
        if prev == NIL {
            return false;
        }
        let bit = self.bit[prev as usize];
        self.info_set[bit as usize / 64] & (1u64 << (bit % 64)) == 0
    }

    fn give_up(&mut self, reason: GiveUp, limits: &Limits) -> Progress {
        self.memo.release(limits.memo_bytes);
        Progress::Finished(SearchOutcome::GaveUp {
            reason,
            deepest: self.deepest,
        })
    }

    /// Adds an op to the linearized sets, or removes it.
    fn flip(&mut self, op: usize) {
        flip(
            &mut self.definite_set,
            &mut self.info_set,
            &mut self.definite_hash,
            self.ops[op].is_definite(),
            self.bit[op],
            self.zobrist[op],
        );
    }

    /// In lazy mode, right after an info op: the state before it. The next op must be
    /// illegal there — one the info op made legal — or the info op was not needed here.
    fn obligation(&self) -> Option<&M::State> {
        match self.stack.last() {
            Some(Frame {
                choice: Choice::Info { .. },
                previous,
                ..
            }) if self.lazy => previous.as_ref(),
            _ => None,
        }
    }

    /// Tries to linearize the op of call entry `e` next; if taken it is lifted and pushed.
    fn try_linearize(&mut self, e: u32, choice: Choice, limits: &Limits) -> Attempt {
        let op = self.entry_op[e as usize] as usize;
        let step = self.model.step(&self.state, self.ops[op]);
        let next_state = match &step {
            Step::Illegal => return Attempt::Illegal,
            Step::Next(_) if choice == Choice::Forced => return Attempt::NotForcible,
            // An info op that changes nothing here is the same as never happening, which
            // the search already covers by leaving it out.
            Step::Same if matches!(choice, Choice::Info { .. }) => return Attempt::Illegal,
            Step::Same => &self.state,
            Step::Next(s) => s,
        };
        if let Some(before) = self.obligation() {
            // An info op that would change nothing before is not possible there either (it
            // would be left out), so it too needs the info op just taken.
            let possible_before = match self.model.step(before, self.ops[op]) {
                Step::Illegal => false,
                Step::Same => self.ops[op].is_definite(),
                Step::Next(_) => true,
            };
            if possible_before {
                return Attempt::Barred;
            }
        }
        let (definite, bit, zobrist) = (self.ops[op].is_definite(), self.bit[op], self.zobrist[op]);
        let sets = (
            &mut self.definite_set,
            &mut self.info_set,
            &mut self.definite_hash,
        );
        flip(sets.0, sets.1, sets.2, definite, bit, zobrist);
        // In lazy mode the node after an info op carries an obligation the memo key does not
        // hold, so it is not recorded (nor cut): only nodes after a definite op are.
        if definite || !self.lazy {
            let hash = *sets.2 ^ mix64(self.model.hash(next_state));
            let heap = self.model.heap_bytes(next_state);
            match self
                .memo
                .insert_if_new(hash, sets.0, sets.1, next_state, heap, limits)
            {
                Insert::New => {}
                Insert::Seen => {
                    flip(sets.0, sets.1, sets.2, definite, bit, zobrist);
                    return Attempt::Seen;
                }
                Insert::OverBudget => {
                    flip(sets.0, sets.1, sets.2, definite, bit, zobrist);
                    self.out_of_memory = true;
                    return Attempt::Seen;
                }
            }
        }
        let previous = match step {
            Step::Next(s) => Some(std::mem::replace(&mut self.state, s)),
            _ => None,
        };
        self.stack.push(Frame {
            entry: e,
            choice,
            previous,
        });
        self.deepest = self.deepest.max(self.stack.len());
        self.lift(e);
        Attempt::Taken
    }

    fn remove(&mut self, x: u32) {
        let (p, n) = (self.prev[x as usize], self.next[x as usize]);
        self.next[p as usize] = n;
        if n != NIL {
            self.prev[n as usize] = p;
        }
    }

    fn reinsert(&mut self, x: u32) {
        let (p, n) = (self.prev[x as usize], self.next[x as usize]);
        self.next[p as usize] = x;
        if n != NIL {
            self.prev[n as usize] = x;
        }
    }

    fn lift(&mut self, e: u32) {
        self.remove(e);
        let m = self.entry_match[e as usize];
        if m != NIL {
            self.remove(m);
            self.lifted_definite += 1;
        }
    }

    fn unlift(&mut self, e: u32) {
        self.flip(self.entry_op[e as usize] as usize);
        let m = self.entry_match[e as usize];
        if m != NIL {
            self.reinsert(m);
            self.lifted_definite -= 1;
        }
        self.reinsert(e);
    }

    fn note_dead_end(&mut self, bound: u32) {
        let depth = self.stack.len();
        if self.best.as_ref().is_none_or(|(p, _)| depth > p.len()) {
            let prefix = self
                .stack
                .iter()
                .map(|f| self.entry_op[f.entry as usize])
                .collect();
            self.best = Some((prefix, bound));
        }
    }

    fn counterexample(&self) -> Counterexample {
        let (prefix, bound) = self.best.clone().expect("a failed search has a dead end");
        let mut in_prefix = vec![false; self.ops.len()];
        for &op in &prefix {
            in_prefix[op as usize] = true;
        }
        let pending = (0..self.ops.len() as u32)
            .filter(|&op| !in_prefix[op as usize] && self.call_entry[op as usize] < bound)
            .collect();
        Counterexample {
            prefix,
            blocker: self.entry_op[bound as usize],
            pending,
        }
    }
}

fn flip(
    definite_set: &mut [u64],
    info_set: &mut [u64],
    definite_hash: &mut u64,
    definite: bool,
    bit: u32,
    zobrist: u64,
) {
    let set = if definite { definite_set } else { info_set };
    set[bit as usize / 64] ^= 1u64 << (bit % 64);
    *definite_hash ^= zobrist;
}
