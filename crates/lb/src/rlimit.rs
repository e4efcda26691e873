//! File descriptors: what the balancers' caps need, and raising the
//! process's `RLIMIT_NOFILE` soft limit toward it (never above the hard
//! limit, which only a privileged process could raise).

use nix::sys::resource::{Resource, getrlimit, setrlimit};

use crate::config::BalancerConfig;
use crate::threads::MAX_RELAY_THREADS;

/// Descriptors the rest of a daemon may use besides the balancers.
pub const BASE_FDS: u64 = 1024;

/// Descriptors of one relay thread's runtime (epoll, its registry copy,
/// the waker's eventfd).
const FDS_PER_RELAY_THREAD: u64 = 3;

/// Descriptors the balancers can use at their caps: per connection the
/// client and backend sockets (plus two pipes with zero-copy), one per
/// running check, one listener copy per relay thread and balancer, the
/// relay threads' runtimes, and [`BASE_FDS`] for everything else.
pub fn fds_needed(configs: &[BalancerConfig]) -> u64 {
    let threads = MAX_RELAY_THREADS as u64;
    configs
        .iter()
        .map(|c| {
            let per_conn = if c.limits.zero_copy { 6 } else { 2 };
            c.limits.max_connections as u64 * per_conn + c.backends.len() as u64 + threads
        })
        .sum::<u64>()
        + threads * FDS_PER_RELAY_THREAD
        + BASE_FDS
}

/// The `RLIMIT_NOFILE` in force after [`raise_nofile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// The soft limit now (what the process may open).
    pub soft: u64,
    /// The hard limit (the ceiling for the soft one).
    pub hard: u64,
    /// Whether the soft limit still is below what was asked for.
    pub short: bool,
}

/// Raises the soft `RLIMIT_NOFILE` to `wanted` (capped at the hard limit);
/// never lowers it. `short` says the hard limit kept it below `wanted`.
pub fn raise_nofile(wanted: u64) -> Result<NofileLimit, crate::LbError> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(crate::LbError::Rlimit)?;
    let target = wanted.min(hard);
    let soft = if soft < target {
        setrlimit(Resource::RLIMIT_NOFILE, target, hard).map_err(crate::LbError::Rlimit)?;
        target
    } else {
        soft
    };
    Ok(NofileLimit {
        soft,
        hard,
        short: soft < wanted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BackendConfig;

    #[test]
    fn needs_two_per_connection_plus_checks_and_relay_threads() {
        let threads = MAX_RELAY_THREADS as u64 * (1 + FDS_PER_RELAY_THREAD);
        let mut c = BalancerConfig::new(
            "api",
            "127.0.0.1:6443".parse().unwrap(),
            vec![BackendConfig::new("m0", "127.0.0.1:1".parse().unwrap())],
        );
        c.limits.max_connections = 100;
        c.limits.zero_copy = false;
        assert_eq!(fds_needed(&[c.clone()]), 201 + threads + BASE_FDS);
        c.limits.zero_copy = true;
        assert_eq!(fds_needed(&[c]), 601 + threads + BASE_FDS);
    }

    #[test]
    fn raising_never_lowers() {
        let before = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let now = raise_nofile(1).unwrap();
        assert_eq!(now.soft, before.0);
        assert!(!now.short);
    }
}
