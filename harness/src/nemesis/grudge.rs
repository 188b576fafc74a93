//! Partition planning as pure functions, as Jepsen does it: a *grudge* says, for each
//! node, which nodes it drops packets from. Planners compute grudges; the backend only
//! applies them, so every planner is testable without a network.

use std::collections::{BTreeMap, BTreeSet};

use rand::seq::SliceRandom;
use rand::Rng;

pub use crate::fault::Grudge;

/// A short description of components for the history and the progress line, e.g.
/// `[n1 n3] [n2]`.
fn describe(components: &[Vec<usize>]) -> String {
    let names = |c: &Vec<usize>| c.iter().map(|&n| name(n)).collect::<Vec<_>>().join(" ");
    components
        .iter()
        .map(|c| format!("[{}]", names(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Which way to cut the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKind {
    /// Two random halves (the smaller one is a minority).
    Halves,
    /// One random node alone.
    IsolateOne,
    /// The current leader alone (falls back to a random node when none is known).
    IsolateLeader,
    /// Every node sees a majority, but no two nodes see the same majority.
    MajoritiesRing,
    /// Two halves joined by one node that sees both.
    Bridge,
}

impl PartitionKind {
    pub const ALL: [PartitionKind; 5] = [
        Self::Halves,
        Self::IsolateOne,
        Self::IsolateLeader,
        Self::MajoritiesRing,
        Self::Bridge,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Halves => "halves",
            Self::IsolateOne => "isolate-one",
            Self::IsolateLeader => "isolate-leader",
            Self::MajoritiesRing => "majorities-ring",
            Self::Bridge => "bridge",
        }
    }
}

/// A planned partition: the grudge and a human description of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub grudge: Grudge,
    pub description: String,
}

fn shuffled(n: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut nodes: Vec<usize> = (0..n).collect();
    nodes.shuffle(rng);
    nodes
}

fn name(n: usize) -> String {
    format!("n{}", n + 1)
}

/// Random halves: the first `n/2` shuffled nodes against the rest.
pub fn halves(n: usize, rng: &mut impl Rng) -> Plan {
    let nodes = shuffled(n, rng);
    let (a, b) = nodes.split_at(n / 2);
    let components = vec![a.to_vec(), b.to_vec()];
    let grudge = Grudge::complete(&components);
    Plan {
        description: describe(&components),
        grudge,
    }
}

/// `node` alone against the rest.
pub fn isolate(n: usize, node: usize) -> Plan {
    let rest: Vec<usize> = (0..n).filter(|&x| x != node).collect();
    let components = vec![vec![node], rest];
    let grudge = Grudge::complete(&components);
    Plan {
        description: describe(&components),
        grudge,
    }
}

/// Jepsen's majorities ring: nodes in a random ring; each node hears only the majority
/// window centred on itself. One-way cuts, so different nodes see different majorities.
pub fn majorities_ring(n: usize, rng: &mut impl Rng) -> Plan {
    let ring = shuffled(n, rng);
    let majority = n / 2 + 1;
    let mut grudge = BTreeMap::new();
    let mut views = Vec::new();
    for start in 0..n {
        let window: BTreeSet<usize> = (0..majority).map(|k| ring[(start + k) % n]).collect();
        let centre = ring[(start + majority / 2) % n];
        let drops: BTreeSet<usize> = (0..n).filter(|x| !window.contains(x)).collect();
        views.push(format!(
            "{} hears [{}]",
            name(centre),
            window
                .iter()
                .map(|&x| name(x))
                .collect::<Vec<_>>()
                .join(" ")
        ));
        grudge.insert(centre, drops);
    }
    Plan {
        grudge: Grudge::from(grudge),
        description: views.join("; "),
    }
}

/// Jepsen's bridge: two halves that cannot talk, plus one node that talks to both.
pub fn bridge(n: usize, rng: &mut impl Rng) -> Plan {
    if n < 3 {
        return halves(n, rng);
    }
    let nodes = shuffled(n, rng);
    let mid = n / 2;
    let (left, rest) = nodes.split_at(mid);
    let (bridge, right) = rest.split_first().expect("n >= 3");
    let mut grudge = BTreeMap::new();
    for &x in left {
        grudge.insert(x, right.iter().copied().collect());
    }
    for &x in right {
        grudge.insert(x, left.iter().copied().collect());
    }
    grudge.insert(*bridge, BTreeSet::new());
    let list = |xs: &[usize]| xs.iter().map(|&x| name(x)).collect::<Vec<_>>().join(" ");
    Plan {
        grudge: Grudge::from(grudge),
        description: format!("[{}] <{}> [{}]", list(left), name(*bridge), list(right)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn hears(g: &Grudge, n: usize, node: usize) -> usize {
        (0..n).filter(|&src| !g.cuts(src, node)).count()
    }

    #[test]
    fn halves_cut_every_cross_pair_both_ways_and_nothing_else() {
        for n in [2, 3, 5, 7] {
            let plan = halves(n, &mut StdRng::seed_from_u64(n as u64));
            let g = &plan.grudge;
            let sizes: Vec<usize> = (0..n).map(|x| hears(g, n, x)).collect();
            assert!(
                sizes.iter().all(|&s| s == n / 2 || s == n - n / 2),
                "n={n}: {sizes:?}"
            );
            for a in 0..n {
                for b in 0..n {
                    assert_eq!(g.cuts(a, b), g.cuts(b, a), "halves are symmetric");
                }
                assert!(!g.cuts(a, a));
            }
        }
    }

    #[test]
    fn isolate_leaves_one_node_alone() {
        let g = isolate(5, 2).grudge;
        assert_eq!(hears(&g, 5, 2), 1);
        for x in [0, 1, 3, 4] {
            assert_eq!(hears(&g, 5, x), 4);
            assert!(g.cuts(2, x) && g.cuts(x, 2));
        }
    }

    #[test]
    fn majorities_ring_gives_every_node_a_distinct_majority() {
        for n in [3, 5, 7] {
            let g = majorities_ring(n, &mut StdRng::seed_from_u64(9)).grudge;
            let mut views = BTreeSet::new();
            for node in 0..n {
                assert_eq!(hears(&g, n, node), n / 2 + 1, "n={n} node={node}");
                assert!(!g.cuts(node, node), "a node always hears itself");
                views.insert((0..n).filter(|&s| !g.cuts(s, node)).collect::<Vec<_>>());
            }
            assert_eq!(views.len(), n, "every node sees a different majority");
        }
    }

    #[test]
    fn bridge_node_hears_everyone_and_halves_do_not_meet() {
        let g = bridge(5, &mut StdRng::seed_from_u64(3)).grudge;
        let bridges: Vec<usize> = (0..5).filter(|&x| hears(&g, 5, x) == 5).collect();
        assert_eq!(bridges.len(), 1);
        for x in (0..5).filter(|x| !bridges.contains(x)) {
            assert_eq!(
                hears(&g, 5, x),
                3,
                "a side node hears its side and the bridge"
            );
        }
    }

    #[test]
    fn same_seed_same_plan() {
        let a = halves(5, &mut StdRng::seed_from_u64(42)).grudge;
        let b = halves(5, &mut StdRng::seed_from_u64(42)).grudge;
        assert_eq!(a, b);
    }
}
