//! bootlab's layer-4 load balancer: TCP pass-through for the OKD API,
//! machine-config and ingress ports (no TLS termination, no session
//! persistence: bytes are copied, never interpreted).
//!
//! This crate owns the balancers' runtime: backend choice (`roundrobin`,
//! `leastconn` with round-robin ties), health checks (`tcp`, `tls`,
//! `https` without certificate verification), connect fallback, the
//! connection cap, idle timeout and half-close, drain and reload, status
//! snapshots and state-change events, the equivalent haproxy configuration
//! and the `RLIMIT_NOFILE` the caps need. Its configuration comes from the
//! inventory's compiled `[[balancers]]` ([`BalancerConfig`] converts from
//! them); bootlabd wires sockets, reload, the API and metrics.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use bootlab_lb::{BackendConfig, BalancerConfig, LoadBalancers};
//! let config = BalancerConfig::new(
//!     "api",
//!     "192.168.126.1:6443".parse().unwrap(),
//!     vec![BackendConfig::new("master0", "192.168.126.10:6443".parse().unwrap())],
//! );
//! let listener = bootlab_lb::bind(config.listen)?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let lbs = LoadBalancers::start(vec![(config, listener)], Arc::new(|e| println!("{e}")), shutdown.clone()).await;
//! println!("{}", serde_json::to_string(&lbs.snapshot()).unwrap());
//! shutdown.cancel();
//! lbs.stopped().await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`config`] — the runtime configuration (plain data, defaults).
//! - [`select`] — which backend a new connection tries first, and next (pure).
//! - [`health`] — the rise/fall state machine (pure).
//! - [`probe`] — one tcp/tls/https check; the HTTP status-line parser.
//! - [`tls`] — the check client's accept-any-certificate verifier.
//! - [`proxy`] — the relay: two pumps, half-close, idle timeout, counters.
//! - `splice` — the zero-copy pumps (splice(2) through pipes).
//! - [`runtime`] — [`LoadBalancers`]: accept loops, cap, connect fallback,
//!   check tasks, reload, snapshots.
//! - `threads` — the balancers' own threads (one current-thread runtime per
//!   core) that accept and relay connections.
//! - [`status`] — [`BalancerStatus`], [`LbEvent`], [`EventSink`].
//! - [`haproxy`] — [`haproxy_cfg`].
//! - [`rlimit`] — [`fds_needed`], [`raise_nofile`].

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod config;
pub mod haproxy;
pub mod health;
pub mod probe;
pub mod proxy;
pub mod rlimit;
pub mod runtime;
pub mod select;
mod splice;
pub mod status;
mod threads;
pub mod tls;

pub use config::{Algorithm, BackendConfig, BalancerConfig, HealthCheck, Limits};
pub use haproxy::haproxy_cfg;
pub use rlimit::{NofileLimit, fds_needed, raise_nofile};
pub use runtime::{LISTEN_BACKLOG, LoadBalancers, ReloadReport, bind};
pub use status::{BackendState, BackendStatus, BalancerStatus, EventSink, LbEvent};

/// Errors of the crate's setup calls (the data path reports through
/// [`BalancerStatus`] counters and logs instead).
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    /// Reading or setting `RLIMIT_NOFILE` failed.
    #[error("RLIMIT_NOFILE: {0}")]
    Rlimit(#[source] nix::Error),
}
