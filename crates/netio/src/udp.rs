//! Batched UDP with packet info, for IPv4 and IPv6.
//!
//! - [`enable_pktinfo`]: `IP_PKTINFO` on IPv4 sockets, `IPV6_RECVPKTINFO`
//!   on IPv6 ones (IPv4 clients of a dual-stack socket are reported as
//!   v4-mapped addresses), so a server bound to `0.0.0.0` / `[::]` learns
//!   the address each datagram was sent to and answers from it (a client's
//!   connected socket drops replies from any other source).
//! - [`RecvBatch`]: one `recvmmsg` per batch into preallocated buffers,
//!   with each datagram's peer, local address, interface, kernel receive
//!   time and truncation.
//! - [`SendBatch`]: replies collected and sent with `sendmmsg`, one call per
//!   run of replies leaving from the same local address.
//! - [`run_worker`]: the blocking receive -> handle -> send loop a service
//!   runs on one or more OS threads (the hot path: no async machinery per
//!   packet), waking every poll interval to look at its shutdown token.
//! - [`recv_from`] / [`send_from`] / [`send_from_async`]: one datagram at a
//!   time with the same packet info, for tokio sockets (low-rate paths).
//!
//! # Pitfalls handled here
//! - The kernel shrinks a receive header's control length to what it
//!   wrote, and nix does not restore it: one datagram without packet info
//!   (queued before the option was set) would leave its slot blind for
//!   good. With any control messages enabled, the receive headers are made
//!   afresh for every batch.
//! - `sendmmsg` encodes the same control messages into every header of a
//!   call, and a header with control space must carry a valid one: with
//!   packet info, every reply carries an `in_pktinfo`/`in6_pktinfo`
//!   (unspecified source: the kernel picks), and replies are sent in runs
//!   of the same source address.
//! - A send the kernel refuses (an unreachable peer) is reported for that
//!   datagram and skipped; the rest of the batch still goes.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::sys::socket::{
    self, ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, sockopt,
};
use tokio::io::Interest;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// The address family of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `AF_INET`.
    V4,
    /// `AF_INET6` (dual-stack or not).
    V6,
}

impl Family {
    /// The family of a socket bound to `addr`.
    pub fn of(addr: SocketAddr) -> Self {
        if addr.is_ipv4() { Self::V4 } else { Self::V6 }
    }
}

/// One received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    /// Bytes received (at most the buffer size).
    pub len: usize,
    /// The sender.
    pub peer: SocketAddr,
    /// The local address it was sent to (packet info), when reported.
    /// IPv4 clients of a dual-stack socket show as v4-mapped IPv6.
    pub local: Option<IpAddr>,
    /// The interface it arrived on (packet info), 0 when not reported.
    pub ifindex: u32,
    /// When the kernel received it (`SO_TIMESTAMPNS`), when enabled.
    pub kernel_time: Option<SystemTime>,
    /// It was longer than the buffer and arrived cut (`MSG_TRUNC`).
    pub truncated: bool,
    slot: usize,
}

/// Turns on packet info for a socket bound to `local` (see the module docs).
pub fn enable_pktinfo(sock: &impl AsFd, local: SocketAddr) -> io::Result<()> {
    match Family::of(local) {
        Family::V4 => socket::setsockopt(sock, sockopt::Ipv4PacketInfo, &true),
        Family::V6 => socket::setsockopt(sock, sockopt::Ipv6RecvPacketInfo, &true),
    }
    .map_err(io::Error::from)
}

/// Turns on kernel receive timestamps (`SO_TIMESTAMPNS`).
pub fn enable_timestamps(sock: &impl AsFd) -> io::Result<()> {
    socket::setsockopt(sock, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)
}

/// Receive and send buffers that absorb bursts instead of dropping: the
/// forcing variants (root) first, else what the kernel's maximum allows.
/// Best effort.
pub fn grow_buffers(sock: &impl AsFd, recv: usize, send: usize) {
    if socket::setsockopt(sock, sockopt::RcvBufForce, &recv).is_err() {
        let _ = socket::setsockopt(sock, sockopt::RcvBuf, &recv);
    }
    if socket::setsockopt(sock, sockopt::SndBufForce, &send).is_err() {
        let _ = socket::setsockopt(sock, sockopt::SndBuf, &send);
    }
}

fn std_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

/// Control space for packet info of `family` and a timestamp.
fn cmsg_buffer(family: Family, pktinfo: bool, timestamps: bool) -> Option<Vec<u8>> {
    let info = match (pktinfo, family) {
        (false, _) => 0,
        (true, Family::V4) => nix::cmsg_space!(nix::libc::in_pktinfo).capacity(),
        (true, Family::V6) => nix::cmsg_space!(nix::libc::in6_pktinfo).capacity(),
    };
    let ts = if timestamps {
        nix::cmsg_space!(nix::libc::timespec).capacity()
    } else {
        0
    };
    (info + ts > 0).then(|| Vec::with_capacity(info + ts))
}

/// What the control messages of one datagram said.
#[derive(Default)]
struct Ancillary {
    local: Option<IpAddr>,
    ifindex: u32,
    kernel_time: Option<SystemTime>,
}

impl Ancillary {
    fn take(&mut self, c: ControlMessageOwned) {
        match c {
            // A datagram queued before the option was set still gets the
            // control message, with nothing in it (address 0, index 0):
            // that is "not known", not "sent to 0.0.0.0".
            ControlMessageOwned::Ipv4PacketInfo(info) => {
                let local = Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr));
                self.local = (!local.is_unspecified()).then_some(IpAddr::V4(local));
                self.ifindex = u32::try_from(info.ipi_ifindex).unwrap_or(0);
            }
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                let local = Ipv6Addr::from(info.ipi6_addr.s6_addr);
                self.local = (!local.is_unspecified()).then_some(IpAddr::V6(local));
                self.ifindex = info.ipi6_ifindex;
            }
            ControlMessageOwned::ScmTimestampns(ts) => {
                let d = Duration::new(
                    u64::try_from(ts.tv_sec()).unwrap_or(0),
                    u32::try_from(ts.tv_nsec()).unwrap_or(0),
                );
                self.kernel_time = SystemTime::UNIX_EPOCH.checked_add(d);
            }
            _ => {}
        }
    }
}

/// Settings of a [`RecvBatch`].
#[derive(Debug, Clone, Copy)]
pub struct RecvOptions {
    /// Datagrams per `recvmmsg` at most.
    pub batch: usize,
    /// Buffer per datagram; longer ones arrive cut ([`Datagram::truncated`]).
    pub buf_size: usize,
    /// Ask for packet info (the socket must have it enabled).
    pub pktinfo: bool,
    /// Ask for kernel timestamps (the socket must have them enabled).
    pub timestamps: bool,
}

/// Preallocated buffers and headers for `recvmmsg`.
#[derive(Debug)]
pub struct RecvBatch {
    opts: RecvOptions,
    family: Family,
    bufs: Vec<Vec<u8>>,
    headers: MultiHeaders<SockaddrStorage>,
    got: Vec<Datagram>,
}

impl RecvBatch {
    /// Buffers for a socket of `family`.
    pub fn new(family: Family, opts: RecvOptions) -> Self {
        let batch = opts.batch.max(1);
        let opts = RecvOptions { batch, ..opts };
        Self {
            headers: MultiHeaders::preallocate(
                batch,
                cmsg_buffer(family, opts.pktinfo, opts.timestamps),
            ),
            bufs: vec![vec![0u8; opts.buf_size.max(1)]; batch],
            got: Vec::with_capacity(batch),
            opts,
            family,
        }
    }

    /// Waits for at least one datagram (per the socket's blocking mode and
    /// receive timeout) and takes what is queued, up to the batch size.
    /// Datagrams without a sender address are skipped. Returns how many
    /// there are.
    pub fn recv(&mut self, fd: RawFd) -> Result<usize, Errno> {
        self.got.clear();
        if self.opts.pktinfo || self.opts.timestamps {
            // See the module docs: the kernel shrank the control lengths.
            self.headers = MultiHeaders::preallocate(
                self.opts.batch,
                cmsg_buffer(self.family, self.opts.pktinfo, self.opts.timestamps),
            );
        }
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> =
            self.bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
        let results = socket::recvmmsg(
            fd,
            &mut self.headers,
            iovs.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        )?;
        for (slot, r) in results.enumerate() {
            let Some(peer) = r.address.as_ref().and_then(std_addr) else {
                continue;
            };
            let mut anc = Ancillary::default();
            if let Ok(cmsgs) = r.cmsgs() {
                for c in cmsgs {
                    anc.take(c);
                }
            }
            self.got.push(Datagram {
                len: r.bytes,
                peer,
                local: anc.local,
                ifindex: anc.ifindex,
                kernel_time: anc.kernel_time,
                truncated: r.flags.contains(MsgFlags::MSG_TRUNC),
                slot,
            });
        }
        Ok(self.got.len())
    }

    /// The datagrams of the last [`RecvBatch::recv`], with their payloads.
    pub fn iter(&self) -> impl Iterator<Item = (&Datagram, &[u8])> {
        self.got.iter().map(|d| (d, self.payload(d)))
    }

    /// The payload of `d` (one of this batch's datagrams).
    pub fn payload(&self, d: &Datagram) -> &[u8] {
        &self.bufs[d.slot][..d.len.min(self.bufs[d.slot].len())]
    }

    /// Datagrams in the last batch.
    pub fn len(&self) -> usize {
        self.got.len()
    }

    /// True when the last batch had none.
    pub fn is_empty(&self) -> bool {
        self.got.is_empty()
    }

    /// The buffer size per datagram.
    pub fn buf_size(&self) -> usize {
        self.opts.buf_size
    }
}

/// One reply waiting in a [`SendBatch`].
#[derive(Debug)]
struct Pending<T> {
    start: usize,
    end: usize,
    to: SocketAddr,
    from: Option<IpAddr>,
    tag: T,
}

/// Replies collected for `sendmmsg`. With packet info, each reply leaves
/// from its `from` address (or where the kernel routes it when `None`);
/// without, `from` is ignored. `T` is a caller's tag per reply, handed
/// back with the outcome of its send.
#[derive(Debug)]
pub struct SendBatch<T = ()> {
    family: Family,
    pktinfo: bool,
    chunk: usize,
    arena: Vec<u8>,
    items: Vec<Pending<T>>,
    outcomes: Vec<Option<io::Error>>,
    headers: MultiHeaders<SockaddrStorage>,
}

impl<T> SendBatch<T> {
    /// Sends of up to `chunk` datagrams per call for a socket of `family`;
    /// `pktinfo`: replies carry their source address.
    pub fn new(family: Family, pktinfo: bool, chunk: usize) -> Self {
        let chunk = chunk.max(1);
        Self {
            family,
            pktinfo,
            chunk,
            arena: Vec::new(),
            items: Vec::with_capacity(chunk),
            outcomes: Vec::with_capacity(chunk),
            headers: MultiHeaders::preallocate(chunk, cmsg_buffer(family, pktinfo, false)),
        }
    }

    /// Queues `data` for `to`, from `from`.
    pub fn push(&mut self, data: &[u8], to: SocketAddr, from: Option<IpAddr>, tag: T) {
        let start = self.arena.len();
        self.arena.extend_from_slice(data);
        self.items.push(Pending {
            start,
            end: self.arena.len(),
            to,
            from: if self.pktinfo { from } else { None },
            tag,
        });
    }

    /// Replies queued.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sends everything queued (blocking while the socket buffer is full),
    /// calls `done` with each reply's tag and outcome, and empties the
    /// batch.
    pub fn flush(&mut self, fd: RawFd, mut done: impl FnMut(T, io::Result<()>)) {
        if self.items.is_empty() {
            return;
        }
        // Taken out and put back, so both keep their capacity batch after
        // batch (no allocation on the hot path).
        let mut items = std::mem::take(&mut self.items);
        let mut outcomes = std::mem::take(&mut self.outcomes);
        outcomes.clear();
        let mut start = 0;
        while start < items.len() {
            let from = items[start].from;
            let end = items[start..]
                .iter()
                .position(|p| p.from != from)
                .map_or(items.len(), |n| start + n);
            let mut run = start;
            while run < end {
                let stop = end.min(run + self.chunk);
                run += self.send_chunk(fd, &items[run..stop], from, &mut outcomes);
            }
            start = end;
        }
        for (p, e) in items.drain(..).zip(outcomes.drain(..)) {
            done(p.tag, e.map_or(Ok(()), Err));
        }
        self.items = items;
        self.outcomes = outcomes;
        self.arena.clear();
    }

    /// One `sendmmsg` (repeated while the kernel takes part of it); pushes
    /// one outcome per datagram it dealt with and returns how many.
    fn send_chunk(
        &mut self,
        fd: RawFd,
        items: &[Pending<T>],
        from: Option<IpAddr>,
        outcomes: &mut Vec<Option<io::Error>>,
    ) -> usize {
        let slices: Vec<[IoSlice<'_>; 1]> = items
            .iter()
            .map(|p| [IoSlice::new(&self.arena[p.start..p.end])])
            .collect();
        let addrs: Vec<Option<SockaddrStorage>> = items
            .iter()
            .map(|p| Some(SockaddrStorage::from(p.to)))
            .collect();
        let info = self.pktinfo.then(|| PacketInfo::new(self.family, from));
        let cmsgs: Vec<ControlMessage<'_>> = info.iter().map(PacketInfo::cmsg).collect();
        let mut done = 0;
        while done < items.len() {
            match socket::sendmmsg(
                fd,
                &mut self.headers,
                slices[done..].iter(),
                &addrs[done..],
                &cmsgs,
                MsgFlags::empty(),
            ) {
                Ok(results) => {
                    let n = results.count();
                    if n == 0 {
                        break;
                    }
                    outcomes.extend((0..n).map(|_| None));
                    done += n;
                }
                Err(Errno::EINTR) => {}
                Err(e) => {
                    // Skip the datagram that failed (e.g. an unreachable peer).
                    outcomes.push(Some(io::Error::from(e)));
                    done += 1;
                }
            }
        }
        // A call that took nothing: the rest is reported as not sent.
        for _ in done..items.len() {
            outcomes.push(Some(io::Error::from(io::ErrorKind::WouldBlock)));
        }
        items.len()
    }
}

/// A source address as packet info of one family.
enum PacketInfo {
    V4(nix::libc::in_pktinfo),
    V6(nix::libc::in6_pktinfo),
}

impl PacketInfo {
    fn new(family: Family, from: Option<IpAddr>) -> Self {
        match family {
            Family::V4 => {
                let ip = match from {
                    Some(IpAddr::V4(ip)) => ip,
                    Some(IpAddr::V6(v6)) => v6.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
                    None => Ipv4Addr::UNSPECIFIED,
                };
                Self::V4(nix::libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: nix::libc::in_addr {
                        s_addr: u32::from(ip).to_be(),
                    },
                    ipi_addr: nix::libc::in_addr { s_addr: 0 },
                })
            }
            Family::V6 => {
                let ip = match from {
                    Some(IpAddr::V6(ip)) => ip,
                    Some(IpAddr::V4(v4)) => v4.to_ipv6_mapped(),
                    None => Ipv6Addr::UNSPECIFIED,
                };
                Self::V6(nix::libc::in6_pktinfo {
                    ipi6_addr: nix::libc::in6_addr {
                        s6_addr: ip.octets(),
                    },
                    ipi6_ifindex: 0,
                })
            }
        }
    }

    fn cmsg(&self) -> ControlMessage<'_> {
        match self {
            Self::V4(i) => ControlMessage::Ipv4PacketInfo(i),
            Self::V6(i) => ControlMessage::Ipv6PacketInfo(i),
        }
    }
}

/// Sends one datagram to `to`, from `from` when given (packet info), on a
/// blocking or non-blocking socket.
pub fn send_from(
    sock: &impl AsRawFd,
    data: &[u8],
    to: SocketAddr,
    from: Option<IpAddr>,
) -> io::Result<()> {
    let dest = SockaddrStorage::from(to);
    let info = from.map(|f| PacketInfo::new(Family::of(to), Some(f)));
    let cmsgs: Vec<ControlMessage<'_>> = info.iter().map(PacketInfo::cmsg).collect();
    socket::sendmsg(
        sock.as_raw_fd(),
        &[IoSlice::new(data)],
        &cmsgs,
        MsgFlags::empty(),
        Some(&dest),
    )
    .map(drop)
    .map_err(io::Error::from)
}

/// [`send_from`] on a tokio socket, waiting while its buffer is full.
pub async fn send_from_async(
    sock: &tokio::net::UdpSocket,
    data: &[u8],
    to: SocketAddr,
    from: Option<IpAddr>,
) -> io::Result<()> {
    sock.async_io(Interest::WRITABLE, || send_from(sock, data, to, from))
        .await
}

/// Receives one datagram on a tokio socket into `buf`, with its packet
/// info and kernel timestamp when the socket has them enabled. Datagrams
/// without a sender and ICMP errors queued from earlier sends are skipped.
pub async fn recv_from(sock: &tokio::net::UdpSocket, buf: &mut [u8]) -> io::Result<Datagram> {
    let mut cmsg = nix::cmsg_space!(nix::libc::in6_pktinfo, nix::libc::timespec);
    loop {
        let res = sock
            .async_io(Interest::READABLE, || {
                let mut iov = [IoSliceMut::new(buf)];
                let msg = socket::recvmsg::<SockaddrStorage>(
                    sock.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::MSG_DONTWAIT,
                )
                .map_err(io::Error::from)?;
                let mut anc = Ancillary::default();
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        anc.take(c);
                    }
                }
                Ok((
                    msg.bytes,
                    msg.address.as_ref().and_then(std_addr),
                    anc,
                    msg.flags.contains(MsgFlags::MSG_TRUNC),
                ))
            })
            .await;
        match res {
            Ok((len, Some(peer), anc, truncated)) => {
                return Ok(Datagram {
                    len,
                    peer,
                    local: anc.local,
                    ifindex: anc.ifindex,
                    kernel_time: anc.kernel_time,
                    truncated,
                    slot: 0,
                });
            }
            Ok((_, None, _, _)) => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(e),
        }
    }
}

/// What a service does with each batch a [`run_worker`] loop receives.
pub trait BatchHandler {
    /// The caller's tag per reply (see [`SendBatch`]).
    type Tag;

    /// Called before every receive (also after a receive timeout): the
    /// place to pick up a reloaded configuration.
    fn before_recv(&mut self) {}

    /// Handles one batch; replies go into `out` and are sent after this
    /// returns.
    fn handle(&mut self, batch: &RecvBatch, out: &mut SendBatch<Self::Tag>);

    /// The outcome of one reply's send.
    fn sent(&mut self, _tag: Self::Tag, _result: io::Result<()>) {}
}

/// Settings of a [`run_worker`] loop.
#[derive(Debug, Clone, Copy)]
pub struct WorkerOptions {
    /// How datagrams are received.
    pub recv: RecvOptions,
    /// Replies per `sendmmsg` call at most.
    pub send_chunk: usize,
    /// How often the loop wakes without traffic to look at shutdown.
    pub poll: Duration,
}

/// Runs receive -> [`BatchHandler::handle`] -> send on the calling thread
/// until `shutdown` is cancelled (seen within `opts.poll`). Sets the
/// socket blocking with a receive timeout of `opts.poll` (the setting is
/// shared by every clone of the socket).
pub fn run_worker<H: BatchHandler>(
    sock: &std::net::UdpSocket,
    opts: WorkerOptions,
    handler: &mut H,
    shutdown: &CancellationToken,
) -> io::Result<()> {
    let family = Family::of(sock.local_addr()?);
    sock.set_nonblocking(false)?;
    sock.set_read_timeout(Some(opts.poll.max(Duration::from_millis(1))))?;
    let fd = sock.as_raw_fd();
    let mut batch = RecvBatch::new(family, opts.recv);
    let mut out: SendBatch<H::Tag> = SendBatch::new(family, opts.recv.pktinfo, opts.send_chunk);
    while !shutdown.is_cancelled() {
        handler.before_recv();
        match batch.recv(fd) {
            Ok(_) => {}
            // Timeout (no traffic) or a signal: look at shutdown again.
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            Err(e @ (Errno::EBADF | Errno::ENOTSOCK | Errno::EINVAL)) => {
                return Err(io::Error::from(e));
            }
            Err(e) => {
                // ICMP errors from earlier sends surface here; keep going.
                debug!("udp receive: {e}");
                continue;
            }
        }
        handler.handle(&batch, &mut out);
        out.flush(fd, |tag, r| handler.sent(tag, r));
    }
    Ok(())
}
