//! A single cas-register: every process reads, writes and cas-es one unnamed register.

use crate::generator::{Generator, OpMix};
use crate::{Model, Workload};

#[derive(Debug, Default)]
pub struct Register {
    pub mix: OpMix,
}

impl Workload for Register {
    fn name(&self) -> &'static str {
        "register"
    }

    fn model(&self) -> Model {
        Model::CasRegister
    }

    fn generator(&self, seed: u64, slot: usize) -> Generator {
        Generator::new(seed, slot, vec![None], self.mix)
    }
}
