//! The bank workload: every node holds an account; clients move money between them and
//! the harness takes global snapshots while faults happen.
//!
//! Unlike the register workloads its history is not judged by a linearizability model:
//! what is checked is money — each snapshot (by `checker::snapshot`) and the final state
//! after the cluster drained (`Conservation` here). The generator is seeded per client
//! slot like `Generator`, so the same seed gives the same transfers.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One transfer request: the node a client talks to sends `amount` to node `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferOp {
    /// Index of the receiving node, never the sender.
    pub to: usize,
    /// In `1..=MAX_AMOUNT`.
    pub amount: i64,
}

/// Largest amount one transfer moves: small next to the default balance (1000), so
/// insufficient-funds refusals stay rare and money keeps moving in every direction.
pub const MAX_AMOUNT: i64 = 10;

/// A seeded stream of transfers from one node (the one a client slot talks to).
pub struct TransferGenerator {
    rng: StdRng,
    from: usize,
    nodes: usize,
}

impl TransferGenerator {
    /// Transfers sent by node `from` of `nodes` (which must be at least 2, or there is
    /// nobody to send to).
    pub fn new(seed: u64, slot: usize, from: usize, nodes: usize) -> Result<Self, String> {
        if nodes < 2 {
            return Err(format!(
                "the bank workload needs at least 2 nodes, got {nodes}"
            ));
        }
        if from >= nodes {
            return Err(format!("sender index {from} is not one of {nodes} nodes"));
        }
        // Same mixing as `Generator`, with another constant so a bank slot and a kv slot
        // of the same seed do not share a stream.
        let slot_seed = seed ^ (slot as u64 + 1).wrapping_mul(0xB5AD_4ECE_DA1C_E2A9);
        Ok(Self {
            rng: StdRng::seed_from_u64(slot_seed),
            from,
            nodes,
        })
    }

    pub fn from(&self) -> usize {
        self.from
    }

    pub fn next_op(&mut self) -> TransferOp {
        // Draw among the other nodes only, so every receiver is equally likely.
        let mut to = self.rng.random_range(0..self.nodes - 1);
        if to >= self.from {
            to += 1;
        }
        TransferOp {
            to,
            amount: self.rng.random_range(1..=MAX_AMOUNT),
        }
    }

    /// A uniformly random pause in `[0, 2 * mean)` (see `Generator::stagger`).
    pub fn stagger(&mut self, mean: std::time::Duration) -> std::time::Duration {
        if mean.is_zero() {
            return mean;
        }
        mean.mul_f64(self.rng.random_range(0.0..2.0))
    }
}

/// The final-state rule: once nothing is in flight, the balances hold exactly the money
/// the run started with, and no account is overdrawn.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Conservation {
    pub expected: i64,
    pub total: i64,
    /// Accounts below zero: `(node, balance)`.
    pub negative: Vec<(String, i64)>,
}

impl Conservation {
    pub fn judge(expected: i64, balances: &[(String, i64)]) -> Self {
        Self {
            expected,
            total: balances.iter().map(|(_, b)| b).sum(),
            negative: balances.iter().filter(|(_, b)| *b < 0).cloned().collect(),
        }
    }

    pub fn holds(&self) -> bool {
        self.total == self.expected && self.negative.is_empty()
    }

    /// One line for the terminal and the report.
    pub fn describe(&self) -> String {
        let mut out = if self.total == self.expected {
            format!("final balances sum to {} as expected", self.total)
        } else {
            format!(
                "final balances sum to {}, expected {} (difference {})",
                self.total,
                self.expected,
                self.total - self.expected
            )
        };
        for (node, balance) in &self.negative {
            out.push_str(&format!("; {node} is overdrawn at {balance}"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_never_go_to_the_sender_and_cover_every_peer_and_amount() {
        let mut g = TransferGenerator::new(5, 2, 1, 4).unwrap();
        let ops: Vec<TransferOp> = (0..2000).map(|_| g.next_op()).collect();
        assert!(ops.iter().all(|o| o.to != 1 && o.to < 4));
        for to in [0, 2, 3] {
            let n = ops.iter().filter(|o| o.to == to).count();
            assert!((500..840).contains(&n), "peer {to} drawn {n}/2000 times");
        }
        for amount in 1..=MAX_AMOUNT {
            assert!(ops.iter().any(|o| o.amount == amount), "amount {amount}");
        }
        assert!(ops.iter().all(|o| (1..=MAX_AMOUNT).contains(&o.amount)));
    }

    #[test]
    fn same_seed_same_transfers() {
        let run = |seed, slot| {
            let mut g = TransferGenerator::new(seed, slot, 0, 3).unwrap();
            (0..100).map(|_| g.next_op()).collect::<Vec<_>>()
        };
        assert_eq!(run(9, 1), run(9, 1));
        assert_ne!(run(9, 1), run(9, 2));
        assert_ne!(run(9, 1), run(10, 1));
    }

    #[test]
    fn bad_cluster_shapes_are_errors() {
        assert!(TransferGenerator::new(1, 0, 0, 1)
            .err()
            .unwrap()
            .contains("at least 2"));
        assert!(TransferGenerator::new(1, 0, 3, 3).is_err());
    }

    #[test]
    fn conservation_names_what_is_wrong() {
        let b = |v: &[(&str, i64)]| -> Vec<(String, i64)> {
            v.iter().map(|(n, x)| (n.to_string(), *x)).collect()
        };
        let ok = Conservation::judge(300, &b(&[("n1", 50), ("n2", 150), ("n3", 100)]));
        assert!(ok.holds(), "{}", ok.describe());
        let lost = Conservation::judge(300, &b(&[("n1", 50), ("n2", 150), ("n3", 95)]));
        assert!(!lost.holds());
        assert!(
            lost.describe().contains("difference -5"),
            "{}",
            lost.describe()
        );
        let overdrawn = Conservation::judge(300, &b(&[("n1", -5), ("n2", 205), ("n3", 100)]));
        assert!(!overdrawn.holds());
        assert!(overdrawn.describe().contains("n1 is overdrawn at -5"));
    }
}
