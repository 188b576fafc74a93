//! Porcupine's kv model for one key with a *concrete* string state: the model checks use
//! when a history appends some text more than once (see [`crate::models::Kv`], whose
//! symbolic states would tell apart appends of one text that a string cannot).
//!
//! Appended strings grow long, and the search steps the model millions of times, so a
//! state is not a `String`: it is a persistent list of the chunks appended since the last
//! put (newest first, shared between states), with its length and a polynomial hash kept
//! incrementally (`h(s + t) = h(s)·B^|t| + h(t)`). An append costs O(|t|), not O(|s|). A
//! get compares lengths first and then the text from the end, where concurrent appends
//! differ; two states are compared in full only when length and hash agree.

use super::kv::{self, poly_hash, Kv, BASE};
use crate::history::{Action, Op, Outcome, Value};
use crate::model::{Model, Step};
use std::sync::Arc;

/// One key of Porcupine's key/value store, states as strings. Every key starts as "".
#[derive(Debug, Clone, Default)]
pub struct KvString;

/// A chunk of text and the chunks before it.
#[derive(Debug)]
struct Chunk {
    text: Arc<str>,
    prev: Option<Arc<Chunk>>,
}

impl Drop for Chunk {
    // Iterative, so that dropping a long chain cannot overflow the stack.
    fn drop(&mut self) {
        let mut next = self.prev.take();
        while let Some(chunk) = next {
            match Arc::try_unwrap(chunk) {
                Ok(mut owned) => next = owned.prev.take(),
                Err(_) => break,
            }
        }
    }
}

/// The string a key holds.
#[derive(Debug, Clone, Default)]
pub struct KvStringState {
    len: usize,
    hash: u64,
    last: Option<Arc<Chunk>>,
}

fn base_pow(mut n: usize) -> u64 {
    let (mut result, mut base) = (1u64, BASE);
    while n > 0 {
        if n & 1 == 1 {
            result = result.wrapping_mul(base);
        }
        base = base.wrapping_mul(base);
        n >>= 1;
    }
    result
}

impl KvStringState {
    fn chunks(&self) -> impl Iterator<Item = &str> {
        std::iter::successors(self.last.as_deref(), |c| c.prev.as_deref()).map(|c| &*c.text)
    }

    /// The whole string (for reports).
    pub fn text(&self) -> String {
        let mut parts: Vec<&str> = self.chunks().collect();
        parts.reverse();
        parts.concat()
    }

    fn put(text: Arc<str>) -> Self {
        KvStringState {
            len: text.len(),
            hash: poly_hash(text.as_bytes()),
            last: (!text.is_empty()).then(|| Arc::new(Chunk { text, prev: None })),
        }
    }

    fn append(&self, text: Arc<str>) -> Self {
        if text.is_empty() {
            return self.clone();
        }
        KvStringState {
            len: self.len + text.len(),
            hash: self
                .hash
                .wrapping_mul(base_pow(text.len()))
                .wrapping_add(poly_hash(text.as_bytes())),
            last: Some(Arc::new(Chunk {
                text,
                prev: self.last.clone(),
            })),
        }
    }

    /// Whether this state is a prefix of `s`.
    fn is_prefix_of(&self, s: &str) -> bool {
        if self.len > s.len() {
            return false;
        }
        let mut rest = &s.as_bytes()[..self.len];
        for chunk in self.chunks() {
            let Some(head) = rest.strip_suffix(chunk.as_bytes()) else {
                return false;
            };
            rest = head;
        }
        rest.is_empty()
    }

    /// Whether this state holds exactly `s`, comparing from the end.
    fn holds(&self, s: &str) -> bool {
        if self.len != s.len() {
            return false;
        }
        let mut rest = s.as_bytes();
        for chunk in self.chunks() {
            let Some(head) = rest.strip_suffix(chunk.as_bytes()) else {
                return false;
            };
            rest = head;
        }
        rest.is_empty()
    }
}

impl PartialEq for KvStringState {
    fn eq(&self, other: &Self) -> bool {
        if self.len != other.len || self.hash != other.hash {
            return false;
        }
        let (mut a, mut b) = (self.last.as_deref(), other.last.as_deref());
        let (mut a_text, mut b_text): (&[u8], &[u8]) = (&[], &[]);
        loop {
            // Shared history: the rest is the same chunks.
            if a_text.is_empty() && b_text.is_empty() {
                match (a, b) {
                    (Some(x), Some(y)) if std::ptr::eq(x, y) => return true,
                    (None, None) => return true,
                    _ => {}
                }
            }
            if a_text.is_empty() {
                let Some(c) = a else {
                    return b_text.is_empty() && b.is_none();
                };
                a_text = c.text.as_bytes();
                a = c.prev.as_deref();
            }
            if b_text.is_empty() {
                let Some(c) = b else { return false };
                b_text = c.text.as_bytes();
                b = c.prev.as_deref();
            }
            let n = a_text.len().min(b_text.len());
            if a_text[a_text.len() - n..] != b_text[b_text.len() - n..] {
                return false;
            }
            a_text = &a_text[..a_text.len() - n];
            b_text = &b_text[..b_text.len() - n];
        }
    }
}

impl Eq for KvStringState {}

/// The text a value stands for (nil is the empty string), as in [`Kv`].
fn text(v: &Value) -> Arc<str> {
    kv::text(v).0
}

impl Model for KvString {
    type State = KvStringState;

    fn name(&self) -> &'static str {
        "kv"
    }

    fn init(&self) -> KvStringState {
        KvStringState::default()
    }

    fn step(&self, state: &KvStringState, op: &Op) -> Step<KvStringState> {
        match (&op.action, &op.outcome) {
            (Action::Get, Outcome::Read(v)) => {
                let same = match v {
                    Value::Str(s) => state.holds(s),
                    Value::Nil => state.len == 0,
                    Value::Int(_) => state.holds(&text(v)),
                };
                if same {
                    Step::Same
                } else {
                    Step::Illegal
                }
            }
            (Action::Get, _) => Step::Same,
            (Action::Put(v), _) => Step::Next(KvStringState::put(text(v))),
            (Action::Append(v), _) => Step::Next(state.append(text(v))),
            _ => Step::Illegal,
        }
    }

    fn hash(&self, state: &KvStringState) -> u64 {
        state.hash ^ (state.len as u64).rotate_left(32)
    }

    fn describe(&self, state: &KvStringState) -> String {
        format!("{:?}", state.text())
    }

    // The ops and what they mean are [`Kv`]'s; only the state differs.
    fn supports(&self, action: &Action) -> bool {
        Kv.supports(action)
    }

    fn overwrites_or_observes(&self, op: &Op) -> bool {
        Kv.overwrites_or_observes(op)
    }

    /// Appends only extend the string: a get can become legal only if the state is a prefix
    /// of what it read.
    fn may_become_legal(&self, state: &KvStringState, read: &Op) -> bool {
        match (&read.action, &read.outcome) {
            (Action::Get, Outcome::Read(v)) => state.is_prefix_of(&text(v)),
            _ => true,
        }
    }

    fn resets(&self, op: &Op) -> bool {
        Kv.resets(op)
    }

    /// The newest chunk (the rest is shared with the state it was appended to).
    fn heap_bytes(&self, state: &KvStringState) -> usize {
        state
            .last
            .as_ref()
            .map_or(0, |c| 2 * 16 + std::mem::size_of::<Chunk>() + c.text.len())
    }

    fn may_become_legal_after(&self, reset: &Op, read: &Op) -> bool {
        Kv.may_become_legal_after(reset, read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Arc<str> {
        Arc::from(x)
    }

    #[test]
    fn appended_states_equal_the_same_string_built_differently() {
        let a = KvStringState::put(s("ab")).append(s("cd")).append(s("e"));
        let b = KvStringState::put(s("a")).append(s("bcde"));
        let c = KvStringState::put(s("abcdf"));
        assert_eq!(a, b);
        assert_eq!(a.hash, b.hash);
        assert_ne!(a, c);
        assert!(a.holds("abcde"));
        assert!(!a.holds("abcdx"));
        assert!(!a.holds("abcd"));
        assert!(a.is_prefix_of("abcde") && a.is_prefix_of("abcdefg"));
        assert!(!a.is_prefix_of("abcd") && !a.is_prefix_of("abXdef"));
        assert!(KvStringState::default().is_prefix_of(""));
        assert_eq!(a.text(), "abcde");
        assert_eq!(KvStringState::default(), KvStringState::put(s("")));
    }

    #[test]
    fn a_long_chain_drops_without_overflowing_the_stack() {
        let mut state = KvStringState::default();
        for _ in 0..1_000_000 {
            state = state.append(s("x"));
        }
        assert_eq!(state.len, 1_000_000);
        drop(state);
    }
}
