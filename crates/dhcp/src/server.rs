//! The socket loops: receive, hand to [`DhcpHandler`], send. Both are OS
//! threads on the blocking socket (no async machinery per packet): the
//! receive loop is `bootlab_netio`'s worker loop (`recvmmsg` batches, the
//! replies that need no commit sent with one `sendmmsg`, both through
//! `bootlab_netio`'s batches); replies that grant or change a
//! lease go through the group commit first: the lease writer thread
//! collects every pending lease record, appends them in one write with one
//! `fdatasync`, and only then sends their replies. While it syncs, the
//! receive loop keeps answering, so the next batch fills up.
//!
//! Two socket modes:
//! - interface mode (`services.interface`, or the NIC whose MAC is
//!   `services.mac` when listening on 0.0.0.0, found by
//!   [`bootlab_netio::interface_by_mac`]: a bridge rather than its port):
//!   bound to the device with
//!   `SO_BINDTODEVICE`, broadcast replies go to 255.255.255.255:68 there,
//!   and a client without an address that did not ask for a broadcast is
//!   answered by unicast to `yiaddr` after writing its neighbour entry
//!   ([`bootlab_netio::Neighbours`], as dnsmasq does; broadcast when that
//!   is refused, e.g. without `CAP_NET_ADMIN`);
//! - address mode (anything else: loopback tests, relayed setups): a plain
//!   UDP socket on `services.listen.dhcp`; "broadcast" replies go back to
//!   the sender's address.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use bootlab_boot::decision::ARM64_LOADER;
use bootlab_inventory::{Inventory, MacAddr};
use bootlab_state::Shared;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, info_span, warn};

use crate::handler::{
    DhcpHandler, DropReason, Limits, Listener, MachineEvent, Outcome, Outgoing, ReplyTo,
};
use crate::leases::{LeaseRecord, LeaseStore, LeaseTable};
use crate::metrics::DhcpMetrics;
use bootlab_netio::{
    BatchHandler, Family, LogGate, Neighbours, RecvBatch, RecvOptions, SendBatch, WorkerOptions,
};
use dhcproto::v4::MessageType;

/// Pending lease records the commit queue holds at most; beyond that,
/// requests are dropped (the client retries). 8192 is a third of a second
/// at the highest rate one perfdhcp reached here (~25,000/s), far more than
/// a group commit's fdatasync; the channel allocates every slot up front
/// (65,536 slots were 10.5 MiB of every bootlabd's RSS).
const COMMIT_QUEUE: usize = 8192;
/// Records per group commit at most.
const MAX_BATCH: usize = 8192;
/// The DHCP client port.
pub const CLIENT_PORT: u16 = 68;
/// The DHCP server (and relay) port.
pub const SERVER_PORT: u16 = 67;

/// How the socket is bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketMode {
    /// Bound to this network interface; broadcasts reach the link.
    Interface(String),
    /// A plain UDP address (loopback, relays).
    Address,
}

/// A bound DHCP socket and how it was bound.
#[derive(Debug)]
pub struct DhcpSocket {
    /// The socket.
    pub socket: UdpSocket,
    /// Its mode.
    pub mode: SocketMode,
    /// Writes neighbour entries on the interface (interface mode), so
    /// clients without an address get unicast answers.
    pub neighbours: Option<Neighbours>,
}

/// Binds the DHCP socket for `inv` (see the module docs for the modes).
/// Must be called inside a Tokio runtime.
pub fn bind(inv: &Inventory) -> io::Result<DhcpSocket> {
    let listen = inv.services().listen.dhcp;
    let interface = inv.services().interface.clone().or_else(|| {
        if listen.ip().is_unspecified() {
            interface_for(inv.services().mac)
        } else {
            None
        }
    });
    match interface {
        Some(ifname) => bind_interface(&ifname, listen.port()),
        None => bind_address(listen),
    }
}

/// Binds the PXE boot server socket (port 4011, proxyDHCP) the way
/// [`bind`] binds port 67: on the same interface, or on
/// `services.listen.dhcp`'s address with port 4011.
pub fn bind_boot_server(inv: &Inventory) -> io::Result<DhcpSocket> {
    let listen = inv.services().listen.dhcp;
    let interface = inv.services().interface.clone().or_else(|| {
        if listen.ip().is_unspecified() {
            interface_for(inv.services().mac)
        } else {
            None
        }
    });
    match interface {
        Some(ifname) => bind_interface(&ifname, crate::handler::BOOT_SERVER_PORT),
        None => bind_address(SocketAddr::new(
            listen.ip(),
            crate::handler::BOOT_SERVER_PORT,
        )),
    }
}

/// The NIC with `mac` (see [`bootlab_netio::iface`] for the rule).
fn interface_for(mac: MacAddr) -> Option<String> {
    match bootlab_netio::interface_by_mac(mac.octets()) {
        Ok(found) => found,
        Err(e) => {
            warn!("dhcp: cannot list network interfaces: {e}");
            None
        }
    }
}

/// Binds `0.0.0.0:port` on `ifname` with `SO_BINDTODEVICE` and
/// `SO_BROADCAST`, with a neighbour writer for the interface.
pub fn bind_interface(ifname: &str, port: u16) -> io::Result<DhcpSocket> {
    let socket = DhcpSocket::from_std(
        interface_socket(ifname, port)?,
        SocketMode::Interface(ifname.to_owned()),
    )?;
    Ok(socket.with_neighbours(open_neighbours(ifname)))
}

/// A neighbour writer for `ifname` in the calling thread's network
/// namespace; `None` (answers are broadcast) when that fails.
pub fn open_neighbours(ifname: &str) -> Option<Neighbours> {
    match Neighbours::open(ifname) {
        Ok(n) => Some(n),
        Err(e) => {
            warn!(
                "dhcp: cannot write neighbour entries on {ifname} ({e}); answers to clients without an address are broadcast"
            );
            None
        }
    }
}

/// The std socket behind [`bind_interface`] (needs no runtime, so it can be
/// made on a thread that entered another network namespace).
pub fn interface_socket(ifname: &str, port: u16) -> io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    s.bind_device(Some(ifname.as_bytes()))
        .map_err(|e| io::Error::new(e.kind(), format!("SO_BINDTODEVICE {ifname}: {e}")))?;
    grow_buffers(&s);
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

impl DhcpSocket {
    /// Wraps a bound, non-blocking std socket. Needs a Tokio runtime.
    pub fn from_std(socket: std::net::UdpSocket, mode: SocketMode) -> io::Result<Self> {
        Ok(Self {
            socket: UdpSocket::from_std(socket)?,
            mode,
            neighbours: None,
        })
    }

    /// The socket with a neighbour writer (opened where the interface is).
    pub fn with_neighbours(mut self, neighbours: Option<Neighbours>) -> Self {
        self.neighbours = neighbours;
        self
    }
}

/// Binds a plain UDP socket on `addr`.
pub fn bind_address(addr: SocketAddr) -> io::Result<DhcpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    grow_buffers(&s);
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    Ok(DhcpSocket {
        socket: UdpSocket::from_std(s.into())?,
        mode: SocketMode::Address,
        neighbours: None,
    })
}

/// Socket buffers that absorb bursts (and scheduling hiccups on a busy
/// host) instead of dropping requests: 4 MiB for receiving, 1 MiB for
/// sending. The forcing variants pass `rmem_max` when running as root; a
/// refusal is not fatal.
fn grow_buffers(s: &socket2::Socket) {
    bootlab_netio::grow_buffers(s, 4 << 20, 1 << 20);
}

fn arm64_loader_present(assets: &Path) -> bool {
    assets.join(ARM64_LOADER).is_file()
}

/// A handler for `inv`, which it takes over: the serve functions keep no
/// reference of their own, since the handler follows reloads and a held
/// start-up generation would stay in memory for the daemon's lifetime.
fn handler_for(inv: Arc<Inventory>, leases: LeaseTable, limits: Limits) -> DhcpHandler {
    let arm64 = arm64_loader_present(&inv.services().assets_dir);
    DhcpHandler::new(inv, leases, arm64, limits)
}

/// Where a reply goes, as a socket address, when no neighbour entry can
/// be written ([`ReplyTo::Hardware`] is broadcast).
pub fn reply_address(mode: &SocketMode, peer: SocketAddr, to: ReplyTo) -> SocketAddr {
    match to {
        ReplyTo::Hardware { .. } => reply_address(mode, peer, ReplyTo::Broadcast),
        ReplyTo::Relay(g) if peer.ip() == g => peer,
        ReplyTo::Relay(g) => SocketAddrV4::new(g, SERVER_PORT).into(),
        ReplyTo::Client(ci) if peer.ip() == ci => peer,
        ReplyTo::Client(ci) => SocketAddrV4::new(ci, CLIENT_PORT).into(),
        ReplyTo::Broadcast => match mode {
            SocketMode::Interface(_) => SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT).into(),
            SocketMode::Address => peer,
        },
        ReplyTo::BroadcastToPeerPort => match mode {
            SocketMode::Interface(_) => SocketAddrV4::new(Ipv4Addr::BROADCAST, peer.port()).into(),
            SocketMode::Address => peer,
        },
    }
}

/// Turns a [`ReplyTo`] into a socket address, writing the neighbour entry
/// a [`ReplyTo::Hardware`] unicast needs. Shared by the receive loop and
/// the lease writer.
#[derive(Clone)]
struct Replier {
    mode: SocketMode,
    neighbours: Option<Arc<Mutex<Neighbours>>>,
    gate: Arc<LogGate<std::net::IpAddr>>,
}

impl Replier {
    fn new(mode: SocketMode, neighbours: Option<Neighbours>) -> Self {
        let neighbours = match mode {
            SocketMode::Interface(_) => neighbours.map(|n| Arc::new(Mutex::new(n))),
            SocketMode::Address => None,
        };
        Self {
            mode,
            neighbours,
            gate: Arc::new(LogGate::new(LOG_INTERVAL)),
        }
    }

    fn address(&mut self, peer: SocketAddr, to: ReplyTo) -> SocketAddr {
        if let (ReplyTo::Hardware { ip, mac }, Some(n)) = (to, &self.neighbours) {
            let written = n
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .set(ip, mac.octets());
            match written {
                Ok(()) => return SocketAddrV4::new(ip, CLIENT_PORT).into(),
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    warn!(
                        "dhcp: not allowed to write neighbour entries ({e}; bootlabd needs CAP_NET_ADMIN); answers to clients without an address are broadcast from now on"
                    );
                    self.neighbours = None;
                }
                Err(e) => {
                    if self.gate.allow(ip.into()) {
                        warn!(%ip, %mac, "dhcp: neighbour entry not written ({e}); answer broadcast");
                    }
                }
            }
        }
        reply_address(&self.mode, peer, to)
    }
}

/// A reply waiting for its lease record to be durable.
struct Pending {
    record: LeaseRecord,
    reply: Option<Outgoing>,
    peer: SocketAddr,
    events: Vec<MachineEvent>,
    /// When the request's receive batch arrived.
    received: Instant,
}

/// What each reply carries through a send: its type (for the counters) and
/// when its request arrived (for the latency histogram).
type ReplyTag = (MessageType, Instant);

/// Serves DHCP on `socket` until `shutdown`, with default [`Limits`].
pub async fn serve(
    socket: DhcpSocket,
    shared: Shared,
    shutdown: CancellationToken,
) -> io::Result<()> {
    serve_with(socket, shared, shutdown, Limits::default()).await
}

/// Serves DHCP on `socket` until `shutdown`.
pub async fn serve_with(
    socket: DhcpSocket,
    shared: Shared,
    shutdown: CancellationToken,
    limits: Limits,
) -> io::Result<()> {
    let data_dir = shared.inventory().services().data_dir.clone();
    let (store, report) = tokio::task::spawn_blocking(move || LeaseStore::open(&data_dir))
        .await
        .map_err(io::Error::other)?
        .map_err(io::Error::other)?;
    let metrics = DhcpMetrics::new(&shared.metrics);
    metrics.corrupt_rows.add(report.corrupt as u64);
    if report.corrupt > 0 {
        warn!(
            corrupt = report.corrupt,
            loaded = report.records,
            "lease log {}: skipped corrupt rows",
            store.path().display()
        );
    }
    let handler = handler_for(shared.inventory(), store.table().clone(), limits);
    // Addresses leased before a restart are known to the leases view too.
    for l in handler.leases().leases() {
        shared.leases.bind(l.mac, l.ip);
    }
    metrics.set_lease_addresses(handler.leases().len());
    run_loops(
        socket,
        shared,
        shutdown,
        handler,
        metrics,
        Some(store),
        "dhcp",
    )
    .await
}

/// Serves the PXE boot server port (4011) on `socket` until `shutdown`:
/// proxyDHCP REQUESTs get their boot information (see the handler's module
/// docs). No lease is ever granted here, so there is no lease store.
pub async fn serve_boot_server(
    socket: DhcpSocket,
    shared: Shared,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let handler = handler_for(shared.inventory(), LeaseTable::default(), Limits::default())
        .on(Listener::BootServer);
    let metrics = DhcpMetrics::new(&shared.metrics);
    run_loops(socket, shared, shutdown, handler, metrics, None, "pxe").await
}

/// The receive loop and (with a store) the lease writer, until `shutdown`.
async fn run_loops(
    socket: DhcpSocket,
    shared: Shared,
    shutdown: CancellationToken,
    handler: DhcpHandler,
    metrics: DhcpMetrics,
    store: Option<LeaseStore>,
    proto: &'static str,
) -> io::Result<()> {
    let local = socket.socket.local_addr()?;
    let mode = socket.mode.clone();
    let replier = Replier::new(mode.clone(), socket.neighbours);
    match &mode {
        SocketMode::Interface(i) => info!("listening for {proto} on {local} (interface {i})"),
        SocketMode::Address => info!("listening for {proto} on {local}"),
    }
    // Both loops are OS threads on the blocking socket: the receive loop
    // takes datagrams in batches (recvmmsg) and sends the replies that need
    // no commit in one sendmmsg; the lease writer blocks in fdatasync and
    // then sends its batch's replies the same way. The receive timeout is
    // how often the loop looks at the shutdown token and for a reload.
    let sock = socket.socket.into_std()?;
    // Blocking for both threads (the clone shares the setting).
    sock.set_nonblocking(false)?;
    let writer_sock = sock.try_clone()?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Pending>(COMMIT_QUEUE);
    let writer = {
        let (state, metrics, mut replier) = (shared.clone(), metrics.clone(), replier.clone());
        std::thread::Builder::new()
            .name("dhcp-lease-writer".into())
            .spawn(move || {
                let _span = info_span!("dhcp-commit").entered();
                match store {
                    Some(store) => {
                        lease_writer(store, &rx, &writer_sock, &state, &metrics, &mut replier)
                    }
                    // Nothing is ever committed on this port; drain until closed.
                    None => while rx.recv().is_ok() {},
                }
            })?
    };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let receiver = {
        let mut rx_loop = RxLoop {
            reload: shared.subscribe(),
            reload_open: true,
            gate: LogGate::new(LOG_INTERVAL),
            leases_seen: handler.leases().len(),
            handler,
            replier,
            shared: shared.clone(),
            metrics,
            commits: tx,
        };
        std::thread::Builder::new()
            .name("dhcp-receive".into())
            .spawn(move || {
                let _span = info_span!("dhcp").entered();
                let opts = WorkerOptions {
                    recv: RecvOptions {
                        batch: RX_BATCH,
                        buf_size: RX_BUF,
                        pktinfo: false,
                        timestamps: false,
                    },
                    send_chunk: TX_CHUNK,
                    poll: POLL_INTERVAL,
                };
                let ended = bootlab_netio::run_worker(&sock, opts, &mut rx_loop, &shutdown);
                let _ = done_tx.send(());
                ended
            })?
    };
    // Wait without holding a runtime thread; the receive loop ends on
    // shutdown (within POLL_INTERVAL) and drops the commit queue, so the
    // writer makes the last batch durable, sends its replies and ends too.
    let _ = done_rx.await;
    let (received, written) = tokio::task::spawn_blocking(move || (receiver.join(), writer.join()))
        .await
        .map_err(io::Error::other)?;
    // A panic in either thread ends the service with an error (the daemon
    // stops and says so) rather than leaving it silently deaf.
    match (received, written) {
        (Ok(Ok(())), Ok(())) => Ok(()),
        // The socket became unusable (EBADF and the like).
        (Ok(Err(e)), _) => Err(io::Error::new(e.kind(), format!("dhcp receive: {e}"))),
        _ => Err(io::Error::other(
            "dhcp: the receive loop or the lease writer panicked",
        )),
    }
}

/// How often the receive loop wakes without traffic to look for shutdown
/// and reloads.
const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// Datagrams taken per `recvmmsg`.
const RX_BATCH: usize = 64;
/// Receive buffer per datagram. Requests are a few hundred bytes (1,500 at
/// most without IP fragmentation); a longer datagram arrives cut
/// (MSG_TRUNC) and is dropped as malformed.
const RX_BUF: usize = 8192;

/// Log lines about one peer at most once per this interval.
const LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// The receive loop's state, run by [`bootlab_netio::run_worker`].
struct RxLoop {
    handler: DhcpHandler,
    reload: tokio::sync::watch::Receiver<std::sync::Arc<bootlab_state::Generation>>,
    reload_open: bool,
    gate: LogGate<std::net::IpAddr>,
    leases_seen: usize,
    replier: Replier,
    shared: Shared,
    metrics: DhcpMetrics,
    commits: std::sync::mpsc::SyncSender<Pending>,
}

impl BatchHandler for RxLoop {
    type Tag = ReplyTag;

    fn before_recv(&mut self) {
        if self.reload_open {
            match self.reload.has_changed() {
                Ok(true) => {
                    let inv = self.reload.borrow_and_update().inventory.clone();
                    let arm64 = arm64_loader_present(&inv.services().assets_dir);
                    self.handler.set_inventory(inv, arm64);
                    info!("dhcp: inventory reloaded; leases kept");
                }
                Ok(false) => {}
                // The publisher is gone: keep serving the last inventory.
                Err(_) => self.reload_open = false,
            }
        }
    }

    fn handle(&mut self, batch: &RecvBatch, out: &mut SendBatch<ReplyTag>) {
        let received = Instant::now();
        let now = SystemTime::now();
        let mut events: Vec<MachineEvent> = Vec::new();
        for (d, payload) in batch.iter() {
            let peer = d.peer;
            let outcome = if d.truncated {
                Outcome {
                    dropped: Some(DropReason::Malformed),
                    note: Some(format!("datagram longer than {RX_BUF} bytes")),
                    ..Outcome::default()
                }
            } else {
                self.handler.handle(payload, now)
            };
            self.metrics.account(&outcome);
            log_outcome(&outcome, peer, &self.gate);
            let Outcome {
                reply,
                commit,
                events: mut ev,
                ..
            } = outcome;
            match commit {
                Some(record) => {
                    let pending = Pending {
                        record,
                        reply,
                        peer,
                        events: ev,
                        received,
                    };
                    if self.commits.try_send(pending).is_err() {
                        self.metrics.commit_failures.inc();
                        warn!("dhcp: commit queue full; request dropped");
                    }
                }
                None => {
                    if let Some(reply) = reply {
                        let to = self.replier.address(peer, reply.to);
                        out.push(&reply.bytes, to, None, (reply.msg_type, received));
                    }
                    events.append(&mut ev);
                }
            }
        }
        // The timeline learns before the replies leave (they go right after
        // this returns).
        apply_events(&self.shared, events);
        let leases = self.handler.leases().len();
        if leases != self.leases_seen {
            self.leases_seen = leases;
            self.metrics.set_lease_addresses(leases);
        }
    }

    fn sent(&mut self, tag: ReplyTag, result: io::Result<()>) {
        count_sent(&self.metrics, tag, result);
    }
}

/// Counts one reply's send and how long its request waited for it.
fn count_sent(metrics: &DhcpMetrics, (msg_type, received): ReplyTag, result: io::Result<()>) {
    match result {
        Ok(()) => {
            metrics.sent(msg_type);
            metrics.reply_latency.observe_duration(received.elapsed());
        }
        Err(e) => {
            metrics.send_errors.inc();
            debug!("dhcp send: {e}");
        }
    }
}

/// Datagrams per `sendmmsg` call at most.
const TX_CHUNK: usize = 64;

fn log_outcome(out: &Outcome, peer: SocketAddr, gate: &LogGate<std::net::IpAddr>) {
    let worth_logging =
        out.dropped.is_some() || !out.malformed_options.is_empty() || out.note.is_some();
    if worth_logging {
        // Once per peer per interval: floods do not flood the log.
        if gate.allow(peer.ip()) {
            let mac = out.mac.map(|m| m.to_string()).unwrap_or_default();
            let xid = out.xid.map(|x| format!("{x:#010x}")).unwrap_or_default();
            let _span = info_span!("dhcp", %mac, %xid, %peer).entered();
            let note = out.note.as_deref().unwrap_or("");
            match out.dropped {
                Some(reason) => info!(reason = reason.as_str(), "dropped: {note}"),
                None if !out.malformed_options.is_empty() => {
                    info!(options = ?out.malformed_options, "malformed options tolerated; {note}");
                }
                None => info!("{note}"),
            }
        }
    }
    if tracing::enabled!(tracing::Level::DEBUG) {
        if let Some(r) = &out.reply {
            debug!(
                mac = ?out.mac,
                xid = ?out.xid,
                %peer,
                "{:?} -> {:?}: {} bytes, left out options {:?}",
                out.received,
                r.msg_type,
                r.bytes.len(),
                r.dropped_options
            );
        }
    }
}

fn apply_events(shared: &Shared, events: Vec<MachineEvent>) {
    for e in events {
        match e {
            MachineEvent::Dhcp { mac, kind, detail } => shared.timeline.dhcp(mac, kind, detail),
            MachineEvent::Bind { mac, ip } => shared.leases.bind(mac, ip),
            MachineEvent::Unbind { ip } => shared.leases.unbind(ip),
        }
    }
}

/// The group commit: one append + fdatasync per batch, then the batch's
/// replies. Runs until the sending side is dropped and the queue is empty.
fn lease_writer(
    mut store: LeaseStore,
    rx: &std::sync::mpsc::Receiver<Pending>,
    sock: &std::net::UdpSocket,
    shared: &Shared,
    metrics: &DhcpMetrics,
    replier: &mut Replier,
) {
    use std::os::fd::AsRawFd as _;
    let fd = sock.as_raw_fd();
    let family = sock.local_addr().map_or(Family::V4, Family::of);
    let mut sender: SendBatch<ReplyTag> = SendBatch::new(family, false, TX_CHUNK);
    let mut batch: Vec<Pending> = Vec::new();
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let records: Vec<LeaseRecord> = batch.iter().map(|p| p.record).collect();
        match store.append(&records) {
            Ok(()) => {
                metrics.commit_batches.inc();
                metrics.committed_records.add(batch.len() as u64);
                let mut events = Vec::new();
                for p in batch.drain(..) {
                    if let Some(reply) = p.reply {
                        let to = replier.address(p.peer, reply.to);
                        sender.push(&reply.bytes, to, None, (reply.msg_type, p.received));
                    }
                    events.extend(p.events);
                }
                sender.flush(fd, |t, r| count_sent(metrics, t, r));
                apply_events(shared, events);
            }
            Err(e) => {
                metrics.commit_failures.add(batch.len() as u64);
                error!("dhcp: {e}; {} replies withheld", batch.len());
                batch.clear();
            }
        }
    }
}
