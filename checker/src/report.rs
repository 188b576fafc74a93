//! The result of a check: verdict, and for each invalid part the evidence — the op that
//! cannot be linearized and the longest linearizable prefix with the model state after each
//! step (replayed through the model, as Porcupine's visualizer does, not stored by the
//! search). Rendered as text here, as JSON by serde, and as HTML by [`crate::visualize`].

use crate::formats::Format;
use crate::history::{History, Op};
use crate::model::{Model, Step};
use crate::search::{GiveUp, SearchOutcome};
use crate::{ModelKind, Part};
use serde::Serialize;
use std::fmt::Write as _;

/// The answer for a history, a part, or a set of histories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Valid,
    Unknown,
    Invalid,
}

impl Verdict {
    /// Merges verdicts: invalid beats unknown beats valid.
    pub fn merge(self, other: Verdict) -> Verdict {
        self.max(other)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Invalid => "invalid",
            Verdict::Unknown => "unknown",
        }
    }

    /// The exit status `faultline check` gives for it.
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Valid => 0,
            Verdict::Invalid => 1,
            Verdict::Unknown => 2,
        }
    }
}

/// One operation as a report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpView {
    /// Index of the op in the history (after pairing, fails left out).
    pub id: usize,
    pub process: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub f: &'static str,
    /// E.g. `p3 cas 1->2 ok`.
    pub description: String,
    /// `ok`; `info` for an op that may take effect any time after its call, or never;
    /// `fail` for an op that definitely did not happen (shown only to explain).
    pub completion: &'static str,
    pub call: u64,
    pub ret: Option<u64>,
    pub call_line: usize,
    pub ret_line: Option<usize>,
}

impl OpView {
    pub fn new(history: &History, id: usize) -> Self {
        let op: &Op = &history.ops[id];
        OpView {
            id,
            process: op.process,
            key: history.key_name(op.key).map(str::to_string),
            f: op.action.f(),
            description: op.describe(),
            completion: if op.ret.is_some() { "ok" } else { "info" },
            call: op.call,
            ret: op.ret,
            call_line: op.call_line,
            ret_line: op.ret_line,
        }
    }

    /// A failed op (`history.failed_ops[i]`); its id is `history.ops.len() + i`, so ids
    /// stay unique within a report.
    pub fn failed(history: &History, i: usize) -> Self {
        let op: &Op = &history.failed_ops[i];
        OpView {
            id: history.ops.len() + i,
            process: op.process,
            key: history.key_name(op.key).map(str::to_string),
            f: op.action.f(),
            description: format!("{} fail", op.describe_call()),
            completion: "fail",
            call: op.call,
            ret: op.ret,
            call_line: op.call_line,
            ret_line: op.ret_line,
        }
    }

    fn lines(&self) -> String {
        match self.ret_line {
            Some(r) if r != self.call_line => format!("lines {}-{}", self.call_line, r),
            _ => format!("line {}", self.call_line),
        }
    }
}

/// One step of the longest linearization: the op and the model state after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinearizedStep {
    pub op: OpView,
    pub state: String,
}

/// A part (key) that is not linearizable, with the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidPart {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Ops in this part.
    pub ops: usize,
    /// The op that cannot be linearized: its return was reached and no order of the ops
    /// before it fits the model.
    pub blocking: OpView,
    /// Other ops that could have gone next after the prefix, all tried and failed.
    pub pending: Vec<OpView>,
    pub initial_state: String,
    /// The longest linearizable prefix found, with the state after each step.
    pub linearization: Vec<LinearizedStep>,
    /// The part's ops around the failure (all of them for parts of up to 400 ops), for the
    /// timeline, then the failed ops that overlap the blocking op.
    pub timeline: Vec<OpView>,
    /// Failed (`completion: "fail"`) and pending (`"info"`) ops of the part whose interval
    /// overlaps the blocking op's: e.g. the only write of the value read, which failed.
    pub overlapping: Vec<OpView>,
}

/// Why a part has no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownReason {
    /// The `--timeout` ran out.
    Timeout,
    /// The search reached its memory budget (`--memory-limit`, FAULTLINE_MEMO_LIMIT_MB).
    MemoryLimit,
    /// The timeout ran out while the file was still being read.
    ReadTimeout,
}

impl UnknownReason {
    pub fn describe(self) -> &'static str {
        match self {
            UnknownReason::Timeout => "the timeout ran out",
            UnknownReason::MemoryLimit => "the search reached its memory budget",
            UnknownReason::ReadTimeout => "the timeout ran out while reading the file",
        }
    }
}

/// A part (key) that ran out of time or memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnknownPart {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub ops: usize,
    pub reason: UnknownReason,
    /// The most ops linearized at once before it gave up.
    pub deepest: usize,
}

/// The result of checking one history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    pub model: ModelKind,
    pub verdict: Verdict,
    /// Operations checked (completed `ok`, `info`, or never completed). The text report's
    /// "ops to linearize" are the completed ones, `ops - indefinite_ops`: those must be
    /// placed; the others may be.
    pub ops: usize,
    /// Of those, ops that may take effect any time after their call, or never.
    pub indefinite_ops: usize,
    /// Ops that completed `fail` and were left out.
    pub failed_ops: usize,
    pub keys: usize,
    pub partitioned: bool,
    /// Not partitioned by key, but split into independent parts by the model's own answer
    /// to "do these ops commute" (`Model::independent`).
    #[serde(default)]
    pub independent_parts: bool,
    pub parts: usize,
    pub valid_parts: usize,
    /// Parts not finished because `--fail-fast` stopped the check.
    pub skipped_parts: usize,
    pub parse_seconds: f64,
    pub check_seconds: f64,
    pub invalid: Vec<InvalidPart>,
    pub unknown: Vec<UnknownPart>,
    /// What the reader tolerated (e.g. a torn last line dropped), one line each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Parts larger than this get a timeline of the ops around the failure only.
const FULL_TIMELINE: usize = 400;
/// How many prefix steps before the failure the windowed timeline reaches back.
const TIMELINE_CONTEXT: usize = 30;

pub(crate) fn build<M: Model>(
    model: &M,
    history: &History,
    kind: ModelKind,
    parts: &[Part],
    outcomes: &[SearchOutcome],
) -> CheckReport {
    let mut report = CheckReport {
        file: String::new(),
        format: None,
        model: kind,
        verdict: Verdict::Valid,
        ops: history.ops.len(),
        indefinite_ops: history.indefinite_ops(),
        failed_ops: history.failed,
        keys: history.keys.len(),
        partitioned: false,
        independent_parts: false,
        parts: parts.len(),
        valid_parts: 0,
        skipped_parts: 0,
        parse_seconds: 0.0,
        check_seconds: 0.0,
        invalid: Vec::new(),
        unknown: Vec::new(),
        warnings: Vec::new(),
    };
    for (part, outcome) in parts.iter().zip(outcomes) {
        let key = history.key_name(part.key).map(str::to_string);
        match outcome {
            SearchOutcome::Linearizable => report.valid_parts += 1,
            SearchOutcome::NotLinearizable(cx) => {
                let global = |local: u32| part.ids[local as usize] as usize;
                let mut state = model.init();
                let initial_state = model.describe(&state);
                let mut linearization = Vec::with_capacity(cx.prefix.len());
                let prefix: Vec<&Op> = cx.prefix.iter().map(|&l| &history.ops[global(l)]).collect();
                for i in model.concrete_order(&prefix) {
                    let id = global(cx.prefix[i]);
                    match model.step(&state, &history.ops[id]) {
                        Step::Next(s) => state = s,
                        Step::Same => {}
                        Step::Illegal => unreachable!("the prefix was legal in the search"),
                    }
                    linearization.push(LinearizedStep {
                        op: OpView::new(history, id),
                        state: model.describe(&state),
                    });
                }
                let blocking = OpView::new(history, global(cx.blocker));
                let pending: Vec<OpView> = cx
                    .pending
                    .iter()
                    .map(|&l| OpView::new(history, global(l)))
                    .collect();
                let mut timeline = timeline(history, part, &linearization, &blocking);
                let overlapping = overlapping(history, part, &blocking);
                timeline.extend(
                    overlapping
                        .iter()
                        .filter(|o| o.completion == "fail")
                        .cloned(),
                );
                report.invalid.push(InvalidPart {
                    key,
                    ops: part.ids.len(),
                    blocking,
                    pending,
                    initial_state,
                    linearization,
                    timeline,
                    overlapping,
                });
            }
            SearchOutcome::GaveUp {
                reason: GiveUp::Cancelled,
                ..
            } => report.skipped_parts += 1,
            SearchOutcome::GaveUp { reason, deepest } => report.unknown.push(UnknownPart {
                key,
                ops: part.ids.len(),
                reason: if *reason == GiveUp::Deadline {
                    UnknownReason::Timeout
                } else {
                    UnknownReason::MemoryLimit
                },
                deepest: *deepest,
            }),
        }
    }
    report.verdict = if !report.invalid.is_empty() {
        Verdict::Invalid
    } else if !report.unknown.is_empty() || report.skipped_parts > 0 {
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    report
}

/// Failed and pending ops of the part overlapping the blocking op (calls no later than its
/// return, returns — if any — no earlier than its call), at most 50 of each.
fn overlapping(history: &History, part: &Part, blocking: &OpView) -> Vec<OpView> {
    let (from, to) = (blocking.call, blocking.ret.unwrap_or(u64::MAX));
    let overlaps = |op: &Op| op.call <= to && op.ret.is_none_or(|r| r >= from);
    let failed = history
        .failed_ops
        .iter()
        .enumerate()
        .filter(|(_, op)| (part.key.is_none() || op.key == part.key) && overlaps(op))
        .take(50)
        .map(|(i, _)| OpView::failed(history, i));
    let pending = part
        .ids
        .iter()
        .map(|&i| i as usize)
        .filter(|&i| history.ops[i].ret.is_none() && overlaps(&history.ops[i]))
        .take(50)
        .map(|i| OpView::new(history, i));
    failed.chain(pending).collect()
}

/// The part's ops to draw: all of them for a small part, else those overlapping the window
/// from the call of the last few prefix ops to the blocking op's return.
fn timeline(
    history: &History,
    part: &Part,
    linearization: &[LinearizedStep],
    blocking: &OpView,
) -> Vec<OpView> {
    if part.ids.len() <= FULL_TIMELINE {
        return part
            .ids
            .iter()
            .map(|&i| OpView::new(history, i as usize))
            .collect();
    }
    let from = linearization
        .iter()
        .rev()
        .take(TIMELINE_CONTEXT)
        .map(|s| s.op.call)
        .min()
        .unwrap_or(blocking.call)
        .min(blocking.call);
    let to = blocking.ret.unwrap_or(blocking.call);
    part.ids
        .iter()
        .map(|&i| i as usize)
        .filter(|&i| {
            let op = &history.ops[i];
            op.call <= to && op.ret.is_none_or(|r| r >= from)
        })
        .take(FULL_TIMELINE)
        .map(|i| OpView::new(history, i))
        .collect()
}

/// Text shows at most this many prefix steps (the last ones); JSON has them all.
const TEXT_STEPS: usize = 20;

impl CheckReport {
    /// A human-readable summary: the verdict line, then the evidence for each invalid part
    /// and the parts that ran out.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let (verdict, model) = (self.verdict.as_str().to_uppercase(), self.model.name());
        let _ = writeln!(
            out,
            "{}: {verdict} ({model}; {} ops to linearize, {} info, {} failed; {} part{}{}; parsed in {:.1} ms, checked in {:.1} ms)",
            self.file,
            self.ops - self.indefinite_ops,
            self.indefinite_ops,
            self.failed_ops,
            self.parts,
            if self.parts == 1 { "" } else { "s" },
            if self.partitioned {
                " by key"
            } else if self.independent_parts {
                " of independent ops, found by the model"
            } else {
                ""
            },
            self.parse_seconds * 1e3,
            self.check_seconds * 1e3,
        );
        for part in &self.invalid {
            let name = part_name(&part.key);
            let b = &part.blocking;
            let _ = writeln!(
                out,
                "  {name}: not linearizable: op #{} `{}` ({}) cannot be linearized",
                b.id,
                b.description,
                b.lines()
            );
            let others: Vec<String> = part
                .pending
                .iter()
                .filter(|p| p.id != b.id)
                .map(|p| format!("#{} `{}`", p.id, p.description))
                .collect();
            if !others.is_empty() {
                let _ = writeln!(
                    out,
                    "    after the prefix below, neither it nor these could go next: {}",
                    others.join(", ")
                );
            }
            if !part.overlapping.is_empty() {
                let ops: Vec<String> = part
                    .overlapping
                    .iter()
                    .map(|p| format!("`{}` ({}, {})", p.description, p.completion, p.lines()))
                    .collect();
                let _ = writeln!(
                    out,
                    "    failed and pending ops overlapping it: {}",
                    ops.join(", ")
                );
            }
            let n = part.linearization.len();
            let _ = writeln!(
                out,
                "    longest linearizable prefix: {n} of {} ops; state after each step:",
                part.ops
            );
            let skip = n.saturating_sub(TEXT_STEPS);
            if skip == 0 {
                let _ = writeln!(out, "          {:<40} {}", "(initial)", part.initial_state);
            } else {
                let _ = writeln!(
                    out,
                    "          ... {skip} earlier steps (see --json or --html)"
                );
            }
            for (i, step) in part.linearization.iter().enumerate().skip(skip) {
                let _ = writeln!(
                    out,
                    "    {:>5}. {:<40} {}",
                    i + 1,
                    format!("#{} {}", step.op.id, step.op.description),
                    step.state
                );
            }
        }
        for part in &self.unknown {
            let why = part.reason.describe();
            let _ = writeln!(
                out,
                "  {}: unknown: {why} ({} ops, at most {} linearized at once)",
                part_name(&part.key),
                part.ops,
                part.deepest
            );
        }
        if self.skipped_parts > 0 {
            let _ = writeln!(
                out,
                "  {} part(s) not finished: --fail-fast stopped at the first invalid one",
                self.skipped_parts
            );
        }
        for w in &self.warnings {
            let _ = writeln!(out, "  warning: {w}");
        }
        out
    }

    /// The report for a file whose reading ran out of time at `line`: `unknown`.
    pub fn read_timeout(model: Option<ModelKind>, line: usize) -> CheckReport {
        CheckReport {
            file: String::new(),
            format: None,
            model: model.unwrap_or(ModelKind::CasRegister),
            verdict: Verdict::Unknown,
            ops: 0,
            indefinite_ops: 0,
            failed_ops: 0,
            keys: 0,
            partitioned: false,
            independent_parts: false,
            parts: 0,
            valid_parts: 0,
            skipped_parts: 0,
            parse_seconds: 0.0,
            check_seconds: 0.0,
            invalid: Vec::new(),
            unknown: vec![UnknownPart {
                key: None,
                ops: 0,
                reason: UnknownReason::ReadTimeout,
                deepest: 0,
            }],
            warnings: vec![format!(
                "reading stopped at line {line}: nothing was checked"
            )],
        }
    }

    /// One self-contained HTML page (no network fetches) for this report.
    pub fn to_html(&self) -> String {
        crate::visualize::page(std::slice::from_ref(self))
    }
}

fn part_name(key: &Option<String>) -> String {
    match key {
        Some(k) => format!("key {k:?}"),
        None => "history".to_string(),
    }
}
