//! The checker stage: judges `history.jsonl` with the model the workload names, through
//! the `checker` crate. Kept behind this one function so another checker can be swapped
//! in alone (Jepsen's split); a checker that errors or panics gives `unknown`, never a
//! crashed run (Jepsen's `check-safe`).

use std::path::Path;
use std::time::Duration;

pub use checker::Verdict;
use workloads::Model;

/// What the checker said, in every form the results folder needs.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    pub checker: &'static str,
    pub verdict: Verdict,
    /// The checker's own JSON report.
    pub report: serde_json::Value,
    /// Its plain-text explanation for the terminal.
    pub text: String,
    /// A self-contained page visualizing why a history is invalid.
    pub html: Option<String>,
    /// A section shown inline in `report.html` (the bank workload's money and snapshots).
    pub fragment: Option<String>,
}

impl CheckOutcome {
    /// `unknown`, because the checker could not give an answer.
    pub fn failed(why: String) -> Self {
        Self {
            checker: "linearizable",
            verdict: Verdict::Unknown,
            report: serde_json::json!({ "error": why }),
            text: format!("the checker gave no answer: {why}"),
            html: None,
            fragment: None,
        }
    }
}

pub fn model_name(model: Model) -> &'static str {
    model.name()
}

/// Checks `history` against `model`, answering `unknown` for parts still running after
/// `timeout`. Every key is checked (no fail-fast), so every invalid key is reported.
pub fn check(history: &Path, model: Model, timeout: Duration) -> CheckOutcome {
    let opts = checker::CheckOptions {
        timeout: Some(timeout),
        fail_fast: false,
        partition: true,
    };
    let result = std::panic::catch_unwind(|| checker::check_history_file(history, model, &opts));
    match result {
        Ok(Ok(report)) => CheckOutcome {
            checker: "linearizable",
            verdict: report.verdict,
            report: serde_json::to_value(&report)
                .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() })),
            text: report.to_text(),
            html: (report.verdict == Verdict::Invalid).then(|| report.to_html()),
            fragment: None,
        },
        Ok(Err(e)) => CheckOutcome::failed(e.to_string()),
        Err(_) => CheckOutcome::failed("the checker panicked".into()),
    }
}
