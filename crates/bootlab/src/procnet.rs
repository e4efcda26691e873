//! Parsers for what `doctor` reads about the host: `/proc/net/route`,
//! `/proc/net/{udp,tcp}` and the addresses/bridge of a libvirt network's
//! XML. Pure functions over text: malformed lines are skipped, never a panic
//! (fuzzed in `fuzz/fuzz_targets/host_probes.rs`).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// One IPv4 route of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Interface.
    pub iface: String,
    /// Destination network.
    pub net: Ipv4Net,
}

/// A socket bound on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// `udp` or `tcp`.
    pub proto: &'static str,
    /// Local address (0.0.0.0 = every address).
    pub addr: Ipv4Addr,
    /// Local port.
    pub port: u16,
}

/// `/proc/net/route` hex addresses are the raw network-order word printed
/// in host (little-endian on x86) order.
fn hex_addr(s: &str) -> Option<Ipv4Addr> {
    if s.len() != 8 {
        return None;
    }
    let v = u32::from_str_radix(s, 16).ok()?;
    Some(Ipv4Addr::from(v.to_le_bytes()))
}

/// Parses `/proc/net/route`.
pub fn parse_routes(text: &str) -> Vec<Route> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let dest = hex_addr(f[1])?;
            let mask = u32::from(hex_addr(f[7])?);
            let prefix = mask.count_ones();
            // a mask must be contiguous ones
            if mask.leading_ones() != prefix {
                return None;
            }
            let net = Ipv4Net::new(dest, prefix as u8).ok()?.trunc();
            Some(Route {
                iface: f[0].to_string(),
                net,
            })
        })
        .collect()
}

/// Parses `/proc/net/udp` (`proto = "udp"`, every socket) or `/proc/net/tcp`
/// (`proto = "tcp"`, listening sockets only).
pub fn parse_sockets(text: &str, proto: &'static str) -> Vec<Bound> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 {
                return None;
            }
            if proto == "tcp" && f[3] != "0A" {
                return None;
            }
            let (a, p) = f[1].split_once(':')?;
            Some(Bound {
                proto,
                addr: hex_addr(a)?,
                port: u16::from_str_radix(p, 16).ok()?,
            })
        })
        .collect()
}

/// What a libvirt network's XML says about addresses and bridge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkFacts {
    /// `<name>`
    pub name: String,
    /// `<bridge name=..>`
    pub bridge: Option<String>,
    /// Every IPv4 `<ip address=.. prefix|netmask=..>`.
    pub nets: Vec<Ipv4Net>,
}

/// Scans a libvirt network XML for its name, bridge and IPv4 subnets.
pub fn parse_network_facts(xml: &str) -> NetworkFacts {
    use quick_xml::Reader;
    use quick_xml::events::Event;
    let mut r = Reader::from_str(xml);
    let mut facts = NetworkFacts::default();
    let mut depth = 0usize;
    let mut in_name = false;
    loop {
        match r.read_event() {
            Ok(Event::Eof) | Err(_) => break,
            Ok(Event::Start(e)) => {
                if depth == 1 {
                    in_name = e.name().as_ref() == "name";
                    top_level_element(&e, &mut facts);
                }
                depth += 1;
            }
            Ok(Event::Empty(e)) => {
                if depth == 1 {
                    top_level_element(&e, &mut facts);
                }
            }
            Ok(Event::End(_)) => {
                depth = depth.saturating_sub(1);
                in_name = false;
            }
            Ok(Event::Text(t)) if in_name => {
                facts.name.push_str(t.xml10_content().trim());
            }
            Ok(_) => {}
        }
    }
    facts
}

fn top_level_element(e: &quick_xml::events::BytesStart<'_>, facts: &mut NetworkFacts) {
    let attr = |k: &str| {
        e.attributes().flatten().find_map(|a| {
            if a.key.as_ref() != k {
                return None;
            }
            a.normalized_value(quick_xml::XmlVersion::default())
                .ok()
                .map(|v| v.into_owned())
        })
    };
    match e.name().as_ref() {
        "bridge" => facts.bridge = attr("name"),
        "ip" => {
            if attr("family").as_deref().unwrap_or("ipv4") != "ipv4" {
                return;
            }
            let Some(addr) = attr("address").and_then(|a| a.parse::<Ipv4Addr>().ok()) else {
                return;
            };
            let prefix = attr("prefix")
                .and_then(|p| p.parse::<u8>().ok())
                .or_else(|| {
                    let m = u32::from(attr("netmask")?.parse::<Ipv4Addr>().ok()?);
                    (m.leading_ones() == m.count_ones()).then_some(m.count_ones() as u8)
                });
            if let Some(n) = prefix.and_then(|p| Ipv4Net::new(addr, p).ok()) {
                facts.nets.push(n.trunc());
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let t = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                 eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                 eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                 bad\tzz\n";
        let r = parse_routes(t);
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].net, "192.168.1.0/24".parse().unwrap());
        assert_eq!(r[0].net.prefix_len(), 0);
    }

    #[test]
    fn sockets() {
        let t = "  sl  local_address rem_address   st\n\
                 0: 00000000:0043 00000000:0000 07 0\n\
                 1: 0100007F:0035 00000000:0000 0A 0\n";
        let u = parse_sockets(t, "udp");
        assert_eq!(u[0].port, 67);
        assert_eq!(u[1].addr, Ipv4Addr::LOCALHOST);
        let tcp = parse_sockets(t, "tcp");
        assert_eq!(tcp.len(), 1);
        assert_eq!(tcp[0].port, 53);
    }

    #[test]
    fn network_facts() {
        let x = "<network><name>default</name><uuid>u</uuid><forward mode='nat'/>\
                 <bridge name='virbr0' stp='on'/><ip address='192.168.122.1' netmask='255.255.255.0'>\
                 <dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp></ip>\
                 <ip family='ipv6' address='fd00::1' prefix='64'/></network>";
        let f = parse_network_facts(x);
        assert_eq!(f.name, "default");
        assert_eq!(f.bridge.as_deref(), Some("virbr0"));
        assert_eq!(f.nets, vec!["192.168.122.0/24".parse::<Ipv4Net>().unwrap()]);
    }
}
