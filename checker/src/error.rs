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
            problem: clip(problem.into()),
        }
    }

    pub(crate) fn history(path: &Path, problem: impl Into<String>) -> Self {
        Error::History {
            path: path.to_path_buf(),
            problem: clip(problem.into()),
        }
    }
}

/// Longest problem text an error line carries (messages may quote the input).
const MAX_PROBLEM: usize = 240;

/// Keeps an error line one short line: control characters escaped, at most
/// [`MAX_PROBLEM`] characters.
fn clip(problem: String) -> String {
    if problem.len() <= MAX_PROBLEM && !problem.chars().any(char::is_control) {
        return problem;
    }
    let mut out = String::new();
    for c in problem.chars() {
        if out.len() >= MAX_PROBLEM {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A name from the input (a keyword, an `f`) as is when it is short and plain, else quoted
/// short like [`excerpt`].
pub fn name_excerpt(input: &str) -> String {
    let plain = input.len() <= 40
        && input
            .chars()
            .all(|c| c.is_alphanumeric() || "-_.?!*+/<>=".contains(c));
    if plain {
        input.to_string()
    } else {
        excerpt(input)
    }
}

/// A short, printable quote of some input for an error line.
pub fn excerpt(input: &str) -> String {
    const MAX: usize = 40;
    let mut out: String = input
        .chars()
        .take(MAX)
        .flat_map(char::escape_debug)
        .collect();
    if input.chars().nth(MAX).is_some() {
        out.push('…');
    }
    format!("\"{out}\"")
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
            problem: clip(problem.into()),
        }
    }

    pub fn in_file(self, path: &Path) -> Error {
        Error::input(path, self.line, self.problem)
    }
}
