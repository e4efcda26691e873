//! `[egress]`: who may leave the lab, and to where.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::{Checker, Taken};
use crate::diag::FieldPath;
use crate::model::*;
use crate::values;
use crate::wire;

/// `[egress]`
pub(crate) fn egress(
    c: &mut Checker<'_>,
    eg: &wire::EgressSection,
    taken: &Taken,
    services_name: &str,
) -> Egress {
    let p = FieldPath::of;
    let allow_hosts = eg
        .allow_hosts
        .clone()
        .unwrap_or_else(|| vec![services_name.to_owned()]);
    if eg.allow_hosts.is_some() {
        let mut known: Vec<&str> = taken.names.keys().map(String::as_str).collect();
        known.sort_unstable();
        for (i, h) in allow_hosts.iter().enumerate() {
            if !taken.names.contains_key(&h.to_ascii_lowercase()) {
                let help = match crate::diag::did_you_mean(h, known.iter().copied()) {
                    Some(m) => format!("did you mean {m:?}?"),
                    None => format!(
                        "use node names or the services VM's name ({})",
                        known.join(", ")
                    ),
                };
                c.err(
                    &p("egress.allow_hosts").idx(i),
                    format!("{h:?} names no host of this lab"),
                    &help,
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
    Egress {
        allow_hosts: allow_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        allow_cidrs,
        allow_domains,
    }
}
