//! Writes a simulated history as native JSONL on stdout, for benchmarks and profiling:
//! `simulate OPS SEED [stale RATE LAG | corrupt]` — a single-key cas register, 10 clients,
//! 5% info ops, values 0–4 (the `scaling` benchmark's histories).

use checker::simulate::{Fault, Simulation, Workload};
use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or(default.to_string());
    let sim = Simulation {
        workload: Workload::CasRegister,
        processes: 10,
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
            .filter(|&i| events[i].f == "read" && events[i].kind == checker::history::EventType::Ok)
            .collect();
        if let Some(&i) = reads.get(reads.len() / 2) {
            events[i].value = serde_json::json!(999);
        }
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for e in &events {
        serde_json::to_writer(&mut out, e).unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
}
