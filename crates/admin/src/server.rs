//! The admin API server: HTTPS (HTTP/1.1 on hyper over tokio-rustls) with
//! mutual TLS, on an already-bound listener, until the shutdown token.
//!
//! A client without a certificate, with an expired one or with one from
//! another CA fails the TLS handshake: no request of it is ever read. The
//! handshake, each request head and each stretch of an upload's body are
//! bounded in time; at most [`Limits::max_connections`] connections are
//! served at once (more are closed at once, counted). Refusals are counted
//! by reason ([`AdminCounters`]) and logged once per peer per minute.
//!
//! The routes are in [`crate::wire`]. What bootlabd does with an inventory
//! (validate as SIGHUP does, persist, reload) is the [`Backend`]'s; this
//! module does the uploads itself ([`crate::store`]) and lists the assets
//! ([`crate::manifest`]).

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bootlab_netio::limiter::LogGate;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::manifest::Manifest;
use crate::store::{AssetStore, StoreError};
use crate::wire::{
    self, ApiError, AssetStored, HEADER_SHA256, InventoryApplied, MAX_INVENTORY_BYTES, PATH_ASSETS,
    PATH_INVENTORY, PATH_STATE, State,
};

/// A refused request: its status and error document.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// The document.
    pub error: ApiError,
}

/// What the daemon provides: its state and what it does with an inventory.
pub trait Backend: Send + Sync + 'static {
    /// The state, its `assets` left empty (the server lists them).
    fn state(&self) -> State;
    /// Validates `text` as SIGHUP would, persists it and reloads; or
    /// refuses it (422 with diagnostics, 409 for fields that need a
    /// restart) and keeps the old one serving.
    /// `name` is what the sender calls the file (diagnostics name it).
    fn apply_inventory(
        &self,
        text: Vec<u8>,
        name: Option<String>,
    ) -> impl Future<Output = Result<InventoryApplied, Refusal>> + Send;
}

/// Bounds on what one client may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// TLS handshake deadline.
    pub handshake: Duration,
    /// Deadline for a request head.
    pub header: Duration,
    /// Longest pause inside an upload's body.
    pub body_idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 16,
            handshake: Duration::from_secs(10),
            header: Duration::from_secs(10),
            body_idle: Duration::from_secs(60),
        }
    }
}

/// Why a TLS handshake failed, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeRefusal {
    /// The client sent no certificate.
    NoCertificate,
    /// Its certificate has expired (or is not valid yet).
    Expired,
    /// Its certificate does not chain to the lab CA.
    UnknownCa,
    /// Anything else (bad certificate, protocol error, not TLS).
    Other,
    /// No handshake within [`Limits::handshake`].
    Timeout,
}

impl HandshakeRefusal {
    /// Every reason.
    pub const ALL: [Self; 5] = [
        Self::NoCertificate,
        Self::Expired,
        Self::UnknownCa,
        Self::Other,
        Self::Timeout,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoCertificate => "no_certificate",
            Self::Expired => "expired",
            Self::UnknownCa => "unknown_ca",
            Self::Other => "other",
            Self::Timeout => "timeout",
        }
    }

    fn of(e: &std::io::Error) -> Self {
        use rustls::{CertificateError as C, Error as E};
        match e.get_ref().and_then(|i| i.downcast_ref::<E>()) {
            Some(E::NoCertificatesPresented) => Self::NoCertificate,
            Some(E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }))
            | Some(E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. })) => {
                Self::Expired
            }
            Some(E::InvalidCertificate(C::UnknownIssuer)) => Self::UnknownCa,
            _ => Self::Other,
        }
    }
}

/// The server's counters (read by bootlabd's metrics).
#[derive(Debug, Default)]
pub struct AdminCounters {
    handshakes_refused: [AtomicU64; 5],
    /// Connections closed at once because the cap was reached.
    pub over_cap: AtomicU64,
    /// Requests answered.
    pub requests: AtomicU64,
    /// Assets stored.
    pub uploads: AtomicU64,
    /// Bytes of assets stored.
    pub upload_bytes: AtomicU64,
    /// Uploads refused or failed (the old file kept serving).
    pub uploads_refused: AtomicU64,
    /// Inventories accepted and reloaded.
    pub inventories_applied: AtomicU64,
    /// Inventories refused.
    pub inventories_refused: AtomicU64,
}

impl AdminCounters {
    /// TLS handshakes refused for `reason`.
    pub fn handshakes_refused(&self, reason: HandshakeRefusal) -> u64 {
        self.handshakes_refused[reason as usize].load(Relaxed)
    }
}

/// Everything the server needs.
pub struct AdminServer<B: Backend> {
    /// TLS configuration ([`crate::pki::server_config`]).
    pub tls: Arc<rustls::ServerConfig>,
    /// The daemon.
    pub backend: Arc<B>,
    /// `services.assets_dir`.
    pub assets_root: PathBuf,
    /// Where the manifest's hash cache lives.
    pub manifest_cache: PathBuf,
    /// Counters.
    pub counters: Arc<AdminCounters>,
    /// Bounds.
    pub limits: Limits,
}

struct Inner<B: Backend> {
    backend: Arc<B>,
    store: AssetStore,
    manifest: Arc<Mutex<Manifest>>,
    counters: Arc<AdminCounters>,
    limits: Limits,
    log: LogGate<IpAddr>,
}

type Resp = Response<Full<Bytes>>;

fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Resp {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn error(status: StatusCode, msg: impl Into<String>) -> Resp {
    json(
        status,
        &ApiError {
            error: msg.into(),
            diagnostics: None,
        },
    )
}

fn store_status(e: &StoreError) -> StatusCode {
    match e {
        StoreError::BadPath { .. } | StoreError::Incomplete { .. } => StatusCode::BAD_REQUEST,
        StoreError::Escape(_) => StatusCode::FORBIDDEN,
        StoreError::TooLong { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        StoreError::HashMismatch { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        StoreError::NoSpace { .. } => StatusCode::INSUFFICIENT_STORAGE,
        StoreError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl<B: Backend> AdminServer<B> {
    /// Serves on `listener` until `shutdown`.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let store = AssetStore::new(&self.assets_root)?;
        match store.clean_stale_temps() {
            Ok(0) => {}
            Ok(n) => info!(removed = n, "admin API: removed unfinished uploads"),
            Err(e) => warn!(error = %e, "admin API: cannot clean unfinished uploads"),
        }
        let inner = Arc::new(Inner {
            backend: self.backend,
            store,
            manifest: Arc::new(Mutex::new(Manifest::load(&self.manifest_cache))),
            counters: self.counters,
            limits: self.limits,
            log: LogGate::new(Duration::from_secs(60)),
        });
        let acceptor = TlsAcceptor::from(self.tls);
        let slots = Arc::new(tokio::sync::Semaphore::new(inner.limits.max_connections));
        let tracker = tokio_util::task::TaskTracker::new();
        info!(
            "listening for admin on {} (https, client certificates required)",
            listener.local_addr()?
        );
        loop {
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        warn!(error = %e, "admin API: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                inner.counters.over_cap.fetch_add(1, Relaxed);
                if inner.log.allow(peer.ip()) {
                    warn!(%peer, "admin API: connection cap reached; closed");
                }
                continue;
            };
            let (inner, acceptor, shutdown) = (inner.clone(), acceptor.clone(), shutdown.clone());
            tracker.spawn(async move {
                let _permit = permit;
                connection(inner, acceptor, stream, peer, shutdown).await;
            });
        }
        tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
        Ok(())
    }
}

async fn connection<B: Backend>(
    inner: Arc<Inner<B>>,
    acceptor: TlsAcceptor,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let refused = |reason: HandshakeRefusal, what: &str| {
        inner.counters.handshakes_refused[reason as usize].fetch_add(1, Relaxed);
        if inner.log.allow(peer.ip()) {
            warn!(%peer, reason = reason.as_str(), "admin API: TLS handshake refused: {what}");
        }
    };
    let tls = match tokio::time::timeout(inner.limits.handshake, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return refused(HandshakeRefusal::of(&e), &e.to_string()),
        Err(_) => return refused(HandshakeRefusal::Timeout, "no handshake in time"),
    };
    let svc_inner = inner.clone();
    let svc = hyper::service::service_fn(move |req| {
        let inner = svc_inner.clone();
        async move { Ok::<_, Infallible>(route(&inner, req, peer).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(inner.limits.header)
        .serve_connection(TokioIo::new(tls), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => if let Err(e) = r { debug!(%peer, error = %e, "admin API: connection ended") },
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

async fn route<B: Backend>(
    inner: &Arc<Inner<B>>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Resp {
    inner.counters.requests.fetch_add(1, Relaxed);
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let resp = match (&method, path.as_str()) {
        (&Method::GET, PATH_STATE) => state(inner).await,
        (&Method::PUT, PATH_INVENTORY) => inventory(inner, req).await,
        (&Method::PUT, p) if p.starts_with(PATH_ASSETS) => {
            let rel = p[PATH_ASSETS.len()..].to_owned();
            upload(inner, req, &rel, peer).await
        }
        (_, PATH_STATE | PATH_INVENTORY) => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => error(StatusCode::NOT_FOUND, format!("no route for {path}")),
    };
    debug!(%peer, %method, %path, status = resp.status().as_u16(), "admin API request");
    resp
}

async fn state<B: Backend>(inner: &Arc<Inner<B>>) -> Resp {
    let mut s = inner.backend.state();
    let manifest = inner.manifest.clone();
    let root = inner.store.root().to_path_buf();
    let scanned = tokio::task::spawn_blocking(move || {
        let mut m = manifest.lock().unwrap_or_else(|e| e.into_inner());
        let scan = m.scan(&root, false, &mut |_, _| {});
        if let Err(e) = m.save() {
            warn!(error = %e, "admin API: cannot save the manifest cache");
        }
        scan
    })
    .await;
    match scanned {
        Ok(Ok(scan)) => {
            s.assets = scan.entries;
            json(StatusCode::OK, &s)
        }
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("listing the assets: {e}"),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn inventory<B: Backend>(inner: &Arc<Inner<B>>, req: Request<Incoming>) -> Resp {
    let too_big = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("an inventory is at most {MAX_INVENTORY_BYTES} bytes"),
        )
    };
    if content_length(&req).is_some_and(|n| n > MAX_INVENTORY_BYTES as u64) {
        inner.counters.inventories_refused.fetch_add(1, Relaxed);
        return too_big();
    }
    let name = req
        .headers()
        .get(wire::HEADER_SOURCE_NAME)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 512 && !v.contains(['\n', '\r', '\0']))
        .map(str::to_owned);
    let body = match Limited::new(req.into_body(), MAX_INVENTORY_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            inner.counters.inventories_refused.fetch_add(1, Relaxed);
            return too_big();
        }
    };
    match inner.backend.apply_inventory(body.to_vec(), name).await {
        Ok(applied) => {
            inner.counters.inventories_applied.fetch_add(1, Relaxed);
            json(StatusCode::OK, &applied)
        }
        Err(r) => {
            inner.counters.inventories_refused.fetch_add(1, Relaxed);
            json(
                StatusCode::from_u16(r.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY),
                &r.error,
            )
        }
    }
}

fn content_length<T>(req: &Request<T>) -> Option<u64> {
    req.headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

async fn upload<B: Backend>(
    inner: &Arc<Inner<B>>,
    req: Request<Incoming>,
    encoded: &str,
    peer: SocketAddr,
) -> Resp {
    let refused = |status: StatusCode, msg: String| {
        inner.counters.uploads_refused.fetch_add(1, Relaxed);
        if inner.log.allow(peer.ip()) {
            warn!(%peer, status = status.as_u16(), "admin API: upload refused: {msg}");
        }
        error(status, msg)
    };
    let rel = match percent_encoding::percent_decode_str(encoded).decode_utf8() {
        Ok(r) => r.into_owned(),
        Err(_) => {
            return refused(
                StatusCode::BAD_REQUEST,
                "the asset path is not UTF-8".into(),
            );
        }
    };
    let sha = req
        .headers()
        .get(HEADER_SHA256)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !wire::is_sha256_hex(&sha) {
        return refused(
            StatusCode::BAD_REQUEST,
            format!("{HEADER_SHA256} must be the content's SHA-256 in hex"),
        );
    }
    let size = content_length(&req);
    // Path and free space are checked before any byte of the body is
    // read (a client sending `Expect: 100-continue` sends none).
    let store = inner.store.clone();
    let (rel2, sha2) = (rel.clone(), sha.clone());
    let begun = tokio::task::spawn_blocking(move || store.begin(&rel2, size, &sha2)).await;
    let mut up = match begun {
        Ok(Ok(u)) => u,
        Ok(Err(e)) => return refused(store_status(&e), e.to_string()),
        Err(e) => return refused(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let writer = tokio::task::spawn_blocking(move || {
        while let Some(chunk) = rx.blocking_recv() {
            up.write(&chunk)?;
        }
        Ok::<_, StoreError>(up)
    });
    let mut body = req.into_body();
    let mut cut = None;
    loop {
        match tokio::time::timeout(inner.limits.body_idle, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if tx.send(data).await.is_err() {
                        break; // the writer failed; its error says why
                    }
                }
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                cut = Some(format!("the upload broke off: {e}"));
                break;
            }
            Err(_) => {
                cut = Some("the upload stalled".to_owned());
                break;
            }
        }
    }
    drop(tx);
    let up = match writer.await {
        Ok(Ok(u)) => u,
        Ok(Err(e)) => return refused(store_status(&e), e.to_string()),
        Err(e) => return refused(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    if let Some(why) = cut {
        let got = up.written();
        drop(up); // removes the temporary file
        return refused(
            StatusCode::BAD_REQUEST,
            format!("{why} after {got} bytes; the old file keeps serving"),
        );
    }
    let committed = tokio::task::spawn_blocking(move || up.commit()).await;
    let stored = match committed {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return refused(store_status(&e), e.to_string()),
        Err(e) => return refused(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    {
        let mut m = inner.manifest.lock().unwrap_or_else(|e| e.into_inner());
        m.record(&stored.rel, &stored.metadata, &stored.sha256);
    }
    inner.counters.uploads.fetch_add(1, Relaxed);
    inner.counters.upload_bytes.fetch_add(stored.size, Relaxed);
    info!(%peer, path = %stored.rel, bytes = stored.size, sha256 = %stored.sha256, "admin API: asset stored");
    json(
        StatusCode::CREATED,
        &AssetStored {
            path: stored.rel,
            size: stored.size,
            sha256: stored.sha256,
        },
    )
}
