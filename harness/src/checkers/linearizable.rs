//! The linearizability checker: judges `history.jsonl` with the model the workload names,
//! through the `checker` crate (Wing–Gong–Lowe search, per key, in parallel).

use std::path::Path;
use std::time::Duration;

use workloads::Model;

use super::{CheckOutcome, Checker, Recorded, Verdict};

/// The checker's name in results.json (`checkers.linearizable`).
pub const NAME: &str = "linearizable";

/// Linearizability of the whole history against `model`.
#[derive(Debug, Clone, Copy)]
pub struct Linearizable {
    pub model: Model,
}

impl Checker for Linearizable {
    fn name(&self) -> &'static str {
        NAME
    }

    fn check(self: Box<Self>, recorded: &Recorded) -> CheckOutcome {
        eprintln!("faultline run: checking {} ...", recorded.history.display());
        check(&recorded.history, self.model, recorded.check_timeout)
    }
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
        Ok(Ok(report)) => {
            let mut outcome = CheckOutcome::new(
                NAME,
                report.verdict,
                serde_json::to_value(&report)
                    .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() })),
                report.to_text(),
            );
            outcome.html = (report.verdict == Verdict::Invalid).then(|| report.to_html());
            outcome
        }
        Ok(Err(e)) => CheckOutcome::failed(NAME, e.to_string()),
        Err(_) => CheckOutcome::failed(NAME, "the checker panicked".into()),
    }
}
