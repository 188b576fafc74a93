//! Jepsen/Knossos history EDN, read with `clojure-reader`, and the exporter to it.
//!
//! A Jepsen history is a vector or list of op maps (`{:process 0, :type :invoke, :f :read,
//! :value nil}`), or, in newer Jepsen, one map a line with no enclosing vector. Maps may
//! span lines, `;` comments may sit between them, and `:process :nemesis` entries are
//! skipped. Jepsen's history order is its real-time order, so positions are event indexes
//! and `:time` is ignored.
//!
//! Semantics that differ between sources:
//! - Knossos: a register starts at 0, and a read that returns nil matches any value.
//! - Porcupine kv (`Flavor::PorcupineKv`): every key starts as "", and a nil get reads "".

use crate::error::{Error, LineError};
use crate::history::{Action, Completion, Event, History, HistoryBuilder, Outcome, Process, Value};
use clojure_reader::edn::{self as reader, Edn};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

/// Which tool's conventions the file follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Jepsen,
    PorcupineKv,
}

/// Skips whitespace, commas and `;` comments; returns the rest.
fn skip_blank(s: &str) -> &str {
    let mut s = s;
    loop {
        let t = s.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if let Some(comment) = t.strip_prefix(';') {
            s = comment.find('\n').map_or("", |i| &comment[i..]);
        } else {
            return t;
        }
    }
}

/// Tracks the line number of a position in `text` as the reader moves forward.
struct Lines<'a> {
    text: &'a str,
    offset: usize,
    line: usize,
}

impl<'a> Lines<'a> {
    fn line_of(&mut self, rest: &'a str) -> usize {
        let at = self.text.len() - rest.len();
        self.line += self.text[self.offset..at].matches('\n').count();
        self.offset = at;
        self.line
    }
}

fn read_error(e: &clojure_reader::error::Error, line: usize, truncated_at_end: bool) -> LineError {
    let at = line + e.line.unwrap_or(1) - 1;
    let code = format!("{:?}", e.code);
    if truncated_at_end || code.contains("EOF") {
        LineError::new(at, format!("truncated EDN form ({code})"))
    } else {
        LineError::new(at, format!("malformed EDN ({code})"))
    }
}

/// Reads a Jepsen/Knossos history or a Porcupine kv file.
pub fn read_history(path: &Path, text: &str, flavor: Flavor) -> Result<History, Error> {
    let mut builder = HistoryBuilder::new();
    if flavor == Flavor::Jepsen {
        builder.set_register_initial(Value::Int(0));
    }
    let mut lines = Lines {
        text,
        offset: 0,
        line: 1,
    };
    let mut rest = skip_blank(text);
    // An enclosing vector or list: read its elements one by one to keep line numbers.
    let closing = match rest.chars().next() {
        Some('[') => Some(']'),
        Some('(') => Some(')'),
        _ => None,
    };
    if closing.is_some() {
        rest = skip_blank(&rest[1..]);
    }
    let mut position = 0u64;
    loop {
        let line = lines.line_of(rest);
        match (rest.chars().next(), closing) {
            (None, None) => break,
            (None, Some(c)) => {
                return Err(Error::input(
                    path,
                    line,
                    format!("truncated history: missing closing {c:?}"),
                ))
            }
            (Some(c), Some(close)) if c == close => {
                let after = skip_blank(&rest[1..]);
                if !after.is_empty() {
                    let line = lines.line_of(after);
                    return Err(Error::input(
                        path,
                        line,
                        "unexpected content after the history",
                    ));
                }
                break;
            }
            _ => {}
        }
        let (form, after) =
            reader::read(rest).map_err(|e| read_error(&e, line, false).in_file(path))?;
        position += 1;
        apply_form(&mut builder, &form, flavor, position, line).map_err(|e| e.in_file(path))?;
        rest = skip_blank(after);
    }
    builder.finish().map_err(|p| Error::history(path, p))
}

fn field<'a, 'e>(
    map: &'a std::collections::BTreeMap<Edn<'e>, Edn<'e>>,
    name: &'static str,
) -> Option<&'a Edn<'e>> {
    map.get(&Edn::Key(name.into()))
}

fn scalar(e: &Edn, what: &str, line: usize) -> Result<Value, LineError> {
    match e {
        Edn::Nil => Ok(Value::Nil),
        Edn::Int(i) => Ok(Value::Int(*i)),
        Edn::Str(s) => Ok(Value::Str(Arc::from(&**s))),
        other => Err(LineError::new(
            line,
            format!("{what} must be an integer, a string or nil, not {other}"),
        )),
    }
}

fn apply_form(
    builder: &mut HistoryBuilder,
    form: &Edn,
    flavor: Flavor,
    position: u64,
    line: usize,
) -> Result<(), LineError> {
    let Edn::Map(map) = form else {
        return Err(LineError::new(
            line,
            format!("expected an op map, found {form}"),
        ));
    };
    let process = match field(map, "process") {
        Some(Edn::Int(p)) if *p >= 0 => *p as u64,
        Some(Edn::Key(k)) if k == "nemesis" => return builder.nemesis(position, line),
        Some(other) => {
            return Err(LineError::new(line, format!("bad :process {other}")));
        }
        None => return Err(LineError::new(line, "op map has no :process")),
    };
    let kind = match field(map, "type") {
        Some(Edn::Key(k)) => k.to_string(),
        Some(other) => return Err(LineError::new(line, format!("unknown op type {other}"))),
        None => return Err(LineError::new(line, "op map has no :type")),
    };
    let f = match field(map, "f") {
        Some(Edn::Key(k)) => k.to_string(),
        Some(other) => return Err(LineError::new(line, format!("unknown f {other}"))),
        None => return Err(LineError::new(line, "op map has no :f")),
    };
    let key = match field(map, "key") {
        None | Some(Edn::Nil) => None,
        Some(Edn::Str(s)) => Some(s.to_string()),
        Some(Edn::Key(s)) => Some(s.to_string()),
        Some(Edn::Int(i)) => Some(i.to_string()),
        Some(other) => return Err(LineError::new(line, format!("bad :key {other}"))),
    };
    let nil = Edn::Nil;
    let value = field(map, "value").unwrap_or(&nil);
    match kind.as_str() {
        "invoke" => {
            let action = match f.as_str() {
                "read" => Action::Read,
                "get" => Action::Get,
                "write" => Action::Write(scalar(value, "write value", line)?),
                "put" => Action::Put(scalar(value, "put value", line)?),
                "append" => Action::Append(scalar(value, "append value", line)?),
                "cas" => match value {
                    Edn::Vector(v) | Edn::List(v) if v.len() == 2 => Action::Cas {
                        from: scalar(&v[0], "cas from", line)?,
                        to: scalar(&v[1], "cas to", line)?,
                    },
                    _ => {
                        return Err(LineError::new(
                            line,
                            format!("cas value must be [from to], not {value}"),
                        ))
                    }
                },
                other => {
                    return Err(LineError::new(
                        line,
                        format!(
                            "unknown f :{other} (expected read, write, cas, get, put or append)"
                        ),
                    ))
                }
            };
            builder.invoke(process, key.as_deref(), action, position, line)
        }
        "ok" => {
            let outcome = match (f.as_str(), value) {
                // Knossos: a nil read is a read whose value was not recorded; it matches anything.
                ("read", Edn::Nil) if flavor == Flavor::Jepsen => Outcome::Unknown,
                ("get", Edn::Nil) => Outcome::Read(Value::Str(Arc::from(""))),
                ("read" | "get", v) => Outcome::Read(scalar(v, "value read", line)?),
                _ => Outcome::Ok,
            };
            builder.complete(
                process,
                &f,
                key.as_deref(),
                Completion::Ok(outcome),
                position,
                line,
            )
        }
        "fail" => builder.complete(
            process,
            &f,
            key.as_deref(),
            Completion::Fail,
            position,
            line,
        ),
        "info" => builder.complete(
            process,
            &f,
            key.as_deref(),
            Completion::Info,
            position,
            line,
        ),
        other => Err(LineError::new(
            line,
            format!("unknown op type :{other} (expected invoke, ok, fail or info)"),
        )),
    }
}

/// Writes native events as a Jepsen history EDN vector, one op map a line, so a history can
/// be cross-checked with Knossos or Elle. Extra fields become keywords.
pub fn export(events: &[Event]) -> String {
    let mut out = String::from("[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push_str("\n ");
        }
        out.push_str("{:process ");
        match e.process {
            Process::Client(p) => write!(out, "{p}").unwrap(),
            Process::Nemesis => out.push_str(":nemesis"),
        }
        write!(out, ", :type :{}, :f {}", e.kind.as_str(), keyword(&e.f)).unwrap();
        if let Some(k) = &e.key {
            out.push_str(", :key ");
            write_edn_string(&mut out, k);
        }
        out.push_str(", :value ");
        write_edn(&mut out, &e.value);
        write!(out, ", :time {}", e.time).unwrap();
        for (k, v) in &e.extra {
            write!(out, ", {} ", keyword(k)).unwrap();
            write_edn(&mut out, v);
        }
        out.push('}');
    }
    out.push_str("]\n");
    out
}

fn keyword(name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || "-_?!*+.<>=/".contains(c))
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        format!(":{name}")
    } else {
        // Not a valid keyword: keep the name as a string so nothing is lost.
        let mut s = String::new();
        write_edn_string(&mut s, name);
        s
    }
}

fn write_edn_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_edn(out: &mut String, v: &serde_json::Value) {
    use serde_json::Value as J;
    match v {
        J::Null => out.push_str("nil"),
        J::Bool(b) => write!(out, "{b}").unwrap(),
        J::Number(n) => write!(out, "{n}").unwrap(),
        J::String(s) => write_edn_string(out, s),
        J::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_edn(out, item);
            }
            out.push(']');
        }
        J::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&keyword(k));
                out.push(' ');
                write_edn(out, item);
            }
            out.push('}');
        }
    }
}
