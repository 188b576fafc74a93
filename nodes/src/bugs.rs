//! Named, deliberate bugs (`--bug NAME`), each off by default.
//!
//! Every bug is a single `if` in the protocol code, guarded by [`Bugs::has`], so that the
//! difference from the correct protocol is easy to find with `grep Bug::`.

use clap::ValueEnum;

use crate::config::Mode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Bug {
    /// passive: the leader answers reads from local state without confirming it still leads.
    StaleRead,
    /// passive: the leader answers a write once it is in its own log, before a majority has it.
    AckBeforeCommit,
    /// passive: followers accept replication from a leader of an older term, and leaders
    /// ignore newer terms in replies, so a deposed leader's writes are accepted.
    NoFencing,
    /// passive: term and vote are not restored after a restart.
    ForgetVote,
    /// active: a replica executes a request as soon as it is in its log, before its
    /// position in the order is agreed by a majority.
    DeliverUnagreed,
    /// leaderless: a replica executes a command as soon as it is committed, before its
    /// timestamp is stable (a command with a lower timestamp may still commit).
    ExecuteUnstable,
    /// bank (either mode): after recording its state for a Chandy–Lamport snapshot, a node
    /// holds its markers back for a while and keeps sending transfers, so transfers sent
    /// after its cut reach the receivers before the marker.
    MarkerAfterSend,
}

impl Bug {
    pub fn name(self) -> &'static str {
        match self {
            Bug::StaleRead => "stale-read",
            Bug::AckBeforeCommit => "ack-before-commit",
            Bug::NoFencing => "no-fencing",
            Bug::ForgetVote => "forget-vote",
            Bug::DeliverUnagreed => "deliver-unagreed",
            Bug::MarkerAfterSend => "marker-after-send",
            Bug::ExecuteUnstable => "execute-unstable",
        }
    }

    /// The mode whose protocol this bug lives in; `None` for the bank, which runs in
    /// every mode.
    pub fn mode(self) -> Option<Mode> {
        match self {
            Bug::DeliverUnagreed => Some(Mode::Active),
            Bug::MarkerAfterSend => None,
            Bug::ExecuteUnstable => Some(Mode::Leaderless),
            _ => Some(Mode::Passive),
        }
    }
}

/// The set of bugs switched on for one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bugs(Vec<Bug>);

impl Bugs {
    pub fn new(bugs: impl IntoIterator<Item = Bug>) -> Self {
        let mut v: Vec<Bug> = bugs.into_iter().collect();
        v.sort_by_key(|b| b.name());
        v.dedup();
        Bugs(v)
    }

    pub fn has(&self, bug: Bug) -> bool {
        self.0.contains(&bug)
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|b| b.name()).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = Bug> + '_ {
        self.0.iter().copied()
    }
}
