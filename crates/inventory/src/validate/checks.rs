//! Warnings: what loads but will not work as an OKD/OpenShift lab expects.
//!
//! - a wildcard at the cluster level (`*.<lab>.<domain>`): the agent-based
//!   and assisted installers reject it;
//! - `api` / `api-int` pointing at neither a balancer (on 6443, and 22623
//!   for `api-int`) nor a node;
//! - `*.apps` pointing at neither a node nor balancers on 443 and 80;
//! - a node without a PTR record;
//! - a balancer whose backends are all drained, or that has none.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4};

use super::Checker;
use crate::compiled::Inventory;
use crate::diag::FieldPath;
use crate::model::*;
use crate::views::reverse_name;
use crate::wire;

/// Adds every warning for `inv` (whose `file` it was compiled from).
pub(crate) fn warnings(c: &mut Checker<'_>, file: &wire::LabFile, inv: &Inventory) {
    let listens: Vec<SocketAddrV4> = inv.balancers().iter().map(|b| b.listen).collect();
    let balanced = |ip: Ipv4Addr, port: u16| listens.contains(&SocketAddrV4::new(ip, port));
    let is_node = |ip: Ipv4Addr| inv.node_by_ip(ip).is_some();
    let zone = inv.zone();
    let mut records = inv.dns_records().iter();
    for i in 0..file.dns.records.len() {
        // dns_records() holds the records that validated, in file order.
        let Some(r) = records.next() else { break };
        let rp = FieldPath::of("dns.records").idx(i);
        if r.name == "*" {
            c.warn(
                &rp.key("name"),
                format!("a wildcard at the cluster level (*.{zone})"),
                "OpenShift's agent-based and assisted installers reject it; use \"*.apps\"",
            );
        }
        let RecordData::A(ip) = r.data else { continue };
        let need: &[u16] = match r.name.as_str() {
            "api" => &[6443],
            "api-int" => &[6443, 22623],
            "*.apps" => &[443, 80],
            _ => continue,
        };
        if is_node(ip) {
            continue;
        }
        let missing: Vec<String> = need
            .iter()
            .filter(|p| !balanced(ip, **p))
            .map(u16::to_string)
            .collect();
        if !missing.is_empty() {
            c.warn(
                &rp.key("value"),
                format!(
                    "{}.{zone} points at {ip}, which is no node and has no balancer on port{} {}",
                    r.name,
                    if missing.len() == 1 { "" } else { "s" },
                    missing.join(" and ")
                ),
                &format!(
                    "add [[balancers]] on {} at {ip} (see config/okd-lab.toml), or point it at a node",
                    need.iter().map(u16::to_string).collect::<Vec<_>>().join(" and ")
                ),
            );
        }
    }
    // Every (owner, target) PTR pair, looked up once per node: a scan of the
    // reverse zones per node made this check quadratic (at 10,000 nodes it
    // was 41% of `bootlab check`).
    let ptrs: HashSet<(&str, &str)> = inv
        .zones()
        .reverse
        .iter()
        .flat_map(|z| z.records.iter())
        .filter_map(|r| match &r.data {
            RecordData::Ptr(t) => Some((r.name.as_str(), t.as_str())),
            _ => None,
        })
        .collect();
    for (i, n) in inv.nodes().iter().enumerate() {
        let ptr = reverse_name(n.ip);
        if !ptrs.contains(&(ptr.as_str(), n.fqdn.as_str())) {
            c.warn(
                &FieldPath::of("nodes").idx(i).key("ip"),
                format!("node {:?} has no PTR record", n.name),
                "OpenShift nodes take their names from reverse DNS; keep nodes inside network.cidr",
            );
        }
    }
    for (i, b) in inv.balancers().iter().enumerate() {
        let at = FieldPath::of("balancers").idx(i).key("backends");
        if b.backends.is_empty() {
            c.warn(
                &at,
                format!(
                    "balancer {:?} has no backends (its roles have no nodes)",
                    b.name
                ),
                "name roles that have nodes, or nodes",
            );
        } else if b.backends.iter().all(|x| x.drained) {
            c.warn(
                &at,
                format!(
                    "every backend of balancer {:?} is drained: it will close every client",
                    b.name
                ),
                "set drain = false on at least one of its nodes or roles",
            );
        }
    }
}
