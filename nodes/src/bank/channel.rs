//! Channels between banks: one per ordered pair of nodes, reliable and (by default) FIFO
//! on top of HTTP, which is neither.
//!
//! - Every frame on self→peer — transfers and markers alike — takes the next frame `seq`,
//!   so a marker's place among the transfers is fixed when it is queued.
//! - The sender keeps each frame in its `Outbox` until the receiver acknowledges it. A new
//!   frame is posted at once in its own request (frames are deliberately not serialised
//!   per channel, so HTTP may reorder them); `retransmit_loop` re-posts whatever stays
//!   unacknowledged, oldest first, backing off up to `MAX_RTO` while the peer is away
//!   (partitioned, paused, restarting).
//! - The receiver's `Inbox` drops duplicates and, on FIFO channels, holds back frames that
//!   arrive early until the gap before them is filled; on `--channels unordered` it
//!   delivers every new frame as it arrives.
//! - Acknowledgements cover delivered (hence durable) frames only. Held-back frames are not
//!   acknowledged, so after a receiver restart loses its hold-back queue the sender simply
//!   sends them again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::model::Transfer;
use super::peer::{self, PeerMsg};
use super::Bank;
use crate::command::NodeId;

/// First retransmission delay, and its ceiling under repeated failures.
const BASE_RTO: Duration = Duration::from_millis(100);
const MAX_RTO: Duration = Duration::from_secs(1);
/// How long a queued frame may wait for its request's WAL sync before the retransmit loop
/// syncs it itself.
pub(super) const STALL_AFTER: Duration = BASE_RTO;
/// How often the retransmit loop looks at an outbox.
const RETRANSMIT_TICK: Duration = Duration::from_millis(25);
/// Most frames in one retransmission, so one request stays small.
const MAX_BATCH: usize = 128;
/// Most frames held back per channel; later ones are dropped and come again.
const MAX_HELD: usize = 4096;

/// One message on a channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    pub seq: u64,
    #[serde(flatten)]
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    Transfer(Transfer),
    Marker(Marker),
}

/// A Chandy–Lamport marker. It carries no clock (markers are not events); the initiator
/// and expiry let a node that hears of the snapshot first through this marker take part
/// and know when to give up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    pub snapshot: u64,
    pub initiator: NodeId,
    pub expires_unix_ms: u64,
}

/// The receiver's answer to frames: every frame up to `upto` is delivered, and so are
/// the frames in `also` (only on unordered channels, where gaps are normal).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub upto: u64,
    #[serde(default)]
    pub also: Vec<u64>,
}

/// The receiving end of one channel.
#[derive(Debug, Default)]
pub struct Inbox {
    /// Every frame `1..=upto` is delivered.
    upto: u64,
    /// Delivered frames above `upto` (unordered channels only).
    above: BTreeSet<u64>,
    /// Frames that arrived before their predecessors (FIFO channels only).
    held: BTreeMap<u64, Frame>,
    /// Frames ever held back, for `/bank/status`.
    pub held_total: u64,
}

impl Inbox {
    pub fn is_delivered(&self, seq: u64) -> bool {
        seq <= self.upto || self.above.contains(&seq)
    }

    /// Notes frame `seq` delivered (from a live delivery or a replayed record).
    pub fn mark_delivered(&mut self, seq: u64) {
        if seq == self.upto + 1 {
            self.upto = seq;
            while self.above.remove(&(self.upto + 1)) {
                self.upto += 1;
            }
        } else if seq > self.upto {
            self.above.insert(seq);
        }
    }

    /// Takes one arriving frame; returns the frames now deliverable, in delivery order.
    /// The caller must `mark_delivered` each before offering the next arrival.
    pub fn accept(&mut self, frame: Frame, fifo: bool) -> Vec<Frame> {
        if self.is_delivered(frame.seq) {
            return Vec::new();
        }
        if !fifo {
            return vec![frame];
        }
        if frame.seq != self.upto + 1 {
            if self.held.len() < MAX_HELD && !self.held.contains_key(&frame.seq) {
                self.held.insert(frame.seq, frame);
                self.held_total += 1;
            }
            return Vec::new();
        }
        let mut out = vec![frame];
        let mut next = self.upto + 2;
        while let Some(f) = self.held.remove(&next) {
            out.push(f);
            next += 1;
        }
        out
    }

    /// The acknowledgement for a request that carried `seqs`.
    pub fn ack(&self, seqs: impl Iterator<Item = u64>) -> Ack {
        let mut also: Vec<u64> = seqs
            .filter(|s| *s > self.upto && self.above.contains(s))
            .collect();
        also.sort_unstable();
        also.dedup();
        Ack {
            upto: self.upto,
            also,
        }
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }
}

struct Pending {
    frame: Frame,
    /// The WAL position that makes this frame durable; it must not leave before.
    wal_pos: u64,
    last_sent: Option<Instant>,
}

/// The sending end of one channel: frames not yet acknowledged.
#[derive(Default)]
pub struct Outbox {
    frames: BTreeMap<u64, Pending>,
}

impl Outbox {
    /// `posting`: the caller posts it right away (so no retransmission is due yet).
    pub fn insert(&mut self, frame: Frame, wal_pos: u64, posting: bool) {
        let last_sent = posting.then(Instant::now);
        self.frames.insert(
            frame.seq,
            Pending {
                frame,
                wal_pos,
                last_sent,
            },
        );
    }

    /// Whether `ack` covers any frame still here.
    pub fn acks_any(&self, ack: &Ack) -> bool {
        self.frames.keys().next().is_some_and(|s| *s <= ack.upto)
            || ack.also.iter().any(|s| self.frames.contains_key(s))
    }

    pub fn remove_acked(&mut self, upto: u64, also: &[u64]) {
        self.frames = self.frames.split_off(&(upto + 1));
        for s in also {
            self.frames.remove(s);
        }
    }

    /// Durable frames last sent longer than `rto` ago, oldest first; marks them sent now.
    pub(super) fn due(&mut self, rto: Duration, durable: impl Fn(u64) -> bool) -> Vec<Frame> {
        let now = Instant::now();
        let mut out = Vec::new();
        for p in self.frames.values_mut() {
            if out.len() == MAX_BATCH || !durable(p.wal_pos) {
                break;
            }
            if p.last_sent.is_none_or(|t| now.duration_since(t) >= rto) {
                p.last_sent = Some(now);
                out.push(p.frame.clone());
            }
        }
        out
    }

    /// The WAL position to sync for frames stuck before the wire: not durable although
    /// queued more than `rto` ago. Their sender's own sync never ran (its request was
    /// dropped while waiting its turn), and `due` stops at the first of them, so without
    /// a sync from elsewhere the channel would stall behind them for good.
    pub(super) fn stalled(&self, rto: Duration, durable: impl Fn(u64) -> bool) -> Option<u64> {
        let now = Instant::now();
        // WAL positions grow with seqs, so the undurable frames are the newest ones.
        self.frames
            .values()
            .rev()
            .take_while(|p| !durable(p.wal_pos))
            .find(|p| p.last_sent.is_none_or(|t| now.duration_since(t) >= rto))
            .map(|p| p.wal_pos)
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// Posts `frames` (already durable) to `to` in the background; a failure is left to the
/// retransmit loop.
pub fn post_frames(bank: &Arc<Bank>, to: NodeId, frames: Vec<Frame>) {
    let bank = bank.clone();
    tokio::spawn(async move {
        if let Ok(reply) = peer::post(&bank, &to, &PeerMsg::Frames(frames)).await {
            if let Some(ack) = reply.ack {
                bank.on_ack(&to, ack);
            }
        }
    });
}

/// Re-posts `peer`'s unacknowledged frames until acknowledged, for the node's lifetime.
pub async fn retransmit_loop(bank: Arc<Bank>, peer: NodeId) {
    let mut rto = BASE_RTO;
    let mut next_try = Instant::now();
    loop {
        tokio::time::sleep(RETRANSMIT_TICK).await;
        if Instant::now() < next_try || bank.transport.is_isolated(&peer) {
            continue;
        }
        if let Some(pos) = bank.stalled_frames(&peer) {
            if let Err(e) = bank.wal.sync(pos).await {
                tracing::debug!(%peer, "bank: cannot make queued frames durable: {e}");
            }
        }
        let frames = bank.due_frames(&peer, rto);
        if frames.is_empty() {
            continue;
        }
        match peer::post(&bank, &peer, &PeerMsg::Frames(frames)).await {
            Ok(reply) => {
                if let Some(ack) = reply.ack {
                    bank.on_ack(&peer, ack);
                }
                rto = BASE_RTO;
            }
            Err(e) => {
                tracing::debug!(%peer, "bank retransmission failed: {e}");
                rto = (rto * 2).min(MAX_RTO);
                next_try = Instant::now() + rto;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(seq: u64) -> Frame {
        Frame {
            seq,
            body: Body::Marker(Marker {
                snapshot: 1,
                initiator: "n1".into(),
                expires_unix_ms: 0,
            }),
        }
    }

    /// Offers frames in `order`, marking deliveries as the bank does; returns the delivered
    /// seqs in delivery order.
    fn run(order: &[u64], fifo: bool) -> (Vec<u64>, Inbox) {
        let mut inbox = Inbox::default();
        let mut delivered = Vec::new();
        for &s in order {
            for f in inbox.accept(marker(s), fifo) {
                inbox.mark_delivered(f.seq);
                delivered.push(f.seq);
            }
        }
        (delivered, inbox)
    }

    #[test]
    fn fifo_holds_back_until_the_gap_fills_and_drops_duplicates() {
        let (d, inbox) = run(&[3, 2, 2, 5, 1, 3, 4, 1, 6], true);
        assert_eq!(d, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(
            inbox.ack([6].into_iter()),
            Ack {
                upto: 6,
                also: vec![]
            }
        );
        assert_eq!(inbox.held(), 0);
        assert_eq!(inbox.held_total, 3);
    }

    #[test]
    fn fifo_acks_only_the_delivered_prefix() {
        let (d, inbox) = run(&[2, 3], true);
        assert!(d.is_empty());
        assert_eq!(
            inbox.ack([2, 3].into_iter()),
            Ack {
                upto: 0,
                also: vec![]
            }
        );
    }

    #[test]
    fn unordered_delivers_on_arrival_once_and_acks_selectively() {
        let (d, inbox) = run(&[3, 1, 3, 5, 2, 1], false);
        assert_eq!(d, vec![3, 1, 5, 2]);
        assert_eq!(
            inbox.ack([5, 3].into_iter()),
            Ack {
                upto: 3,
                also: vec![5]
            }
        );
    }

    #[test]
    fn outbox_names_frames_stuck_before_the_wal() {
        let mut out = Outbox::default();
        out.insert(marker(1), 10, false);
        out.insert(marker(2), 20, true);
        out.insert(marker(3), 30, true);
        // 2 and 3 were just queued by requests that sync them themselves.
        assert_eq!(out.stalled(BASE_RTO, |pos| pos <= 10), None);
        std::thread::sleep(BASE_RTO);
        assert_eq!(out.stalled(BASE_RTO, |pos| pos <= 10), Some(30));
        assert_eq!(out.stalled(BASE_RTO, |pos| pos <= 30), None);
        // Nothing undurable is stuck if only a fresh frame is undurable.
        out.insert(marker(4), 40, true);
        assert_eq!(out.stalled(BASE_RTO, |pos| pos <= 30), None);
        // `due` never lets a frame out before it is durable, stuck or not.
        assert_eq!(
            out.due(BASE_RTO, |pos| pos <= 10)
                .iter()
                .map(|f| f.seq)
                .collect::<Vec<_>>(),
            vec![1]
        );
    }

    #[test]
    fn outbox_retransmits_due_durable_frames_in_order_and_drops_acked() {
        let mut out = Outbox::default();
        for s in 1..=4 {
            out.insert(marker(s), s * 10, false);
        }
        // Frame 4 is not durable yet: it and everything after it must wait.
        let due = out.due(BASE_RTO, |pos| pos <= 30);
        assert_eq!(due.iter().map(|f| f.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        // Just sent: not due again before the timeout.
        assert!(out.due(BASE_RTO, |_| true).iter().all(|f| f.seq == 4));
        let ack = Ack {
            upto: 2,
            also: vec![4],
        };
        assert!(out.acks_any(&ack));
        out.remove_acked(ack.upto, &ack.also);
        assert_eq!(out.len(), 1);
        assert!(!out.acks_any(&Ack {
            upto: 2,
            also: vec![]
        }));
    }
}
