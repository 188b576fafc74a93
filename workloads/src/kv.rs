//! A multi-key store of independent cas-registers, keys `k0..k{K-1}`. The checker splits
//! the history per key, so many keys keep each part small.

use crate::generator::{Generator, OpMix};
use crate::{Model, Workload};

#[derive(Debug)]
pub struct Kv {
    keys: usize,
    pub mix: OpMix,
}

impl Kv {
    pub fn new(keys: usize) -> Self {
        Self {
            keys: keys.max(1),
            mix: OpMix::default(),
        }
    }
}

impl Workload for Kv {
    fn name(&self) -> &'static str {
        "kv"
    }

    fn model(&self) -> Model {
        Model::MultiRegister
    }

    fn generator(&self, seed: u64, slot: usize) -> Generator {
        let keys = (0..self.keys).map(|k| Some(format!("k{k}"))).collect();
        Generator::new(seed, slot, keys, self.mix)
    }
}
