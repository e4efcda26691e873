//! Finding a network interface by MAC address, deterministically and
//! bridge-aware.
//!
//! Several interfaces can share one MAC: a Linux bridge takes the MAC of a
//! port, a bond its slaves' MAC, a VLAN device its parent's. Packets for
//! the host arrive on the upper device (the bridge, the bond), and that is
//! where the address lives, so the rule is:
//!
//! 1. only interfaces whose `address` is the MAC count;
//! 2. the one carrying an IPv4 address wins;
//! 3. then one that is not enslaved (no `master`: a bridge or bond rather
//!    than its port);
//! 4. then a bridge (`bridge/` in sysfs) rather than anything else;
//! 5. then the smallest name (names are sorted, so the answer never
//!    depends on directory order).
//!
//! [`interface_by_mac`] reads `/sys/class/net` and the IPv4 addresses of
//! the running system; [`interface_by_mac_in`] takes another sysfs
//! directory and the set of interface names that carry IPv4 addresses (for
//! tests); [`pick`] is the pure rule.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;

/// What the rule looks at for one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// Its name.
    pub name: String,
    /// Its MAC, when it has one.
    pub mac: Option<[u8; 6]>,
    /// It carries an IPv4 address.
    pub has_ipv4: bool,
    /// It is a port of a bridge or bond (has a `master`).
    pub enslaved: bool,
    /// It is a bridge.
    pub is_bridge: bool,
}

/// Parses `aa:bb:cc:dd:ee:ff` (any case).
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = text.trim().split(':');
    for o in &mut out {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *o = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// The interface for `mac` among `nics` by the rule in the module docs.
pub fn pick(nics: &[Nic], mac: [u8; 6]) -> Option<&Nic> {
    nics.iter().filter(|n| n.mac == Some(mac)).min_by(|a, b| {
        (!a.has_ipv4, a.enslaved, !a.is_bridge, &a.name).cmp(&(
            !b.has_ipv4,
            b.enslaved,
            !b.is_bridge,
            &b.name,
        ))
    })
}

/// The interfaces listed under `sys_class_net`, sorted by name;
/// `ipv4_names` says which carry an IPv4 address.
pub fn list_nics(sys_class_net: &Path, ipv4_names: &BTreeSet<String>) -> io::Result<Vec<Nic>> {
    let mut names: Vec<String> = std::fs::read_dir(sys_class_net)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names
        .into_iter()
        .map(|name| {
            let dir = sys_class_net.join(&name);
            let mac = std::fs::read_to_string(dir.join("address"))
                .ok()
                .and_then(|t| parse_mac(&t));
            Nic {
                has_ipv4: ipv4_names.contains(&name),
                enslaved: dir.join("master").exists() || dir.join("brport").exists(),
                is_bridge: dir.join("bridge").is_dir(),
                mac,
                name,
            }
        })
        .collect())
}

/// Names of the interfaces of this system that carry an IPv4 address.
pub fn ipv4_interface_names() -> io::Result<BTreeSet<String>> {
    Ok(nix::ifaddrs::getifaddrs()
        .map_err(io::Error::from)?
        .filter(|a| {
            a.address
                .as_ref()
                .and_then(|s| s.as_sockaddr_in())
                .is_some()
        })
        .map(|a| a.interface_name)
        .collect())
}

/// The interface whose MAC is `mac` on this system (`/sys/class/net`), by
/// the rule in the module docs.
pub fn interface_by_mac(mac: [u8; 6]) -> io::Result<Option<String>> {
    interface_by_mac_in(Path::new("/sys/class/net"), &ipv4_interface_names()?, mac)
}

/// [`interface_by_mac`] against another sysfs directory and set of
/// IPv4-carrying interface names.
pub fn interface_by_mac_in(
    sys_class_net: &Path,
    ipv4_names: &BTreeSet<String>,
    mac: [u8; 6],
) -> io::Result<Option<String>> {
    let nics = list_nics(sys_class_net, ipv4_names)?;
    Ok(pick(&nics, mac).map(|n| n.name.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x4d, 0, 0xfe];

    fn nic(name: &str, ipv4: bool, enslaved: bool, bridge: bool) -> Nic {
        Nic {
            name: name.into(),
            mac: Some(MAC),
            has_ipv4: ipv4,
            enslaved,
            is_bridge: bridge,
        }
    }

    #[test]
    fn parses_macs() {
        assert_eq!(parse_mac("52:54:00:4D:00:fe\n"), Some(MAC));
        assert_eq!(parse_mac("52:54:00:4d:00"), None);
        assert_eq!(parse_mac("52:54:00:4d:00:fe:01"), None);
        assert_eq!(parse_mac("5:54:00:4d:00:fe"), None);
    }

    #[test]
    fn the_bridge_wins_over_its_port_whatever_the_names() {
        // The port sorts first by name; the bridge still wins.
        let nics = [
            nic("a-port", false, true, false),
            nic("z-br", false, false, true),
        ];
        assert_eq!(pick(&nics, MAC).unwrap().name, "z-br");
    }

    #[test]
    fn the_ipv4_carrier_wins_first() {
        let nics = [
            nic("br0", false, false, true),
            nic("eth0", true, true, false),
        ];
        assert_eq!(pick(&nics, MAC).unwrap().name, "eth0");
    }

    #[test]
    fn ties_break_by_name() {
        let nics = [
            nic("eth1", false, false, false),
            nic("eth0", false, false, false),
        ];
        assert_eq!(pick(&nics, MAC).unwrap().name, "eth0");
        assert!(pick(&nics, [0; 6]).is_none());
    }
}
