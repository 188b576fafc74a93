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

pub struct Wal {
    file: Arc<File>,
    pending: Mutex<Pending>,
    synced: AtomicU64,
    /// Serialises write+fsync so buffers reach the file in append order.
    sync_lock: tokio::sync::Mutex<()>,
    /// A failed write leaves the file behind memory for good: every later sync fails.
    broken: AtomicBool,
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
            file: Arc::new(file),
            pending: Mutex::new(Pending::default()),
            synced: AtomicU64::new(0),
            sync_lock: tokio::sync::Mutex::new(()),
            broken: AtomicBool::new(false),
        };
        Ok((wal, records))
    }

    /// Queues `rec`; returns the position `sync` must reach for it to be durable.
    pub fn append(&self, rec: &Record) -> u64 {
        let mut p = self.pending.lock().unwrap();
        let before = p.buf.len();
        // Serialising our own enum into a Vec cannot fail.
        serde_json::to_writer(&mut p.buf, rec).expect("serialise wal record");
        p.buf.push(b'\n');
        p.appended += (p.buf.len() - before) as u64;
        p.appended
    }

    /// Everything queued so far.
    pub fn appended(&self) -> u64 {
        self.pending.lock().unwrap().appended
    }

    /// Whether everything up to `pos` is on disk.
    pub fn is_durable(&self, pos: u64) -> bool {
        self.synced.load(Ordering::Acquire) >= pos
    }

    /// Returns once every record queued up to `pos` is on disk.
    pub async fn sync(&self, pos: u64) -> io::Result<()> {
        if self.is_durable(pos) {
            return Ok(());
        }
        let _turn = self.sync_lock.lock().await;
        if self.broken.load(Ordering::Acquire) {
            return Err(io::Error::other("bank.wal: an earlier write failed"));
        }
        if self.is_durable(pos) {
            return Ok(());
        }
        let (buf, end) = {
            let mut p = self.pending.lock().unwrap();
            (std::mem::take(&mut p.buf), p.appended)
        };
        let file = self.file.clone();
        let written = tokio::task::spawn_blocking(move || {
            (&*file).write_all(&buf)?;
            file.sync_data()
        })
        .await
        .map_err(io::Error::other)
        .and_then(|r| r);
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
