//! The history recorder: every event is appended to `history.jsonl` as it happens, in
//! the shared JSON Lines contract, by one writer thread that flushes every couple of
//! milliseconds — so a crash or kill loses at most the events of the last flush period.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use workloads::{Completion, Op, OpFn};

/// The harness's one clock: monotonic nanoseconds since the test started.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    pub fn start() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

// The event vocabulary is the checker's, so what the harness writes is what it reads.
pub use checker::history::{EventType, Process};

/// One line of `history.jsonl`. `node` and `error` are free-form extras the contract keeps.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventType,
    pub process: Process,
    pub f: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub value: serde_json::Value,
    pub time: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Event {
    /// The invocation of `op`: reads carry `null`, writes their value, cas `[from, to]`.
    pub fn invoke(process: u64, op: &Op, node: &str, time: u64) -> Self {
        let value = match op.f {
            OpFn::Read => serde_json::Value::Null,
            OpFn::Write(v) => v.into(),
            OpFn::Cas(from, to) => serde_json::json!([from, to]),
        };
        Self {
            kind: EventType::Invoke,
            process: Process::Client(process),
            f: op.f.name(),
            key: op.key.clone(),
            value,
            time,
            node: Some(node.to_string()),
            error: None,
        }
    }

    /// The completion matching `invoke`; an ok read carries the value read.
    pub fn complete(invoke: &Event, completion: &Completion, time: u64) -> Self {
        let (kind, value, error) = match completion {
            Completion::Ok { read } => {
                let value = if invoke.f == "read" {
                    read.map_or(serde_json::Value::Null, Into::into)
                } else {
                    invoke.value.clone()
                };
                (EventType::Ok, value, None)
            }
            Completion::Fail { error } => {
                (EventType::Fail, invoke.value.clone(), Some(error.clone()))
            }
            Completion::Info { error } => {
                (EventType::Info, invoke.value.clone(), Some(error.clone()))
            }
        };
        Self {
            kind,
            process: invoke.process,
            f: invoke.f,
            key: invoke.key.clone(),
            value,
            time,
            node: invoke.node.clone(),
            error,
        }
    }

    pub fn nemesis(kind: EventType, f: &'static str, value: serde_json::Value, time: u64) -> Self {
        Self {
            kind,
            process: Process::Nemesis,
            f,
            key: None,
            value,
            time,
            node: None,
            error: None,
        }
    }
}

/// Appends events to `history.jsonl` from a dedicated thread.
///
/// The recorder stamps each event's time itself, under the same lock as the append, so
/// the file is in time order (the checker rejects a history whose times go backwards)
/// and every event's time is when it was recorded. Workers only push to a buffer; the
/// writer thread takes the whole buffer every `FLUSH_EVERY`, serializes it and flushes
/// it to the file — so a crash loses at most the last few milliseconds of events, and
/// recording costs a worker a lock and a push, not a syscall or a thread wake-up.
#[derive(Clone)]
pub struct Recorder {
    pending: Arc<Mutex<Vec<Event>>>,
    clock: Clock,
}

/// How often the writer drains the buffer to disk.
pub const FLUSH_EVERY: Duration = Duration::from_millis(2);

pub struct RecorderHandle {
    thread: JoinHandle<std::io::Result<u64>>,
}

impl Recorder {
    pub fn create(path: &Path, clock: Clock) -> std::io::Result<(Recorder, RecorderHandle)> {
        let file = File::create(path)?;
        let pending: Arc<Mutex<Vec<Event>>> = Arc::new(Mutex::new(Vec::with_capacity(4096)));
        let thread = {
            let pending = pending.clone();
            std::thread::Builder::new()
                .name("history-writer".into())
                .spawn(move || {
                    let mut out = BufWriter::with_capacity(1 << 20, file);
                    let mut batch = Vec::with_capacity(4096);
                    let mut written = 0u64;
                    loop {
                        // Every Recorder but ours gone: this drain is the last.
                        let last = Arc::strong_count(&pending) == 1;
                        std::mem::swap(
                            &mut batch,
                            &mut *pending.lock().unwrap_or_else(|e| e.into_inner()),
                        );
                        for event in batch.drain(..) {
                            serde_json::to_writer(&mut out, &event)?;
                            out.write_all(b"\n")?;
                            written += 1;
                        }
                        out.flush()?;
                        if last {
                            return Ok(written);
                        }
                        std::thread::sleep(FLUSH_EVERY);
                    }
                })?
        };
        Ok((Recorder { pending, clock }, RecorderHandle { thread }))
    }

    /// Stamps `event` with the current time and appends it; returns the time.
    pub fn record(&self, mut event: Event) -> u64 {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        event.time = self.clock.now_ns();
        let time = event.time;
        pending.push(event);
        time
    }
}

impl RecorderHandle {
    /// Waits for every recorder clone to be dropped and the file flushed; returns the
    /// number of events written.
    pub fn finish(self) -> std::io::Result<u64> {
        self.thread
            .join()
            .map_err(|_| std::io::Error::other("history writer panicked"))?
    }
}
