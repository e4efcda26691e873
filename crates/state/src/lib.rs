//! bootlabd's live state, shared by every service: this crate owns what
//! changes while the daemon runs. `bootlab-boot` stays pure policy.
//!
//! # Layout
//! - [`shared`]: [`Shared`], the live inventory and its rendered scripts
//!   (one [`Generation`], swapped atomically on reload by the
//!   [`InventoryPublisher`]), and [`Shared::resolve_virtual`], the one
//!   resolution of boot scripts and per-MAC configs for TFTP and HTTP.
//! - [`leases`]: which MAC holds which leased address.
//! - [`timeline`]: each MAC's boot events, from every service.
//! - [`metrics`]: the Prometheus registry.
//! - [`reports`]: named JSON snapshots (balancers, egress) for the API.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod leases;
pub mod metrics;
pub mod reports;
pub mod shared;
pub mod timeline;

pub use leases::Leases;
pub use metrics::{Counter, CounterRow, Metrics};
pub use reports::Reports;
pub use shared::{Generation, GenerationError, InventoryPublisher, Resolved, Shared};
pub use timeline::{Machine, Service, Stage, Timeline};
