//! Checker benchmark; prints figures (run with `cargo bench -p checker --bench checking`).
//!
//! 1. Porcupine's comparison: shared/data's etcd + kv files, per-key partitioning on,
//!    `--fail-fast` as Porcupine stops, checking time apart from parsing (median of runs);
//!    etcd_002 and c50-ok alone; c10-ok and c50-ok with partitioning off; c50-bad (with and
//!    without the partition) and c50-ok (without) checked in full, every key decided.
//! 2. Scale: a generated history of 1,000,000 ops over 1,000 keys and 20 processes with
//!    info ops, written as JSONL and checked by a child process that reports its own peak
//!    memory (VmHWM).
//! 3. A history with no per-key split and 32 concurrent ops must answer `unknown` within the
//!    timeout, without exhausting memory (child process, peak memory reported).
//!
//! 4. Identical pending ops (issue 9): K never-completed writes of 1, K of 2, then 2K+1
//!    alternating reads of 1 and 2 (invalid), at K = 10, 50, 200; and a 1,000-op history
//!    with 800 never-returned writes of values 0–4 (valid).
//!
//! 5. Scaling (`-- scaling` only): simulated single-key cas-register histories of 10
//!    clients with 5% info ops, N = 1,000 … 12,000 ops, as written (valid), with stale
//!    reads (a deposed leader's, invalid) and with one read in the middle corrupted to an
//!    unwritten value (invalid): check time and the child's peak RSS. `FAULTLINE_SEARCH=wgl`
//!    or `=frontier` runs one search alone.
//!
//! `cargo bench -p checker --bench checking -- quick` skips part 2;
//! `cargo bench -p checker --bench checking -- pending` runs part 4 only.

use checker::formats::{self, Format};
use checker::simulate::{Simulation, Workload};
use checker::{check_history, CheckOptions, ModelKind};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 11;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/porcupine")
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn ms(s: f64) -> String {
    format!("{:.2} ms", s * 1e3)
}

/// Peak resident memory of this process, from /proc/self/status.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Child mode: check one file and report (used for peak-memory figures).
    if let Some(i) = args.iter().position(|a| a == "--child-check") {
        child_check(&args[i + 1..]);
        return;
    }
    if args.iter().any(|a| a == "pending") {
        identical_pending_ops();
        return;
    }
    if args.iter().any(|a| a == "scaling") {
        scaling();
        return;
    }
    let quick = args.iter().any(|a| a == "quick");
    identical_pending_ops();
    porcupine_files();
    if !quick {
        million_ops();
    }
    no_split_unknown();
}

fn child_check(args: &[String]) {
    let path = Path::new(&args[0]);
    let model = match args[1].as_str() {
        "kv" => ModelKind::Kv,
        _ => ModelKind::MultiRegister,
    };
    let timeout = args
        .get(2)
        .map(|s| Duration::from_secs_f64(s.parse().unwrap()));
    let partition = args.get(3).is_none_or(|s| s != "no-partition");
    let start = Instant::now();
    let (history, _) = formats::load(path, Some(Format::Jsonl)).unwrap();
    let parsed = start.elapsed().as_secs_f64();
    let opts = CheckOptions {
        timeout,
        fail_fast: false,
        partition,
    };
    let report = check_history(&history, model, &opts).unwrap();
    println!(
        "  ops {} ({} info/never completed) in {} part(s): verdict {}; parse {}, check {}, total {}; peak RSS {:.0} MiB",
        report.ops,
        report.indefinite_ops,
        report.parts,
        report.verdict.as_str(),
        ms(parsed),
        ms(report.check_seconds),
        ms(start.elapsed().as_secs_f64()),
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    for u in &report.unknown {
        println!(
            "  unknown part {:?}: {:?}, {} ops, at most {} linearized",
            u.key, u.reason, u.ops, u.deepest
        );
    }
}

fn porcupine_files() {
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in ["etcd", "kv"] {
        let mut v: Vec<PathBuf> = std::fs::read_dir(data_dir().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        files.extend(v);
    }
    let mut parse_total = 0.0;
    let histories: Vec<_> = files
        .iter()
        .map(|f| {
            let start = Instant::now();
            let (h, _) = formats::load(f, None).unwrap();
            parse_total += start.elapsed().as_secs_f64();
            (f.file_name().unwrap().to_string_lossy().into_owned(), h)
        })
        .collect();
    let fail_fast = CheckOptions {
        fail_fast: true,
        ..CheckOptions::default()
    };
    let model_of = |name: &str| {
        if name.ends_with(".txt") {
            ModelKind::Kv
        } else {
            ModelKind::CasRegister
        }
    };
    let mut totals = Vec::new();
    let mut per_file: Vec<Vec<f64>> = vec![Vec::new(); histories.len()];
    for _ in 0..RUNS {
        let mut total = 0.0;
        for (i, (name, h)) in histories.iter().enumerate() {
            let r = check_history(h, model_of(name), &fail_fast).unwrap();
            total += r.check_seconds;
            per_file[i].push(r.check_seconds);
        }
        totals.push(total);
    }
    println!(
        "shared/data etcd + kv ({} files), partitioned, fail-fast: checking {} (median of {RUNS} runs; min {}), parsing {} once",
        histories.len(),
        ms(median(totals.clone())),
        ms(totals.iter().cloned().fold(f64::MAX, f64::min)),
        ms(parse_total)
    );
    let mut slowest: Vec<(f64, &str)> = per_file
        .iter()
        .zip(&histories)
        .map(|(t, (n, _))| (median(t.clone()), n.as_str()))
        .collect();
    slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
    let top: Vec<String> = slowest
        .iter()
        .take(5)
        .map(|(t, n)| format!("{n} {}", ms(*t)))
        .collect();
    println!("  slowest files (median): {}", top.join(", "));
    for (name, partition) in [
        ("c50-ok.txt", true),
        ("c10-ok.txt", false),
        ("c50-ok.txt", false),
    ] {
        let (_, h) = histories.iter().find(|(n, _)| n == name).unwrap();
        let opts = CheckOptions {
            fail_fast: true,
            partition,
            timeout: Some(Duration::from_secs(10)),
        };
        let runs = if partition { RUNS } else { 5 };
        let mut times = Vec::new();
        let mut verdict = "";
        for _ in 0..runs {
            let r = check_history(h, ModelKind::Kv, &opts).unwrap();
            times.push(r.check_seconds);
            verdict = r.verdict.as_str();
        }
        println!(
            "{name} {}: {verdict}, checking {} (median of {runs}; min {})",
            if partition {
                "partitioned"
            } else {
                "--no-partition (timeout 10 s)"
            },
            ms(median(times.clone())),
            ms(times.iter().cloned().fold(f64::MAX, f64::min))
        );
    }
    // Issue 9, "beyond every peer": every key of c50 decided, without fail-fast.
    for (name, partition) in [
        ("c50-bad.txt", true),
        ("c50-bad.txt", false),
        ("c50-ok.txt", false),
    ] {
        let (_, h) = histories.iter().find(|(n, _)| n == name).unwrap();
        let opts = CheckOptions {
            fail_fast: false,
            partition,
            timeout: Some(Duration::from_secs(10)),
        };
        let mut times = Vec::new();
        let mut summary = String::new();
        for _ in 0..5 {
            let r = check_history(h, ModelKind::Kv, &opts).unwrap();
            times.push(r.check_seconds);
            summary = format!(
                "{}, {} parts: {} valid, {} invalid, {} unknown",
                r.verdict.as_str(),
                r.parts,
                r.valid_parts,
                r.invalid.len(),
                r.unknown.len()
            );
        }
        println!(
            "{name} {}, every key (no fail-fast, timeout 10 s): {summary}; checking {} (median of 5; min {})",
            if partition { "partitioned" } else { "--no-partition" },
            ms(median(times.clone())),
            ms(times.iter().cloned().fold(f64::MAX, f64::min))
        );
    }
}

fn write_events(path: &Path, events: &[checker::history::Event]) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for e in events {
        serde_json::to_writer(&mut out, e).unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
}

fn run_child(args: &[&str]) {
    let exe = std::env::current_exe().unwrap();
    let start = Instant::now();
    let out = Command::new(exe)
        .arg("--child-check")
        .args(args)
        .output()
        .unwrap();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    println!(
        "  child process wall time {}",
        ms(start.elapsed().as_secs_f64())
    );
}

fn million_ops() {
    let path = std::env::temp_dir().join("faultline-bench-1m.jsonl");
    let start = Instant::now();
    let sim = Simulation {
        workload: Workload::CasRegister,
        processes: 20,
        keys: 1000,
        ops: 1_000_000,
        info_rate: 0.01,
        values: 5,
        max_duration: 100,
        seed: 7,
    };
    let events = sim.events();
    write_events(&path, &events);
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "generated 1,000,000 ops / 1,000 keys / 20 processes, 1% info: {} events, {:.0} MiB JSONL at {} (generation {})",
        events.len(),
        size as f64 / (1 << 20) as f64,
        path.display(),
        ms(start.elapsed().as_secs_f64())
    );
    drop(events);
    run_child(&[path.to_str().unwrap(), "multi-register"]);
}

fn no_split_unknown() {
    let path = std::env::temp_dir().join("faultline-bench-hard.jsonl");
    let mut lines = Vec::new();
    let writers = 32;
    for i in 0..writers {
        lines.push(format!(
            r#"{{"type":"invoke","process":{i},"f":"write","value":{},"time":{i}}}"#,
            i + 1
        ));
    }
    lines.push(format!(
        r#"{{"type":"invoke","process":{writers},"f":"read","value":null,"time":{writers}}}"#
    ));
    lines.push(format!(
        r#"{{"type":"ok","process":{writers},"f":"read","value":999,"time":1000}}"#
    ));
    for i in 0..writers {
        lines.push(format!(
            r#"{{"type":"ok","process":{i},"f":"write","value":{},"time":{}}}"#,
            i + 1,
            1001 + i
        ));
    }
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    println!("{writers} concurrent writes + 1 impossible read, no split, --timeout 2:");
    run_child(&[
        path.to_str().unwrap(),
        "multi-register",
        "2",
        "no-partition",
    ]);
}

/// Times checking a JSONL history held in memory (written to a temp file first, parsing
/// excluded): median of `runs`, with the verdict.
fn time_jsonl(name: &str, text: &str, runs: usize) {
    let path = std::env::temp_dir().join(format!("faultline-bench-{}.jsonl", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let (history, _) = formats::load(&path, Some(Format::Jsonl)).unwrap();
    let _ = std::fs::remove_file(&path);
    let opts = CheckOptions {
        timeout: Some(Duration::from_secs(60)),
        ..CheckOptions::default()
    };
    let mut times = Vec::new();
    let mut verdict = String::new();
    for _ in 0..runs {
        let report = check_history(&history, ModelKind::CasRegister, &opts).unwrap();
        times.push(report.check_seconds);
        verdict = report.verdict.as_str().to_string();
    }
    let min = times.iter().cloned().fold(f64::INFINITY, f64::min);
    println!(
        "{name}: {} ops ({} never completed): {verdict}, checking {} (median of {runs}; min {})",
        history.ops.len(),
        history.indefinite_ops(),
        ms(median(times)),
        ms(min)
    );
}

fn identical_pending_ops() {
    for k in [10, 50, 200] {
        time_jsonl(
            &format!(
                "K={k} pending writes of 1 and of 2, {} alternating reads",
                2 * k + 1
            ),
            &checker::simulate::pending_writes_history(k, 2 * k + 1),
            5,
        );
    }
    // 800 never-returned writes of 0..4 from as many processes, interleaved with 100
    // sequential write-then-read pairs of one client: valid.
    let mut out = String::new();
    let mut t = 0u64;
    let mut pending = 0;
    for round in 0..100 {
        for _ in 0..8 {
            t += 1;
            let v = pending % 5;
            out += &format!("{{\"type\":\"invoke\",\"process\":{},\"f\":\"write\",\"value\":{v},\"time\":{t}}}\n", 1000 + pending);
            pending += 1;
        }
        let v = 10 + round;
        for (f, value) in [("write", v.to_string()), ("read", "null".to_string())] {
            t += 1;
            out += &format!("{{\"type\":\"invoke\",\"process\":0,\"f\":\"{f}\",\"value\":{value},\"time\":{t}}}\n");
            t += 1;
            out += &format!(
                "{{\"type\":\"ok\",\"process\":0,\"f\":\"{f}\",\"value\":{v},\"time\":{t}}}\n"
            );
        }
    }
    time_jsonl("1,000 ops, 800 never-returned writes of 0-4", &out, 5);
}

fn scaling() {
    use checker::simulate::Fault;
    let search = std::env::var("FAULTLINE_SEARCH").unwrap_or_else(|_| "both".into());
    println!("search: {search} (FAULTLINE_SEARCH), timeout 60 s per check");
    for ops in [1_000, 2_000, 4_000, 8_000, 12_000] {
        let sim = Simulation {
            workload: Workload::CasRegister,
            processes: 10,
            keys: 0,
            ops,
            info_rate: 0.05,
            values: 5,
            max_duration: 40,
            seed: 11,
        };
        let path = std::env::temp_dir().join(format!("faultline-bench-scale-{ops}.jsonl"));
        let mut events = sim.events();
        write_events(&path, &events);
        println!("{ops} generated ops, one key, 10 clients, 5% info, as simulated (valid):");
        run_child(&[path.to_str().unwrap(), "multi-register", "60"]);
        // A node that serves stale reads (a deposed leader): 1% of reads return the value
        // of up to 400 time units (about 10 op durations) before.
        let stale = sim.events_with(Fault::StaleReads {
            rate: 0.01,
            lag: 400,
        });
        let changed = stale
            .iter()
            .zip(&events)
            .filter(|(a, b)| a.value != b.value)
            .count();
        write_events(&path, &stale);
        println!("  the same run with stale reads ({changed} reads changed):");
        run_child(&[path.to_str().unwrap(), "multi-register", "60"]);
        // One read in the middle returns a value nobody wrote.
        let reads: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.f == "read" && e.kind == checker::history::EventType::Ok)
            .map(|(i, _)| i)
            .collect();
        if let Some(&i) = reads.get(reads.len() / 2) {
            events[i].value = serde_json::json!(999);
        }
        write_events(&path, &events);
        println!("  the same with one read in the middle corrupted to an unwritten value:");
        run_child(&[path.to_str().unwrap(), "multi-register", "60"]);
        let _ = std::fs::remove_file(&path);
    }
}
