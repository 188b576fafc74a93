//! A seeded stream of operations for one client process slot.
//!
//! Each slot gets its own RNG seeded from `(seed, slot)`, so a slot's op sequence is the
//! same on every run with the same seed, whatever the timing of other slots.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::op::{Op, OpFn};

/// Relative weights of reads, writes and cas ops, and the value range written.
#[derive(Debug, Clone, Copy)]
pub struct OpMix {
    pub read: u32,
    pub write: u32,
    pub cas: u32,
    /// Values are drawn from `0..values`; small, as Jepsen does, so cas often applies.
    pub values: i64,
}

impl Default for OpMix {
    fn default() -> Self {
        Self {
            read: 2,
            write: 1,
            cas: 1,
            values: 5,
        }
    }
}

pub struct Generator {
    rng: StdRng,
    keys: Vec<Option<String>>,
    mix: OpMix,
    /// Percent (0..=100) of writes that are rolls instead (issue 14).
    roll_percent: u32,
}

impl Generator {
    /// `keys` is the key space; `[None]` is the single unnamed register.
    pub fn new(seed: u64, slot: usize, keys: Vec<Option<String>>, mix: OpMix) -> Self {
        assert!(!keys.is_empty(), "a generator needs at least one key");
        // Mix the slot into the seed so slots differ but stay reproducible.
        let slot_seed = seed ^ (slot as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Self {
            rng: StdRng::seed_from_u64(slot_seed),
            keys,
            mix,
            roll_percent: 0,
        }
    }

    /// Makes `percent` (clamped to 0..=100) of this slot's writes non-deterministic
    /// rolls. With 0 the op sequence is exactly that of a generator without rolls.
    pub fn with_rolls(mut self, percent: u32) -> Self {
        self.roll_percent = percent.min(100);
        self
    }

    /// The next op of this slot's sequence.
    pub fn next_op(&mut self) -> Op {
        let key = self.keys[self.rng.random_range(0..self.keys.len())].clone();
        let total = self.mix.read + self.mix.write + self.mix.cas;
        let pick = self.rng.random_range(0..total);
        let f = if pick < self.mix.read {
            OpFn::Read
        } else if pick < self.mix.read + self.mix.write {
            // Drawn only when rolls are on, so seeds without rolls keep their sequence.
            if self.roll_percent > 0 && self.rng.random_range(0..100) < self.roll_percent {
                OpFn::Roll
            } else {
                OpFn::Write(self.rng.random_range(0..self.mix.values))
            }
        } else {
            OpFn::Cas(
                self.rng.random_range(0..self.mix.values),
                self.rng.random_range(0..self.mix.values),
            )
        };
        Op { key, f }
    }

    /// A uniformly random stagger in `[0, 2 * mean)`, drawn from this slot's RNG, so the
    /// mean rate is kept while processes do not march in lockstep.
    pub fn stagger(&mut self, mean: std::time::Duration) -> std::time::Duration {
        if mean.is_zero() {
            return mean;
        }
        mean.mul_f64(self.rng.random_range(0.0..2.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<Option<String>> {
        (0..4).map(|k| Some(format!("k{k}"))).collect()
    }

    #[test]
    fn same_seed_and_slot_give_the_same_sequence() {
        let mut a = Generator::new(7, 3, keys(), OpMix::default());
        let mut b = Generator::new(7, 3, keys(), OpMix::default());
        let xs: Vec<Op> = (0..200).map(|_| a.next_op()).collect();
        let ys: Vec<Op> = (0..200).map(|_| b.next_op()).collect();
        assert_eq!(xs, ys);
    }

    #[test]
    fn different_slots_or_seeds_differ() {
        let run = |seed, slot| {
            let mut g = Generator::new(seed, slot, keys(), OpMix::default());
            (0..50).map(|_| g.next_op()).collect::<Vec<_>>()
        };
        assert_ne!(run(7, 0), run(7, 1));
        assert_ne!(run(7, 0), run(8, 0));
    }

    #[test]
    fn mix_covers_every_op_kind_and_key() {
        let mut g = Generator::new(1, 0, keys(), OpMix::default());
        let ops: Vec<Op> = (0..1000).map(|_| g.next_op()).collect();
        for f in ["read", "write", "cas"] {
            assert!(ops.iter().any(|o| o.f.name() == f), "no {f} op");
        }
        for k in keys() {
            assert!(ops.iter().any(|o| o.key == k), "key {k:?} never used");
        }
        let reads = ops.iter().filter(|o| o.f == OpFn::Read).count();
        assert!((400..600).contains(&reads), "read share off: {reads}/1000");
        assert!(
            !ops.iter().any(|o| o.f == OpFn::Roll),
            "rolls are off by default"
        );
    }

    #[test]
    fn rolls_replace_the_given_share_of_writes() {
        let mut g = Generator::new(1, 0, keys(), OpMix::default()).with_rolls(50);
        let ops: Vec<Op> = (0..4000).map(|_| g.next_op()).collect();
        let rolls = ops.iter().filter(|o| o.f == OpFn::Roll).count();
        let writes = ops.iter().filter(|o| matches!(o.f, OpFn::Write(_))).count();
        // Writes are 1/4 of the mix: about 500 rolls and 500 writes.
        assert!((400..600).contains(&rolls), "rolls: {rolls}");
        assert!((400..600).contains(&writes), "writes: {writes}");
        let mut all = Generator::new(1, 0, keys(), OpMix::default()).with_rolls(100);
        assert!((0..1000).all(|_| !matches!(all.next_op().f, OpFn::Write(_))));
    }
}
