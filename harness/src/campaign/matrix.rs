//! Matrix expansion: a parsed campaign file becomes its list of cells, in a fixed order
//! with ids made from the cells' contents (so an edit elsewhere in the file does not
//! rename a cell, and `--resume` and `merge` can match cells by id).
//!
//! Order: `[[matrix]]` groups in file order, each the product modes × workloads × nemeses
//! × bugs × systems × backends × seeds (the last axis varying fastest), exclusions
//! removed; then `[[cell]]`s in file order.

use serde::{Deserialize, Serialize};

use super::file::{CampaignFile, Defaults, Expect, FileError, Source};

/// Flags the campaign sets itself for every cell; refused in `extra_args`.
const OWNED_FLAGS: &[&str] = &[
    "--store",
    "--name",
    "--seed",
    "--mode",
    "--workload",
    "--nemesis",
    "--bug",
    "--system",
    "--backend",
    "--time-limit",
    "--rate",
    "--concurrency",
    "--nodes",
];

/// One `faultline run`: its settings and what it should conclude.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Unique in the campaign; also the folder name under `OUT/runs/`.
    pub id: String,
    /// The `[[matrix]]` group or `[[cell]]` name it came from.
    pub group: String,
    pub mode: String,
    pub workload: String,
    pub nemesis: String,
    /// Empty for correct nodes.
    pub bugs: Vec<String>,
    pub system: Option<String>,
    pub backend: String,
    pub seed: u64,
    pub expect: Expect,
    pub time_limit_s: f64,
    pub rate: f64,
    pub concurrency: usize,
    pub nodes: usize,
    pub extra_args: Vec<String>,
}

impl Cell {
    /// The `faultline run` arguments (after `run`), without `--store`/`--name`.
    pub fn run_args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--mode".into(),
            self.mode.clone(),
            "--workload".into(),
            self.workload.clone(),
            "--nemesis".into(),
            self.nemesis.clone(),
        ];
        for bug in &self.bugs {
            a.extend(["--bug".into(), bug.clone()]);
        }
        if let Some(system) = &self.system {
            a.extend(["--system".into(), system.clone()]);
        }
        a.extend([
            "--backend".into(),
            self.backend.clone(),
            "--nodes".into(),
            self.nodes.to_string(),
            "--concurrency".into(),
            self.concurrency.to_string(),
            "--rate".into(),
            fmt_num(self.rate),
            "--time-limit".into(),
            fmt_num(self.time_limit_s),
        ]);
        a.extend(self.extra_args.iter().cloned());
        a.extend(["--seed".into(), self.seed.to_string()]);
        a
    }

    /// The one command that reruns this cell by hand (shell-quoted).
    pub fn command(&self) -> String {
        let mut words = vec!["faultline".to_string(), "run".to_string()];
        words.extend(self.run_args());
        words
            .iter()
            .map(|w| shell_quote(w))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The bug set as one word: `none` or `a+b`.
    pub fn bug_label(&self) -> String {
        if self.bugs.is_empty() {
            "none".into()
        } else {
            self.bugs.join("+")
        }
    }

    /// The JUnit suite: mode/workload (and the system, when one is set).
    pub fn suite(&self) -> String {
        match &self.system {
            Some(s) => format!("{s}/{}/{}", self.mode, self.workload),
            None => format!("{}/{}", self.mode, self.workload),
        }
    }

    /// The row of the index page's matrix: everything but the nemesis and the seed.
    pub fn row(&self) -> String {
        let mut r = format!("{} · {} · {}", self.group, self.mode, self.workload);
        if !self.bugs.is_empty() {
            r.push_str(&format!(" · bug {}", self.bugs.join("+")));
        }
        if let Some(s) = &self.system {
            r.push_str(&format!(" · {s}"));
        }
        if self.backend != "sandbox" {
            r.push_str(&format!(" · {}", self.backend));
        }
        r.push_str(&format!(" · expect {}", self.expect.name()));
        r
    }
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

fn shell_quote(w: &str) -> String {
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.,+=/:@%".contains(c))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// Folder-safe form of a value for ids.
fn id_part(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            ',' => '+',
            c if c.is_ascii_alphanumeric() || "-_.+".contains(c) => c,
            _ => '_',
        })
        .collect()
}

/// A campaign: its name and cells, in order.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub name: String,
    pub description: Option<String>,
    pub cells: Vec<Cell>,
}

struct Settings {
    time_limit: f64,
    rate: f64,
    concurrency: usize,
    nodes: usize,
    backend: String,
    extra_args: Vec<String>,
}

/// Checks a plain-string value (mode, nemesis, bug, ...): passed to `faultline run` as
/// is, so only its shape is checked here; `faultline run` judges the name.
fn word(
    src: &Source,
    span: &std::ops::Range<usize>,
    table: &str,
    key: &str,
    v: &str,
) -> Result<(), FileError> {
    if v.is_empty()
        || v.chars()
            .any(|c| c.is_whitespace() || c == '/' || c.is_control())
    {
        return Err(src.key_error(
            span,
            table,
            key,
            format!("`{v}`: expected a plain name (no spaces or slashes)"),
        ));
    }
    Ok(())
}

fn axis(
    src: &Source,
    span: &std::ops::Range<usize>,
    key: &str,
    given: &Option<Vec<String>>,
    default: &[&str],
) -> Result<Vec<String>, FileError> {
    let values: Vec<String> = match given {
        Some(v) if v.is_empty() => {
            return Err(src.key_error(span, "matrix", key, "the list is empty".into()))
        }
        Some(v) => v.clone(),
        None => default.iter().map(|s| s.to_string()).collect(),
    };
    for v in &values {
        word(src, span, "matrix", key, v)?;
    }
    Ok(values)
}

fn bug_set(label: &str) -> Vec<String> {
    if label == "none" {
        Vec::new()
    } else {
        label.split('+').map(str::to_string).collect()
    }
}

#[allow(clippy::too_many_arguments)]
fn settings(
    src: &Source,
    span: &std::ops::Range<usize>,
    table: &str,
    d: &Settings,
    time_limit: Option<f64>,
    rate: Option<f64>,
    concurrency: Option<usize>,
    nodes: Option<usize>,
    extra_args: &Option<Vec<String>>,
) -> Result<Settings, FileError> {
    let time_limit = time_limit.unwrap_or(d.time_limit);
    if !(time_limit.is_finite() && time_limit > 0.0) {
        return Err(src.key_error(
            span,
            table,
            "time_limit",
            format!("must be a positive number of seconds, got {time_limit}"),
        ));
    }
    let rate = rate.unwrap_or(d.rate);
    if !(rate.is_finite() && rate >= 0.0) {
        return Err(src.key_error(span, table, "rate", format!("must be >= 0, got {rate}")));
    }
    let concurrency = concurrency.unwrap_or(d.concurrency);
    if concurrency == 0 {
        return Err(src.key_error(span, table, "concurrency", "must be at least 1".into()));
    }
    let nodes = nodes.unwrap_or(d.nodes);
    if nodes == 0 {
        return Err(src.key_error(span, table, "nodes", "must be at least 1".into()));
    }
    let mut extra = d.extra_args.clone();
    extra.extend(extra_args.iter().flatten().cloned());
    if let Some(flag) = extra.iter().find(|a| {
        let flag = a.split('=').next().unwrap_or(a);
        OWNED_FLAGS.contains(&flag)
    }) {
        return Err(src.key_error(
            span,
            table,
            "extra_args",
            format!("`{flag}` is set by the campaign itself; use the campaign key instead"),
        ));
    }
    Ok(Settings {
        time_limit,
        rate,
        concurrency,
        nodes,
        backend: d.backend.clone(),
        extra_args: extra,
    })
}

fn base(src: &Source, d: Option<&toml::Spanned<Defaults>>) -> Result<Settings, FileError> {
    let span = d.map_or(0..0, |d| d.span());
    let empty = Defaults::default();
    let d = d.map_or(&empty, |d| d.get_ref());
    let root = Settings {
        time_limit: 30.0,
        rate: 200.0,
        concurrency: 10,
        nodes: 3,
        backend: d.backend.clone().unwrap_or_else(|| "sandbox".into()),
        extra_args: Vec::new(),
    };
    word(src, &span, "defaults", "backend", &root.backend)?;
    settings(
        src,
        &span,
        "defaults",
        &root,
        d.time_limit,
        d.rate,
        d.concurrency,
        d.nodes,
        &d.extra_args,
    )
}

impl Campaign {
    /// Reads, checks and expands a campaign file.
    pub fn load(src: &Source) -> Result<Self, FileError> {
        let file = src.parse()?;
        Self::expand(src, &file)
    }

    pub fn expand(src: &Source, file: &CampaignFile) -> Result<Self, FileError> {
        let defaults = base(src, file.defaults.as_ref())?;
        let mut cells: Vec<(Cell, usize)> = Vec::new();
        let mut groups = std::collections::HashMap::new();
        let mut matrix_cells = 0;

        for g in &file.matrix {
            let (span, g) = (g.span(), g.get_ref());
            word(src, &span, "matrix", "name", &g.name)?;
            let line = src.line_of(span.start);
            if let Some(first) = groups.insert(g.name.clone(), line) {
                return Err(src.key_error(
                    &span,
                    "matrix",
                    "name",
                    format!("`{}` is also the name of the group at line {first}", g.name),
                ));
            }
            let s = settings(
                src,
                &span,
                "matrix",
                &defaults,
                g.time_limit,
                g.rate,
                g.concurrency,
                g.nodes,
                &g.extra_args,
            )?;
            let modes = axis(src, &span, "modes", &g.modes, &["passive"])?;
            let workloads = axis(src, &span, "workloads", &g.workloads, &["kv"])?;
            let nemeses = axis(src, &span, "nemeses", &g.nemeses, &["partition"])?;
            let bugs = axis(src, &span, "bugs", &g.bugs, &["none"])?;
            let systems: Vec<Option<String>> = match &g.systems {
                None => vec![None],
                Some(_) => axis(src, &span, "systems", &g.systems, &[])?
                    .into_iter()
                    .map(Some)
                    .collect(),
            };
            let backends = axis(src, &span, "backends", &g.backends, &[s.backend.as_str()])?;
            for mode in &modes {
                for workload in &workloads {
                    for nemesis in &nemeses {
                        for bug in &bugs {
                            for system in &systems {
                                for backend in &backends {
                                    for &seed in &g.seeds.0 {
                                        let bugs = bug_set(bug);
                                        let expect = g.expect.unwrap_or(if bugs.is_empty() {
                                            Expect::Valid
                                        } else {
                                            Expect::Invalid
                                        });
                                        let mut id = format!(
                                            "{}-{}-{}-{}",
                                            id_part(&g.name),
                                            id_part(mode),
                                            id_part(workload),
                                            id_part(nemesis)
                                        );
                                        if !bugs.is_empty() {
                                            id.push_str(&format!("-{}", id_part(bug)));
                                        }
                                        if let Some(sys) = system {
                                            id.push_str(&format!("-{}", id_part(sys)));
                                        }
                                        if backend != "sandbox" {
                                            id.push_str(&format!("-{}", id_part(backend)));
                                        }
                                        id.push_str(&format!("-seed{seed}"));
                                        cells.push((
                                            Cell {
                                                id,
                                                group: g.name.clone(),
                                                mode: mode.clone(),
                                                workload: workload.clone(),
                                                nemesis: nemesis.clone(),
                                                bugs,
                                                system: system.clone(),
                                                backend: backend.clone(),
                                                seed,
                                                expect,
                                                time_limit_s: s.time_limit,
                                                rate: s.rate,
                                                concurrency: s.concurrency,
                                                nodes: s.nodes,
                                                extra_args: s.extra_args.clone(),
                                            },
                                            line,
                                        ));
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        matrix_cells += cells.len();

        for x in &file.exclude {
            let (span, x) = (x.span(), x.get_ref());
            let line = src.line_of(span.start);
            let fields = [
                &x.group,
                &x.mode,
                &x.workload,
                &x.nemesis,
                &x.bug,
                &x.system,
                &x.backend,
            ];
            if fields.iter().all(|f| f.is_none()) && x.seed.is_none() {
                return Err(src.error(Some(line), Some("exclude".into()), "an exclusion needs at least one key (group, mode, workload, nemesis, bug, system, backend, seed)".into()));
            }
            let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
            let before = cells.len();
            cells.retain(|(c, _)| {
                !(eq(&x.group, &c.group)
                    && eq(&x.mode, &c.mode)
                    && eq(&x.workload, &c.workload)
                    && eq(&x.nemesis, &c.nemesis)
                    && eq(&x.bug, &c.bug_label())
                    && x.system
                        .as_ref()
                        .is_none_or(|s| c.system.as_ref() == Some(s))
                    && eq(&x.backend, &c.backend)
                    && x.seed.is_none_or(|s| s == c.seed))
            });
            if cells.len() == before {
                return Err(src.error(
                    Some(line),
                    Some("exclude".into()),
                    "this exclusion matches no matrix cell (a typo?)".into(),
                ));
            }
        }
        let _ = matrix_cells;

        for c in &file.cell {
            let (span, c) = (c.span(), c.get_ref());
            let line = src.line_of(span.start);
            word(src, &span, "cell", "name", &c.name)?;
            let s = settings(
                src,
                &span,
                "cell",
                &defaults,
                c.time_limit,
                c.rate,
                c.concurrency,
                c.nodes,
                &c.extra_args,
            )?;
            let mode = c.mode.clone().unwrap_or_else(|| "passive".into());
            let workload = c.workload.clone().unwrap_or_else(|| "kv".into());
            let nemesis = c.nemesis.clone().unwrap_or_else(|| "partition".into());
            let bug = c.bug.clone().unwrap_or_else(|| "none".into());
            let backend = c.backend.clone().unwrap_or(s.backend.clone());
            for (key, v) in [
                ("mode", &mode),
                ("workload", &workload),
                ("nemesis", &nemesis),
                ("bug", &bug),
                ("backend", &backend),
            ] {
                word(src, &span, "cell", key, v)?;
            }
            if let Some(sys) = &c.system {
                word(src, &span, "cell", "system", sys)?;
            }
            let seeds = match (&c.seed, &c.seeds) {
                (Some(s), None) => vec![*s],
                (None, Some(s)) => s.0.clone(),
                _ => {
                    return Err(src.error(
                        Some(line),
                        Some("cell.seed".into()),
                        "give exactly one of `seed` and `seeds`".into(),
                    ))
                }
            };
            let bugs = bug_set(&bug);
            let expect = c.expect.unwrap_or(if bugs.is_empty() {
                Expect::Valid
            } else {
                Expect::Invalid
            });
            for seed in seeds {
                cells.push((
                    Cell {
                        id: format!("{}-seed{seed}", id_part(&c.name)),
                        group: c.name.clone(),
                        mode: mode.clone(),
                        workload: workload.clone(),
                        nemesis: nemesis.clone(),
                        bugs: bugs.clone(),
                        system: c.system.clone(),
                        backend: backend.clone(),
                        seed,
                        expect,
                        time_limit_s: s.time_limit,
                        rate: s.rate,
                        concurrency: s.concurrency,
                        nodes: s.nodes,
                        extra_args: s.extra_args.clone(),
                    },
                    line,
                ));
            }
        }

        let mut seen = std::collections::HashMap::new();
        for (c, line) in &cells {
            if let Some(first) = seen.insert(c.id.clone(), *line) {
                return Err(src.error(Some(*line), None, format!("cell `{}` is declared twice (also at line {first}); give the group or cell another name", c.id)));
            }
        }
        if cells.is_empty() {
            return Err(src.error(
                None,
                None,
                "the campaign has no cells (add a [[matrix]] or [[cell]])".into(),
            ));
        }
        let name = file.name.clone().unwrap_or_else(|| {
            src.path
                .file_stem()
                .map_or("campaign".into(), |s| s.to_string_lossy().into_owned())
        });
        Ok(Self {
            name,
            description: file.description.clone(),
            cells: cells.into_iter().map(|(c, _)| c).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Campaign, FileError> {
        Campaign::load(&Source {
            path: "c.toml".into(),
            text: text.into(),
        })
    }

    const TWO: &str = r#"
name = "t"
[defaults]
time_limit = 5
[[matrix]]
name = "validity"
modes = ["passive", "active"]
nemeses = ["partition", "kill"]
seeds = 2
[[matrix]]
name = "bugs"
bugs = ["stale-read"]
nemeses = ["isolate-leader"]
seeds = [4]
time_limit = 9
extra_args = ["--keys", "2"]
[[exclude]]
mode = "active"
nemesis = "kill"
seed = 2
[[cell]]
name = "snap"
workload = "bank"
nemesis = "packet"
expect = "invalid"
seed = 3
extra_args = ["--channels", "unordered"]
"#;

    #[test]
    fn expands_in_a_fixed_order_with_content_ids() {
        let c = load(TWO).unwrap();
        let ids: Vec<&str> = c.cells.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "validity-passive-kv-partition-seed1",
                "validity-passive-kv-partition-seed2",
                "validity-passive-kv-kill-seed1",
                "validity-passive-kv-kill-seed2",
                "validity-active-kv-partition-seed1",
                "validity-active-kv-partition-seed2",
                "validity-active-kv-kill-seed1",
                "bugs-passive-kv-isolate-leader-stale-read-seed4",
                "snap-seed3",
            ]
        );
        let bug = &c.cells[7];
        assert_eq!(bug.expect, Expect::Invalid);
        assert_eq!(bug.time_limit_s, 9.0);
        assert_eq!(
            bug.command(),
            "faultline run --mode passive --workload kv --nemesis isolate-leader --bug stale-read --backend sandbox --nodes 3 --concurrency 10 --rate 200 --time-limit 9 --keys 2 --seed 4"
        );
        assert_eq!(c.cells[0].expect, Expect::Valid);
        assert_eq!(c.cells[8].expect, Expect::Invalid);
        assert_eq!(c.cells[8].workload, "bank");
    }

    #[test]
    fn semantic_errors_name_line_and_key() {
        let e = load("[[matrix]]\nname = \"a\"\nseeds = 1\n\nmodes = []\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(5), Some("matrix.modes")),
            "{e}"
        );
        let e = load("[[matrix]]\nname = \"a\"\nseeds = 1\nextra_args = [\"--seed\", \"3\"]\n")
            .unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(4), Some("matrix.extra_args")),
            "{e}"
        );
        let e = load("[[matrix]]\nname = \"a\"\nseeds = 1\n[[exclude]]\nmode = \"active\"\n")
            .unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.message.contains("matches no"), "{e}");
        let e = load("[[matrix]]\nname = \"a\"\nseeds = 1\n[[matrix]]\nname = \"a\"\nseeds = 2\n")
            .unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
        let e = load("[[matrix]]\nname = \"a\"\nseeds = 1\ntime_limit = -3\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(4), Some("matrix.time_limit")),
            "{e}"
        );
    }
}
