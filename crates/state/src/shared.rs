//! What bootlabd hands every service: the live inventory and its rendered
//! scripts (swapped together, atomically, on reload), the leases view, the
//! machine timeline and the metrics registry; and the one resolution of
//! virtual files (boot scripts, per-MAC configs) TFTP and HTTP share.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bootlab_boot::render::{
    self, BootScripts, RenderError, ScriptKind, ScriptTemplates, TemplateError, VirtualFile,
};
use bootlab_inventory::{Inventory, MacAddr};
use tokio::sync::watch;

use crate::leases::Leases;
use crate::metrics::Metrics;
use crate::reports::Reports;
use crate::timeline::{Machine, Service, Timeline};

/// One loaded inventory with every node's scripts rendered from it.
#[derive(Debug)]
pub struct Generation {
    /// The inventory.
    pub inventory: Arc<Inventory>,
    /// Its nodes' boot scripts.
    pub scripts: BootScripts,
}

/// Why an inventory's scripts could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    /// A profile's own template is missing, invalid or does not render.
    #[error("{0}")]
    Template(#[from] TemplateError),
    /// A script does not render.
    #[error("{0}")]
    Render(#[from] RenderError),
}

impl Generation {
    /// Reads the profiles' own templates from `services.assets_dir` and
    /// renders every node's scripts; fails when one does not.
    pub fn new(inv: Inventory) -> Result<Self, GenerationError> {
        let templates = ScriptTemplates::load(&inv, &inv.services().assets_dir)?;
        let scripts = BootScripts::render_with(&inv, &templates)?;
        Ok(Self {
            inventory: Arc::new(inv),
            scripts,
        })
    }
}

/// Shared service state. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Shared {
    live: watch::Receiver<Arc<Generation>>,
    /// Addresses DHCP leased, by MAC and by address.
    pub leases: Leases,
    /// Each MAC's boot events.
    pub timeline: Timeline,
    /// Prometheus registry.
    pub metrics: Metrics,
    /// Live reports for the API (balancers, egress...).
    pub reports: Reports,
}

/// The side that publishes new inventories (bootlabd's reload).
#[derive(Debug)]
pub struct InventoryPublisher {
    tx: watch::Sender<Arc<Generation>>,
}

impl InventoryPublisher {
    /// Renders and publishes a validated inventory to every service at
    /// once. A template that does not render leaves the old one serving.
    pub fn publish(&self, inv: Inventory) -> Result<(), GenerationError> {
        self.install(Generation::new(inv)?);
        Ok(())
    }

    /// Publishes an already rendered generation.
    pub fn install(&self, generation: Generation) {
        self.tx.send_replace(Arc::new(generation));
    }
}

/// What a request for a virtual file (boot script, per-MAC config) is
/// answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// The node's script or config.
    Script {
        /// The node's MAC.
        mac: MacAddr,
        /// The node's name.
        node: String,
        /// The rendered text.
        text: Arc<str>,
    },
    /// iPXE asked from an address bootlab cannot tie to a MAC: a script
    /// that asks again with its MAC.
    ChainByMac(String),
    /// The MAC (named in the request, or found for the source) is no node.
    UnknownMac(MacAddr),
    /// The source address belongs to no machine.
    UnknownSource(IpAddr),
}

impl Shared {
    /// State for `inv`, and the handle that swaps in later inventories.
    pub fn new(inv: Inventory) -> Result<(Self, InventoryPublisher), GenerationError> {
        let (tx, rx) = watch::channel(Arc::new(Generation::new(inv)?));
        Ok((
            Self {
                live: rx,
                leases: Leases::default(),
                timeline: Timeline::default(),
                metrics: Metrics::new(),
                reports: Reports::default(),
            },
            InventoryPublisher { tx },
        ))
    }

    /// The current inventory. Hold the `Arc` for one request, not longer.
    pub fn inventory(&self) -> Arc<Inventory> {
        self.live.borrow().inventory.clone()
    }

    /// The current generation (inventory and scripts).
    pub fn generation(&self) -> Arc<Generation> {
        self.live.borrow().clone()
    }

    /// A receiver that wakes on every reload (`changed().await`), for
    /// services that precompute state from the inventory.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Generation>> {
        self.live.clone()
    }

    /// The MAC behind a source address: a lease first, then a reservation.
    pub fn mac_for_ip(&self, inv: &Inventory, ip: Ipv4Addr) -> Option<MacAddr> {
        self.leases
            .mac_for(ip)
            .or_else(|| inv.host_by_ip(ip).map(|h| h.mac))
    }

    /// Resolves a virtual file for a client at `peer`. `mac` is the MAC the
    /// request names (file name or `?mac=`); without one the source address
    /// decides.
    pub fn resolve_virtual(
        &self,
        generation: &Generation,
        file: VirtualFile,
        mac: Option<MacAddr>,
        peer: IpAddr,
    ) -> Resolved {
        let inv = &generation.inventory;
        let mac = mac.or(file.mac()).or_else(|| match peer {
            IpAddr::V4(ip) => self.mac_for_ip(inv, ip),
            IpAddr::V6(v6) => v6.to_ipv4_mapped().and_then(|ip| self.mac_for_ip(inv, ip)),
        });
        let Some(mac) = mac else {
            return match file.kind() {
                ScriptKind::Ipxe => Resolved::ChainByMac(render::chain_by_mac_ipxe(inv)),
                _ => Resolved::UnknownSource(peer),
            };
        };
        match generation.scripts.for_mac(inv, mac, file.kind()) {
            Some((node, text)) => Resolved::Script {
                mac,
                node: node.name.clone(),
                text,
            },
            None => Resolved::UnknownMac(mac),
        }
    }

    /// Records a fetch by a client at `ip` (TFTP or HTTP); `mac_hint` is the
    /// MAC the request named. Returns the MAC it was attributed to, if any.
    #[allow(clippy::too_many_arguments)] // each is a distinct fact of the fetch
    pub fn record_fetch(
        &self,
        inv: &Inventory,
        ip: Ipv4Addr,
        mac_hint: Option<MacAddr>,
        service: Service,
        path: &str,
        bytes: u64,
        is_script: bool,
    ) -> Option<MacAddr> {
        let mac = mac_hint.or_else(|| self.mac_for_ip(inv, ip))?;
        self.timeline
            .fetch(inv, mac, service, path, bytes, is_script);
        Some(mac)
    }

    /// One machine's timeline, with its name and current address.
    pub fn machine(&self, mac: MacAddr) -> Option<Machine> {
        let inv = self.inventory();
        self.timeline.machine(mac).map(|m| self.fill(&inv, m))
    }

    /// Every machine's timeline, inventory hosts first, each in MAC order.
    pub fn machines(&self) -> Vec<Machine> {
        let inv = self.inventory();
        let mut v: Vec<Machine> = self
            .timeline
            .machines()
            .into_iter()
            .map(|m| self.fill(&inv, m))
            .collect();
        v.sort_by_key(|m| (m.name.is_none(), m.mac));
        v
    }

    fn fill(&self, inv: &Inventory, mut m: Machine) -> Machine {
        let host = inv.host_by_mac(m.mac);
        m.name = host.map(|h| h.name.clone());
        m.ip = self.leases.ip_for(m.mac).or(host.map(|h| h.ip));
        m
    }
}
