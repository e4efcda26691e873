//! bootlab's egress policy in nftables: one table, `table inet bootlab`,
//! built from the inventory, shown in nft syntax, applied as one transaction.
//!
//! # Layout
//!
//! * [`ruleset`]: the ruleset as data ([`Ruleset`], chains, rules, matches).
//! * [`policy`]: pure functions inventory -> ruleset:
//!   [`hypervisor_ruleset`] (nat mode, host tool) and [`services_ruleset`]
//!   (bootlabd: input filter; gateway forward + masquerade + learned set).
//! * [`render`]: nft syntax ([`render_nft`]) for `bootlab egress show`.
//! * [`batch`]: the `nftables` crate's JSON batch (one transaction).
//! * [`table`]: [`BootlabTable`] — apply / remove / list / counters through
//!   [`Nft`] (the `nft` binary, or `ip netns exec NS nft` in tests).
//! * [`learned`]: [`LearnedSet`] — DNS-learned addresses with TTL timeouts.
//! * [`live`]: parsing `nft -j list table` (state, counters, elements).
//! * [`metrics`]: denied-flow gauges in the shared `/metrics` registry.
//! * [`interfaces`]: the services VM's NIC names from their MACs.
//!
//! # What the binaries call
//!
//! Host tool (`bootlab egress apply|show|remove`, `bootlab up`, `status`):
//! `hypervisor_ruleset(&inv)?`, then `render_nft(&rs)` (`bootlab egress show`) or
//! `BootlabTable::new(Nft::system()).apply(&rs)?`; `remove()`;
//! `counters()` and `denied_endpoints()` for status.
//!
//! bootlabd: `ServicesInterfaces::discover(&inv, "/sys/class/net")`,
//! `services_ruleset(&inv, &ifaces)?` (`None` when `services.firewall` is
//! off), `apply` at start and on every SIGHUP (keeps learned addresses and
//! counters), `register_firewall_metrics`, one `LearnedSet` fed from the DNS
//! channel (`add(addr, ttl)` for every A record the forwarder passes on,
//! before the answer goes to the client), `remove()` only for
//! `--firewall-remove` (rules stay on stop).

#![deny(missing_docs)]

pub mod batch;
pub mod interfaces;
pub mod learned;
pub mod live;
pub mod metrics;
pub mod policy;
pub mod render;
pub mod ruleset;
pub mod table;

pub use interfaces::{InterfaceError, interface_by_mac};
pub use learned::{Learned, LearnedSet, TtlBounds};
pub use live::{CounterValue, DeniedEndpoint, LearnedElement, TableState, parse_table_listing};
pub use metrics::register_firewall_metrics;
pub use policy::{
    COUNTER_FORWARD_DENIED, COUNTER_LAB_EGRESS_DENIED, COUNTER_SERVICES_INPUT_DENIED, PolicyError,
    ServicesInterfaces, hypervisor_ruleset, services_is_gateway, services_ruleset,
};
pub use render::{render_nft, strip_state};
pub use ruleset::{DENIED_SET, LEARNED_SET, Ruleset, TABLE_NAME};
pub use table::{ApplyOutcome, BootlabTable, Nft, TableError};
