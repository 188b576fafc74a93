//! # checker
//!
//! Linearizability checking of recorded histories: a Wing–Gong–Lowe search in the style of
//! Porcupine, with per-key decomposition checked in parallel, a deadline that yields
//! `unknown`, and reports in text, JSON and a self-contained HTML page.
//!
//! ## Layout
//! - `history` — events (the native JSON Lines format) and operations; pairing and
//!   validation rules shared by every format, including the equal-time rule.
//! - `formats` — reading the native format, Jepsen/Knossos EDN, Porcupine's kv and etcd
//!   files; detection; the EDN exporter.
//! - `model` — the `Model` trait; `models` — register, cas-register, Porcupine's kv, and
//!   `Keyed`, a store of per-key objects for unpartitioned checks.
//! - `search` — the linearizability search itself (one file, explained by its data
//!   structures).
//! - `scheduler` — runs the parts' searches time-sliced on all cores.
//! - `report` — the result of a check, as text and JSON; `visualize` — as HTML.
//! - `simulate` — histories of simulated concurrent clients, for tests and benchmarks.
//! - `snapshot` — consistency of collected global snapshots (Chandy–Lamport and the
//!   wall-clock algorithm): data model, the four rules, reports, a protocol simulator.
//! - `cli` — `faultline check`.

pub mod cli;
pub mod convergence;
pub mod error;
pub mod formats;
pub mod frontier;
pub mod history;
pub mod model;
pub mod models;
pub mod report;
pub mod scheduler;
pub mod search;
pub mod simulate;
pub mod snapshot;
pub mod visualize;

pub use error::Error;
pub use formats::Format;
pub use report::{CheckReport, Verdict};

use history::{History, Op};
use model::Model;
use models::{Keyed, Kv, KvString, Register};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// How to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    /// Give up after this long; unfinished parts are `unknown`. `None`: no limit.
    pub timeout: Option<Duration>,
    /// Stop every part at the first invalid one (otherwise every invalid key is reported).
    pub fail_fast: bool,
    /// Check each key on its own (sound for stores of independent objects).
    pub partition: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            timeout: None,
            fail_fast: false,
            partition: true,
        }
    }
}

/// Test parameters and resource limits beyond [`CheckOptions`] (kept apart so that code
/// building a `CheckOptions` literal keeps compiling).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// What every register holds before its first write (`--initial`). `None`: the
    /// convention of the history's format — nil for the native format (faultline's nodes
    /// read a key never written as null), Jepsen EDN and Jepsen text histories (Jepsen's
    /// register workloads and Maelstrom's lin-kv start at nil), and Porcupine's etcd logs.
    /// Knossos's own tests check their `data/cas-register` files with 0.
    pub initial: Option<history::Value>,
    /// Memory the search may use across all parts, in bytes (`--memory-limit`). `None`:
    /// `FAULTLINE_MEMO_LIMIT_MB`, else 2 GiB.
    pub memory_limit: Option<usize>,
    /// With `CheckOptions::partition` off: also skip the split into independent parts the
    /// model finds ([`model::Model::independent`]) and run one search over the whole
    /// history (`--single-search`; for cross-checking the search itself).
    pub single_search: bool,
    /// Which search runs on each part (`--search`). `None`: `FAULTLINE_SEARCH`, else both
    /// interleaved ([`scheduler::Algorithm`]).
    pub search: Option<scheduler::Algorithm>,
}

/// Which sequential specification to check against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// One register with read and write.
    Register,
    /// One register with read, write and compare-and-set.
    CasRegister,
    /// A store of cas-registers, one per key (the nodes' KV API).
    MultiRegister,
    /// Porcupine's kv: strings per key with get, put and append.
    Kv,
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Register => "register",
            ModelKind::CasRegister => "cas-register",
            ModelKind::MultiRegister => "multi-register",
            ModelKind::Kv => "kv",
        }
    }

    /// The model a history's operations call for: kv for get/put/append, a multi-register
    /// store when ops carry keys, else a cas-register.
    pub fn for_history(history: &History) -> ModelKind {
        use history::Action;
        if history
            .ops
            .iter()
            .any(|o| matches!(o.action, Action::Get | Action::Put(_) | Action::Append(_)))
        {
            ModelKind::Kv
        } else if history.ops.iter().any(|o| o.key.is_some()) {
            ModelKind::MultiRegister
        } else {
            ModelKind::CasRegister
        }
    }
}

/// Checks a native JSON Lines history file against `model`.
pub fn check_history_file(
    path: &Path,
    model: ModelKind,
    opts: &CheckOptions,
) -> Result<CheckReport, Error> {
    check_file(path, Some(Format::Jsonl), Some(model), opts)
}

/// Checks a history file in any format (`None`: detect it) against a model (`None`: the
/// one its operations call for).
pub fn check_file(
    path: &Path,
    format: Option<Format>,
    model: Option<ModelKind>,
    opts: &CheckOptions,
) -> Result<CheckReport, Error> {
    check_file_with(path, format, model, opts, &Settings::default())
}

/// [`check_file`] with test parameters and limits. `opts.timeout` is the budget of the whole
/// call, reading included: a file still being read when it runs out gets `unknown`.
pub fn check_file_with(
    path: &Path,
    format: Option<Format>,
    model: Option<ModelKind>,
    opts: &CheckOptions,
    settings: &Settings,
) -> Result<CheckReport, Error> {
    let parse_start = Instant::now();
    let deadline = opts.timeout.map(|t| parse_start + t);
    let (history, format) = match formats::load_until(path, format, deadline)? {
        formats::Loaded::History(h, f) => (h, f),
        formats::Loaded::OutOfTime { format, line } => {
            let mut report = CheckReport::read_timeout(model, line);
            report.file = path.display().to_string();
            report.format = format;
            report.parse_seconds = parse_start.elapsed().as_secs_f64();
            return Ok(report);
        }
    };
    let parse_seconds = parse_start.elapsed().as_secs_f64();
    let model = model.unwrap_or_else(|| ModelKind::for_history(&history));
    let mut opts = opts.clone();
    opts.timeout = opts
        .timeout
        .map(|t| t.saturating_sub(parse_start.elapsed()));
    let mut report = check_inner(&history, model, &opts, settings).map_err(|e| match e {
        (Some(line), p) => Error::input(path, line, p),
        (None, p) => Error::history(path, p),
    })?;
    report.file = path.display().to_string();
    report.format = format;
    report.parse_seconds = parse_seconds;
    Ok(report)
}

/// Checks a parsed history. `Err` names a history the model cannot check (e.g. an op the
/// model does not know).
pub fn check_history(
    history: &History,
    model: ModelKind,
    opts: &CheckOptions,
) -> Result<CheckReport, String> {
    check_history_with(history, model, opts, &Settings::default())
}

/// [`check_history`] with test parameters and limits.
pub fn check_history_with(
    history: &History,
    model: ModelKind,
    opts: &CheckOptions,
    settings: &Settings,
) -> Result<CheckReport, String> {
    check_inner(history, model, opts, settings).map_err(|e| match e {
        (Some(line), p) => format!("line {line}: {p}"),
        (None, p) => p,
    })
}

/// A problem that stops a check, with the line it is about if there is one.
type Refusal = (Option<usize>, String);

fn check_inner(
    history: &History,
    model: ModelKind,
    opts: &CheckOptions,
    settings: &Settings,
) -> Result<CheckReport, Refusal> {
    let initial = settings
        .initial
        .clone()
        .or_else(|| history.register_initial.clone())
        .unwrap_or(history::Value::Nil);
    if settings.initial.is_some() && model == ModelKind::Kv {
        return Err((
            None,
            "--initial applies to register models; every kv key starts as the empty string"
                .to_string(),
        ));
    }
    let single_object = matches!(model, ModelKind::Register | ModelKind::CasRegister);
    if single_object && history.keys.len() > 1 {
        return Err((None, format!(
            "the history has {} keys but --model {} is a single register; use --model multi-register",
            history.keys.len(),
            model.name()
        )));
    }
    let memory = settings.memory_limit.unwrap_or_else(scheduler::memo_budget);
    macro_rules! go {
        ($model:expr, $by_key:expr) => {
            run_model(
                &$model,
                history,
                model,
                opts,
                $by_key,
                memory,
                settings.single_search,
                settings
                    .search
                    .unwrap_or_else(scheduler::Algorithm::from_env),
            )
        };
    }
    let mut report = match model {
        ModelKind::Register => go!(Register::plain(initial), false),
        ModelKind::CasRegister => go!(Register::cas(initial), false),
        ModelKind::MultiRegister if opts.partition => go!(Register::cas(initial), true),
        ModelKind::MultiRegister => go!(
            Keyed {
                inner: Register::cas(initial),
                keys: history.keys.clone(),
            },
            false
        ),
        // Symbolic kv states merge the orders of unobserved appends, but tell apart appends
        // of one text from different clients, which a string cannot: where many texts
        // repeat, the string model is the faster one (both are exact; see models/kv.rs).
        ModelKind::Kv if repeats_many_appends(history) => match opts.partition {
            true => go!(KvString, true),
            false => go!(
                Keyed {
                    inner: KvString,
                    keys: history.keys.clone(),
                },
                false
            ),
        },
        ModelKind::Kv if opts.partition => go!(Kv, true),
        ModelKind::Kv => go!(
            Keyed {
                inner: Kv,
                keys: history.keys.clone(),
            },
            false
        ),
    }?;
    report.warnings = history.warnings.clone();
    Ok(report)
}

/// Whether more than a quarter of the appends repeat a text already appended to their key
/// (Jepsen-style clients appending small values; Porcupine's histories repeat ~1% of them,
/// retries). Both kv models are exact; this only picks the faster one for the history.
fn repeats_many_appends(history: &History) -> bool {
    let mut seen = rustc_hash::FxHashSet::default();
    let (mut appends, mut repeats) = (0usize, 0usize);
    for op in &history.ops {
        if let history::Action::Append(v) = &op.action {
            let (text, _) = models::kv::text(v);
            if text.is_empty() {
                continue;
            }
            appends += 1;
            if !seen.insert((op.key, text)) {
                repeats += 1;
            }
        }
    }
    repeats * 4 > appends
}

/// One independent part of a history: the ops of one key, or all of them.
pub(crate) struct Part {
    pub key: Option<u32>,
    /// Indexes into `History::ops`, in call order.
    pub ids: Vec<u32>,
}

/// Splits the ops into parts, leaving out reads whose value is unknown: they constrain
/// nothing.
fn split(history: &History, by_key: bool) -> Vec<Part> {
    let useful = history
        .ops
        .iter()
        .enumerate()
        .filter(|(_, o)| !(o.action.is_read_only() && o.outcome == history::Outcome::Unknown));
    if !by_key {
        return vec![Part {
            key: None,
            ids: useful.map(|(i, _)| i as u32).collect(),
        }];
    }
    let mut parts: Vec<Part> = (0..history.keys.len().max(1))
        .map(|k| Part {
            key: (!history.keys.is_empty()).then_some(k as u32),
            ids: Vec::new(),
        })
        .collect();
    for (i, op) in useful {
        parts[op.key.unwrap_or(0) as usize].ids.push(i as u32);
    }
    parts.retain(|p| !p.ids.is_empty());
    parts
}

/// Most ops a part may have for the pairwise independence split (it asks the model about
/// every pair of ops: 12.5M questions at this size).
const MAX_INDEPENDENCE_OPS: usize = 5_000;

/// Splits one part into the connected components of the *dependence* graph: two ops are
/// joined unless the model says they are independent ([`Model::independent`]: in every
/// state each is legal iff it is legal after the other, and the two orders reach the same
/// state). Then every op of one component is independent of every op of another, and the
/// history is linearizable iff each component's sub-history is: Herlihy & Wing's locality
/// (TOPLAS 1990, Theorem 1), whose proof needs only that independence — two linearizations
/// merged in real-time order stay legal because independent adjacent ops can be swapped.
/// The model, not a user-supplied partition, says what commutes.
fn split_independent<M: Model>(model: &M, history: &History, ids: &[u32]) -> Vec<Part> {
    let n = ids.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for i in 0..n {
        let a = &history.ops[ids[i] as usize];
        for (j, &other) in ids.iter().enumerate().skip(i + 1) {
            let (ri, rj) = (find(&mut parent, i), find(&mut parent, j));
            if ri != rj && !model.independent(a, &history.ops[other as usize]) {
                parent[rj] = ri;
            }
        }
    }
    let mut index_of_root = vec![usize::MAX; n];
    let mut parts: Vec<Part> = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        let r = find(&mut parent, i);
        if index_of_root[r] == usize::MAX {
            index_of_root[r] = parts.len();
            parts.push(Part {
                key: None,
                ids: Vec::new(),
            });
        }
        parts[index_of_root[r]].ids.push(id);
    }
    // Name a component by its key when all its ops share one (for reports).
    for part in &mut parts {
        let k = history.ops[part.ids[0] as usize].key;
        if parts_share_key(history, &part.ids, k) {
            part.key = k;
        }
    }
    if parts.is_empty() {
        parts.push(Part {
            key: None,
            ids: Vec::new(),
        });
    }
    parts
}

fn parts_share_key(history: &History, ids: &[u32], key: Option<u32>) -> bool {
    key.is_some() && ids.iter().all(|&i| history.ops[i as usize].key == key)
}

#[allow(clippy::too_many_arguments)]
fn run_model<M: Model>(
    model: &M,
    history: &History,
    kind: ModelKind,
    opts: &CheckOptions,
    by_key: bool,
    memory: usize,
    single_search: bool,
    algorithm: scheduler::Algorithm,
) -> Result<CheckReport, Refusal> {
    if let Some(op) = history.ops.iter().find(|o| !model.supports(&o.action)) {
        return Err((
            Some(op.call_line),
            format!(
                "model {} has no {:?} operation (choose another with --model)",
                kind.name(),
                op.action.f()
            ),
        ));
    }
    let start = Instant::now();
    let deadline = opts.timeout.map(|t| start + t);
    let mut parts = split(history, by_key);
    let mut split_by_independence = false;
    if !by_key && !single_search && parts.len() == 1 && parts[0].ids.len() <= MAX_INDEPENDENCE_OPS {
        let found = split_independent(model, history, &parts[0].ids);
        split_by_independence = found.len() > 1;
        parts = found;
    }
    let op_lists: Vec<Vec<&Op>> = parts
        .iter()
        .map(|p| p.ids.iter().map(|&i| &history.ops[i as usize]).collect())
        .collect();
    let outcomes = scheduler::check_parts_using(
        model,
        &op_lists,
        deadline,
        opts.fail_fast,
        memory,
        algorithm,
    );
    let check_seconds = start.elapsed().as_secs_f64();
    let mut report = report::build(model, history, kind, &parts, &outcomes);
    report.partitioned = by_key;
    report.independent_parts = split_by_independence;
    report.check_seconds = check_seconds;
    Ok(report)
}
