//! The history model: events as they are written down, and operations as the checker sees them.
//!
//! A history is written as *events* ([`Event`], one line of the native JSON Lines format):
//! a process invokes an operation, later the same process completes it with `ok`, `fail`
//! (it definitely did not happen) or `info` (unknown: it may have happened at any point
//! after its call, or never). The checker pairs events into *operations* ([`Op`]): one call,
//! at most one return. Every importer feeds the same [`HistoryBuilder`], so the pairing
//! rules and their errors are the same for every format.
//!
//! ## Order of events and the equal-time rule
//! Each event has a position: its `time` in the native format, its place in the file in
//! the formats that carry no usable clock (Jepsen/Knossos EDN, Porcupine's files). Positions
//! must never decrease along the file. Operation A precedes operation B in real time iff
//! A's return position is *strictly* smaller than B's call position: at equal positions
//! every call is placed before every return, so a return at `t` and a call at `t` overlap.
//! That is the only safe reading of a clock tick (two stamps in the same nanosecond carry no
//! order), and it never creates a false alarm. In the file-order formats positions are
//! distinct, so the file's order is the real-time order, which is what those formats mean.

use crate::error::LineError;
use rustc_hash::FxHashMap;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

/// A value held by a register or a key: nil, an integer or a string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    Nil,
    Int(i64),
    Str(Arc<str>),
}

impl Value {
    /// Converts a native-format JSON value; `None` if it is not null, an integer or a string.
    pub fn from_json(v: &serde_json::Value) -> Option<Value> {
        match v {
            serde_json::Value::Null => Some(Value::Nil),
            serde_json::Value::Number(n) => n.as_i64().map(Value::Int),
            serde_json::Value::String(s) => Some(Value::Str(Arc::from(s.as_str()))),
            _ => None,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Nil => serde_json::Value::Null,
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Str(s) => serde_json::Value::from(&**s),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => f.write_str("nil"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// Who performed an event: a client process, or the nemesis (ignored by the checker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Process {
    Client(u64),
    Nemesis,
}

impl Serialize for Process {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Process::Client(p) => s.serialize_u64(*p),
            Process::Nemesis => s.serialize_str("nemesis"),
        }
    }
}

impl<'de> Deserialize<'de> for Process {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ProcessVisitor;
        impl Visitor<'_> for ProcessVisitor {
            type Value = Process;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-negative integer or \"nemesis\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Process, E> {
                Ok(Process::Client(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Process, E> {
                u64::try_from(v)
                    .map(Process::Client)
                    .map_err(|_| E::custom(format!("process {v} is negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Process, E> {
                if v == "nemesis" {
                    Ok(Process::Nemesis)
                } else {
                    Err(E::custom(format!(
                        "process {v:?} is neither an integer nor \"nemesis\""
                    )))
                }
            }
        }
        d.deserialize_any(ProcessVisitor)
    }
}

/// The `type` of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Invoke,
    Ok,
    Fail,
    Info,
}

impl EventType {
    pub fn parse(s: &str) -> Option<EventType> {
        match s {
            "invoke" => Some(EventType::Invoke),
            "ok" => Some(EventType::Ok),
            "fail" => Some(EventType::Fail),
            "info" => Some(EventType::Info),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Invoke => "invoke",
            EventType::Ok => "ok",
            EventType::Fail => "fail",
            EventType::Info => "info",
        }
    }
}

/// One line of the native history format (JSON Lines), for writing and reading:
///
/// `{"type":"invoke","process":3,"f":"cas","key":"k7","value":[1,2],"time":123456789}`
///
/// Fields not listed here are kept in `extra` and written back out flat.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventType,
    pub process: Process,
    pub f: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub value: serde_json::Value,
    /// Monotonic nanoseconds from the harness's one clock.
    pub time: u64,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

// Hand-written so that reading a million lines does not pay for `#[serde(flatten)]`, which
// buffers every field; unknown fields go to `extra` as they come.
impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EventVisitor;
        impl<'de> Visitor<'de> for EventVisitor {
            type Value = Event;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object with type, process, f, value and time")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event, A::Error> {
                let mut kind = None;
                let mut process = None;
                let mut f = None;
                let mut key = None;
                let mut value = None;
                let mut time = None;
                let mut extra = serde_json::Map::new();
                while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match &*name {
                        "type" => {
                            let s: std::borrow::Cow<'de, str> = map.next_value()?;
                            kind = Some(EventType::parse(&s).ok_or_else(|| {
                                de::Error::custom(format!(
                                    "unknown op type {s:?} (expected invoke, ok, fail or info)"
                                ))
                            })?);
                        }
                        "process" => process = Some(map.next_value::<Process>()?),
                        "f" => f = Some(map.next_value::<String>()?),
                        "key" => key = map.next_value::<Option<String>>()?,
                        "value" => value = Some(map.next_value::<serde_json::Value>()?),
                        "time" => time = Some(map.next_value::<u64>()?),
                        _ => {
                            extra.insert(name.into_owned(), map.next_value()?);
                        }
                    }
                }
                Ok(Event {
                    kind: kind.ok_or_else(|| de::Error::missing_field("type"))?,
                    process: process.ok_or_else(|| de::Error::missing_field("process"))?,
                    f: f.ok_or_else(|| de::Error::missing_field("f"))?,
                    key,
                    value: value.unwrap_or(serde_json::Value::Null),
                    time: time.ok_or_else(|| de::Error::missing_field("time"))?,
                    extra,
                })
            }
        }
        d.deserialize_map(EventVisitor)
    }
}

/// What an operation asks for. The `f` names are the native format's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    Read,
    Write(Value),
    Cas {
        from: Value,
        to: Value,
    },
    Get,
    Put(Value),
    Append(Value),
    /// A non-deterministic write: the server draws the value (a random number, its clock)
    /// and returns it. An `ok` roll carries the value it set and acts as a write of it; an
    /// `info` or never-completed roll may have set *any* value (or none).
    Roll,
}

impl Action {
    pub fn f(&self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write(_) => "write",
            Action::Cas { .. } => "cas",
            Action::Get => "get",
            Action::Put(_) => "put",
            Action::Append(_) => "append",
            Action::Roll => "roll",
        }
    }

    /// Reads change no state: one whose result is unknown constrains nothing.
    pub fn is_read_only(&self) -> bool {
        matches!(self, Action::Read | Action::Get)
    }
}

/// What the history says came back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Completed `ok`, for an action that returns nothing but success.
    Ok,
    /// A read or get completed `ok` and returned this value.
    Read(Value),
    /// Nothing is known of the result: an `info` or never-completed op (which may or may
    /// not have taken effect), or a completed read with no value (Knossos' nil read,
    /// etcd's `:fail :read :timed-out`).
    Unknown,
}

/// One operation: a call and at most one return, as the checker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub process: u64,
    /// Index into [`History::keys`]; `None` for a history without keys (one register).
    pub key: Option<u32>,
    pub action: Action,
    pub outcome: Outcome,
    /// Position of the call (time, or event index in file-order formats).
    pub call: u64,
    /// Position of the return; `None` when the op may take effect at any time after its
    /// call, or never (`info`, or no completion at all).
    pub ret: Option<u64>,
    pub call_line: usize,
    pub ret_line: Option<usize>,
}

impl Op {
    /// `true` when the op must have taken effect before its return.
    pub fn is_definite(&self) -> bool {
        self.ret.is_some()
    }

    /// The call alone, such as `p3 cas 1->2` or `p1 read`.
    pub fn describe_call(&self) -> String {
        match &self.action {
            Action::Read => format!("p{} read", self.process),
            Action::Get => format!("p{} get", self.process),
            Action::Write(v) => format!("p{} write {v}", self.process),
            Action::Put(v) => format!("p{} put {v}", self.process),
            Action::Append(v) => format!("p{} append {v}", self.process),
            Action::Cas { from, to } => format!("p{} cas {from}->{to}", self.process),
            Action::Roll => format!("p{} roll", self.process),
        }
    }

    /// A short description such as `p3 cas 1->2 ok` or `p1 read -> 4`.
    pub fn describe(&self) -> String {
        let head = self.describe_call();
        match (&self.outcome, self.ret.is_some()) {
            (Outcome::Read(v), _) => format!("{head} -> {v}"),
            (Outcome::Ok, _) => format!("{head} ok"),
            (Outcome::Unknown, true) => format!("{head} -> ?"),
            (Outcome::Unknown, false) => format!("{head} info"),
        }
    }
}

/// A parsed, validated history: operations ordered by call position.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub ops: Vec<Op>,
    /// Key names; `Op::key` indexes this.
    pub keys: Vec<String>,
    /// What a register holds before the first write by the convention of the file's format
    /// (`None`: nil). `--initial` overrides it.
    pub register_initial: Option<Value>,
    /// Ops that completed `fail`: they did not happen and are left out.
    pub failed: usize,
    /// The failed ops themselves (in call order), kept only to explain an invalid part.
    pub failed_ops: Vec<Op>,
    /// Things the reader tolerated and the user should know (e.g. a torn last line dropped).
    pub warnings: Vec<String>,
    /// Nemesis events seen (not checked).
    pub nemesis_events: usize,
}

impl History {
    pub fn key_name(&self, key: Option<u32>) -> Option<&str> {
        key.map(|k| self.keys[k as usize].as_str())
    }

    /// Ops that may take effect at any time after their call, or never.
    pub fn indefinite_ops(&self) -> usize {
        self.ops.iter().filter(|o| o.ret.is_none()).count()
    }
}

/// How an event completes an open operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    Ok(Outcome),
    Fail,
    Info,
}

/// Pairs events into operations and enforces the rules every format shares: positions
/// never decrease, a process has at most one open op, every return has a call with the same
/// `f` and key.
#[derive(Debug, Default)]
pub struct HistoryBuilder {
    history: History,
    /// Ops left out because they failed are marked here and dropped in `finish`.
    dropped: Vec<bool>,
    open: FxHashMap<u64, usize>,
    key_ids: FxHashMap<String, u32>,
    last_pos: Option<(u64, usize)>,
    /// Whether the first op had a key, and its line.
    keyed: Option<(bool, usize)>,
}

impl HistoryBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_register_initial(&mut self, v: Value) {
        self.history.register_initial = Some(v);
    }

    /// Records a warning to show with the report.
    pub fn warn(&mut self, warning: String) {
        self.history.warnings.push(warning);
    }

    /// Client events read so far (operations invoked).
    pub fn ops_so_far(&self) -> usize {
        self.history.ops.len()
    }

    fn advance(&mut self, pos: u64, line: usize) -> Result<(), LineError> {
        if let Some((last, last_line)) = self.last_pos {
            if pos < last {
                return Err(LineError::new(
                    line,
                    format!("non-monotonic time: {pos} is earlier than {last} on line {last_line}"),
                ));
            }
        }
        self.last_pos = Some((pos, line));
        Ok(())
    }

    /// Records a nemesis event: only its position is checked.
    pub fn nemesis(&mut self, pos: u64, line: usize) -> Result<(), LineError> {
        self.advance(pos, line)?;
        self.history.nemesis_events += 1;
        Ok(())
    }

    fn key_id(&mut self, key: &str) -> u32 {
        if let Some(&id) = self.key_ids.get(key) {
            return id;
        }
        let id = self.history.keys.len() as u32;
        self.history.keys.push(key.to_string());
        self.key_ids.insert(key.to_string(), id);
        id
    }

    pub fn invoke(
        &mut self,
        process: u64,
        key: Option<&str>,
        action: Action,
        pos: u64,
        line: usize,
    ) -> Result<(), LineError> {
        self.advance(pos, line)?;
        if let Some(&open) = self.open.get(&process) {
            return Err(LineError::new(
                line,
                format!(
                    "process {process} has two open ops: the {} invoked on line {} has not completed",
                    self.history.ops[open].action.f(),
                    self.history.ops[open].call_line
                ),
            ));
        }
        match (key.is_some(), self.keyed) {
            (has, Some((keyed, first))) if has != keyed => {
                return Err(LineError::new(
                    line,
                    format!(
                        "this op {} a key but the op invoked on line {first} {}: a history is either one register or keyed throughout",
                        if has { "has" } else { "has no" },
                        if keyed { "has one" } else { "has none" }
                    ),
                ))
            }
            (_, None) => self.keyed = Some((key.is_some(), line)),
            _ => {}
        }
        let key = key.map(|k| self.key_id(k));
        self.open.insert(process, self.history.ops.len());
        self.history.ops.push(Op {
            process,
            key,
            action,
            outcome: Outcome::Unknown,
            call: pos,
            ret: None,
            call_line: line,
            ret_line: None,
        });
        self.dropped.push(false);
        Ok(())
    }

    /// Completes the open op of `process`; `f` and `key` must match its invocation.
    pub fn complete(
        &mut self,
        process: u64,
        f: &str,
        key: Option<&str>,
        completion: Completion,
        pos: u64,
        line: usize,
    ) -> Result<(), LineError> {
        self.advance(pos, line)?;
        let Some(idx) = self.open.remove(&process) else {
            return Err(LineError::new(
                line,
                format!("return without a call: process {process} has no open op"),
            ));
        };
        let op = &mut self.history.ops[idx];
        if op.action.f() != f {
            return Err(LineError::new(
                line,
                format!(
                    "completion f {f:?} does not match the {:?} invoked on line {}",
                    op.action.f(),
                    op.call_line
                ),
            ));
        }
        let invoked_key = op.key.map(|k| self.history.keys[k as usize].as_str());
        if key.is_some() && invoked_key != key {
            return Err(LineError::new(
                line,
                format!(
                    "completion key {:?} does not match key {:?} invoked on line {}",
                    key.unwrap_or_default(),
                    invoked_key.unwrap_or_default(),
                    op.call_line
                ),
            ));
        }
        match completion {
            Completion::Ok(outcome) => {
                op.outcome = outcome;
                op.ret = Some(pos);
                op.ret_line = Some(line);
            }
            Completion::Fail => {
                // Kept (with its return) only for explanations; the search never sees it.
                op.ret = Some(pos);
                op.ret_line = Some(line);
                self.dropped[idx] = true;
                self.history.failed += 1;
            }
            // An info op stays open-ended: it may take effect any time after its call.
            Completion::Info => op.ret_line = Some(line),
        }
        Ok(())
    }

    /// Finishes the history. Ops never completed are treated like `info`. A history with
    /// nothing to linearize (no client op, or every one failed) is fine: it is valid, and
    /// the report says it had 0 ops to linearize (Knossos and Jepsen judge it valid too).
    pub fn finish(self) -> Result<History, String> {
        let mut history = self.history;
        let dropped = self.dropped;
        let mut all = std::mem::take(&mut history.ops).into_iter().zip(dropped);
        for (op, failed) in all.by_ref() {
            if failed {
                history.failed_ops.push(op);
            } else {
                history.ops.push(op);
            }
        }
        Ok(history)
    }
}
