//! Named, deliberate bugs (`--bug NAME`), each off by default.
//!
//! Every bug is a single `if` in the protocol code, guarded by [`Bugs::has`], so that the
//! difference from the correct protocol is easy to find with `grep Bug::`.

use clap::ValueEnum;

use crate::config::Mode;

/// A `--bug` value that cannot be used: unknown, or not a bug of the chosen mode. The
/// message is one line naming the bugs that mode knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BugError {
    #[error("--bug {name}: no such bug; known bugs in {mode} mode: {known}", mode = .mode.name(), known = Bug::names_in(*.mode).join(", "))]
    Unknown { name: String, mode: Mode },
    #[error("--bug {name}: does not exist in {mode} mode; known bugs in {mode} mode: {known}", name = .bug.name(), mode = .mode.name(), known = Bug::names_in(*.mode).join(", "))]
    OtherMode { bug: Bug, mode: Mode },
}

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

    /// Parses a bug name for a node of `mode`: the one check both `faultline node` and the
    /// harness (before it starts anything) make.
    pub fn parse(name: &str, mode: Mode) -> Result<Bug, BugError> {
        let name = name.trim();
        let bug = Bug::value_variants()
            .iter()
            .copied()
            .find(|b| b.name() == name)
            .ok_or_else(|| BugError::Unknown {
                name: name.to_string(),
                mode,
            })?;
        if bug.exists_in(mode) {
            Ok(bug)
        } else {
            Err(BugError::OtherMode { bug, mode })
        }
    }

    /// Every bug a node of `mode` can be switched into, in declaration order.
    pub fn known_in(mode: Mode) -> Vec<Bug> {
        Bug::value_variants()
            .iter()
            .copied()
            .filter(|b| b.exists_in(mode))
            .collect()
    }

    /// The names of [`Bug::known_in`], as `--bug` takes them.
    pub fn names_in(mode: Mode) -> Vec<&'static str> {
        Bug::known_in(mode).into_iter().map(Bug::name).collect()
    }

    pub fn exists_in(self, mode: Mode) -> bool {
        self.mode().is_none_or(|m| m == mode)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bugs_are_checked_against_the_mode_with_one_line_naming_the_known_ones() {
        assert_eq!(Bug::parse("stale-read", Mode::Passive), Ok(Bug::StaleRead));
        assert_eq!(
            Bug::parse("marker-after-send", Mode::Active),
            Ok(Bug::MarkerAfterSend)
        );
        let e = Bug::parse("stale-read", Mode::Active)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--bug stale-read: does not exist in active mode; known bugs in active mode: \
             deliver-unagreed, marker-after-send"
        );
        let e = Bug::parse("stale-raed", Mode::Passive)
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(
            e.starts_with("--bug stale-raed: no such bug; known bugs in passive mode: stale-read"),
            "{e}"
        );
        // Every name round-trips and belongs to at least one mode.
        for b in Bug::value_variants() {
            let modes: Vec<Mode> = Mode::value_variants()
                .iter()
                .copied()
                .filter(|m| b.exists_in(*m))
                .collect();
            assert!(!modes.is_empty(), "{b:?}");
            assert_eq!(Bug::parse(b.name(), modes[0]), Ok(*b));
        }
    }
}
