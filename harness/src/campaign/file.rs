//! The campaign file: what a user declares in TOML, read with `toml` + serde
//! (unknown keys refused), and the one-line errors that name file, line and key.
//!
//! ```toml
//! name = "nightly"
//! [defaults]                 # run settings every group and cell starts from
//! time_limit = 30            # seconds (--time-limit)
//! [[matrix]]                 # a group: the product of its axes
//! name = "validity"
//! modes = ["passive", "active"]
//! nemeses = ["partition", "kill"]
//! seeds = 10                 # seeds 1..=10, or a list: [3, 7]
//! [[cell]]                   # one explicit cell
//! name = "stale-read-regression"
//! bug = "stale-read"
//! nemesis = "isolate-leader"
//! seed = 7
//! [[exclude]]                # drops the matrix cells matching every key given
//! mode = "active"
//! nemesis = "kill"
//! ```

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// What a cell's run should conclude: `valid` for correct nodes, `invalid` where a bug
/// is planted (a detection cell passes when the bug is caught).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Valid,
    Invalid,
}

impl Expect {
    pub fn name(self) -> &'static str {
        match self {
            Expect::Valid => "valid",
            Expect::Invalid => "invalid",
        }
    }
}

/// `[defaults]`: run settings (all optional; `faultline run`'s defaults otherwise).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Seconds of the main phase (`--time-limit`).
    pub time_limit: Option<f64>,
    /// Target ops/s over all workers (`--rate`).
    pub rate: Option<f64>,
    /// Client workers (`--concurrency`).
    pub concurrency: Option<usize>,
    /// Cluster size (`--nodes`).
    pub nodes: Option<usize>,
    /// `--backend` (sandbox, docker, compose, or any backend a newer `faultline run` has).
    pub backend: Option<String>,
    /// More `faultline run` flags, passed as given (e.g. `["--keys", "2"]`).
    pub extra_args: Option<Vec<String>>,
}

/// `[[matrix]]`: one group of cells, the product of its axes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    pub modes: Option<Vec<String>>,
    pub workloads: Option<Vec<String>>,
    pub nemeses: Option<Vec<String>>,
    /// Each entry is one bug set: `"none"`, a bug name, or names joined by `+`.
    pub bugs: Option<Vec<String>>,
    /// `--system` values; absent = the flag is not passed.
    pub systems: Option<Vec<String>>,
    pub backends: Option<Vec<String>>,
    pub seeds: Seeds,
    /// Default: `valid` when the bug set is `none`, else `invalid`.
    pub expect: Option<Expect>,
    pub time_limit: Option<f64>,
    pub rate: Option<f64>,
    pub concurrency: Option<usize>,
    pub nodes: Option<usize>,
    /// Appended to `[defaults]`'s.
    pub extra_args: Option<Vec<String>>,
}

/// `[[cell]]`: one explicit cell (or one per seed in `seeds`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplicitCell {
    pub name: String,
    pub mode: Option<String>,
    pub workload: Option<String>,
    pub nemesis: Option<String>,
    pub bug: Option<String>,
    pub system: Option<String>,
    pub backend: Option<String>,
    pub seed: Option<u64>,
    pub seeds: Option<Seeds>,
    pub expect: Option<Expect>,
    pub time_limit: Option<f64>,
    pub rate: Option<f64>,
    pub concurrency: Option<usize>,
    pub nodes: Option<usize>,
    pub extra_args: Option<Vec<String>>,
}

/// `[[exclude]]`: a matrix cell matching every key given is dropped.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exclude {
    pub group: Option<String>,
    pub mode: Option<String>,
    pub workload: Option<String>,
    pub nemesis: Option<String>,
    pub bug: Option<String>,
    pub system: Option<String>,
    pub backend: Option<String>,
    pub seed: Option<u64>,
}

/// `seeds = 10` (seeds 1 to 10) or `seeds = [3, 7]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seeds(pub Vec<u64>);

impl<'de> Deserialize<'de> for Seeds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Seeds;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a seed count (10 = seeds 1 to 10) or a list of seeds")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Seeds, E> {
                if !(1..=100_000).contains(&n) {
                    return Err(E::custom(format!(
                        "a seed count must be between 1 and 100000, got {n}"
                    )));
                }
                Ok(Seeds((1..=n as u64).collect()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Seeds, A::Error> {
                let mut seeds = Vec::new();
                while let Some(s) = seq.next_element::<i64>()? {
                    if s < 0 {
                        return Err(de::Error::custom(format!("a seed is >= 0, got {s}")));
                    }
                    seeds.push(s as u64);
                }
                if seeds.is_empty() {
                    return Err(de::Error::custom("the list of seeds is empty"));
                }
                Ok(Seeds(seeds))
            }
        }
        d.deserialize_any(V)
    }
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignFile {
    /// Shown in the summary, the JUnit report and the page title [default: the file stem].
    pub name: Option<String>,
    pub description: Option<String>,
    pub defaults: Option<Spanned<Defaults>>,
    #[serde(default)]
    pub matrix: Vec<Spanned<Group>>,
    #[serde(default)]
    pub cell: Vec<Spanned<ExplicitCell>>,
    #[serde(default)]
    pub exclude: Vec<Spanned<Exclude>>,
}

/// The file's text, kept to turn byte spans into lines and keys.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

/// A campaign file error: `FILE:LINE: key `K`: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl Source {
    pub fn read(path: &Path) -> Result<Self, FileError> {
        let text = std::fs::read_to_string(path).map_err(|e| FileError {
            path: path.to_path_buf(),
            line: None,
            key: None,
            message: format!("cannot read the campaign file: {e}"),
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            text,
        })
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// The dotted key at `offset`: the enclosing `[table]` header and the `key =` on that
    /// line (or the header itself when the offset is on one).
    pub fn key_at(&self, offset: usize) -> Option<String> {
        let line_no = self.line_of(offset);
        let lines: Vec<&str> = self.text.lines().collect();
        let line = lines.get(line_no - 1)?.trim();
        let header = |l: &str| -> Option<String> {
            let l = l.trim();
            l.starts_with('[')
                .then(|| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
        };
        if let Some(h) = header(line) {
            return Some(h);
        }
        let key = line.split('=').next()?.trim().trim_matches('"').to_string();
        if key.is_empty() || line.starts_with('#') {
            return None;
        }
        let table = lines[..line_no - 1].iter().rev().find_map(|l| header(l));
        Some(match table {
            Some(t) => format!("{t}.{key}"),
            None => key,
        })
    }

    /// The line of `key = ...` in the table starting at `span` (up to the next table
    /// header: toml's span of an array-of-tables entry may cover only its header), else
    /// the table's first line.
    pub fn key_line(&self, span: &Range<usize>, key: &str) -> usize {
        let start = span.start.min(self.text.len());
        let mut offset = start;
        for (n, line) in self.text[start..].split_inclusive('\n').enumerate() {
            let t = line.trim_start();
            if n > 0 && t.starts_with('[') {
                break;
            }
            if let Some(rest) = t.strip_prefix(key) {
                if rest.trim_start().starts_with('=') {
                    return self.line_of(offset);
                }
            }
            offset += line.len();
        }
        self.line_of(start)
    }

    pub fn error(&self, line: Option<usize>, key: Option<String>, message: String) -> FileError {
        FileError {
            path: self.path.clone(),
            line,
            key,
            message,
        }
    }

    /// An error about `key` of the table at `span` (`table` names it, e.g. `matrix`).
    pub fn key_error(
        &self,
        span: &Range<usize>,
        table: &str,
        key: &str,
        message: String,
    ) -> FileError {
        self.error(
            Some(self.key_line(span, key)),
            Some(format!("{table}.{key}")),
            message,
        )
    }

    /// Parses the file; a syntax or schema error names its line and key.
    pub fn parse(&self) -> Result<CampaignFile, FileError> {
        toml::from_str::<CampaignFile>(&self.text).map_err(|e| {
            let (line, key) = match e.span() {
                Some(span) => (Some(self.line_of(span.start)), self.key_at(span.start)),
                None => (None, None),
            };
            // toml's message is one line; its Display would add a source excerpt.
            self.error(line, key, e.message().trim().replace('\n', " "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<CampaignFile, FileError> {
        Source {
            path: "c.toml".into(),
            text: text.into(),
        }
        .parse()
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let e = parse("name = \"x\"\n[[matrix]]\nname = \"g\"\nseeds = 2\ntimelimit = 3\n")
            .unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
        assert_eq!(e.key.as_deref(), Some("matrix.timelimit"), "{e}");
        assert!(e.message.contains("unknown field"), "{e}");
        assert!(
            e.to_string()
                .starts_with("c.toml:5: key `matrix.timelimit`: "),
            "{e}"
        );
    }

    #[test]
    fn a_wrong_type_is_named_with_its_line() {
        let e = parse("[defaults]\nrate = \"fast\"\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert_eq!(e.key.as_deref(), Some("defaults.rate"), "{e}");
    }

    #[test]
    fn seeds_take_a_count_or_a_list() {
        let f = parse(
            "[[matrix]]\nname = \"a\"\nseeds = 3\n[[matrix]]\nname = \"b\"\nseeds = [7, 9]\n",
        )
        .unwrap();
        assert_eq!(f.matrix[0].get_ref().seeds, Seeds(vec![1, 2, 3]));
        assert_eq!(f.matrix[1].get_ref().seeds, Seeds(vec![7, 9]));
        let e = parse("[[matrix]]\nname = \"a\"\nseeds = 0\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let e = parse("name = \"x\"\n\n[[matrix]\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
    }
}
