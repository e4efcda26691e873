//! The router: boot scripts, per-MAC configs, assets, the machine API and
//! metrics, built from [`Shared`]. Every handler reads the live inventory
//! once per request.
//!
//! | path | answer |
//! |---|---|
//! | `/boot.ipxe[?mac=]` | the client's iPXE script (by `mac`, else source IP) |
//! | `/grub/grub.cfg` | GRUB config by source IP |
//! | `/grub.cfg-01-<mac>`, `/pxelinux.cfg/01-<mac>` | per-MAC configs |
//! | `/assets/<path>` | files under `services.assets_dir` ([`crate::files`]) |
//! | `/` , `/static/...`, `/api/v1/summary` | the status page ([`crate::status`]) |
//! | `/api/v1/machines[/<mac>]` | the machine timeline as JSON |
//! | `/api/v1/<report>` | a live report (`balancers`, `egress`) as JSON |
//! | `/metrics` | Prometheus text |
//! | `/healthz` | 200 while the process serves HTTP |
//! | `/readyz` | 200 once every service is bound and the inventory loaded ([`Readiness`]), else 503 |

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, Method, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bootlab_boot::assets::Refusal;
use bootlab_boot::render::{self, ScriptKind, VirtualFile};
use bootlab_inventory::MacAddr;
use bootlab_state::{Resolved, Service, Shared};
use tracing::{debug, error, info, warn};

use crate::files::{self, FileBody, FileMeta, Piece, Plan, SendReport, WrittenCounter, hv};
use crate::http_metrics::{HttpMetrics, LogLimiter, RequestKind};
use crate::request_path::{self, PathError};

/// Per-connection facts every request of the connection carries (a request
/// extension the server inserts).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// Bytes written to the connection so far.
    pub written: WrittenCounter,
}

impl ConnInfo {
    /// The client's IPv4 address (IPv4-mapped IPv6 included).
    pub fn peer_v4(&self) -> Option<Ipv4Addr> {
        match self.peer.ip().to_canonical() {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        }
    }
}

/// Whether the daemon is ready: every service bound, the inventory loaded
/// (and, when on, the firewall applied). bootlabd sets it at start-up and
/// clears it when it begins to stop; `/readyz` reports it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// A flag starting at `ready`.
    pub fn new(ready: bool) -> Self {
        Self(Arc::new(AtomicBool::new(ready)))
    }

    /// Sets the flag.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// The flag.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// State behind every handler.
#[derive(Debug)]
pub struct AppState {
    /// Live inventory, timeline, registry.
    pub shared: Shared,
    /// What `/readyz` answers.
    pub ready: Readiness,
    /// This service's counters.
    pub metrics: HttpMetrics,
    /// Rate limit for logs about bad input.
    pub log_limit: LogLimiter,
    /// The status page's latest view.
    pub status_views: crate::status::ViewCache,
}

type AppStateRef = Arc<AppState>;

impl AppState {
    /// State for `shared`, registering the HTTP counters; ready from the
    /// start (a server on its own is ready once it serves).
    pub fn new(shared: Shared) -> Self {
        Self::with_readiness(shared, Readiness::new(true))
    }

    /// State for `shared` whose `/readyz` follows `ready`.
    pub fn with_readiness(shared: Shared, ready: Readiness) -> Self {
        let metrics = HttpMetrics::new(&shared.metrics);
        Self {
            shared,
            ready,
            metrics,
            log_limit: LogLimiter::new(Duration::from_secs(10)),
            status_views: crate::status::ViewCache::default(),
        }
    }

    /// Counts an error and logs it at most once per peer per interval.
    fn refuse(&self, peer: &ConnInfo, kind: &'static str, what: &str) {
        self.metrics.error(kind);
        if self.log_limit.allow((peer.peer.ip(), kind)) {
            warn!(peer = %peer.peer, kind, "{what}");
        }
    }
}

/// The router for `state`. The server inserts a [`ConnInfo`] into every
/// request before it reaches the router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/boot.ipxe", get(boot_ipxe))
        .route("/grub/grub.cfg", get(grub_by_source))
        .route("/assets/{*path}", any(asset))
        .route("/api/v1/machines", get(machines))
        .route("/api/v1/machines/{mac}", get(machine))
        .route("/api/v1/{report}", get(report))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(crate::status::routes())
        .fallback(fallback)
        .with_state(state)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

/// A response the builder refused (a header we built is invalid): a bug,
/// answered with 500 rather than a misleading 200.
fn build_failed(e: &axum::http::Error) -> Response {
    error!("building a response failed: {e}");
    text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
}

fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn ipxe(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The `mac` query parameter, percent-decoded.
fn query_mac(uri: &Uri) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == "mac").then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// Answers a virtual file (boot script, per-MAC config) through the one
/// resolution TFTP uses too, and records the fetch.
fn serve_virtual(
    state: &AppState,
    conn: &ConnInfo,
    method: &Method,
    file: VirtualFile,
    mac: Option<MacAddr>,
    path: &str,
) -> Response {
    let generation = state.shared.generation();
    match state
        .shared
        .resolve_virtual(&generation, file, mac, conn.peer.ip())
    {
        Resolved::Script { mac, node, text } => {
            // A HEAD fetches nothing: no timeline event.
            if conn.peer_v4().is_some() && method == Method::GET {
                state.shared.timeline.fetch(
                    &generation.inventory,
                    mac,
                    Service::Http,
                    path,
                    text.len() as u64,
                    true,
                );
            }
            state.metrics.bytes_sent.add(text.len() as u64);
            info!(peer = %conn.peer, %mac, node = %node, path, "script");
            ipxe(text.to_string())
        }
        Resolved::ChainByMac(script) => {
            debug!(peer = %conn.peer, "boot.ipxe from an unknown address: chaining by MAC");
            ipxe(script)
        }
        Resolved::UnknownMac(mac) if file.kind() == ScriptKind::Ipxe => {
            unknown_machine(state, conn, Some(mac), &mac.to_string())
        }
        Resolved::UnknownMac(mac) => {
            state.refuse(
                conn,
                "unknown_machine",
                &format!("{path} for an unknown MAC"),
            );
            state.shared.timeline.note(
                mac,
                Service::Http,
                "unknown",
                format!("{path}: MAC not in the inventory"),
            );
            text(StatusCode::NOT_FOUND, "unknown machine\n")
        }
        Resolved::UnknownSource(_) => {
            state.refuse(
                conn,
                "unknown_machine",
                &format!("{path} for an unknown address"),
            );
            text(StatusCode::NOT_FOUND, "unknown machine\n")
        }
    }
}

fn unknown_machine(
    state: &AppState,
    conn: &ConnInfo,
    mac: Option<MacAddr>,
    shown: &str,
) -> Response {
    state.refuse(
        conn,
        "unknown_machine",
        &format!("boot.ipxe for unknown machine {shown}"),
    );
    if let Some(mac) = mac {
        state.shared.timeline.note(
            mac,
            Service::Http,
            "unknown",
            format!(
                "boot.ipxe from {} for a MAC not in the inventory",
                conn.peer.ip()
            ),
        );
    }
    let script = render::unknown_machine_ipxe(shown);
    state.metrics.bytes_sent.add(script.len() as u64);
    ipxe(script)
}

async fn boot_ipxe(
    State(state): State<AppStateRef>,
    Extension(conn): Extension<ConnInfo>,
    method: Method,
    uri: Uri,
) -> Response {
    state.metrics.request(RequestKind::Script);
    let mac = match query_mac(&uri) {
        Some(raw) => match raw.trim().parse::<MacAddr>() {
            Ok(mac) => Some(mac),
            Err(_) => {
                state.metrics.error("bad_mac");
                return unknown_machine(&state, &conn, None, &raw);
            }
        },
        None => None,
    };
    serve_virtual(
        &state,
        &conn,
        &method,
        VirtualFile::BootIpxe,
        mac,
        "/boot.ipxe",
    )
}

async fn grub_by_source(
    State(state): State<AppStateRef>,
    Extension(conn): Extension<ConnInfo>,
    method: Method,
) -> Response {
    state.metrics.request(RequestKind::Script);
    serve_virtual(
        &state,
        &conn,
        &method,
        VirtualFile::GrubBySource,
        None,
        "/grub/grub.cfg",
    )
}

/// Per-MAC configs (`grub.cfg-01-<mac>`, `pxelinux.cfg/01-<mac>`) and 404s.
async fn fallback(
    State(state): State<AppStateRef>,
    Extension(conn): Extension<ConnInfo>,
    method: Method,
    uri: Uri,
) -> Response {
    let path = uri.path();
    let Some(file) = VirtualFile::parse(path).filter(|v| v.mac().is_some()) else {
        state.metrics.request(RequestKind::Other);
        state.metrics.error("not_found");
        debug!(peer = %conn.peer, "no route for {path}");
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    state.metrics.request(RequestKind::Script);
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET,HEAD")],
        )
            .into_response();
    }
    serve_virtual(&state, &conn, &method, file, None, path)
}

/// A live report another part of the daemon publishes (`balancers`,
/// `egress`...); 404 when none has that name.
async fn report(State(state): State<AppStateRef>, Path(name): Path<String>) -> Response {
    state.metrics.request(RequestKind::Api);
    match state.shared.reports.get(&name) {
        Some(v) => axum::Json(v).into_response(),
        None => json_error(StatusCode::NOT_FOUND, "no such report"),
    }
}

async fn machines(State(state): State<AppStateRef>) -> Response {
    state.metrics.request(RequestKind::Api);
    axum::Json(state.shared.machines()).into_response()
}

async fn machine(
    State(state): State<AppStateRef>,
    Extension(conn): Extension<ConnInfo>,
    Path(mac): Path<String>,
) -> Response {
    state.metrics.request(RequestKind::Api);
    let Ok(mac) = mac.parse::<MacAddr>() else {
        state.refuse(&conn, "bad_mac", "machine API: not a MAC");
        return json_error(StatusCode::BAD_REQUEST, "not a MAC address");
    };
    match state.shared.machine(mac) {
        Some(m) => axum::Json(m).into_response(),
        None => json_error(StatusCode::NOT_FOUND, "machine never seen"),
    }
}

async fn metrics(State(state): State<AppStateRef>) -> Response {
    state.metrics.request(RequestKind::Metrics);
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.shared.metrics.render(),
    )
        .into_response()
}

/// The process is alive and its HTTP loop answers.
async fn healthz(State(state): State<AppStateRef>) -> Response {
    state.metrics.request(RequestKind::Health);
    text(StatusCode::OK, "ok\n")
}

/// Every service bound and the inventory loaded: 200 with the lab it
/// serves; 503 while starting or stopping.
async fn readyz(State(state): State<AppStateRef>) -> Response {
    state.metrics.request(RequestKind::Health);
    if !state.ready.is_ready() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n");
    }
    let inv = state.shared.inventory();
    text(
        StatusCode::OK,
        format!(
            "ready: lab {} ({}), {} nodes, zone serial {}\n",
            inv.lab().name,
            inv.zone(),
            inv.nodes().len(),
            inv.zones().forward.serial
        ),
    )
}

/// Records an asset fetch in the timeline and the byte counter when its body
/// is done.
struct AssetReport {
    state: AppStateRef,
    peer: SocketAddr,
    path: String,
    record_fetch: bool,
}

impl SendReport for AssetReport {
    fn report(self: Box<Self>, bytes: u64, complete: bool) {
        self.state.metrics.bytes_sent.add(bytes);
        if !complete {
            self.state.metrics.error("aborted_transfer");
            debug!(peer = %self.peer, path = %self.path, bytes, "transfer abandoned");
        }
        if !self.record_fetch {
            return;
        }
        if let IpAddr::V4(ip) = self.peer.ip().to_canonical() {
            let inv = self.state.shared.inventory();
            let mac = self.state.shared.record_fetch(
                &inv,
                ip,
                None,
                Service::Http,
                &self.path,
                bytes,
                false,
            );
            debug!(peer = %self.peer, path = %self.path, bytes, complete, mac = ?mac, "asset sent");
        }
    }
}

/// What opening an asset found.
struct Opened {
    file: std::fs::File,
    meta: FileMeta,
    decoded: String,
}

async fn asset(
    State(state): State<AppStateRef>,
    Extension(conn): Extension<ConnInfo>,
    method: Method,
    headers: HeaderMap,
    request: Request<Body>,
) -> Response {
    state.metrics.request(RequestKind::Asset);
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET,HEAD")],
        )
            .into_response();
    }
    let raw = request
        .uri()
        .path()
        .strip_prefix("/assets/")
        .unwrap_or_default()
        .to_owned();
    let inv = state.shared.inventory();
    let root = inv.services().assets_dir.clone();
    let grub_root = format!(
        "(http,{}:{})",
        inv.services().ip,
        inv.services().listen.http.port()
    );
    drop(inv);
    // Resolved and opened on this task, as TFTP does: a confined path
    // lookup, an open and an fstat, all in the dentry and inode caches for
    // boot assets. On the blocking pool, every request was a thread
    // hand-off and a 300-client boot storm started hundreds of threads.
    let opened = open_asset(&root, &raw);
    if let Ok(o) = &opened
        && o.decoded.trim_start_matches('/') == bootlab_boot::decision::GRUB_HTTP_LOADER
    {
        // The GRUB image is read whole and stamped: rare, and a large
        // read, so on the blocking pool.
        let decoded = o.decoded.clone();
        let stamped =
            tokio::task::spawn_blocking(move || stamped_grub(decoded, &root, &raw, &grub_root))
                .await
                .ok()
                .flatten();
        if let Some((decoded, bytes)) = stamped {
            return respond_with_stamped(&state, &conn, &method, decoded, bytes);
        }
    }
    let opened = match opened {
        Ok(o) => o,
        Err(e) => {
            let what = format!("asset {}: {e}", request.uri().path());
            if e.is_hostile() {
                state.refuse(&conn, e.kind(), &what);
            } else {
                state.metrics.error(e.kind());
                debug!(peer = %conn.peer, "{what}");
            }
            let status = e.status();
            return text(
                status,
                format!("{}\n", status.canonical_reason().unwrap_or("refused")),
            );
        }
    };
    respond_with_file(&state, &conn, &method, &headers, opened)
}

/// Resolves an asset path under `root` (confined) and opens it.
fn open_asset(root: &std::path::Path, raw: &str) -> Result<Opened, PathError> {
    let (decoded, path) = request_path::resolve_asset(root, raw)?;
    let file = std::fs::File::open(&path).map_err(|_| PathError::Refused(Refusal::NotFound))?;
    let meta = file
        .metadata()
        .map_err(|_| PathError::Refused(Refusal::NotFound))?;
    if !meta.is_file() {
        return Err(PathError::Refused(Refusal::NotAFile));
    }
    Ok(Opened {
        file,
        meta: FileMeta::from_metadata(&meta),
        decoded,
    })
}

/// The GRUB image for UEFI HTTP boot (`decoded`, resolved from `raw` under
/// `root`) with this lab's HTTP root stamped in ([`bootlab_boot::stamp`]):
/// `(decoded path, bytes)`, or `None` when it cannot be read or has no
/// placeholder (served as is).
fn stamped_grub(
    decoded: String,
    root: &std::path::Path,
    raw: &str,
    grub_root: &str,
) -> Option<(String, Vec<u8>)> {
    let (_, path) = request_path::resolve_asset(root, raw).ok()?;
    let image = std::fs::read(&path).ok()?;
    match bootlab_boot::stamp::grub_root(&image, grub_root) {
        Some(bytes) => Some((decoded, bytes)),
        None => {
            warn!(
                "{decoded} has no bootlab placeholder: served as is (rebuild it with boot-assets/gather.sh)"
            );
            None
        }
    }
}

/// A stamped image: whole (GET or HEAD; a Range is answered with the whole
/// body, as RFC 9110 allows), recorded in the timeline when sent.
fn respond_with_stamped(
    state: &AppStateRef,
    conn: &ConnInfo,
    method: &Method,
    decoded: String,
    bytes: Vec<u8>,
) -> Response {
    let len = bytes.len() as u64;
    let builder = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, files::content_type(&decoded))
        .header(header::CONTENT_LENGTH, len);
    if *method == Method::HEAD {
        return builder
            .body(Body::empty())
            .unwrap_or_else(|e| build_failed(&e));
    }
    let report = Box::new(AssetReport {
        state: Arc::clone(state),
        peer: conn.peer,
        path: format!("/assets/{decoded}"),
        record_fetch: true,
    });
    report.report(len, true);
    builder
        .body(Body::from(bytes))
        .unwrap_or_else(|e| build_failed(&e))
}

fn respond_with_file(
    state: &AppStateRef,
    conn: &ConnInfo,
    method: &Method,
    headers: &HeaderMap,
    opened: Opened,
) -> Response {
    let Opened {
        file,
        meta,
        decoded,
    } = opened;
    let plan = files::plan(method, headers, &meta);
    let status = files::status_of(&plan);
    let ctype = files::content_type(&decoded);
    let mut builder = Response::builder()
        .status(status)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, hv(&meta.etag));
    if let Some(lm) = meta.last_modified() {
        builder = builder.header(header::LAST_MODIFIED, hv(&lm));
    }
    let pieces = match &plan {
        Plan::NotModified => {
            return builder
                .body(Body::empty())
                .unwrap_or_else(|e| build_failed(&e));
        }
        Plan::PreconditionFailed => {
            state.refuse(conn, "precondition_failed", "asset precondition failed");
            return builder
                .header(header::CONTENT_LENGTH, "0")
                .body(Body::empty())
                .unwrap_or_else(|e| build_failed(&e));
        }
        Plan::NotSatisfiable(e) => {
            state.refuse(conn, "bad_range", &format!("asset /assets/{decoded}: {e}"));
            return builder
                .header(header::CONTENT_RANGE, hv(&format!("bytes */{}", meta.len)))
                .header(header::CONTENT_LENGTH, "0")
                .body(Body::empty())
                .unwrap_or_else(|e| build_failed(&e));
        }
        Plan::Full => {
            builder = builder.header(header::CONTENT_TYPE, ctype);
            vec![Piece::File {
                offset: 0,
                len: meta.len,
            }]
        }
        Plan::Single(r) => {
            builder = builder.header(header::CONTENT_TYPE, ctype).header(
                header::CONTENT_RANGE,
                hv(&format!("bytes {}-{}/{}", r.first, r.last, meta.len)),
            );
            vec![Piece::File {
                offset: r.first,
                len: r.len(),
            }]
        }
        Plan::Multi(ranges) => {
            let boundary = files::new_boundary();
            builder = builder.header(
                header::CONTENT_TYPE,
                hv(&format!("multipart/byteranges; boundary={boundary}")),
            );
            files::multipart_pieces(ranges, meta.len, ctype, &boundary).0
        }
    };
    let length: u64 = pieces
        .iter()
        .map(|p| match p {
            Piece::Bytes(b) => b.len() as u64,
            Piece::File { len, .. } => *len,
        })
        .sum();
    builder = builder.header(header::CONTENT_LENGTH, length);
    if *method == Method::HEAD {
        return builder
            .body(Body::empty())
            .unwrap_or_else(|e| build_failed(&e));
    }
    let report = AssetReport {
        state: Arc::clone(state),
        peer: conn.peer,
        path: format!("/assets/{decoded}"),
        record_fetch: true,
    };
    let body = FileBody::new(
        file,
        pieces,
        Arc::clone(&conn.written),
        Some(Box::new(report)),
    );
    builder
        .body(Body::new(body))
        .unwrap_or_else(|e| build_failed(&e))
}
