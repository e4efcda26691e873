//! `[roles]` and `[[nodes]]`: role defaults applied, names, MACs and
//! addresses unique, profiles resolved.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::network::NetworkDraft;
use super::profiles::ProfileDraft;
use super::{Checker, Taken};
use crate::defaults;
use crate::diag::FieldPath;
use crate::model::*;
use crate::values::MacAddr;
use crate::wire;

/// A node that validated, before its boot profile is rendered.
pub(crate) struct NodeDraft {
    /// The name as the user wrote it (for messages).
    pub written_name: String,
    pub name: String,
    pub fqdn: String,
    pub role: Option<String>,
    pub mac: MacAddr,
    pub mac_derived: bool,
    pub ip: Ipv4Addr,
    pub profile: String,
    pub firmware: Firmware,
    pub vcpus: u32,
    pub memory: u64,
    pub disks: Vec<u64>,
    pub vars: Arc<BTreeMap<String, String>>,
    pub drain: bool,
}

impl NodeDraft {
    /// The model node, with its rendered boot profile.
    pub(crate) fn finish(self, boot: BootProfile) -> Node {
        Node {
            name: self.name,
            fqdn: self.fqdn,
            role: self.role,
            mac: self.mac,
            mac_derived: self.mac_derived,
            ip: self.ip,
            profile: self.profile,
            firmware: self.firmware,
            vcpus: self.vcpus,
            memory: self.memory,
            disks: self.disks,
            vars: self.vars,
            drain: self.drain,
            boot,
        }
    }
}

struct RoleDefaults {
    firmware: Option<Firmware>,
    memory: Option<u64>,
    disks: Option<Vec<u64>>,
}

const FIRMWARE: [(&str, Firmware); 2] = [("bios", Firmware::Bios), ("uefi", Firmware::Uefi)];

/// A node's vars: its role's overridden by its own. Nodes that set none of
/// their own share one map per role (`shared`), so 10,000 workers carry
/// one copy of the role's vars, not 10,000.
fn merge_vars(
    shared: &mut HashMap<Option<String>, Arc<BTreeMap<String, String>>>,
    role_name: Option<&str>,
    role: Option<&BTreeMap<String, wire::VarValue>>,
    node: &BTreeMap<String, wire::VarValue>,
) -> Arc<BTreeMap<String, String>> {
    let role_only = || -> BTreeMap<String, String> {
        role.into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect()
    };
    if node.is_empty() {
        return shared
            .entry(role_name.map(str::to_owned))
            .or_insert_with(|| Arc::new(role_only()))
            .clone();
    }
    let mut out = role_only();
    for (k, v) in node {
        out.insert(k.clone(), v.to_string());
    }
    Arc::new(out)
}

fn roles(
    c: &mut Checker<'_>,
    file: &wire::LabFile,
    profiles: &BTreeMap<String, ProfileDraft>,
) -> BTreeMap<String, RoleDefaults> {
    let mut out = BTreeMap::new();
    for (name, role) in &file.roles {
        let rp = FieldPath::of("roles").key(name);
        if let Some(prof) = &role.profile {
            if !profiles.contains_key(prof) {
                c.unknown_name(
                    &rp.key("profile"),
                    "profile",
                    prof,
                    profiles.keys().map(String::as_str),
                    "profiles",
                );
            }
        }
        let firmware = role
            .firmware
            .as_deref()
            .and_then(|f| c.one_of(&rp.key("firmware"), f, &FIRMWARE));
        if role.vcpus == Some(0) {
            c.err(
                &rp.key("vcpus"),
                "vcpus must be at least 1",
                &format!("set vcpus = {}", defaults::VCPUS),
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
        out.insert(
            name.clone(),
            RoleDefaults {
                firmware,
                memory,
                disks,
            },
        );
    }
    out
}

/// `[roles]` and `[[nodes]]`; returns each valid node with its index.
pub(crate) fn nodes(
    c: &mut Checker<'_>,
    file: &wire::LabFile,
    taken: &mut Taken,
    net: &NetworkDraft,
    profiles: &BTreeMap<String, ProfileDraft>,
    zone: &str,
) -> Vec<(usize, NodeDraft)> {
    let roles = roles(c, file, profiles);
    let default_memory = c.size(&FieldPath::root(), defaults::NODE_MEMORY);
    let default_disk = c.size(&FieldPath::root(), defaults::NODE_DISK);
    let mut nodes = Vec::new();
    let mut shared_vars = HashMap::new();
    for (i, n) in file.nodes.iter().enumerate() {
        let np = FieldPath::of("nodes").idx(i);
        let name = c.hostname(&np.key("name"), &n.name);
        if let Some(first) = taken.names.get(&name) {
            let first = first.clone();
            c.err(
                &np.key("name"),
                format!("host name {:?} is already used by {first}", n.name),
                "give every node and the services VM a distinct name",
            );
        } else {
            taken.names.insert(name.clone(), np.key("name"));
        }
        let ip = c.host_ip(&np.key("ip"), &n.ip, net.cidr);
        if let Some(ip) = ip {
            let clash = if Some(ip) == net.gateway {
                Some("network.gateway".to_owned())
            } else if Some(ip) == net.host_ip {
                Some("network.host_ip".to_owned())
            } else {
                taken.ips.get(&ip).map(ToString::to_string)
            };
            if let Some(other) = clash {
                c.err(
                    &np.key("ip"),
                    format!("{ip} is already used by {other}"),
                    "give every node its own address",
                );
            } else {
                taken.ips.insert(ip, np.key("ip"));
            }
        }
        let (mac, derived) = match (&n.mac, ip) {
            (Some(m), _) => (c.mac(&np.key("mac"), m), false),
            (None, Some(ip)) => (Some(MacAddr::derived_from(ip)), true),
            (None, None) => (None, true),
        };
        if let Some(m) = mac {
            let at = if derived { np.key("ip") } else { np.key("mac") };
            if let Some((first, first_derived)) = taken.macs.get(&m) {
                let note = match (derived, *first_derived) {
                    (true, _) => " (this node's MAC is derived from its ip)",
                    (false, true) => " (that MAC is derived from an ip)",
                    _ => "",
                };
                let first = first.clone();
                c.err(
                    &at,
                    format!("MAC {m} is already used by {first}{note}"),
                    "every NIC needs its own MAC; set mac explicitly to a unique one",
                );
            } else {
                taken.macs.insert(m, (at, derived));
            }
        }
        let role = n.role.as_ref().map(|r| r.trim().to_owned());
        let role_wire = role.as_ref().and_then(|r| file.roles.get(r));
        let role_def = role.as_ref().and_then(|r| roles.get(r));
        if let Some(r) = &role {
            if role_wire.is_none() {
                c.unknown_name(
                    &np.key("role"),
                    "role",
                    r,
                    file.roles.keys().map(String::as_str),
                    "roles",
                );
            }
        }
        let profile = n
            .profile
            .clone()
            .or_else(|| role_wire.and_then(|r| r.profile.clone()));
        match &profile {
            Some(pn) if n.profile.is_some() && !profiles.contains_key(pn) => c.unknown_name(
                &np.key("profile"),
                "profile",
                pn,
                profiles.keys().map(String::as_str),
                "profiles",
            ),
            Some(_) => {}
            None if role.is_some() && role_wire.is_none() => {}
            None => c.err(
                &np,
                format!("node {:?} has no boot profile", n.name),
                "set profile on the node or on its role",
            ),
        }
        let firmware = match &n.firmware {
            Some(f) => c.one_of(&np.key("firmware"), f, &FIRMWARE),
            None => Some(role_def.and_then(|r| r.firmware).unwrap_or(Firmware::Bios)),
        };
        let vcpus = n
            .vcpus
            .or_else(|| role_wire.and_then(|r| r.vcpus))
            .unwrap_or(defaults::VCPUS);
        if n.vcpus == Some(0) {
            c.err(
                &np.key("vcpus"),
                "vcpus must be at least 1",
                &format!("set vcpus = {}", defaults::VCPUS),
            );
        }
        let memory = match &n.memory {
            Some(m) => c.size(&np.key("memory"), m),
            None => role_def.and_then(|r| r.memory).or(default_memory),
        };
        let disks = match &n.disks {
            Some(d) => c.sizes(&np.key("disks"), d),
            None => role_def
                .and_then(|r| r.disks.clone())
                .or_else(|| default_disk.map(|d| vec![d])),
        };
        let vars = merge_vars(
            &mut shared_vars,
            role.as_deref(),
            role_wire.map(|r| &r.vars),
            &n.vars,
        );
        let drain = n
            .drain
            .or_else(|| role_wire.and_then(|r| r.drain))
            .unwrap_or(defaults::DRAIN);
        if let (Some(mac), Some(ip), Some(profile), Some(firmware), Some(memory), Some(disks)) =
            (mac, ip, profile, firmware, memory, disks)
        {
            nodes.push((
                i,
                NodeDraft {
                    written_name: n.name.clone(),
                    fqdn: format!("{name}.{zone}"),
                    name,
                    role,
                    mac,
                    mac_derived: derived,
                    ip,
                    profile,
                    firmware,
                    vcpus,
                    memory,
                    disks,
                    vars,
                    drain,
                },
            ));
        }
    }
    nodes
}
