//! Majority arithmetic, kept apart so it can be checked with a table.

/// Votes needed out of `n` voters.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// The highest index that a majority of `matched` (one entry per replica, the local one
/// included) has reached.
pub fn majority_index(matched: &[u64]) -> u64 {
    let mut v = matched.to_vec();
    v.sort_unstable_by(|a, b| b.cmp(a));
    v[majority(v.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&[u64], u64)] = &[
            (&[5], 5),
            (&[5, 3, 1], 3),
            (&[5, 5, 1], 5),
            (&[1, 2, 3, 4, 5], 3),
            (&[9, 9, 0, 0, 0], 0),
            (&[7, 0, 7, 7, 0], 7),
        ];
        for (matched, want) in cases {
            assert_eq!(majority_index(matched), *want, "{matched:?}");
        }
        assert_eq!(majority(3), 2);
        assert_eq!(majority(4), 3);
        assert_eq!(majority(5), 3);
    }
}
