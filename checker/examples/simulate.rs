//! Writes a simulated history as native JSONL on stdout, for benchmarks and profiling:
//! `simulate OPS SEED [stale RATE LAG | corrupt]` — a single-key cas register, 10 clients,
//! 5% info ops, values 0–4 (the `scaling` benchmark's histories). `SIM_INFO` sets the info
//! rate; `SIM_WORKLOAD=kv` writes Porcupine-style kv ops on one key instead (gets, puts and
//! appends of unique texts), `SIM_PROCS` the number of clients (default 10).

use checker::simulate::{Fault, Simulation, Workload};
use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or(default.to_string());
    let sim = Simulation {
        workload: match std::env::var("SIM_WORKLOAD").as_deref() {
            Ok("kv") => Workload::Kv,
            _ => Workload::CasRegister,
        },
        processes: std::env::var("SIM_PROCS").map_or(10, |v| v.parse().expect("SIM_PROCS")),
        keys: 0,
        ops: arg(0, "4000").parse().expect("OPS"),
        info_rate: std::env::var("SIM_INFO").map_or(0.05, |v| v.parse().expect("SIM_INFO")),
        values: 5,
        max_duration: 40,
        seed: arg(1, "11").parse().expect("SEED"),
    };
    let mut events = match arg(2, "").as_str() {
        "stale" => sim.events_with(Fault::StaleReads {
            rate: arg(3, "0.01").parse().expect("RATE"),
            lag: arg(4, "400").parse().expect("LAG"),
        }),
        _ => sim.events(),
    };
    if arg(2, "") == "corrupt" {
        let reads: Vec<usize> = (0..events.len())
            .filter(|&i| {
                matches!(events[i].f.as_str(), "read" | "get")
                    && events[i].kind == checker::history::EventType::Ok
            })
            .collect();
        if let Some(&i) = reads.get(reads.len() / 2) {
            events[i].value = match events[i].f.as_str() {
                "get" => serde_json::json!("x-unwritten"),
                _ => serde_json::json!(999),
            };
        }
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for e in &events {
        serde_json::to_writer(&mut out, e).unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
}
