//! The listening loop: receive a request, answer bad ones with an ERROR (or
//! drop them), refuse writes, enforce the session cap and the one-session-
//! per-client rule, and run each read in its own task on its own socket.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bootlab_netio::{LogGate, Rate, SharedLimiter};

use bootlab_state::{Counter, Metrics, Service, Shared};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::net;
use crate::options::{self, Limits};
use crate::packet::{self, ErrorCode, Request, RequestKind};
use crate::source::{self, Denial};
use crate::transfer::{self, Retransmit, Tally, TransferError};

/// Server settings. [`Default`] is what bootlabd runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TftpConfig {
    /// Concurrent transfers at most; more get "server busy".
    pub max_sessions: usize,
    /// Largest `windowsize` granted.
    pub max_windowsize: u16,
    /// Largest window in bytes (see [`Limits::max_window_bytes`]).
    pub max_window_bytes: usize,
    /// Retransmission and give-up policy.
    pub retransmit: Retransmit,
    /// At most one warning per client address per this interval.
    pub log_interval: Duration,
}

impl Default for TftpConfig {
    fn default() -> Self {
        Self {
            max_sessions: 512,
            max_windowsize: 64,
            max_window_bytes: Limits::default().max_window_bytes,
            retransmit: Retransmit::default(),
            log_interval: Duration::from_secs(10),
        }
    }
}

/// Counter names (Prometheus).
pub mod metric {
    /// Requests received, by `op` (`read`, `write`).
    pub const REQUESTS: &str = "bootlab_tftp_requests_total";
    /// Transfers finished (the last ACK arrived).
    pub const TRANSFERS: &str = "bootlab_tftp_transfers_total";
    /// Payload bytes delivered in finished transfers.
    pub const BYTES: &str = "bootlab_tftp_sent_bytes_total";
    /// Errors and refusals, by `kind`.
    pub const ERRORS: &str = "bootlab_tftp_errors_total";
    /// Packets resent after a timeout.
    pub const RETRANSMITS: &str = "bootlab_tftp_retransmits_total";
    /// ACKs ignored as duplicates (Sorcerer's Apprentice guard).
    pub const DUPLICATE_ACKS: &str = "bootlab_tftp_duplicate_acks_total";
    /// Transfers in progress (gauge).
    pub const ACTIVE: &str = "bootlab_tftp_active_sessions";
}

struct Counters {
    metrics: Metrics,
    reads: Counter,
    writes: Counter,
    transfers: Counter,
    bytes: Counter,
    retransmits: Counter,
    duplicate_acks: Counter,
}

impl Counters {
    fn new(metrics: &Metrics, active: Arc<AtomicUsize>) -> Self {
        let req = |op| metrics.counter(metric::REQUESTS, "TFTP requests received.", &[("op", op)]);
        metrics.gauge(
            metric::ACTIVE,
            "TFTP transfers in progress.",
            &[],
            move || active.load(Ordering::Relaxed) as f64,
        );
        Self {
            metrics: metrics.clone(),
            reads: req("read"),
            writes: req("write"),
            transfers: metrics.counter(metric::TRANSFERS, "TFTP transfers completed.", &[]),
            bytes: metrics.counter(
                metric::BYTES,
                "TFTP payload bytes in completed transfers.",
                &[],
            ),
            retransmits: metrics.counter(
                metric::RETRANSMITS,
                "TFTP packets resent after a timeout.",
                &[],
            ),
            duplicate_acks: metrics.counter(
                metric::DUPLICATE_ACKS,
                "TFTP duplicate ACKs ignored (never answered with data).",
                &[],
            ),
        }
    }

    fn error(&self, kind: &str) {
        self.metrics
            .counter(
                metric::ERRORS,
                "TFTP errors and refusals by kind.",
                &[("kind", kind)],
            )
            .inc();
    }
}

type SessionKey = (SocketAddr, IpAddr, String);

/// ERROR replies to one address without a transfer (refusals, malformed
/// requests), in a burst ...
const REPLY_BURST: u32 = 64;
/// ... and per second after it. (The budget is a token bucket per client
/// address, so forged requests cannot turn the server into a reflector.)
const REPLY_PER_SEC: f64 = 16.0;
/// Client addresses the reply budget and the log gate track at most (see
/// `bootlab_netio::limiter` for what happens when full).
const MAX_PEERS: usize = 4096;

/// A running session's claim on the cap; released on drop (also on panic
/// or abort).
struct SessionSlot {
    server: Arc<Server>,
    key: SessionKey,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.server.end_session(&self.key);
    }
}

/// Errors after which the listening socket is unusable.
fn is_fatal(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == nix::libc::EBADF || code == nix::libc::ENOTSOCK || code == nix::libc::EINVAL
    )
}

struct Server {
    shared: Shared,
    config: TftpConfig,
    counters: Counters,
    limiter: LogGate<IpAddr>,
    reply_budget: SharedLimiter<IpAddr>,
    active: Arc<AtomicUsize>,
    /// Transfers running, by (client, local address, file name): a resent
    /// request joins its transfer instead of starting a second one.
    in_progress: Mutex<HashSet<SessionKey>>,
}

/// Serves TFTP on `socket` with the default settings until `shutdown`; then
/// stops taking requests and returns when running transfers have ended.
pub async fn serve(
    socket: UdpSocket,
    shared: Shared,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(socket, shared, TftpConfig::default(), shutdown).await
}

/// [`serve`] with explicit settings.
///
/// The listener and every transfer run on a thread of their own with a
/// current-thread runtime (`tftp`), not on the caller's runtime: a
/// lock-step transfer is one wake-up per block, and on a multi-thread
/// runtime each wake-up could cross threads (the worker that polled epoll
/// waking a parked one to run the session task), which under a boot storm
/// on a busy host cost a scheduling delay per block. The future ends when
/// the thread does.
pub async fn serve_with(
    socket: UdpSocket,
    shared: Shared,
    config: TftpConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // Before the thread starts, so fewer early requests arrive without
    // their local address.
    net::enable_pktinfo(&socket)?;
    let socket = socket.into_std()?;
    let (done, ended) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("tftp".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|runtime| {
                    runtime.block_on(async move {
                        let socket = UdpSocket::from_std(socket)?;
                        run(socket, shared, config, shutdown).await
                    })
                });
            let _ = done.send(result);
        })?;
    ended
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("the tftp thread panicked")))
}

/// The listening loop, on the `tftp` thread's runtime.
async fn run(
    socket: UdpSocket,
    shared: Shared,
    config: TftpConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let addr = socket.local_addr()?;
    let active = Arc::new(AtomicUsize::new(0));
    let server = Arc::new(Server {
        counters: Counters::new(&shared.metrics, active.clone()),
        shared,
        config,
        limiter: LogGate::with_limits(
            config.log_interval,
            bootlab_netio::limiter::DEFAULT_LOG_LINES,
            MAX_PEERS,
        ),
        reply_budget: SharedLimiter::new(Rate::new(REPLY_BURST, REPLY_PER_SEC), MAX_PEERS),
        active,
        in_progress: Mutex::new(HashSet::new()),
    });
    info!("listening for tftp on {addr}");
    let mut sessions = JoinSet::new();
    let mut buf = vec![0u8; 2048];
    loop {
        let got = tokio::select! {
            () = shutdown.cancelled() => break,
            got = net::recv_request(&socket, &mut buf) => match got {
                Ok(got) => got,
                Err(e) if is_fatal(&e) => return Err(e),
                Err(e) => {
                    // Transient (ENOBUFS, ENOMEM...): note it, pause, go on.
                    server.counters.error("recv");
                    if server.limiter.allow(addr.ip()) {
                        warn!("tftp: receive failed: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
        };
        server.handle_datagram(&buf[..got.len], got, &mut sessions);
    }
    info!(
        sessions = sessions.len(),
        "tftp: stopped taking requests, letting transfers finish"
    );
    while sessions.join_next().await.is_some() {}
    Ok(())
}

impl Server {
    fn warn_limited(&self, peer: SocketAddr, what: std::fmt::Arguments<'_>) {
        if self.limiter.allow(peer.ip()) {
            warn!(%peer, "{what}");
        }
    }

    /// Like `warn_limited`, inside a session span (which names the peer).
    fn session_warn(&self, peer: SocketAddr, what: std::fmt::Arguments<'_>) {
        if self.limiter.allow(peer.ip()) {
            warn!("{what}");
        }
    }

    fn handle_datagram(
        self: &Arc<Self>,
        datagram: &[u8],
        got: net::Received,
        sessions: &mut JoinSet<()>,
    ) {
        let peer = got.peer;
        if got.truncated {
            self.counters.error("oversized");
            self.warn_limited(peer, format_args!("tftp: dropped oversized datagram"));
            return;
        }
        let req = match packet::parse_request(datagram) {
            Ok(r) => r,
            Err(e) => {
                self.counters.error(e.kind());
                self.warn_limited(peer, format_args!("tftp: bad request: {e}"));
                if let Some((code, msg)) = e.reply() {
                    self.reply_error(got.local, peer, code, msg);
                }
                return;
            }
        };
        match req.kind {
            RequestKind::Write => {
                self.counters.writes.inc();
                self.counters.error("write_refused");
                self.warn_limited(
                    peer,
                    format_args!("tftp: write request for {:?} refused", req.filename),
                );
                self.reply_error(
                    got.local,
                    peer,
                    ErrorCode::AccessViolation,
                    "read-only server",
                );
            }
            RequestKind::Read => {
                self.counters.reads.inc();
                let key: SessionKey = (peer, got.local, req.filename.clone());
                {
                    let mut running = self.in_progress.lock().unwrap_or_else(|e| e.into_inner());
                    if running.contains(&key) {
                        // The client resent its request before our first
                        // packet arrived; the running transfer answers it.
                        self.counters.error("duplicate_request");
                        return;
                    }
                    if running.len() >= self.config.max_sessions {
                        drop(running);
                        self.counters.error("busy");
                        self.warn_limited(
                            peer,
                            format_args!(
                                "tftp: session cap {} reached, refused",
                                self.config.max_sessions
                            ),
                        );
                        self.reply_error(
                            got.local,
                            peer,
                            ErrorCode::Undefined,
                            "server busy, retry later",
                        );
                        return;
                    }
                    running.insert(key.clone());
                }
                self.active.fetch_add(1, Ordering::Relaxed);
                let span = info_span!("tftp", %peer, file = %req.filename);
                let server = Arc::clone(self);
                sessions.spawn(
                    async move {
                        // Frees the slot however the session ends.
                        let _slot = SessionSlot {
                            server: Arc::clone(&server),
                            key: key.clone(),
                        };
                        server.run_session(req, got.local, peer, &key).await;
                    }
                    .instrument(span),
                );
            }
        }
    }

    /// Sends an ERROR from a fresh port on the address the request came to.
    fn reply_error(&self, local: IpAddr, peer: SocketAddr, code: ErrorCode, msg: &str) {
        if !self.reply_budget.allow(peer.ip()) {
            // Someone is making us answer a lot (or forging that address):
            // stay quiet rather than reflect.
            self.counters.error("reply_limited");
            return;
        }
        let pkt = packet::encode_error(code, msg);
        if let Err(e) = net::send_once(local, peer, &pkt) {
            debug!(%peer, "tftp: error reply not sent: {e}");
        }
    }

    /// Frees a session's slot (idempotent).
    fn end_session(&self, key: &SessionKey) {
        let removed = self
            .in_progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        if removed {
            self.active.fetch_sub(1, Ordering::Relaxed);
        }
    }

    async fn run_session(
        self: &Arc<Self>,
        req: Request,
        local: IpAddr,
        peer: SocketAddr,
        key: &SessionKey,
    ) {
        let sock = match net::open_transfer_socket(local, peer) {
            Ok(s) => s,
            Err(e) => {
                self.counters.error("io");
                warn!("tftp: cannot open transfer socket: {e}");
                return;
            }
        };
        let generation = self.shared.generation();
        let inv = Arc::clone(&generation.inventory);
        // Resolved on this task, as the transfer's preads are: a confined
        // path lookup and an open (or a pre-rendered virtual file). On the
        // blocking pool, a 300-client storm started up to 300 threads at
        // once and most clients' first OACK came after their 1 s timeout
        // (bench/storm.sh: TFTP phase 2.65x dnsmasq's).
        let resolved = {
            let root = &generation.inventory.services().assets_dir;
            // An IPv4 client on a dual-stack socket is still that IPv4 address.
            let client = peer.ip().to_canonical();
            source::resolve(
                &self.shared,
                &generation,
                root,
                &req.filename,
                req.mode,
                client,
            )
        };
        let served = match resolved {
            Ok(s) => s,
            Err(denial) => {
                self.counters.error(denial.kind());
                match &denial {
                    Denial::UnknownMac(_) | Denial::UnknownSource(_) => {
                        self.session_warn(peer, format_args!("tftp: {:?}: {denial}", req.filename));
                    }
                    _ => self.session_warn(
                        peer,
                        format_args!("tftp: {:?} refused: {denial}", req.filename),
                    ),
                }
                let (code, msg) = denial.reply();
                if self.reply_budget.allow(peer.ip()) {
                    let _ = sock.send(&packet::encode_error(code, msg)).await;
                } else {
                    self.counters.error("reply_limited");
                }
                return;
            }
        };
        let limits = Limits {
            max_blksize: options::max_blksize_for_mtu(net::path_mtu(&sock).unwrap_or(1500)),
            max_windowsize: self.config.max_windowsize,
            max_window_bytes: self.config.max_window_bytes,
        };
        let neg = options::negotiate(&req.options, req.mode, served.content.len(), &limits);
        debug!(
            blksize = neg.blksize,
            windowsize = neg.windowsize,
            "tftp: transfer starts"
        );
        let mut tally = Tally::default();
        let result = transfer::send_file(
            &sock,
            &served.content,
            &neg,
            self.config.retransmit,
            &mut tally,
        )
        .await;
        // The client may start its next request right after its last ACK.
        self.end_session(key);
        self.counters.retransmits.add(tally.retransmits);
        self.counters.duplicate_acks.add(tally.duplicate_acks);
        match result {
            Ok(bytes) => {
                self.counters.transfers.inc();
                self.counters.bytes.add(bytes);
                let mac = match peer.ip().to_canonical() {
                    IpAddr::V4(ip) => self.shared.record_fetch(
                        &inv,
                        ip,
                        served.mac,
                        Service::Tftp,
                        &req.filename,
                        bytes,
                        served.is_script,
                    ),
                    IpAddr::V6(_) => None,
                };
                info!(
                    bytes,
                    blksize = neg.blksize,
                    windowsize = neg.windowsize,
                    retransmits = tally.retransmits,
                    mac = mac.map(|m| m.to_string()),
                    "tftp: served"
                );
            }
            Err(e) => {
                self.counters.error(e.kind());
                self.session_warn(
                    peer,
                    format_args!("tftp: transfer of {:?} failed: {e}", req.filename),
                );
                if matches!(e, TransferError::TimedOut { .. } | TransferError::Io(_)) {
                    let msg = match e {
                        TransferError::TimedOut { .. } => "timed out",
                        _ => "read error",
                    };
                    let _ = sock
                        .send(&packet::encode_error(ErrorCode::Undefined, msg))
                        .await;
                }
            }
        }
    }
}
