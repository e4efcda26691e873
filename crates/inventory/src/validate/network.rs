//! `[lab]` and `[network]`: names, the subnet, the mode and its address
//! rules, the pool.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ipnet::Ipv4Net;

use super::{Checker, nodes::NodeDraft, services::ServicesDraft, socket_addr, valid_ifname};
use crate::defaults;
use crate::diag::FieldPath;
use crate::model::*;
use crate::values;
use crate::wire;

/// `[network]` as far as it validated.
pub(crate) struct NetworkDraft {
    pub cidr: Option<Ipv4Net>,
    pub mode: Option<NetworkMode>,
    pub gateway: Option<Ipv4Addr>,
    pub host_ip: Option<Ipv4Addr>,
    pub libvirt_name: String,
    pub bridge: String,
    pub upstream_dns: Vec<SocketAddr>,
    pub lease: Option<Duration>,
    pub dhcp: Option<DhcpMode>,
}

/// `[lab]`
pub(crate) fn lab(c: &mut Checker<'_>, w: &wire::LabSection) -> Lab {
    let p = FieldPath::of;
    let name = w.name.trim().to_ascii_lowercase();
    if let Err(e) = values::check_hostname(&name) {
        c.err(
            &p("lab.name"),
            format!("{:?} is not a valid DNS label: {e}", w.name),
            "use letters, digits and inner hyphens (it becomes the first label of the lab zone)",
        );
    }
    let domain = w.domain.trim().trim_end_matches('.').to_ascii_lowercase();
    if let Err(e) = values::check_domain(&domain) {
        c.err(
            &p("lab.domain"),
            format!("{:?} is not a valid domain name: {e}", w.domain),
            "write a domain such as example.com",
        );
    }
    Lab { name, domain }
}

/// `[network]` without the pool (which needs the nodes).
pub(crate) fn network(c: &mut Checker<'_>, net: &wire::NetworkSection, lab: &Lab) -> NetworkDraft {
    let p = FieldPath::of;
    let cidr = match net.cidr.trim().parse::<Ipv4Net>() {
        Ok(n) if n != n.trunc() => {
            c.err(
                &p("network.cidr"),
                format!("{} has host bits set", net.cidr),
                &format!("write the network address: {}", n.trunc()),
            );
            None
        }
        Ok(n) if n.prefix_len() > 30 || n.prefix_len() < 8 => {
            c.err(
                &p("network.cidr"),
                format!("/{} is not a usable lab network size", n.prefix_len()),
                "use a prefix length from /8 to /30, e.g. /24",
            );
            None
        }
        Ok(n) => Some(n),
        Err(_) => {
            c.err(
                &p("network.cidr"),
                format!("{:?} is not an IPv4 CIDR", net.cidr),
                "write a network such as 192.168.200.0/24",
            );
            None
        }
    };
    let mode = c.one_of(
        &p("network.mode"),
        net.mode.trim(),
        &[
            ("nat", NetworkMode::Nat),
            ("isolated", NetworkMode::Isolated),
            ("bridge", NetworkMode::Bridge),
        ],
    );
    let gateway = c.host_ip(&p("network.gateway"), &net.gateway, cidr);
    let host_ip = net
        .host_ip
        .as_deref()
        .and_then(|s| c.host_ip(&p("network.host_ip"), s, cidr));
    let libvirt_name = net.libvirt_name.clone().unwrap_or_else(|| lab.name.clone());
    if libvirt_name.is_empty() || libvirt_name.contains('/') {
        c.err(
            &p("network.libvirt_name"),
            format!("{libvirt_name:?} is not a usable libvirt network name"),
            "use a short name without '/', e.g. the lab name",
        );
    }
    let bridge = net
        .bridge
        .clone()
        .unwrap_or_else(|| format!("virbr-{}", lab.name));
    if bridge.len() > 15 {
        c.err(
            &p("network.bridge"),
            format!(
                "bridge name {bridge:?} is {} bytes; Linux allows at most 15",
                bridge.len()
            ),
            "choose a shorter name, e.g. \"virbr-lab\"",
        );
    } else if !valid_ifname(&bridge) {
        c.err(
            &p("network.bridge"),
            format!("{bridge:?} is not a valid interface name"),
            "use letters, digits, '-' and '_' only",
        );
    }
    if mode == Some(NetworkMode::Bridge) && net.bridge.is_none() {
        c.err(
            &p("network"),
            "network.mode = \"bridge\" needs network.bridge (the existing host bridge)",
            "set bridge = \"br0\" (or your bridge's name)",
        );
    }
    let mut upstream_dns = Vec::new();
    for (i, s) in net.upstream_dns.iter().enumerate() {
        match socket_addr(s, 53) {
            Some(sa) => upstream_dns.push(sa),
            None => c.err(
                &p("network.upstream_dns").idx(i),
                format!("{s:?} is not an address"),
                "write an IP address, optionally with a port: \"9.9.9.9\" or \"9.9.9.9:53\"",
            ),
        }
    }
    let lease = match values::parse_duration(&net.lease) {
        Ok(d) if d < Duration::from_secs(defaults::LEASE_MIN_SECS) => {
            c.err(
                &p("network.lease"),
                format!("lease {:?} is shorter than a minute", net.lease),
                &format!("use at least \"1m\"; \"{}\" is usual", defaults::LEASE),
            );
            None
        }
        Ok(d) if d.as_secs() >= u64::from(u32::MAX) => {
            c.err(
                &p("network.lease"),
                format!("lease {:?} does not fit DHCP's 32-bit seconds", net.lease),
                "use a shorter lease such as \"30d\"",
            );
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            c.err(
                &p("network.lease"),
                e,
                "write a duration such as \"12h\", \"30m\" or \"7d\"",
            );
            None
        }
    };
    let dhcp = c.one_of(
        &p("network.dhcp"),
        net.dhcp.trim(),
        &[("server", DhcpMode::Server), ("proxy", DhcpMode::Proxy)],
    );
    NetworkDraft {
        dhcp,
        cidr,
        mode,
        gateway,
        host_ip,
        libvirt_name,
        bridge,
        upstream_dns,
        lease,
    }
}

/// The address rules each mode implies.
pub(crate) fn mode_rules(
    c: &mut Checker<'_>,
    file: &wire::LabFile,
    net: &NetworkDraft,
    svc: &ServicesDraft,
) {
    let p = FieldPath::of;
    let sp = p("services");
    let (gateway, host_ip, services_ip) = (net.gateway, net.host_ip, svc.ip);
    match net.mode {
        Some(NetworkMode::Nat) => {
            match host_ip {
                None if file.network.host_ip.is_none() => c.err(
                    &p("network"),
                    "nat mode needs network.host_ip (the hypervisor's address on the bridge)",
                    "set host_ip to the same address as gateway",
                ),
                Some(h) if Some(h) != gateway && gateway.is_some() => c.err(
                    &p("network.host_ip"),
                    format!(
                        "in nat mode the hypervisor is the gateway, but host_ip {h} differs from gateway {}",
                        gateway.map(|g| g.to_string()).unwrap_or_default()
                    ),
                    "set host_ip and gateway to the same address",
                ),
                _ => {}
            }
            if gateway.is_some() && gateway == services_ip {
                c.err(
                    &p("network.gateway"),
                    "gateway equals services.ip, which is right only in isolated mode",
                    "in nat mode the gateway is the hypervisor (host_ip); or set mode = \"isolated\" with services.uplink",
                );
            }
        }
        Some(NetworkMode::Isolated) => {
            if file.services.uplink.is_none() {
                c.err(
                    &sp,
                    "isolated mode needs services.uplink: the services VM is the lab's only way out",
                    "add uplink = { network = \"default\", mac = \"52:54:00:c8:01:fe\" } to [services]",
                );
            }
            if gateway.is_some() && services_ip.is_some() && gateway != services_ip {
                c.err(
                    &p("network.gateway"),
                    "in isolated mode the services VM is the gateway, but gateway differs from services.ip",
                    "set gateway = services.ip",
                );
            }
        }
        Some(NetworkMode::Bridge) | None => {
            if gateway.is_some() && gateway == services_ip && file.services.uplink.is_none() {
                c.err(
                    &p("network.gateway"),
                    "gateway equals services.ip, but the services VM has no uplink to route through",
                    "add services.uplink, or point gateway at the real router",
                );
            }
        }
    }
    if host_ip.is_some() && host_ip == services_ip {
        c.err(
            &p("network.host_ip"),
            "host_ip equals services.ip: the hypervisor and the services VM need different addresses",
            "give the services VM its own address",
        );
    }
    if !file.egress.allow_domains.is_empty() && net.mode == Some(NetworkMode::Nat) {
        c.err(
            &p("egress.allow_domains"),
            "allow_domains needs the services VM as the lab's gateway; in nat mode the hypervisor forwards and cannot see DNS answers",
            "use mode = \"isolated\" with services.uplink, or list addresses in allow_cidrs instead",
        );
    }
    for sa in &net.upstream_dns {
        if services_ip.is_some_and(|ip| sa.ip() == IpAddr::V4(ip)) {
            c.err(
                &p("network.upstream_dns"),
                format!(
                    "{} is the services VM itself; forwarding to it would loop",
                    sa.ip()
                ),
                "list a resolver outside the lab, or leave upstream_dns empty to use resolv.conf",
            );
        }
    }
}

/// `network.pool`: inside the CIDR, covering no fixed address.
pub(crate) fn pool(
    c: &mut Checker<'_>,
    net: &wire::NetworkSection,
    draft: &NetworkDraft,
    services_ip: Option<Ipv4Addr>,
    nodes: &[(usize, NodeDraft)],
) -> Option<Pool> {
    let pool = net.pool.as_ref()?;
    let pp = FieldPath::of("network.pool");
    if draft.dhcp == Some(DhcpMode::Proxy) {
        c.err(
            &pp,
            "network.dhcp = \"proxy\" hands out no addresses, so a pool has no use",
            "remove [network.pool] (the other DHCP server owns the addresses), or set dhcp = \"server\"",
        );
        return None;
    }
    let start = c.host_ip(&pp.key("start"), &pool.start, draft.cidr)?;
    let end = c.host_ip(&pp.key("end"), &pool.end, draft.cidr)?;
    if start > end {
        c.err(
            &pp.key("end"),
            format!("pool end {end} comes before start {start}"),
            "swap start and end",
        );
        return None;
    }
    let pool = Pool { start, end };
    let fixed = [
        (draft.gateway, "network.gateway"),
        (draft.host_ip, "network.host_ip"),
        (services_ip, "services.ip"),
    ];
    for (ip, what) in fixed {
        if let Some(ip) = ip.filter(|ip| pool.contains(*ip)) {
            c.err(
                &pp,
                format!("pool {start}-{end} contains {what} {ip}"),
                "move the pool so it covers no fixed address",
            );
        }
    }
    for (i, n) in nodes {
        if pool.contains(n.ip) {
            c.err(
                &pp,
                format!(
                    "pool {start}-{end} contains nodes[{i}].ip {} ({})",
                    n.ip, n.written_name
                ),
                "reserved addresses must lie outside the pool; move the pool or the node",
            );
        }
    }
    Some(pool)
}
