//! Loopback addresses for tests, without free-port races where the test
//! can avoid them.
//!
//! Prefer binding port 0 and handing the socket over (in process, or to
//! bootlabd with [`crate::Sockets`]). [`refused_addr`] reserves a port
//! nothing will ever accept on for as long as the test holds it;
//! [`tcp_on_one_port`] binds several addresses on one port at once, and
//! [`udp_and_tcp`] UDP and TCP on one port. Only a
//! program that must bind an address itself (a reconfigured balancer,
//! haproxy) gets a [`free_addr`], which is free when returned and may in
//! principle be taken before the program binds it.

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};

use socket2::{Domain, Socket, Type};

/// A loopback port free for both TCP and UDP a moment ago (for programs
/// that bind it themselves).
pub fn free_port() -> u16 {
    loop {
        let t = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = t.local_addr().expect("local addr").port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// `127.0.0.1:<port>` with nothing bound on it a moment ago (for programs
/// that bind it themselves).
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
}

/// A loopback TCP address that refuses every connection for as long as
/// this is held: the port is bound (without `SO_REUSEADDR`, so nothing
/// else can take it) but never listens.
#[derive(Debug)]
pub struct RefusedAddr {
    addr: SocketAddr,
    _socket: Socket,
}

impl RefusedAddr {
    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Reserves a loopback port that refuses connections; see [`RefusedAddr`].
pub fn refused_addr() -> RefusedAddr {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("tcp socket");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    socket.bind(&any.into()).expect("bind 127.0.0.1:0");
    let addr = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("local addr");
    RefusedAddr {
        addr,
        _socket: socket,
    }
}

/// TCP listeners on every one of `ips`, all on the same port (backends a
/// balancer reaches on one `backend_port`), bound before they are returned.
pub fn tcp_on_one_port(ips: &[IpAddr]) -> (u16, Vec<TcpListener>) {
    let (first, rest) = ips.split_first().expect("at least one address");
    loop {
        let l = TcpListener::bind((*first, 0)).expect("bind port 0");
        let port = l.local_addr().expect("local addr").port();
        let others: Result<Vec<_>, _> = rest
            .iter()
            .map(|ip| TcpListener::bind((*ip, port)))
            .collect();
        if let Ok(mut others) = others {
            others.insert(0, l);
            return (port, others);
        }
    }
}

/// A UDP socket and a TCP listener on the same loopback port (DNS: a
/// client like kdig takes one port for both), both bound now.
pub fn udp_and_tcp() -> (UdpSocket, TcpListener) {
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").expect("bind udp 127.0.0.1:0");
        let port = u.local_addr().expect("local addr").port();
        if let Ok(t) = TcpListener::bind(("127.0.0.1", port)) {
            return (u, t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_address_refuses_and_cannot_be_taken() {
        let r = refused_addr();
        let err = std::net::TcpStream::connect(r.addr()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(TcpListener::bind(r.addr()).is_err(), "port taken over");
    }

    #[test]
    fn listeners_on_one_port() {
        let ips: Vec<IpAddr> = vec![[127, 0, 0, 10].into(), [127, 0, 0, 11].into()];
        let (port, ls) = tcp_on_one_port(&ips);
        assert_eq!(ls.len(), 2);
        for (l, ip) in ls.iter().zip(&ips) {
            assert_eq!(l.local_addr().unwrap(), SocketAddr::new(*ip, port));
        }
    }
}
