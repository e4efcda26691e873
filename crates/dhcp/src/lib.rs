//! bootlab's DHCPv4 server: static MAC reservations from the inventory, an
//! optional pool, PXE/iPXE/UEFI boot decisions from `bootlab-boot`, and
//! durable leases.
//!
//! # Layout
//! - [`packet`]: the wire format (dhcproto for the header and typed
//!   options; raw option walking for overload, concatenation and verbatim
//!   option 82; reply layout by option 55 order within option 57's size).
//! - [`handler`]: the pure RFC 2131 handler: bytes and time in, an
//!   [`Outcome`] out. Most tests live there.
//! - [`leases`]: the in-memory lease table and the durable append-only log.
//! - [`metrics`]: Prometheus counters.
//! - [`server`]: socket binding (interface or address mode), the receive
//!   loop and the group commit that makes a lease durable before its ACK;
//!   in proxyDHCP mode also the PXE boot server port 4011.
//!
//! bootlabd wires it as:
//! ```no_run
//! # async fn wire(shared: bootlab_state::Shared, token: tokio_util::sync::CancellationToken) -> std::io::Result<()> {
//! let socket = bootlab_dhcp::bind(&shared.inventory())?;
//! bootlab_dhcp::serve(socket, shared, token).await
//! # }
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod handler;
pub mod leases;
pub mod metrics;
pub mod packet;
pub mod server;

pub use handler::{
    BOOT_SERVER_PORT, DhcpHandler, DropReason, Limits, Listener, MachineEvent, Outcome, Outgoing,
    ReplyTo,
};
pub use leases::{LeaseRecord, LeaseStore, LeaseTable};
pub use packet::{ParseError, Request};
pub use server::{
    DhcpSocket, SocketMode, bind, bind_address, bind_boot_server, bind_interface, serve,
    serve_boot_server, serve_with,
};
