//! The socket loops: receive, hand to [`DhcpHandler`], send. Both are OS
//! threads on the blocking socket (no async machinery per packet): the
//! receive loop takes datagrams in `recvmmsg` batches and sends the replies
//! that need no commit with one `sendmmsg`; replies that grant or change a
//! lease go through the group commit first: the lease writer thread
//! collects every pending lease record, appends them in one write with one
//! `fdatasync`, and only then sends their replies. While it syncs, the
//! receive loop keeps answering, so the next batch fills up.
//!
//! Two socket modes:
//! - interface mode (`services.interface`, or the NIC whose MAC is
//!   `services.mac` when listening on 0.0.0.0): bound to the device with
//!   `SO_BINDTODEVICE`, broadcast replies go to 255.255.255.255:68 there;
//! - address mode (anything else: loopback tests, relayed setups): a plain
//!   UDP socket on `services.listen.dhcp`; "broadcast" replies go back to
//!   the sender's address.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::time::SystemTime;

use bootlab_boot::decision::ARM64_LOADER;
use bootlab_inventory::{Inventory, MacAddr};
use bootlab_state::Shared;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, info_span, warn};

use crate::handler::{DhcpHandler, DropReason, Limits, MachineEvent, Outcome, Outgoing, ReplyTo};
use crate::leases::{LeaseRecord, LeaseStore};
use crate::metrics::DhcpMetrics;
use crate::ratelimit::LogGate;

/// Pending lease records the commit queue holds at most; beyond that,
/// requests are dropped (the client retries).
const COMMIT_QUEUE: usize = 65_536;
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
}

/// The interface whose MAC is `mac`, from `/sys/class/net`.
pub fn interface_by_mac(mac: MacAddr) -> Option<String> {
    let dir = std::fs::read_dir("/sys/class/net").ok()?;
    for entry in dir.flatten() {
        let addr = std::fs::read_to_string(entry.path().join("address")).ok()?;
        if addr.trim().parse::<MacAddr>().ok() == Some(mac) {
            return entry.file_name().into_string().ok();
        }
    }
    None
}

/// Binds the DHCP socket for `inv` (see the module docs for the modes).
/// Must be called inside a Tokio runtime.
pub fn bind(inv: &Inventory) -> io::Result<DhcpSocket> {
    let listen = inv.services().listen.dhcp;
    let interface = inv.services().interface.clone().or_else(|| {
        if listen.ip().is_unspecified() {
            interface_by_mac(inv.services().mac)
        } else {
            None
        }
    });
    match interface {
        Some(ifname) => bind_interface(&ifname, listen.port()),
        None => bind_address(listen),
    }
}

/// Binds `0.0.0.0:port` on `ifname` with `SO_BINDTODEVICE` and `SO_BROADCAST`.
pub fn bind_interface(ifname: &str, port: u16) -> io::Result<DhcpSocket> {
    DhcpSocket::from_std(
        interface_socket(ifname, port)?,
        SocketMode::Interface(ifname.to_owned()),
    )
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
        })
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
    })
}

/// Socket buffers that absorb bursts (and scheduling hiccups on a busy
/// host) instead of dropping requests: 4 MiB for receiving, 1 MiB for
/// sending. The forcing variants pass `rmem_max` when running as root; a
/// refusal is not fatal.
fn grow_buffers(s: &socket2::Socket) {
    use nix::sys::socket::{setsockopt, sockopt};
    const RECV: usize = 4 << 20;
    const SEND: usize = 1 << 20;
    if setsockopt(s, sockopt::RcvBufForce, &RECV).is_err() {
        let _ = s.set_recv_buffer_size(RECV);
    }
    if setsockopt(s, sockopt::SndBufForce, &SEND).is_err() {
        let _ = s.set_send_buffer_size(SEND);
    }
}

fn arm64_loader_present(assets: &Path) -> bool {
    assets.join(ARM64_LOADER).is_file()
}

/// Where a reply goes, as a socket address.
pub fn reply_address(mode: &SocketMode, peer: SocketAddr, to: ReplyTo) -> SocketAddr {
    match to {
        ReplyTo::Relay(g) if peer.ip() == g => peer,
        ReplyTo::Relay(g) => SocketAddrV4::new(g, SERVER_PORT).into(),
        ReplyTo::Client(ci) if peer.ip() == ci => peer,
        ReplyTo::Client(ci) => SocketAddrV4::new(ci, CLIENT_PORT).into(),
        ReplyTo::Broadcast => match mode {
            SocketMode::Interface(_) => SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT).into(),
            SocketMode::Address => peer,
        },
    }
}

/// A reply waiting for its lease record to be durable.
struct Pending {
    record: LeaseRecord,
    reply: Option<Outgoing>,
    peer: SocketAddr,
    events: Vec<MachineEvent>,
}

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
    let inv = shared.inventory();
    let data_dir = inv.services().data_dir.clone();
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
    let handler = DhcpHandler::new(
        inv.clone(),
        store.table().clone(),
        arm64_loader_present(&inv.services().assets_dir),
        limits,
    );
    // Addresses leased before a restart are known to the leases view too.
    for l in handler.leases().leases() {
        shared.leases.bind(l.mac, l.ip);
    }
    metrics.set_lease_addresses(handler.leases().len());
    let local = socket.socket.local_addr()?;
    let mode = socket.mode.clone();
    match &mode {
        SocketMode::Interface(i) => info!("listening for dhcp on {local} (interface {i})"),
        SocketMode::Address => info!("listening for dhcp on {local}"),
    }
    // Both loops are OS threads on the blocking socket: the receive loop
    // takes datagrams in batches (recvmmsg) and sends the replies that need
    // no commit in one sendmmsg; the lease writer blocks in fdatasync and
    // then sends its batch's replies the same way. The receive timeout is
    // how often the loop looks at the shutdown token and for a reload.
    let sock = socket.socket.into_std()?;
    sock.set_nonblocking(false)?;
    sock.set_read_timeout(Some(POLL_INTERVAL))?;
    let writer_sock = sock.try_clone()?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Pending>(COMMIT_QUEUE);
    let writer = {
        let (state, metrics, mode) = (shared.clone(), metrics.clone(), mode.clone());
        std::thread::Builder::new()
            .name("dhcp-lease-writer".into())
            .spawn(move || {
                let _span = info_span!("dhcp-commit").entered();
                lease_writer(store, &rx, &writer_sock, &state, &metrics, &mode);
            })?
    };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let receiver = {
        let ctx = RxContext {
            sock,
            mode,
            shared: shared.clone(),
            metrics,
            shutdown,
            commits: tx,
        };
        std::thread::Builder::new()
            .name("dhcp-receive".into())
            .spawn(move || {
                let _span = info_span!("dhcp").entered();
                receive_loop(ctx, handler);
                let _ = done_tx.send(());
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
    if received.is_err() || written.is_err() {
        return Err(io::Error::other(
            "dhcp: the receive loop or the lease writer panicked",
        ));
    }
    Ok(())
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

/// What the receive loop owns.
struct RxContext {
    sock: std::net::UdpSocket,
    mode: SocketMode,
    shared: Shared,
    metrics: DhcpMetrics,
    shutdown: CancellationToken,
    commits: std::sync::mpsc::SyncSender<Pending>,
}

fn receive_loop(ctx: RxContext, mut handler: DhcpHandler) {
    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
    use std::io::IoSliceMut;
    use std::os::fd::AsRawFd as _;

    let RxContext {
        sock,
        mode,
        shared,
        metrics,
        shutdown,
        commits,
    } = ctx;
    let fd = sock.as_raw_fd();
    let mut reload = shared.subscribe();
    let mut reload_open = true;
    let mut gate: LogGate<std::net::IpAddr> = LogGate::new(10_000, 4096);
    let mut bufs = vec![[0u8; RX_BUF]; RX_BATCH];
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(RX_BATCH, None);
    let mut received: Vec<(usize, Option<SocketAddr>, bool)> = Vec::with_capacity(RX_BATCH);
    let mut sender = BatchSender::new(RX_BATCH);
    let mut leases_seen = handler.leases().len();
    while !shutdown.is_cancelled() {
        if reload_open {
            match reload.has_changed() {
                Ok(true) => {
                    let inv = reload.borrow_and_update().inventory.clone();
                    let arm64 = arm64_loader_present(&inv.services().assets_dir);
                    handler.set_inventory(inv, arm64);
                    info!("dhcp: inventory reloaded; leases kept");
                }
                Ok(false) => {}
                // The publisher is gone: keep serving the last inventory.
                Err(_) => reload_open = false,
            }
        }
        received.clear();
        {
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> =
                bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
            match recvmmsg(
                fd,
                &mut headers,
                iovs.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(results) => received.extend(results.map(|r| {
                    let peer = r.address.as_ref().and_then(|a| {
                        a.as_sockaddr_in()
                            .map(|v4| SocketAddr::V4((*v4).into()))
                            .or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into())))
                    });
                    (r.bytes, peer, r.flags.contains(MsgFlags::MSG_TRUNC))
                })),
                // Timeout (no traffic) or a signal: look at shutdown again.
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    // ICMP errors from earlier sends surface here; keep going.
                    debug!("dhcp recv: {e}");
                    continue;
                }
            }
        }
        let now = SystemTime::now();
        let mut events: Vec<MachineEvent> = Vec::new();
        for (i, &(len, peer, truncated)) in received.iter().enumerate() {
            let Some(peer) = peer else { continue };
            let out = if truncated {
                Outcome {
                    dropped: Some(DropReason::Malformed),
                    note: Some(format!("datagram longer than {RX_BUF} bytes")),
                    ..Outcome::default()
                }
            } else {
                handler.handle(&bufs[i][..len], now)
            };
            metrics.account(&out);
            log_outcome(&out, peer, &mut gate);
            let Outcome {
                reply,
                commit,
                events: mut ev,
                ..
            } = out;
            match commit {
                Some(record) => {
                    let pending = Pending {
                        record,
                        reply,
                        peer,
                        events: ev,
                    };
                    if commits.try_send(pending).is_err() {
                        metrics.commit_failures.inc();
                        warn!("dhcp: commit queue full; request dropped");
                    }
                }
                None => {
                    if let Some(reply) = reply {
                        sender.push(reply_address(&mode, peer, reply.to), reply);
                    }
                    events.append(&mut ev);
                }
            }
        }
        sender.flush(fd, &metrics);
        apply_events(&shared, events);
        let leases = handler.leases().len();
        if leases != leases_seen {
            leases_seen = leases;
            metrics.set_lease_addresses(leases);
        }
    }
}

/// Replies collected for one `sendmmsg`.
struct BatchSender {
    replies: Vec<(SocketAddr, Outgoing)>,
    /// Made once; a larger batch goes out in several `sendmmsg` calls.
    headers: nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>,
}

/// Datagrams per `sendmmsg` call at most.
const TX_CHUNK: usize = 64;

impl BatchSender {
    fn new(capacity: usize) -> Self {
        Self {
            replies: Vec::with_capacity(capacity),
            headers: nix::sys::socket::MultiHeaders::preallocate(TX_CHUNK, None),
        }
    }

    fn push(&mut self, to: SocketAddr, reply: Outgoing) {
        self.replies.push((to, reply));
    }

    /// Sends everything collected (blocking while the socket buffer is
    /// full), counts it and empties the batch. A datagram the kernel
    /// refuses (an unreachable relay, say) is counted and skipped.
    fn flush(&mut self, fd: std::os::fd::RawFd, metrics: &DhcpMetrics) {
        use nix::sys::socket::{MsgFlags, SockaddrStorage, sendmmsg};
        use std::io::IoSlice;
        if self.replies.is_empty() {
            return;
        }
        let slices: Vec<[IoSlice<'_>; 1]> = self
            .replies
            .iter()
            .map(|(_, r)| [IoSlice::new(&r.bytes)])
            .collect();
        let addrs: Vec<Option<SockaddrStorage>> = self
            .replies
            .iter()
            .map(|(to, _)| Some(SockaddrStorage::from(*to)))
            .collect();
        let mut done = 0;
        while done < slices.len() {
            match sendmmsg(
                fd,
                &mut self.headers,
                slices[done..].iter(),
                &addrs[done..],
                [],
                MsgFlags::empty(),
            ) {
                Ok(results) => {
                    let n = results.count();
                    for (_, r) in &self.replies[done..done + n] {
                        metrics.sent(r.msg_type);
                    }
                    if n == 0 {
                        break;
                    }
                    done += n;
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    metrics.send_errors.inc();
                    debug!("dhcp send to {}: {e}", self.replies[done].0);
                    done += 1;
                }
            }
        }
        self.replies.clear();
    }
}

fn log_outcome(out: &Outcome, peer: SocketAddr, gate: &mut LogGate<std::net::IpAddr>) {
    let worth_logging =
        out.dropped.is_some() || !out.malformed_options.is_empty() || out.note.is_some();
    if worth_logging {
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        // Once per peer per interval: floods do not flood the log.
        if gate.allow(peer.ip(), now_ms) {
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
    mode: &SocketMode,
) {
    use std::os::fd::AsRawFd as _;
    let fd = sock.as_raw_fd();
    let mut sender = BatchSender::new(MAX_BATCH);
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
                        sender.push(reply_address(mode, p.peer, reply.to), reply);
                    }
                    events.extend(p.events);
                }
                sender.flush(fd, metrics);
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
