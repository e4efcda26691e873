//! `[ntp]` and `[[balancers]]`: the OKD services-VM duties beyond boot.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use super::Checker;
use crate::defaults;
use crate::diag::FieldPath;
use crate::model::*;
use crate::values;
use crate::wire;

/// `[ntp]`
pub(crate) fn ntp(c: &mut Checker<'_>, w: &wire::NtpSection) -> Ntp {
    if !(1..=15).contains(&w.local_stratum) {
        c.err(
            &FieldPath::of("ntp.local_stratum"),
            format!(
                "stratum {} is not one a server can serve (1 to 15)",
                w.local_stratum
            ),
            &format!(
                "use {} (what chrony's `local stratum` defaults to)",
                defaults::NTP_LOCAL_STRATUM
            ),
        );
    }
    Ntp {
        enable: w.enable,
        local_stratum: w.local_stratum,
        require_sync: w.require_sync,
    }
}

const ALGORITHMS: [(&str, Algorithm); 2] = [
    ("roundrobin", Algorithm::RoundRobin),
    ("leastconn", Algorithm::LeastConn),
];

#[derive(Clone, Copy)]
enum CheckKind {
    Tcp,
    Tls,
    Https,
}

const CHECKS: [(&str, CheckKind); 3] = [
    ("tcp", CheckKind::Tcp),
    ("tls", CheckKind::Tls),
    ("https", CheckKind::Https),
];

/// `[[balancers]]`, backends resolved to the nodes' addresses.
pub(crate) fn balancers(
    c: &mut Checker<'_>,
    file: &wire::LabFile,
    nodes: &[Node],
    services_ip: Option<Ipv4Addr>,
    listen: &Listen,
) -> Vec<Balancer> {
    let mut out = Vec::new();
    let mut names: BTreeMap<String, FieldPath> = BTreeMap::new();
    let mut ports: BTreeMap<SocketAddrV4, FieldPath> = BTreeMap::new();
    let roles: BTreeSet<&str> = file.roles.keys().map(String::as_str).collect();
    let own_tcp: Vec<(&str, SocketAddr)> = vec![
        ("services.listen.dns", listen.dns),
        ("services.listen.http", listen.http),
        ("services.listen.admin", listen.admin),
    ];
    for (i, b) in file.balancers.iter().enumerate() {
        let bp = FieldPath::of("balancers").idx(i);
        let name = b.name.trim().to_ascii_lowercase();
        if let Err(e) = values::check_label(&name) {
            c.err(
                &bp.key("name"),
                format!("{:?} is not a usable balancer name: {e}", b.name),
                "use letters, digits and '-', e.g. \"api\" or \"ingress-https\"",
            );
        } else if let Some(first) = names.get(&name) {
            let first = first.clone();
            c.err(
                &bp.key("name"),
                format!("balancer name {:?} is already used by {first}", b.name),
                "give every balancer its own name",
            );
        } else {
            names.insert(name.clone(), bp.key("name"));
        }
        if b.port == 0 {
            c.err(
                &bp.key("port"),
                "port 0 is not a listen port",
                "write the port clients connect to, e.g. 6443",
            );
        }
        let address = match &b.address {
            Some(a) => c.ipv4(&bp.key("address"), a),
            None => services_ip,
        };
        let listen_addr = address.map(|a| SocketAddrV4::new(a, b.port));
        if let Some(l) = listen_addr {
            if let Some(first) = ports.get(&l) {
                let first = first.clone();
                c.err(
                    &bp.key("port"),
                    format!("{l} is already the address of {first}"),
                    "give every balancer its own port (or address)",
                );
            } else {
                ports.insert(l, bp.key("port"));
            }
            for (what, own) in &own_tcp {
                let same_ip = own.ip().is_unspecified() || own.ip() == IpAddr::V4(*l.ip());
                if same_ip && own.port() == l.port() {
                    c.err(
                        &bp.key("port"),
                        format!("port {} is already bootlabd's {what}", l.port()),
                        "move the balancer or the service to another port",
                    );
                }
            }
        }
        let backend_port = b.backend_port.unwrap_or(b.port);
        if backend_port == 0 {
            c.err(
                &bp.key("backend_port"),
                "port 0 is not a backend port",
                "write the port the nodes listen on",
            );
        }
        // Role and/or node names; a name that is both means the union.
        let mut picked: BTreeSet<usize> = BTreeSet::new();
        if b.backends.is_empty() {
            c.err(
                &bp.key("backends"),
                "a balancer needs at least one backend",
                "list role and/or node names, e.g. backends = [\"master\"]",
            );
        }
        for (j, want) in b.backends.iter().enumerate() {
            let w = want.trim().to_ascii_lowercase();
            let is_role = roles.contains(want.trim());
            let mut hit = false;
            for (k, n) in nodes.iter().enumerate() {
                if n.name == w || (is_role && n.role.as_deref() == Some(want.trim())) {
                    picked.insert(k);
                    hit = true;
                }
            }
            if !hit && !is_role {
                let known: Vec<&str> = roles
                    .iter()
                    .copied()
                    .chain(nodes.iter().map(|n| n.name.as_str()))
                    .collect();
                let help = match crate::diag::did_you_mean(want, known.iter().copied()) {
                    Some(m) => format!("did you mean {m:?}?"),
                    None => "name roles (from [roles.<name>]) or nodes".to_owned(),
                };
                c.err(
                    &bp.key("backends").idx(j),
                    format!("{want:?} is neither a role nor a node"),
                    &help,
                );
            }
        }
        let algorithm = c.one_of(
            &bp.key("algorithm"),
            b.algorithm.as_deref().unwrap_or(defaults::LB_ALGORITHM),
            &ALGORITHMS,
        );
        let cp = bp.key("check");
        let wc = b.check.as_ref();
        let kind = c.one_of(
            &cp.key("kind"),
            wc.and_then(|w| w.kind.as_deref())
                .unwrap_or(defaults::LB_CHECK_KIND),
            &CHECKS,
        );
        let check = match kind {
            Some(CheckKind::Https) => {
                let path = wc
                    .and_then(|w| w.path.clone())
                    .unwrap_or_else(|| defaults::LB_CHECK_PATH.to_owned());
                if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_control() || b == b' ')
                {
                    c.err(
                        &cp.key("path"),
                        format!("{path:?} is not a request path"),
                        "write an absolute path such as \"/readyz\"",
                    );
                }
                let status = wc
                    .and_then(|w| w.status)
                    .unwrap_or(defaults::LB_CHECK_STATUS);
                if !(100..=599).contains(&status) {
                    c.err(
                        &cp.key("status"),
                        format!("{status} is not an HTTP status"),
                        "write a status from 100 to 599, e.g. 200",
                    );
                }
                Some(HealthCheck::Https { path, status })
            }
            Some(k) => {
                for (key, set) in [
                    ("path", wc.and_then(|w| w.path.as_ref()).is_some()),
                    ("status", wc.and_then(|w| w.status).is_some()),
                ] {
                    if set {
                        c.err(
                            &cp.key(key),
                            format!("{key} is only used by kind = \"https\" checks"),
                            "remove it, or set kind = \"https\"",
                        );
                    }
                }
                Some(match k {
                    CheckKind::Tls => HealthCheck::Tls,
                    _ => HealthCheck::Tcp,
                })
            }
            None => None,
        };
        let interval = c.duration(
            &bp.key("interval"),
            b.interval.as_deref().unwrap_or(defaults::LB_INTERVAL),
        );
        if let Some(d) = interval {
            if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
                c.err(
                    &bp.key("interval"),
                    format!(
                        "interval {:?} is outside 100ms..1h",
                        b.interval.as_deref().unwrap_or_default()
                    ),
                    &format!("use a few seconds, e.g. \"{}\"", defaults::LB_INTERVAL),
                );
            }
        }
        let rise = b.rise.unwrap_or(defaults::LB_RISE);
        let fall = b.fall.unwrap_or(defaults::LB_FALL);
        for (key, v) in [("rise", rise), ("fall", fall)] {
            if v == 0 || v > 1000 {
                c.err(
                    &bp.key(key),
                    format!("{key} = {v} is outside 1..1000"),
                    &format!(
                        "use a small count; the defaults are rise {} and fall {}",
                        defaults::LB_RISE,
                        defaults::LB_FALL
                    ),
                );
            }
        }
        if let (Some(listen), Some(algorithm), Some(check), Some(interval)) =
            (listen_addr, algorithm, check, interval)
        {
            out.push(Balancer {
                name,
                listen,
                backends: picked
                    .into_iter()
                    .map(|k| {
                        let n = &nodes[k];
                        BalancerBackend {
                            node: n.name.clone(),
                            addr: SocketAddrV4::new(n.ip, backend_port),
                            drained: n.drain,
                        }
                    })
                    .collect(),
                algorithm,
                check,
                interval,
                rise,
                fall,
            });
        }
    }
    out
}
