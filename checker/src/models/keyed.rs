//! A store of independent objects, one per key: the whole-history model used when per-key
//! partitioning is off (`--no-partition`).
//!
//! The state is one object state per key. A step changes one key, so the new state shares
//! every other key's state (cheap clones: register values and `Arc<str>` kv strings) and
//! its hash is updated incrementally by XOR-ing out the old key's share and in the new one.

use crate::history::{Action, Op};
use crate::model::{mix64, Model, Step};

/// `inner` applied to each key of a store with `keys` keys.
#[derive(Debug, Clone)]
pub struct Keyed<M> {
    pub inner: M,
    pub keys: Vec<String>,
}

/// One state per key, shared (`Arc`) so that the memo and the backtracking stack hold a
/// state for the price of a reference count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedState<S> {
    hash: u64,
    objects: std::sync::Arc<[S]>,
}

impl<M: Model> Keyed<M> {
    fn share(&self, key: usize, state: &M::State) -> u64 {
        mix64(self.inner.hash(state) ^ mix64(key as u64 + 1))
    }
}

impl<M: Model> Model for Keyed<M> {
    type State = KeyedState<M::State>;

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn init(&self) -> Self::State {
        let objects: std::sync::Arc<[_]> = (0..self.keys.len().max(1))
            .map(|_| self.inner.init())
            .collect();
        let hash = objects
            .iter()
            .enumerate()
            .fold(0, |h, (k, s)| h ^ self.share(k, s));
        KeyedState { objects, hash }
    }

    fn step(&self, state: &Self::State, op: &Op) -> Step<Self::State> {
        let k = op.key.unwrap_or(0) as usize;
        match self.inner.step(&state.objects[k], op) {
            Step::Illegal => Step::Illegal,
            Step::Same => Step::Same,
            Step::Next(object) => {
                let hash = state.hash ^ self.share(k, &state.objects[k]) ^ self.share(k, &object);
                let mut objects = state.objects.to_vec();
                objects[k] = object;
                Step::Next(KeyedState {
                    objects: objects.into(),
                    hash,
                })
            }
        }
    }

    fn hash(&self, state: &Self::State) -> u64 {
        state.hash
    }

    fn describe(&self, state: &Self::State) -> String {
        let parts: Vec<String> = state
            .objects
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let name = self.keys.get(k).map_or("", String::as_str);
                format!("{name}: {}", self.inner.describe(s))
            })
            .collect();
        format!("{{{}}}", parts.join(", "))
    }

    fn supports(&self, action: &Action) -> bool {
        self.inner.supports(action)
    }

    fn may_become_legal(&self, state: &Self::State, read: &Op) -> bool {
        let k = read.key.unwrap_or(0) as usize;
        self.inner.may_become_legal(&state.objects[k], read)
    }

    fn resets(&self, op: &Op) -> bool {
        self.inner.resets(op)
    }

    fn may_become_legal_after(&self, reset: &Op, read: &Op) -> bool {
        self.inner.may_become_legal_after(reset, read)
    }

    /// Ops on different keys touch different objects of the store: independent.
    fn independent(&self, a: &Op, b: &Op) -> bool {
        a.key.unwrap_or(0) != b.key.unwrap_or(0)
    }

    /// Each key's object is the inner model's; the inner model sees ops of several keys
    /// (they carry their key).
    fn concrete_order(&self, ops: &[&Op]) -> Vec<usize> {
        self.inner.concrete_order(ops)
    }

    fn leaves_state_unknown(&self, op: &Op) -> bool {
        self.inner.leaves_state_unknown(op)
    }

    /// A step changes one key's object only, so an op that overwrites or observes its object
    /// does so for the store, and commutes with ops on other keys.
    fn overwrites_or_observes(&self, op: &Op) -> bool {
        self.inner.overwrites_or_observes(op)
    }

    /// The per-key array (shared by `Arc` with the search's stack, but owned by the memo
    /// once the search moves on), plus the Arc's counts.
    fn heap_bytes(&self, state: &Self::State) -> usize {
        16 + state.objects.len() * std::mem::size_of::<M::State>()
            + state
                .objects
                .iter()
                .map(|s| self.inner.heap_bytes(s))
                .sum::<usize>()
    }
}
