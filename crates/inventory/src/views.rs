//! Derived views: computed from the model on demand, never stored twice.
//!
//! DHCP reservations, the forward and reverse zones, each node's resolved
//! boot profile and each VM's spec all come from here, so no service
//! re-derives a name, an address or a URL on its own.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::model::*;
use crate::template;
use crate::validate::{DEFAULT_TTL, node_context};
use crate::values::MacAddr;

/// Which host a reservation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostRef {
    /// `nodes[i]`.
    Node(usize),
    /// The services VM.
    Services,
}

/// A DHCP reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The client's MAC.
    pub mac: MacAddr,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Short host name (option 12).
    pub hostname: String,
    /// Fully qualified name.
    pub fqdn: String,
    /// Whose it is.
    pub host: HostRef,
}

/// One record of a zone: absolute owner name (no trailing dot), TTL, data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneRecord {
    /// Owner, absolute, lowercase, no trailing dot (may start with `*.`).
    pub name: String,
    /// TTL in seconds.
    pub ttl: u32,
    /// Data.
    pub data: RecordData,
}

/// A zone bootlabd is authoritative for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// Origin, absolute, no trailing dot.
    pub origin: String,
    /// SOA serial: changes whenever the zone's content changes.
    pub serial: u32,
    /// Primary name server (the services VM's FQDN).
    pub primary_ns: String,
    /// Responsible mailbox in domain form (`hostmaster.<zone>`).
    pub hostmaster: String,
    /// Records other than SOA and NS, sorted by owner.
    pub records: Vec<ZoneRecord>,
}

/// The lab's zones: the forward zone and the reverse zone(s) of the CIDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSet {
    /// `<lab.name>.<lab.domain>`.
    pub forward: Zone,
    /// `in-addr.arpa` zones covering `network.cidr`.
    pub reverse: Vec<Zone>,
}

/// A node's boot profile, resolved and rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootProfile {
    /// Profile name.
    pub name: String,
    /// Loader.
    pub loader: Loader,
    /// Kernel path under the assets dir.
    pub kernel: String,
    /// Initrd paths under the assets dir.
    pub initrd: Vec<String>,
    /// Rendered kernel command line.
    pub args: String,
}

/// A NIC of a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicSpec {
    /// libvirt network name.
    pub network: String,
    /// MAC.
    pub mac: MacAddr,
}

/// What the host tool defines for one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    /// Domain name (`<vm_prefix><name>`).
    pub domain: String,
    /// Host name.
    pub hostname: String,
    /// vCPUs.
    pub vcpus: u32,
    /// Memory in bytes.
    pub memory: u64,
    /// Disk sizes in bytes.
    pub disks: Vec<u64>,
    /// NICs; the first is on the lab network.
    pub nics: Vec<NicSpec>,
    /// Firmware.
    pub firmware: Firmware,
    /// True for the services VM.
    pub is_services: bool,
}

impl Inventory {
    /// The lab zone, `<name>.<domain>`.
    pub fn zone(&self) -> String {
        self.lab.zone()
    }

    /// The FQDN of a host name.
    pub fn fqdn(&self, host: &str) -> String {
        format!("{host}.{}", self.zone())
    }

    /// DHCP reservations: every node, then the services VM.
    pub fn reservations(&self) -> Vec<Reservation> {
        let mut out: Vec<Reservation> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| Reservation {
                mac: n.mac,
                ip: n.ip,
                hostname: n.name.clone(),
                fqdn: self.fqdn(&n.name),
                host: HostRef::Node(i),
            })
            .collect();
        out.push(Reservation {
            mac: self.services.mac,
            ip: self.services.ip,
            hostname: self.services.name.clone(),
            fqdn: self.fqdn(&self.services.name),
            host: HostRef::Services,
        });
        out
    }

    /// The node with this MAC.
    pub fn node_by_mac(&self, mac: MacAddr) -> Option<&Node> {
        self.nodes.iter().find(|n| n.mac == mac)
    }

    /// The node with this address.
    pub fn node_by_ip(&self, ip: Ipv4Addr) -> Option<&Node> {
        self.nodes.iter().find(|n| n.ip == ip)
    }

    /// The zones bootlabd serves.
    pub fn zones(&self) -> ZoneSet {
        let zone = self.zone();
        let ns = self.fqdn(&self.services.name);
        let mut records = Vec::new();
        for r in self.reservations() {
            records.push(ZoneRecord {
                name: r.fqdn.clone(),
                ttl: DEFAULT_TTL,
                data: RecordData::A(r.ip),
            });
        }
        for r in &self.dns_records {
            let name = if r.name.is_empty() {
                zone.clone()
            } else {
                format!("{}.{zone}", r.name)
            };
            records.push(ZoneRecord {
                name,
                ttl: r.ttl,
                data: r.data.clone(),
            });
        }
        let forward = finish_zone(zone.clone(), ns.clone(), records);

        let reverse = reverse_origins(self.network.cidr)
            .into_iter()
            .map(|origin| {
                let ptrs = self
                    .reservations()
                    .into_iter()
                    .filter(|r| self.network.cidr.contains(&r.ip))
                    .map(|r| ZoneRecord {
                        name: reverse_name(r.ip),
                        ttl: DEFAULT_TTL,
                        data: RecordData::Ptr(r.fqdn),
                    })
                    .filter(|r| r.name.ends_with(&format!(".{origin}")))
                    .collect();
                finish_zone(origin, ns.clone(), ptrs)
            })
            .collect();
        ZoneSet { forward, reverse }
    }

    /// A node's boot profile with its args rendered.
    pub fn boot_profile(&self, node: &Node) -> Result<BootProfile, String> {
        let prof = self
            .profiles
            .get(&node.profile)
            .ok_or_else(|| format!("unknown profile {:?}", node.profile))?;
        let http = self.services.http_base();
        let ctx = node_context(node, &http, &self.zone());
        Ok(BootProfile {
            name: prof.name.clone(),
            loader: prof.loader,
            kernel: prof.kernel.clone(),
            initrd: prof.initrd.clone(),
            args: template::render(&prof.args, &ctx)?,
        })
    }

    /// The addresses named by `egress.allow_hosts`.
    pub fn egress_hosts(&self) -> Vec<Ipv4Addr> {
        self.egress
            .allow_hosts
            .iter()
            .filter_map(|h| {
                if *h == self.services.name {
                    Some(self.services.ip)
                } else {
                    self.nodes.iter().find(|n| n.name == *h).map(|n| n.ip)
                }
            })
            .collect()
    }

    /// VM specs: the services VM first, then every node.
    pub fn vm_specs(&self) -> Vec<VmSpec> {
        let lab_net = self.network.libvirt_name.clone();
        let s = &self.services;
        let mut nics = vec![NicSpec {
            network: lab_net.clone(),
            mac: s.mac,
        }];
        if let Some(u) = &s.uplink {
            nics.push(NicSpec {
                network: u.network.clone(),
                mac: u.mac,
            });
        }
        let mut out = vec![VmSpec {
            domain: format!("{}{}", self.libvirt.vm_prefix, s.name),
            hostname: s.name.clone(),
            vcpus: s.vcpus,
            memory: s.memory,
            disks: s.disks.clone(),
            nics,
            firmware: Firmware::Bios,
            is_services: true,
        }];
        out.extend(self.nodes.iter().map(|n| VmSpec {
            domain: format!("{}{}", self.libvirt.vm_prefix, n.name),
            hostname: n.name.clone(),
            vcpus: n.vcpus,
            memory: n.memory,
            disks: n.disks.clone(),
            nics: vec![NicSpec {
                network: lab_net.clone(),
                mac: n.mac,
            }],
            firmware: n.firmware,
            is_services: false,
        }));
        out
    }
}

fn finish_zone(origin: String, primary_ns: String, mut records: Vec<ZoneRecord>) -> Zone {
    records.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then_with(|| a.data.type_name().cmp(b.data.type_name()))
    });
    let hostmaster = format!("hostmaster.{origin}");
    let serial = content_serial(&origin, &primary_ns, &records);
    Zone {
        origin,
        serial,
        primary_ns,
        hostmaster,
        records,
    }
}

/// A serial derived from the zone's content (FNV-1a), so it changes whenever
/// the content does and stays put when it does not. Never 0.
fn content_serial(origin: &str, ns: &str, records: &[ZoneRecord]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let mut eat = |s: &str| {
        for b in s.bytes().chain(std::iter::once(0)) {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    eat(origin);
    eat(ns);
    for r in records {
        eat(&format!("{} {} {:?}", r.name, r.ttl, r.data));
    }
    h.max(1)
}

/// `10.200.168.192.in-addr.arpa` (no trailing dot).
pub fn reverse_name(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
}

/// The reverse zones that cover a network: the prefix rounded up to an octet
/// boundary (at most /24), one zone per resulting block. A /24 gives one zone;
/// a /22 gives four /24 zones; a /16 gives one /16 zone; a /26 gives its /24.
pub fn reverse_origins(cidr: ipnet::Ipv4Net) -> Vec<String> {
    let plen = cidr.prefix_len();
    let zone_len = (plen.div_ceil(8) * 8).clamp(8, 24);
    let octets = usize::from(zone_len / 8);
    let mut out = BTreeSet::new();
    let start = u32::from(cidr.network());
    let end = u32::from(cidr.broadcast());
    let step = 1u64 << (32 - u32::from(zone_len));
    let mut at = u64::from(start) & !(step - 1);
    while at <= u64::from(end) {
        let o = Ipv4Addr::from(at as u32).octets();
        let labels: Vec<String> = o[..octets].iter().rev().map(u8::to_string).collect();
        out.insert(format!("{}.in-addr.arpa", labels.join(".")));
        at += step;
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_zone_names() {
        let z = |s: &str| reverse_origins(s.parse().unwrap());
        assert_eq!(z("192.168.200.0/24"), ["200.168.192.in-addr.arpa"]);
        assert_eq!(z("10.0.0.0/16"), ["0.10.in-addr.arpa"]);
        assert_eq!(z("10.0.0.0/8"), ["10.in-addr.arpa"]);
        assert_eq!(z("192.168.200.64/26"), ["200.168.192.in-addr.arpa"]);
        assert_eq!(
            z("10.1.4.0/22"),
            [
                "4.1.10.in-addr.arpa",
                "5.1.10.in-addr.arpa",
                "6.1.10.in-addr.arpa",
                "7.1.10.in-addr.arpa"
            ]
        );
        assert_eq!(z("10.128.0.0/9").len(), 128);
    }
}
