//! The bank's durable state: one append-only write-ahead log, `bank.wal` in the data
//! directory, one JSON record a line. The in-memory state is the fold of these records
//! (`State::apply`), so replaying the file after `kill -9` rebuilds balance, vector clock,
//! channel sequence numbers, the unacknowledged outbox, what was delivered, and the
//! sent-transfer log — with nothing to keep consistent between separate files.
//!
//! Records are appended to a memory buffer under the bank's state lock (so file order is
//! state order) and written + fdatasync'd by whoever first needs them durable; everything
//! queued behind a running fsync goes out with the next one (group commit). Anything
//! promised to a client or a peer waits for `sync` first, so a torn, unsynced tail lost
//! in a crash was never acknowledged to anyone and is dropped on load.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::channel::Frame;
use super::model::Transfer;
use crate::command::NodeId;

const FILE: &str = "bank.wal";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "r", rename_all = "snake_case")]
pub enum Record {
    /// First record: the balance everything else starts from (kept so a restart with a
    /// different `--initial-balance` cannot change history).
    Genesis { initial_balance: i64 },
    /// A frame was put on channel self→`to` (a transfer's debit, or a marker).
    Sent { to: NodeId, frame: Frame },
    /// Frame `seq` from `from` was delivered; a transfer is credited.
    Delivered {
        from: NodeId,
        seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transfer: Option<Transfer>,
    },
    /// The receiver acknowledged frames on self→`to`: all up to `upto`, plus `also`.
    Acked {
        to: NodeId,
        upto: u64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        also: Vec<u64>,
    },
    /// This node recorded its state for snapshot `snapshot`. Kept so that a restarted node
    /// never takes part in a snapshot a second time with a different cut.
    Joined { snapshot: u64 },
}

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    /// Bytes appended since open (written or not): positions are offsets in this count.
    appended: u64,
}

/// What the writer needs, shared with the blocking write that outlives a cancelled `sync`.
struct Shared {
    file: File,
    pending: Mutex<Pending>,
    /// Everything appended up to here is written and fdatasync'd. Only the write that
    /// made it so moves it, so it never covers bytes still in flight.
    synced: AtomicU64,
    /// A failed write leaves the file behind memory for good: every later sync fails.
    broken: AtomicBool,
    /// Tests only: how long the next write sleeps first, to keep it in flight.
    #[cfg(test)]
    write_delay_ms: AtomicU64,
}

pub struct Wal {
    shared: Arc<Shared>,
    /// Serialises write+fsync so buffers reach the file in append order. Its guard is
    /// owned by the blocking write itself, never by a caller's future: axum drops a
    /// handler's future when the client goes away, and if that released the turn while
    /// the write still ran, the next write would overlap it and claim it durable.
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl Wal {
    /// Opens (creating) the log, returns it and the records it holds. A new log gets its
    /// `Genesis` record at once.
    pub fn open(dir: &Path, initial_balance: i64) -> anyhow::Result<(Wal, Vec<Record>)> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create data dir {}: {e}", dir.display()))?;
        let path = dir.join(FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut records = Vec::new();
        let mut pos = 0usize;
        while let Some(nl) = bytes[pos..].iter().position(|&b| b == b'\n') {
            match serde_json::from_slice::<Record>(&bytes[pos..pos + nl]) {
                Ok(r) => records.push(r),
                Err(e) => anyhow::bail!(
                    "{}: corrupt record {}: {e}",
                    path.display(),
                    records.len() + 1
                ),
            }
            pos += nl + 1;
        }
        if pos != bytes.len() {
            // A line without its newline is a write cut off by a crash; it was never synced,
            // so nothing depended on it.
            tracing::warn!("{}: dropping torn last record", path.display());
            file.set_len(pos as u64)?;
            file.sync_data()?;
        }
        if records.is_empty() {
            let genesis = Record::Genesis { initial_balance };
            let mut line = serde_json::to_vec(&genesis)?;
            line.push(b'\n');
            file.write_all(&line)?;
            file.sync_all()?;
            File::open(dir)?.sync_all()?;
            records.push(genesis);
        }
        let wal = Wal {
            shared: Arc::new(Shared {
                file,
                pending: Mutex::new(Pending::default()),
                synced: AtomicU64::new(0),
                broken: AtomicBool::new(false),
                #[cfg(test)]
                write_delay_ms: AtomicU64::new(0),
            }),
            turn: Arc::new(tokio::sync::Mutex::new(())),
        };
        Ok((wal, records))
    }

    /// Queues `rec`; returns the position `sync` must reach for it to be durable.
    pub fn append(&self, rec: &Record) -> u64 {
        let mut p = self.shared.pending.lock().unwrap();
        let before = p.buf.len();
        // Serialising our own enum into a Vec cannot fail.
        serde_json::to_writer(&mut p.buf, rec).expect("serialise wal record");
        p.buf.push(b'\n');
        p.appended += (p.buf.len() - before) as u64;
        p.appended
    }

    /// Everything queued so far.
    pub fn appended(&self) -> u64 {
        self.shared.pending.lock().unwrap().appended
    }

    /// Whether everything up to `pos` is on disk.
    pub fn is_durable(&self, pos: u64) -> bool {
        self.shared.synced.load(Ordering::Acquire) >= pos
    }

    /// Returns once every record queued up to `pos` is on disk. Cancellation-safe: a
    /// caller dropped while waiting for its turn has started nothing, and one dropped
    /// later only stops waiting for a write that finishes (and keeps the turn) regardless.
    pub async fn sync(&self, pos: u64) -> io::Result<()> {
        if self.is_durable(pos) {
            return Ok(());
        }
        let turn = self.turn.clone().lock_owned().await;
        if self.is_durable(pos) {
            return Ok(()); // the write before ours carried it
        }
        let shared = self.shared.clone();
        #[cfg(test)]
        let delay = shared.write_delay_ms.swap(0, Ordering::AcqRel);
        let written = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            shared.write_through(
                pos,
                #[cfg(test)]
                delay,
            )
        })
        .await;
        match written {
            Ok(r) => r,
            // The write panicked: whatever it took from the buffer may be lost.
            Err(e) => {
                self.shared.broken.store(true, Ordering::Release);
                Err(io::Error::other(e))
            }
        }
    }
}

impl Shared {
    /// With the turn held: writes and fdatasyncs everything queued, unless `pos` already is.
    fn write_through(&self, pos: u64, #[cfg(test)] delay_ms: u64) -> io::Result<()> {
        if self.broken.load(Ordering::Acquire) {
            return Err(io::Error::other("bank.wal: an earlier write failed"));
        }
        if self.synced.load(Ordering::Acquire) >= pos {
            return Ok(());
        }
        let (buf, end) = {
            let mut p = self.pending.lock().unwrap();
            (std::mem::take(&mut p.buf), p.appended)
        };
        #[cfg(test)]
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let written = (&self.file)
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.synced.store(end, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                self.broken.store(true, Ordering::Release);
                tracing::error!("bank.wal: write failed: {e}");
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bank::channel::{Body, Marker};

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("faultline-bank-wal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// A marker frame padded to about `pad` bytes, so writing it takes a while.
    fn sent(seq: u64, pad: usize) -> Record {
        Record::Sent {
            to: "n2".into(),
            frame: Frame {
                seq,
                body: Body::Marker(Marker {
                    snapshot: 1,
                    initiator: "x".repeat(pad),
                    expires_unix_ms: 0,
                }),
            },
        }
    }

    /// A sync dropped while its write is in flight (what axum does to a handler whose
    /// client goes away) must not let the next sync overtake that write or claim it durable.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_sync_neither_reorders_nor_overclaims() {
        const ROUNDS: u64 = 5;
        let dir = temp_dir("cancel");
        let (wal, _) = Wal::open(&dir, 100).unwrap();
        let genesis = std::fs::metadata(dir.join(FILE)).unwrap().len();
        let mut cancelled = 0;
        for round in 0..ROUNDS {
            let big = wal.append(&sent(2 * round + 1, 1 << 16));
            // Polled once (the write starts, and stays in flight for a while), then dropped.
            wal.shared.write_delay_ms.store(50, Ordering::Release);
            if tokio::time::timeout(Duration::ZERO, wal.sync(big))
                .await
                .is_err()
            {
                cancelled += 1;
            }
            let small = wal.append(&sent(2 * round + 2, 10));
            wal.sync(small).await.unwrap();
            assert!(wal.is_durable(big), "round {round}");
            let len = std::fs::metadata(dir.join(FILE)).unwrap().len();
            assert_eq!(
                len,
                genesis + small,
                "round {round}: sync returned before the cancelled write landed"
            );
        }
        assert!(cancelled > 0, "no sync was cancelled in flight");
        drop(wal);
        let (_, records) = Wal::open(&dir, 100).unwrap();
        let seqs: Vec<u64> = records
            .iter()
            .filter_map(|r| match r {
                Record::Sent { frame, .. } => Some(frame.seq),
                _ => None,
            })
            .collect();
        assert_eq!(seqs, (1..=2 * ROUNDS).collect::<Vec<_>>());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
