//! A register (read/write) and a compare-and-set register (read/write/cas).

use crate::history::{Action, Op, Outcome, Value};
use crate::model::{fx_hash, Model, Step};

/// A single register holding a [`Value`].
#[derive(Debug, Clone)]
pub struct Register {
    pub initial: Value,
    /// `false` for a plain read/write register, which rejects cas ops up front.
    pub with_cas: bool,
}

impl Register {
    pub fn plain(initial: Value) -> Self {
        Register {
            initial,
            with_cas: false,
        }
    }

    pub fn cas(initial: Value) -> Self {
        Register {
            initial,
            with_cas: true,
        }
    }
}

impl Model for Register {
    type State = Value;

    fn name(&self) -> &'static str {
        if self.with_cas {
            "cas-register"
        } else {
            "register"
        }
    }

    fn init(&self) -> Value {
        self.initial.clone()
    }

    fn step(&self, state: &Value, op: &Op) -> Step<Value> {
        match (&op.action, &op.outcome) {
            (Action::Read, Outcome::Read(v)) if v != state => Step::Illegal,
            (Action::Read, _) => Step::Same,
            (Action::Write(v), _) => Step::Next(v.clone()),
            (Action::Cas { from, to }, _) if from == state => Step::Next(to.clone()),
            // A cas that reported success needs a matching value; one whose outcome is
            // unknown may have failed its compare, which changes nothing.
            (Action::Cas { .. }, Outcome::Ok) => Step::Illegal,
            (Action::Cas { .. }, _) => Step::Same,
            _ => Step::Illegal,
        }
    }

    fn hash(&self, state: &Value) -> u64 {
        fx_hash(state)
    }

    fn describe(&self, state: &Value) -> String {
        state.to_string()
    }

    fn supports(&self, action: &Action) -> bool {
        match action {
            Action::Read | Action::Write(_) => true,
            Action::Cas { .. } => self.with_cas,
            _ => false,
        }
    }
}
