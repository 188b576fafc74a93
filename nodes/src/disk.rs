//! What survives `kill -9`: the hard state (term/view and vote) and the log, in the data
//! directory.
//!
//! - `state.json` is replaced atomically (write a temporary file, fsync, rename, fsync the
//!   directory), so a crash leaves either the old or the new hard state.
//! - `log.jsonl` holds one entry per line, followed by zero bytes up to the end of the
//!   file. The file is grown ahead of the log in zero-filled chunks (synced once), so an
//!   append rewrites blocks that already exist and its fdatasync has no file size or
//!   block allocation to write: one data write per sync instead of data plus the inode,
//!   which measured 20–40% less CPU per sync and none of the multi-millisecond stalls
//!   that appending to a fresh file showed (nodes/README.md, Performance). JSON never
//!   holds a raw NUL, so the first zero byte ends the log. Appends are written and
//!   fdatasync'd once per driver batch. An overwritten suffix is first zeroed and synced,
//!   so no crash can leave old entries after new ones. A torn last line (a crash
//!   mid-write) was never acknowledged to anyone, so it is dropped on load.

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
    /// offsets[k] is the byte offset where entry k+1 starts; the last element is where
    /// the log's data ends (zeros follow).
    offsets: Vec<u64>,
    /// Length of the file: zero-filled and synced beyond the data.
    allocated: u64,
    /// `records.jsonl`, opened by `load_records` or the first append (leaderless only).
    records: Option<Records>,
}

/// How far the file is grown ahead of the log at a time (~40k entries).
const GROW: u64 = 4 << 20;

const STATE: &str = "state.json";
const LOG: &str = "log.jsonl";
const RECORDS: &str = "records.jsonl";

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
        let data_end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        let data = &bytes[..data_end];
        let mut entries = Vec::new();
        let mut offsets = vec![0u64];
        let mut pos = 0usize;
        while let Some(nl) = data[pos..].iter().position(|&b| b == b'\n') {
            let line = &data[pos..pos + nl];
            match serde_json::from_slice::<Entry>(line) {
                Ok(entry) => entries.push(entry),
                Err(e) if pos + nl + 1 == data.len() => {
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
        // Whatever follows the last whole entry (a torn line, or bytes of an unsynced
        // write that landed beyond a hole) was never acknowledged: zero it, so later
        // appends never run into it.
        let allocated = bytes.len() as u64;
        zero_tail(&mut log, &bytes, good as usize)?;
        let disk = Disk {
            dir: dir.to_path_buf(),
            log,
            offsets,
            allocated,
            records: None,
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
            // Zero the overwritten suffix and make that durable before anything new is
            // written there, so a crash leaves either the old suffix or none — never new
            // entries followed by remnants of old ones.
            let (cut, end) = (self.offsets[keep], *self.offsets.last().unwrap());
            self.offsets.truncate(keep + 1);
            self.log.seek(SeekFrom::Start(cut))?;
            self.log.write_all(&vec![0; (end - cut) as usize])?;
            self.log.sync_data()?;
        }
        let start = self.offsets[keep];
        let mut buf = Vec::with_capacity(entries.len() * 96);
        for entry in entries {
            serde_json::to_writer(&mut buf, entry).map_err(io::Error::other)?;
            buf.push(b'\n');
            self.offsets.push(start + buf.len() as u64);
        }
        self.reserve(start + buf.len() as u64)?;
        self.log.seek(SeekFrom::Start(start))?;
        self.log.write_all(&buf)
    }

    fn reserve(&mut self, end: u64) -> io::Result<()> {
        reserve(&mut self.log, &mut self.allocated, end)
    }

    pub fn sync(&mut self) -> io::Result<()> {
        self.log.sync_data()
    }

    /// Leaderless mode's write-ahead records (`records.jsonl`, one JSON value a line,
    /// zero bytes after the last one, like `log.jsonl`), as written by earlier runs, and
    /// opens the file for [`Disk::append_records`]. A torn last line (kill -9 mid-write)
    /// was never acknowledged: it is zeroed (with anything after it) and not returned.
    /// Files written by builds that appended without padding load the same way.
    pub fn load_records(&mut self) -> anyhow::Result<Vec<String>> {
        let path = self.dir.join(RECORDS);
        let (records, bytes) =
            Records::open(&self.dir).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let text = String::from_utf8(bytes)
            .map_err(|e| anyhow::anyhow!("{}: not UTF-8: {e}", path.display()))?;
        self.records = Some(records);
        Ok(text.lines().map(str::to_string).collect())
    }

    /// Writes records (each one line, no newline inside) after the last one; durable
    /// after [`Disk::sync_records`].
    pub fn append_records(&mut self, lines: &[String]) -> io::Result<()> {
        if self.records.is_none() {
            self.records = Some(Records::open(&self.dir)?.0);
        }
        let mut buf = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
        }
        self.records.as_mut().unwrap().append(&buf)
    }

    /// Makes written records durable (no-op when none were ever written).
    pub fn sync_records(&mut self) -> io::Result<()> {
        match &self.records {
            Some(r) => r.file.sync_data(),
            None => Ok(()),
        }
    }
}

/// Grows `file` (zero-filled up to `allocated`) to hold at least `end` bytes, in whole
/// [`GROW`] chunks of zeros, synced at once: the size and block allocation are durable
/// before any data written there depends on them, so a later fdatasync writes data only.
fn reserve(file: &mut File, allocated: &mut u64, end: u64) -> io::Result<()> {
    if end <= *allocated {
        return Ok(());
    }
    let new_len = end.div_ceil(GROW) * GROW;
    let zeros = vec![0u8; 1 << 16];
    file.seek(SeekFrom::Start(*allocated))?;
    let mut at = *allocated;
    while at < new_len {
        let n = (new_len - at).min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        at += n as u64;
    }
    file.sync_all()?;
    *allocated = new_len;
    Ok(())
}

/// `records.jsonl` open for writing: records end at `end`, zeros follow up to `allocated`.
///
/// Pre-grown like `log.jsonl`: an appended file's fdatasync also writes the inode (its
/// size), and leaderless mode has three fsyncs in sequence on every command's path
/// (nodes/README.md, Performance).
struct Records {
    file: File,
    end: u64,
    allocated: u64,
}

impl Records {
    /// Opens (creating) the file; returns it and the bytes of its whole records.
    fn open(dir: &Path) -> io::Result<(Records, Vec<u8>)> {
        let path = dir.join(RECORDS);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        // The file's directory entry must survive a crash before anything in it counts.
        File::open(dir)?.sync_all()?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let data_end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        let good = bytes[..data_end]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        // A torn last line, or bytes of an unsynced write that reached the disk beyond a
        // hole, were never acknowledged: zero them, so later records never run into them.
        if zero_tail(&mut file, &bytes, good)? {
            tracing::warn!("{}: dropping torn last record", path.display());
        }
        let allocated = bytes.len() as u64;
        bytes.truncate(good);
        let records = Records {
            file,
            end: good as u64,
            allocated,
        };
        Ok((records, bytes))
    }

    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let end = self.end + buf.len() as u64;
        reserve(&mut self.file, &mut self.allocated, end)?;
        self.file.seek(SeekFrom::Start(self.end))?;
        self.file.write_all(buf)?;
        self.end = end;
        Ok(())
    }
}

/// Zeroes and syncs whatever non-zero bytes follow `good` in a file whose contents are
/// `bytes`; says whether there were any.
fn zero_tail(file: &mut File, bytes: &[u8], good: usize) -> io::Result<bool> {
    if bytes[good..].iter().all(|&b| b == 0) {
        return Ok(false);
    }
    file.seek(SeekFrom::Start(good as u64))?;
    file.write_all(&vec![0; bytes.len() - good])?;
    file.sync_data()?;
    Ok(true)
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
        Entry::noop(term)
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
        // A crash in the middle of a write leaves half a line behind, where the zero
        // padding began.
        let bytes = fs::read(dir.join(LOG)).unwrap();
        assert_eq!(bytes.len() as u64 % GROW, 0, "file grown in whole chunks");
        let end = bytes.iter().position(|&b| b == 0).unwrap();
        let mut f = OpenOptions::new().write(true).open(dir.join(LOG)).unwrap();
        f.seek(SeekFrom::Start(end as u64)).unwrap();
        f.write_all(b"{\"term\":3,\"re").unwrap();
        drop(f);
        let (mut d, hard, entries) = Disk::open(&dir).unwrap();
        assert_eq!(hard.term, 2);
        assert_eq!(hard.vote.as_deref(), Some("n2"));
        assert_eq!(entries, vec![e(1), e(1), e(2), e(2)]);
        let bytes = fs::read(dir.join(LOG)).unwrap();
        assert!(bytes[end..].iter().all(|&b| b == 0), "torn tail zeroed");
        d.write_log(5, &[e(3)]).unwrap();
        d.sync().unwrap();
        let (mut d, _, entries) = Disk::open(&dir).unwrap();
        assert_eq!(entries.len(), 5);
        // A shorter overwrite leaves nothing of the longer suffix behind.
        d.write_log(2, &[e(4)]).unwrap();
        d.sync().unwrap();
        let (_, _, entries) = Disk::open(&dir).unwrap();
        assert_eq!(entries, vec![e(1), e(4)]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn records_pre_grown_torn_tail_dropped_and_old_files_load() {
        let dir = tmpdir("records");
        let lines = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        {
            let (mut d, _, _) = Disk::open(&dir).unwrap();
            assert!(d.load_records().unwrap().is_empty());
            d.append_records(&lines(&["{\"a\":1}", "{\"a\":2}"]))
                .unwrap();
            d.sync_records().unwrap();
            d.append_records(&lines(&["{\"a\":3}"])).unwrap();
            d.sync_records().unwrap();
        }
        let bytes = fs::read(dir.join(RECORDS)).unwrap();
        assert_eq!(bytes.len() as u64, GROW, "file grown in a whole chunk");
        // kill -9 in the middle of a write: half a record where the zeros began, and a
        // stray block of a later write beyond a hole.
        let end = bytes.iter().position(|&b| b == 0).unwrap();
        let mut f = OpenOptions::new()
            .write(true)
            .open(dir.join(RECORDS))
            .unwrap();
        f.seek(SeekFrom::Start(end as u64)).unwrap();
        f.write_all(b"{\"a\":4").unwrap();
        f.seek(SeekFrom::Start(end as u64 + 4096)).unwrap();
        f.write_all(b"{\"a\":5}\n").unwrap();
        drop(f);
        let (mut d, _, _) = Disk::open(&dir).unwrap();
        assert_eq!(
            d.load_records().unwrap(),
            lines(&["{\"a\":1}", "{\"a\":2}", "{\"a\":3}"])
        );
        let bytes = fs::read(dir.join(RECORDS)).unwrap();
        assert!(bytes[end..].iter().all(|&b| b == 0), "torn tail zeroed");
        d.append_records(&lines(&["{\"a\":6}"])).unwrap();
        d.sync_records().unwrap();
        let (mut d, _, _) = Disk::open(&dir).unwrap();
        assert_eq!(d.load_records().unwrap().last().unwrap(), "{\"a\":6}");
        // A file an earlier build appended to (no zeros, torn last line) loads too, and
        // new records go after its last whole one.
        fs::write(dir.join(RECORDS), b"{\"b\":1}\n{\"b\":2}\n{\"b\"").unwrap();
        let (mut d, _, _) = Disk::open(&dir).unwrap();
        assert_eq!(
            d.load_records().unwrap(),
            lines(&["{\"b\":1}", "{\"b\":2}"])
        );
        d.append_records(&lines(&["{\"b\":3}"])).unwrap();
        d.sync_records().unwrap();
        let (mut d, _, _) = Disk::open(&dir).unwrap();
        assert_eq!(
            d.load_records().unwrap(),
            lines(&["{\"b\":1}", "{\"b\":2}", "{\"b\":3}"])
        );
        // Records past one chunk.
        let many: Vec<String> = (0..60_000).map(|k| format!("{{\"c\":{k:080}}}")).collect();
        d.append_records(&many).unwrap();
        d.sync_records().unwrap();
        let (mut d, _, _) = Disk::open(&dir).unwrap();
        assert_eq!(d.load_records().unwrap().len(), 60_003);
        assert!(fs::metadata(dir.join(RECORDS)).unwrap().len() > GROW);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn log_grows_past_one_chunk() {
        let dir = tmpdir("grow");
        let (mut d, _, _) = Disk::open(&dir).unwrap();
        let big: Vec<Entry> = (0..200_000).map(|_| e(7)).collect();
        d.write_log(1, &big).unwrap();
        d.sync().unwrap();
        let (_, _, entries) = Disk::open(&dir).unwrap();
        assert_eq!(entries.len(), 200_000);
        assert!(fs::metadata(dir.join(LOG)).unwrap().len() > GROW);
        fs::remove_dir_all(&dir).unwrap();
    }
}
