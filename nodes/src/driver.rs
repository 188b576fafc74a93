//! The async loop around a protocol machine: the only place that touches the disk, the
//! network and the clock on the machine's behalf.
//!
//! One task owns the machine. It waits for an event, drains whatever else is queued (that
//! is the batch), and asks the machine for its `Ready`. Disk writes go to a dedicated
//! thread, which folds all writes queued behind a running fsync into the next one (group
//! commit), so the loop keeps serving while the disk works. Outputs that promise
//! durability — acknowledgements of entries, votes, client answers — are held until every
//! write issued before them is durable; a leader's own appends and read probes go out at
//! once, so its fsync runs in parallel with its followers' (Raft §10.2.1).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::command::{NodeId, Outcome, Request, RequestId};
use crate::disk::{Disk, HardState};
use crate::log::{Entry, StableMark};
use crate::machine::{Machine, Ready, Rejection, Status};
use crate::transport::{Link, SendFailure, StreamReply, Transport};

/// Most events folded into one batch, so ticks and replies are never starved.
const MAX_BATCH_EVENTS: usize = 4096;

pub enum Event<M, K> {
    Tick,
    /// A message from a peer; its reply (if any) goes back on `reply`.
    Peer {
        from: NodeId,
        msg: M,
        reply: Replier<M>,
    },
    /// The outcome of a message of type `kind` we sent.
    Delivered {
        to: NodeId,
        kind: K,
        result: Result<Option<M>, SendFailure>,
    },
    /// What became of our posts to `peer` (see `Transport::post`).
    Link {
        peer: NodeId,
        link: Link,
    },
    Client {
        req: Request,
        /// Another node forwarded it: never pass it on again.
        forwarded: bool,
        done: oneshot::Sender<ClientResult>,
    },
    /// The disk thread made writes up to `seq` durable.
    Persisted {
        seq: u64,
        marks: Vec<StableMark>,
    },
    DiskFailed(String),
    /// `GET /admin/state`: the applied index and the state's digest (and dump).
    State {
        dump: bool,
        done: oneshot::Sender<StateReport>,
    },
}

/// A replica's own state as `GET /admin/state` reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StateReport {
    pub applied_index: u64,
    /// Keys holding a value.
    pub keys: usize,
    /// `Store::digest`: FNV-1a 64 of the sorted `[key, value]` pairs, 16 hex digits.
    pub digest: String,
    /// Every key and its value (only when asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<std::collections::BTreeMap<String, crate::command::Value>>,
}

/// Where the answer to a peer's request goes: the HTTP exchange it came on
/// (`POST /peer/message`) or the peer's stream.
pub enum Replier<M> {
    Http(oneshot::Sender<Option<M>>),
    Stream(StreamReply<M>),
}

impl<M> Replier<M> {
    fn send(self, reply: Option<M>) {
        match self {
            Replier::Http(tx) => {
                let _ = tx.send(reply);
            }
            Replier::Stream(s) => s.send(reply),
        }
    }
}

#[derive(Debug)]
pub enum ClientResult {
    Done(Outcome),
    Rejected(Rejection),
}

/// Something to release once the disk has caught up.
enum Output<M> {
    Send(NodeId, M),
    Reply(Replier<M>, Option<M>),
    Answer(RequestId, ClientResult),
}

struct DiskJob {
    seq: u64,
    hard_state: Option<HardState>,
    log_from: Option<u64>,
    entries: Vec<Entry>,
    records: Vec<String>,
    mark: Option<StableMark>,
}

type HeldReplies<M> = Vec<(Replier<M>, Option<M>)>;

pub struct Driver<M: Machine> {
    machine: M,
    events: mpsc::Receiver<Event<M::Msg, M::Kind>>,
    /// For send tasks and the disk thread to report back.
    loopback: mpsc::Sender<Event<M::Msg, M::Kind>>,
    transport: Arc<Transport>,
    waiters: HashMap<RequestId, oneshot::Sender<ClientResult>>,
    status: watch::Sender<Status>,
    tick: Duration,
    disk: Option<Disk>,
    jobs: Option<std::sync::mpsc::Sender<DiskJob>>,
    /// Sequence number of the last write handed to the disk thread / made durable.
    issued: u64,
    durable: u64,
    /// Outputs waiting for `durable` to reach their sequence number (non-decreasing).
    gated: VecDeque<(u64, Output<M::Msg>)>,
}

impl<M: Machine> Driver<M> {
    pub fn new(
        machine: M,
        disk: Disk,
        events: mpsc::Receiver<Event<M::Msg, M::Kind>>,
        loopback: mpsc::Sender<Event<M::Msg, M::Kind>>,
        transport: Arc<Transport>,
        status: watch::Sender<Status>,
        tick: Duration,
    ) -> Self {
        Driver {
            machine,
            events,
            loopback,
            transport,
            waiters: HashMap::new(),
            status,
            tick,
            disk: Some(disk),
            jobs: None,
            issued: 0,
            durable: 0,
            gated: VecDeque::new(),
        }
    }

    pub async fn run(mut self) {
        let (jobs, job_rx) = std::sync::mpsc::channel();
        self.jobs = Some(jobs);
        let disk = self.disk.take().expect("run once");
        let report = self.loopback.clone();
        std::thread::Builder::new()
            .name("faultline-disk".into())
            .spawn(move || disk_thread::<M>(disk, job_rx, report))
            .expect("spawn disk thread");

        let mut links = self.transport.links();
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let first = tokio::select! {
                biased;
                _ = ticker.tick() => Event::Tick,
                Some((peer, link)) = links.recv() => Event::Link { peer, link },
                ev = self.events.recv() => match ev {
                    Some(ev) => ev,
                    None => return,
                },
            };
            let mut held = Vec::new();
            if !self.handle(first, &mut held) {
                return;
            }
            while let Ok((peer, link)) = links.try_recv() {
                if !self.handle(Event::Link { peer, link }, &mut held) {
                    return;
                }
            }
            for _ in 0..MAX_BATCH_EVENTS {
                match self.events.try_recv() {
                    Ok(ev) => {
                        if !self.handle(ev, &mut held) {
                            return;
                        }
                    }
                    Err(_) => break,
                }
            }
            let ready = self.machine.ready();
            self.release_durable();
            self.dispatch(ready, held);
            self.status.send_replace(self.machine.status());
        }
    }

    /// Feeds one event to the machine; false when the node must stop.
    fn handle(&mut self, ev: Event<M::Msg, M::Kind>, held: &mut HeldReplies<M::Msg>) -> bool {
        match ev {
            Event::Tick => {
                self.machine.tick();
                self.waiters.retain(|_, w| !w.is_closed());
                self.transport.expire();
            }
            Event::Peer { from, msg, reply } => {
                let out = self.machine.step(&from, msg);
                held.push((reply, out));
            }
            Event::Delivered { to, kind, result } => match result {
                Ok(Some(msg)) => {
                    let _ = self.machine.step(&to, msg);
                }
                Ok(None) => self.machine.delivered(&to),
                Err(failure) => {
                    tracing::debug!(peer = %to, ?failure, "message not delivered");
                    self.machine.undelivered(&to, kind, failure.is_definite());
                }
            },
            Event::Link { peer, link } => match link {
                Link::Acked => self.machine.delivered(&peer),
                Link::Lost { definite } => {
                    tracing::debug!(%peer, definite, "posts lost with their stream");
                    self.machine.posts_lost(&peer, definite);
                }
            },
            Event::Client {
                req,
                forwarded,
                done,
            } => {
                let id = req.id.clone();
                let taken = if forwarded {
                    self.machine.client_forwarded(req)
                } else {
                    self.machine.client(req)
                };
                match taken {
                    Ok(()) => {
                        self.waiters.insert(id, done);
                    }
                    Err(rejection) => {
                        let _ = done.send(ClientResult::Rejected(rejection));
                    }
                }
            }
            Event::Persisted { seq, marks } => {
                self.durable = self.durable.max(seq);
                for mark in marks {
                    self.machine.persisted(mark);
                }
            }
            Event::State { dump, done } => {
                let (applied_index, store) = self.machine.applied_state();
                let state = dump.then(|| {
                    store
                        .dump()
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.clone()))
                        .collect()
                });
                let _ = done.send(StateReport {
                    applied_index,
                    keys: store.len(),
                    digest: store.digest(),
                    state,
                });
            }
            Event::DiskFailed(e) => {
                // Without durable state this node could break its promises; stop
                // answering rather than answer wrongly.
                tracing::error!("data dir write failed, node stops: {e}");
                return false;
            }
        }
        true
    }

    fn release_durable(&mut self) {
        while self
            .gated
            .front()
            .is_some_and(|(seq, _)| *seq <= self.durable)
        {
            let (_, out) = self.gated.pop_front().unwrap();
            self.emit(out);
        }
    }

    fn dispatch(&mut self, ready: Ready<M::Msg>, held: HeldReplies<M::Msg>) {
        if ready.hard_state.is_some() || ready.log_from.is_some() || !ready.records.is_empty() {
            self.issued += 1;
            let job = DiskJob {
                seq: self.issued,
                hard_state: ready.hard_state,
                log_from: ready.log_from,
                entries: ready.entries,
                records: ready.records,
                mark: ready.mark,
            };
            if let Some(jobs) = &self.jobs {
                let _ = jobs.send(job);
            }
        }
        for (reply, msg) in held {
            let gate = msg.as_ref().is_some_and(M::needs_durability);
            self.output(gate, Output::Reply(reply, msg));
        }
        for (to, msg) in ready.messages {
            let gate = M::needs_durability(&msg);
            self.output(gate, Output::Send(to, msg));
        }
        // Client answers need no gate: a write is answered once committed, and commit
        // counts only durable copies (followers' acknowledgements and our own stable
        // index); a read changes nothing; a rejection promises nothing.
        for (id, outcome) in ready.replies {
            self.output(false, Output::Answer(id, ClientResult::Done(outcome)));
        }
        for (id, rejection) in ready.rejected {
            self.output(false, Output::Answer(id, ClientResult::Rejected(rejection)));
        }
    }

    fn output(&mut self, gate: bool, out: Output<M::Msg>) {
        if gate && self.durable < self.issued {
            self.gated.push_back((self.issued, out));
        } else {
            self.emit(out);
        }
    }

    fn emit(&mut self, out: Output<M::Msg>) {
        match out {
            Output::Send(to, msg) if !M::expects_reply(&msg) => {
                if let Err(failure) = self.transport.post(&to, &msg, M::kind_name(&msg)) {
                    // Nothing left: the machine hears of it now (its next `ready` sees it).
                    tracing::debug!(peer = %to, ?failure, "post not sent");
                    self.machine.posts_lost(&to, failure.is_definite());
                }
            }
            Output::Send(to, msg) => {
                let transport = self.transport.clone();
                let loopback = self.loopback.clone();
                let kind = M::kind(&msg);
                tokio::spawn(async move {
                    let result = transport.send(&to, msg, M::kind_name).await;
                    let _ = loopback.send(Event::Delivered { to, kind, result }).await;
                });
            }
            Output::Reply(reply, msg) => reply.send(msg),
            Output::Answer(id, result) => {
                if let Some(w) = self.waiters.remove(&id) {
                    let _ = w.send(result);
                }
            }
        }
    }
}

/// Applies writes in order; all writes queued behind one fsync share the next.
fn disk_thread<M: Machine>(
    mut disk: Disk,
    jobs: std::sync::mpsc::Receiver<DiskJob>,
    report: mpsc::Sender<Event<M::Msg, M::Kind>>,
) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while let Ok(job) = jobs.try_recv() {
            batch.push(job);
        }
        if report.is_closed() {
            return; // the node is gone (crashed in-process): write nothing more
        }
        let result = (|| -> std::io::Result<()> {
            let mut wrote_log = false;
            let mut hard = None;
            // One append (one write syscall) for the whole batch's records.
            let mut records = Vec::new();
            for job in &mut batch {
                records.append(&mut job.records);
                if let Some(from) = job.log_from {
                    disk.write_log(from, &job.entries)?;
                    wrote_log = true;
                }
                if job.hard_state.is_some() {
                    hard = job.hard_state.take();
                }
            }
            if wrote_log {
                disk.sync()?;
            }
            if !records.is_empty() {
                disk.append_records(&records)?;
                disk.sync_records()?;
            }
            if let Some(hard) = hard {
                disk.save_hard_state(&hard)?;
            }
            Ok(())
        })();
        let event = match result {
            Ok(()) => Event::Persisted {
                seq: batch.last().map_or(0, |j| j.seq),
                marks: batch.iter().filter_map(|j| j.mark).collect(),
            },
            Err(e) => Event::DiskFailed(e.to_string()),
        };
        let failed = matches!(event, Event::DiskFailed(_));
        if report.blocking_send(event).is_err() || failed {
            return;
        }
    }
}
