//! Porcupine's Jepsen etcd logs (`test_data/jepsen/etcd_NNN.log`).
//!
//! One event a line: `INFO  jepsen.util - <process> <type> <f> <value>`, fields split on any
//! whitespace (some files use spaces, some tabs). A single register starting at nil.
//! - `:invoke :read nil`, `:invoke :write N`, `:invoke :cas [FROM TO]`
//! - `:ok :read nil|N`, `:ok :write N`, `:ok :cas [F T]`
//! - `:fail :cas [F T]` — the cas definitely did not apply: left out, as Jepsen does
//! - `:fail :read :timed-out` — the read returned with no value: it matches any state
//! - `:info :write|:cas :timed-out` — outcome unknown: may take effect any time, or never
//!
//! Lines without `jepsen.util - ` are other log output and are skipped. Porcupine's kv
//! `.txt` files are EDN and are read by [`super::edn`].

use crate::error::{Error, LineError};
use crate::history::{Action, Completion, History, HistoryBuilder, Outcome, Value};
use std::path::Path;

const MARKER: &str = "jepsen.util - ";

pub fn read_etcd_log(path: &Path, text: &str) -> Result<History, Error> {
    let mut builder = HistoryBuilder::new();
    let mut position = 0u64;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let Some(at) = raw.find(MARKER) else {
            continue;
        };
        position += 1;
        parse_event(&mut builder, &raw[at + MARKER.len()..], position, line)
            .map_err(|e| e.in_file(path))?;
    }
    builder.finish().map_err(|p| Error::history(path, p))
}

fn int(token: &str, line: usize) -> Result<i64, LineError> {
    token
        .parse()
        .map_err(|_| LineError::new(line, format!("expected an integer, found {token:?}")))
}

fn register_value(token: &str, line: usize) -> Result<Value, LineError> {
    if token == "nil" {
        Ok(Value::Nil)
    } else {
        int(token, line).map(Value::Int)
    }
}

fn parse_event(
    builder: &mut HistoryBuilder,
    body: &str,
    position: u64,
    line: usize,
) -> Result<(), LineError> {
    let tokens: Vec<&str> = body.split_whitespace().collect();
    let [process, kind, f, value @ ..] = tokens.as_slice() else {
        return Err(LineError::new(
            line,
            "truncated line: expected <process> <type> <f> <value>",
        ));
    };
    if value.is_empty() {
        return Err(LineError::new(line, "truncated line: no value"));
    }
    let process = u64::try_from(int(process, line)?)
        .map_err(|_| LineError::new(line, "negative process id"))?;
    let value = value.join(" ");
    let f = f
        .strip_prefix(':')
        .ok_or_else(|| LineError::new(line, format!("expected an :f keyword, found {f:?}")))?;
    match *kind {
        ":invoke" => {
            let action = match f {
                "read" => Action::Read,
                "write" => Action::Write(register_value(&value, line)?),
                "cas" => {
                    let (from, to) = cas_pair(&value, line)?;
                    Action::Cas { from, to }
                }
                other => return Err(LineError::new(line, format!("unknown f :{other}"))),
            };
            builder.invoke(process, None, action, position, line)
        }
        ":ok" => {
            let outcome = if f == "read" {
                Outcome::Read(register_value(&value, line)?)
            } else {
                Outcome::Ok
            };
            builder.complete(process, f, None, Completion::Ok(outcome), position, line)
        }
        // A read that failed returned no value: it happened, and any state fits it.
        ":fail" if f == "read" => builder.complete(
            process,
            f,
            None,
            Completion::Ok(Outcome::Unknown),
            position,
            line,
        ),
        ":fail" => builder.complete(process, f, None, Completion::Fail, position, line),
        ":info" => builder.complete(process, f, None, Completion::Info, position, line),
        other => Err(LineError::new(
            line,
            format!("unknown op type {other:?} (expected :invoke, :ok, :fail or :info)"),
        )),
    }
}

fn cas_pair(value: &str, line: usize) -> Result<(Value, Value), LineError> {
    let inner = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .ok_or_else(|| {
            LineError::new(line, format!("cas value must be [FROM TO], not {value:?}"))
        })?;
    match inner.split_whitespace().collect::<Vec<_>>().as_slice() {
        [from, to] => Ok((register_value(from, line)?, register_value(to, line)?)),
        _ => Err(LineError::new(
            line,
            format!("cas value must be [FROM TO], not {value:?}"),
        )),
    }
}
