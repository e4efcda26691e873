//! Wire structs -> validated [`Inventory`], collecting every problem.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::diag::{Diagnostic, FieldPath, SourceMap};
use crate::model::*;
use crate::template;
use crate::values::{self, MacAddr};
use crate::wire;

/// Default TTL for records that do not set one.
pub const DEFAULT_TTL: u32 = 300;

const HELP_IP: &str = "write a dotted IPv4 address such as 192.168.200.10";
const HELP_MAC: &str = "write six hex byte pairs separated by ':' or '-', e.g. 52:54:00:12:34:56, or omit mac to derive it from ip";
const HELP_SIZE: &str = "write a size such as \"512MiB\", \"16GiB\" or \"1TiB\"";

struct Checker<'a> {
    map: &'a SourceMap<'a>,
    base_dir: PathBuf,
    errors: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn err(&mut self, path: &FieldPath, message: impl Into<String>, help: &str) {
        self.errors.push(self.map.at(path, message.into(), help));
    }

    fn ipv4(&mut self, path: &FieldPath, s: &str) -> Option<Ipv4Addr> {
        match s.trim().parse::<Ipv4Addr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.err(path, format!("{s:?} is not an IPv4 address"), HELP_IP);
                None
            }
        }
    }

    /// An address that must be a usable host address inside `cidr`.
    fn host_ip(&mut self, path: &FieldPath, s: &str, cidr: Option<Ipv4Net>) -> Option<Ipv4Addr> {
        let ip = self.ipv4(path, s)?;
        if let Some(net) = cidr {
            if !net.contains(&ip) {
                self.err(
                    path,
                    format!("{ip} is outside network.cidr {net}"),
                    &format!(
                        "use an address between {} and {}, or widen network.cidr",
                        first_host(net),
                        last_host(net)
                    ),
                );
                return None;
            }
            if net.prefix_len() < 31 && (ip == net.network() || ip == net.broadcast()) {
                let what = if ip == net.network() {
                    "network"
                } else {
                    "broadcast"
                };
                self.err(
                    path,
                    format!("{ip} is the {what} address of {net}"),
                    &format!(
                        "use an address between {} and {}",
                        first_host(net),
                        last_host(net)
                    ),
                );
                return None;
            }
        }
        Some(ip)
    }

    fn mac(&mut self, path: &FieldPath, s: &str) -> Option<MacAddr> {
        match s.parse::<MacAddr>() {
            Ok(m) if m.is_group() => {
                self.err(
                    path,
                    format!("{s:?} is a multicast (group) address, which no NIC has"),
                    "clear the lowest bit of the first byte; libvirt-style MACs start with 52:54:00",
                );
                None
            }
            Ok(m) => Some(m),
            Err(e) => {
                self.err(path, e.to_string(), HELP_MAC);
                None
            }
        }
    }

    fn size(&mut self, path: &FieldPath, s: &str) -> Option<u64> {
        match values::parse_size(s) {
            Ok(b) => Some(b),
            Err(e) => {
                self.err(path, e, HELP_SIZE);
                None
            }
        }
    }

    fn sizes(&mut self, path: &FieldPath, list: &[String]) -> Option<Vec<u64>> {
        let mut out = Vec::new();
        let mut ok = true;
        for (i, s) in list.iter().enumerate() {
            match self.size(&path.idx(i), s) {
                Some(b) => out.push(b),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn hostname(&mut self, path: &FieldPath, name: &str) {
        if let Err(e) = values::check_hostname(name) {
            self.err(
                path,
                format!("{name:?} is not a valid host name: {e}"),
                "use letters, digits and inner hyphens, at most 63 bytes (it becomes a DNS label)",
            );
        }
    }

    fn one_of<T: Copy>(
        &mut self,
        path: &FieldPath,
        value: &str,
        choices: &[(&str, T)],
    ) -> Option<T> {
        if let Some((_, v)) = choices.iter().find(|(n, _)| *n == value) {
            return Some(*v);
        }
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        self.err(
            path,
            format!("unknown value {value:?}"),
            &format!("use one of: {}", names.join(", ")),
        );
        None
    }

    fn asset_path(&mut self, path: &FieldPath, s: &str) {
        let p = Path::new(s);
        let bad = s.is_empty()
            || p.is_absolute()
            || s.contains('\\')
            || p.components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
        if bad {
            self.err(
                path,
                format!("{s:?} is not a relative path inside services.assets_dir"),
                "write a path relative to services.assets_dir without '..', e.g. \"okd/kernel/vmlinuz\"",
            );
        }
    }

    fn dir(&self, s: &str) -> PathBuf {
        let p = PathBuf::from(s);
        if p.is_absolute() {
            p
        } else {
            self.base_dir.join(p)
        }
    }
}

fn first_host(net: Ipv4Net) -> Ipv4Addr {
    if net.prefix_len() >= 31 {
        net.network()
    } else {
        Ipv4Addr::from(u32::from(net.network()) + 1)
    }
}

fn last_host(net: Ipv4Net) -> Ipv4Addr {
    if net.prefix_len() >= 31 {
        net.broadcast()
    } else {
        Ipv4Addr::from(u32::from(net.broadcast()) - 1)
    }
}

fn socket_addr(s: &str, default_port: u16) -> Option<SocketAddr> {
    let t = s.trim();
    if let Ok(sa) = t.parse::<SocketAddr>() {
        return Some(sa);
    }
    t.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, default_port))
}

fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && !s
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

/// A name relative to the lab zone, as written in zone files: `@`, `api`,
/// `*.apps`, or absolute with a trailing dot (which must be inside the zone).
/// Returns the owner relative to the zone ("" for the apex), lowercase.
fn zone_relative(name: &str, zone: &str) -> Result<String, String> {
    let lower = name.trim().to_ascii_lowercase();
    let rel = if lower == "@" {
        String::new()
    } else if let Some(abs) = lower.strip_suffix('.') {
        if abs == zone {
            String::new()
        } else if let Some(r) = abs.strip_suffix(&format!(".{zone}")) {
            r.to_owned()
        } else {
            return Err(format!("{name:?} is outside the lab zone {zone}"));
        }
    } else {
        lower
    };
    if !rel.is_empty() {
        for (i, label) in rel.split('.').enumerate() {
            if label == "*" && i == 0 {
                continue;
            }
            values::check_label(label)?;
        }
    }
    if rel.len() + zone.len() + 1 > 253 {
        return Err(format!("{name:?} makes a name longer than 253 bytes"));
    }
    Ok(rel)
}

/// A target name in a record value: relative names are completed with the zone.
fn target_name(value: &str, zone: &str) -> Result<String, String> {
    let v = value.trim().to_ascii_lowercase();
    let abs = if v == "@" {
        zone.to_owned()
    } else if let Some(a) = v.strip_suffix('.') {
        a.to_owned()
    } else {
        format!("{v}.{zone}")
    };
    values::check_domain(&abs)?;
    Ok(abs)
}

/// Parses a TXT value: `"one" "two"` (quoted, with `\"` and `\\` escapes) or bare text.
fn parse_txt(value: &str) -> Result<Vec<String>, String> {
    let t = value.trim();
    let mut out = Vec::new();
    if !t.starts_with('"') {
        out.push(t.to_owned());
    } else {
        let mut chars = t.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            match chars.next() {
                None => break,
                Some('"') => {}
                Some(c) => return Err(format!("unexpected {c:?} between quoted strings")),
            }
            let mut s = String::new();
            loop {
                match chars.next() {
                    None => return Err("unterminated quoted string".into()),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => s.push(c),
                        None => return Err("unterminated quoted string".into()),
                    },
                    Some(c) => s.push(c),
                }
            }
            out.push(s);
        }
    }
    for s in &out {
        if s.len() > 255 {
            return Err(format!(
                "a TXT string is {} bytes; split it into quoted strings of at most 255",
                s.len()
            ));
        }
    }
    Ok(out)
}

fn parse_record(rtype: &str, value: &str, zone: &str) -> Result<RecordData, (String, String)> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    let num = |s: &str, what: &str| -> Result<u16, (String, String)> {
        s.parse::<u16>().map_err(|_| {
            (
                format!("{what} {s:?} is not a number from 0 to 65535"),
                String::new(),
            )
        })
    };
    let t = rtype.to_ascii_uppercase();
    let help = |h: &str| h.to_owned();
    match t.as_str() {
        "A" => value
            .trim()
            .parse()
            .map(RecordData::A)
            .map_err(|_| (format!("{value:?} is not an IPv4 address"), help(HELP_IP))),
        "AAAA" => value.trim().parse().map(RecordData::Aaaa).map_err(|_| {
            (
                format!("{value:?} is not an IPv6 address"),
                help("write an IPv6 address such as fd00::10"),
            )
        }),
        "CNAME" => target_name(value, zone)
            .map(RecordData::Cname)
            .map_err(|e| {
                (
                    format!("CNAME target {value:?}: {e}"),
                    help("write a name relative to the lab zone, or absolute with a trailing dot"),
                )
            }),
        "TXT" => parse_txt(value)
            .map(RecordData::Txt)
            .map_err(|e| (e, help("write text, or quoted strings: \"v=1\" \"k=2\""))),
        "SRV" => {
            let h = "write \"<priority> <weight> <port> <target>\", e.g. \"0 5 6443 api\"";
            if fields.len() != 4 {
                return Err((format!("SRV value {value:?} needs 4 fields"), help(h)));
            }
            let target = target_name(fields[3], zone)
                .map_err(|e| (format!("SRV target {:?}: {e}", fields[3]), help(h)))?;
            Ok(RecordData::Srv {
                priority: num(fields[0], "priority").map_err(|(m, _)| (m, help(h)))?,
                weight: num(fields[1], "weight").map_err(|(m, _)| (m, help(h)))?,
                port: num(fields[2], "port").map_err(|(m, _)| (m, help(h)))?,
                target,
            })
        }
        "MX" => {
            let h = "write \"<preference> <exchange>\", e.g. \"10 mail\"";
            if fields.len() != 2 {
                return Err((format!("MX value {value:?} needs 2 fields"), help(h)));
            }
            let exchange = target_name(fields[1], zone)
                .map_err(|e| (format!("MX exchange {:?}: {e}", fields[1]), help(h)))?;
            Ok(RecordData::Mx {
                preference: num(fields[0], "preference").map_err(|(m, _)| (m, help(h)))?,
                exchange,
            })
        }
        _ => Err((
            format!("unknown record type {rtype:?}"),
            help("use one of: A, AAAA, CNAME, TXT, SRV, MX (PTR records are derived from nodes)"),
        )),
    }
}

fn merge_vars(
    role: Option<&BTreeMap<String, wire::VarValue>>,
    node: &BTreeMap<String, wire::VarValue>,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = role
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    for (k, v) in node {
        out.insert(k.clone(), v.to_string());
    }
    out
}

/// Validates `file`, returning the model or every problem found.
pub(crate) fn validate(
    file: &wire::LabFile,
    map: &SourceMap<'_>,
    base_dir: &Path,
) -> Result<Inventory, Vec<Diagnostic>> {
    let mut c = Checker {
        map,
        base_dir: base_dir.to_path_buf(),
        errors: Vec::new(),
    };
    let p = FieldPath::of;

    // [lab]
    let lab_name = file.lab.name.trim().to_ascii_lowercase();
    if let Err(e) = values::check_hostname(&lab_name) {
        c.err(
            &p("lab.name"),
            format!("{:?} is not a valid DNS label: {e}", file.lab.name),
            "use letters, digits and inner hyphens (it becomes the first label of the lab zone)",
        );
    }
    let domain = file
        .lab
        .domain
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if let Err(e) = values::check_domain(&domain) {
        c.err(
            &p("lab.domain"),
            format!("{:?} is not a valid domain name: {e}", file.lab.domain),
            "write a domain such as example.com",
        );
    }
    let lab = Lab {
        name: lab_name,
        domain,
    };
    let zone = lab.zone();

    // [network]
    let net = &file.network;
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
        Ok(d) if d < Duration::from_secs(60) => {
            c.err(
                &p("network.lease"),
                format!("lease {:?} is shorter than a minute", net.lease),
                "use at least \"1m\"; \"12h\" is usual",
            );
            Duration::from_secs(60)
        }
        Ok(d) if d.as_secs() >= u64::from(u32::MAX) => {
            c.err(
                &p("network.lease"),
                format!("lease {:?} does not fit DHCP's 32-bit seconds", net.lease),
                "use a shorter lease such as \"30d\"",
            );
            Duration::from_secs(43_200)
        }
        Ok(d) => d,
        Err(e) => {
            c.err(
                &p("network.lease"),
                e,
                "write a duration such as \"12h\", \"30m\" or \"7d\"",
            );
            Duration::from_secs(43_200)
        }
    };

    // [libvirt]
    let lv = &file.libvirt;
    let pool_name = lv.pool.clone().unwrap_or_else(|| lab.name.clone());
    let virt_type = lv.virt_type.as_deref().map_or(Some(VirtType::Auto), |s| {
        c.one_of(
            &p("libvirt.virt_type"),
            s,
            &[
                ("auto", VirtType::Auto),
                ("kvm", VirtType::Kvm),
                ("qemu", VirtType::Qemu),
            ],
        )
    });
    let disk_bus = lv.disk_bus.as_deref().map_or(Some(DiskBus::Virtio), |s| {
        c.one_of(
            &p("libvirt.disk_bus"),
            s,
            &[
                ("virtio", DiskBus::Virtio),
                ("scsi", DiskBus::Scsi),
                ("sata", DiskBus::Sata),
            ],
        )
    });
    if let Some(uri) = &lv.uri {
        if !uri.contains(":/") {
            c.err(
                &p("libvirt.uri"),
                format!("{uri:?} is not a libvirt URI"),
                "write e.g. \"qemu:///system\" or \"qemu+ssh://host/system\"",
            );
        }
    }
    let pool_path = lv
        .pool_path
        .clone()
        .unwrap_or_else(|| format!("/var/lib/libvirt/images/{pool_name}"));
    if !pool_path.starts_with('/') {
        c.err(
            &p("libvirt.pool_path"),
            format!("{pool_path:?} is not an absolute path"),
            "write an absolute directory such as /var/lib/libvirt/images/okd",
        );
    }
    let libvirt = Libvirt {
        uri: lv.uri.clone().unwrap_or_else(|| "qemu:///system".into()),
        pool: pool_name,
        pool_path: PathBuf::from(pool_path),
        vm_prefix: lv
            .vm_prefix
            .clone()
            .unwrap_or_else(|| format!("{}-", lab.name)),
        virt_type: virt_type.unwrap_or(VirtType::Auto),
        disk_bus: disk_bus.unwrap_or(DiskBus::Virtio),
    };

    // [services]
    let s = &file.services;
    let sp = p("services");
    let services_name = s.name.trim().to_ascii_lowercase();
    c.hostname(&sp.key("name"), &services_name);
    let services_ip = c.host_ip(&sp.key("ip"), &s.ip, cidr);
    let services_mac = match (&s.mac, services_ip) {
        (Some(m), _) => c.mac(&sp.key("mac"), m),
        (None, Some(ip)) => Some(MacAddr::derived_from(ip)),
        (None, None) => None,
    };
    if let Some(ifname) = &s.interface {
        if !valid_ifname(ifname) {
            c.err(
                &sp.key("interface"),
                format!("{ifname:?} is not a valid interface name"),
                "name an interface of the services node, e.g. \"eth0\", or omit it to find the NIC by services.mac",
            );
        }
    }
    let services_vcpus = s.vcpus.unwrap_or(2);
    if services_vcpus == 0 {
        c.err(
            &sp.key("vcpus"),
            "vcpus must be at least 1",
            "set vcpus = 2",
        );
    }
    let services_memory = c.size(&sp.key("memory"), s.memory.as_deref().unwrap_or("2GiB"));
    let services_disks = match &s.disks {
        Some(d) => c.sizes(&sp.key("disks"), d),
        None => Some(vec![16 << 30]),
    };
    let mut listen_addr = |key: &str, v: &Option<String>, default: &str, port: u16| {
        let raw = v.as_deref().unwrap_or(default);
        socket_addr(raw, port).unwrap_or_else(|| {
            c.err(
                &sp.key("listen").key(key),
                format!("{raw:?} is not a socket address"),
                &format!("write an address and port, e.g. \"{default}\""),
            );
            SocketAddr::from(([0, 0, 0, 0], port))
        })
    };
    let listen = Listen {
        dhcp: listen_addr("dhcp", &s.listen.dhcp, "0.0.0.0:67", 67),
        dns: listen_addr("dns", &s.listen.dns, "0.0.0.0:53", 53),
        tftp: listen_addr("tftp", &s.listen.tftp, "0.0.0.0:69", 69),
        http: listen_addr("http", &s.listen.http, "0.0.0.0:8080", 8080),
    };
    let data_dir = c.dir(s.data_dir.as_deref().unwrap_or("/var/lib/bootlab"));
    let assets_dir = match &s.assets_dir {
        Some(a) => c.dir(a),
        None => data_dir.join("assets"),
    };
    let uplink = s.uplink.as_ref().and_then(|u| {
        if u.network.trim().is_empty() {
            c.err(
                &sp.key("uplink").key("network"),
                "the uplink network name is empty",
                "name the libvirt network that reaches the outside, e.g. \"default\"",
            );
        }
        c.mac(&sp.key("uplink").key("mac"), &u.mac)
            .map(|mac| Uplink {
                network: u.network.clone(),
                mac,
            })
    });
    for (i, key) in s.ssh_authorized_keys.iter().enumerate() {
        let kind = key.split_whitespace().next().unwrap_or_default();
        let known = kind.starts_with("ssh-")
            || kind.starts_with("ecdsa-")
            || kind.starts_with("sk-")
            || kind.starts_with("rsa-");
        if !known || key.split_whitespace().count() < 2 {
            c.err(
                &sp.key("ssh_authorized_keys").idx(i),
                "this is not an OpenSSH public key",
                "paste a line from ~/.ssh/id_ed25519.pub: \"ssh-ed25519 AAAA... user@host\"",
            );
        }
    }
    let ip_ = sp.key("install");
    let install = match s.install.method.as_str() {
        "appliance" => Some(InstallMethod::Appliance),
        "kickstart" => match &s.install.iso {
            Some(iso) => Some(InstallMethod::Kickstart {
                iso: PathBuf::from(iso),
            }),
            None => {
                c.err(
                    &ip_.key("method"),
                    "method = \"kickstart\" needs iso",
                    "set iso = \"/path/to/installer.iso\" in [services.install]",
                );
                None
            }
        },
        "cloud-image" => match &s.install.image {
            Some(image) => Some(InstallMethod::CloudImage {
                image: PathBuf::from(image),
            }),
            None => {
                c.err(
                    &ip_.key("method"),
                    "method = \"cloud-image\" needs image",
                    "set image = \"/path/to/cloud.qcow2\" in [services.install]",
                );
                None
            }
        },
        other => {
            c.err(
                &ip_.key("method"),
                format!("unknown install method {other:?}"),
                "use one of: appliance, kickstart, cloud-image",
            );
            None
        }
    };
    if s.install.iso.is_some() && s.install.method != "kickstart" {
        c.err(
            &ip_.key("iso"),
            "iso is only used with method = \"kickstart\"",
            "remove iso, or set method = \"kickstart\"",
        );
    }
    if s.install.image.is_some() && s.install.method != "cloud-image" {
        c.err(
            &ip_.key("image"),
            "image is only used with method = \"cloud-image\"",
            "remove image, or set method = \"cloud-image\"",
        );
    }

    // Mode-dependent address rules.
    match mode {
        Some(NetworkMode::Nat) => {
            match host_ip {
                None if net.host_ip.is_none() => c.err(
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
            if s.uplink.is_none() {
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
            if gateway.is_some() && gateway == services_ip && s.uplink.is_none() {
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
    if !file.egress.allow_domains.is_empty() && mode == Some(NetworkMode::Nat) {
        c.err(
            &p("egress.allow_domains"),
            "allow_domains needs the services VM as the lab's gateway; in nat mode the hypervisor forwards and cannot see DNS answers",
            "use mode = \"isolated\" with services.uplink, or list addresses in allow_cidrs instead",
        );
    }
    for sa in &upstream_dns {
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

    // [profiles]
    let mut profiles = BTreeMap::new();
    let mut profile_needs: HashMap<String, Vec<String>> = HashMap::new();
    for (name, prof) in &file.profiles {
        let pp = p("profiles").key(name);
        let loader = c.one_of(
            &pp.key("loader"),
            &prof.loader,
            &[("ipxe", Loader::Ipxe), ("grub", Loader::Grub)],
        );
        c.asset_path(&pp.key("kernel"), &prof.kernel);
        for (i, ird) in prof.initrd.iter().enumerate() {
            c.asset_path(&pp.key("initrd").idx(i), ird);
        }
        match template::check(&prof.args) {
            Ok(needs) => {
                profile_needs.insert(name.clone(), needs);
            }
            Err(e) => c.err(
                &pp.key("args"),
                e,
                "in scope: {{ http }}, {{ assets }}, {{ node.name|mac|ip|role|fqdn }}, {{ vars.<key> }}",
            ),
        }
        profiles.insert(
            name.clone(),
            Profile {
                name: name.clone(),
                loader: loader.unwrap_or(Loader::Ipxe),
                kernel: prof.kernel.clone(),
                initrd: prof.initrd.clone(),
                args: prof.args.clone(),
            },
        );
    }

    // [roles]
    let firmware_choices = [("bios", Firmware::Bios), ("uefi", Firmware::Uefi)];
    struct RoleDefaults {
        firmware: Option<Firmware>,
        memory: Option<u64>,
        disks: Option<Vec<u64>>,
    }
    let mut roles = BTreeMap::new();
    for (name, role) in &file.roles {
        let rp = p("roles").key(name);
        if let Some(prof) = &role.profile {
            if !profiles.contains_key(prof) {
                c.err(
                    &rp.key("profile"),
                    format!("unknown profile {prof:?}"),
                    &known_list("profiles", profiles.keys()),
                );
            }
        }
        let firmware = role
            .firmware
            .as_deref()
            .and_then(|f| c.one_of(&rp.key("firmware"), f, &firmware_choices));
        if role.vcpus == Some(0) {
            c.err(
                &rp.key("vcpus"),
                "vcpus must be at least 1",
                "set vcpus = 2",
            );
        }
        let memory = role
            .memory
            .as_deref()
            .and_then(|m| c.size(&rp.key("memory"), m));
        let disks = role
            .disks
            .as_ref()
            .and_then(|d| c.sizes(&rp.key("disks"), d));
        roles.insert(
            name.clone(),
            RoleDefaults {
                firmware,
                memory,
                disks,
            },
        );
    }

    // [[nodes]]
    let mut nodes = Vec::new();
    let mut names: HashMap<String, FieldPath> = HashMap::new();
    names.insert(services_name.clone(), sp.key("name"));
    let mut macs: HashMap<MacAddr, (FieldPath, bool)> = HashMap::new();
    if let Some(m) = services_mac {
        macs.insert(m, (sp.key("mac"), s.mac.is_none()));
    }
    if let Some(u) = &uplink {
        if let Some((first, _)) = macs.get(&u.mac) {
            let first = first.clone();
            c.err(
                &sp.key("uplink").key("mac"),
                format!("MAC {} is already used by {first}", u.mac),
                "give the uplink NIC its own MAC",
            );
        } else {
            macs.insert(u.mac, (sp.key("uplink").key("mac"), false));
        }
    }
    let mut ips: HashMap<Ipv4Addr, FieldPath> = HashMap::new();
    if let Some(ip) = services_ip {
        ips.insert(ip, sp.key("ip"));
    }
    for (i, n) in file.nodes.iter().enumerate() {
        let np = p("nodes").idx(i);
        let name = n.name.trim().to_ascii_lowercase();
        c.hostname(&np.key("name"), &name);
        if let Some(first) = names.get(&name) {
            let first = first.clone();
            c.err(
                &np.key("name"),
                format!("host name {name:?} is already used by {first}"),
                "give every node and the services VM a distinct name",
            );
        } else {
            names.insert(name.clone(), np.key("name"));
        }
        let ip = c.host_ip(&np.key("ip"), &n.ip, cidr);
        if let Some(ip) = ip {
            let clash = if Some(ip) == gateway {
                Some("network.gateway".to_owned())
            } else if Some(ip) == host_ip {
                Some("network.host_ip".to_owned())
            } else {
                ips.get(&ip).map(ToString::to_string)
            };
            if let Some(other) = clash {
                c.err(
                    &np.key("ip"),
                    format!("{ip} is already used by {other}"),
                    "give every node its own address",
                );
            } else {
                ips.insert(ip, np.key("ip"));
            }
        }
        let (mac, derived) = match (&n.mac, ip) {
            (Some(m), _) => (c.mac(&np.key("mac"), m), false),
            (None, Some(ip)) => (Some(MacAddr::derived_from(ip)), true),
            (None, None) => (None, true),
        };
        if let Some(m) = mac {
            if let Some((first, first_derived)) = macs.get(&m) {
                let note = match (derived, *first_derived) {
                    (true, _) => " (this node's MAC is derived from its ip)",
                    (false, true) => " (that MAC is derived from an ip)",
                    _ => "",
                };
                let first = first.clone();
                c.err(
                    &if derived { np.key("ip") } else { np.key("mac") },
                    format!("MAC {m} is already used by {first}{note}"),
                    "every NIC needs its own MAC; set mac explicitly to a unique one",
                );
            } else {
                macs.insert(
                    m,
                    (if derived { np.key("ip") } else { np.key("mac") }, derived),
                );
            }
        }
        let role = n.role.as_ref().map(|r| r.trim().to_owned());
        let role_wire = role.as_ref().and_then(|r| file.roles.get(r));
        let role_def = role.as_ref().and_then(|r| roles.get(r));
        if let Some(r) = &role {
            if role_wire.is_none() {
                c.err(
                    &np.key("role"),
                    format!("unknown role {r:?}"),
                    &known_list("roles", file.roles.keys()),
                );
            }
        }
        let profile = n
            .profile
            .clone()
            .or_else(|| role_wire.and_then(|r| r.profile.clone()));
        match &profile {
            Some(pn) if n.profile.is_some() && !profiles.contains_key(pn) => c.err(
                &np.key("profile"),
                format!("unknown profile {pn:?}"),
                &known_list("profiles", profiles.keys()),
            ),
            Some(_) => {}
            None if role.is_some() && role_wire.is_none() => {}
            None => c.err(
                &np,
                format!("node {name:?} has no boot profile"),
                "set profile on the node or on its role",
            ),
        }
        let firmware = match &n.firmware {
            Some(f) => c.one_of(&np.key("firmware"), f, &firmware_choices),
            None => Some(role_def.and_then(|r| r.firmware).unwrap_or(Firmware::Bios)),
        };
        let vcpus = n
            .vcpus
            .or_else(|| role_wire.and_then(|r| r.vcpus))
            .unwrap_or(2);
        if n.vcpus == Some(0) {
            c.err(
                &np.key("vcpus"),
                "vcpus must be at least 1",
                "set vcpus = 2",
            );
        }
        let memory = match &n.memory {
            Some(m) => c.size(&np.key("memory"), m),
            None => Some(role_def.and_then(|r| r.memory).unwrap_or(4 << 30)),
        };
        let disks = match &n.disks {
            Some(d) => c.sizes(&np.key("disks"), d),
            None => Some(
                role_def
                    .and_then(|r| r.disks.clone())
                    .unwrap_or_else(|| vec![32 << 30]),
            ),
        };
        let vars = merge_vars(role_wire.map(|r| &r.vars), &n.vars);
        if let (Some(mac), Some(ip), Some(profile)) = (mac, ip, profile) {
            nodes.push((
                i,
                Node {
                    name,
                    role,
                    mac,
                    mac_derived: derived,
                    ip,
                    profile,
                    firmware: firmware.unwrap_or(Firmware::Bios),
                    vcpus,
                    memory: memory.unwrap_or(4 << 30),
                    disks: disks.unwrap_or_default(),
                    vars,
                },
            ));
        }
    }

    // Pool.
    let pool = net.pool.as_ref().and_then(|pool| {
        let pp = p("network.pool");
        let start = c.host_ip(&pp.key("start"), &pool.start, cidr)?;
        let end = c.host_ip(&pp.key("end"), &pool.end, cidr)?;
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
            (gateway, "network.gateway".to_owned()),
            (host_ip, "network.host_ip".to_owned()),
            (services_ip, "services.ip".to_owned()),
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
        for (i, n) in &nodes {
            if pool.contains(n.ip) {
                c.err(
                    &pp,
                    format!(
                        "pool {start}-{end} contains nodes[{i}].ip {} ({})",
                        n.ip, n.name
                    ),
                    "reserved addresses must lie outside the pool; move the pool or the node",
                );
            }
        }
        Some(pool)
    });

    // Boot profiles must render for every node that uses them.
    let http = services_ip.map_or_else(
        || format!("http://0.0.0.0:{}", listen.http.port()),
        |ip| format!("http://{ip}:{}", listen.http.port()),
    );
    for (i, n) in &nodes {
        let np = p("nodes").idx(*i);
        let Some(prof) = profiles.get(&n.profile) else {
            if n.profile_is_from_node(file, *i) {
                // already reported as unknown profile on the node
            } else if let Some(r) = &n.role {
                c.err(
                    &p("roles").key(r).key("profile"),
                    format!("unknown profile {:?}", n.profile),
                    &known_list("profiles", profiles.keys()),
                );
            }
            continue;
        };
        let Some(needs) = profile_needs.get(&n.profile) else {
            continue;
        };
        let missing: Vec<&String> = needs.iter().filter(|k| !n.vars.contains_key(*k)).collect();
        if !missing.is_empty() {
            c.err(
                &np,
                format!(
                    "profile {:?} uses {} but node {:?} sets no such var{}",
                    n.profile,
                    missing
                        .iter()
                        .map(|k| format!("vars.{k}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    n.name,
                    n.role
                        .as_ref()
                        .map(|r| format!(" (nor does its role {r:?})"))
                        .unwrap_or_default()
                ),
                "add them to the node's or its role's vars table",
            );
            continue;
        }
        let ctx = node_context(n, &http, &zone);
        if let Err(e) = template::render(&prof.args, &ctx) {
            c.err(
                &p("profiles").key(&n.profile).key("args"),
                format!("rendering for node {:?} failed: {e}", n.name),
                "fix the template or the node's vars",
            );
        }
    }

    // [dns]
    let mut dns_records = Vec::new();
    let mut cname_owners: HashMap<String, FieldPath> = HashMap::new();
    let mut other_owners: HashMap<String, FieldPath> = HashMap::new();
    for (name, path) in &names {
        other_owners.insert(name.clone(), path.clone());
    }
    for (i, r) in file.dns.records.iter().enumerate() {
        let rp = p("dns.records").idx(i);
        let owner = match zone_relative(&r.name, &zone) {
            Ok(o) => o,
            Err(e) => {
                c.err(
                    &rp.key("name"),
                    format!("record name {:?}: {e}", r.name),
                    "write a name relative to the lab zone (\"api\", \"*.apps\", \"@\") or absolute with a trailing dot",
                );
                continue;
            }
        };
        let data = match parse_record(&r.rtype, &r.value, &zone) {
            Ok(d) => d,
            Err((msg, help)) => {
                let field = if msg.starts_with("unknown record type") {
                    "type"
                } else {
                    "value"
                };
                c.err(&rp.key(field), msg, &help);
                continue;
            }
        };
        if matches!(data, RecordData::Cname(_)) {
            if owner.is_empty() {
                c.err(
                    &rp.key("name"),
                    "a CNAME cannot sit at the zone apex (it holds SOA and NS)",
                    "give the alias its own name",
                );
                continue;
            }
            if let Some(other) = other_owners
                .get(&owner)
                .or_else(|| cname_owners.get(&owner))
            {
                c.err(
                    &rp.key("name"),
                    format!(
                        "{owner:?} already has records ({other}); a CNAME must be alone at its name"
                    ),
                    "remove the CNAME or the other records",
                );
                continue;
            }
            cname_owners.insert(owner.clone(), rp.key("name"));
        } else {
            if let Some(other) = cname_owners.get(&owner) {
                c.err(
                    &rp.key("name"),
                    format!("{owner:?} is a CNAME ({other}); a CNAME must be alone at its name"),
                    "remove the CNAME or this record",
                );
                continue;
            }
            other_owners
                .entry(owner.clone())
                .or_insert_with(|| rp.key("name"));
        }
        dns_records.push(DnsRecord {
            name: owner,
            data,
            ttl: r.ttl.unwrap_or(DEFAULT_TTL),
        });
    }

    // [egress]
    let eg = &file.egress;
    let allow_hosts = eg
        .allow_hosts
        .clone()
        .unwrap_or_else(|| vec![services_name.clone()]);
    if eg.allow_hosts.is_some() {
        for (i, h) in allow_hosts.iter().enumerate() {
            if !names.contains_key(&h.to_ascii_lowercase()) {
                let mut known: Vec<&String> = names.keys().collect();
                known.sort();
                c.err(
                    &p("egress.allow_hosts").idx(i),
                    format!("{h:?} names no host of this lab"),
                    &format!(
                        "use node names or the services VM's name ({})",
                        known
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
    }
    let mut allow_cidrs = Vec::new();
    for (i, s) in eg.allow_cidrs.iter().enumerate() {
        let parsed = s
            .trim()
            .parse::<Ipv4Net>()
            .or_else(|_| s.trim().parse::<Ipv4Addr>().map(Ipv4Net::from));
        match parsed {
            Ok(n) if n != n.trunc() => c.err(
                &p("egress.allow_cidrs").idx(i),
                format!("{s} has host bits set"),
                &format!("write the network address: {}", n.trunc()),
            ),
            Ok(n) => allow_cidrs.push(n),
            Err(_) => c.err(
                &p("egress.allow_cidrs").idx(i),
                format!("{s:?} is not an IPv4 CIDR"),
                "write a network such as 203.0.113.0/24, or a single address",
            ),
        }
    }
    let mut allow_domains = Vec::new();
    for (i, d) in eg.allow_domains.iter().enumerate() {
        let norm = d.trim().trim_end_matches('.').to_ascii_lowercase();
        match values::check_domain(&norm) {
            Ok(()) => allow_domains.push(norm),
            Err(e) => c.err(
                &p("egress.allow_domains").idx(i),
                format!("{d:?} is not a domain name: {e}"),
                "write a domain such as quay.io (its subdomains are included)",
            ),
        }
    }

    if !c.errors.is_empty() {
        let mut errors = c.errors;
        errors.sort_by_key(|d| (d.line, d.column));
        return Err(errors);
    }
    let (Some(cidr), Some(mode), Some(gateway), Some(services_ip), Some(services_mac)) =
        (cidr, mode, gateway, services_ip, services_mac)
    else {
        return Err(vec![map.at(
            &FieldPath::root(),
            "a required value is missing".into(),
            "check [network] and [services]",
        )]);
    };
    Ok(Inventory {
        source: map_file(map),
        lab,
        network: Network {
            cidr,
            mode,
            gateway,
            host_ip,
            libvirt_name,
            bridge,
            upstream_dns,
            lease,
            pool,
        },
        libvirt,
        services: Services {
            name: services_name,
            ip: services_ip,
            mac: services_mac,
            interface: s.interface.clone(),
            vcpus: services_vcpus,
            memory: services_memory.unwrap_or(2 << 30),
            disks: services_disks.unwrap_or_default(),
            listen,
            data_dir,
            assets_dir,
            firewall: s.firewall,
            uplink,
            ssh_authorized_keys: s.ssh_authorized_keys.clone(),
            install: install.unwrap_or(InstallMethod::Appliance),
        },
        dns_records,
        profiles,
        nodes: nodes.into_iter().map(|(_, n)| n).collect(),
        egress: Egress {
            allow_hosts: allow_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            allow_cidrs,
            allow_domains,
        },
    })
}

fn known_list<'a>(what: &str, names: impl Iterator<Item = &'a String>) -> String {
    let list: Vec<&str> = names.map(String::as_str).collect();
    if list.is_empty() {
        format!("no {what} are defined; add a [{what}.<name>] table")
    } else {
        format!("defined {what}: {}", list.join(", "))
    }
}

fn map_file(map: &SourceMap<'_>) -> PathBuf {
    map.file().to_path_buf()
}

impl Node {
    fn profile_is_from_node(&self, file: &wire::LabFile, index: usize) -> bool {
        file.nodes.get(index).is_some_and(|n| n.profile.is_some())
    }
}

/// The template context for a node.
pub(crate) fn node_context<'a>(
    node: &'a Node,
    http: &'a str,
    zone: &str,
) -> template::TemplateContext<'a> {
    let mut fields = BTreeMap::new();
    fields.insert("name", node.name.clone());
    fields.insert("mac", node.mac.to_string());
    fields.insert("ip", node.ip.to_string());
    fields.insert("role", node.role.clone().unwrap_or_default());
    fields.insert("fqdn", format!("{}.{zone}", node.name));
    fields.insert("firmware", node.firmware.as_str().to_owned());
    fields.insert("profile", node.profile.clone());
    template::TemplateContext {
        http,
        node: fields,
        vars: &node.vars,
    }
}
