//! The history recorder: every event is appended to `history.jsonl` as it happens, in
//! the shared JSON Lines contract, by one writer thread that flushes every couple of
//! milliseconds — so a crash or kill loses at most the events of the last flush period.

use std::fs::File;
use std::io::Write;
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
    /// The invocation of `op`: reads and rolls carry `null`, writes their value, cas
    /// `[from, to]`.
    pub fn invoke(process: u64, op: &Op, node: &str, time: u64) -> Self {
        let value = match op.f {
            OpFn::Read | OpFn::Roll => serde_json::Value::Null,
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
                // A read carries what it read, a roll the value it set.
                let value = if invoke.f == "read" || invoke.f == "roll" {
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
/// writer thread takes the whole buffer every `FLUSH_EVERY`, serializes it and writes it
/// to the file in one call — so a crash loses at most the last few milliseconds of
/// events, and recording costs a worker a lock and a push, not a syscall.
///
/// The first write error (disk full) ends writing at once: the file is cut back to the
/// last whole line, so what was written stays a checkable history; the `on_error` hook
/// is told (the pipeline stops the main phase), and events recorded after that are
/// dropped and counted. [`RecorderHandle::finish`] closes the history: events recorded
/// after it are dropped too, so no clone needs to be tracked down first.
#[derive(Clone)]
pub struct Recorder {
    pending: Arc<Mutex<Pending>>,
    clock: Clock,
}

struct Pending {
    events: Vec<Event>,
    /// No more events are taken (finished, or writing failed).
    closed: bool,
    /// Events recorded after closing.
    dropped: u64,
}

/// How often the writer drains the buffer to disk.
pub const FLUSH_EVERY: Duration = Duration::from_millis(2);

/// Where the writer thread puts serialized lines.
pub trait HistorySink: Send {
    /// Writes all of `bytes` (whole lines).
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// Cuts the history back to its first `len` bytes (after a failed append).
    fn truncate(&mut self, len: u64) -> std::io::Result<()>;
}

impl HistorySink for File {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write_all(bytes)
    }

    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        use std::io::{Seek, SeekFrom};
        self.set_len(len)?;
        self.seek(SeekFrom::Start(len)).map(|_| ())
    }
}

impl HistorySink for Box<dyn HistorySink> {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        (**self).append(bytes)
    }

    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        (**self).truncate(len)
    }
}

/// The environment variable that caps `history.jsonl` at a number of bytes, past which
/// writes fail with "no space left on device": a full disk on demand, for tests.
pub const CAP_ENV: &str = "FAULTLINE_HISTORY_CAP_BYTES";

/// A sink that behaves like a disk with `cap` bytes free: the append that would pass it
/// writes what fits and fails with `ENOSPC`.
pub struct CappedSink<S> {
    pub inner: S,
    pub cap: u64,
    written: u64,
}

impl<S: HistorySink> CappedSink<S> {
    pub fn new(inner: S, cap: u64) -> Self {
        Self {
            inner,
            cap,
            written: 0,
        }
    }
}

impl<S: HistorySink> HistorySink for CappedSink<S> {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let room = self.cap.saturating_sub(self.written) as usize;
        let fits = room.min(bytes.len());
        self.inner.append(&bytes[..fits])?;
        self.written += fits as u64;
        if fits < bytes.len() {
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        self.inner.truncate(len)?;
        self.written = len;
        Ok(())
    }
}

/// Why the history is incomplete.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Writing failed after `written` events; the file holds exactly those, whole lines.
    #[error("writing the history failed after {written} events: {source}")]
    Write {
        written: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("the history writer panicked")]
    Panicked,
}

pub struct RecorderHandle {
    pending: Arc<Mutex<Pending>>,
    thread: JoinHandle<Result<u64, HistoryError>>,
}

/// Called once, from the writer thread, with the error that stopped the history.
pub type OnError = Box<dyn FnOnce(&HistoryError) + Send>;

impl Recorder {
    /// Creates `path` and starts writing to it.
    pub fn create(path: &Path, clock: Clock) -> std::io::Result<(Recorder, RecorderHandle)> {
        Self::create_with(File::create(path)?, clock, Box::new(|_| {}))
    }

    /// Starts writing to `sink`; `on_error` hears of the first write error.
    pub fn create_with(
        mut sink: impl HistorySink + 'static,
        clock: Clock,
        on_error: OnError,
    ) -> std::io::Result<(Recorder, RecorderHandle)> {
        let pending = Arc::new(Mutex::new(Pending {
            events: Vec::with_capacity(4096),
            closed: false,
            dropped: 0,
        }));
        let thread = {
            let pending = pending.clone();
            std::thread::Builder::new()
                .name("history-writer".into())
                .spawn(move || {
                    let mut batch = Vec::with_capacity(4096);
                    let mut bytes = Vec::with_capacity(1 << 20);
                    let (mut written, mut good) = (0u64, 0u64);
                    loop {
                        let last = {
                            let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
                            std::mem::swap(&mut batch, &mut p.events);
                            p.closed
                        };
                        bytes.clear();
                        let count = batch.len() as u64;
                        for event in batch.drain(..) {
                            serde_json::to_writer(&mut bytes, &event)
                                .map_err(std::io::Error::other)
                                .expect("an event always serializes");
                            bytes.push(b'\n');
                        }
                        if !bytes.is_empty() {
                            if let Err(source) = sink.append(&bytes) {
                                // Keep whole lines only; a failed cut leaves a torn last
                                // line, which the checker reports by line number.
                                let _ = sink.truncate(good);
                                {
                                    let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
                                    p.closed = true;
                                    p.dropped += p.events.len() as u64;
                                    p.events.clear();
                                }
                                let error = HistoryError::Write { written, source };
                                on_error(&error);
                                return Err(error);
                            }
                            good += bytes.len() as u64;
                            written += count;
                        }
                        if last {
                            return Ok(written);
                        }
                        std::thread::sleep(FLUSH_EVERY);
                    }
                })?
        };
        Ok((
            Recorder {
                pending: pending.clone(),
                clock,
            },
            RecorderHandle { pending, thread },
        ))
    }

    /// Stamps `event` with the current time and appends it; returns the time. After the
    /// history is closed (finished, or writing failed) the event is dropped.
    /// The clock this recorder stamps events with (for samplers that must share it).
    pub fn clock(&self) -> Clock {
        self.clock
    }

    pub fn record(&self, mut event: Event) -> u64 {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        event.time = self.clock.now_ns();
        let time = event.time;
        if pending.closed {
            pending.dropped += 1;
        } else {
            pending.events.push(event);
        }
        time
    }
}

impl RecorderHandle {
    /// Closes the history and waits until every event recorded before is on disk; returns
    /// the number of events written.
    pub fn finish(self) -> Result<u64, HistoryError> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closed = true;
        self.thread.join().map_err(|_| HistoryError::Panicked)?
    }

    /// Events recorded after the history closed or failed (not in the file).
    pub fn dropped(&self) -> u64 {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that holds its bytes in memory and fails every append once `limit` bytes
    /// would be exceeded, keeping the part that fit (a disk filling mid-write).
    struct SmallDisk {
        data: Arc<Mutex<Vec<u8>>>,
        limit: usize,
    }

    impl HistorySink for SmallDisk {
        fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
            let mut data = self.data.lock().unwrap();
            let room = self.limit.saturating_sub(data.len());
            data.extend_from_slice(&bytes[..room.min(bytes.len())]);
            if bytes.len() > room {
                return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
            }
            Ok(())
        }

        fn truncate(&mut self, len: u64) -> std::io::Result<()> {
            self.data.lock().unwrap().truncate(len as usize);
            Ok(())
        }
    }

    fn write_event(i: u64) -> Event {
        Event::nemesis(EventType::Info, "start-partition", i.into(), 0)
    }

    #[test]
    fn a_full_disk_stops_the_history_at_a_whole_line_and_says_so_once() {
        let data = Arc::new(Mutex::new(Vec::new()));
        let told = Arc::new(Mutex::new(Vec::new()));
        let sink = SmallDisk {
            data: data.clone(),
            limit: 1000,
        };
        let hook = {
            let told = told.clone();
            Box::new(move |e: &HistoryError| told.lock().unwrap().push(e.to_string())) as OnError
        };
        let (recorder, handle) = Recorder::create_with(sink, Clock::start(), hook).unwrap();
        for i in 0..10_000 {
            recorder.record(write_event(i));
            if i % 100 == 0 {
                std::thread::sleep(FLUSH_EVERY);
            }
        }
        let dropped_before_finish = handle.dropped();
        let result = handle.finish();
        let Err(HistoryError::Write { written, source }) = result else {
            panic!("expected a write error, got {result:?}");
        };
        assert_eq!(source.raw_os_error(), Some(libc::ENOSPC));
        assert!(
            dropped_before_finish > 0,
            "events after the failure are dropped"
        );
        assert_eq!(told.lock().unwrap().len(), 1, "told exactly once");
        assert!(told.lock().unwrap()[0].contains("No space left"));
        // What is on "disk" is exactly the events counted, each a whole JSON line.
        let text = String::from_utf8(data.lock().unwrap().clone()).unwrap();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "torn last line: {text:?}"
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len() as u64, written);
        for line in lines {
            serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
        assert!(text.len() <= 1000);
    }

    #[test]
    fn events_after_finish_are_dropped_not_lost_silently() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let (recorder, handle) = Recorder::create(&path, Clock::start()).unwrap();
        recorder.record(write_event(1));
        let keep = recorder.clone();
        assert_eq!(handle.finish().unwrap(), 1, "finish needs no clone dropped");
        keep.record(write_event(2));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
    }
}
