//! systemd notifications (sd_notify(3), through the `sd-notify` crate):
//! `READY=1` once every socket is bound and the firewall applied,
//! `RELOADING=1` with `MONOTONIC_USEC` before a SIGHUP reload and `READY=1`
//! after it (whatever its outcome), `STOPPING=1` on SIGTERM/SIGINT, a
//! `STATUS=` line with each, and `WATCHDOG=1` while every service is alive
//! when the unit sets `WatchdogSec=`. Without `NOTIFY_SOCKET` (not started
//! by systemd) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{debug, warn};

fn send(states: &[NotifyState<'_>]) {
    match sd_notify::notify(states) {
        Ok(()) => debug!(?states, "sd_notify"),
        Err(e) => warn!(error = %e, "sd_notify failed (NOTIFY_SOCKET set but not reachable)"),
    }
}

/// Every service is bound: `READY=1` and what is served.
pub(crate) fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload begins: `RELOADING=1`, `MONOTONIC_USEC` (systemd pairs the
/// reload with this time stamp), a status line.
pub(crate) fn reloading() {
    let mut states = vec![
        NotifyState::Reloading,
        NotifyState::Status("reloading the inventory"),
    ];
    match NotifyState::monotonic_usec_now() {
        Ok(now) => states.push(now),
        Err(e) => warn!(error = %e, "no monotonic clock for MONOTONIC_USEC"),
    }
    send(&states);
}

/// Shutdown begins: `STOPPING=1`.
pub(crate) fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// A status line only.
pub(crate) fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// `WATCHDOG=1`: the service loops are alive.
pub(crate) fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC` (as sd_watchdog_enabled(3)
/// advises), `None` when the unit has no `WatchdogSec=`.
pub(crate) fn watchdog_period() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(|d| d / 2)
}

/// Whether the watchdog may be petted: every spawned service task still
/// runs and none has ended.
#[derive(Debug)]
pub(crate) struct Liveness {
    spawned: usize,
    ended: Vec<&'static str>,
}

impl Liveness {
    /// `spawned` service tasks are running.
    pub(crate) fn new(spawned: usize) -> Self {
        Self {
            spawned,
            ended: Vec::new(),
        }
    }

    /// A service task ended (while the daemon keeps running).
    pub(crate) fn ended(&mut self, name: &'static str) {
        self.ended.push(name);
    }

    /// True when `running` tasks are all that were spawned and none ended.
    pub(crate) fn alive(&self, running: usize) -> bool {
        self.ended.is_empty() && running == self.spawned
    }

    /// The services that ended.
    pub(crate) fn ended_names(&self) -> &[&'static str] {
        &self.ended
    }
}

#[cfg(test)]
mod tests {
    use super::Liveness;

    #[test]
    fn liveness_needs_every_task_and_no_ended_service() {
        let mut l = Liveness::new(5);
        assert!(l.alive(5));
        assert!(!l.alive(4), "a task vanished");
        l.ended("dns");
        assert!(!l.alive(5));
        assert_eq!(l.ended_names(), ["dns"]);
    }
}
