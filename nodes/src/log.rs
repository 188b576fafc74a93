//! The replicated log shared by both protocols: 1-based entries tagged with the term
//! (passive) or view (active) in which a leader/primary created them.
//!
//! Log matching (Raft §5.3) holds for both protocols: an entry is created once per
//! (index, tag) and only appended after the entry before it matched, so two logs that hold
//! the same (index, tag) are identical up to that index.

use serde::{Deserialize, Serialize};

use crate::command::{Effect, Request};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub term: u64,
    /// `None` is the no-op a new leader/primary appends to commit earlier entries.
    pub req: Option<Request>,
    /// Passive mode: what the leader's executor made of `req`; replicas apply this and
    /// never execute `req` (see `store`). Active mode: `None`, every replica executes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<Effect>,
}

impl Entry {
    /// The no-op a new leader/primary appends.
    pub fn noop(term: u64) -> Entry {
        Entry {
            term,
            req: None,
            effect: None,
        }
    }

    /// A request that every replica executes (active replication).
    pub fn request(term: u64, req: Request) -> Entry {
        Entry {
            term,
            req: Some(req),
            effect: None,
        }
    }
}

/// Why `accept` refused entries, with where the sender should retry from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    /// The sender should next send entries after this index.
    pub hint: u64,
}

/// Names a log state handed to the disk: once written, entries up to `index` are durable
/// — unless the log was truncated since (`epoch` changed), in which case a later write
/// will say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StableMark {
    pub index: u64,
    pub epoch: u64,
}

#[derive(Debug, Default)]
pub struct Log {
    entries: Vec<Entry>,
    /// Lowest index changed (appended or overwritten) since the driver last persisted.
    unstable_from: Option<u64>,
    /// Entries up to here are on disk and unchanged since: what a leader may count for
    /// itself towards a majority (Raft §10.2.1 lets it write in parallel with followers).
    stable: u64,
    /// Bumped by every truncation.
    epoch: u64,
}

impl Log {
    pub fn restore(entries: Vec<Entry>) -> Self {
        let stable = entries.len() as u64;
        Log {
            entries,
            unstable_from: None,
            stable,
            epoch: 0,
        }
    }

    pub fn stable(&self) -> u64 {
        self.stable
    }

    pub fn mark(&self) -> StableMark {
        StableMark {
            index: self.last_index(),
            epoch: self.epoch,
        }
    }

    /// The disk finished writing the log as it was at `mark`.
    pub fn persisted(&mut self, mark: StableMark) {
        if mark.epoch == self.epoch {
            self.stable = self.stable.max(mark.index.min(self.last_index()));
        }
    }

    pub fn last_index(&self) -> u64 {
        self.entries.len() as u64
    }

    pub fn last_term(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.term)
    }

    /// The tag of entry `i`; index 0 is the empty prefix with tag 0.
    pub fn term(&self, i: u64) -> Option<u64> {
        if i == 0 {
            return Some(0);
        }
        self.entry(i).map(|e| e.term)
    }

    pub fn entry(&self, i: u64) -> Option<&Entry> {
        if i == 0 {
            return None;
        }
        self.entries.get(i as usize - 1)
    }

    /// Up to `max` entries starting at index `from`.
    pub fn slice(&self, from: u64, max: usize) -> Vec<Entry> {
        let start = (from.max(1) - 1) as usize;
        if start >= self.entries.len() {
            return Vec::new();
        }
        let end = start.saturating_add(max).min(self.entries.len());
        self.entries[start..end].to_vec()
    }

    pub fn append(&mut self, entry: Entry) -> u64 {
        self.entries.push(entry);
        let i = self.last_index();
        self.mark_unstable(i);
        i
    }

    /// Drops every entry after `i`.
    pub fn truncate_after(&mut self, i: u64) {
        if i < self.last_index() {
            self.entries.truncate(i as usize);
            self.mark_unstable(i + 1);
            self.stable = self.stable.min(i);
            self.epoch += 1;
        }
    }

    /// (last tag, last index) of a candidate's log is at least as up to date as ours
    /// (Raft §5.4.1).
    pub fn is_behind_or_equal(&self, last_index: u64, last_term: u64) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    /// The follower side of replication: if our entry at `prev_index` has tag `prev_term`,
    /// merge `entries` after it — overwriting from the first entry whose tag differs, and
    /// never truncating entries that match, since a delayed, shorter message must not undo
    /// a longer one — and return the index of the last entry the message covered.
    pub fn accept(
        &mut self,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
    ) -> Result<u64, Mismatch> {
        match self.term(prev_index) {
            None => {
                return Err(Mismatch {
                    hint: self.last_index(),
                })
            }
            Some(t) if t != prev_term => {
                // Skip back over the whole conflicting term in one round trip.
                let mut i = prev_index;
                while i > 1 && self.term(i - 1) == Some(t) {
                    i -= 1;
                }
                return Err(Mismatch { hint: i - 1 });
            }
            Some(_) => {}
        }
        let last = prev_index + entries.len() as u64;
        for (k, entry) in entries.into_iter().enumerate() {
            let i = prev_index + 1 + k as u64;
            match self.term(i) {
                Some(t) if t == entry.term => continue,
                Some(_) => {
                    self.truncate_after(i - 1);
                    self.append(entry);
                }
                None => {
                    self.append(entry);
                }
            }
        }
        Ok(last)
    }

    /// Takes the lowest index changed since the last call, for the driver to persist
    /// `slice(from, ..)` over whatever the disk held from there on.
    pub fn take_unstable(&mut self) -> Option<u64> {
        self.unstable_from.take()
    }

    fn mark_unstable(&mut self, i: u64) {
        self.unstable_from = Some(self.unstable_from.map_or(i, |u| u.min(i)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(term: u64) -> Entry {
        Entry::noop(term)
    }

    fn log_of(terms: &[u64]) -> Log {
        Log::restore(terms.iter().map(|&t| e(t)).collect())
    }

    fn terms(l: &Log) -> Vec<u64> {
        (1..=l.last_index()).map(|i| l.term(i).unwrap()).collect()
    }

    #[test]
    fn accept_appends_after_matching_prefix() {
        let mut l = log_of(&[1, 1]);
        assert_eq!(l.accept(2, 1, vec![e(2), e(2)]), Ok(4));
        assert_eq!(terms(&l), vec![1, 1, 2, 2]);
        assert_eq!(l.take_unstable(), Some(3));
    }

    #[test]
    fn accept_rejects_gap_and_conflict_with_hints() {
        let mut l = log_of(&[1, 1, 2, 2, 2]);
        assert_eq!(l.accept(7, 3, vec![]), Err(Mismatch { hint: 5 }));
        // Conflict at index 5 (we have term 2): skip back to before term 2 began.
        assert_eq!(l.accept(5, 3, vec![]), Err(Mismatch { hint: 2 }));
    }

    #[test]
    fn accept_overwrites_conflicting_suffix_only() {
        let mut l = log_of(&[1, 1, 2, 2]);
        assert_eq!(l.accept(2, 1, vec![e(3)]), Ok(3));
        assert_eq!(terms(&l), vec![1, 1, 3]);
    }

    #[test]
    fn delayed_shorter_message_does_not_truncate() {
        let mut l = log_of(&[1, 1, 1, 1]);
        l.take_unstable();
        assert_eq!(l.accept(1, 1, vec![e(1)]), Ok(2));
        assert_eq!(terms(&l), vec![1, 1, 1, 1]);
        assert_eq!(l.take_unstable(), None);
    }

    #[test]
    fn stable_index_ignores_writes_overtaken_by_truncation() {
        let mut l = log_of(&[1, 1]);
        l.append(e(2));
        let mark = l.mark();
        assert_eq!(l.stable(), 2);
        l.persisted(mark);
        assert_eq!(l.stable(), 3);
        l.append(e(2));
        let mark = l.mark();
        l.truncate_after(1);
        assert_eq!(l.stable(), 1);
        l.persisted(mark);
        assert_eq!(l.stable(), 1);
    }

    #[test]
    fn up_to_date_compares_last_term_then_index() {
        let l = log_of(&[1, 2]);
        assert!(l.is_behind_or_equal(2, 2));
        assert!(l.is_behind_or_equal(1, 3));
        assert!(!l.is_behind_or_equal(5, 1));
        assert!(!l.is_behind_or_equal(1, 2));
    }
}
