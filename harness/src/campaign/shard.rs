//! `--shard I/N`: the I-th of N deterministic slices of a campaign's cells, so an
//! existing engine (a CI matrix, a Kubernetes Indexed Job) spreads one campaign over N
//! machines without a scheduler of ours.
//!
//! Cell k (0-based, in the campaign's fixed order) belongs to shard `k mod N + 1`: round
//! robin, so every group's cells — and with them its time limits — are spread evenly
//! over the shards, and each shard's length is within one cell per group of the others.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Shard `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 1, count: 1 };

    /// Whether the cell at position `k` of the campaign belongs to this shard.
    pub fn contains(self, k: usize) -> bool {
        k % self.count + 1 == self.index
    }

    /// This shard's items, in campaign order.
    pub fn select<T: Clone>(self, items: &[T]) -> Vec<T> {
        items
            .iter()
            .enumerate()
            .filter(|(k, _)| self.contains(*k))
            .map(|(_, t)| t.clone())
            .collect()
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// `I/N` with 1 <= I <= N.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}`: expected I/N with 1 <= I <= N, e.g. 2/8");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cell_is_in_exactly_one_shard() {
        for cells in [0usize, 1, 5, 13, 80, 127] {
            let items: Vec<usize> = (0..cells).collect();
            for n in 1..=7 {
                let mut seen = vec![0; cells];
                let mut sizes = Vec::new();
                for i in 1..=n {
                    let part = Shard { index: i, count: n }.select(&items);
                    assert!(part.windows(2).all(|w| w[0] < w[1]), "order kept");
                    sizes.push(part.len());
                    for k in part {
                        seen[k] += 1;
                    }
                }
                assert!(
                    seen.iter().all(|&s| s == 1),
                    "{cells} cells, {n} shards: {seen:?}"
                );
                let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(max - min <= 1, "{cells} cells, {n} shards: sizes {sizes:?}");
            }
        }
    }

    #[test]
    fn parses_i_of_n() {
        assert_eq!("2/8".parse::<Shard>(), Ok(Shard { index: 2, count: 8 }));
        for bad in ["0/3", "4/3", "1/0", "x", "1-3", "/3", "1/"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
