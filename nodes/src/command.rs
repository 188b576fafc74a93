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

/// One operation on the register store. On the wire (peer messages, logs and records) a
/// map tagged by `op`: `{"op":"put","key":"k","value":1}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

impl<'de> Deserialize<'de> for Op {
    // Hand-written, not `#[derive]` with `tag = "op"`: serde decodes an internally tagged
    // enum by first buffering the whole map into an intermediate tree (the tag may come
    // last), and every peer message and record carries ops — that buffering was a visible
    // part of a leaderless node's CPU under load. One pass over the map keeps the same
    // form, accepts the fields in any order and ignores unknown ones, as the derive did.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error, IgnoredAny, MapAccess, Visitor};

        #[derive(Deserialize)]
        #[serde(rename_all = "lowercase")]
        enum Kind {
            Get,
            Put,
            Cas,
            Roll,
        }
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "lowercase")]
        enum Field {
            Op,
            Key,
            Value,
            From,
            To,
            Drawn,
            #[serde(other)]
            Other,
        }

        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Op;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an operation: a map with `op` (get, put, cas or roll) and its fields")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Op, A::Error> {
                fn once<T, E: Error>(
                    slot: &mut Option<T>,
                    v: T,
                    name: &'static str,
                ) -> Result<(), E> {
                    match slot.replace(v) {
                        Some(_) => Err(E::duplicate_field(name)),
                        None => Ok(()),
                    }
                }
                let (mut kind, mut key, mut value, mut from, mut to) =
                    (None, None, None, None, None);
                let mut drawn: Option<Option<i64>> = None;
                while let Some(field) = map.next_key::<Field>()? {
                    match field {
                        Field::Op => once(&mut kind, map.next_value::<Kind>()?, "op")?,
                        Field::Key => once(&mut key, map.next_value::<String>()?, "key")?,
                        Field::Value => once(&mut value, map.next_value::<Value>()?, "value")?,
                        Field::From => once(&mut from, map.next_value::<Value>()?, "from")?,
                        Field::To => once(&mut to, map.next_value::<Value>()?, "to")?,
                        Field::Drawn => {
                            once(&mut drawn, map.next_value::<Option<i64>>()?, "drawn")?
                        }
                        Field::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let kind = kind.ok_or_else(|| A::Error::missing_field("op"))?;
                let key = key.ok_or_else(|| A::Error::missing_field("key"))?;
                let need = |v: Option<Value>, name| v.ok_or_else(|| A::Error::missing_field(name));
                Ok(match kind {
                    Kind::Get => Op::Get { key },
                    Kind::Put => Op::Put {
                        key,
                        value: need(value, "value")?,
                    },
                    Kind::Cas => Op::Cas {
                        key,
                        from: need(from, "from")?,
                        to: need(to, "to")?,
                    },
                    Kind::Roll => Op::Roll {
                        key,
                        drawn: drawn.flatten(),
                    },
                })
            }
        }
        d.deserialize_map(V)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The derive `Op` had before its hand-written `Deserialize`: the reference the new
    /// one must agree with on every input, accepted or not.
    #[derive(Debug, Deserialize)]
    #[serde(tag = "op", rename_all = "lowercase")]
    enum Derived {
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
        Roll {
            key: String,
            #[serde(default)]
            drawn: Option<i64>,
        },
    }

    impl From<Derived> for Op {
        fn from(d: Derived) -> Op {
            match d {
                Derived::Get { key } => Op::Get { key },
                Derived::Put { key, value } => Op::Put { key, value },
                Derived::Cas { key, from, to } => Op::Cas { key, from, to },
                Derived::Roll { key, drawn } => Op::Roll { key, drawn },
            }
        }
    }

    #[test]
    fn op_decodes_like_the_derived_tagged_form() {
        let ops = [
            Op::Get { key: "k".into() },
            Op::Put {
                key: "k\"1".into(),
                value: Value::Int(-3),
            },
            Op::Put {
                key: "k".into(),
                value: Value::Str("x".into()),
            },
            Op::Cas {
                key: "k".into(),
                from: Value::Int(1),
                to: Value::Str("y".into()),
            },
            Op::Roll {
                key: "k".into(),
                drawn: None,
            },
            Op::Roll {
                key: "k".into(),
                drawn: Some(7),
            },
        ];
        for op in ops {
            let json = serde_json::to_string(&op).unwrap();
            assert_eq!(serde_json::from_str::<Op>(&json).unwrap(), op, "{json}");
        }
        // Any field order, unknown fields, escapes, null drawn; and what both refuse.
        let inputs = [
            r#"{"key":"a","value":2,"op":"put"}"#,
            r#"{"to":3,"key":"a","from":null,"op":"cas"}"#,
            r#"{"to":3,"key":"a","from":1,"op":"cas","extra":[1,{"op":"get"}]}"#,
            r#"{"op":"roll","key":"a","drawn":null}"#,
            r#"{"op":"g\u0065t","key":"\u0041"}"#,
            r#"{"op":"get"}"#,
            r#"{"op":"put","key":"a"}"#,
            r#"{"op":"cas","key":"a","from":1}"#,
            r#"{"op":"delete","key":"a"}"#,
            r#"{"key":"a"}"#,
            r#"{"op":"put","key":"a","value":1.5}"#,
            r#"{"op":"put","key":7,"value":1}"#,
            r#"{"op":"roll","key":"a","drawn":"x"}"#,
            r#""get""#,
        ];
        for json in inputs {
            let ours = serde_json::from_str::<Op>(json);
            let derived = serde_json::from_str::<Derived>(json).map(Op::from);
            match (ours, derived) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{json}"),
                (Err(_), Err(_)) => {}
                (a, b) => panic!("{json}: hand-written {a:?}, derived {b:?}"),
            }
        }
        // The differences, both forms nothing writes: the derive also took a sequence
        // (`["get","a"]`), and ignored a field that belongs to another op even when its
        // value was not one (`value` in a get); one pass cannot know the op yet.
        assert!(serde_json::from_str::<Op>(r#"["get","a"]"#).is_err());
        assert!(serde_json::from_str::<Op>(r#"{"op":"get","key":"a","value":1.5}"#).is_err());
        assert_eq!(
            serde_json::from_str::<Op>(r#"{"op":"get","key":"a","value":1}"#).unwrap(),
            Op::Get { key: "a".into() }
        );
        let err = serde_json::from_str::<Op>(r#"{"op":"delete","key":"a"}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown variant `delete`"),
            "{err}"
        );
        let err = serde_json::from_str::<Op>(r#"{"op":"put","key":"a"}"#).unwrap_err();
        assert!(err.to_string().contains("missing field `value`"), "{err}");
        let err = serde_json::from_str::<Op>(r#"{"op":"get","key":"a","key":"b"}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate field `key`"), "{err}");
    }
}
