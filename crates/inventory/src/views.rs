//! Derived views: the zones (built once, at compile time), each VM's spec
//! and the egress host list (built on demand by the host tool), so no
//! service re-derives a name, an address or a URL on its own.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::compiled::Inventory;
use crate::defaults;
use crate::model::*;
use crate::values::MacAddr;

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

/// Builds the forward zone and the reverse zones of `cidr` from the hosts
/// and the extra records.
pub(crate) fn build_zones(
    zone: &str,
    hosts: &[Host],
    extra: &[DnsRecord],
    cidr: ipnet::Ipv4Net,
    primary_ns: &str,
) -> ZoneSet {
    let mut records: Vec<ZoneRecord> = Vec::with_capacity(hosts.len() + extra.len());
    records.extend(hosts.iter().map(|h| ZoneRecord {
        name: h.fqdn.clone(),
        ttl: defaults::TTL,
        data: RecordData::A(h.ip),
    }));
    for r in extra {
        let name = if r.name.is_empty() {
            zone.to_owned()
        } else {
            format!("{}.{zone}", r.name)
        };
        records.push(ZoneRecord {
            name,
            ttl: r.ttl,
            data: r.data.clone(),
        });
    }
    let forward = finish_zone(zone.to_owned(), primary_ns.to_owned(), records);
    let mut by_origin: std::collections::BTreeMap<String, Vec<ZoneRecord>> = reverse_origins(cidr)
        .into_iter()
        .map(|o| (o, Vec::new()))
        .collect();
    for h in hosts.iter().filter(|h| cidr.contains(&h.ip)) {
        let name = reverse_name(h.ip);
        let origin = reverse_origin_of(&name, by_origin.keys());
        if let Some(list) = origin.and_then(|o| by_origin.get_mut(&o)) {
            list.push(ZoneRecord {
                name,
                ttl: defaults::TTL,
                data: RecordData::Ptr(h.fqdn.clone()),
            });
        }
    }
    let reverse = by_origin
        .into_iter()
        .map(|(origin, ptrs)| finish_zone(origin, primary_ns.to_owned(), ptrs))
        .collect();
    ZoneSet { forward, reverse }
}

/// The origin among `origins` that `name` (a reverse name) falls under.
fn reverse_origin_of<'a>(name: &str, origins: impl Iterator<Item = &'a String>) -> Option<String> {
    origins
        .filter(|o| name.len() > o.len() && name.ends_with(o.as_str()))
        .find(|o| name.as_bytes()[name.len() - o.len() - 1] == b'.')
        .cloned()
}

impl Inventory {
    /// The addresses named by `egress.allow_hosts`.
    pub fn egress_hosts(&self) -> Vec<Ipv4Addr> {
        self.egress()
            .allow_hosts
            .iter()
            .filter_map(|h| self.hosts().iter().find(|x| x.name == *h).map(|x| x.ip))
            .collect()
    }

    /// VM specs: the services VM first, then every node.
    pub fn vm_specs(&self) -> Vec<VmSpec> {
        let lab_net = self.network().libvirt_name.clone();
        let prefix = &self.libvirt().vm_prefix;
        let s = self.services();
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
            domain: format!("{prefix}{}", s.name),
            hostname: s.name.clone(),
            vcpus: s.vcpus,
            memory: s.memory,
            disks: s.disks.clone(),
            nics,
            firmware: Firmware::Bios,
            is_services: true,
        }];
        out.extend(self.nodes().iter().map(|n| VmSpec {
            domain: format!("{prefix}{}", n.name),
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
    records.shrink_to_fit(); // kept for the inventory's lifetime
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
