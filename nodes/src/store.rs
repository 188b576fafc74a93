//! The replicated state machine: a map of cas-registers plus per-client sessions.
//!
//! Applying is deterministic, so every replica that applies the same commands in the same
//! order reaches the same state and gives the same answers.

use std::collections::HashMap;

use crate::command::{Command, Op, Outcome, Value};

#[derive(Debug, Default, Clone)]
pub struct Store {
    data: HashMap<String, Value>,
    /// Last (sequence number, outcome) per client id: a retried write carries the same
    /// sequence number and gets the recorded outcome instead of being applied again.
    sessions: HashMap<String, (u64, Outcome)>,
}

impl Store {
    pub fn get(&self, key: &str) -> Option<Value> {
        self.data.get(key).cloned()
    }

    pub fn apply(&mut self, cmd: &Command) -> Outcome {
        // Reads never enter sessions: they change nothing, so re-running them is harmless.
        let session = match (&cmd.client, cmd.seq, cmd.is_read()) {
            (Some(client), Some(seq), false) => Some((client, seq)),
            _ => None,
        };
        if let Some((client, seq)) = session {
            if let Some((last, outcome)) = self.sessions.get(client) {
                if seq == *last {
                    return outcome.clone();
                }
                if seq < *last {
                    return Outcome::StaleSeq { last: *last };
                }
            }
        }
        let outcome = self.execute(&cmd.op);
        if let Some((client, seq)) = session {
            self.sessions.insert(client.clone(), (seq, outcome.clone()));
        }
        outcome
    }

    fn execute(&mut self, op: &Op) -> Outcome {
        match op {
            Op::Get { key } => Outcome::Value(self.get(key)),
            Op::Put { key, value } => {
                self.data.insert(key.clone(), value.clone());
                Outcome::Written
            }
            Op::Cas { key, from, to } => {
                let current = self.data.get(key);
                if current == Some(from) {
                    self.data.insert(key.clone(), to.clone());
                    Outcome::Written
                } else {
                    Outcome::CasMismatch {
                        current: current.cloned(),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, v: i64, session: Option<(&str, u64)>) -> Command {
        Command {
            op: Op::Put {
                key: key.into(),
                value: Value::Int(v),
            },
            client: session.map(|s| s.0.to_string()),
            seq: session.map(|s| s.1),
        }
    }

    fn cas(key: &str, from: i64, to: i64, session: Option<(&str, u64)>) -> Command {
        Command {
            op: Op::Cas {
                key: key.into(),
                from: Value::Int(from),
                to: Value::Int(to),
            },
            client: session.map(|s| s.0.to_string()),
            seq: session.map(|s| s.1),
        }
    }

    #[test]
    fn cas_applies_only_on_match() {
        let mut s = Store::default();
        assert_eq!(
            s.apply(&cas("k", 1, 2, None)),
            Outcome::CasMismatch { current: None }
        );
        s.apply(&put("k", 1, None));
        assert_eq!(s.apply(&cas("k", 1, 2, None)), Outcome::Written);
        assert_eq!(s.get("k"), Some(Value::Int(2)));
    }

    #[test]
    fn retried_write_applies_once_and_returns_first_outcome() {
        let mut s = Store::default();
        s.apply(&put("k", 1, None));
        assert_eq!(s.apply(&cas("k", 1, 2, Some(("c", 1)))), Outcome::Written);
        // Without the session the retry would now mismatch (k is 2).
        assert_eq!(s.apply(&cas("k", 1, 2, Some(("c", 1)))), Outcome::Written);
        s.apply(&put("k", 5, Some(("c", 2))));
        assert_eq!(
            s.apply(&put("k", 9, Some(("c", 1)))),
            Outcome::StaleSeq { last: 2 }
        );
        assert_eq!(s.get("k"), Some(Value::Int(5)));
    }
}
