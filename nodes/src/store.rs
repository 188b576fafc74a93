//! The replicated state machine: a map of cas-registers plus per-client sessions, and
//! the executor that decides what a command does.
//!
//! Two steps, so the two replication schemes can use them differently:
//! - [`Store::execute`] — the executor — decides a command's [`Effect`] against the
//!   current state (the new value of one key, or no change, plus the client's answer).
//!   It is deterministic except for a roll without a pre-drawn value, which draws from
//!   the caller's random source.
//! - [`Store::apply_effect`] makes an effect happen.
//!
//! Active replication (and leaderless) runs both on every replica ([`Store::apply`]), so
//! replicas agree only if execution is deterministic. Passive replication executes once,
//! at the leader, and ships the effect; followers only call `apply_effect`.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hasher;

use rand::Rng;

use crate::command::{Command, Effect, Op, Outcome, Value};

/// Range of a drawn roll: `0..ROLL_RANGE`.
pub const ROLL_RANGE: i64 = 1_000_000_000;

/// Draws a roll's value (also what `--deterministic-roll` pre-draws).
pub fn draw_roll(rng: &mut impl Rng) -> i64 {
    rng.random_range(0..ROLL_RANGE)
}

#[derive(Debug, Default, Clone)]
pub struct Store {
    data: HashMap<String, Value>,
    /// Last (sequence number, outcome) per client id: a retried write carries the same
    /// sequence number and gets the recorded outcome instead of being applied again.
    sessions: HashMap<String, (u64, Outcome)>,
    /// How many commands this store's executor ran (the effect-shipping tests assert a
    /// passive follower's stays 0).
    executions: u64,
}

impl Store {
    pub fn get(&self, key: &str) -> Option<Value> {
        self.data.get(key).cloned()
    }

    pub fn executions(&self) -> u64 {
        self.executions
    }

    /// Executes and applies `cmd`: what every replica does in active replication.
    pub fn apply(&mut self, cmd: &Command, rng: &mut impl Rng) -> Outcome {
        let effect = self.execute(cmd, rng);
        self.apply_effect(&effect)
    }

    /// The executor: what `cmd` does to this state, without doing it. A write with
    /// (client, seq) already answered gets the recorded outcome and no change; a roll
    /// sets its pre-drawn value if it has one, else draws from `rng`.
    pub fn execute(&mut self, cmd: &Command, rng: &mut impl Rng) -> Effect {
        self.executions += 1;
        // Reads never enter sessions: they change nothing, so re-running them is harmless.
        let session = match (&cmd.client, cmd.seq, cmd.is_read()) {
            (Some(client), Some(seq), false) => Some((client, seq)),
            _ => None,
        };
        if let Some((client, seq)) = session {
            if let Some((last, outcome)) = self.sessions.get(client) {
                if seq <= *last {
                    let outcome = if seq == *last {
                        outcome.clone()
                    } else {
                        Outcome::StaleSeq { last: *last }
                    };
                    return Effect {
                        set: None,
                        session: None,
                        outcome,
                    };
                }
            }
        }
        let (set, outcome) = match &cmd.op {
            Op::Get { key } => (None, Outcome::Value(self.get(key))),
            Op::Put { key, value } => (Some((key.clone(), value.clone())), Outcome::Written),
            Op::Cas { key, from, to } => {
                let current = self.data.get(key);
                if current == Some(from) {
                    (Some((key.clone(), to.clone())), Outcome::Written)
                } else {
                    let current = current.cloned();
                    (None, Outcome::CasMismatch { current })
                }
            }
            Op::Roll { key, drawn } => {
                let value = drawn.unwrap_or_else(|| draw_roll(rng));
                (
                    Some((key.clone(), Value::Int(value))),
                    Outcome::Rolled { value },
                )
            }
        };
        Effect {
            set,
            session: session.map(|(c, s)| (c.clone(), s)),
            outcome,
        }
    }

    /// Makes `effect` happen; returns the client's answer.
    pub fn apply_effect(&mut self, effect: &Effect) -> Outcome {
        if let Some((key, value)) = &effect.set {
            self.data.insert(key.clone(), value.clone());
        }
        if let Some((client, seq)) = &effect.session {
            self.sessions
                .insert(client.clone(), (*seq, effect.outcome.clone()));
        }
        effect.outcome.clone()
    }

    /// Number of keys holding a value.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Every key and its value, sorted by key.
    pub fn dump(&self) -> BTreeMap<&str, &Value> {
        self.data.iter().map(|(k, v)| (k.as_str(), v)).collect()
    }

    /// A digest of the key/value state (sessions excluded): FNV-1a 64 over the compact
    /// JSON of the sorted list of `[key, value]` pairs, e.g. `[["a",1],["b","x"]]`, as 16
    /// lowercase hex digits. Equal states give equal digests on every node and build.
    pub fn digest(&self) -> String {
        let pairs: Vec<(&str, &Value)> = self.dump().into_iter().collect();
        let json = serde_json::to_vec(&pairs).unwrap_or_default();
        let mut h = fnv::FnvHasher::default();
        h.write(&json);
        format!("{:016x}", h.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

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

    fn rng(seed: u64) -> StdRng {
        StdRng::seed_from_u64(seed)
    }

    fn roll(key: &str, drawn: Option<i64>, session: Option<(&str, u64)>) -> Command {
        Command {
            op: Op::Roll {
                key: key.into(),
                drawn,
            },
            client: session.map(|s| s.0.to_string()),
            seq: session.map(|s| s.1),
        }
    }

    #[test]
    fn cas_applies_only_on_match() {
        let mut s = Store::default();
        let r = &mut rng(1);
        assert_eq!(
            s.apply(&cas("k", 1, 2, None), r),
            Outcome::CasMismatch { current: None }
        );
        s.apply(&put("k", 1, None), r);
        assert_eq!(s.apply(&cas("k", 1, 2, None), r), Outcome::Written);
        assert_eq!(s.get("k"), Some(Value::Int(2)));
    }

    #[test]
    fn retried_write_applies_once_and_returns_first_outcome() {
        let mut s = Store::default();
        let r = &mut rng(1);
        s.apply(&put("k", 1, None), r);
        assert_eq!(
            s.apply(&cas("k", 1, 2, Some(("c", 1))), r),
            Outcome::Written
        );
        // Without the session the retry would now mismatch (k is 2).
        assert_eq!(
            s.apply(&cas("k", 1, 2, Some(("c", 1))), r),
            Outcome::Written
        );
        s.apply(&put("k", 5, Some(("c", 2))), r);
        assert_eq!(
            s.apply(&put("k", 9, Some(("c", 1))), r),
            Outcome::StaleSeq { last: 2 }
        );
        assert_eq!(s.get("k"), Some(Value::Int(5)));
        // A retried roll returns the first draw and sets nothing new.
        let first = s.apply(&roll("r", None, Some(("c", 3))), r);
        let again = s.apply(&roll("r", None, Some(("c", 3))), r);
        assert_eq!(first, again);
        let Outcome::Rolled { value } = first else {
            panic!("{first:?}")
        };
        assert_eq!(s.get("r"), Some(Value::Int(value)));
    }

    /// Executing twice with different random sources diverges; a pre-drawn value does
    /// not; shipping the effect reproduces the executor's state without executing.
    #[test]
    fn rolls_diverge_unless_pre_drawn_and_effects_reproduce_state() {
        let (mut a, mut b) = (Store::default(), Store::default());
        let (ra, rb) = (&mut rng(1), &mut rng(2));
        for k in 0..5 {
            a.apply(&roll(&format!("k{k}"), None, None), ra);
            b.apply(&roll(&format!("k{k}"), None, None), rb);
        }
        assert_ne!(a.digest(), b.digest());
        let (mut a, mut b) = (Store::default(), Store::default());
        for k in 0..5 {
            a.apply(&roll(&format!("k{k}"), Some(k * 7), None), ra);
            b.apply(&roll(&format!("k{k}"), Some(k * 7), None), rb);
        }
        assert_eq!(a.digest(), b.digest());
        let (mut leader, mut follower) = (Store::default(), Store::default());
        for cmd in [
            roll("x", None, Some(("c", 1))),
            cas("x", 5, 6, Some(("c", 2))),
            put("y", 3, None),
        ] {
            let effect = leader.execute(&cmd, ra);
            leader.apply_effect(&effect);
            follower.apply_effect(&effect);
        }
        assert_eq!(leader.digest(), follower.digest());
        assert_eq!(follower.executions(), 0);
        // The retry of seq 1 at the follower (after a failover) finds the session.
        let retry = follower.execute(&roll("x", None, Some(("c", 1))), rb);
        assert!(retry.set.is_none());
    }

    #[test]
    fn digest_is_order_independent_and_documented() {
        let r = &mut rng(1);
        let (mut a, mut b) = (Store::default(), Store::default());
        a.apply(&put("a", 1, None), r);
        a.apply(&put("b", 2, None), r);
        b.apply(&put("b", 2, None), r);
        b.apply(&put("a", 1, None), r);
        assert_eq!(a.digest(), b.digest());
        // FNV-1a 64 of `[["a",1],["b",2]]`, computed independently of `digest`.
        let mut h: u64 = 0xcbf29ce484222325;
        for byte in br#"[["a",1],["b",2]]"# {
            h ^= u64::from(*byte);
            h = h.wrapping_mul(0x100000001b3);
        }
        assert_eq!(a.digest(), format!("{h:016x}"));
        assert_eq!(Store::default().digest(), {
            let mut h: u64 = 0xcbf29ce484222325;
            for byte in b"[]" {
                h ^= u64::from(*byte);
                h = h.wrapping_mul(0x100000001b3);
            }
            format!("{h:016x}")
        });
    }
}
