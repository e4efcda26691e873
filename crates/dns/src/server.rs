//! The socket loops: UDP workers, the TCP accept loop, the reload watcher,
//! forwarding dispatch, metrics and rate-limited logging of bad input.
//!
//! UDP is served by a few dedicated threads blocking on clones of the one
//! bound socket, each running `bootlab_netio`'s worker loop (`recvmmsg` /
//! `sendmmsg` batches, packet info on `0.0.0.0` / `[::]` binds so replies
//! leave from the address asked); TCP and forwarding run on the tokio
//! runtime.
//!
//! TCP has two caps: `tcp_max_connections` in total and
//! `tcp_max_connections_per_client` per client address, so one client
//! holding (or endlessly reopening) idle connections cannot lock everyone
//! else out: a connection over either cap is closed at once, counted, and
//! logged at most once per client per interval; the idle timeout still
//! closes quiet connections. The current [`Handler`] is swapped
//! atomically when the inventory is reloaded; workers pick the new one up
//! before their next packet.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bootlab_inventory::Inventory;
use bootlab_netio::{
    BatchHandler, LogGate, PeerSlots, RecvBatch, RecvOptions, SendBatch, SlotRefusal, WorkerOptions,
};
use bootlab_state::metrics::Histogram;
use bootlab_state::{Counter, Metrics, Shared};
use hickory_proto::op::ResponseCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::forward::{Forwarder, LearnedBatch};
use crate::handler::{
    DEFAULT_MAX_UDP_PAYLOAD, DropReason, ForwardRequest, Handler, HandlerConfig, Outcome,
    ReplyInfo, Transport,
};
use crate::zone::ZoneError;

/// Tuning of the DNS service. `Default` is what bootlabd uses.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Threads answering UDP.
    pub udp_workers: usize,
    /// Concurrent TCP connections; more are closed at once.
    pub tcp_max_connections: usize,
    /// Concurrent TCP connections from one client address; more from that
    /// client are closed at once (others keep being served).
    pub tcp_max_connections_per_client: usize,
    /// A TCP connection idle this long is closed.
    pub tcp_idle_timeout: Duration,
    /// Largest UDP reply (and advertised EDNS size).
    pub max_udp_payload: u16,
    /// How long to wait for one upstream resolver.
    pub forward_timeout: Duration,
    /// Distinct forwarded questions in flight at most.
    pub forward_max_pending: usize,
    /// Where to find upstream resolvers when `network.upstream_dns` is empty.
    pub resolv_conf: PathBuf,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            udp_workers: std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8)),
            tcp_max_connections: 128,
            tcp_max_connections_per_client: 16,
            tcp_idle_timeout: Duration::from_secs(10),
            max_udp_payload: DEFAULT_MAX_UDP_PAYLOAD,
            forward_timeout: Duration::from_secs(2),
            forward_max_pending: 1024,
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
        }
    }
}

/// Serves DNS on the bound sockets until `shutdown`, with default options.
pub async fn serve(
    udp: UdpSocket,
    tcp: TcpListener,
    shared: Shared,
    learned: Option<mpsc::Sender<LearnedBatch>>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    serve_with(udp, tcp, shared, learned, shutdown, ServeOptions::default()).await
}

/// The upstream resolvers for `inv`: `network.upstream_dns`, or the
/// nameservers of `resolv_conf`; never this server itself.
pub fn upstreams_for(inv: &Inventory, local: SocketAddr, resolv_conf: &Path) -> Vec<SocketAddr> {
    let candidates: Vec<SocketAddr> = if inv.network().upstream_dns.is_empty() {
        std::fs::read_to_string(resolv_conf)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                if words.next() != Some("nameserver") {
                    return None;
                }
                let addr = words.next()?;
                let addr = addr.split('%').next()?;
                addr.parse::<IpAddr>()
                    .ok()
                    .map(|ip| SocketAddr::new(ip, 53))
            })
            .collect()
    } else {
        inv.network().upstream_dns.clone()
    };
    let services = IpAddr::V4(inv.services().ip);
    candidates
        .into_iter()
        .filter(|u| {
            let same_port = u.port() == local.port();
            let is_self = same_port
                && (u.ip() == local.ip()
                    || u.ip() == services
                    || (local.ip().is_unspecified() && u.ip().is_loopback()));
            if is_self {
                warn!(upstream = %u, "upstream resolver is this server itself, ignored");
            }
            !is_self
        })
        .collect()
}

/// Counters of the DNS service.
#[derive(Debug)]
struct DnsCounters {
    queries_udp: Counter,
    queries_tcp: Counter,
    fast: Counter,
    truncated: Counter,
    malformed: Counter,
    rcodes: Vec<(ResponseCode, Counter)>,
    rcode_other: Counter,
    dropped: Vec<(DropReason, Counter)>,
    forwarded: Counter,
    forward_queue_full: Counter,
    tcp_rejected: Counter,
    tcp_client_cap: Counter,
    tcp_idle_closed: Counter,
    reload_failed: Counter,
    oversized: Counter,
    noerror: Counter,
    nxdomain: Counter,
    /// UDP: from a query's arrival (its receive batch) to its reply's send.
    udp_latency: Histogram,
}

impl DnsCounters {
    fn new(m: &Metrics) -> Self {
        let queries = |t: &str| {
            m.counter(
                "bootlab_dns_queries_total",
                "DNS queries received.",
                &[("transport", t)],
            )
        };
        let rcode = |rc: ResponseCode, label: &str| {
            (
                rc,
                m.counter(
                    "bootlab_dns_responses_total",
                    "DNS replies sent, by response code.",
                    &[("rcode", label)],
                ),
            )
        };
        let dropped = |r: DropReason| {
            (
                r,
                m.counter(
                    "bootlab_dns_dropped_total",
                    "DNS datagrams dropped without a reply.",
                    &[("reason", r.as_str())],
                ),
            )
        };
        Self {
            queries_udp: queries("udp"),
            queries_tcp: queries("tcp"),
            fast: m.counter(
                "bootlab_dns_fast_path_total",
                "Replies served from precomputed answers.",
                &[],
            ),
            truncated: m.counter(
                "bootlab_dns_truncated_total",
                "UDP replies sent with TC=1.",
                &[],
            ),
            malformed: m.counter(
                "bootlab_dns_bad_queries_total",
                "Queries answered with FORMERR, NOTIMP or BADVERS (bad input).",
                &[],
            ),
            rcodes: vec![
                rcode(ResponseCode::NoError, "NOERROR"),
                rcode(ResponseCode::NXDomain, "NXDOMAIN"),
                rcode(ResponseCode::Refused, "REFUSED"),
                rcode(ResponseCode::FormErr, "FORMERR"),
                rcode(ResponseCode::NotImp, "NOTIMP"),
                rcode(ResponseCode::ServFail, "SERVFAIL"),
                rcode(ResponseCode::BADVERS, "BADVERS"),
            ],
            rcode_other: m.counter(
                "bootlab_dns_responses_total",
                "DNS replies sent, by response code.",
                &[("rcode", "other")],
            ),
            dropped: vec![
                dropped(DropReason::TooShort),
                dropped(DropReason::NotAQuery),
            ],
            udp_latency: m.histogram(
                "bootlab_dns_reply_duration_seconds",
                "Time from a UDP DNS query's arrival to its reply's send (answers from the zones).",
                &[("transport", "udp")],
            ),
            forwarded: m.counter(
                "bootlab_dns_forwarded_total",
                "Queries forwarded for allow-listed names.",
                &[],
            ),
            forward_queue_full: m.counter(
                "bootlab_dns_forward_queue_full_total",
                "Forwardable UDP queries dropped because the forwarding queue was full.",
                &[],
            ),
            tcp_rejected: m.counter(
                "bootlab_dns_tcp_rejected_total",
                "TCP connections closed at once because of the connection cap.",
                &[],
            ),
            tcp_client_cap: m.counter(
                "bootlab_dns_tcp_client_cap_total",
                "TCP connections closed at once because their client holds its per-client cap.",
                &[],
            ),
            tcp_idle_closed: m.counter(
                "bootlab_dns_tcp_idle_closed_total",
                "TCP connections closed for idleness.",
                &[],
            ),
            reload_failed: m.counter(
                "bootlab_dns_reload_failed_total",
                "Reloads whose zones could not be built.",
                &[],
            ),
            oversized: m.counter(
                "bootlab_dns_oversized_queries_total",
                "UDP queries longer than the receive buffer, dropped.",
                &[],
            ),
            noerror: rcode(ResponseCode::NoError, "NOERROR").1,
            nxdomain: rcode(ResponseCode::NXDomain, "NXDOMAIN").1,
        }
    }

    fn reply(&self, info: &ReplyInfo) {
        match self.rcodes.iter().find(|(rc, _)| *rc == info.rcode) {
            Some((_, c)) => c.inc(),
            None => self.rcode_other.inc(),
        }
        if info.fast {
            self.fast.inc();
        }
        if info.truncated {
            self.truncated.inc();
        }
        if info.problem.is_some() {
            self.malformed.inc();
        }
    }

    fn batch(&self, counts: &BatchCounts) {
        if counts.queries > 0 {
            self.queries_udp.add(counts.queries);
        }
        if counts.fast_noerror > 0 {
            self.noerror.add(counts.fast_noerror);
        }
        if counts.fast_nxdomain > 0 {
            self.nxdomain.add(counts.fast_nxdomain);
        }
        let fast = counts.fast_noerror + counts.fast_nxdomain;
        if fast > 0 {
            self.fast.add(fast);
        }
    }

    fn dropped(&self, reason: DropReason) {
        if let Some((_, c)) = self.dropped.iter().find(|(r, _)| *r == reason) {
            c.inc();
        }
    }
}

/// The current handler, swapped on reload; readers check a generation
/// number per packet and clone the `Arc` only when it changed.
#[derive(Debug)]
struct LiveHandler {
    current: RwLock<Arc<Handler>>,
    generation: AtomicU64,
}

impl LiveHandler {
    fn new(h: Handler) -> Self {
        Self {
            current: RwLock::new(Arc::new(h)),
            generation: AtomicU64::new(0),
        }
    }

    fn load(&self) -> (u64, Arc<Handler>) {
        let g = self.current.read().unwrap_or_else(|e| e.into_inner());
        (self.generation.load(Ordering::Acquire), g.clone())
    }

    fn store(&self, h: Handler) {
        let mut g = self.current.write().unwrap_or_else(|e| e.into_inner());
        *g = Arc::new(h);
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// Everything the loops share.
#[derive(Debug)]
struct Service {
    live: LiveHandler,
    counters: DnsCounters,
    throttle: LogGate<IpAddr>,
    forwarder: Forwarder,
    shutdown: CancellationToken,
}

impl Service {
    fn log_problem(&self, peer: SocketAddr, transport: Transport, problem: &str) {
        if self.throttle.allow(peer.ip()) {
            warn!(%peer, ?transport, "bad dns query: {problem} (further ones from this peer are not logged for a while)");
        }
    }

    fn log_drop(&self, peer: SocketAddr, reason: DropReason) {
        if self.throttle.allow(peer.ip()) {
            debug!(%peer, reason = reason.as_str(), "dns datagram dropped");
        }
    }
}

/// Serves DNS on the bound sockets until `shutdown`.
pub async fn serve_with(
    udp: UdpSocket,
    tcp: TcpListener,
    shared: Shared,
    learned: Option<mpsc::Sender<LearnedBatch>>,
    shutdown: CancellationToken,
    options: ServeOptions,
) -> io::Result<()> {
    let udp_addr = udp.local_addr()?;
    let tcp_addr = tcp.local_addr()?;
    let build = {
        let options = options.clone();
        move |inv: &Inventory| -> Result<Handler, ZoneError> {
            Handler::new(
                inv,
                HandlerConfig {
                    max_udp_payload: options.max_udp_payload,
                    upstreams: upstreams_for(inv, udp_addr, &options.resolv_conf),
                },
            )
        }
    };
    let handler = build(&shared.inventory()).map_err(io::Error::other)?;
    let zones_serial = handler.zones().zones().first().map(|z| soa_serial(&z.soa));
    let service = Arc::new(Service {
        live: LiveHandler::new(handler),
        counters: DnsCounters::new(&shared.metrics),
        throttle: LogGate::new(Duration::from_secs(10)),
        forwarder: Forwarder::new(
            options.forward_timeout,
            options.forward_max_pending,
            learned,
            &shared.metrics,
        ),
        shutdown: shutdown.clone(),
    });
    info!("listening for dns on {udp_addr} (udp)");
    info!("listening for dns on {tcp_addr} (tcp)");
    debug!(serial = ?zones_serial, "dns zones loaded");

    let udp = Arc::new(udp.into_std()?);
    // Bound to 0.0.0.0 or [::]: each reply must leave from the address its
    // query was sent to (a client's connected socket drops anything else),
    // which the kernel does not guarantee when the interface has several.
    let pktinfo = udp_addr.ip().is_unspecified();
    if pktinfo {
        bootlab_netio::enable_pktinfo(&*udp, udp_addr)?;
    }
    let (forward_tx, forward_rx) = mpsc::channel::<Forwarded>(1024);
    let opts = WorkerOptions {
        recv: RecvOptions {
            batch: UDP_BATCH,
            buf_size: UDP_QUERY_MAX,
            pktinfo,
            timestamps: false,
        },
        send_chunk: UDP_BATCH,
        poll: Duration::from_millis(200),
    };
    let mut workers = Vec::new();
    for i in 0..options.udp_workers.max(1) {
        let socket = udp.try_clone()?;
        let (generation, handler) = service.live.load();
        let mut worker = UdpWorker {
            service: service.clone(),
            forward_tx: forward_tx.clone(),
            generation,
            handler,
            out: Vec::with_capacity(512),
        };
        let shutdown = service.shutdown.clone();
        workers.push(
            std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || {
                    if let Err(e) = bootlab_netio::run_worker(&socket, opts, &mut worker, &shutdown)
                    {
                        warn!("dns udp worker ended: {e}");
                    }
                })?,
        );
    }
    drop(forward_tx);
    let forwarding = tokio::spawn(udp_forwarding(forward_rx, udp.clone(), service.clone()));
    let reload = tokio::spawn(reload_loop(shared, build, service.clone()));

    tcp_loop(tcp, service.clone(), options.clone()).await;

    shutdown.cancel();
    let _ = reload.await;
    let _ = forwarding.await;
    for w in workers {
        let _ = tokio::task::spawn_blocking(move || w.join()).await;
    }
    info!("dns stopped");
    Ok(())
}

fn soa_serial(soa: &hickory_proto::rr::Record) -> u32 {
    match &soa.data {
        hickory_proto::rr::RData::SOA(s) => s.serial,
        _ => 0,
    }
}

async fn reload_loop(
    shared: Shared,
    build: impl Fn(&Inventory) -> Result<Handler, ZoneError>,
    service: Arc<Service>,
) {
    let mut rx = shared.subscribe();
    loop {
        tokio::select! {
            () = service.shutdown.cancelled() => return,
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
                let inv = rx.borrow_and_update().inventory.clone();
                match build(&inv) {
                    Ok(h) => {
                        let serial = h.zones().zones().first().map(|z| soa_serial(&z.soa));
                        service.live.store(h);
                        info!(serial = ?serial, "dns zones reloaded");
                    }
                    Err(e) => {
                        service.counters.reload_failed.inc();
                        warn!("dns zones not reloaded, keeping the old ones: {e}");
                    }
                }
            }
        }
    }
}

/// Datagrams taken per `recvmmsg` (and replies sent per `sendmmsg`).
const UDP_BATCH: usize = 32;
/// Receive buffer per datagram; longer queries are dropped (no real client
/// sends a query this long).
const UDP_QUERY_MAX: usize = 4096;

/// Per-batch tallies, added to the shared counters once per batch (the hot
/// path touches no shared cache line per packet).
#[derive(Default)]
struct BatchCounts {
    queries: u64,
    fast_noerror: u64,
    fast_nxdomain: u64,
}

/// A query handed to the forwarder: the request, the client, and the local
/// address the query came to (when the socket reports it).
type Forwarded = (ForwardRequest, SocketAddr, Option<IpAddr>);

/// One UDP worker thread's state.
struct UdpWorker {
    service: Arc<Service>,
    forward_tx: mpsc::Sender<Forwarded>,
    generation: u64,
    handler: Arc<Handler>,
    /// The reply being built (copied into the send batch).
    out: Vec<u8>,
}

impl BatchHandler for UdpWorker {
    type Tag = Instant;

    /// Also runs on every receive timeout, so a worker without traffic
    /// lets go of a reloaded-away handler (a whole zone table) too.
    fn before_recv(&mut self) {
        if self.service.live.generation() != self.generation {
            (self.generation, self.handler) = self.service.live.load();
        }
    }

    fn handle(&mut self, batch: &RecvBatch, replies: &mut SendBatch<Instant>) {
        let received = Instant::now();
        self.before_recv(); // a reload while this worker waited
        let service = &*self.service;
        let mut counts = BatchCounts::default();
        for (got, query) in batch.iter() {
            let peer = got.peer;
            counts.queries += 1;
            if got.truncated {
                service.counters.oversized.inc();
                service.log_drop(peer, DropReason::TooShort);
                continue;
            }
            match self.handler.handle(query, Transport::Udp, &mut self.out) {
                Outcome::Reply(info) => {
                    match (info.fast, info.rcode) {
                        (true, ResponseCode::NoError) => counts.fast_noerror += 1,
                        (true, ResponseCode::NXDomain) => counts.fast_nxdomain += 1,
                        _ => service.counters.reply(&info),
                    }
                    if let Some(p) = &info.problem {
                        service.log_problem(peer, Transport::Udp, p);
                    }
                    replies.push(&self.out, peer, got.local, received);
                }
                Outcome::Forward(req) => {
                    service.counters.forwarded.inc();
                    if self.forward_tx.try_send((*req, peer, got.local)).is_err() {
                        service.counters.forward_queue_full.inc();
                    }
                }
                Outcome::Drop(reason) => {
                    service.counters.dropped(reason);
                    service.log_drop(peer, reason);
                }
            }
        }
        service.counters.batch(&counts);
    }

    fn sent(&mut self, received: Instant, result: io::Result<()>) {
        match result {
            Ok(()) => self
                .service
                .counters
                .udp_latency
                .observe_duration(received.elapsed()),
            Err(e) => debug!("dns udp send: {e}"),
        }
    }
}

async fn udp_forwarding(
    mut rx: mpsc::Receiver<Forwarded>,
    socket: Arc<std::net::UdpSocket>,
    service: Arc<Service>,
) {
    let in_flight = Arc::new(Semaphore::new(4096));
    loop {
        let next = tokio::select! {
            () = service.shutdown.cancelled() => return,
            next = rx.recv() => next,
        };
        let Some((req, peer, local)) = next else {
            return;
        };
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            service.counters.forward_queue_full.inc();
            continue;
        };
        let service = service.clone();
        let socket = socket.clone();
        tokio::spawn(
            async move {
                let upstream = service
                    .forwarder
                    .resolve(&req.question, &req.upstreams)
                    .await;
                let (_, handler) = service.live.load();
                let mut out = Vec::new();
                let info = handler.forwarded_reply(&req, upstream.as_deref(), &mut out);
                service.counters.reply(&info);
                // UDP sends do not block for long; the socket is shared with the workers.
                if let Err(e) = bootlab_netio::send_from(&*socket, &out, peer, local) {
                    debug!(%peer, "dns udp send: {e}");
                }
                drop(permit);
            }
            .instrument(info_span!("dns_forward", %peer)),
        );
    }
}

async fn tcp_loop(listener: TcpListener, service: Arc<Service>, options: ServeOptions) {
    let slots = PeerSlots::new(
        options.tcp_max_connections_per_client,
        options.tcp_max_connections,
    );
    loop {
        let accepted = tokio::select! {
            () = service.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                warn!("dns tcp accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // An IPv4 client of a dual-stack listener is still that IPv4 address.
        let client = peer.ip().to_canonical();
        let permit = match slots.try_acquire(client) {
            Ok(slot) => slot,
            Err(SlotRefusal::PeerFull) => {
                service.counters.tcp_client_cap.inc();
                if service.throttle.allow(client) {
                    warn!(
                        %peer,
                        "dns tcp: this client holds its cap of {} connections, connection closed",
                        options.tcp_max_connections_per_client
                    );
                }
                drop(stream);
                continue;
            }
            Err(SlotRefusal::TotalFull) => {
                service.counters.tcp_rejected.inc();
                if service.throttle.allow(client) {
                    warn!(%peer, "dns tcp connection cap reached, connection closed");
                }
                drop(stream);
                continue;
            }
        };
        let service = service.clone();
        let idle = options.tcp_idle_timeout;
        tokio::spawn(
            async move {
                tcp_connection(stream, peer, &service, idle).await;
                drop(permit);
            }
            .instrument(info_span!("dns_tcp", %peer)),
        );
    }
}

async fn tcp_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    service: &Service,
    idle: Duration,
) {
    let mut out = Vec::new();
    loop {
        let len = tokio::select! {
            () = service.shutdown.cancelled() => return,
            r = tokio::time::timeout(idle, stream.read_u16()) => r,
        };
        let len = match len {
            Err(_) => {
                service.counters.tcp_idle_closed.inc();
                debug!("dns tcp connection idle, closed");
                return;
            }
            Ok(Err(_)) => return,
            Ok(Ok(len)) => usize::from(len),
        };
        let mut query = vec![0u8; len];
        match tokio::time::timeout(idle, stream.read_exact(&mut query)).await {
            Ok(Ok(_)) => {}
            Err(_) => {
                service.counters.tcp_idle_closed.inc();
                return;
            }
            Ok(Err(_)) => return,
        }
        service.counters.queries_tcp.inc();
        let (_, handler) = service.live.load();
        let info = match handler.handle(&query, Transport::Tcp, &mut out) {
            Outcome::Reply(info) => info,
            Outcome::Forward(req) => {
                service.counters.forwarded.inc();
                let upstream = service
                    .forwarder
                    .resolve(&req.question, &req.upstreams)
                    .await;
                handler.forwarded_reply(&req, upstream.as_deref(), &mut out)
            }
            Outcome::Drop(reason) => {
                service.counters.dropped(reason);
                service.log_drop(peer, reason);
                return;
            }
        };
        service.counters.reply(&info);
        if let Some(p) = &info.problem {
            service.log_problem(peer, Transport::Tcp, p);
        }
        let Ok(len) = u16::try_from(out.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(out.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&out);
        match tokio::time::timeout(idle, stream.write_all(&framed)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bootlab_testkit::LabBuilder;

    /// A UDP worker that gets no traffic still lets go of the handler a
    /// reload replaced (at 10,000 nodes a handler is ~16 MB): its loop
    /// calls `before_recv` on every receive timeout.
    #[test]
    fn an_idle_worker_drops_the_replaced_handler() {
        let inv = LabBuilder::okd().build();
        let build = || Handler::new(&inv, HandlerConfig::default()).unwrap();
        let metrics = Metrics::new();
        let service = Arc::new(Service {
            live: LiveHandler::new(build()),
            counters: DnsCounters::new(&metrics),
            throttle: LogGate::new(Duration::from_secs(10)),
            forwarder: Forwarder::new(Duration::from_secs(1), 8, None, &metrics),
            shutdown: CancellationToken::new(),
        });
        let (generation, handler) = service.live.load();
        let old = Arc::downgrade(&handler);
        let (forward_tx, _forward_rx) = mpsc::channel(1);
        let mut worker = UdpWorker {
            service: service.clone(),
            forward_tx,
            generation,
            handler,
            out: Vec::new(),
        };
        worker.before_recv();
        assert!(old.upgrade().is_some(), "no reload: the handler stays");
        service.live.store(build());
        worker.before_recv();
        assert!(
            old.upgrade().is_none(),
            "the replaced handler is still held by the worker"
        );
        assert_eq!(worker.generation, service.live.generation());
    }
}
