//! Runs the searches of all parts on all cores, time-sliced.
//!
//! Parts go into one queue, smallest first. A worker takes the part at the front, runs its
//! search for a slice of steps and, if it has no answer yet, puts it at the back. So every
//! part makes progress in turn, as Porcupine's one-goroutine-per-partition does: a cheap
//! invalid part is never stuck behind two hard valid ones, and with `--fail-fast` the
//! first invalid part cancels the rest promptly. The deadline and the memo budget are
//! checked inside each search's loop.

use crate::frontier::Frontier;
use crate::history::Op;
use crate::model::Model;
use crate::search::{GiveUp, Limits, Progress, Search, SearchOutcome};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Steps a search runs before yielding its worker (a few milliseconds).
const SLICE: u64 = 1 << 17;

/// Memo bytes allowed across all running searches, unless `FAULTLINE_MEMO_LIMIT_MB` says
/// otherwise: past it, the part that asks for more answers `unknown` instead of
/// exhausting the machine's memory.
pub const DEFAULT_MEMO_LIMIT_MB: usize = 2048;

pub fn memo_budget() -> usize {
    std::env::var("FAULTLINE_MEMO_LIMIT_MB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(DEFAULT_MEMO_LIMIT_MB)
        << 20
}

/// Which searches run on a part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Algorithm {
    /// The depth-first Wing–Gong–Lowe search ([`crate::search`]) alone.
    Wgl,
    /// The frontier search ([`crate::frontier`]) alone.
    Frontier,
    /// Both, interleaved slice by slice; the first definite answer wins. The default.
    Both,
}

impl Algorithm {
    /// `FAULTLINE_SEARCH=wgl|frontier|both` (for benchmarks and comparisons), else `Both`.
    pub fn from_env() -> Algorithm {
        match std::env::var("FAULTLINE_SEARCH").as_deref() {
            Ok("wgl") => Algorithm::Wgl,
            Ok("frontier") => Algorithm::Frontier,
            _ => Algorithm::Both,
        }
    }
}

/// A part's searches. The depth-first one answers valid histories on its first, greedy
/// path, usually within its first slice, but proving a violation can mean backtracking
/// through every earlier order; the frontier search costs the same for valid and invalid
/// histories but holds every configuration of a cut, which many concurrent state-changing
/// ops (and many ways of using info ops) make large. So the frontier starts only if the
/// first slice gave no answer, then the two alternate slice by slice: the part costs at
/// most about twice the cheaper one. The frontier runs first as its relaxation
/// ([`Frontier::relaxed`], small whatever the info ops, definite when it proves a
/// violation or finds a real linearization) and, if that is inconclusive, exactly. A
/// search that runs out of memory leaves the other running.
struct Task<'a, M: Model> {
    part: usize,
    slices: u32,
    wgl: Option<Search<'a, M>>,
    frontier: Option<Frontier<'a, M>>,
    /// Why a search already stopped without an answer (the part's answer if both do).
    gave_up: Option<SearchOutcome>,
}

/// Checks every part (each a list of ops) and returns one outcome per part, in order.
/// With `fail_fast`, the first non-linearizable part cancels the others, whose outcome is
/// then `GaveUp { reason: Cancelled }`.
pub fn check_parts<'a, M: Model>(
    model: &'a M,
    parts: &[Vec<&'a Op>],
    deadline: Option<Instant>,
    fail_fast: bool,
) -> Vec<SearchOutcome> {
    check_parts_within(model, parts, deadline, fail_fast, memo_budget())
}

/// [`check_parts`] with a memory budget in bytes for all searches together.
pub fn check_parts_within<'a, M: Model>(
    model: &'a M,
    parts: &[Vec<&'a Op>],
    deadline: Option<Instant>,
    fail_fast: bool,
    memory_budget: usize,
) -> Vec<SearchOutcome> {
    check_parts_using(
        model,
        parts,
        deadline,
        fail_fast,
        memory_budget,
        Algorithm::from_env(),
    )
}

/// [`check_parts_within`] with the searches to run.
pub fn check_parts_using<'a, M: Model>(
    model: &'a M,
    parts: &[Vec<&'a Op>],
    deadline: Option<Instant>,
    fail_fast: bool,
    memory_budget: usize,
    algorithm: Algorithm,
) -> Vec<SearchOutcome> {
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by_key(|&p| parts[p].len());
    let queue: Mutex<VecDeque<Task<M>>> = Mutex::new(
        order
            .into_iter()
            .map(|part| Task {
                part,
                slices: 0,
                wgl: None,
                frontier: None,
                gave_up: None,
            })
            .collect(),
    );
    let results: Mutex<Vec<Option<SearchOutcome>>> = Mutex::new(vec![None; parts.len()]);
    let cancel = AtomicBool::new(false);
    let memo_bytes = AtomicUsize::new(0);
    let limits = Limits {
        deadline,
        cancel: &cancel,
        memo_bytes: &memo_bytes,
        memo_budget: memory_budget,
    };
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(parts.len())
        .max(1);
    let work = || loop {
        let Some(mut task) = queue.lock().unwrap().pop_front() else {
            return;
        };
        let outcome = step_task(model, &parts[task.part], &mut task, algorithm, &limits);
        match outcome {
            None => queue.lock().unwrap().push_back(task),
            Some(outcome) => {
                if std::env::var_os("FAULTLINE_DEBUG").is_some() {
                    let (steps, nodes) = task.wgl.as_ref().map_or((0, 0), |s| s.stats());
                    let (fsteps, peak) = task.frontier.as_ref().map_or((0, 0), |f| f.stats());
                    eprintln!(
                        "part {} ops {} wgl steps {steps} memo {nodes}; frontier steps {fsteps} peak configurations {peak}; slices {}",
                        task.part,
                        parts[task.part].len(),
                        task.slices
                    );
                }
                if fail_fast && matches!(outcome, SearchOutcome::NotLinearizable(_)) {
                    cancel.store(true, Ordering::Relaxed);
                }
                results.lock().unwrap()[task.part] = Some(outcome);
            }
        }
    };
    if workers == 1 {
        work();
    } else {
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(work);
            }
        });
    }
    results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|r| {
            r.unwrap_or(SearchOutcome::GaveUp {
                reason: GiveUp::Cancelled,
                deepest: 0,
            })
        })
        .collect()
}

/// Runs one slice of a part's searches; `Some` answer when the part is done.
fn step_task<'a, M: Model>(
    model: &'a M,
    ops: &[&'a Op],
    task: &mut Task<'a, M>,
    algorithm: Algorithm,
    limits: &Limits,
) -> Option<SearchOutcome> {
    task.slices += 1;
    if task.slices == 1 {
        if algorithm != Algorithm::Frontier {
            task.wgl = Some(Search::new(model, ops.to_vec()));
        }
        if algorithm == Algorithm::Frontier {
            task.frontier = Some(Frontier::relaxed(model, ops.to_vec()));
        }
    } else if task.slices == 2 && algorithm == Algorithm::Both && task.frontier.is_none() {
        task.frontier = Some(Frontier::relaxed(model, ops.to_vec()));
    }
    // None: paused; Some(None): out of memory (recorded); Some(Some(answer)).
    let finish = |task_gave_up: &mut Option<SearchOutcome>, progress: Progress| match progress {
        Progress::Paused => None,
        Progress::Finished(SearchOutcome::GaveUp {
            reason: GiveUp::MemoryLimit,
            deepest,
        }) => {
            // The report's "at most N linearized": the deeper of the two searches.
            let before = match task_gave_up {
                Some(SearchOutcome::GaveUp { deepest, .. }) => *deepest,
                _ => 0,
            };
            *task_gave_up = Some(SearchOutcome::GaveUp {
                reason: GiveUp::MemoryLimit,
                deepest: deepest.max(before),
            });
            Some(None)
        }
        Progress::Finished(outcome) => Some(Some(outcome)),
    };
    let started = Instant::now();
    let mut until = None;
    if let Some(search) = task.wgl.as_mut() {
        let progress = search.run(SLICE, limits);
        // The frontier gets as much time as this slice took.
        until = Some(Instant::now() + started.elapsed());
        match finish(&mut task.gave_up, progress) {
            None => {}
            Some(Some(outcome)) => return Some(outcome),
            // Out of memory: the frontier (if any) goes on alone.
            Some(None) => task.wgl = None,
        }
    }
    if let Some(frontier) = task.frontier.as_mut() {
        match finish(&mut task.gave_up, frontier.run_until(SLICE, until, limits)) {
            None => {}
            // The relaxation found no real linearization: the exact frontier takes over.
            Some(Some(SearchOutcome::GaveUp { .. })) if frontier.inconclusive() => {
                task.frontier = Some(Frontier::new(model, ops.to_vec()));
            }
            Some(Some(outcome)) => return Some(outcome),
            Some(None) => task.frontier = None,
        }
    }
    if task.wgl.is_none()
        && task.frontier.is_none()
        && (task.slices > 1 || algorithm != Algorithm::Both)
    {
        return task.gave_up.take();
    }
    None
}
