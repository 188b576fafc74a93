//! Every history in shared/data gets the verdict its README gives (through the library; the
//! CLI is tested the same way in harness/tests/check_cli.rs).

use checker::history::Value;
use checker::{check_file, check_file_with, CheckOptions, Format, ModelKind, Settings, Verdict};
use std::path::{Path, PathBuf};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}

/// (file relative to shared/data, expected verdict) for every history there.
fn expected() -> Vec<(String, Verdict)> {
    let mut out = Vec::new();
    let valid_etcd = [2, 5, 7, 18];
    for n in 0..20 {
        let v = if valid_etcd.contains(&n) {
            Verdict::Valid
        } else {
            Verdict::Invalid
        };
        out.push((format!("porcupine/etcd/etcd_{n:03}.log"), v));
    }
    for c in ["c01", "c10", "c50"] {
        out.push((format!("porcupine/kv/{c}-ok.txt"), Verdict::Valid));
        out.push((format!("porcupine/kv/{c}-bad.txt"), Verdict::Invalid));
    }
    for f in ["good/cas-register-bug.edn", "good/memstress3-0.edn"] {
        out.push((format!("knossos/{f}"), Verdict::Valid));
    }
    for f in ["bad/cas-failure.edn", "bad/rethink-fail-minimal.edn"] {
        out.push((format!("knossos/{f}"), Verdict::Invalid));
    }
    out
}

#[test]
fn the_expected_list_covers_every_history_file() {
    let mut on_disk = Vec::new();
    for dir in [
        "porcupine/etcd",
        "porcupine/kv",
        "knossos/good",
        "knossos/bad",
    ] {
        for entry in std::fs::read_dir(data_dir().join(dir)).unwrap() {
            on_disk.push(format!(
                "{dir}/{}",
                entry.unwrap().file_name().to_string_lossy()
            ));
        }
    }
    on_disk.sort();
    let mut listed: Vec<String> = expected().into_iter().map(|(f, _)| f).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

/// The initial register value shared/data/README.md says each file is checked with: 0 for
/// Knossos's files (its tests use `(cas-register 0)`) except rethink-fail-minimal.edn
/// (`(cas-register nil)`); the formats' default (nil) for the rest.
fn settings_for(file: &str) -> Settings {
    let initial = (file.starts_with("knossos/") && !file.ends_with("rethink-fail-minimal.edn"))
        .then_some(Value::Int(0));
    Settings {
        initial,
        ..Settings::default()
    }
}

fn check(file: &str, opts: &CheckOptions) -> checker::CheckReport {
    check_file_with(
        &data_dir().join(file),
        None,
        None,
        opts,
        &settings_for(file),
    )
    .unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn every_reference_history_gets_its_readme_verdict() {
    for (file, verdict) in expected() {
        let report = check(&file, &CheckOptions::default());
        assert_eq!(report.verdict, verdict, "{file}\n{}", report.to_text());
        let fast = CheckOptions {
            fail_fast: true,
            ..CheckOptions::default()
        };
        let report = check(&file, &fast);
        assert_eq!(report.verdict, verdict, "{file} with fail-fast");
    }
}

#[test]
fn formats_and_models_are_detected() {
    let cases = [
        (
            "porcupine/etcd/etcd_000.log",
            Format::EtcdLog,
            ModelKind::CasRegister,
        ),
        (
            "porcupine/kv/c01-ok.txt",
            Format::PorcupineKv,
            ModelKind::Kv,
        ),
        (
            "knossos/good/memstress3-0.edn",
            Format::Edn,
            ModelKind::CasRegister,
        ),
        (
            "knossos/bad/rethink-fail-minimal.edn",
            Format::Edn,
            ModelKind::CasRegister,
        ),
    ];
    for (file, format, model) in cases {
        let report = check(file, &CheckOptions::default());
        assert_eq!(report.format, Some(format), "{file}");
        assert_eq!(report.model, model, "{file}");
    }
}

#[test]
fn every_invalid_key_is_reported_unless_fail_fast() {
    let path = data_dir().join("porcupine/kv/c10-bad.txt");
    let all = check_file(&path, None, None, &CheckOptions::default()).unwrap();
    assert_eq!(all.verdict, Verdict::Invalid);
    assert_eq!(all.parts, all.valid_parts + all.invalid.len());
    assert!(!all.invalid.is_empty());
    let fast = CheckOptions {
        fail_fast: true,
        ..CheckOptions::default()
    };
    let first = check_file(&path, None, None, &fast).unwrap();
    assert!(!first.invalid.is_empty());
    assert!(first.invalid.len() <= all.invalid.len());
    for part in &all.invalid {
        // The evidence: a blocking op and a linearization that replays legally.
        assert!(part.key.is_some());
        assert!(!part.timeline.is_empty());
        assert!(part.linearization.len() < part.ops);
    }
}

#[test]
fn unpartitioned_kv_agrees_with_partitioned() {
    for (file, verdict) in [
        ("porcupine/kv/c10-ok.txt", Verdict::Valid),
        ("porcupine/kv/c10-bad.txt", Verdict::Invalid),
        ("porcupine/kv/c01-bad.txt", Verdict::Invalid),
    ] {
        let opts = CheckOptions {
            partition: false,
            fail_fast: true,
            ..CheckOptions::default()
        };
        let single = Settings {
            single_search: true,
            ..Settings::default()
        };
        let path = data_dir().join(file);
        let report = check_file_with(&path, None, Some(ModelKind::Kv), &opts, &single).unwrap();
        assert_eq!(report.verdict, verdict, "{file}");
        assert_eq!(report.parts, 1);
    }
}

/// Without the per-key partition, the model's own independence answer (ops on different
/// keys commute) splits c50 into its keys, and with kv's symbolic states (issue 9, "beyond
/// every peer") every key gets a definite answer, without fail-fast: c50-ok's ten keys are
/// valid and c50-bad's ten invalid — keys "0" and "9" included, which the concrete string
/// model left `unknown` at 2 GiB (the old model proves them invalid with 8 GiB on the
/// history cut after their first violation, see checker/README.md). Partitioned likewise.
#[test]
fn c50_gets_a_definite_answer_for_every_key_with_and_without_the_partition() {
    for (file, verdict) in [
        ("porcupine/kv/c50-ok.txt", Verdict::Valid),
        ("porcupine/kv/c50-bad.txt", Verdict::Invalid),
    ] {
        for partition in [false, true] {
            let opts = CheckOptions {
                partition,
                ..CheckOptions::default()
            };
            let path = data_dir().join(file);
            let report = check_file(&path, None, Some(ModelKind::Kv), &opts).unwrap();
            assert_eq!(report.verdict, verdict, "{file}");
            assert_eq!(report.independent_parts, !partition);
            assert_eq!(report.parts, report.keys, "{file}");
            assert!(report.unknown.is_empty(), "{}", report.to_text());
            let decided = match verdict {
                Verdict::Valid => report.valid_parts,
                _ => report.invalid.len(),
            };
            assert_eq!(decided, report.parts, "{}", report.to_text());
            if verdict == Verdict::Invalid {
                let (history, _) = checker::formats::load(&path, None).unwrap();
                assert_prefixes_replay_as_strings(&history, &report);
            }
        }
    }
}

/// Each invalid part's longest linearizable prefix, as the report gives it, replays on
/// plain strings (a get reads exactly the string so far) in real-time order, and every
/// state the report shows for that key is that string.
fn assert_prefixes_replay_as_strings(
    history: &checker::history::History,
    report: &checker::CheckReport,
) {
    use checker::history::{Action, Outcome};
    let text = |v: &Value| match v {
        Value::Nil => String::new(),
        Value::Int(i) => i.to_string(),
        Value::Str(s) => s.to_string(),
    };
    for part in &report.invalid {
        let mut strings: std::collections::HashMap<Option<u32>, String> = Default::default();
        for (i, step) in part.linearization.iter().enumerate() {
            let op = &history.ops[step.op.id];
            let s = strings.entry(op.key).or_default();
            match (&op.action, &op.outcome) {
                (Action::Append(v), _) => s.push_str(&text(v)),
                (Action::Put(v), _) => *s = text(v),
                (Action::Get, Outcome::Read(v)) => {
                    assert_eq!(
                        *s,
                        text(v),
                        "key {:?} step {i}: get reads another string",
                        part.key
                    )
                }
                _ => {}
            }
            assert!(
                step.state.contains(&format!("{s:?}")),
                "step {i}: {}",
                step.state
            );
            for later in &part.linearization[i + 1..] {
                assert!(
                    later.op.ret.is_none_or(|r| r >= op.call),
                    "step {i} out of real-time order"
                );
            }
        }
        assert!(
            part.linearization.len() > 10,
            "{:?}: a prefix worth replaying",
            part.key
        );
    }
}

#[test]
fn knossos_minimal_counterexample_names_the_bad_read() {
    let path = data_dir().join("knossos/bad/rethink-fail-minimal.edn");
    let report = check_file(&path, None, None, &CheckOptions::default()).unwrap();
    let part = &report.invalid[0];
    // Value 0, then concurrently write 4 and read 3: the read of 3 is what breaks.
    assert_eq!(part.blocking.description, "p1 read -> 3");
    assert_eq!(part.blocking.call_line, 4);
    let text = report.to_text();
    assert!(text.contains("p1 read -> 3"), "{text}");
}
