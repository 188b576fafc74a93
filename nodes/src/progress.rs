//! A leader's (or primary's) view of one follower: Raft's nextIndex/matchIndex (§5.3) plus
//! flow control — at most one append in flight, so whatever is proposed while it travels
//! goes out together in the next one.

#[derive(Debug, Clone)]
pub struct Progress {
    /// Highest index known to be in the follower's log.
    pub matched: u64,
    /// Next index to send.
    pub next: u64,
    /// Tick at which the one outstanding append was sent.
    pub inflight_since: Option<u64>,
    /// No sends before this tick after a delivery failure (backoff towards a down peer).
    pub retry_after: u64,
    /// ReadIndex rounds (passive): last round sent to / acknowledged by this follower.
    pub sent_round: u64,
    pub acked_round: u64,
    /// Commit index last sent (active: backups reply to clients, so they must learn
    /// commits promptly rather than at the next heartbeat).
    pub commit_sent: u64,
}

impl Progress {
    pub fn new(next: u64) -> Self {
        Progress {
            matched: 0,
            next,
            inflight_since: None,
            retry_after: 0,
            sent_round: 0,
            acked_round: 0,
            commit_sent: 0,
        }
    }

    /// May an append go out now?
    pub fn can_send(&self, now: u64) -> bool {
        self.inflight_since.is_none() && now >= self.retry_after
    }

    /// Applies a reply: success means the follower holds everything up to `index`;
    /// failure means it wants entries after `index` (its hint).
    pub fn on_reply(&mut self, success: bool, index: u64) {
        self.inflight_since = None;
        if success {
            self.matched = self.matched.max(index);
            self.next = self.next.max(self.matched + 1);
        } else {
            self.next = (index + 1)
                .min(self.next.saturating_sub(1))
                .max(self.matched + 1);
        }
    }

    pub fn on_unreachable(&mut self, retry_after: u64) {
        self.inflight_since = None;
        self.retry_after = retry_after;
    }

    /// Forgets an append whose reply never came (the driver normally reports it as
    /// unreachable first), so a lost reply cannot stall the follower for good.
    pub fn expire(&mut self, now: u64, after: u64) {
        if self.inflight_since.is_some_and(|t| now > t + after) {
            self.inflight_since = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_moves_next_and_match() {
        let mut p = Progress::new(10);
        p.inflight_since = Some(1);
        assert!(!p.can_send(2));
        p.on_reply(false, 4);
        assert_eq!((p.matched, p.next), (0, 5));
        p.on_reply(true, 7);
        assert_eq!((p.matched, p.next), (7, 8));
        // A stale failure never moves next below matched + 1.
        p.on_reply(false, 2);
        assert_eq!(p.next, 8);
        p.on_unreachable(20);
        assert!(!p.can_send(19));
        assert!(p.can_send(20));
    }
}
