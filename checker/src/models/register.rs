//! A register (read/write) and a compare-and-set register (read/write/cas), both with the
//! non-deterministic write `roll`.

use crate::history::{Action, Op, Outcome, Value};
use crate::model::{fx_hash, Model, Step};

/// A single register holding a [`Value`], starting at `initial` (a test parameter: Jepsen's
/// register workloads start at nil, Knossos's tests at 0; see `--initial`).
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

/// What a register holds: a known value, or the unknown value an `info` (or never
/// completed) `roll` wrote. "Unknown" is exact, not a wildcard: it stands for one value
/// nobody has seen yet, so the first read after it (or the compare of an `ok` cas) fixes
/// it, and the state is that value from then on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RegisterState {
    Known(Value),
    Unknown,
}

impl Model for Register {
    type State = RegisterState;

    fn name(&self) -> &'static str {
        if self.with_cas {
            "cas-register"
        } else {
            "register"
        }
    }

    fn init(&self) -> RegisterState {
        RegisterState::Known(self.initial.clone())
    }

    fn step(&self, state: &RegisterState, op: &Op) -> Step<RegisterState> {
        use RegisterState::{Known, Unknown};
        match (&op.action, &op.outcome, state) {
            (Action::Read, Outcome::Read(v), Known(s)) if v != s => Step::Illegal,
            // The first read of an unknown value fixes it.
            (Action::Read, Outcome::Read(v), Unknown) => Step::Next(Known(v.clone())),
            (Action::Read, _, _) => Step::Same,
            (Action::Write(v), _, _) => Step::Next(Known(v.clone())),
            // An ok roll returned the value it set: a write of that value.
            (Action::Roll, Outcome::Read(v), _) => Step::Next(Known(v.clone())),
            (Action::Roll, _, Unknown) => Step::Same,
            (Action::Roll, _, Known(_)) => Step::Next(Unknown),
            (Action::Cas { from, to }, _, Known(s)) if from == s => Step::Next(Known(to.clone())),
            // On an unknown value the compare can succeed (fixing the value to `from`).
            // Its failure needs no branch: for an info cas, failing is the same as never
            // happening, which the search covers; an ok cas did not fail.
            (Action::Cas { to, .. }, _, Unknown) => Step::Next(Known(to.clone())),
            // A cas that reported success needs a matching value; one whose outcome is
            // unknown may have failed its compare, which changes nothing.
            (Action::Cas { .. }, Outcome::Ok, _) => Step::Illegal,
            (Action::Cas { .. }, _, _) => Step::Same,
            _ => Step::Illegal,
        }
    }

    fn hash(&self, state: &RegisterState) -> u64 {
        fx_hash(state)
    }

    fn describe(&self, state: &RegisterState) -> String {
        match state {
            RegisterState::Known(v) => v.to_string(),
            RegisterState::Unknown => "? (set by a roll whose result is unknown)".to_string(),
        }
    }

    fn supports(&self, action: &Action) -> bool {
        match action {
            Action::Read | Action::Write(_) | Action::Roll => true,
            Action::Cas { .. } => self.with_cas,
            _ => false,
        }
    }

    /// Reads observe; writes, cas and `ok` rolls (which returned the value set) overwrite.
    /// A roll without a value leaves the state unknown — a later read then changes it — so
    /// it is neither.
    fn overwrites_or_observes(&self, op: &Op) -> bool {
        match op.action {
            Action::Read | Action::Write(_) | Action::Cas { .. } => true,
            Action::Roll => matches!(op.outcome, Outcome::Read(_)),
            _ => false,
        }
    }

    fn leaves_state_unknown(&self, op: &Op) -> bool {
        op.action == Action::Roll && !op.is_definite()
    }
}
