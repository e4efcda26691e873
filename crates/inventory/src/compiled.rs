//! The compiled inventory: built once by validation, immutable afterwards.
//!
//! Every per-node fact is derived here and nowhere else: FQDNs, the
//! rendered boot profile of each node, the MAC and address indexes, the
//! HTTP base and assets URLs, the zones. Services hold an
//! `Arc<Inventory>` and read it through accessors; a reload builds a new
//! one and swaps it in.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::diag::Diagnostic;
use crate::model::*;
use crate::values::MacAddr;
use crate::views::{self, ZoneSet};

/// The validated, compiled inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    source: PathBuf,
    lab: Lab,
    zone: String,
    network: Network,
    libvirt: Libvirt,
    services: Services,
    dns_records: Vec<DnsRecord>,
    profiles: BTreeMap<String, Profile>,
    nodes: Vec<Node>,
    hosts: Vec<Host>,
    by_mac: HashMap<MacAddr, usize>,
    by_ip: HashMap<Ipv4Addr, usize>,
    http_base: String,
    assets_url: String,
    zones: ZoneSet,
    egress: Egress,
    ntp: Ntp,
    balancers: Vec<Balancer>,
    warnings: Vec<Diagnostic>,
}

/// The validated parts an [`Inventory`] is compiled from (validation's output).
#[derive(Debug)]
pub(crate) struct Parts {
    pub source: PathBuf,
    pub lab: Lab,
    pub network: Network,
    pub libvirt: Libvirt,
    pub services: Services,
    pub dns_records: Vec<DnsRecord>,
    pub profiles: BTreeMap<String, Profile>,
    pub nodes: Vec<Node>,
    pub egress: Egress,
    pub ntp: Ntp,
    pub balancers: Vec<Balancer>,
}

/// The HTTP base URL boot scripts and DHCP answers use.
pub(crate) fn http_base(services_ip: Ipv4Addr, http_port: u16) -> String {
    format!("http://{services_ip}:{http_port}")
}

/// The URL of the assets root under an HTTP base.
pub(crate) fn assets_url(http_base: &str) -> String {
    format!("{http_base}/assets")
}

impl Inventory {
    /// Compiles validated parts: builds the host list, indexes and zones.
    pub(crate) fn compile(p: Parts) -> Self {
        let zone = p.lab.zone();
        // The nodes, then the services VM: sized once (collecting and then
        // pushing doubled the capacity).
        let mut hosts: Vec<Host> = Vec::with_capacity(p.nodes.len() + 1);
        hosts.extend(p.nodes.iter().enumerate().map(|(i, n)| Host {
            mac: n.mac,
            ip: n.ip,
            name: n.name.clone(),
            fqdn: n.fqdn.clone(),
            kind: HostRef::Node(i),
        }));
        hosts.push(Host {
            mac: p.services.mac,
            ip: p.services.ip,
            name: p.services.name.clone(),
            fqdn: format!("{}.{zone}", p.services.name),
            kind: HostRef::Services,
        });
        let by_mac = hosts.iter().enumerate().map(|(i, h)| (h.mac, i)).collect();
        let by_ip = hosts.iter().enumerate().map(|(i, h)| (h.ip, i)).collect();
        let http_base = http_base(p.services.ip, p.services.listen.http.port());
        let assets_url = assets_url(&http_base);
        let zones = views::build_zones(
            &zone,
            &hosts,
            &p.dns_records,
            p.network.cidr,
            &hosts[hosts.len() - 1].fqdn,
        );
        Self {
            source: p.source,
            lab: p.lab,
            zone,
            network: p.network,
            libvirt: p.libvirt,
            services: p.services,
            dns_records: p.dns_records,
            profiles: p.profiles,
            nodes: p.nodes,
            hosts,
            by_mac,
            by_ip,
            http_base,
            assets_url,
            zones,
            egress: p.egress,
            ntp: p.ntp,
            balancers: p.balancers,
            warnings: Vec::new(),
        }
    }

    pub(crate) fn set_warnings(&mut self, warnings: Vec<Diagnostic>) {
        self.warnings = warnings;
    }

    /// The file it was read from, as the user named it.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// `[lab]`
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// The lab zone, `<name>.<domain>`.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// `[network]`
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// `[libvirt]`
    pub fn libvirt(&self) -> &Libvirt {
        &self.libvirt
    }

    /// `[services]`
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// `[dns].records`, validated.
    pub fn dns_records(&self) -> &[DnsRecord] {
        &self.dns_records
    }

    /// Boot profiles by name.
    pub fn profiles(&self) -> &BTreeMap<String, Profile> {
        &self.profiles
    }

    /// Nodes in file order, with role defaults applied.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Every host with an address: the nodes in file order, then the
    /// services VM.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The host (node or services VM) with this MAC.
    pub fn host_by_mac(&self, mac: MacAddr) -> Option<&Host> {
        self.by_mac.get(&mac).map(|&i| &self.hosts[i])
    }

    /// The host (node or services VM) with this address.
    pub fn host_by_ip(&self, ip: Ipv4Addr) -> Option<&Host> {
        self.by_ip.get(&ip).map(|&i| &self.hosts[i])
    }

    /// The node with this MAC.
    pub fn node_by_mac(&self, mac: MacAddr) -> Option<&Node> {
        self.host_by_mac(mac).and_then(|h| self.node_of(h))
    }

    /// The node with this address.
    pub fn node_by_ip(&self, ip: Ipv4Addr) -> Option<&Node> {
        self.host_by_ip(ip).and_then(|h| self.node_of(h))
    }

    /// The node a host is, if it is one.
    pub fn node_of(&self, host: &Host) -> Option<&Node> {
        match host.kind {
            HostRef::Node(i) => self.nodes.get(i),
            HostRef::Services => None,
        }
    }

    /// The node with this name.
    pub fn node_named(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// `http://<services.ip>:<http port>`: the base URL in boot scripts and
    /// DHCP answers.
    pub fn http_base(&self) -> &str {
        &self.http_base
    }

    /// `<http base>/assets`: where boot assets are served.
    pub fn assets_url(&self) -> &str {
        &self.assets_url
    }

    /// The zones bootlabd serves.
    pub fn zones(&self) -> &ZoneSet {
        &self.zones
    }

    /// `[egress]`
    pub fn egress(&self) -> &Egress {
        &self.egress
    }

    /// `[ntp]`
    pub fn ntp(&self) -> &Ntp {
        &self.ntp
    }

    /// `[[balancers]]`, backends resolved to node addresses.
    pub fn balancers(&self) -> &[Balancer] {
        &self.balancers
    }

    /// Problems that do not stop the inventory from loading (OKD pitfalls,
    /// balancers whose backends are all drained), located like errors.
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }
}
