//! The checkers of a run, as a list: each judges part of what the run recorded and gives
//! a named result; the run's verdict is their combination ([`combine`]).
//!
//! A checker comes from the workload (linearizability of the history for kv/register;
//! snapshot consistency and conservation for the bank), from the system
//! (`System::checkers`), or from the pipeline itself: replica convergence
//! (`convergence.rs`) judges every run, and says `skipped` where the system has no
//! replica-state endpoint. It has two moments:
//!
//! - [`Checker::gather`] — after the settle phase, while the nodes still run: collect what
//!   it needs from the cluster (e.g. every replica's state). Most checkers need nothing.
//! - [`Checker::check`] — after the nodes are down and the history is closed: judge.
//!   It may block (the pipeline runs it off the async runtime); an error or panic inside
//!   is `unknown`, never a crashed run (Jepsen's `check-safe`).

pub mod convergence;
pub mod linearizable;

use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::BoxFuture;

pub use checker::Verdict;

use crate::system::Cluster;

/// What the run recorded, for checkers to read.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The results folder.
    pub dir: PathBuf,
    /// `history.jsonl`, complete (every event recorded is in it).
    pub history: PathBuf,
    /// How long a checker may search before answering `unknown`.
    pub check_timeout: Duration,
    /// Why the run was cut short (a signal, a failed history write), if it was.
    pub interrupted: Option<String>,
}

/// One checker.
pub trait Checker: Send {
    /// The name of its result in `results.json`'s `checkers` and in the report.
    fn name(&self) -> &'static str;
    /// After settling, before the nodes stop: collects what `check` will need.
    fn gather<'a>(&'a mut self, cluster: &'a dyn Cluster) -> BoxFuture<'a, ()> {
        let _ = cluster;
        Box::pin(async {})
    }
    /// Judges what was recorded.
    fn check(self: Box<Self>, recorded: &Recorded) -> CheckOutcome;
}

/// What one checker said, in every form the results folder needs.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    /// The checker's name (`linearizable`, `bank`, ...).
    pub checker: &'static str,
    pub verdict: Verdict,
    /// The checker's own JSON report (`results.json`: `checkers.<name>.report`).
    pub report: serde_json::Value,
    /// Its plain-text explanation for the terminal and the report.
    pub text: String,
    /// A self-contained page visualizing why a history is invalid.
    pub html: Option<String>,
    /// A section shown inline in `report.html` under this checker's heading.
    pub fragment: Option<String>,
    /// Top-level `results.json` fields this checker adds (the bank's `snapshots`,
    /// `final`, `bank`), kept where tools already read them.
    pub results: Vec<(&'static str, serde_json::Value)>,
    /// Files it wrote into the results folder: (`files` key, file name).
    pub files: Vec<(&'static str, &'static str)>,
    /// One line for the terminal before the verdict line (e.g. the snapshot counts).
    pub summary: Option<String>,
    /// Why this checker does not apply to this run (e.g. the system has no replica-state
    /// endpoint): shown as `skipped` and left out of [`combine`].
    pub skipped: Option<String>,
}

impl CheckOutcome {
    /// A result with only a verdict, report and text.
    pub fn new(
        checker: &'static str,
        verdict: Verdict,
        report: serde_json::Value,
        text: String,
    ) -> Self {
        Self {
            checker,
            verdict,
            report,
            text,
            html: None,
            fragment: None,
            results: Vec::new(),
            files: Vec::new(),
            summary: None,
            skipped: None,
        }
    }

    /// `unknown`, because checker `checker` could not give an answer.
    pub fn failed(checker: &'static str, why: String) -> Self {
        Self::new(
            checker,
            Verdict::Unknown,
            serde_json::json!({ "error": why }),
            format!("the checker gave no answer: {why}"),
        )
    }
}

/// The run's verdict from its checkers' verdicts: any invalid → invalid; else any
/// unknown → unknown; else valid. Skipped checkers do not count; no checker that applied
/// is `unknown`: nothing was judged.
pub fn combine(outcomes: &[CheckOutcome]) -> Verdict {
    let applied: Vec<&CheckOutcome> = outcomes.iter().filter(|o| o.skipped.is_none()).collect();
    let outcomes = &applied[..];
    if outcomes.iter().any(|o| o.verdict == Verdict::Invalid) {
        Verdict::Invalid
    } else if outcomes.is_empty() || outcomes.iter().any(|o| o.verdict == Verdict::Unknown) {
        Verdict::Unknown
    } else {
        Verdict::Valid
    }
}

/// Runs `checker.check` off the async runtime; a panic is `unknown`.
pub async fn run_check(checker: Box<dyn Checker>, recorded: Recorded) -> CheckOutcome {
    let name = checker.name();
    match tokio::task::spawn_blocking(move || checker.check(&recorded)).await {
        Ok(outcome) => outcome,
        Err(e) => CheckOutcome::failed(name, format!("the checker crashed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(verdicts: &[Verdict]) -> Vec<CheckOutcome> {
        verdicts
            .iter()
            .map(|v| CheckOutcome::new("x", *v, serde_json::Value::Null, String::new()))
            .collect()
    }

    #[test]
    fn verdicts_combine_invalid_over_unknown_over_valid() {
        use Verdict::*;
        assert_eq!(combine(&with(&[Valid, Valid])), Valid);
        assert_eq!(combine(&with(&[Valid, Unknown])), Unknown);
        assert_eq!(combine(&with(&[Unknown, Invalid, Valid])), Invalid);
        assert_eq!(combine(&with(&[Invalid])), Invalid);
        assert_eq!(combine(&[]), Unknown, "nothing judged is never a pass");
        let mut skipped = with(&[Valid]);
        skipped[0].skipped = Some("skipped: no endpoint".into());
        assert_eq!(
            combine(&skipped),
            Unknown,
            "only skipped checkers: nothing judged"
        );
        skipped.extend(with(&[Invalid]));
        assert_eq!(combine(&skipped), Invalid);
    }
}
