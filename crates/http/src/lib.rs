//! bootlab's HTTP service: per-node boot scripts, boot assets, the machine
//! timeline API, Prometheus metrics and the status page, on hyper's
//! HTTP/1.1 server with an axum router.
//!
//! # Layout
//! - [`server`]: accept loop, limits (header deadline, idle timeout,
//!   connection cap), Title-Case headers, graceful drain.
//! - [`routes`]: the router built from [`Shared`]: scripts, per-MAC configs,
//!   assets, API, metrics, `/healthz` and `/readyz` ([`Readiness`]).
//! - [`status`]: the status page at `/` (server-rendered table, live
//!   updates from `/api/v1/summary`, strict CSP) and the stall rule.
//! - [`files`]: conditional requests, ranges and the streaming file body.
//! - [`range`]: the `Range` header parser (pure).
//! - [`request_path`]: percent-decoding and confinement of asset paths.
//! - [`conn_io`]: the socket wrapper (byte count, idle timeout).
//! - [`http_metrics`]: counters and the log rate limiter.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod conn_io;
pub mod files;
pub mod http_metrics;
pub mod range;
pub mod request_path;
pub mod routes;
pub mod server;
pub mod status;

use bootlab_state::Shared;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use routes::Readiness;
pub use server::{Limits, serve_with_limits, serve_with_readiness};

/// Serves HTTP on `listener` until `shutdown` is cancelled, then lets
/// in-flight responses finish (bounded by [`Limits::drain_timeout`]).
pub async fn serve(
    listener: TcpListener,
    shared: Shared,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with_limits(listener, shared, shutdown, Limits::default()).await
}
