//! Parser tests for every format, including malformed inputs, the equal-time rule and the
//! EDN exporter.

use checker::history::{Event, EventType, Process};
use checker::{check_file, CheckOptions, Error, Format, ModelKind, Verdict};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

fn write_tmp(ext: &str, content: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("checker-formats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("h{}.{ext}", N.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&path, content).unwrap();
    path
}

fn check(ext: &str, content: &str) -> Result<checker::CheckReport, Error> {
    check_file(
        &write_tmp(ext, content),
        None,
        None,
        &CheckOptions::default(),
    )
}

/// Asserts a one-line error naming the file, the line and the problem.
fn assert_input_error(ext: &str, content: &str, line: usize, problem: &str) {
    let path = write_tmp(ext, content);
    let err = check_file(&path, None, None, &CheckOptions::default()).unwrap_err();
    let text = err.to_string();
    assert!(!text.contains('\n'), "one line: {text}");
    assert!(
        text.starts_with(&format!("{}:{line}: ", path.display())),
        "expected line {line}: {text}"
    );
    assert!(text.contains(problem), "expected {problem:?} in {text}");
}

const JSONL_OK: &str = r#"{"type":"invoke","process":0,"f":"write","key":"a","value":1,"time":10}
{"type":"invoke","process":"nemesis","f":"start-partition","value":{"grudge":[["n1"],["n2","n3"]]},"time":11}
{"type":"ok","process":0,"f":"write","key":"a","value":1,"time":20,"node":"n1"}
{"type":"invoke","process":1,"f":"cas","key":"a","value":[1,2],"time":30}
{"type":"ok","process":1,"f":"cas","key":"a","value":[1,2],"time":40}
{"type":"invoke","process":2,"f":"read","key":"a","value":null,"time":50}
{"type":"ok","process":2,"f":"read","key":"a","value":2,"time":60}
{"type":"invoke","process":3,"f":"write","key":"b","value":"x","time":61}
{"type":"info","process":3,"f":"write","key":"b","value":"x","time":70}
{"type":"invoke","process":4,"f":"cas","key":"b","value":[null,"y"],"time":71}
{"type":"fail","process":4,"f":"cas","key":"b","value":[null,"y"],"time":72}
"#;

#[test]
fn native_jsonl_is_read_and_checked() {
    let report = check("jsonl", JSONL_OK).unwrap();
    assert_eq!(report.format, Some(Format::Jsonl));
    assert_eq!(report.model, ModelKind::MultiRegister);
    assert_eq!(report.verdict, Verdict::Valid);
    assert_eq!(
        (report.ops, report.indefinite_ops, report.failed_ops),
        (4, 1, 1)
    );
    assert_eq!(report.keys, 2);
}

#[test]
fn a_wrong_read_in_jsonl_is_invalid() {
    let bad = JSONL_OK.replace(
        r#""f":"read","key":"a","value":2"#,
        r#""f":"read","key":"a","value":1"#,
    );
    let report = check("jsonl", &bad).unwrap();
    assert_eq!(report.verdict, Verdict::Invalid);
    assert_eq!(report.invalid[0].key.as_deref(), Some("a"));
    assert_eq!(report.invalid[0].blocking.call_line, 6);
}

#[test]
fn events_round_trip_with_extra_fields_kept() {
    let path = write_tmp("jsonl", JSONL_OK);
    let events = checker::formats::jsonl::read_events(&path).unwrap();
    assert_eq!(events.len(), 11);
    assert_eq!(events[1].process, Process::Nemesis);
    assert_eq!(
        events[2].extra.get("node").and_then(|v| v.as_str()),
        Some("n1")
    );
    let event = Event {
        kind: EventType::Ok,
        process: Process::Client(3),
        f: "cas".into(),
        key: Some("k7".into()),
        value: serde_json::json!([1, 2]),
        time: 123_999_000,
        extra: [("node".to_string(), serde_json::json!("n2"))]
            .into_iter()
            .collect(),
    };
    let line = serde_json::to_string(&event).unwrap();
    assert_eq!(
        line,
        r#"{"type":"ok","process":3,"f":"cas","key":"k7","value":[1,2],"time":123999000,"node":"n2"}"#
    );
    assert_eq!(checker::formats::jsonl::parse_line(&line).unwrap(), event);
}

#[test]
fn malformed_jsonl_names_file_line_and_problem() {
    let invoke = r#"{"type":"invoke","process":0,"f":"write","value":1,"time":10}"#;
    let ok = r#"{"type":"ok","process":0,"f":"write","value":1,"time":20}"#;
    assert_input_error(
        "jsonl",
        &format!("{invoke}\n{{\"type\":\"ok\",\"process\":0,\"f\"\n"),
        2,
        "truncated line",
    );
    assert_input_error(
        "jsonl",
        &format!("{invoke}\n{{\"type\":\"ok\",\"process\":0,\"f\"\n{ok}\n"),
        2,
        "truncated line",
    );
    assert_input_error(
        "jsonl",
        &format!("{invoke}\n{}", ok.replace("\"ok\"", "\"done\"")),
        2,
        "unknown op type \"done\"",
    );
    assert_input_error("jsonl", ok, 1, "return without a call");
    assert_input_error(
        "jsonl",
        &format!("{invoke}\n{}", ok.replace("20", "5")),
        2,
        "non-monotonic time",
    );
    assert_input_error(
        "jsonl",
        &format!("{invoke}\n{}", invoke.replace("10", "11")),
        2,
        "process 0 has two open ops",
    );
    assert_input_error(
        "jsonl",
        &format!("{invoke}\n{}", ok.replace("write", "read")),
        2,
        "does not match",
    );
    assert_input_error(
        "jsonl",
        &invoke.replace("write\",\"value\":1", "cas\",\"value\":1"),
        1,
        "cas value must be [from, to]",
    );
    assert_input_error(
        "jsonl",
        &invoke.replace("write", "increment"),
        1,
        "unknown f \"increment\"",
    );
    assert_input_error(
        "jsonl",
        &invoke.replace(",\"time\":10", ""),
        1,
        "missing field `time`",
    );
    assert_input_error(
        "jsonl",
        &invoke.replace("\"process\":0", "\"process\":\"x\""),
        1,
        "process",
    );
    assert_input_error("jsonl", &format!("{invoke}\nnot json"), 2, "malformed JSON");
}

/// A history with nothing to linearize (empty file, only nemesis events, only failed ops) is
/// valid, as Knossos, Jepsen and Porcupine judge it, and says it had 0 ops to linearize.
#[test]
fn histories_with_nothing_to_linearize_are_valid() {
    for content in [
        "",
        "\n\n",
        r#"{"type":"invoke","process":"nemesis","f":"kill","value":null,"time":1}"#,
    ] {
        let report = check("jsonl", content).unwrap();
        assert_eq!(
            (report.verdict, report.ops),
            (Verdict::Valid, 0),
            "{content:?}"
        );
        assert!(
            report.to_text().contains("0 ops to linearize"),
            "{}",
            report.to_text()
        );
    }
    let only_fails = "{\"type\":\"invoke\",\"process\":0,\"f\":\"write\",\"value\":1,\"time\":1}\n{\"type\":\"fail\",\"process\":0,\"f\":\"write\",\"value\":1,\"time\":2}\n";
    let report = check_file(
        &write_tmp("jsonl", only_fails),
        Some(Format::Jsonl),
        None,
        &CheckOptions::default(),
    )
    .unwrap();
    assert_eq!(
        (report.verdict, report.ops, report.failed_ops),
        (Verdict::Valid, 0, 1)
    );
}

/// The equal-time rule: a return at t and a call at t overlap (calls sort before returns at
/// equal times), so a read called at the instant a write returns may still see the old value.
/// One nanosecond later it must see the write.
#[test]
fn equal_times_overlap_and_later_times_do_not() {
    let history = |read_call: u64| {
        format!(
            "{}\n{}\n{}\n{}\n",
            r#"{"type":"invoke","process":0,"f":"write","value":1,"time":0}"#,
            r#"{"type":"ok","process":0,"f":"write","value":1,"time":5}"#,
            format_args!(
                r#"{{"type":"invoke","process":1,"f":"read","value":null,"time":{read_call}}}"#
            ),
            r#"{"type":"ok","process":1,"f":"read","value":null,"time":9}"#,
        )
    };
    assert_eq!(check("jsonl", &history(5)).unwrap().verdict, Verdict::Valid);
    assert_eq!(
        check("jsonl", &history(6)).unwrap().verdict,
        Verdict::Invalid
    );
}

/// In the file-order formats, the file's order is the real-time order: a return on an earlier
/// line precedes a call on a later line.
#[test]
fn file_order_formats_use_line_order() {
    let edn = "[{:process 0, :type :invoke, :f :write, :value 1}\n {:process 0, :type :ok, :f :write, :value 1}\n {:process 1, :type :invoke, :f :read, :value nil}\n {:process 1, :type :ok, :f :read, :value 0}]";
    // A register starting at 0 (as in Knossos's tests): reading 0 after the write of 1
    // completed is invalid; concurrently with it, valid.
    let at_zero = |content: &str| {
        let settings = checker::Settings {
            initial: Some(checker::history::Value::Int(0)),
            ..checker::Settings::default()
        };
        checker::check_file_with(
            &write_tmp("edn", content),
            None,
            None,
            &CheckOptions::default(),
            &settings,
        )
        .unwrap()
        .verdict
    };
    assert_eq!(at_zero(edn), Verdict::Invalid);
    let concurrent = "[{:process 0, :type :invoke, :f :write, :value 1}\n {:process 1, :type :invoke, :f :read, :value nil}\n {:process 0, :type :ok, :f :write, :value 1}\n {:process 1, :type :ok, :f :read, :value 0}]";
    assert_eq!(at_zero(concurrent), Verdict::Valid);
    // With Jepsen's default, nil, nobody ever wrote the 0 read.
    assert_eq!(check("edn", concurrent).unwrap().verdict, Verdict::Invalid);
}

#[test]
fn edn_variants_are_read() {
    let vector = "; a comment\n[{:process 0, :type :invoke, :f :write, :value 3}\n {:process :nemesis, :type :info, :f :start, :value nil}\n {:process 0,\n  :type :ok,\n  :f :write, :value 3, :time 12, :index 1}\n ; between ops\n {:process 1 :type :invoke :f :cas :value [3 4]}\n {:process 1 :type :ok :f :cas :value [3 4]}\n {:process 2 :type :invoke :f :read :value nil}\n {:process 2 :type :ok :f :read :value nil}]\n";
    let report = check("edn", vector).unwrap();
    assert_eq!(report.verdict, Verdict::Valid);
    assert_eq!(
        report.ops, 3,
        "the nil read constrains nothing but is counted"
    );
    let list = vector.replacen('[', "(", 1).replace("nil}]\n", "nil})\n");
    assert!(list.contains("nil})"));
    assert_eq!(check("edn", &list).unwrap().verdict, Verdict::Valid);
    let lines: String = vector
        .lines()
        .filter(|l| l.contains(":process 1") || l.contains(":process 2"))
        .map(|l| {
            l.trim_start_matches([' ', '['])
                .trim_end_matches(']')
                .to_string()
                + "\n"
        })
        .collect();
    assert_eq!(
        check("edn", &lines).unwrap().verdict,
        Verdict::Invalid,
        "starts at 0, cas 3->4 cannot apply"
    );
}

#[test]
fn malformed_edn_names_file_line_and_problem() {
    let invoke = "{:process 0, :type :invoke, :f :write, :value 1}";
    assert_input_error(
        "edn",
        &format!("[{invoke}\n {{:process 0, :type :ok"),
        2,
        "truncated",
    );
    assert_input_error("edn", &format!("[{invoke}\n"), 2, "missing closing");
    assert_input_error(
        "edn",
        &format!("[{invoke}\n {{:process 0, :type :done, :f :write, :value 1}}]"),
        2,
        "unknown op type :done",
    );
    assert_input_error(
        "edn",
        "[{:process 0, :type :ok, :f :write, :value 1}]",
        1,
        "return without a call",
    );
    assert_input_error("edn", &format!("[{invoke}\n {invoke}]"), 2, "two open ops");
    assert_input_error("edn", &format!("[{invoke}\n 42]"), 2, "expected an op map");
    assert_input_error(
        "edn",
        &format!("[{invoke}] trailing"),
        1,
        "unexpected content",
    );
}

#[test]
fn porcupine_kv_lines_are_read() {
    let kv = "{:process 0, :type :invoke, :f :append, :key \"k\", :value \"ab\"}\n{:process 1, :type :invoke, :f :get, :key \"k\", :value nil}\n{:process 0, :type :ok, :f :append, :key \"k\", :value \"ab\"}\n{:process 1, :type :ok, :f :get, :key \"k\", :value \"ab\"}\n{:process 2, :type :invoke, :f :put, :key \"j\", :value \"z\"}\n{:process 2, :type :ok, :f :put, :key \"j\", :value \"z\"}\n";
    let report = check("txt", kv).unwrap();
    assert_eq!(report.format, Some(Format::PorcupineKv));
    assert_eq!(report.model, ModelKind::Kv);
    assert_eq!(report.verdict, Verdict::Valid);
    assert_eq!(
        check(
            "txt",
            &kv.replace(":value \"ab\"}\n{:process 2", ":value \"ba\"}\n{:process 2")
        )
        .unwrap()
        .verdict,
        Verdict::Invalid
    );
    assert_input_error("txt", "{:process 0, :type :invoke, :f :get, :key \"k\", :value nil}\n{:process 0, :type :ok, :f :get, :key \"k\"\n", 2, "truncated");
    assert_input_error("txt", "{:process 0, :type :invoke, :f :get, :key \"k\", :value nil}\n{:process 0, :type :ok, :f :get, :key \"other\", :value \"\"}", 2, "does not match key");
}

#[test]
fn etcd_logs_split_on_any_whitespace() {
    let tabs = "INFO  jepsen.util - 0\t:invoke\t:write\t1\nINFO  jepsen.util - 0\t:ok\t:write\t1\nINFO  jepsen.util - 1\t:invoke\t:cas\t[1 2]\nINFO  jepsen.util - 1\t:ok\t:cas\t[1 2]\nINFO  jepsen.util - 2\t:invoke\t:read\tnil\nINFO  jepsen.util - 2\t:ok\t:read\t2\n";
    let spaces = tabs.replace('\t', "  ");
    for log in [tabs.to_string(), spaces] {
        let report = check("log", &log).unwrap();
        assert_eq!(report.format, Some(Format::EtcdLog));
        assert_eq!(report.ops, 3);
        assert_eq!(report.verdict, Verdict::Valid);
    }
    let wrong = tabs.replace(":read\t2", ":read\t1");
    assert_eq!(check("log", &wrong).unwrap().verdict, Verdict::Invalid);
    // A read that failed with :timed-out returned no value: it fits any state.
    let timed_out = wrong.replace(":ok\t:read\t1", ":fail\t:read\t:timed-out");
    assert_eq!(check("log", &timed_out).unwrap().verdict, Verdict::Valid);
    // A pending write may take effect any time after its call, or never.
    let pending = "INFO  jepsen.util - 0\t:invoke\t:write\t5\nINFO  jepsen.util - 1\t:invoke\t:read\tnil\nINFO  jepsen.util - 1\t:ok\t:read\t5\nINFO  jepsen.util - 2\t:invoke\t:read\tnil\nINFO  jepsen.util - 2\t:ok\t:read\tnil\n";
    assert_eq!(
        check("log", pending).unwrap().verdict,
        Verdict::Invalid,
        "5 was seen, so nil cannot be read later"
    );
    let never = pending.replace(":ok\t:read\t5", ":ok\t:read\tnil");
    assert_eq!(check("log", &never).unwrap().verdict, Verdict::Valid);
    assert_input_error(
        "log",
        "INFO  jepsen.util - 0\t:invoke\t:write\n",
        1,
        "truncated line",
    );
    assert_input_error(
        "log",
        "INFO  jepsen.util - 0\t:invoke\t:write\t1\nINFO  jepsen.util - 0\t:crashed\t:write\t1\n",
        2,
        "unknown op type",
    );
    assert_input_error(
        "log",
        "INFO  jepsen.util - 0\t:ok\t:write\t1\n",
        1,
        "return without a call",
    );
    assert_input_error(
        "log",
        "INFO  jepsen.util - 0\t:invoke\t:cas\t[1\n",
        1,
        "truncated EDN form",
    );
    assert_input_error(
        "log",
        "INFO  jepsen.util - 0\t:invoke\t:cas\t1\n",
        1,
        "cas value must be [from to]",
    );
}

#[test]
fn format_can_be_forced_and_wrong_content_is_an_error() {
    let path = write_tmp("data", JSONL_OK);
    let err = check_file(&path, Some(Format::Edn), None, &CheckOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Input { line: 1, .. }), "{err}");
    let err = check("bin", "hello world\n").unwrap_err();
    assert!(
        err.to_string().contains("cannot tell the history format"),
        "{err}"
    );
    let err = check_file(
        &write_tmp(
            "jsonl",
            "{\"type\":\"invoke\",\"process\":0,\"f\":\"get\",\"value\":null,\"time\":1}\n",
        ),
        None,
        Some(ModelKind::CasRegister),
        &CheckOptions::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("has no \"get\" operation"),
        "{err}"
    );
}

#[test]
fn edn_export_round_trips_through_the_edn_reader() {
    let path = write_tmp("jsonl", JSONL_OK);
    let events = checker::formats::jsonl::read_events(&path).unwrap();
    let edn = checker::formats::edn::export(&events);
    assert!(edn.contains(":process :nemesis"));
    assert!(edn.contains(":node \"n1\""));
    assert!(edn.contains(":value [1 2]"));
    // Knossos reads nil reads as unknown and starts registers at 0, so compare op counts and
    // a verdict that does not depend on either.
    let report = check_file(
        &write_tmp("edn", &edn),
        None,
        None,
        &CheckOptions::default(),
    )
    .unwrap();
    assert_eq!(report.format, Some(Format::Edn));
    assert_eq!(report.ops, 4);
    assert_eq!(report.failed_ops, 1);
    assert_eq!(report.verdict, Verdict::Valid);
}

#[test]
fn native_check_history_file_api() {
    let path = write_tmp("jsonl", JSONL_OK);
    let report =
        checker::check_history_file(&path, ModelKind::MultiRegister, &CheckOptions::default())
            .unwrap();
    assert_eq!(report.verdict, Verdict::Valid);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["verdict"], "valid");
    assert!(report.to_html().starts_with("<!DOCTYPE html>"));
}
