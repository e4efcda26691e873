//! Picking backends for a new connection (pure: numbers in, order out).
//!
//! The caller passes the open-connection counts of the *eligible* backends
//! (up and not drained), in configuration order, and a cursor that grows by
//! one per new connection. [`order`] returns the order in which to try them:
//! the first is the pick, the rest are the fallbacks after a connect failure.
//!
//! - roundrobin: the eligible list rotated by `cursor`, so consecutive
//!   connections go to consecutive backends.
//! - leastconn: the backends with the fewest open connections; among those
//!   (a tie) the cursor picks round-robin. Fallbacks follow by ascending
//!   open connections.

use crate::config::Algorithm;

/// The order in which to try the eligible backends whose open connections
/// are `active`, for the connection numbered `cursor`. Indices are into
/// `active`; empty when `active` is.
pub fn order(algorithm: Algorithm, active: &[u64], cursor: usize) -> Vec<usize> {
    let n = active.len();
    if n == 0 {
        return Vec::new();
    }
    match algorithm {
        Algorithm::RoundRobin => {
            let start = cursor % n;
            (0..n).map(|i| (start + i) % n).collect()
        }
        Algorithm::LeastConn => {
            let least = active.iter().copied().min().unwrap_or(0);
            let ties: Vec<usize> = (0..n).filter(|&i| active[i] == least).collect();
            let first = ties[cursor % ties.len()];
            let mut rest: Vec<usize> = (0..n).filter(|&i| i != first).collect();
            // Stable: equal loads keep configuration order, rotated after the pick.
            rest.sort_by_key(|&i| (active[i], (i + n - first) % n));
            let mut out = Vec::with_capacity(n);
            out.push(first);
            out.extend(rest);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn firsts(algorithm: Algorithm, active: &[u64], cursors: std::ops::Range<usize>) -> Vec<usize> {
        cursors.map(|c| order(algorithm, active, c)[0]).collect()
    }

    #[test]
    fn empty_gives_nothing() {
        assert!(order(Algorithm::RoundRobin, &[], 7).is_empty());
        assert!(order(Algorithm::LeastConn, &[], 7).is_empty());
    }

    #[test]
    fn roundrobin_walks_in_order_and_falls_back_to_the_next() {
        let active = [5, 0, 9];
        assert_eq!(
            firsts(Algorithm::RoundRobin, &active, 0..6),
            [0, 1, 2, 0, 1, 2]
        );
        assert_eq!(order(Algorithm::RoundRobin, &active, 4), [1, 2, 0]);
    }

    #[test]
    fn leastconn_picks_the_least_loaded() {
        let active = [3, 1, 2];
        assert_eq!(firsts(Algorithm::LeastConn, &active, 0..4), [1, 1, 1, 1]);
        assert_eq!(order(Algorithm::LeastConn, &active, 0), [1, 2, 0]);
    }

    #[test]
    fn leastconn_ties_are_broken_round_robin() {
        let active = [1, 0, 0, 1, 0];
        assert_eq!(
            firsts(Algorithm::LeastConn, &active, 0..6),
            [1, 2, 4, 1, 2, 4]
        );
    }

    #[test]
    fn leastconn_all_equal_is_roundrobin() {
        let active = [2, 2, 2];
        assert_eq!(
            firsts(Algorithm::LeastConn, &active, 0..6),
            [0, 1, 2, 0, 1, 2]
        );
    }

    #[test]
    fn leastconn_fallbacks_go_by_load_then_rotation() {
        // Pick 2 (tie with 0, cursor 1), then the other zero, then by load.
        let active = [0, 4, 0, 1];
        assert_eq!(order(Algorithm::LeastConn, &active, 1), [2, 0, 3, 1]);
        // Ties among the fallbacks continue after the pick.
        let active = [0, 0, 0, 0];
        assert_eq!(order(Algorithm::LeastConn, &active, 2), [2, 3, 0, 1]);
    }

    #[test]
    fn every_order_is_a_permutation() {
        for n in 1..6usize {
            for c in 0..10 {
                let active: Vec<u64> = (0..n as u64).map(|i| (i * 7 + c as u64) % 3).collect();
                for alg in [Algorithm::RoundRobin, Algorithm::LeastConn] {
                    let mut o = order(alg, &active, c);
                    o.sort_unstable();
                    assert_eq!(o, (0..n).collect::<Vec<_>>());
                }
            }
        }
    }
}
