//! The live progress line: ops/s, ok/fail/info, bank snapshots and the fault in force,
//! redrawn a few times a second on stderr (hidden automatically when stderr is not a
//! terminal).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;

use crate::worker::Stats;

pub async fn run(
    stats: Arc<Stats>,
    fault: Arc<Mutex<String>>,
    phase: Arc<Mutex<&'static str>>,
    mut stop: watch::Receiver<bool>,
) {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed:>3}] {msg}").expect("valid template"),
    );
    let mut last = (Instant::now(), 0u64);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let done = stats.completed();
        let now = Instant::now();
        let rate = (done - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-3);
        last = (now, done);
        let snapshots = match stats.snapshots_started.load(Ordering::Relaxed) {
            0 => String::new(),
            started => {
                let defective = match stats.snapshots_defective.load(Ordering::Relaxed) {
                    0 => String::new(),
                    n => format!(", {n} defective"),
                };
                format!(
                    " | snapshots {started}: {} consistent, {} inconsistent, {} incomplete{defective}",
                    stats.snapshots_consistent.load(Ordering::Relaxed),
                    stats.snapshots_inconsistent.load(Ordering::Relaxed),
                    stats.snapshots_incomplete.load(Ordering::Relaxed),
                )
            }
        };
        bar.set_message(format!(
            "{} | {:>7.0} ops/s | ok {} fail {} info {}{snapshots} | fault: {}",
            phase.lock().unwrap(),
            rate,
            stats.ok.load(Ordering::Relaxed),
            stats.fail.load(Ordering::Relaxed),
            stats.info.load(Ordering::Relaxed),
            fault.lock().unwrap()
        ));
        bar.tick();
    }
    bar.finish_and_clear();
}
