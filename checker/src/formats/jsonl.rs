//! The native format: JSON Lines, one [`Event`] a line, positions are `time`.

use crate::error::{Error, LineError};
use crate::history::{
    Action, Completion, Event, EventType, History, HistoryBuilder, Outcome, Process, Value,
};
use std::io::{BufRead, BufReader};
use std::path::Path;

/// Reads and validates a native history file, streaming it line by line.
pub fn read_history(path: &Path) -> Result<History, Error> {
    let mut builder = HistoryBuilder::new();
    for_each_event(path, |event, line| apply_event(&mut builder, &event, line))?;
    builder.finish().map_err(|p| Error::history(path, p))
}

/// Reads every event of a native history file (for the EDN exporter and tools).
pub fn read_events(path: &Path) -> Result<Vec<Event>, Error> {
    let mut events = Vec::new();
    for_each_event(path, |event, _| {
        events.push(event);
        Ok(())
    })?;
    Ok(events)
}

/// Builds a history from events in memory, e.g. ones a simulation produced.
pub fn history_from_events(events: &[Event]) -> Result<History, LineError> {
    let mut builder = HistoryBuilder::new();
    for (i, event) in events.iter().enumerate() {
        apply_event(&mut builder, event, i + 1)?;
    }
    builder
        .finish()
        .map_err(|p| LineError::new(events.len(), p))
}

fn for_each_event(
    path: &Path,
    mut each: impl FnMut(Event, usize) -> Result<(), LineError>,
) -> Result<(), Error> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut buf = String::new();
    let mut line = 0;
    loop {
        buf.clear();
        line += 1;
        let n = reader.read_line(&mut buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                Error::input(path, line, "not valid UTF-8")
            } else {
                Error::Io {
                    path: path.to_path_buf(),
                    source: e,
                }
            }
        })?;
        if n == 0 {
            return Ok(());
        }
        let text = buf.trim();
        if text.is_empty() {
            continue;
        }
        let event = parse_line(text).map_err(|p| Error::input(path, line, p))?;
        each(event, line).map_err(|e| e.in_file(path))?;
    }
}

/// Parses one line; the error is a one-line problem without serde's "at line 1" suffix.
pub fn parse_line(text: &str) -> Result<Event, String> {
    serde_json::from_str::<Event>(text).map_err(|e| {
        let msg = e.to_string();
        let msg = match msg.rfind(" at line ") {
            Some(i) => msg[..i].to_string(),
            None => msg,
        };
        if e.is_eof() {
            format!("truncated line: {msg} (column {})", e.column())
        } else if e.is_syntax() {
            format!("malformed JSON: {msg} (column {})", e.column())
        } else {
            msg
        }
    })
}

fn scalar(v: &serde_json::Value, what: &str) -> Result<Value, String> {
    Value::from_json(v)
        .ok_or_else(|| format!("{what} must be an integer, a string or null, not {v}"))
}

/// Decodes an invocation's `f` and `value` into an action.
pub fn action_of(f: &str, value: &serde_json::Value) -> Result<Action, String> {
    Ok(match f {
        "read" => Action::Read,
        "get" => Action::Get,
        "write" => Action::Write(scalar(value, "write value")?),
        "put" => Action::Put(scalar(value, "put value")?),
        "append" => Action::Append(scalar(value, "append value")?),
        "cas" => match value.as_array().map(Vec::as_slice) {
            Some([from, to]) => Action::Cas {
                from: scalar(from, "cas from")?,
                to: scalar(to, "cas to")?,
            },
            _ => return Err(format!("cas value must be [from, to], not {value}")),
        },
        other => {
            return Err(format!(
                "unknown f {other:?} (expected read, write, cas, get, put or append)"
            ))
        }
    })
}

/// Feeds one native event to the builder.
pub(crate) fn apply_event(
    builder: &mut HistoryBuilder,
    event: &Event,
    line: usize,
) -> Result<(), LineError> {
    let process = match event.process {
        Process::Nemesis => return builder.nemesis(event.time, line),
        Process::Client(p) => p,
    };
    let key = event.key.as_deref();
    match event.kind {
        EventType::Invoke => {
            let action = action_of(&event.f, &event.value).map_err(|p| LineError::new(line, p))?;
            builder.invoke(process, key, action, event.time, line)
        }
        EventType::Ok => {
            let outcome = match event.f.as_str() {
                "read" | "get" => Outcome::Read(
                    scalar(&event.value, "value read").map_err(|p| LineError::new(line, p))?,
                ),
                _ => Outcome::Ok,
            };
            builder.complete(
                process,
                &event.f,
                key,
                Completion::Ok(outcome),
                event.time,
                line,
            )
        }
        EventType::Fail => {
            builder.complete(process, &event.f, key, Completion::Fail, event.time, line)
        }
        EventType::Info => {
            builder.complete(process, &event.f, key, Completion::Info, event.time, line)
        }
    }
}
