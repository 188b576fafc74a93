//! What survives `kill -9`: the hard state (term/view and vote) and the log, in the data
//! directory.
//!
//! - `state.json` is replaced atomically (write a temporary file, fsync, rename, fsync the
//!   directory), so a crash leaves either the old or the new hard state.
//! - `log.jsonl` holds one entry per line. Appends are written and fdatasync'd once per
//!   driver batch; an overwritten suffix is cut off with `set_len` first. A torn last line
//!   (a crash mid-write) was never acknowledged to anyone, so it is dropped on load.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::command::NodeId;
use crate::log::Entry;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    /// The current term (passive) or view (active).
    pub term: u64,
    /// Whom this node voted for in `term` (passive only).
    pub vote: Option<NodeId>,
}

pub struct Disk {
    dir: PathBuf,
    log: File,
    /// offsets[k] is the byte offset where entry k+1 starts; the last element is the
    /// length of the file.
    offsets: Vec<u64>,
}

const STATE: &str = "state.json";
const LOG: &str = "log.jsonl";

impl Disk {
    /// Opens (creating if needed) the data directory and loads what it holds.
    pub fn open(dir: &Path) -> anyhow::Result<(Disk, HardState, Vec<Entry>)> {
        fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create data dir {}: {e}", dir.display()))?;
        let state_path = dir.join(STATE);
        let hard = match fs::read(&state_path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: corrupt: {e}", state_path.display()))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => HardState::default(),
            Err(e) => anyhow::bail!("{}: {e}", state_path.display()),
        };
        let log_path = dir.join(LOG);
        let mut log = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&log_path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", log_path.display()))?;
        let mut bytes = Vec::new();
        log.read_to_end(&mut bytes)?;
        let mut entries = Vec::new();
        let mut offsets = vec![0u64];
        let mut pos = 0usize;
        while let Some(nl) = bytes[pos..].iter().position(|&b| b == b'\n') {
            let line = &bytes[pos..pos + nl];
            match serde_json::from_slice::<Entry>(line) {
                Ok(entry) => entries.push(entry),
                Err(e) if pos + nl + 1 == bytes.len() => {
                    tracing::warn!("{}: dropping torn last entry: {e}", log_path.display());
                    break;
                }
                Err(e) => anyhow::bail!(
                    "{}: corrupt entry {}: {e}",
                    log_path.display(),
                    entries.len() + 1
                ),
            }
            pos += nl + 1;
            offsets.push(pos as u64);
        }
        let good = *offsets.last().unwrap();
        if good != bytes.len() as u64 {
            log.set_len(good)?;
            log.sync_data()?;
        }
        let disk = Disk {
            dir: dir.to_path_buf(),
            log,
            offsets,
        };
        Ok((disk, hard, entries))
    }

    pub fn save_hard_state(&mut self, hard: &HardState) -> io::Result<()> {
        let tmp = self.dir.join("state.json.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(hard).map_err(io::Error::other)?)?;
        f.sync_all()?;
        fs::rename(&tmp, self.dir.join(STATE))?;
        File::open(&self.dir)?.sync_all()
    }

    /// Makes the file hold exactly the entries before `from` (as already written) followed
    /// by `entries`. Not durable until [`Disk::sync`].
    pub fn write_log(&mut self, from: u64, entries: &[Entry]) -> io::Result<()> {
        let keep = (from.max(1) - 1) as usize;
        if keep + 1 < self.offsets.len() {
            self.offsets.truncate(keep + 1);
            self.log.set_len(self.offsets[keep])?;
        }
        let start = self.offsets[keep];
        let mut buf = Vec::with_capacity(entries.len() * 96);
        for entry in entries {
            serde_json::to_writer(&mut buf, entry).map_err(io::Error::other)?;
            buf.push(b'\n');
            self.offsets.push(start + buf.len() as u64);
        }
        self.log.seek(SeekFrom::Start(self.offsets[keep]))?;
        self.log.write_all(&buf)
    }

    pub fn sync(&mut self) -> io::Result<()> {
        self.log.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("faultline-disk-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn e(term: u64) -> Entry {
        Entry { term, req: None }
    }

    #[test]
    fn log_and_state_round_trip_with_overwrite_and_torn_tail() {
        let dir = tmpdir("rt");
        {
            let (mut d, hard, entries) = Disk::open(&dir).unwrap();
            assert_eq!(hard, HardState::default());
            assert!(entries.is_empty());
            d.write_log(1, &[e(1), e(1), e(1)]).unwrap();
            d.write_log(3, &[e(2), e(2)]).unwrap();
            d.sync().unwrap();
            d.save_hard_state(&HardState {
                term: 2,
                vote: Some("n2".into()),
            })
            .unwrap();
        }
        // A crash in the middle of a write leaves half a line behind.
        let mut f = OpenOptions::new().append(true).open(dir.join(LOG)).unwrap();
        f.write_all(b"{\"term\":3,\"re").unwrap();
        drop(f);
        let (mut d, hard, entries) = Disk::open(&dir).unwrap();
        assert_eq!(hard.term, 2);
        assert_eq!(hard.vote.as_deref(), Some("n2"));
        assert_eq!(entries, vec![e(1), e(1), e(2), e(2)]);
        d.write_log(5, &[e(3)]).unwrap();
        d.sync().unwrap();
        let (_, _, entries) = Disk::open(&dir).unwrap();
        assert_eq!(entries.len(), 5);
        fs::remove_dir_all(&dir).unwrap();
    }
}
