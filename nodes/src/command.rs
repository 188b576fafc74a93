//! What clients ask for and what the state machine answers: the wire types shared by the
//! HTTP API, the replicated log and the store.

use serde::{Deserialize, Serialize};

pub type NodeId = String;

/// A register value: the API accepts JSON integers and strings only.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum Value {
    Int(i64),
    Str(String),
}

impl<'de> Deserialize<'de> for Value {
    // Hand-written so a float, bool, null or object gets "expected a JSON integer or
    // string" rather than serde's "did not match any variant".
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Value;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON integer or string")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
                Ok(Value::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
                i64::try_from(v)
                    .map(Value::Int)
                    .map_err(|_| E::custom("integer out of range for a 64-bit signed value"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
                Ok(Value::Str(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    Get {
        key: String,
    },
    Put {
        key: String,
        value: Value,
    },
    Cas {
        key: String,
        from: Value,
        to: Value,
    },
    /// Set `key` to a random integer the executor draws — the non-deterministic
    /// operation. `drawn` is a value drawn in advance by the node the client reached
    /// (`--deterministic-roll`): every executor then sets that value instead of drawing.
    Roll {
        key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        drawn: Option<i64>,
    },
}

impl Op {
    /// The operation's name, as in the metrics' `op` label.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Get { .. } => "get",
            Op::Put { .. } => "put",
            Op::Cas { .. } => "cas",
            Op::Roll { .. } => "roll",
        }
    }
}

/// A client's operation plus the optional session (client id, sequence number) that makes
/// a retried write apply once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub op: Op,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

impl Command {
    pub fn is_read(&self) -> bool {
        matches!(self.op, Op::Get { .. })
    }
}

/// Names one client request inside the cluster: the node that took it from the client
/// and that node's counter. The node uses it to find the waiting client when the request
/// is applied; active mode also uses it to execute a request at most once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestId {
    pub node: NodeId,
    pub n: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: RequestId,
    pub cmd: Command,
}

/// The result of applying one command to the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A read: the value, or none if the key was never written.
    Value(Option<Value>),
    /// A put, or a cas whose `from` matched.
    Written,
    /// A cas whose `from` did not match; nothing changed.
    CasMismatch { current: Option<Value> },
    /// The client's sequence number is below the last one applied for that client: the
    /// request is a late duplicate of something superseded, and was not applied again.
    StaleSeq { last: u64 },
    /// A roll: the key now holds `value`, which the executor drew.
    Rolled { value: i64 },
}

/// What executing one command did, as passive mode's leader replicates it: followers
/// apply this and never execute the command themselves (primary–backup: "only the
/// primary executes; backups take its result"), so a non-deterministic operation is as
/// safe as a write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effect {
    /// The key and its new value; `None`: no change (a failed cas, a read, a retried or
    /// stale seq).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<(String, Value)>,
    /// Remember `outcome` as this (client, seq)'s answer, so a retry gets it again, on
    /// whichever replica it lands after a failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<(String, u64)>,
    /// The answer for the client.
    pub outcome: Outcome,
}
