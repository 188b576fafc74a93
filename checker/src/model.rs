//! The sequential specification a history is checked against.
//!
//! A model is a pure state machine: an initial state and a `step` that says whether an op
//! is legal in a state and, if so, the state after it. The search never mutates a state; it
//! keeps the old one on its backtracking stack and moves the new one in, so `step` should
//! build a new state only when the op changes something ([`Step::Same`] otherwise).

use crate::history::{Action, Op};

/// What applying an op to a state gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<S> {
    /// The op cannot have happened in this state (e.g. a read of another value).
    Illegal,
    /// Legal, and the state is unchanged (reads, failed compares): nothing is cloned.
    Same,
    /// Legal, and this is the new state.
    Next(S),
}

/// A sequential specification.
pub trait Model: Sync {
    /// A state. `Eq` decides memo hits, so two states that behave alike should be equal.
    type State: Clone + Eq + Send + Sync;

    /// The model's name as `--model` spells it.
    fn name(&self) -> &'static str;
    fn init(&self) -> Self::State;
    fn step(&self, state: &Self::State, op: &Op) -> Step<Self::State>;
    /// A hash consistent with `Eq`; the memo compares states only when hashes match.
    fn hash(&self, state: &Self::State) -> u64;
    /// How a state prints in reports.
    fn describe(&self, state: &Self::State) -> String;
    /// Whether the model knows this kind of op (checked before the search starts).
    fn supports(&self, action: &Action) -> bool;

    /// For a read that is illegal in `state`: could it become legal after more ops, none of
    /// which [`resets`](Model::resets) the state? `false` lets the search give up on a node
    /// at once (e.g. kv: appends only extend a string, so a get of a string the state is not
    /// a prefix of stays illegal). The default, `true`, never prunes.
    fn may_become_legal(&self, _state: &Self::State, _read: &Op) -> bool {
        true
    }

    /// Whether an op can take the state somewhere [`may_become_legal`](Model::may_become_legal)
    /// did not account for (kv: a put).
    fn resets(&self, _op: &Op) -> bool {
        true
    }

    /// For a `reset` op: could `read` become legal some time after it (kv: the put's value is
    /// a prefix of what the get returned)? The default, `true`, never prunes.
    fn may_become_legal_after(&self, _reset: &Op, _read: &Op) -> bool {
        true
    }

    /// Whether linearizing `op` can leave a state in which a legal read *changes* the state
    /// (a write of an unknown value — an `info` roll — which the first read after it fixes).
    /// In a part holding such an op the search does not force legal reads, since taking a
    /// read then commits to a value. The default, `false`, keeps reads forced.
    fn leaves_state_unknown(&self, _op: &Op) -> bool {
        false
    }

    /// Whether `op` either observes or overwrites: when legal, it leaves the state unchanged
    /// (a read, a cas whose compare fails) or sets its object to a value that does not
    /// depend on the state before (a write, a successful cas, an `ok` roll), and it
    /// commutes with ops on other objects. If every op of a part does, the search
    /// linearizes info ops lazily — only right before an op they make legal (Lowe,
    /// "Testing for linearizability", 2017, §5 just-in-time linearization) — which cuts the
    /// 2^(info ops) speculative orders. `false` (the default) keeps the eager search; an
    /// op that is neither (kv append, an `info` roll) must say `false`.
    fn overwrites_or_observes(&self, _op: &Op) -> bool {
        false
    }

    /// Whether two ops are independent: in every state each is legal iff it is legal after
    /// the other, and applying them in either order reaches the same state (e.g. ops on
    /// different keys of a store). Unpartitioned checks split the history into components
    /// of ops connected by dependence and check each alone (Herlihy–Wing locality, see
    /// `split_independent` in lib.rs). The default, `false`, never splits.
    fn independent(&self, _a: &Op, _b: &Op) -> bool {
        false
    }

    /// Reorders a sequence of ops that is legal for this model (a prefix the search
    /// linearized) into one that is also legal for the concrete object the model stands
    /// for, respecting real time; returns indexes into `ops`. A model whose states stand
    /// for several concrete ones (kv: pending appends in any order, fixed by the next get)
    /// puts each group in the order that was observed, so a report replaying the result
    /// shows real states. The default keeps the order.
    fn concrete_order(&self, ops: &[&Op]) -> Vec<usize> {
        (0..ops.len()).collect()
    }

    /// Bytes a state owns on the heap beyond `size_of::<State>()` and not shared with other
    /// states, for the memory budget (e.g. `Keyed`'s per-key array). Default 0.
    fn heap_bytes(&self, _state: &Self::State) -> usize {
        0
    }
}

/// A 64-bit finalizer (MurmurHash3's): spreads the bits of a hash or an integer.
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Hashes any `Hash` value with the fast non-cryptographic Fx hasher.
pub fn fx_hash<T: std::hash::Hash + ?Sized>(value: &T) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    mix64(BuildHasherDefault::<rustc_hash::FxHasher>::default().hash_one(value))
}
