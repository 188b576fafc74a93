//! Porcupine's kv model for one key: a string with get, put and append, kept *symbolic*.
//!
//! Many clients appending to one key at once are this model's hard case: every order of
//! the appends linearized since the last get is a different string, so a search over
//! concrete strings meets each subset of them once per order (c50-bad's keys "0" and "9":
//! tens of millions of memo nodes). But no op can tell those orders apart until a get reads
//! the string. So a state is
//!
//! - **the base**: the string as last observed — the value of the last get or put
//!   linearized (or "" at the start), shared with the history, never copied — and
//! - **the pending appends**: the multiset of appends linearized since, each with its call
//!   and return positions and its text, kept as a persistent list (newest first, shared
//!   between states) with a count, a total length and a commutative hash (a sum of one
//!   hash per append), so that all orders of the same appends are *one* state.
//!
//! An append adds itself to the pending multiset; a put makes the state concrete again (its
//! value, nothing pending). A get of `s` is legal iff `s` is the base followed by the
//! pending appends' texts in some order that respects real time among them (`a` before
//! `b` when `a` returned before `b` was called), and leaves the state concrete: `s`,
//! nothing pending. With nothing pending a get is an ordinary read (`Step::Same`).
//!
//! **Exact.** Every state stands for the set of concrete strings `base + π(pending)` over
//! the orders π that respect real time among the pending appends, and the concrete search
//! reaches exactly those: the pending appends were linearized after the last observation
//! and before the next one, and any order of them that respects real time among them can
//! replace the one the search used (real-time precedence is an interval order, so a
//! constraint between two pending appends through an op outside them is a direct one
//! too). So a get is legal in the symbolic state iff it is legal in one of the concrete
//! states it stands for, and a history is linearizable under this model iff it is under
//! the concrete one (the brute-force property tests compare against a plain string model).
//! What changes is the search's shape: a get of a state with pending appends *chooses*
//! their order, so it is not a forced read ([`Model::leaves_state_unknown`]; the search
//! tries it as an ordinary op), and [`Model::concrete_order`] turns a linearized prefix
//! back into one whose appends are in the order their gets read.
//!
//! Checking a get is arranging the pending texts to spell the rest of `s`: a depth-first
//! search that at each position tries the *available* appends (no pending append returned
//! before its call) whose text continues `s` there — of several with the same text only
//! the one that returns first, an exchange argument — and remembers failed subsets when it
//! had to branch. Texts that are no prefix of one another (Porcupine's `"x 3 7 y"`) never
//! branch: the arrangement is found in one pass.

use crate::history::{Action, Op, Outcome, Value};
use crate::model::{mix64, Model, Step};
use std::sync::Arc;

/// One key of Porcupine's key/value store. Every key starts as "".
#[derive(Debug, Clone, Default)]
pub struct Kv;

/// An append linearized since the last get or put, and the ones before it.
#[derive(Debug)]
struct Pending {
    call: u64,
    /// The return position; `u64::MAX` for an append that never returned.
    ret: u64,
    text: Arc<str>,
    prev: Option<Arc<Pending>>,
}

impl Drop for Pending {
    // Iterative, so that dropping a long chain cannot overflow the stack.
    fn drop(&mut self) {
        let mut next = self.prev.take();
        while let Some(p) = next {
            match Arc::try_unwrap(p) {
                Ok(mut owned) => next = owned.prev.take(),
                Err(_) => break,
            }
        }
    }
}

/// What a key holds: the string last observed and the appends linearized since.
#[derive(Debug, Clone)]
pub struct KvState {
    base: Arc<str>,
    base_hash: u64,
    /// The base was allocated for this state (an integer's text), not shared with the
    /// history: counted in [`Model::heap_bytes`].
    base_owned: bool,
    pending: Option<Arc<Pending>>,
    count: u32,
    pending_len: usize,
    /// Wrapping sum of the pending appends' hashes: the same for every order.
    pending_hash: u64,
}

impl Default for KvState {
    fn default() -> Self {
        KvState::observed(Arc::from(""), false)
    }
}

/// The polynomial string hash's base (also `KvString`'s).
pub(super) const BASE: u64 = 0x100_0000_01b3;

pub(super) fn poly_hash(s: &[u8]) -> u64 {
    s.iter().fold(0u64, |h, &b| {
        h.wrapping_mul(BASE).wrapping_add(b as u64 + 1)
    })
}

/// An append as the arrangement sees it: (call, return, text).
type Item<'a> = (u64, u64, &'a str);

impl KvState {
    /// A concrete state: `text`, nothing pending.
    fn observed(text: Arc<str>, owned: bool) -> Self {
        KvState {
            base_hash: poly_hash(text.as_bytes()),
            base: text,
            base_owned: owned,
            pending: None,
            count: 0,
            pending_len: 0,
            pending_hash: 0,
        }
    }

    fn appended(&self, op: &Op, text: Arc<str>) -> Self {
        let ret = op.ret.unwrap_or(u64::MAX);
        let hash = mix64(
            op.call.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ^ ret.rotate_left(29)
                ^ poly_hash(text.as_bytes()),
        );
        KvState {
            base: self.base.clone(),
            base_hash: self.base_hash,
            base_owned: false,
            count: self.count + 1,
            pending_len: self.pending_len + text.len(),
            pending_hash: self.pending_hash.wrapping_add(hash),
            pending: Some(Arc::new(Pending {
                call: op.call,
                ret,
                text,
                prev: self.pending.clone(),
            })),
        }
    }

    fn pending(&self) -> impl Iterator<Item = &Pending> {
        std::iter::successors(self.pending.as_deref(), |p| p.prev.as_deref())
    }

    /// The pending appends, oldest first.
    fn items(&self) -> Vec<Item<'_>> {
        let mut items: Vec<Item> = self.pending().map(|p| (p.call, p.ret, &*p.text)).collect();
        items.reverse();
        items
    }

    /// The string with the pending appends in the order they were linearized (for reports:
    /// after [`Model::concrete_order`], the order the next get reads).
    pub fn text(&self) -> String {
        let mut s = String::with_capacity(self.base.len() + self.pending_len);
        s.push_str(&self.base);
        for (_, _, t) in self.items() {
            s.push_str(t);
        }
        s
    }

    /// Whether a get may return `s` here (some order of the pending appends spells it).
    fn can_read(&self, s: &str) -> bool {
        if s.len() != self.base.len() + self.pending_len {
            return false;
        }
        let Some(rest) = s.strip_prefix(&*self.base) else {
            return false;
        };
        match self.count {
            0 => rest.is_empty(),
            1 => self.pending().all(|p| *p.text == *rest),
            _ => arrange(&self.items(), rest.as_bytes()).is_some(),
        }
    }

    /// Whether a get of `s` could become legal after more appends: `s` starts with the base,
    /// is long enough for every pending text, and holds the newest one. (Only the newest:
    /// the search asks at every node, so an append that no order can fit into `s` is caught
    /// on the node that adds it, and the check stays O(|s|) however many are pending — a
    /// get spanning 3,000 appends would otherwise cost O(appends · |s|) per node.)
    fn may_reach(&self, s: &str) -> bool {
        if s.len() < self.base.len() + self.pending_len {
            return false;
        }
        let Some(rest) = s.strip_prefix(&*self.base) else {
            return false;
        };
        self.pending
            .as_ref()
            .is_none_or(|p| rest.contains(&*p.text))
    }

    fn same_pending(&self, other: &Self) -> bool {
        if self.count != other.count
            || self.pending_len != other.pending_len
            || self.pending_hash != other.pending_hash
        {
            return false;
        }
        match (&self.pending, &other.pending) {
            (None, None) => return true,
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => return true,
            _ => {}
        }
        let mut a = self.items();
        let mut b = other.items();
        a.sort_unstable();
        b.sort_unstable();
        a == b
    }
}

impl PartialEq for KvState {
    fn eq(&self, other: &Self) -> bool {
        self.base_hash == other.base_hash
            && (Arc::ptr_eq(&self.base, &other.base) || self.base == other.base)
            && self.same_pending(other)
    }
}

impl Eq for KvState {}

/// An order of `items` that respects real time among them (`a` before `b` when `a.ret <
/// b.call`) and whose texts, concatenated, are `rest`; `None` if there is none.
///
/// Depth first over positions of `rest`. An item is available when every unplaced item
/// returns no earlier than its call; of available items with the same text only the one
/// returning first is tried (if a solution places another here, swapping the two is one
/// too: whatever must follow the other must follow it). Failed sets of placed items are
/// remembered once the search has branched (before that each set is reached one way).
fn arrange(items: &[Item], rest: &[u8]) -> Option<Vec<usize>> {
    let n = items.len();
    if items.iter().map(|i| i.2.len()).sum::<usize>() != rest.len() {
        return None;
    }
    let mut by_call: Vec<usize> = (0..n).collect();
    by_call.sort_unstable_by_key(|&i| items[i].0);
    let mut by_ret: Vec<usize> = (0..n).collect();
    by_ret.sort_unstable_by_key(|&i| items[i].1);
    let mut placed = vec![false; n];
    let mut order: Vec<usize> = Vec::with_capacity(n);
    let mut failed: rustc_hash::FxHashSet<Vec<u64>> = Default::default();
    let bits = |placed: &[bool]| {
        let mut b = vec![0u64; n.div_ceil(64)];
        for (i, &p) in placed.iter().enumerate() {
            if p {
                b[i / 64] |= 1 << (i % 64);
            }
        }
        b
    };
    struct Level {
        candidates: Vec<usize>,
        next: usize,
        pos: usize,
        /// First unplaced item in return order and in call order (scans resume there).
        rp: usize,
        cp: usize,
        /// Some level above had more than one candidate.
        branched: bool,
    }
    let expand = |placed: &[bool], pos: usize, mut rp: usize, mut cp: usize, branched: bool| {
        while placed[by_ret[rp]] {
            rp += 1;
        }
        while placed[by_call[cp]] {
            cp += 1;
        }
        let min_ret = items[by_ret[rp]].1;
        let mut candidates: Vec<usize> = Vec::new();
        for &i in by_call[cp..].iter().take_while(|&&i| items[i].0 <= min_ret) {
            if placed[i] || !rest[pos..].starts_with(items[i].2.as_bytes()) {
                continue;
            }
            match candidates.iter_mut().find(|c| items[**c].2 == items[i].2) {
                Some(c) if items[*c].1 <= items[i].1 => {}
                Some(c) => *c = i,
                None => candidates.push(i),
            }
        }
        Level {
            candidates,
            next: 0,
            pos,
            rp,
            cp,
            branched,
        }
    };
    let mut stack = vec![expand(&placed, 0, 0, 0, false)];
    while let Some(level) = stack.last_mut() {
        if level.next < level.candidates.len() {
            let i = level.candidates[level.next];
            level.next += 1;
            placed[i] = true;
            order.push(i);
            if order.len() == n {
                return Some(order);
            }
            let branched = level.branched || level.candidates.len() > 1;
            let (pos, rp, cp) = (level.pos + items[i].2.len(), level.rp, level.cp);
            if branched && failed.contains(&bits(&placed)) {
                placed[i] = false;
                order.pop();
                continue;
            }
            stack.push(expand(&placed, pos, rp, cp, branched));
        } else {
            let level = stack.pop().expect("not empty");
            if level.branched {
                failed.insert(bits(&placed));
            }
            if let Some(i) = order.pop() {
                placed[i] = false;
            }
        }
    }
    None
}

/// The text a value stands for in the kv model (nil is the empty string), and whether it
/// was allocated here rather than shared with the history.
pub(crate) fn text(v: &Value) -> (Arc<str>, bool) {
    match v {
        Value::Nil => (Arc::from(""), false),
        Value::Int(i) => (Arc::from(i.to_string()), true),
        Value::Str(s) => (s.clone(), false),
    }
}

impl Model for Kv {
    type State = KvState;

    fn name(&self) -> &'static str {
        "kv"
    }

    fn init(&self) -> KvState {
        KvState::default()
    }

    fn step(&self, state: &KvState, op: &Op) -> Step<KvState> {
        match (&op.action, &op.outcome) {
            (Action::Get, Outcome::Read(v)) => {
                let (s, owned) = text(v);
                if !state.can_read(&s) {
                    Step::Illegal
                } else if state.count == 0 {
                    Step::Same
                } else {
                    Step::Next(KvState::observed(s, owned))
                }
            }
            (Action::Get, _) => Step::Same,
            (Action::Put(v), _) => {
                let (s, owned) = text(v);
                Step::Next(KvState::observed(s, owned))
            }
            (Action::Append(v), _) => {
                let (s, _) = text(v);
                if s.is_empty() {
                    Step::Same
                } else {
                    Step::Next(state.appended(op, s))
                }
            }
            _ => Step::Illegal,
        }
    }

    fn hash(&self, state: &KvState) -> u64 {
        mix64(state.base_hash ^ (state.base.len() as u64).rotate_left(32))
            .wrapping_add(state.pending_hash)
    }

    /// The string with the pending appends in the order they were linearized.
    fn describe(&self, state: &KvState) -> String {
        format!("{:?}", state.text())
    }

    fn supports(&self, action: &Action) -> bool {
        matches!(action, Action::Get | Action::Put(_) | Action::Append(_))
    }

    /// Gets observe and puts overwrite; an append's result depends on the string before it,
    /// so a part with appends keeps the eager search.
    fn overwrites_or_observes(&self, op: &Op) -> bool {
        matches!(op.action, Action::Get | Action::Put(_))
    }

    /// After an append the state is symbolic, and a get that reads it picks the appends'
    /// order: a read that changes the state, so reads are not forced there.
    fn leaves_state_unknown(&self, op: &Op) -> bool {
        matches!(&op.action, Action::Append(v) if !text(v).0.is_empty())
    }

    /// Appends only extend the string: a get can become legal only if it starts with the
    /// base and holds every pending append.
    fn may_become_legal(&self, state: &KvState, read: &Op) -> bool {
        match (&read.action, &read.outcome) {
            (Action::Get, Outcome::Read(v)) => state.may_reach(&text(v).0),
            _ => true,
        }
    }

    fn resets(&self, op: &Op) -> bool {
        matches!(op.action, Action::Put(_))
    }

    /// The newest pending append's node (the rest is shared with the state it was appended
    /// to), or the base when it was allocated for this state.
    fn heap_bytes(&self, state: &KvState) -> usize {
        if state.count > 0 {
            2 * 8 + std::mem::size_of::<Pending>()
        } else if state.base_owned {
            2 * 8 + state.base.len()
        } else {
            0
        }
    }

    fn may_become_legal_after(&self, reset: &Op, read: &Op) -> bool {
        match (&reset.action, &read.action, &read.outcome) {
            (Action::Put(p), Action::Get, Outcome::Read(v)) => text(v).0.starts_with(&*text(p).0),
            _ => true,
        }
    }

    /// Per key, the appends between two observations are put in the order the get after
    /// them read (the positions they held in `ops` are reused); the last ones, unobserved,
    /// stay as they are. If that breaks real time across keys (ops of several keys
    /// interleaved), a topological sort of real time and each key's order gives one that
    /// does not (their union is acyclic: real time is an interval order, each key's order
    /// extends it).
    fn concrete_order(&self, ops: &[&Op]) -> Vec<usize> {
        let mut order: Vec<usize> = (0..ops.len()).collect();
        let mut keys: rustc_hash::FxHashMap<Option<u32>, (Arc<str>, Vec<usize>)> =
            Default::default();
        for (i, op) in ops.iter().enumerate() {
            let (base, block) = keys
                .entry(op.key)
                .or_insert_with(|| (Arc::from(""), Vec::new()));
            match (&op.action, &op.outcome) {
                (Action::Append(v), _) if !text(v).0.is_empty() => block.push(i),
                (Action::Put(v), _) => {
                    *base = text(v).0;
                    block.clear();
                }
                (Action::Get, Outcome::Read(v)) if !block.is_empty() => {
                    let s = text(v).0;
                    let texts: Vec<Arc<str>> = block
                        .iter()
                        .map(|&j| match &ops[j].action {
                            Action::Append(a) => text(a).0,
                            _ => unreachable!("only appends are pending"),
                        })
                        .collect();
                    let items: Vec<Item> = block
                        .iter()
                        .zip(&texts)
                        .map(|(&j, t)| (ops[j].call, ops[j].ret.unwrap_or(u64::MAX), &**t))
                        .collect();
                    if let Some(arranged) = s
                        .strip_prefix(&**base)
                        .and_then(|rest| arrange(&items, rest.as_bytes()))
                    {
                        for (&slot, &a) in block.iter().zip(&arranged) {
                            order[slot] = block[a];
                        }
                    }
                    *base = s;
                    block.clear();
                }
                _ => {}
            }
        }
        if respects_real_time(ops, &order) {
            order
        } else {
            topological(ops, &order).unwrap_or(order)
        }
    }
}

/// Whether no op in `order` comes after one that returned before its call.
fn respects_real_time(ops: &[&Op], order: &[usize]) -> bool {
    let mut min_ret = u64::MAX;
    for &i in order.iter().rev() {
        if min_ret < ops[i].call {
            return false;
        }
        min_ret = min_ret.min(ops[i].ret.unwrap_or(u64::MAX));
    }
    true
}

/// The earliest-in-`order` topological sort of real time plus each key's order in `order`.
fn topological(ops: &[&Op], order: &[usize]) -> Option<Vec<usize>> {
    let n = ops.len();
    let mut rank = vec![0usize; n];
    for (r, &i) in order.iter().enumerate() {
        rank[i] = r;
    }
    let mut before: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut indegree = vec![0usize; n];
    let mut last_of_key: rustc_hash::FxHashMap<Option<u32>, usize> = Default::default();
    for &i in order {
        if let Some(p) = last_of_key.insert(ops[i].key, i) {
            before[p].push(i);
            indegree[i] += 1;
        }
    }
    for a in 0..n {
        let Some(r) = ops[a].ret else { continue };
        for b in 0..n {
            if r < ops[b].call && ops[a].key != ops[b].key {
                before[a].push(b);
                indegree[b] += 1;
            }
        }
    }
    let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<(usize, usize)>> = (0..n)
        .filter(|&i| indegree[i] == 0)
        .map(|i| std::cmp::Reverse((rank[i], i)))
        .collect();
    let mut out = Vec::with_capacity(n);
    while let Some(std::cmp::Reverse((_, i))) = ready.pop() {
        out.push(i);
        for &j in &before[i] {
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.push(std::cmp::Reverse((rank[j], j)));
            }
        }
    }
    (out.len() == n).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Outcome;

    fn op(action: Action, outcome: Outcome, call: u64, ret: Option<u64>) -> Op {
        Op {
            process: call,
            key: Some(0),
            action,
            outcome,
            call,
            ret,
            call_line: 1,
            ret_line: ret.map(|_| 2),
        }
    }

    fn append(t: &str, call: u64, ret: u64) -> Op {
        op(
            Action::Append(Value::Str(t.into())),
            Outcome::Unknown,
            call,
            Some(ret),
        )
    }

    fn get(t: &str, call: u64, ret: u64) -> Op {
        op(
            Action::Get,
            Outcome::Read(Value::Str(t.into())),
            call,
            Some(ret),
        )
    }

    fn after(ops: &[&Op]) -> KvState {
        ops.iter().fold(Kv.init(), |s, o| match Kv.step(&s, o) {
            Step::Next(n) => n,
            Step::Same => s,
            Step::Illegal => panic!("illegal"),
        })
    }

    #[test]
    fn every_order_of_the_same_appends_is_one_state() {
        let (a, b, c) = (append("a", 0, 10), append("b", 1, 11), append("c", 2, 12));
        let x = after(&[&a, &b, &c]);
        let y = after(&[&c, &a, &b]);
        assert_eq!(x, y);
        assert_eq!(Kv.hash(&x), Kv.hash(&y));
        assert_ne!(x, after(&[&a, &b]));
        // The same texts from other ops are other appends (other real-time constraints).
        assert_ne!(x, after(&[&a, &b, &append("c", 3, 13)]));
        for s in ["abc", "acb", "bac", "bca", "cab", "cba"] {
            assert!(x.can_read(s), "{s}");
        }
        assert!(!x.can_read("ab") && !x.can_read("abcc") && !x.can_read("abd"));
        assert!(x.may_reach("xcab") && x.may_reach("cabd"));
        // Too short, or without the newest pending text (c).
        assert!(!x.may_reach("ab") && !x.may_reach("abab"));
    }

    #[test]
    fn a_get_respects_real_time_among_pending_appends() {
        // a returned before c was called: every order puts a first.
        let (a, b, c) = (append("a", 0, 5), append("b", 1, 20), append("c", 6, 21));
        let s = after(&[&a, &b, &c]);
        assert!(s.can_read("abc") && s.can_read("acb") && s.can_read("bac"));
        assert!(!s.can_read("cab") && !s.can_read("cba") && !s.can_read("bca"));
        // A get fixes the order: afterwards the state is that string, nothing pending.
        let Step::Next(fixed) = Kv.step(&s, &get("bac", 2, 30)) else {
            panic!("a get of a symbolic state is a step");
        };
        assert_eq!(fixed.count, 0);
        assert_eq!(Kv.step(&fixed, &get("bac", 31, 32)), Step::Same);
        assert_eq!(Kv.step(&fixed, &get("abc", 31, 32)), Step::Illegal);
    }

    #[test]
    fn texts_that_prefix_one_another_are_arranged_by_search() {
        // "a" + "ab" + "b" can spell "aabb" only as a, ab, b; "abab" as ab, a, b.
        let (x, y, z) = (append("a", 0, 9), append("ab", 1, 9), append("b", 2, 9));
        let s = after(&[&x, &y, &z]);
        assert!(s.can_read("aabb") && s.can_read("abab") && s.can_read("baab"));
        assert!(!s.can_read("bbaa") && !s.can_read("aaab"));
        // Identical texts with different real-time constraints.
        let (p, q, r) = (append("a", 0, 3), append("a", 1, 30), append("b", 4, 30));
        let s = after(&[&p, &q, &r]);
        assert!(s.can_read("aab") && s.can_read("aba"));
        assert!(!s.can_read("baa"));
    }

    #[test]
    fn concrete_order_puts_appends_in_the_order_their_get_read() {
        let (a, b, g) = (append("a", 0, 10), append("b", 1, 11), get("ba", 2, 12));
        let (c, h) = (append("c", 13, 20), get("bac", 14, 21));
        let ops = [&a, &b, &g, &c, &h];
        let order = Kv.concrete_order(&ops);
        assert_eq!(order, vec![1, 0, 2, 3, 4]);
        // Replayed in that order, every state is the concrete string.
        let mut state = Kv.init();
        let mut seen = Vec::new();
        for i in order {
            if let Step::Next(n) = Kv.step(&state, ops[i]) {
                state = n;
            }
            seen.push(state.text());
        }
        assert_eq!(seen, ["b", "ba", "ba", "bac", "bac"]);
    }

    #[test]
    fn concrete_order_keeps_real_time_across_keys() {
        // Linearized as b, y, a, g: a and b are appended to key 0 while y is put on key 1,
        // and b returned before y was called. g reads "ab", so a goes first; a in b's
        // place would put b after y, against real time: the order must be a, b, y, g.
        let b = append("b", 1, 3);
        let mut y = op(Action::Put(Value::Str("y".into())), Outcome::Ok, 4, Some(5));
        y.key = Some(1);
        let (a, g) = (append("a", 0, 10), get("ab", 11, 12));
        let ops = [&b, &y, &a, &g];
        let order = Kv.concrete_order(&ops);
        assert_eq!(order, vec![2, 0, 1, 3]);
        assert!(respects_real_time(&ops, &order));
        assert!(!respects_real_time(&ops, &[2, 1, 0, 3]));
    }

    #[test]
    fn a_long_chain_drops_without_overflowing_the_stack() {
        let mut state = KvState::default();
        let a = append("x", 0, 1);
        for _ in 0..1_000_000 {
            state = state.appended(&a, Arc::from("x"));
        }
        assert_eq!(state.pending_len, 1_000_000);
        drop(state);
    }
}
