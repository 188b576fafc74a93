//! A leader's (or primary's) view of one follower: Raft's nextIndex/matchIndex (§5.3) plus
//! flow control — at most `MAX_INFLIGHT` appends in flight, so whatever is proposed while
//! they travel goes out together in the next one (that is what batches replication), yet
//! a slow fsync at the follower does not stall the pipe.

/// Appends in flight per follower. One: with two, a busy leader split what queued into
/// twice as many small appends (and follower fsyncs) for no gain in throughput; with one,
/// everything proposed during a round trip rides in the next append (nodes/README.md,
/// Performance, has the figures).
pub const MAX_INFLIGHT: u32 = 1;

#[derive(Debug, Clone)]
pub struct Progress {
    /// Highest index known to be in the follower's log.
    pub matched: u64,
    /// Next index to send.
    pub next: u64,
    /// Appends sent and not yet answered, and the tick the oldest of them went out.
    pub inflight: u32,
    pub inflight_since: Option<u64>,
    /// No sends before this tick after a delivery failure (backoff towards a down peer).
    pub retry_after: u64,
    /// ReadIndex rounds (passive): last round sent to / acknowledged by this follower.
    pub sent_round: u64,
    pub acked_round: u64,
    /// Commit index last sent (active: backups reply to clients, so they must learn
    /// commits promptly rather than at the next heartbeat).
    pub commit_sent: u64,
    /// Passive: the follower waits for commits up to here to answer its own clients.
    pub commit_wanted: u64,
}

impl Progress {
    pub fn new(next: u64) -> Self {
        Progress {
            matched: 0,
            next,
            inflight: 0,
            inflight_since: None,
            retry_after: 0,
            sent_round: 0,
            acked_round: 0,
            commit_sent: 0,
            commit_wanted: 0,
        }
    }

    /// May an append go out now? A heartbeat only goes into an empty pipe.
    pub fn can_send(&self, now: u64, has_entries: bool) -> bool {
        let limit = if has_entries { MAX_INFLIGHT } else { 1 };
        self.inflight < limit && now >= self.retry_after
    }

    /// Records an append of entries `next..next + count` going out; the next append
    /// continues after them (optimistically; a rejection rewinds).
    pub fn on_send(&mut self, now: u64, count: u64) {
        if self.inflight == 0 {
            self.inflight_since = Some(now);
        }
        self.inflight += 1;
        self.next += count;
    }

    /// Applies a reply: success means the follower holds everything up to `index`;
    /// failure means it wants entries after `index` (its hint), and every append still
    /// in flight is written off.
    pub fn on_reply(&mut self, success: bool, index: u64) {
        if success {
            self.inflight = self.inflight.saturating_sub(1);
            self.matched = self.matched.max(index);
            self.next = self.next.max(self.matched + 1);
        } else {
            self.inflight = 0;
            self.next = (index + 1)
                .min(self.next.saturating_sub(1))
                .max(self.matched + 1);
        }
        if self.inflight == 0 {
            self.inflight_since = None;
        }
    }

    pub fn on_unreachable(&mut self, retry_after: u64) {
        self.inflight = 0;
        self.inflight_since = None;
        self.next = self.matched + 1;
        self.retry_after = retry_after;
    }

    /// Forgets appends whose replies never came (the driver normally reports them as
    /// unreachable first), so a lost reply cannot stall the follower for good.
    pub fn expire(&mut self, now: u64, after: u64) {
        if self.inflight_since.is_some_and(|t| now > t + after) {
            self.inflight = 0;
            self.inflight_since = None;
            self.next = self.matched + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_moves_next_and_match() {
        let mut p = Progress::new(10);
        p.on_send(1, 3);
        assert_eq!(p.next, 13);
        assert!(!p.can_send(2, false), "no heartbeat into a busy pipe");
        p.on_send(2, 2);
        assert!(!p.can_send(2, true), "pipe full");
        p.on_reply(false, 4);
        assert_eq!((p.matched, p.next, p.inflight), (0, 5, 0));
        p.on_send(3, 5);
        p.on_reply(true, 9);
        assert_eq!((p.matched, p.next, p.inflight), (9, 10, 0));
        // A stale failure never moves next below matched + 1.
        p.on_reply(false, 2);
        assert_eq!(p.next, 10);
        p.on_send(4, 1);
        p.on_unreachable(20);
        assert_eq!(p.next, 10);
        assert!(!p.can_send(19, true));
        assert!(p.can_send(20, true));
    }
}
