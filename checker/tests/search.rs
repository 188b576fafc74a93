//! Search behaviour: timeouts give `unknown` naming the part, an invalid part found in time
//! wins, fail-fast is not starved by hard parts, and the HTML page is self-contained.

use checker::history::Event;
use checker::report::UnknownReason;
use checker::{check_history, CheckOptions, ModelKind, Verdict};
use std::time::{Duration, Instant};

fn event(
    kind: &str,
    process: u64,
    f: &str,
    key: &str,
    value: serde_json::Value,
    time: u64,
) -> Event {
    checker::formats::jsonl::parse_line(
        &serde_json::json!({"type": kind, "process": process, "f": f, "key": key, "value": value, "time": time})
            .to_string(),
    )
    .unwrap()
}

/// `writers` concurrent writes of distinct values and one concurrent read of a value nobody
/// wrote: the search must try every subset of writes before it can say no.
fn hard_key(key: &str, writers: u64, first_process: u64, events: &mut Vec<Event>) {
    for i in 0..writers {
        events.push(event(
            "invoke",
            first_process + i,
            "write",
            key,
            (i as i64 + 1).into(),
            i,
        ));
    }
    events.push(event(
        "invoke",
        first_process + writers,
        "read",
        key,
        serde_json::Value::Null,
        writers,
    ));
    events.push(event(
        "ok",
        first_process + writers,
        "read",
        key,
        999.into(),
        1000,
    ));
    for i in 0..writers {
        events.push(event(
            "ok",
            first_process + i,
            "write",
            key,
            (i as i64 + 1).into(),
            1001 + i,
        ));
    }
}

/// Many sequential ops on one key whose first read is wrong: invalid within microseconds.
fn cheap_invalid_key(key: &str, ops: u64, process: u64, start: u64, events: &mut Vec<Event>) {
    let mut t = start;
    events.push(event(
        "invoke",
        process,
        "read",
        key,
        serde_json::Value::Null,
        t,
    ));
    events.push(event("ok", process, "read", key, 42.into(), t + 1));
    for i in 0..ops {
        t += 2;
        events.push(event("invoke", process, "write", key, (i as i64).into(), t));
        events.push(event("ok", process, "write", key, (i as i64).into(), t + 1));
    }
}

fn history(mut events: Vec<Event>) -> checker::history::History {
    events.sort_by_key(|e| e.time);
    checker::formats::jsonl::history_from_events(&events).unwrap()
}

#[test]
fn thirty_concurrent_ops_without_a_split_answer_unknown_within_the_timeout() {
    let mut events = Vec::new();
    hard_key("only", 32, 0, &mut events);
    let h = history(events);
    let opts = CheckOptions {
        timeout: Some(Duration::from_millis(500)),
        fail_fast: false,
        partition: false,
    };
    let start = Instant::now();
    let report = check_history(&h, ModelKind::MultiRegister, &opts).unwrap();
    let took = start.elapsed();
    assert_eq!(report.verdict, Verdict::Unknown, "{}", report.to_text());
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    assert_eq!(report.unknown.len(), 1);
    assert_eq!(report.unknown[0].reason, UnknownReason::Timeout);
    assert_eq!(report.unknown[0].ops, 33);
    assert!(report.to_text().contains("unknown: the timeout ran out"));
}

#[test]
fn an_invalid_part_found_before_the_deadline_wins_and_the_slow_part_is_named() {
    let mut events = Vec::new();
    hard_key("slow", 32, 0, &mut events);
    cheap_invalid_key("broken", 10, 100, 0, &mut events);
    let h = history(events);
    let opts = CheckOptions {
        timeout: Some(Duration::from_millis(500)),
        ..CheckOptions::default()
    };
    let report = check_history(&h, ModelKind::MultiRegister, &opts).unwrap();
    assert_eq!(report.verdict, Verdict::Invalid);
    assert_eq!(report.invalid.len(), 1);
    assert_eq!(report.invalid[0].key.as_deref(), Some("broken"));
    assert_eq!(report.unknown.len(), 1);
    assert_eq!(report.unknown[0].key.as_deref(), Some("slow"));
}

/// Regression guard for the starvation seen in a Porcupine port (checker-pitfalls.md): hard
/// parts scheduled first on every core must not keep a cheap invalid part from running.
#[test]
fn fail_fast_is_not_starved_by_hard_parts() {
    let mut events = Vec::new();
    for k in 0..4 {
        hard_key(&format!("hard{k}"), 30, k * 100, &mut events);
    }
    // The largest part, so smallest-first ordering alone would run it last.
    cheap_invalid_key("cheap", 300, 1000, 0, &mut events);
    let h = history(events);
    let opts = CheckOptions {
        timeout: Some(Duration::from_secs(60)),
        fail_fast: true,
        partition: true,
    };
    let start = Instant::now();
    let report = check_history(&h, ModelKind::MultiRegister, &opts).unwrap();
    let took = start.elapsed();
    assert_eq!(report.verdict, Verdict::Invalid);
    assert_eq!(report.invalid[0].key.as_deref(), Some("cheap"));
    assert!(took < Duration::from_secs(5), "fail-fast took {took:?}");
    assert_eq!(report.skipped_parts, 4);
}

#[test]
fn html_is_self_contained_and_shows_the_failure() {
    let mut events = Vec::new();
    cheap_invalid_key("k<1>", 5, 7, 0, &mut events);
    let h = history(events);
    let report = check_history(&h, ModelKind::MultiRegister, &CheckOptions::default()).unwrap();
    let html = report.to_html();
    for fetch in [
        "<script src",
        "<link",
        "@import",
        "https://",
        "src=\"http",
        "url(",
    ] {
        assert!(!html.contains(fetch), "page fetches something: {fetch}");
    }
    assert!(html.contains("<svg"));
    assert!(html.contains("p7 read -&gt; 42"), "the breaking op");
    assert!(html.contains("cannot be linearized"));
    assert!(html.contains("k&lt;1&gt;"), "key names are escaped");
}
