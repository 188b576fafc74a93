//! The command table: every command a process holds, by dot (coordinator, number).
//!
//! Not a `HashMap`: a hash table doubles as it grows, and this one grows by a command per
//! client op on every replica at once. Each doubling moved the whole table (tens of MB
//! after a few seconds of load) and page-faulted the new one within one event of the node
//! loop: all three replicas stalled together, 29–48 ms with 4 KiB pages and 86–250 ms
//! when the new table got transparent huge pages (nodes/README.md, "Huge pages and the
//! command table"). A coordinator numbers its commands densely (its request counter,
//! which starts at the node's start time in ns), so here each coordinator's commands sit
//! in fixed chunks of [`CHUNK`] slots, found by `n / CHUNK` in an ordered map: inserting
//! never moves a command, and memory is touched a slot at a time as the table fills.
//! A peer sending scattered numbers would cost a chunk each; peers are authenticated and
//! run the same build, which numbers densely.

use std::collections::BTreeMap;

use crate::command::NodeId;

/// Slots per chunk. A chunk's slots are reserved whole and initialised as they are used.
const CHUNK: u64 = 512;

/// Values by dot `(coordinator, n)`.
///
/// Shape: per coordinator (a handful: the cluster's members), chunks keyed by `n /
/// CHUNK`, each a `Vec` with room for `CHUNK` slots, filled up to the highest slot used.
/// Lookups cost a scan of the coordinators, a B-tree search over chunks and an index.
pub struct Table<V> {
    by_node: Vec<(NodeId, Chunks<V>)>,
}

/// One coordinator's chunks by `n / CHUNK`; a chunk's slot `n % CHUNK` holds `n`'s value.
type Chunks<V> = BTreeMap<u64, Vec<Option<V>>>;

impl<V> Default for Table<V> {
    fn default() -> Self {
        Table {
            by_node: Vec::new(),
        }
    }
}

fn split(n: u64) -> (u64, usize) {
    (n / CHUNK, (n % CHUNK) as usize)
}

impl<V> Table<V> {
    /// The value at `d`, if one was put there.
    pub fn get(&self, (node, n): &(NodeId, u64)) -> Option<&V> {
        let (chunk, slot) = split(*n);
        let (_, chunks) = self.by_node.iter().find(|(m, _)| m == node)?;
        chunks.get(&chunk)?.get(slot)?.as_ref()
    }

    /// The value at `d` to change in place, if one was put there.
    pub fn get_mut(&mut self, (node, n): &(NodeId, u64)) -> Option<&mut V> {
        let (chunk, slot) = split(*n);
        let (_, chunks) = self.by_node.iter_mut().find(|(m, _)| m == node)?;
        chunks.get_mut(&chunk)?.get_mut(slot)?.as_mut()
    }

    /// Whether a value was put at `d`.
    pub fn contains_key(&self, d: &(NodeId, u64)) -> bool {
        self.get(d).is_some()
    }

    /// Puts `value` at `d`, replacing what was there. The first dot of a chunk reserves the
    /// chunk's `CHUNK` slots (address space; pages are touched as slots fill).
    pub fn insert(&mut self, (node, n): (NodeId, u64), value: V) {
        let (chunk, slot) = split(n);
        let k = match self.by_node.iter().position(|(m, _)| *m == node) {
            Some(k) => k,
            None => {
                self.by_node.push((node, BTreeMap::new()));
                self.by_node.len() - 1
            }
        };
        let slots = self.by_node[k]
            .1
            .entry(chunk)
            .or_insert_with(|| Vec::with_capacity(CHUNK as usize));
        if slots.len() <= slot {
            slots.resize_with(slot + 1, || None);
        }
        slots[slot] = Some(value);
    }

    /// Every dot held, coordinator by coordinator, in increasing `n`.
    pub fn dots(&self) -> Vec<(NodeId, u64)> {
        let mut dots = Vec::new();
        for (node, chunks) in &self.by_node {
            for (chunk, slots) in chunks {
                for (slot, v) in slots.iter().enumerate() {
                    if v.is_some() {
                        dots.push((node.clone(), chunk * CHUNK + slot as u64));
                    }
                }
            }
        }
        dots
    }
}

impl<V> std::ops::Index<&(NodeId, u64)> for Table<V> {
    type Output = V;

    /// Panics if `d` is not held (as `HashMap`'s index does): callers index only dots
    /// they hold.
    fn index(&self, d: &(NodeId, u64)) -> &V {
        self.get(d).expect("command held in the table")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;

    /// The table answers as a `HashMap` does, for dots of a few coordinators with numbers
    /// dense (as a node's counter gives them) or anywhere in `u64`.
    #[test]
    fn behaves_as_a_map() {
        for seed in 0..20 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut table = Table::default();
            let mut map = HashMap::new();
            let base = rng.random::<u64>() / 2;
            for _ in 0..2000 {
                let node = format!("n{}", rng.random_range(0..3));
                let n = if rng.random_bool(0.9) {
                    base + rng.random_range(0..5000)
                } else {
                    rng.random()
                };
                let d = (node, n);
                assert_eq!(table.get(&d), map.get(&d));
                let v: u32 = rng.random();
                table.insert(d.clone(), v);
                map.insert(d.clone(), v);
                let t = table.get_mut(&d).unwrap();
                *t = t.wrapping_add(1);
                let m = map.get_mut(&d).unwrap();
                *m = m.wrapping_add(1);
                assert_eq!(table[&d], map[&d]);
                let near = (d.0.clone(), d.1 ^ 1);
                assert_eq!(table.contains_key(&near), map.contains_key(&near));
            }
            let mut dots = table.dots();
            let mut keys: Vec<_> = map.keys().cloned().collect();
            dots.sort();
            keys.sort();
            assert_eq!(dots, keys, "seed {seed}");
        }
    }
}
