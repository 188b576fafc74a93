//! Replica convergence: after the heal and settle phase, do replicas that applied the same
//! prefix of the log hold the same state? (etcd's robustness suite compares every
//! member's `HashKV` at the end of a test the same way.) Pure: reports in, verdict out.
//!
//! ## Input
//! One [`ReplicaReport`] per replica, read from its own state (e.g. a read-only
//! `/admin/state`): `node`, `applied_index` (how many log entries, or requests, it has
//! applied), `digest` (any string that is equal for equal states — a hash of the store),
//! and optionally `dump`, the full per-key state (key → value, any JSON).
//!
//! ## The rule
//! Replicas are grouped by `applied_index`. Within a group — replicas that applied the same
//! prefix — every digest must be equal, and so must every dump given (a key missing from a
//! dump counts as `null`). Replicas at different indexes are **not compared**: a replica
//! behind shares only a prefix with the others, and its report does not say what the others
//! held at that prefix, so no claim can be made. A replica alone at its index is listed in
//! `uncompared` (typically the one still behind after the settle phase); a result with
//! every replica uncompared is `converged` only vacuously, so it says so in `compared`.
//!
//! ## Output
//! [`Convergence::Converged`] or [`Convergence::Divergent`], serde JSON with a `verdict`
//! tag (`"converged"` / `"divergent"`), for results.json:
//!
//! ```json
//! {"verdict":"divergent","applied_index":42,"key":"k3",
//!  "values":{"n1":7,"n2":12,"n3":7},
//!  "digests":{"n1":"a1f0","n2":"9c2e","n3":"a1f0"},
//!  "uncompared":[{"node":"n4","applied_index":40}]}
//! ```
//!
//! `key` is the first key (in sorted order) on which the dumps of that group differ, and
//! `values` each replica's value of it; with no dumps (or dumps equal while digests differ)
//! `key` is null and `values` empty, and the digests tell the story.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What one replica reports about its own state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaReport {
    pub node: String,
    /// Log entries (or requests) applied to the state machine.
    pub applied_index: u64,
    /// Equal for equal states (e.g. a hash of the sorted key/value pairs).
    pub digest: String,
    /// The full state, key → value, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump: Option<BTreeMap<String, serde_json::Value>>,
}

/// A replica not compared with any other: no other replica applied the same prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uncompared {
    pub node: String,
    pub applied_index: u64,
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Convergence {
    /// Every group of replicas at the same applied index holds one state.
    Converged {
        /// Replicas that were compared with at least one other.
        compared: usize,
        /// Applied indexes with two or more replicas, each with its common digest.
        groups: Vec<Group>,
        uncompared: Vec<Uncompared>,
    },
    /// Two replicas that applied the same prefix hold different states.
    Divergent {
        applied_index: u64,
        /// The first key (sorted) whose values differ between the group's dumps.
        key: Option<String>,
        /// Each replica's value of `key` (replicas of the group with a dump; absent key =
        /// null).
        values: BTreeMap<String, serde_json::Value>,
        /// Each replica's digest, for the whole group.
        digests: BTreeMap<String, String>,
        uncompared: Vec<Uncompared>,
    },
}

/// A group of replicas at one applied index that agree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub applied_index: u64,
    pub nodes: Vec<String>,
    pub digest: String,
}

impl Convergence {
    pub fn is_converged(&self) -> bool {
        matches!(self, Convergence::Converged { .. })
    }

    /// One line for reports, e.g. `divergent at applied index 42: key "k3": n1=7 n2=12`.
    pub fn summary(&self) -> String {
        match self {
            Convergence::Converged {
                compared,
                groups,
                uncompared,
            } => {
                let mut s = format!(
                    "converged: {compared} replicas compared in {} group(s) of equal applied index",
                    groups.len()
                );
                if !uncompared.is_empty() {
                    let list: Vec<String> = uncompared
                        .iter()
                        .map(|u| format!("{} at {}", u.node, u.applied_index))
                        .collect();
                    s.push_str(&format!(
                        "; not compared (alone at their index): {}",
                        list.join(", ")
                    ));
                }
                s
            }
            Convergence::Divergent {
                applied_index,
                key,
                values,
                digests,
                ..
            } => match key {
                Some(k) => {
                    let vals: Vec<String> =
                        values.iter().map(|(n, v)| format!("{n}={v}")).collect();
                    format!(
                        "divergent at applied index {applied_index}: key {k:?}: {}",
                        vals.join(" ")
                    )
                }
                None => {
                    let ds: Vec<String> = digests.iter().map(|(n, d)| format!("{n}={d}")).collect();
                    format!(
                        "divergent at applied index {applied_index}: digests differ: {}",
                        ds.join(" ")
                    )
                }
            },
        }
    }
}

/// Judges replica reports (see the module docs for the rule). Reports of one node given
/// twice are compared like two replicas.
pub fn check_convergence(reports: &[ReplicaReport]) -> Convergence {
    let mut by_index: BTreeMap<u64, Vec<&ReplicaReport>> = BTreeMap::new();
    for r in reports {
        by_index.entry(r.applied_index).or_default().push(r);
    }
    let uncompared: Vec<Uncompared> = by_index
        .values()
        .filter(|g| g.len() == 1)
        .map(|g| Uncompared {
            node: g[0].node.clone(),
            applied_index: g[0].applied_index,
        })
        .collect();
    let mut groups = Vec::new();
    let mut compared = 0;
    for (&applied_index, group) in by_index.iter().filter(|(_, g)| g.len() > 1) {
        let digests_differ = group.iter().any(|r| r.digest != group[0].digest);
        let key = first_differing_key(group);
        if digests_differ || key.is_some() {
            let values = match &key {
                Some(k) => group
                    .iter()
                    .filter_map(|r| {
                        let dump = r.dump.as_ref()?;
                        let v = dump.get(k).cloned().unwrap_or(serde_json::Value::Null);
                        Some((r.node.clone(), v))
                    })
                    .collect(),
                None => BTreeMap::new(),
            };
            return Convergence::Divergent {
                applied_index,
                key,
                values,
                digests: group
                    .iter()
                    .map(|r| (r.node.clone(), r.digest.clone()))
                    .collect(),
                uncompared,
            };
        }
        compared += group.len();
        groups.push(Group {
            applied_index,
            nodes: group.iter().map(|r| r.node.clone()).collect(),
            digest: group[0].digest.clone(),
        });
    }
    Convergence::Converged {
        compared,
        groups,
        uncompared,
    }
}

/// The first key, in sorted order, whose value differs between the group's dumps (a key
/// absent from a dump counts as null); `None` if fewer than two dumps or all equal.
fn first_differing_key(group: &[&ReplicaReport]) -> Option<String> {
    let dumps: Vec<&BTreeMap<String, serde_json::Value>> =
        group.iter().filter_map(|r| r.dump.as_ref()).collect();
    if dumps.len() < 2 {
        return None;
    }
    let null = serde_json::Value::Null;
    let mut keys: Vec<&String> = dumps.iter().flat_map(|d| d.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .find(|k| {
            let first = dumps[0].get(*k).unwrap_or(&null);
            dumps.iter().any(|d| d.get(*k).unwrap_or(&null) != first)
        })
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn replica(
        node: &str,
        index: u64,
        digest: &str,
        dump: Option<serde_json::Value>,
    ) -> ReplicaReport {
        ReplicaReport {
            node: node.into(),
            applied_index: index,
            digest: digest.into(),
            dump: dump.map(|d| serde_json::from_value(d).unwrap()),
        }
    }

    #[test]
    fn equal_replicas_converge() {
        let dump = json!({"a": 1, "b": "x"});
        let reports = [
            replica("n1", 10, "d1", Some(dump.clone())),
            replica("n2", 10, "d1", Some(dump.clone())),
            replica("n3", 10, "d1", None),
        ];
        let c = check_convergence(&reports);
        assert!(c.is_converged(), "{c:?}");
        let Convergence::Converged {
            compared,
            groups,
            uncompared,
        } = &c
        else {
            unreachable!()
        };
        assert_eq!((*compared, groups.len(), uncompared.len()), (3, 1, 0));
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["verdict"], "converged");
    }

    #[test]
    fn divergent_replicas_name_the_first_differing_key_and_each_value() {
        let reports = [
            replica("n1", 7, "aaa", Some(json!({"k1": 1, "k2": 5, "k3": 9}))),
            replica("n2", 7, "bbb", Some(json!({"k1": 1, "k2": 6, "k3": 8}))),
            replica("n3", 7, "aaa", Some(json!({"k1": 1, "k2": 5, "k3": 9}))),
        ];
        let c = check_convergence(&reports);
        let Convergence::Divergent {
            applied_index,
            key,
            values,
            digests,
            ..
        } = &c
        else {
            panic!("{c:?}")
        };
        assert_eq!(*applied_index, 7);
        assert_eq!(key.as_deref(), Some("k2"));
        assert_eq!(values["n1"], json!(5));
        assert_eq!(values["n2"], json!(6));
        assert_eq!(values["n3"], json!(5));
        assert_eq!(digests["n2"], "bbb");
        assert!(c.summary().contains("key \"k2\""), "{}", c.summary());
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["verdict"], "divergent");
        assert_eq!(json["key"], "k2");
        let back: Convergence = serde_json::from_value(json).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn a_key_missing_from_one_dump_differs_as_null() {
        let reports = [
            replica("n1", 3, "x", Some(json!({"a": 1}))),
            replica("n2", 3, "y", Some(json!({"a": 1, "b": 2}))),
        ];
        let Convergence::Divergent { key, values, .. } = check_convergence(&reports) else {
            panic!()
        };
        assert_eq!(key.as_deref(), Some("b"));
        assert_eq!(values["n1"], serde_json::Value::Null);
    }

    #[test]
    fn digests_alone_can_diverge() {
        let reports = [replica("n1", 4, "x", None), replica("n2", 4, "y", None)];
        let c = check_convergence(&reports);
        let Convergence::Divergent { key, values, .. } = &c else {
            panic!()
        };
        assert!(key.is_none() && values.is_empty());
        assert!(c.summary().contains("digests differ"), "{}", c.summary());
    }

    #[test]
    fn a_replica_behind_is_not_compared() {
        // n3 applied fewer entries: its different state is no divergence.
        let reports = [
            replica("n1", 12, "d12", Some(json!({"a": 3}))),
            replica("n2", 12, "d12", Some(json!({"a": 3}))),
            replica("n3", 9, "d9", Some(json!({"a": 1}))),
        ];
        let c = check_convergence(&reports);
        let Convergence::Converged {
            compared,
            uncompared,
            ..
        } = &c
        else {
            panic!("{c:?}")
        };
        assert_eq!(*compared, 2);
        assert_eq!(
            uncompared,
            &vec![Uncompared {
                node: "n3".into(),
                applied_index: 9
            }]
        );
        assert!(c.summary().contains("n3 at 9"), "{}", c.summary());
        // Two replicas behind at the same index are compared with each other.
        let reports = [
            replica("n1", 12, "d12", None),
            replica("n2", 9, "p", None),
            replica("n3", 9, "q", None),
        ];
        let Convergence::Divergent { applied_index, .. } = check_convergence(&reports) else {
            panic!()
        };
        assert_eq!(applied_index, 9);
    }

    #[test]
    fn reports_parse_from_json() {
        let r: ReplicaReport = serde_json::from_str(
            r#"{"node":"n1","applied_index":5,"digest":"ab12","dump":{"k":1}}"#,
        )
        .unwrap();
        assert_eq!(r.dump.unwrap()["k"], json!(1));
        let r: ReplicaReport =
            serde_json::from_str(r#"{"node":"n1","applied_index":5,"digest":"ab12"}"#).unwrap();
        assert!(r.dump.is_none());
    }
}
