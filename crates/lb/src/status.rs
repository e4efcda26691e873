//! What the balancers show: [`BalancerStatus`] snapshots (for
//! `/api/v1/balancers`, `/metrics`, `bootlab status`) and [`LbEvent`]s (for
//! the log and the node timeline).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::config::{Algorithm, HealthCheck};

/// A backend's state as shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    /// Healthy (or provisionally up before its first check): takes new
    /// connections.
    Up,
    /// Failed its checks: takes no new connections.
    Down,
    /// Drained by the inventory: takes no new connections, not checked.
    Drained,
}

impl BackendState {
    /// `up`, `down` or `drained`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Drained => "drained",
        }
    }
}

impl fmt::Display for BackendState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One balancer's state and counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BalancerStatus {
    /// The balancer's name.
    pub name: String,
    /// Where it listens.
    pub listen: SocketAddr,
    /// How it picks backends.
    pub algorithm: Algorithm,
    /// Its health check.
    pub check: HealthCheck,
    /// Client connections open now.
    pub active_connections: u64,
    /// Client connections accepted since start (refused ones included).
    pub total_connections: u64,
    /// The connection cap.
    pub max_connections: usize,
    /// Clients closed at once because the cap was reached.
    pub refused_over_cap: u64,
    /// Clients closed at once because no backend was up or every attempt
    /// failed.
    pub refused_no_backend: u64,
    /// Connections closed by the idle timeout.
    pub idle_timeouts: u64,
    /// The backends, in configuration order.
    pub backends: Vec<BackendStatus>,
}

/// One backend's state and counters. `bytes_in` flowed from clients to the
/// backend, `bytes_out` from the backend to clients (haproxy's bin/bout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BackendStatus {
    /// The node's name.
    pub name: String,
    /// Where connections go.
    pub addr: SocketAddr,
    /// up, down or drained.
    pub state: BackendState,
    /// Consecutive passed checks up to now.
    pub checks_passed_streak: u32,
    /// Consecutive failed checks up to now.
    pub checks_failed_streak: u32,
    /// Checks passed since the backend appeared.
    pub checks_passed: u64,
    /// Checks failed since the backend appeared.
    pub checks_failed: u64,
    /// The most recent failed check's error (kept after recovery).
    pub last_check_error: Option<String>,
    /// Connections open to it now.
    pub active_connections: u64,
    /// Connections made to it since it appeared.
    pub total_connections: u64,
    /// Bytes from clients to the backend.
    pub bytes_in: u64,
    /// Bytes from the backend to clients.
    pub bytes_out: u64,
    /// Connects to it that failed or timed out (each moved the client on to
    /// the next backend).
    pub connect_failures: u64,
}

/// A backend's state changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LbEvent {
    /// The balancer's name.
    pub balancer: String,
    /// The backend's (node's) name.
    pub backend: String,
    /// The backend's address.
    pub addr: SocketAddr,
    /// The new state.
    pub state: BackendState,
    /// Why, e.g. "3 consecutive checks failed, last: connect: Connection refused".
    pub reason: String,
}

impl fmt::Display for LbEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "balancer {} backend {} ({}) is {}: {}",
            self.balancer, self.backend, self.addr, self.state, self.reason
        )
    }
}

/// Receives every backend state change (called from the balancers' tasks:
/// keep it quick and non-blocking).
pub type EventSink = Arc<dyn Fn(LbEvent) + Send + Sync>;
