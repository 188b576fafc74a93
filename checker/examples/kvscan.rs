use checker::simulate::{Simulation, Workload};
use checker::{check_history, CheckOptions, ModelKind};
use std::time::{Duration, Instant};
fn main() {
    let args: Vec<f64> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let (info, procs, ops) = (args[0], args[1] as usize, args[2] as usize);
    let mut worst = (0.0, 0);
    for seed in 0..1000u64 {
        let sim = Simulation { workload: Workload::Kv, processes: procs, keys: 1, ops, info_rate: info, values: 3, max_duration: 20, seed };
        let h = checker::formats::jsonl::history_from_events(&sim.events()).unwrap();
        let t = Instant::now();
        let opts = CheckOptions { timeout: Some(Duration::from_secs(5)), ..CheckOptions::default() };
        let r = check_history(&h, ModelKind::Kv, &opts).unwrap();
        if r.verdict != checker::Verdict::Valid { println!("seed {seed}: {}", r.verdict.as_str()); }
        let e = t.elapsed().as_secs_f64();
        if e > worst.0 { worst = (e, seed); }
    }
    println!("info {info} procs {procs} ops {ops}: worst {:.3} s (seed {})", worst.0, worst.1);
}
