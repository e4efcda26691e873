//! The accept loop: connection cap, hyper's HTTP/1.1 connection with
//! Title-Case header names (GRUB needs `Content-Length` spelled so), the
//! header-read deadline, the idle timeout, and a graceful drain on shutdown.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use bootlab_state::Shared;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::Service;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::conn_io::ConnIo;
use crate::routes::{self, AppState, ConnInfo, Readiness};

/// Limits that keep slow or idle clients from holding the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request's header must arrive within this (also bounds how long an
    /// idle keep-alive connection waits for its next request).
    pub header_read_timeout: Duration,
    /// A connection on which nothing moves for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight responses.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\noverloaded\r\n";

/// Serves HTTP on `listener` until `shutdown`, with `limits`; `/readyz`
/// answers ready.
pub async fn serve_with_limits(
    listener: TcpListener,
    shared: Shared,
    shutdown: CancellationToken,
    limits: Limits,
) -> io::Result<()> {
    serve_with_readiness(listener, shared, shutdown, limits, Readiness::new(true)).await
}

/// Serves HTTP on `listener` until `shutdown`, with `limits`; `/readyz`
/// follows `ready` (bootlabd sets it once every service is bound).
pub async fn serve_with_readiness(
    listener: TcpListener,
    shared: Shared,
    shutdown: CancellationToken,
    limits: Limits,
    ready: Readiness,
) -> io::Result<()> {
    let addr = listener.local_addr()?;
    let state = Arc::new(AppState::with_readiness(shared, ready));
    let router = routes::router(Arc::clone(&state));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    {
        let permits = Arc::clone(&permits);
        let max = limits.max_connections;
        state.shared.metrics.gauge(
            "bootlab_http_open_connections",
            "Open HTTP connections.",
            &[],
            move || max.saturating_sub(permits.available_permits()) as f64,
        );
    }
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .title_case_headers(true)
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let http1 = Arc::new(http1);

    info!("listening for http on {addr}");
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        error!("accept on {addr}: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    state.metrics.error("connection_cap");
                    if state.log_limit.allow((peer.ip(), "connection_cap")) {
                        warn!(%peer, "connection cap ({}) reached: refusing", limits.max_connections);
                    }
                    connections.spawn(refuse_overloaded(stream));
                    continue;
                };
                let task = serve_connection(
                    stream,
                    peer,
                    router.clone(),
                    Arc::clone(&http1),
                    Arc::clone(&state),
                    limits,
                    shutdown.clone(),
                );
                connections.spawn(async move {
                    task.await;
                    drop(permit);
                }.instrument(info_span!("http", %peer)));
            }
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            "http: {} connection(s) still busy after {:?}: closing them",
            connections.len(),
            limits.drain_timeout
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
    info!("http on {addr} stopped");
    Ok(())
}

async fn refuse_overloaded(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(OVERLOADED).await?;
        stream.shutdown().await
    })
    .await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    http1: Arc<hyper::server::conn::http1::Builder>,
    state: Arc<AppState>,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let written = Arc::new(AtomicU64::new(0));
    let info = ConnInfo {
        peer,
        written: Arc::clone(&written),
    };
    let io = TokioIo::new(ConnIo::new(stream, limits.idle_timeout, written));
    let latency = state.metrics.response_latency.clone();
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(info.clone());
        let mut router = router.clone();
        let latency = latency.clone();
        async move {
            // Time to the response head (a file body streams afterwards).
            let started = std::time::Instant::now();
            let response = router.call(request.map(Body::new)).await;
            latency.observe_duration(started.elapsed());
            Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
        }
    });
    let connection = http1.serve_connection(io, service);
    tokio::pin!(connection);
    let result = tokio::select! {
        r = connection.as_mut() => r,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        let idle = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<io::Error>())
            .is_some_and(|io| io.kind() == io::ErrorKind::TimedOut);
        let kind = if e.is_timeout() {
            Some("header_timeout")
        } else if idle {
            Some("idle_timeout")
        } else if e.is_parse() || e.is_parse_too_large() {
            Some("bad_request")
        } else {
            None
        };
        match kind {
            Some(kind) => {
                state.metrics.error(kind);
                if state.log_limit.allow((peer.ip(), kind)) {
                    warn!(%peer, "closing connection: {e}");
                }
            }
            None => debug!(%peer, "connection ended: {e}"),
        }
    }
}
