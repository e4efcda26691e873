//! bootlab's one network I/O layer, shared by every UDP service (DHCP,
//! DNS, TFTP, NTP) and every per-peer limit (DHCP, DNS, TFTP, HTTP, NTP).
//! It imports no crate of ours.
//!
//! What it owns:
//! - how UDP datagrams are received and sent in batches with packet info
//!   (replies leave from the address the request was sent to, for IPv4 and
//!   IPv6, also on `0.0.0.0` / `[::]` binds), and the blocking worker loop
//!   the hot paths run on OS threads;
//! - the one per-peer limiter (token buckets in a bounded table with one
//!   documented full-table policy), the log gate built on it, and
//!   per-peer connection slots;
//! - the one way to find a network interface by MAC (deterministic,
//!   bridge-aware);
//! - writing IPv4 neighbour (ARP) entries, so DHCP can unicast to a
//!   client that has no address yet.
//!
//! # Layout
//! - [`udp`]: [`RecvBatch`] (`recvmmsg`), [`SendBatch`] (`sendmmsg`),
//!   [`run_worker`] (receive -> handle -> send on a thread), and
//!   one-datagram [`recv_from`] / [`send_from`] for tokio sockets.
//! - [`limiter`]: [`PeerLimiter`] / [`SharedLimiter`] (token buckets, LRU
//!   eviction when full), [`LogGate`] (one line per peer per interval plus
//!   a global budget), [`PeerSlots`] (concurrent connections per peer).
//! - [`iface`]: [`interface_by_mac`] and the pure rule [`iface::pick`].
//! - [`neigh`]: [`Neighbours`] (rtnetlink `RTM_NEWNEIGH`).
//!
//! Who uses which shape: DHCP (one receive thread, plus the lease writer
//! sending its group commit's replies with a [`SendBatch`]) and DNS over
//! UDP (one worker thread per core) run [`run_worker`] on OS threads; the
//! low-rate listeners run on the tokio runtime with [`recv_from`] /
//! [`send_from_async`]: TFTP's request socket (each transfer then has its
//! own connected socket) and NTP (with kernel receive timestamps), and
//! DNS's forwarded answers go out with [`send_from`].
//!
//! Everything goes through nix's safe wrappers; there is no unsafe code.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod iface;
pub mod limiter;
pub mod neigh;
pub mod udp;

pub use iface::{interface_by_mac, interface_by_mac_in};
pub use limiter::{
    LimiterStats, LogGate, PeerLimiter, PeerSlots, Rate, SharedLimiter, Slot, SlotRefusal,
};
pub use neigh::Neighbours;
pub use udp::{
    BatchHandler, Datagram, Family, RecvBatch, RecvOptions, SendBatch, WorkerOptions,
    enable_pktinfo, enable_timestamps, grow_buffers, recv_from, run_worker, send_from,
    send_from_async,
};
