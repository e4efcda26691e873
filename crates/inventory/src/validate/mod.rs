//! Wire structs -> validated parts -> compiled [`Inventory`], collecting
//! every problem at once.
//!
//! # Layout
//! One module per section of `lab.toml`, each a function from its wire
//! struct (and what earlier sections produced) to its model part:
//! [`network`] (`[lab]`, `[network]`, the mode rules, the pool),
//! [`services`] (`[libvirt]`, `[services]`), [`profiles`] (`[profiles]`
//! and rendering each node's args), [`nodes`] (`[roles]`, `[[nodes]]`),
//! [`dns`] (`[dns]`), [`egress`] (`[egress]`), [`balancers`] (`[ntp]`,
//! `[[balancers]]`) and [`checks`] (warnings: OKD pitfalls). Defaults come
//! from [`crate::defaults`] only.

mod balancers;
mod checks;
mod dns;
mod egress;
mod network;
mod nodes;
mod profiles;
mod services;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Component, Path, PathBuf};

use ipnet::Ipv4Net;

use crate::compiled::{Inventory, Parts};
use crate::diag::{Diagnostic, FieldPath, Severity, SourceMap, did_you_mean};
use crate::model::*;
use crate::template;
use crate::values::{self, MacAddr};
use crate::wire;

pub(crate) const HELP_IP: &str = "write a dotted IPv4 address such as 192.168.200.10";
const HELP_MAC: &str = "write six hex byte pairs separated by ':' or '-', e.g. 52:54:00:12:34:56, or omit mac to derive it from ip";
const HELP_SIZE: &str = "write a size such as \"512MiB\", \"16GiB\", \"8G\" (G = GiB, as virt-install and qemu-img read it) or \"1TiB\"";

/// Collects problems while the sections are checked.
pub(crate) struct Checker<'a> {
    map: &'a SourceMap<'a>,
    base_dir: PathBuf,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl Checker<'_> {
    pub(crate) fn err(&mut self, path: &FieldPath, message: impl Into<String>, help: &str) {
        self.errors.push(self.map.at(path, message.into(), help));
    }

    pub(crate) fn warn(&mut self, path: &FieldPath, message: impl Into<String>, help: &str) {
        let mut d = self.map.at(path, message.into(), help);
        d.severity = Severity::Warning;
        self.warnings.push(d);
    }

    /// An unknown name (`what`: "role", "profile", ...) with "did you mean".
    pub(crate) fn unknown_name<'k>(
        &mut self,
        path: &FieldPath,
        what: &str,
        wrong: &str,
        known: impl IntoIterator<Item = &'k str> + Clone,
        section: &str,
    ) {
        let help = match did_you_mean(wrong, known.clone()) {
            Some(m) => format!("did you mean {m:?}?"),
            None => known_list(section, known),
        };
        self.err(path, format!("unknown {what} {wrong:?}"), &help);
    }

    pub(crate) fn ipv4(&mut self, path: &FieldPath, s: &str) -> Option<Ipv4Addr> {
        match s.trim().parse::<Ipv4Addr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.err(path, format!("{s:?} is not an IPv4 address"), HELP_IP);
                None
            }
        }
    }

    /// An address that must be a usable host address inside `cidr`.
    pub(crate) fn host_ip(
        &mut self,
        path: &FieldPath,
        s: &str,
        cidr: Option<Ipv4Net>,
    ) -> Option<Ipv4Addr> {
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

    pub(crate) fn mac(&mut self, path: &FieldPath, s: &str) -> Option<MacAddr> {
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

    pub(crate) fn size(&mut self, path: &FieldPath, s: &str) -> Option<u64> {
        match values::parse_size(s) {
            Ok(b) => Some(b),
            Err(e) => {
                self.err(path, e, HELP_SIZE);
                None
            }
        }
    }

    pub(crate) fn sizes(&mut self, path: &FieldPath, list: &[String]) -> Option<Vec<u64>> {
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

    /// A duration such as "5s" or "12h".
    pub(crate) fn duration(&mut self, path: &FieldPath, s: &str) -> Option<std::time::Duration> {
        match values::parse_duration(s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(
                    path,
                    e,
                    "write a duration such as \"5s\", \"30m\" or \"12h\"",
                );
                None
            }
        }
    }

    /// Checks a host name as written (`name`) and returns it normalised.
    pub(crate) fn hostname(&mut self, path: &FieldPath, name: &str) -> String {
        let norm = name.trim().to_ascii_lowercase();
        if let Err(e) = values::check_hostname(&norm) {
            self.err(
                path,
                format!("{name:?} is not a valid host name: {e}"),
                "use letters, digits and inner hyphens, at most 63 bytes (it becomes a DNS label)",
            );
        }
        norm
    }

    pub(crate) fn one_of<T: Copy>(
        &mut self,
        path: &FieldPath,
        value: &str,
        choices: &[(&str, T)],
    ) -> Option<T> {
        if let Some((_, v)) = choices.iter().find(|(n, _)| *n == value) {
            return Some(*v);
        }
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        let help = match did_you_mean(value, names.iter().copied()) {
            Some(m) => format!("did you mean {m:?}? (one of: {})", names.join(", ")),
            None => format!("use one of: {}", names.join(", ")),
        };
        self.err(path, format!("unknown value {value:?}"), &help);
        None
    }

    pub(crate) fn asset_path(&mut self, path: &FieldPath, s: &str) {
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

    /// A directory from the file, relative ones resolved against its directory.
    pub(crate) fn dir(&self, s: &str) -> PathBuf {
        let p = PathBuf::from(s);
        if p.is_absolute() {
            p
        } else {
            self.base_dir.join(p)
        }
    }
}

/// Names, MACs and addresses taken so far, with where they were taken.
#[derive(Default)]
pub(crate) struct Taken {
    /// Host names (normalised) -> where.
    pub names: HashMap<String, FieldPath>,
    /// MACs -> where, and whether derived from an address.
    pub macs: HashMap<MacAddr, (FieldPath, bool)>,
    /// Addresses -> where.
    pub ips: HashMap<Ipv4Addr, FieldPath>,
}

pub(crate) fn first_host(net: Ipv4Net) -> Ipv4Addr {
    if net.prefix_len() >= 31 {
        net.network()
    } else {
        Ipv4Addr::from(u32::from(net.network()) + 1)
    }
}

pub(crate) fn last_host(net: Ipv4Net) -> Ipv4Addr {
    if net.prefix_len() >= 31 {
        net.broadcast()
    } else {
        Ipv4Addr::from(u32::from(net.broadcast()) - 1)
    }
}

pub(crate) fn socket_addr(s: &str, default_port: u16) -> Option<SocketAddr> {
    let t = s.trim();
    if let Ok(sa) = t.parse::<SocketAddr>() {
        return Some(sa);
    }
    t.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, default_port))
}

pub(crate) fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && !s
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

pub(crate) fn known_list<'a>(what: &str, names: impl IntoIterator<Item = &'a str>) -> String {
    let list: Vec<&str> = names.into_iter().collect();
    if list.is_empty() {
        format!("no {what} are defined; add a [{what}.<name>] table")
    } else {
        format!("defined {what}: {}", list.join(", "))
    }
}

/// Validates `file`, returning the compiled inventory or every problem found.
pub(crate) fn validate<'a>(
    file: &wire::LabFile,
    map: &'a SourceMap<'a>,
    base_dir: &Path,
) -> Result<Inventory, Vec<Diagnostic>> {
    let mut c = Checker {
        map,
        base_dir: base_dir.to_path_buf(),
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let mut taken = Taken::default();

    let lab = network::lab(&mut c, &file.lab);
    let zone = lab.zone();
    let net = network::network(&mut c, &file.network, &lab);
    let libvirt = services::libvirt(&mut c, &file.libvirt, &lab);
    let svc = services::services(&mut c, &file.services, net.cidr);
    network::mode_rules(&mut c, file, &net, &svc);
    let profiles = profiles::profiles(&mut c, &file.profiles);
    services::take_services(&mut c, &mut taken, &svc);
    let nodes = nodes::nodes(&mut c, file, &mut taken, &net, &profiles, &zone);
    let pool = network::pool(&mut c, &file.network, &net, svc.ip, &nodes);
    let http_base = crate::compiled::http_base(
        svc.ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
        svc.listen.http.port(),
    );
    let nodes = profiles::render_boot(&mut c, nodes, &profiles, &http_base);
    let profiles = profiles::finish(profiles);
    let dns_records = dns::records(&mut c, &file.dns, &zone, &taken);
    let egress = egress::egress(&mut c, &file.egress, &taken, &svc.name);
    let ntp = balancers::ntp(&mut c, &file.ntp);
    let balancers = balancers::balancers(&mut c, file, &nodes, svc.ip, &svc.listen);

    if !c.errors.is_empty() {
        let mut errors = c.errors;
        errors.sort_by_key(|d| (d.line, d.column));
        return Err(errors);
    }
    let (Some(cidr), Some(mode), Some(gateway), Some(services_ip), Some(services_mac)) =
        (net.cidr, net.mode, net.gateway, svc.ip, svc.mac)
    else {
        return Err(vec![map.at(
            &FieldPath::root(),
            "a required value is missing".into(),
            "check [network] and [services]",
        )]);
    };
    let mut inv = Inventory::compile(Parts {
        source: map.file().to_path_buf(),
        lab,
        network: Network {
            cidr,
            mode,
            gateway,
            host_ip: net.host_ip,
            libvirt_name: net.libvirt_name,
            bridge: net.bridge,
            upstream_dns: net.upstream_dns,
            lease: net.lease.unwrap_or_default(),
            pool,
            dhcp: net.dhcp.unwrap_or(DhcpMode::Server),
        },
        libvirt,
        services: svc.finish(services_ip, services_mac),
        dns_records,
        profiles,
        nodes,
        egress,
        ntp,
        balancers,
    });
    checks::warnings(&mut c, file, &inv);
    let mut warnings = c.warnings;
    warnings.sort_by_key(|d| (d.line, d.column));
    inv.set_warnings(warnings);
    Ok(inv)
}

/// The template context for a node.
pub(crate) fn node_context<'a>(
    node: &'a nodes::NodeDraft,
    http: &'a str,
) -> template::TemplateContext<'a> {
    let mut fields = BTreeMap::new();
    fields.insert("name", node.name.clone());
    fields.insert("mac", node.mac.to_string());
    fields.insert("ip", node.ip.to_string());
    fields.insert("role", node.role.clone().unwrap_or_default());
    fields.insert("fqdn", node.fqdn.clone());
    fields.insert("firmware", node.firmware.as_str().to_owned());
    fields.insert("profile", node.profile.clone());
    template::TemplateContext {
        http,
        node: fields,
        vars: &node.vars,
    }
}
