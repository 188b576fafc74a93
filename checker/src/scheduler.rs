//! Runs the searches of all parts on all cores, time-sliced.
//!
//! Parts go into one queue, smallest first. A worker takes the part at the front, runs its
//! search for a slice of steps and, if it has no answer yet, puts it at the back. So every
//! part makes progress in turn, as Porcupine's one-goroutine-per-partition does: a cheap
//! invalid part is never stuck behind two hard valid ones, and with `--fail-fast` the
//! first invalid part cancels the rest promptly. The deadline and the memo budget are
//! checked inside each search's loop.

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

struct Task<'a, M: Model> {
    part: usize,
    search: Option<Search<'a, M>>,
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
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by_key(|&p| parts[p].len());
    let queue: Mutex<VecDeque<Task<M>>> = Mutex::new(
        order
            .into_iter()
            .map(|part| Task { part, search: None })
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
        let search = task
            .search
            .get_or_insert_with(|| Search::new(model, parts[task.part].clone()));
        match search.run(SLICE, &limits) {
            Progress::Paused => queue.lock().unwrap().push_back(task),
            Progress::Finished(outcome) => {
                if std::env::var_os("FAULTLINE_DEBUG").is_some() {
                    let (steps, nodes) = search.stats();
                    eprintln!(
                        "part {} ops {} steps {steps} memo {nodes}",
                        task.part,
                        parts[task.part].len()
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
