//! Authoritative DNS for the lab, derived from the inventory.
//!
//! bootlabd answers for `<lab.name>.<lab.domain>` and the reverse zone(s) of
//! `network.cidr`, refuses everything else (no open resolver: RA=0), and
//! forwards only names under `egress.allow_domains` to the upstream
//! resolvers, handing the addresses it learns to the firewall through a
//! channel.
//!
//! # Layout
//! - [`zone`]: the zone tables built from [`bootlab_inventory::Inventory::zones`]
//!   (exact names, empty non-terminals, wildcards, CNAME chasing).
//! - [`handler`]: the pure request handler (bytes in, bytes out), on
//!   hickory-proto; every protocol rule lives and is tested here.
//! - [`fast`]: precomputed wire replies for the static zones, byte-identical
//!   to the general path, patched per query (ID, RD/CD, question case).
//! - [`forward`]: the restricted forwarder (random port and ID, replies
//!   matched on address+port+ID+question, identical pending queries merged).
//! - [`server`]: the UDP and TCP socket loops, reload, metrics and logging.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod fast;
pub mod forward;
pub mod handler;
pub mod server;
pub mod zone;

pub use forward::{LEARN_ACK_WAIT, LearnedAddress, LearnedBatch};
pub use handler::{Handler, HandlerConfig, Outcome, Transport};
pub use server::{ServeOptions, serve, serve_with};
pub use zone::{ZoneError, ZoneTable};
