//! Socket plumbing: learning which local address a request was sent to
//! (`IP_PKTINFO`, so a server bound to `0.0.0.0` answers from the address
//! the client talked to), opening the per-transfer socket (a new port, the
//! transfer ID of RFC 1350, connected to the client) and reading its path
//! MTU (`IP_MTU`) to clamp `blksize`.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;

use nix::sys::socket::{self, ControlMessageOwned, MsgFlags, sockopt};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// One datagram from the listening socket.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// Bytes in the buffer.
    pub len: usize,
    /// The client.
    pub peer: SocketAddr,
    /// The local address the datagram was sent to (the address to answer
    /// from).
    pub local: IpAddr,
    /// The datagram did not fit the buffer.
    pub truncated: bool,
}

/// Asks the kernel to report each IPv4 datagram's local address. A no-op
/// for IPv6 sockets (answers then come from the bound address).
pub fn enable_pktinfo(sock: &UdpSocket) -> io::Result<()> {
    if sock.local_addr()?.is_ipv4() {
        socket::setsockopt(sock, sockopt::Ipv4PacketInfo, &true).map_err(io::Error::from)?;
    }
    // A bigger receive queue absorbs bursts of requests (many machines
    // powering on at once). Best effort: the kernel caps it at rmem_max.
    let _ = socket::setsockopt(sock, sockopt::RcvBuf, &(1 << 20));
    Ok(())
}

/// Receives one datagram and where it was sent to.
pub async fn recv_request(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<Received> {
    let bound = sock.local_addr()?;
    let mut cmsg = nix::cmsg_space!(nix::libc::in_pktinfo);
    loop {
        let res = sock
            .async_io(Interest::READABLE, || {
                let mut iov = [IoSliceMut::new(buf)];
                let msg = socket::recvmsg::<socket::SockaddrStorage>(
                    sock.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::MSG_DONTWAIT,
                )
                .map_err(io::Error::from)?;
                let mut local = bound.ip();
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::Ipv4PacketInfo(info) = c {
                            local =
                                IpAddr::V4(Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr)));
                        }
                    }
                }
                let peer = msg.address.and_then(|a| {
                    a.as_sockaddr_in()
                        .map(|v4| SocketAddr::V4(SocketAddrV4::new(v4.ip(), v4.port())))
                        .or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into())))
                });
                Ok((
                    msg.bytes,
                    peer,
                    local,
                    msg.flags.contains(MsgFlags::MSG_TRUNC),
                ))
            })
            .await;
        match res {
            Ok((len, Some(peer), local, truncated)) => {
                return Ok(Received {
                    len,
                    peer,
                    local,
                    truncated,
                });
            }
            // No source address: nothing to answer; wait for the next one.
            Ok((_, None, _, _)) => continue,
            // An ICMP error queued on the socket from an earlier send: not
            // fatal for a listening socket.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Opens a transfer socket on `local` (new port) connected to `peer`.
pub fn open_transfer_socket(local: IpAddr, peer: SocketAddr) -> io::Result<UdpSocket> {
    let std_sock = open_std_socket(local, peer)?;
    std_sock.set_nonblocking(true)?;
    UdpSocket::from_std(std_sock)
}

/// Sends one datagram to `peer` from a new port on `local` (ERROR replies
/// to requests that start no transfer). A fresh socket's send buffer is
/// empty, so this does not block.
pub fn send_once(local: IpAddr, peer: SocketAddr, datagram: &[u8]) -> io::Result<()> {
    open_std_socket(local, peer)?.send(datagram).map(|_| ())
}

fn open_std_socket(local: IpAddr, peer: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let local = match (local, peer) {
        // An IPv4 client on a dual-stack socket: answer over IPv4.
        (IpAddr::V6(v6), SocketAddr::V4(_)) => v6
            .to_ipv4_mapped()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V4),
        (l, _) => l,
    };
    let std_sock = std::net::UdpSocket::bind(SocketAddr::new(local, 0))?;
    std_sock.connect(peer)?;
    Ok(std_sock)
}

/// The kernel's path MTU estimate for a connected IPv4 socket.
pub fn path_mtu(sock: &UdpSocket) -> Option<u32> {
    if !sock.local_addr().ok()?.is_ipv4() {
        return None;
    }
    socket::getsockopt(sock, sockopt::IpMtu)
        .ok()
        .and_then(|m| u32::try_from(m).ok())
}
