//! Reading a file line by line with bounded memory, for every format.
//!
//! `BufRead::read_line` keeps reading until it meets a newline, so a file of NULs (or a
//! sparse multi-GB file) would be read into memory whole before any error. Here a line
//! longer than [`MAX_LINE`] is an error at once, and only one line is held at a time.

use crate::error::Error;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Longest line accepted (an op is a few hundred bytes; a line this long is not a history).
pub const MAX_LINE: usize = 16 << 20;

/// One line of a file.
pub struct Line<'a> {
    /// 1-based.
    pub number: usize,
    pub bytes: &'a [u8],
    /// `false` only for a last line with no newline after it: it may be torn.
    pub terminated: bool,
}

impl Line<'_> {
    /// The line as text, or an error naming it.
    pub fn text(&self, path: &Path) -> Result<&str, Error> {
        std::str::from_utf8(self.bytes).map_err(|e| {
            Error::input(
                path,
                self.number,
                format!("not valid UTF-8 (byte {} of the line)", e.valid_up_to() + 1),
            )
        })
    }
}

pub struct LineReader {
    path: PathBuf,
    inner: BufReader<std::fs::File>,
    buf: Vec<u8>,
    number: usize,
}

impl LineReader {
    pub fn open(path: &Path) -> Result<Self, Error> {
        let file = std::fs::File::open(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(LineReader {
            path: path.to_path_buf(),
            inner: BufReader::with_capacity(1 << 20, file),
            buf: Vec::new(),
            number: 0,
        })
    }

    /// The next line (without its `\n` or `\r\n`), or `None` at the end of the file.
    pub fn next_line(&mut self) -> Result<Option<Line<'_>>, Error> {
        self.buf.clear();
        self.number += 1;
        let mut terminated = false;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(Error::Io {
                        path: self.path.clone(),
                        source,
                    })
                }
            };
            if available.is_empty() {
                break;
            }
            let (take, done) = match memchr(available) {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            if self.buf.len() + take > MAX_LINE + 1 {
                return Err(Error::input(
                    &self.path,
                    self.number,
                    format!("line longer than {} MiB: not a history", MAX_LINE >> 20),
                ));
            }
            self.buf.extend_from_slice(&available[..take]);
            self.inner.consume(take);
            if done {
                terminated = true;
                break;
            }
        }
        if self.buf.is_empty() && !terminated {
            return Ok(None);
        }
        if terminated {
            self.buf.pop();
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
        }
        Ok(Some(Line {
            number: self.number,
            bytes: &self.buf,
            terminated,
        }))
    }
}

fn memchr(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// The warning for a torn last line that was dropped.
pub fn torn_warning(path: &Path, line: usize, problem: &str) -> String {
    format!(
        "{}:{line}: torn last line dropped (no newline after it, and {problem})",
        path.display()
    )
}
