//! Jepsen/Knossos history EDN, read with `clojure-reader`, and the exporter to it.
//!
//! A Jepsen history is a vector or list of op maps (`{:process 0, :type :invoke, :f :read,
//! :value nil}`), or, in newer Jepsen, one map a line with no enclosing vector. Maps may
//! span lines, `;` comments may sit between them, and `:process :nemesis` entries are
//! skipped. Jepsen's history order is its real-time order, so positions are event indexes
//! and `:time` is ignored.
//!
//! jepsen.independent's multi-key values, `:value [k v]` (cas: `[k [from to]]`), are split
//! into key `k` and value `v`, exactly like the native format's `key`. A `:txn`, or a read
//! whose value is a list of micro-ops, is refused: that is an Elle history.
//!
//! Semantics that differ between sources:
//! - Jepsen/Knossos: a read that returns nil matches any value. Registers start at nil
//!   (Jepsen's register workloads); Knossos's own tests use 0 — pass `--initial 0`.
//! - Porcupine kv (`Flavor::PorcupineKv`): every key starts as "", and a nil get reads "".

use super::lines::{torn_warning, LineReader};
use super::{Budget, ReadError};
use crate::error::{excerpt, name_excerpt, Error, LineError};
use crate::history::{Action, Completion, Event, History, HistoryBuilder, Outcome, Process, Value};
use clojure_reader::edn::{self as reader, Edn};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

/// Which tool's conventions the file follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Jepsen/Knossos: a nil read value means "not recorded" and matches any value.
    Jepsen,
    /// Porcupine's kv files: a nil get reads "".
    PorcupineKv,
    /// Porcupine's etcd logs: a nil read reads nil; `:fail :read` returned no value.
    EtcdLog,
}

/// Most levels of nesting a form may have (an op map with a cas tuple is 3 deep). Deeper
/// input is refused with one line instead of overflowing the reader's recursion.
pub const MAX_DEPTH: usize = 64;

fn read_error(e: &clojure_reader::error::Error, line: usize) -> LineError {
    let at = line + e.line.unwrap_or(1) - 1;
    let code = format!("{:?}", e.code);
    if code.contains("EOF") {
        LineError::new(at, format!("truncated EDN form ({})", excerpt(&code)))
    } else {
        LineError::new(at, format!("malformed EDN ({})", excerpt(&code)))
    }
}

/// Parses one EDN form (text a [`FormSplitter`] delimited, or a value of a text line).
pub(crate) fn read_form<'t>(text: &'t str, line: usize) -> Result<(Edn<'t>, &'t str), LineError> {
    let depth = max_depth(text.as_bytes());
    if depth > MAX_DEPTH {
        return Err(LineError::new(
            line,
            format!("value nested {depth} levels deep (at most {MAX_DEPTH} accepted)"),
        ));
    }
    reader::read(text).map_err(|e| read_error(&e, line))
}

/// Deepest bracket nesting in `text`, outside strings, comments and character literals.
fn max_depth(text: &[u8]) -> usize {
    let (mut depth, mut max, mut i) = (0usize, 0usize, 0);
    let mut in_string = false;
    while i < text.len() {
        let c = text[i];
        if in_string {
            match c {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match c {
                b'"' => in_string = true,
                b'\\' => i += 1,
                b';' => {
                    while i < text.len() && text[i] != b'\n' {
                        i += 1;
                    }
                }
                b'(' | b'[' | b'{' => {
                    depth += 1;
                    max = max.max(depth);
                }
                b')' | b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        i += 1;
    }
    max
}

/// Where the reader is in the file's structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Nothing but blanks yet.
    Start,
    /// Inside an enclosing vector or list that ends with this byte.
    Enclosed(u8),
    /// One form after another, no enclosing collection (one map a line).
    Loose,
    /// After the enclosing collection's end.
    Done,
}

/// Cuts a stream of lines into top-level forms without parsing them: tracks bracket depth
/// outside strings, comments and character literals, bounds it by [`MAX_DEPTH`], and hands
/// each complete form, with the line it starts on, to the parser. So a history of any size
/// is read one form at a time, and nesting never reaches the recursive reader unbounded.
struct FormSplitter {
    layout: Layout,
    form: Vec<u8>,
    form_line: usize,
    depth: usize,
    in_string: bool,
}

impl FormSplitter {
    /// Scans one line; calls `each(form, line)` for every form completed in it.
    fn line(
        &mut self,
        text: &[u8],
        number: usize,
        each: &mut dyn FnMut(&str, usize) -> Result<(), LineError>,
    ) -> Result<(), LineError> {
        let mut i = 0;
        while i < text.len() {
            let c = text[i];
            if self.depth > 0 {
                if self.in_string {
                    self.form.push(c);
                    match c {
                        b'\\' if i + 1 < text.len() => {
                            self.form.push(text[i + 1]);
                            i += 1;
                        }
                        b'"' => self.in_string = false,
                        _ => {}
                    }
                    i += 1;
                    continue;
                }
                match c {
                    b';' => break,
                    b'"' => self.in_string = true,
                    b'\\' if i + 1 < text.len() => {
                        self.form.push(c);
                        i += 1;
                        self.form.push(text[i]);
                        i += 1;
                        continue;
                    }
                    b'(' | b'[' | b'{' => {
                        self.depth += 1;
                        if self.depth > MAX_DEPTH {
                            return Err(LineError::new(
                                number,
                                format!(
                                    "value nested more than {MAX_DEPTH} levels deep (the form starts on line {})",
                                    self.form_line
                                ),
                            ));
                        }
                    }
                    b')' | b']' | b'}' => self.depth -= 1,
                    _ => {}
                }
                self.form.push(c);
                if self.depth == 0 {
                    let form = std::str::from_utf8(&self.form)
                        .map_err(|_| LineError::new(self.form_line, "not valid UTF-8"))?;
                    each(form, self.form_line)?;
                    self.form.clear();
                }
                i += 1;
                continue;
            }
            match c {
                b' ' | b'\t' | b'\r' | b',' | b'\x0c' => {}
                b';' => break,
                b'[' | b'(' if self.layout == Layout::Start => {
                    self.layout = Layout::Enclosed(if c == b'[' { b']' } else { b')' });
                }
                _ if self.layout == Layout::Enclosed(c) => self.layout = Layout::Done,
                _ if self.layout == Layout::Done => {
                    return Err(LineError::new(
                        number,
                        "unexpected content after the history",
                    ))
                }
                b'{' | b'[' | b'(' | b'#' => {
                    if self.layout == Layout::Start {
                        self.layout = Layout::Loose;
                    }
                    if c == b'#' && text.get(i + 1) != Some(&b'{') {
                        return Err(LineError::new(
                            number,
                            format!("expected an op map, found {}", token(text, i)),
                        ));
                    }
                    self.form_line = number;
                    self.form.push(c);
                    if c == b'#' {
                        self.form.push(b'{');
                        i += 1;
                    }
                    self.depth = 1;
                }
                _ => {
                    return Err(LineError::new(
                        number,
                        format!("expected an op map, found {}", token(text, i)),
                    ))
                }
            }
            i += 1;
        }
        if self.depth > 0 {
            self.form.push(b'\n');
            if self.form.len() > super::lines::MAX_LINE {
                return Err(LineError::new(
                    self.form_line,
                    format!(
                        "form longer than {} MiB: not an op",
                        super::lines::MAX_LINE >> 20
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The token at `i` of a line, quoted short, for an error.
fn token(text: &[u8], i: usize) -> String {
    let end = text[i..]
        .iter()
        .position(|c| c.is_ascii_whitespace() || *c == b',')
        .map_or(text.len(), |n| i + n);
    excerpt(&String::from_utf8_lossy(&text[i..end]))
}

/// Reads a Jepsen/Knossos history or a Porcupine kv file (kept for callers holding text).
pub fn read_history(path: &Path, text: &str, flavor: Flavor) -> Result<History, Error> {
    let mut builder = HistoryBuilder::new();
    let mut splitter = FormSplitter {
        layout: Layout::Start,
        form: Vec::new(),
        form_line: 0,
        depth: 0,
        in_string: false,
    };
    let mut position = 0u64;
    let mut each = |form: &str, line: usize| {
        position += 1;
        parse_form(&mut builder, form, flavor, position, line)
    };
    let mut last = 0;
    for (i, l) in text.lines().enumerate() {
        last = i + 1;
        splitter
            .line(l.as_bytes(), i + 1, &mut each)
            .map_err(|e| e.in_file(path))?;
    }
    finish(path, splitter, builder, last, true)
}

/// Reads a Jepsen/Knossos history or a Porcupine kv file, streaming it.
pub(crate) fn read_file(
    path: &Path,
    flavor: Flavor,
    budget: &mut Budget,
) -> Result<History, ReadError> {
    let mut builder = HistoryBuilder::new();
    let mut splitter = FormSplitter {
        layout: Layout::Start,
        form: Vec::new(),
        form_line: 0,
        depth: 0,
        in_string: false,
    };
    let mut reader = LineReader::open(path)?;
    let mut position = 0u64;
    let (mut last, mut terminated) = (0, true);
    while let Some(line) = reader.next_line()? {
        budget.tick(line.number)?;
        (last, terminated) = (line.number, line.terminated);
        let text = match line.text(path) {
            Ok(t) => t,
            Err(_)
                if !line.terminated
                    && splitter.layout != Layout::Enclosed(b']')
                    && splitter.layout != Layout::Enclosed(b')') =>
            {
                builder.warn(torn_warning(path, line.number, "it is not valid UTF-8"));
                return finish_torn(path, builder);
            }
            Err(e) => return Err(e.into()),
        };
        let mut semantic = false;
        let mut each = |form: &str, at: usize| {
            position += 1;
            let (op, rest) = read_form(form, at)?;
            if !rest.trim().is_empty() {
                return Err(LineError::new(at, "unexpected content after the op map"));
            }
            semantic = true;
            apply_form(&mut builder, &op, flavor, position, at)
        };
        match splitter.line(text.as_bytes(), line.number, &mut each) {
            Ok(()) => {}
            // A torn last line of a one-map-a-line file (it does not parse): dropped with a
            // warning. An op that parses but breaks a rule stays an error.
            Err(e)
                if !line.terminated
                    && !semantic
                    && splitter.layout == Layout::Loose
                    && e.problem.starts_with("truncated") =>
            {
                builder.warn(torn_warning(path, line.number, &e.problem));
                return finish_torn(path, builder);
            }
            Err(e) => return Err(e.in_file(path).into()),
        }
    }
    Ok(finish(path, splitter, builder, last, terminated)?)
}

fn finish_torn(path: &Path, builder: HistoryBuilder) -> Result<History, ReadError> {
    builder
        .finish()
        .map_err(|p| ReadError::Bad(Error::history(path, p)))
}

fn finish(
    path: &Path,
    splitter: FormSplitter,
    mut builder: HistoryBuilder,
    last: usize,
    terminated: bool,
) -> Result<History, Error> {
    if splitter.depth > 0 {
        if splitter.layout == Layout::Loose && splitter.form_line == last && !terminated {
            builder.warn(torn_warning(path, last, "the form on it is not closed"));
        } else {
            return Err(Error::input(
                path,
                splitter.form_line,
                "truncated EDN form: it is not closed before the end of the file",
            ));
        }
    } else if let Layout::Enclosed(c) = splitter.layout {
        return Err(Error::input(
            path,
            if terminated { last + 1 } else { last.max(1) },
            format!("truncated history: missing closing {:?}", c as char),
        ));
    }
    builder.finish().map_err(|p| Error::history(path, p))
}

fn parse_form(
    builder: &mut HistoryBuilder,
    text: &str,
    flavor: Flavor,
    position: u64,
    line: usize,
) -> Result<(), LineError> {
    let (form, rest) = read_form(text, line)?;
    if !rest.trim().is_empty() {
        return Err(LineError::new(line, "unexpected content after the op map"));
    }
    apply_form(builder, &form, flavor, position, line)
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
            format!(
                "{what} must be an integer, a string or nil, not {}",
                excerpt(&other.to_string())
            ),
        )),
    }
}

/// Who performed an op, as the EDN and text formats write it.
pub(crate) enum Who {
    Client(u64),
    Nemesis,
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
            format!("expected an op map, found {}", excerpt(&form.to_string())),
        ));
    };
    let who = match field(map, "process") {
        Some(Edn::Int(p)) if *p >= 0 => Who::Client(*p as u64),
        Some(Edn::Key(k)) if k == "nemesis" => Who::Nemesis,
        Some(other) => {
            return Err(LineError::new(
                line,
                format!("bad :process {}", excerpt(&other.to_string())),
            ));
        }
        None => return Err(LineError::new(line, "op map has no :process")),
    };
    let kind = match field(map, "type") {
        Some(Edn::Key(k)) => k.to_string(),
        Some(other) => {
            return Err(LineError::new(
                line,
                format!("unknown op type {}", excerpt(&other.to_string())),
            ))
        }
        None => return Err(LineError::new(line, "op map has no :type")),
    };
    let f = match field(map, "f") {
        Some(Edn::Key(k)) => k.to_string(),
        Some(other) => {
            return Err(LineError::new(
                line,
                format!("unknown f {}", excerpt(&other.to_string())),
            ))
        }
        None => return Err(LineError::new(line, "op map has no :f")),
    };
    let key = match field(map, "key") {
        None | Some(Edn::Nil) => None,
        Some(Edn::Str(s)) => Some(s.to_string()),
        Some(Edn::Key(s)) => Some(s.to_string()),
        Some(Edn::Int(i)) => Some(i.to_string()),
        Some(other) => {
            return Err(LineError::new(
                line,
                format!("bad :key {}", excerpt(&other.to_string())),
            ))
        }
    };
    let nil = Edn::Nil;
    let value = field(map, "value").unwrap_or(&nil);
    apply_op(builder, who, &kind, &f, key, value, flavor, position, line)
}

/// A key of jepsen.independent's `[k v]` tuples, as a key name.
fn tuple_key(e: &Edn) -> Option<String> {
    match e {
        Edn::Int(i) => Some(i.to_string()),
        Edn::Str(s) => Some(s.to_string()),
        Edn::Key(k) => Some(k.to_string()),
        _ => None,
    }
}

/// Whether a value is a list of Elle micro-ops (`[[:r :x nil] [:append :y 3]]`).
fn is_micro_ops(value: &Edn) -> bool {
    match value {
        Edn::Vector(items) | Edn::List(items) => {
            !items.is_empty()
                && items.iter().all(|op| {
                    matches!(op, Edn::Vector(o) | Edn::List(o) if matches!(o.first(), Some(Edn::Key(_))))
                })
        }
        _ => false,
    }
}

/// Splits a jepsen.independent value `[k v]` (cas: `[k [from to]]`) into key and value,
/// when the op has no `:key` and the value has that shape (a plain register op's value is
/// a scalar, a plain cas's a pair of scalars).
fn independent<'v, 'e>(f: &str, value: &'v Edn<'e>) -> Option<(String, &'v Edn<'e>)> {
    let (Edn::Vector(items) | Edn::List(items)) = value else {
        return None;
    };
    let [k, v] = items.as_slice() else {
        return None;
    };
    let key = tuple_key(k)?;
    let is_tuple = match f {
        "cas" => matches!(v, Edn::Vector(_) | Edn::List(_)),
        _ => true,
    };
    is_tuple.then_some((key, v))
}

/// Feeds one op, from an EDN map or a text line, to the builder.
#[allow(clippy::too_many_arguments)]
pub(crate) fn apply_op(
    builder: &mut HistoryBuilder,
    who: Who,
    kind: &str,
    f: &str,
    key: Option<String>,
    value: &Edn,
    flavor: Flavor,
    position: u64,
    line: usize,
) -> Result<(), LineError> {
    let process = match who {
        Who::Nemesis => return builder.nemesis(position, line),
        Who::Client(p) => p,
    };
    if f == "txn" || (f == "read" && is_micro_ops(value)) {
        return Err(LineError::new(line, super::TRANSACTIONAL));
    }
    let (key, value) = match key {
        Some(k) => (Some(k), value),
        None => match independent(f, value) {
            Some((k, v)) => (Some(k), v),
            None => (None, value),
        },
    };
    let key = key.as_deref();
    match kind {
        "invoke" => {
            let action = match f {
                "read" => Action::Read,
                "get" => Action::Get,
                "roll" => Action::Roll,
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
                            format!(
                                "cas value must be [from to], not {}",
                                excerpt(&value.to_string())
                            ),
                        ))
                    }
                },
                other => {
                    return Err(LineError::new(
                        line,
                        format!(
                            "unknown f :{} (expected read, write, cas, roll, get, put or append)",
                            name_excerpt(other)
                        ),
                    ))
                }
            };
            builder.invoke(process, key, action, position, line)
        }
        "ok" => {
            let outcome = match (f, value) {
                // Knossos and Jepsen: a nil read is a read whose value was not recorded;
                // it matches anything.
                ("read", Edn::Nil) if flavor == Flavor::Jepsen => Outcome::Unknown,
                ("get", Edn::Nil) => Outcome::Read(Value::Str(Arc::from(""))),
                ("read" | "get" | "roll", v) => Outcome::Read(scalar(v, "value read", line)?),
                _ => Outcome::Ok,
            };
            builder.complete(process, f, key, Completion::Ok(outcome), position, line)
        }
        // Porcupine's etcd logs: a read that failed returned no value; it happened, and
        // any state fits it.
        "fail" if flavor == Flavor::EtcdLog && f == "read" => builder.complete(
            process,
            f,
            key,
            Completion::Ok(Outcome::Unknown),
            position,
            line,
        ),
        "fail" => builder.complete(process, f, key, Completion::Fail, position, line),
        "info" => builder.complete(process, f, key, Completion::Info, position, line),
        other => Err(LineError::new(
            line,
            format!(
                "unknown op type :{} (expected invoke, ok, fail or info)",
                name_excerpt(other)
            ),
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
