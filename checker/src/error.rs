//! Errors: every one prints as a single line naming the file, the line and the problem.

use std::path::{Path, PathBuf};

/// Why a history could not be checked. Bad input is never a panic and never a verdict.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read at all.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line of the history is malformed or breaks the history model's rules.
    #[error("{}:{line}: {problem}", path.display())]
    Input {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    /// The history as a whole cannot be checked (empty, wrong model, ...).
    #[error("{}: {problem}", path.display())]
    History { path: PathBuf, problem: String },
}

impl Error {
    pub(crate) fn input(path: &Path, line: usize, problem: impl Into<String>) -> Self {
        Error::Input {
            path: path.to_path_buf(),
            line,
            problem: problem.into(),
        }
    }

    pub(crate) fn history(path: &Path, problem: impl Into<String>) -> Self {
        Error::History {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}

/// A problem found while reading one line, before the file name is attached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct LineError {
    pub line: usize,
    pub problem: String,
}

impl LineError {
    pub fn new(line: usize, problem: impl Into<String>) -> Self {
        LineError {
            line,
            problem: problem.into(),
        }
    }

    pub fn in_file(self, path: &Path) -> Error {
        Error::input(path, self.line, self.problem)
    }
}
