//! Socket plumbing: learning which local address a request was sent to
//! (packet info through `bootlab_netio`, so a server bound to `0.0.0.0` or
//! `[::]` answers from the address the client talked to), opening the per-transfer socket (a new port, the
//! transfer ID of RFC 1350, connected to the client) and reading its path
//! MTU (`IP_MTU`) to clamp `blksize`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use nix::sys::socket::{self, sockopt};
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

/// Asks the kernel to report each datagram's local address (IPv4 and
/// IPv6, through `bootlab_netio`).
pub fn enable_pktinfo(sock: &UdpSocket) -> io::Result<()> {
    bootlab_netio::enable_pktinfo(sock, sock.local_addr()?)?;
    // A bigger receive queue absorbs bursts of requests (many machines
    // powering on at once). Best effort: the kernel caps it at rmem_max.
    let _ = socket::setsockopt(sock, sockopt::RcvBuf, &(1 << 20));
    Ok(())
}

/// Receives one datagram and where it was sent to.
pub async fn recv_request(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<Received> {
    let bound = sock.local_addr()?;
    let d = bootlab_netio::recv_from(sock, buf).await?;
    Ok(Received {
        len: d.len,
        peer: d.peer,
        local: d.local.unwrap_or(bound.ip()),
        truncated: d.truncated,
    })
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
