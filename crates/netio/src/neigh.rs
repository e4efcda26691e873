//! Writing IPv4 neighbour (ARP) entries over rtnetlink, so a server can
//! unicast to a client that does not have its address yet.
//!
//! RFC 2131 4.1: a DHCP server answers a client that has no address (no
//! `ciaddr`, broadcast bit clear) by unicasting to `yiaddr` at `chaddr`.
//! The kernel cannot resolve `yiaddr` (the client does not answer ARP for
//! an address it does not have yet), so the server writes the neighbour
//! entry itself first, as dnsmasq does with `SIOCSARP` and Kea with its raw
//! sockets. Broadcasting instead costs every host on the link a wake-up per
//! answer, and the TFTP and HTTP replies that follow each start with an ARP
//! broadcast; in a 500-client boot storm that was the slow start of the TFTP
//! phase (bench/storm.sh).
//!
//! The entry is written `STALE` (what `SIOCSARP` writes and what
//! `ip neigh replace IP lladdr MAC nud stale` writes): the kernel uses it at
//! once, confirms it with a unicast probe if traffic continues, and may
//! collect it like any learned entry. Writing needs `CAP_NET_ADMIN` in the
//! network namespace the [`Neighbours`] handle was opened in, which must be
//! the device's: open it where the device is.
//!
//! rtnetlink messages are built by `netlink-packet-route` and sent on a
//! `netlink-sys` socket (no unsafe code here).

use std::io;
use std::net::Ipv4Addr;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourHeader, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::RouteType;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// A handle that writes neighbour entries on one network interface.
#[derive(Debug)]
pub struct Neighbours {
    socket: Socket,
    ifindex: u32,
    ifname: String,
    seq: u32,
    out: Vec<u8>,
    ack: Vec<u8>,
}

impl Neighbours {
    /// Opens a route netlink socket in the calling thread's network
    /// namespace for the interface `ifname` there.
    pub fn open(ifname: &str) -> io::Result<Self> {
        let ifindex = nix::net::if_::if_nametoindex(ifname)
            .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("{ifname}: {e}")))?;
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Self {
            socket,
            ifindex,
            ifname: ifname.to_owned(),
            seq: 0,
            out: Vec::with_capacity(128),
            ack: vec![0; 1024],
        })
    }

    /// The interface's name.
    pub fn interface(&self) -> &str {
        &self.ifname
    }

    /// Writes (or replaces) the entry `ip` -> `mac`. Returns the kernel's
    /// refusal as an error (`EPERM` without `CAP_NET_ADMIN`, `ENOBUFS`
    /// when the neighbour table is full of entries it cannot collect).
    pub fn set(&mut self, ip: Ipv4Addr, mac: [u8; 6]) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let header = NeighbourHeader {
            family: AddressFamily::Inet,
            ifindex: self.ifindex,
            state: NeighbourState::Stale,
            kind: RouteType::Unicast,
            ..NeighbourHeader::default()
        };
        // Both netlink types are non-exhaustive: built from their defaults.
        let mut msg = NeighbourMessage::default();
        msg.header = header;
        msg.attributes = vec![
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)),
            NeighbourAttribute::LinkLayerAddress(mac.to_vec()),
        ];
        let mut nl_header = NetlinkHeader::default();
        nl_header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
        nl_header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(
            nl_header,
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(msg)),
        );
        packet.finalize();
        self.out.resize(packet.buffer_len(), 0);
        packet.serialize(&mut self.out);
        self.socket.send(&self.out, 0)?;
        self.await_ack()
    }

    /// Reads answers until the one to the current request. The kernel
    /// handles a route request inside `send`, so its answer is already
    /// queued: the read never waits (a missing answer is an error, not a
    /// stall of the caller's loop).
    fn await_ack(&mut self) -> io::Result<()> {
        loop {
            let n = self
                .socket
                .recv(&mut &mut self.ack[..], libc_dontwait())
                .map_err(|e| {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        io::Error::new(e.kind(), "no answer from the kernel to a neighbour update")
                    } else {
                        e
                    }
                })?;
            let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.ack[..n])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            if msg.header.sequence_number != self.seq {
                // An answer to an earlier request that gave up: skip it.
                continue;
            }
            return match msg.payload {
                NetlinkPayload::Error(e) => match e.code {
                    None => Ok(()),
                    Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                },
                other => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected answer to a neighbour update: {other:?}"),
                )),
            };
        }
    }
}

fn libc_dontwait() -> i32 {
    nix::sys::socket::MsgFlags::MSG_DONTWAIT.bits()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_interface_is_named_in_the_error() {
        let e = Neighbours::open("bootlab-no-such0").unwrap_err();
        assert!(e.to_string().contains("bootlab-no-such0"), "{e}");
    }
}
