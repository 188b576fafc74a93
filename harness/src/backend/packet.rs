//! The packet delayer, a backend mechanism. Packet faults in userspace: this kernel has no netem, so packets between nodes are
//! steered (iptables `NFQUEUE --queue-bypass`, installed by the backend) to a queue this
//! module reads. Each packet is held for `delay ± jitter` before it is accepted — really
//! delayed on the wire, and reordered whenever jitter lets a later packet overtake an
//! earlier one — or dropped with probability `loss`. Duplicates are made by the kernel
//! (nft `dup`), see the backend.
//!
//! One OS thread owns the queue; `bypass` means packets flow untouched if it is gone.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::BackendError;
pub use crate::fault::PacketFault;

/// The NFQUEUE number the backend steers faulted packets to.
pub const QUEUE_NUM: u16 = 7;

/// The thread that holds and releases queued packets.
pub struct PacketDelayer {
    fault: Arc<Mutex<Option<PacketFault>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PacketDelayer {
    /// Opens and binds the queue (errors are reported here, not later) and starts the thread.
    pub fn start(seed: u64) -> Result<Self, BackendError> {
        let fault = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let fault = fault.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("packet-delayer".into())
                .spawn(move || match open_queue() {
                    Ok(queue) => {
                        let _ = ready_tx.send(Ok(()));
                        serve(
                            queue,
                            &fault,
                            &stop,
                            StdRng::seed_from_u64(seed ^ 0x5eed_9ac4),
                        );
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                })
                .map_err(BackendError::io("starting the packet delayer"))?
        };
        ready_rx
            .recv()
            .map_err(|_| BackendError::Failed("the packet delayer died while starting".into()))??;
        Ok(Self {
            fault,
            stop,
            thread: Some(thread),
        })
    }

    /// Sets the fault applied to packets from now on; `None` releases every held packet.
    pub fn set(&self, fault: Option<PacketFault>) {
        *self.fault.lock().unwrap() = fault;
    }
}

impl Drop for PacketDelayer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn open_queue() -> Result<nfq::Queue, BackendError> {
    let err = |e: std::io::Error| {
        BackendError::Unavailable(format!(
            "opening NFQUEUE {QUEUE_NUM} for packet faults: {e}"
        ))
    };
    let mut queue = nfq::Queue::open().map_err(err)?;
    queue.bind(QUEUE_NUM).map_err(err)?;
    // Metadata only: we never look inside a packet.
    queue.set_copy_range(QUEUE_NUM, 0).map_err(err)?;
    queue.set_queue_max_len(QUEUE_NUM, 16_384).map_err(err)?;
    // If the queue ever fills, let packets through rather than add loss nobody asked for.
    queue.set_fail_open(QUEUE_NUM, true).map_err(err)?;
    queue.set_nonblocking(true);
    Ok(queue)
}

/// Held packets, keyed by release time (and arrival order, to break ties FIFO).
type Held = BTreeMap<(Instant, u64), nfq::Message>;

fn serve(
    mut queue: nfq::Queue,
    fault: &Mutex<Option<PacketFault>>,
    stop: &AtomicBool,
    mut rng: StdRng,
) {
    let mut held: Held = BTreeMap::new();
    let mut arrivals: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let current = *fault.lock().unwrap();
        let now = Instant::now();
        loop {
            let mut msg = match queue.recv() {
                Ok(msg) => msg,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => break,
            };
            arrivals += 1;
            match current {
                None => {
                    msg.set_verdict(nfq::Verdict::Accept);
                    let _ = queue.verdict(msg);
                }
                Some(f) if rng.random_range(0..1000) < f.loss_permille => {
                    msg.set_verdict(nfq::Verdict::Drop);
                    let _ = queue.verdict(msg);
                }
                Some(f) => {
                    let low = f.delay_ms.saturating_sub(f.jitter_ms) as f64;
                    let high = (f.delay_ms + f.jitter_ms) as f64;
                    let ms = if high > low {
                        rng.random_range(low..high)
                    } else {
                        low
                    };
                    held.insert((now + Duration::from_secs_f64(ms / 1000.0), arrivals), msg);
                }
            }
        }
        // Release what is due — everything, once the fault is lifted.
        let now = Instant::now();
        while let Some(entry) = held.first_entry() {
            if current.is_some() && entry.key().0 > now {
                break;
            }
            let mut msg = entry.remove();
            msg.set_verdict(nfq::Verdict::Accept);
            let _ = queue.verdict(msg);
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    for (_, mut msg) in held {
        msg.set_verdict(nfq::Verdict::Accept);
        let _ = queue.verdict(msg);
    }
}
