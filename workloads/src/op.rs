//! One client operation and how it ended, in the vocabulary of the history contract.

/// What an operation does. Values are small integers so cas ops often succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpFn {
    Read,
    Write(i64),
    /// Compare-and-set: `[from, to]`.
    Cas(i64, i64),
    /// A non-deterministic write: the server draws the value (`POST /kv/{key}/roll`) and
    /// returns it; an `ok` roll carries that value in `Completion::Ok { read }`.
    Roll,
}

impl OpFn {
    /// The `f` field of a history event.
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write(_) => "write",
            Self::Cas(..) => "cas",
            Self::Roll => "roll",
        }
    }
}

/// An operation on one key. `key: None` is the single register of the `register`
/// workload (history events then carry no key); the wire key is `Op::wire_key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub key: Option<String>,
    pub f: OpFn,
}

impl Op {
    /// The key the client sends to the system under test.
    pub fn wire_key(&self) -> &str {
        self.key.as_deref().unwrap_or("r")
    }
}

/// How an op ended — Jepsen's three outcomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// It happened. For a read, the value read (`None` = the key has no value); for a
    /// roll, the value the server drew and set.
    Ok { read: Option<i64> },
    /// It definitely did not happen (cas mismatch, refused before sending, ...).
    Fail { error: String },
    /// Unknown: it may have happened, at any time after its call, or never.
    Info { error: String },
}
