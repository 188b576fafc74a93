//! Role-targeted scenarios: one fault aimed at one role, for `faultline compare`.
//!
//! A scenario names a fault and the role it hits — the leader (passive's leader, active's
//! primary), a follower (any other node), or a random minority. The role is resolved
//! when each fault starts, from the nodes' `/status`; everything else (which follower,
//! which minority, the fallback node) is drawn from the nemesis's seeded RNG when the
//! fault is planned, so the same seed gives the same choices in every mode. A mode with
//! no leader says so, and the scenario then hits the seeded random node instead.

use std::str::FromStr;

use crate::fault::PacketFault;

/// Which role a scenario hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Leader,
    Follower,
    /// A random minority (`(n − 1) / 2` nodes), whatever roles they have.
    Minority,
}

/// What is done to the role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// SIGKILL, restarted when the fault ends.
    Kill,
    /// SIGSTOP, resumed when the fault ends.
    Pause,
    /// Cut off from every other node (both ways), healed when the fault ends.
    Isolate,
    /// Every packet it sends to a peer is delayed by `SLOW`.
    Slow,
}

/// The delay of the `*-slow` scenarios: more than the nodes' heartbeat interval, less
/// than their election timeout, so the cluster slows down rather than failing over.
pub const SLOW: PacketFault = PacketFault {
    delay_ms: 100,
    jitter_ms: 10,
    loss_permille: 0,
    duplicate_permille: 0,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scenario {
    pub role: Role,
    pub action: Action,
}

impl Scenario {
    /// Every scenario, in the order `faultline compare` reports them.
    pub const ALL: [Scenario; 9] = [
        Self::new(Role::Leader, Action::Kill),
        Self::new(Role::Leader, Action::Pause),
        Self::new(Role::Leader, Action::Isolate),
        Self::new(Role::Leader, Action::Slow),
        Self::new(Role::Follower, Action::Kill),
        Self::new(Role::Follower, Action::Pause),
        Self::new(Role::Follower, Action::Isolate),
        Self::new(Role::Follower, Action::Slow),
        Self::new(Role::Minority, Action::Isolate),
    ];

    pub const fn new(role: Role, action: Action) -> Self {
        Self { role, action }
    }

    pub fn name(self) -> &'static str {
        match (self.role, self.action) {
            (Role::Leader, Action::Kill) => "leader-kill",
            (Role::Leader, Action::Pause) => "leader-pause",
            (Role::Leader, Action::Isolate) => "leader-isolate",
            (Role::Leader, Action::Slow) => "leader-slow",
            (Role::Follower, Action::Kill) => "follower-kill",
            (Role::Follower, Action::Pause) => "follower-pause",
            (Role::Follower, Action::Isolate) => "follower-isolate",
            (Role::Follower, Action::Slow) => "follower-slow",
            (Role::Minority, _) => "minority-partition",
        }
    }

    /// Whether the scenario needs the packet delayer.
    pub fn needs_packet(self) -> bool {
        self.action == Action::Slow
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown scenario `{s}` (expected {})",
                    Self::ALL.map(|k| k.name()).join(", ")
                )
            })
    }
}

/// Whom a scenario's fault hits, once the cluster has said who leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aim {
    pub nodes: Vec<usize>,
    /// How the history names the role: `leader`, `follower`, or `no leader: …`.
    pub role: String,
}

/// What the cluster said about its leader when the fault started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leadership {
    Leader(usize),
    /// Leader-based, but no node named a leader in time (an election in progress).
    Unknown,
    /// The mode has no distinguished node.
    None,
}

/// Resolves `scenario` against `leadership` in a cluster of `n`. `pick` (any number) and
/// `minority` (a seeded random minority) come from the planner's RNG.
pub fn aim(
    scenario: Scenario,
    leadership: Leadership,
    n: usize,
    pick: usize,
    minority: &[usize],
) -> Aim {
    let no_leader = |why: &str| Aim {
        nodes: vec![pick % n],
        role: format!("no leader: {why}; seeded random node"),
    };
    match (scenario.role, leadership) {
        (Role::Minority, Leadership::Leader(l)) => Aim {
            nodes: minority.to_vec(),
            role: if minority.contains(&l) {
                "leader"
            } else {
                "follower"
            }
            .into(),
        },
        (Role::Minority, _) => Aim {
            nodes: minority.to_vec(),
            role: "no leader known".into(),
        },
        (_, Leadership::None) => no_leader("the mode has none"),
        (_, Leadership::Unknown) => no_leader("none known"),
        (Role::Leader, Leadership::Leader(l)) => Aim {
            nodes: vec![l],
            role: "leader".into(),
        },
        (Role::Follower, Leadership::Leader(l)) => {
            let followers: Vec<usize> = (0..n).filter(|&i| i != l).collect();
            if followers.is_empty() {
                return no_leader("a single node has no followers");
            }
            Aim {
                nodes: vec![followers[pick % followers.len()]],
                role: "follower".into(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Scenario::ALL {
            assert_eq!(s.name().parse::<Scenario>().unwrap(), s);
        }
        assert!("leader-flood"
            .parse::<Scenario>()
            .unwrap_err()
            .contains("leader-kill"));
    }

    #[test]
    fn roles_resolve_against_the_leader() {
        let kill = |r| Scenario::new(r, Action::Kill);
        assert_eq!(
            aim(kill(Role::Leader), Leadership::Leader(2), 3, 7, &[0]).nodes,
            vec![2]
        );
        let f = aim(kill(Role::Follower), Leadership::Leader(0), 3, 7, &[0]);
        assert_eq!((f.nodes, f.role.as_str()), (vec![2], "follower"));
        let f = aim(kill(Role::Follower), Leadership::Leader(1), 3, 7, &[0]);
        assert_eq!(f.nodes, vec![2]);
        let none = aim(kill(Role::Leader), Leadership::None, 3, 7, &[0]);
        assert_eq!(none.nodes, vec![1]);
        assert!(none.role.contains("the mode has none"));
        let m = aim(
            Scenario::new(Role::Minority, Action::Isolate),
            Leadership::Leader(0),
            3,
            7,
            &[0],
        );
        assert_eq!((m.nodes, m.role.as_str()), (vec![0], "leader"));
    }
}
