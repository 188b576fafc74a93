//! Clock skew: each node's wall clock is set off by a random amount through
//! `POST /admin/clock`, and set back to 0 on heal. Only the `clock` snapshot algorithm
//! reads that clock (its nodes record at an agreed instant), so this fault shows why a
//! time-synchronized snapshot is not a consistent cut.

use rand::Rng;

use crate::system::{Cluster, ControlError};

/// The nodes whose clock could not be set, and why (killed, cut off, no such endpoint).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ClockError(pub Vec<ControlError>);

/// Smallest and largest skew, in milliseconds, either way.
pub const MIN_OFFSET_MS: i64 = 50;
pub const MAX_OFFSET_MS: i64 = 500;

/// One offset per node, each ±`MIN_OFFSET_MS..=MAX_OFFSET_MS`.
pub fn plan(nodes: usize, rng: &mut impl Rng) -> Vec<i64> {
    (0..nodes)
        .map(|_| {
            let magnitude = rng.random_range(MIN_OFFSET_MS..=MAX_OFFSET_MS);
            if rng.random_bool(0.5) {
                magnitude
            } else {
                -magnitude
            }
        })
        .collect()
}

/// `n1 +120 ms, n2 -340 ms, ...`
pub fn describe(ids: &[String], offsets: &[i64]) -> String {
    ids.iter()
        .zip(offsets)
        .map(|(id, o)| format!("{id} {o:+} ms"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sets node i's offset to `offsets[i]`, going on past nodes that do not answer (killed
/// or cut off); the error names every one of them.
pub async fn apply(cluster: &dyn Cluster, offsets: &[i64]) -> Result<(), ClockError> {
    let mut failed = Vec::new();
    for (i, &offset) in offsets.iter().enumerate() {
        if let Err(e) = cluster.set_clock(i, offset).await {
            failed.push(e);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(ClockError(failed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn offsets_are_within_bounds_both_ways() {
        let mut rng = StdRng::seed_from_u64(3);
        let offsets: Vec<i64> = (0..200).flat_map(|_| plan(5, &mut rng)).collect();
        assert!(offsets
            .iter()
            .all(|o| (MIN_OFFSET_MS..=MAX_OFFSET_MS).contains(&o.abs())));
        assert!(offsets.iter().any(|&o| o > 0) && offsets.iter().any(|&o| o < 0));
        let ids = vec!["n1".to_string(), "n2".to_string()];
        assert_eq!(describe(&ids, &[120, -340]), "n1 +120 ms, n2 -340 ms");
    }
}
