//! The native format: JSON Lines, one [`Event`] a line, positions are `time`.

use super::lines::{torn_warning, LineReader};
use super::{Budget, ReadError};
use crate::error::{excerpt, Error, LineError};
use crate::history::{
    Action, Completion, Event, EventType, History, HistoryBuilder, Outcome, Process, Value,
};
use std::path::Path;

/// Reads and validates a native history file, streaming it line by line.
pub fn read_history(path: &Path) -> Result<History, Error> {
    read_history_within(path, &mut Budget::until(None)).map_err(|e| e.into_error(path))
}

pub(crate) fn read_history_within(path: &Path, budget: &mut Budget) -> Result<History, ReadError> {
    let mut builder = HistoryBuilder::new();
    let torn = for_each_event(path, budget, |event, line| {
        apply_event(&mut builder, &event, line)
    })?;
    if let Some(warning) = torn {
        builder.warn(warning);
    }
    builder
        .finish()
        .map_err(|p| ReadError::Bad(Error::history(path, p)))
}

/// Reads every event of a native history file (for the EDN exporter and tools); a torn
/// last line is left out, as when checking.
pub fn read_events(path: &Path) -> Result<Vec<Event>, Error> {
    let mut events = Vec::new();
    for_each_event(path, &mut Budget::until(None), |event, _| {
        events.push(event);
        Ok(())
    })
    .map_err(|e| e.into_error(path))?;
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

/// Feeds every event to `each`; returns the warning for a torn last line it dropped.
fn for_each_event(
    path: &Path,
    budget: &mut Budget,
    mut each: impl FnMut(Event, usize) -> Result<(), LineError>,
) -> Result<Option<String>, ReadError> {
    let mut reader = LineReader::open(path)?;
    while let Some(line) = reader.next_line()? {
        budget.tick(line.number)?;
        let parsed = line
            .text(path)
            .map_err(|_| "not valid UTF-8".to_string())
            .and_then(|text| {
                let text = text.trim();
                if text.is_empty() {
                    Ok(None)
                } else {
                    parse_line(text).map(Some)
                }
            });
        match parsed {
            Ok(None) => {}
            Ok(Some(event)) => each(event, line.number).map_err(|e| e.in_file(path))?,
            // Torn: the line stops early (JSON ends too soon, or mid-character).
            Err(problem)
                if !line.terminated
                    && (problem.starts_with("truncated")
                        || problem.starts_with("not valid UTF-8")) =>
            {
                return Ok(Some(torn_warning(path, line.number, &problem)))
            }
            Err(problem) => return Err(Error::input(path, line.number, problem).into()),
        }
    }
    Ok(None)
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
    Value::from_json(v).ok_or_else(|| {
        format!(
            "{what} must be an integer, a string or null, not {}",
            excerpt(&v.to_string())
        )
    })
}

/// Decodes an invocation's `f` and `value` into an action.
pub fn action_of(f: &str, value: &serde_json::Value) -> Result<Action, String> {
    Ok(match f {
        "read" => Action::Read,
        "get" => Action::Get,
        "write" => Action::Write(scalar(value, "write value")?),
        "put" => Action::Put(scalar(value, "put value")?),
        "append" => Action::Append(scalar(value, "append value")?),
        "roll" => Action::Roll,
        "cas" => match value.as_array().map(Vec::as_slice) {
            Some([from, to]) => Action::Cas {
                from: scalar(from, "cas from")?,
                to: scalar(to, "cas to")?,
            },
            _ => {
                return Err(format!(
                    "cas value must be [from, to], not {}",
                    excerpt(&value.to_string())
                ))
            }
        },
        other => {
            return Err(format!(
                "unknown f {} (expected read, write, cas, roll, get, put or append)",
                excerpt(other)
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
    let micro_ops = event.value.as_array().is_some_and(|ops| {
        !ops.is_empty()
            && ops.iter().all(|op| {
                op.as_array()
                    .is_some_and(|o| o.first().is_some_and(|f| f.is_string()))
            })
    });
    if event.f == "txn" || (event.f == "read" && micro_ops) {
        return Err(LineError::new(line, crate::formats::TRANSACTIONAL));
    }
    match event.kind {
        EventType::Invoke => {
            let action = action_of(&event.f, &event.value).map_err(|p| LineError::new(line, p))?;
            builder.invoke(process, key, action, event.time, line)
        }
        EventType::Ok => {
            let outcome = match event.f.as_str() {
                "read" | "get" | "roll" => Outcome::Read(
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
