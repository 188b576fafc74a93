//! `junit.xml` (via `quick-junit`): one testcase per cell, one suite per mode/workload.
//!
//! A cell as expected is a success; an unexpected verdict is a `failure`; `unknown` is a
//! `failure` too (it is never a pass); a run that failed or was interrupted is an
//! `error`; a cell not run is `skipped`. A failure's message is the checker's first
//! explanation line and the command that reruns the cell.

use std::collections::BTreeMap;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::summary::{CellRecord, Status, Summary};

fn status(r: &CellRecord) -> TestCaseStatus {
    let what = r.explanation.clone().unwrap_or_else(|| {
        format!(
            "verdict {} (expected {})",
            r.verdict.as_deref().unwrap_or("none"),
            r.expect.name()
        )
    });
    let message = format!("{what} — rerun: {}", r.command);
    let mut description = format!(
        "cell {}\nexpected {}, verdict {}, exit {}\n{what}\nrerun: {}\n",
        r.id,
        r.expect.name(),
        r.verdict.as_deref().unwrap_or("none"),
        r.exit_code.map_or("-".into(), |c| c.to_string()),
        r.command
    );
    if let Some(d) = &r.results_dir {
        description.push_str(&format!("results: {d}\n"));
    }
    if let Some(l) = &r.log {
        description.push_str(&format!("log: {l}\n"));
    }
    let kind = match r.status {
        Status::Expected => return TestCaseStatus::success(),
        Status::NotRun => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(format!(
                "not run: {}",
                r.not_run_reason.as_deref().unwrap_or("-")
            ));
            return s;
        }
        Status::Unexpected | Status::Unknown => NonSuccessKind::Failure,
        Status::Error | Status::Interrupted => NonSuccessKind::Error,
    };
    let mut s = TestCaseStatus::non_success(kind);
    s.set_message(message);
    s.set_type(r.status.name());
    s.set_description(description);
    s
}

/// Renders the summary as JUnit XML.
pub fn render(summary: &Summary) -> Result<String, String> {
    let mut suites: BTreeMap<String, Vec<&CellRecord>> = BTreeMap::new();
    for r in &summary.cells {
        suites.entry(r.settings.suite()).or_default().push(r);
    }
    let mut report = Report::new(format!("faultline campaign {}", summary.campaign.name));
    for (name, cells) in suites {
        let mut suite = TestSuite::new(name);
        for r in cells {
            let mut case = TestCase::new(r.id.clone(), status(r));
            case.set_classname(format!("{}.{}", summary.campaign.name, r.settings.group));
            if let Some(t) = r.wall_time_s {
                case.set_time(Duration::from_secs_f64(t.max(0.0)));
            }
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report
        .to_string()
        .map_err(|e| format!("rendering junit.xml: {e}"))
}
