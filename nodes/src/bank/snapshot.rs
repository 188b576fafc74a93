//! Global snapshots of the bank, one at a time, in two algorithms.
//!
//! **Chandy–Lamport**, as the course notes give it:
//! 1. The initiator records its state and, before any other message, puts a marker on
//!    every outgoing channel (marker and state are taken under the same lock as transfers,
//!    so no transfer can slip between them), and records every incoming channel.
//! 2. A node's first marker (from k): record its state, record every incoming channel
//!    except k's (which is empty in the snapshot), send markers on every outgoing channel.
//! 3. A later marker on a channel stops that channel's recording.
//! 4. A node with markers from every peer is done and sends its checkpoint (state plus the
//!    transfers recorded per channel) straight to the initiator.
//!
//! The initiator answers `POST /bank/snapshot` when it has every checkpoint or when the
//! timeout passes; then it names the nodes it never heard from and the channels whose
//! recording never verifiably stopped (a crashed node never sends markers, so without a
//! timeout the protocol would never end). Every node drops a snapshot past its expiry; a
//! newer snapshot id supersedes an older one; in-progress state is memory only, and a
//! restarted node never rejoins a snapshot it had recorded for (the `Joined` WAL record).
//!
//! **Clock** (the lecture's time-synchronised snapshot, to be shown wrong): the initiator
//! picks T = its clock now + `delay_ms` and tells every node directly; each node records
//! when its own clock, including any `/admin/clock` offset, reads T. No markers, no
//! channel state.
//!
//! `--bug marker-after-send`: a node that records its state holds its markers back for
//! `MARKER_DELAY` while its transfers keep flowing, so transfers sent after its cut reach
//! their receivers before its marker.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::oneshot;

use super::channel::{self, Body, Marker};
use super::disk::Record;
use super::model::{unix_ms, unix_ns, Algorithm, Channel, Checkpoint, Snapshot, Transfer};
use super::peer::{self, ClockRecord, PeerMsg};
use super::{Bank, Effects, Refusal, State};
use crate::bugs::Bug;
use crate::command::NodeId;

/// How long `marker-after-send` keeps a node's markers back.
const MARKER_DELAY: Duration = Duration::from_millis(100);
/// How long an initiator's collection outlives its timeout before a lost request's
/// leftovers are cleared (the waiting request normally clears it itself).
const COLLECTOR_GRACE_MS: u64 = 2_000;

/// `POST /bank/snapshot`'s body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub id: Option<u64>,
    pub algorithm: Option<Algorithm>,
    pub timeout_ms: Option<u64>,
    pub delay_ms: Option<u64>,
}

/// This node's part in the snapshot it is taking part in.
pub struct Recording {
    pub id: u64,
    pub initiator: NodeId,
    pub algorithm: Algorithm,
    pub expires_unix_ms: u64,
    /// The recorded state; channel state accumulates in its `channels`. `None` while the
    /// clock algorithm waits for its instant.
    pub cut: Option<Checkpoint>,
    /// Incoming channels still being recorded (no marker on them yet).
    pub open: BTreeSet<NodeId>,
    pub done: bool,
}

/// The initiator's collection of checkpoints.
pub struct Collector {
    pub id: u64,
    pub expires_unix_ms: u64,
    pub checkpoints: BTreeMap<NodeId, Checkpoint>,
    done: Option<oneshot::Sender<()>>,
}

#[derive(Default)]
pub struct SnapState {
    /// The newest snapshot this node has recorded for (durable through `Joined`).
    pub highest: u64,
    pub recording: Option<Recording>,
    pub collector: Option<Collector>,
}

impl SnapState {
    /// Drops what has outlived its snapshot's timeout.
    pub fn expire(&mut self, now: u64) {
        if let Some(c) = &self.collector {
            if now > c.expires_unix_ms + COLLECTOR_GRACE_MS {
                self.collector = None;
            }
        }
        let collecting = self.collector.as_ref().map(|c| c.id);
        if let Some(r) = &self.recording {
            // The initiator's own recording is part of the answer until `conclude` takes
            // it: dropped in the moment between the timeout and the answer (by a late
            // marker, say), the initiator would report itself missing instead of its cut.
            if now > r.expires_unix_ms && collecting != Some(r.id) {
                if !r.done {
                    tracing::info!(snapshot = r.id, "bank: snapshot timed out here; abandoned");
                }
                self.recording = None;
            }
        }
    }

    /// The snapshot still running here, and its initiator.
    pub fn running(&self, me: &str, now: u64) -> Option<(u64, NodeId)> {
        if let Some(c) = self.collector.as_ref().filter(|c| now <= c.expires_unix_ms) {
            return Some((c.id, me.to_string()));
        }
        self.recording
            .as_ref()
            .filter(|r| !r.done && now <= r.expires_unix_ms)
            .map(|r| (r.id, r.initiator.clone()))
    }
}

/// Snapshot work for after the WAL is durable.
#[derive(Default)]
pub struct SnapEffects {
    delayed_markers: Option<Marker>,
    clock_wait: Option<(u64, i64)>,
    clock_records: Option<ClockRecord>,
    /// (initiator, snapshot, checkpoint, expiry) to send.
    checkpoint: Option<(NodeId, u64, Checkpoint, u64)>,
}

/// Runs a snapshot from this node (the initiator) and returns what it collected.
pub async fn take(bank: &Arc<Bank>, req: Request) -> Result<Snapshot, Refusal> {
    let algorithm = req.algorithm.unwrap_or(Algorithm::ChandyLamport);
    let timeout_ms = req.timeout_ms.unwrap_or(5_000);
    if !(1..=600_000).contains(&timeout_ms) {
        return Err(Refusal::Bad(format!(
            "timeout_ms {timeout_ms}: must be 1 to 600000"
        )));
    }
    let delay_ms = req.delay_ms.unwrap_or(200);
    if delay_ms > 60_000 {
        return Err(Refusal::Bad(format!(
            "delay_ms {delay_ms}: must be at most 60000"
        )));
    }
    let started_ns = unix_ns();
    let now = unix_ms();
    let expires = now + timeout_ms;
    let (tx, rx) = oneshot::channel();
    let mut eff = Effects::default();
    let (id, pos) = {
        let mut st = bank.lock();
        st.snap.expire(now);
        if let Some((id, initiator)) = st.snap.running(&bank.id, now) {
            return Err(Refusal::Conflict(format!(
                "snapshot {id} is still running on {initiator}"
            )));
        }
        let id = req.id.unwrap_or(st.snap.highest + 1);
        if id <= st.snap.highest {
            return Err(Refusal::Conflict(format!(
                "snapshot {id} is not newer than snapshot {}, which {} already took part in",
                st.snap.highest, bank.id
            )));
        }
        st.snap.collector = Some(Collector {
            id,
            expires_unix_ms: expires,
            checkpoints: BTreeMap::new(),
            done: Some(tx),
        });
        let at_ms = bank.now_ms() + delay_ms as i64;
        let me = bank.id.clone();
        join(
            bank, &mut st, id, me, algorithm, expires, at_ms, None, &mut eff,
        );
        (id, bank.wal.appended())
    };
    tracing::info!(snapshot = id, algorithm = ?algorithm, "bank: snapshot started");
    bank.wal
        .sync(pos)
        .await
        .map_err(|e| Refusal::Disk(format!("bank.wal: {e}")))?;
    bank.run_effects(eff);
    let wait = Duration::from_millis(expires.saturating_sub(unix_ms()));
    let _ = tokio::time::timeout(wait, rx).await;
    let snapshot = {
        let mut st = bank.lock();
        conclude(bank, &mut st, id, algorithm, started_ns)
    };
    // The initiator's own checkpoint may describe records not yet on disk.
    bank.wal
        .sync(bank.wal.appended())
        .await
        .map_err(|e| Refusal::Disk(format!("bank.wal: {e}")))?;
    tracing::info!(
        snapshot = id,
        missing = ?snapshot.missing,
        "bank: snapshot finished"
    );
    Ok(snapshot)
}

/// Records this node's part: state now (Chandy–Lamport) or at `at_ms` (clock).
#[allow(clippy::too_many_arguments)]
fn join(
    bank: &Bank,
    st: &mut State,
    id: u64,
    initiator: NodeId,
    algorithm: Algorithm,
    expires: u64,
    at_ms: i64,
    first_marker_from: Option<&str>,
    eff: &mut Effects,
) {
    bank.log(st, Record::Joined { snapshot: id }, false);
    let mut rec = Recording {
        id,
        initiator: initiator.clone(),
        algorithm,
        expires_unix_ms: expires,
        cut: None,
        open: BTreeSet::new(),
        done: false,
    };
    match algorithm {
        Algorithm::ChandyLamport => {
            rec.cut = Some(bank.cut(st));
            rec.open = bank
                .peers
                .iter()
                .filter(|p| Some(p.as_str()) != first_marker_from)
                .cloned()
                .collect();
            let all_closed = rec.open.is_empty();
            st.snap.recording = Some(rec);
            let marker = Marker {
                snapshot: id,
                initiator,
                expires_unix_ms: expires,
            };
            if bank.has_bug(Bug::MarkerAfterSend) {
                eff.snapshot.delayed_markers = Some(marker);
            } else {
                for p in &bank.peers {
                    let frame = bank.enqueue(st, p, Body::Marker(marker.clone()));
                    eff.frames.push((p.clone(), frame));
                }
            }
            if all_closed {
                finish(bank, st, eff);
            }
        }
        Algorithm::Clock => {
            st.snap.recording = Some(rec);
            eff.snapshot.clock_wait = Some((id, at_ms));
            if initiator == bank.id {
                eff.snapshot.clock_records = Some(ClockRecord {
                    snapshot: id,
                    initiator,
                    at_ms,
                    expires_unix_ms: expires,
                });
            }
        }
    }
}

/// Every channel is closed (or, for the clock algorithm, the state is recorded): the
/// checkpoint goes to the initiator.
fn finish(bank: &Bank, st: &mut State, eff: &mut Effects) {
    let Some(rec) = st.snap.recording.as_mut() else {
        return;
    };
    let Some(cp) = rec.cut.clone() else {
        return;
    };
    rec.done = true;
    let (id, initiator, expires) = (rec.id, rec.initiator.clone(), rec.expires_unix_ms);
    if initiator == bank.id {
        add_checkpoint(bank, st, id, cp);
    } else {
        eff.snapshot.checkpoint = Some((initiator, id, cp, expires));
    }
}

fn add_checkpoint(bank: &Bank, st: &mut State, id: u64, cp: Checkpoint) {
    if let Some(c) = st.snap.collector.as_mut().filter(|c| c.id == id) {
        c.checkpoints.insert(cp.node.clone(), cp);
        if c.checkpoints.len() == bank.nodes.len() {
            if let Some(done) = c.done.take() {
                let _ = done.send(());
            }
        }
    }
}

/// A marker was delivered on `from`→self.
pub fn on_marker(bank: &Bank, st: &mut State, from: &str, m: Marker, eff: &mut Effects) {
    let now = unix_ms();
    st.snap.expire(now);
    if m.snapshot > st.snap.highest {
        if m.expires_unix_ms <= now {
            return; // its initiator has already given up
        }
        if let Some(old) = st.snap.recording.take().filter(|r| !r.done) {
            tracing::info!(old = old.id, new = m.snapshot, "bank: snapshot superseded");
        }
        let expires = m.expires_unix_ms;
        join(
            bank,
            st,
            m.snapshot,
            m.initiator,
            Algorithm::ChandyLamport,
            expires,
            0,
            Some(from),
            eff,
        );
        return;
    }
    let Some(rec) = st.snap.recording.as_mut() else {
        return; // an abandoned or older snapshot's marker: nothing left to close
    };
    if rec.id != m.snapshot || rec.done || rec.algorithm != Algorithm::ChandyLamport {
        return;
    }
    rec.open.remove(from);
    if rec.open.is_empty() {
        finish(bank, st, eff);
    }
}

/// A transfer was delivered on `from`→self: in flight at the cut if that channel is
/// still being recorded.
pub fn on_transfer(st: &mut State, from: &str, t: Transfer) {
    if let Some(rec) = st.snap.recording.as_mut() {
        if rec.algorithm == Algorithm::ChandyLamport && !rec.done && rec.open.contains(from) {
            if let Some(cut) = rec.cut.as_mut() {
                cut.channels.entry(from.to_string()).or_default().push(t);
            }
        }
    }
}

/// A checkpoint arrived from `from` for snapshot `id`.
pub fn on_checkpoint(bank: &Bank, from: &str, id: u64, cp: Checkpoint) -> Result<(), Refusal> {
    if cp.node != from {
        let msg = format!("{from} sent a checkpoint of {}", cp.node);
        return Err(Refusal::Bad(msg));
    }
    let mut st = bank.lock();
    add_checkpoint(bank, &mut st, id, cp);
    Ok(())
}

/// The initiator of a clock snapshot asks this node to record at `at_ms`.
pub async fn on_clock_record(bank: &Arc<Bank>, from: &str, cr: ClockRecord) -> Result<(), Refusal> {
    let mut eff = Effects::default();
    let pos = {
        let mut st = bank.lock();
        let now = unix_ms();
        st.snap.expire(now);
        if cr.snapshot > st.snap.highest && cr.expires_unix_ms > now {
            if let Some(old) = st.snap.recording.take().filter(|r| !r.done) {
                tracing::info!(old = old.id, new = cr.snapshot, "bank: snapshot superseded");
            }
            join(
                bank,
                &mut st,
                cr.snapshot,
                cr.initiator,
                Algorithm::Clock,
                cr.expires_unix_ms,
                cr.at_ms,
                Some(from),
                &mut eff,
            );
        }
        bank.wal.appended()
    };
    bank.wal
        .sync(pos)
        .await
        .map_err(|e| Refusal::Disk(format!("bank.wal: {e}")))?;
    bank.run_effects(eff);
    Ok(())
}

/// Builds the answer at the initiator and ends the snapshot here.
fn conclude(
    bank: &Bank,
    st: &mut State,
    id: u64,
    algorithm: Algorithm,
    started_ns: u64,
) -> Snapshot {
    let mut checkpoints = match st.snap.collector.take() {
        Some(c) if c.id == id => c.checkpoints,
        other => {
            st.snap.collector = other;
            BTreeMap::new()
        }
    };
    let mut open = BTreeSet::new();
    if let Some(rec) = st.snap.recording.take_if(|r| r.id == id && !r.done) {
        // Not done: some peer's marker never came. Report what was recorded, and which of
        // this node's channels were still open.
        if let Some(cut) = rec.cut {
            for p in &rec.open {
                open.insert(Channel {
                    from: p.clone(),
                    to: bank.id.clone(),
                });
            }
            checkpoints.entry(bank.id.clone()).or_insert(cut);
        }
    }
    let missing: Vec<NodeId> = bank
        .nodes
        .iter()
        .filter(|n| !checkpoints.contains_key(*n))
        .cloned()
        .collect();
    if algorithm == Algorithm::ChandyLamport {
        // A missing node's recording never verifiably stopped on any incoming channel.
        for m in &missing {
            for p in bank.nodes.iter().filter(|p| *p != m) {
                open.insert(Channel {
                    from: p.clone(),
                    to: m.clone(),
                });
            }
        }
    }
    Snapshot {
        id,
        initiator: bank.id.clone(),
        algorithm,
        initial_total: bank.initial_balance * bank.nodes.len() as i64,
        nodes: bank.nodes.clone(),
        checkpoints: checkpoints.into_values().collect(),
        missing,
        open_channels: open.into_iter().collect(),
        started_ns: Some(started_ns),
        finished_ns: Some(unix_ns()),
        transfers: None,
    }
}

/// Starts the background work a snapshot step left behind.
pub fn run_effects(bank: &Arc<Bank>, eff: SnapEffects) {
    if let Some(m) = eff.delayed_markers {
        tokio::spawn(send_markers_late(bank.clone(), m));
    }
    if let Some((id, at_ms)) = eff.clock_wait {
        tokio::spawn(record_at(bank.clone(), id, at_ms));
    }
    if let Some(cr) = eff.clock_records {
        for p in &bank.peers {
            let msg = PeerMsg::ClockRecord(cr.clone());
            tokio::spawn(deliver_direct(
                bank.clone(),
                p.clone(),
                msg,
                cr.expires_unix_ms,
            ));
        }
    }
    if let Some((to, id, checkpoint, expires)) = eff.checkpoint {
        let bank = bank.clone();
        tokio::spawn(async move {
            // The checkpoint describes state that must outlive a crash before it is shown.
            if bank.wal.sync(bank.wal.appended()).await.is_ok() {
                let msg = PeerMsg::Checkpoint {
                    snapshot: id,
                    checkpoint,
                };
                deliver_direct(bank, to, msg, expires).await;
            }
        });
    }
}

/// The marker-after-send bug: markers go out `MARKER_DELAY` after the cut, behind
/// whatever transfers were sent meanwhile.
async fn send_markers_late(bank: Arc<Bank>, m: Marker) {
    tokio::time::sleep(MARKER_DELAY).await;
    let mut frames = Vec::new();
    let pos = {
        let mut st = bank.lock();
        if st.snap.highest != m.snapshot {
            return; // superseded meanwhile
        }
        for p in &bank.peers {
            frames.push((p.clone(), bank.enqueue(&mut st, p, Body::Marker(m.clone()))));
        }
        bank.wal.appended()
    };
    if bank.wal.sync(pos).await.is_ok() {
        for (p, f) in frames {
            channel::post_frames(&bank, p, vec![f]);
        }
    }
}

/// The clock algorithm: wait until this node's own clock reads `at_ms`, then record.
async fn record_at(bank: Arc<Bank>, id: u64, at_ms: i64) {
    loop {
        let left = at_ms - bank.now_ms();
        if left <= 0 {
            break;
        }
        // Short steps, so an `/admin/clock` change meanwhile moves the instant too.
        tokio::time::sleep(Duration::from_millis(left.min(20) as u64)).await;
    }
    let mut eff = Effects::default();
    {
        let mut st = bank.lock();
        st.snap.expire(unix_ms());
        let cut = bank.cut(&st);
        match st.snap.recording.as_mut() {
            Some(rec) if rec.id == id && rec.cut.is_none() => rec.cut = Some(cut),
            _ => return, // abandoned or superseded
        }
        finish(&bank, &mut st, &mut eff);
    }
    bank.run_effects(eff);
}

/// Sends a direct (non-channel) message until it gets through or its snapshot expires.
async fn deliver_direct(bank: Arc<Bank>, to: NodeId, msg: PeerMsg, expires: u64) {
    let mut backoff = Duration::from_millis(50);
    while unix_ms() < expires {
        match peer::post(&bank, &to, &msg).await {
            Ok(_) => return,
            Err(e) => tracing::debug!(%to, "bank: direct message failed: {e}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bank::test_bank;

    fn recording(id: u64, expires_unix_ms: u64) -> Recording {
        Recording {
            id,
            initiator: "n1".into(),
            algorithm: Algorithm::ChandyLamport,
            expires_unix_ms,
            cut: None,
            open: BTreeSet::new(),
            done: false,
        }
    }

    fn collector(id: u64, expires_unix_ms: u64) -> Collector {
        Collector {
            id,
            expires_unix_ms,
            checkpoints: BTreeMap::new(),
            done: None,
        }
    }

    #[test]
    fn expiry_keeps_the_initiators_recording_while_it_collects() {
        let mut s = SnapState {
            recording: Some(recording(5, 1_000)),
            ..SnapState::default()
        };
        s.expire(1_001);
        assert!(
            s.recording.is_none(),
            "a participant gives up at its expiry"
        );

        s.recording = Some(recording(5, 1_000));
        s.collector = Some(collector(5, 1_000));
        s.expire(1_001);
        assert!(s.recording.is_some(), "the initiator has not answered yet");
        assert_eq!(
            s.running("n1", 1_001),
            None,
            "but it blocks no new snapshot"
        );
        // An older snapshot's recording is not the collection's.
        s.recording = Some(recording(4, 1_000));
        s.expire(1_001);
        assert!(s.recording.is_none());

        s.recording = Some(recording(5, 1_000));
        s.expire(1_001 + COLLECTOR_GRACE_MS);
        assert!(
            s.collector.is_none() && s.recording.is_none(),
            "a lost request's leftovers go"
        );
    }

    /// A marker arriving after the timeout but before the initiator builds its answer must
    /// leave the initiator's own partial cut in the answer.
    #[tokio::test]
    async fn a_late_marker_leaves_the_initiators_partial_cut_in_the_answer() {
        let (bank, dir) = test_bank("late-marker", &[]);
        let expires = unix_ms() - 1;
        let mut st = bank.lock();
        st.snap.collector = Some(collector(1, expires));
        let mut eff = Effects::default();
        let me = bank.id.clone();
        join(
            &bank,
            &mut st,
            1,
            me.clone(),
            Algorithm::ChandyLamport,
            expires,
            0,
            None,
            &mut eff,
        );
        let marker = Marker {
            snapshot: 1,
            initiator: me,
            expires_unix_ms: expires,
        };
        on_marker(&bank, &mut st, "n2", marker, &mut eff);
        let snap = conclude(&bank, &mut st, 1, Algorithm::ChandyLamport, 0);
        drop(st);
        assert_eq!(snap.missing, vec!["n2".to_string(), "n3".to_string()]);
        let own: Vec<&str> = snap.checkpoints.iter().map(|c| c.node.as_str()).collect();
        assert_eq!(own, vec!["n1"]);
        let open: Vec<String> = snap
            .open_channels
            .iter()
            .map(|c| format!("{}->{}", c.from, c.to))
            .collect();
        // n2's marker closed n2->n1; n3->n1 never got one.
        assert_eq!(open, vec!["n1->n2", "n1->n3", "n2->n3", "n3->n1", "n3->n2"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
