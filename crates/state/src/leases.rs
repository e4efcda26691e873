//! The leases view: which MAC holds which address, as DHCP granted it.
//!
//! DHCP reports every binding ([`Leases::bind`]) and its end
//! ([`Leases::unbind`]); TFTP, HTTP and the machine API ask which MAC a
//! source address belongs to. Reserved addresses need no entry here: the
//! inventory's index answers for them ([`crate::Shared::mac_for_ip`]).
//! One address per MAC and one MAC per address, so the view is bounded by
//! the pool's size.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};

use bootlab_inventory::MacAddr;

#[derive(Default)]
struct Inner {
    by_ip: HashMap<Ipv4Addr, MacAddr>,
    by_mac: HashMap<MacAddr, Ipv4Addr>,
}

/// The leases view. Cheap to clone (an `Arc`).
#[derive(Clone, Default)]
pub struct Leases {
    inner: Arc<RwLock<Inner>>,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases").finish_non_exhaustive()
    }
}

impl Leases {
    /// Records that `mac` now holds `ip` (a DHCP ACK). A MAC moving to a
    /// new address, or an address going to a new MAC, drops the old pairing.
    pub fn bind(&self, mac: MacAddr, ip: Ipv4Addr) {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = g.by_mac.insert(mac, ip) {
            if old != ip && g.by_ip.get(&old) == Some(&mac) {
                g.by_ip.remove(&old);
            }
        }
        if let Some(prev) = g.by_ip.insert(ip, mac) {
            if prev != mac && g.by_mac.get(&prev) == Some(&ip) {
                g.by_mac.remove(&prev);
            }
        }
    }

    /// Forgets the binding of `ip` (RELEASE, expiry).
    pub fn unbind(&self, ip: Ipv4Addr) {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if let Some(mac) = g.by_ip.remove(&ip) {
            if g.by_mac.get(&mac) == Some(&ip) {
                g.by_mac.remove(&mac);
            }
        }
    }

    /// The MAC that holds `ip` by lease.
    pub fn mac_for(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        g.by_ip.get(&ip).copied()
    }

    /// The address `mac` holds by lease.
    pub fn ip_for(&self, mac: MacAddr) -> Option<Ipv4Addr> {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        g.by_mac.get(&mac).copied()
    }

    /// Every binding, in address order.
    pub fn snapshot(&self) -> Vec<(MacAddr, Ipv4Addr)> {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<(MacAddr, Ipv4Addr)> = g.by_ip.iter().map(|(ip, mac)| (*mac, *ip)).collect();
        v.sort_by_key(|(_, ip)| *ip);
        v
    }

    /// How many bindings there are.
    pub fn len(&self) -> usize {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        g.by_ip.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, n])
    }

    #[test]
    fn binds_move_and_unbind() {
        let l = Leases::default();
        let ip = |n: u8| Ipv4Addr::new(10, 0, 0, n);
        l.bind(mac(1), ip(1));
        l.bind(mac(1), ip(2));
        assert_eq!(l.mac_for(ip(1)), None);
        assert_eq!(l.mac_for(ip(2)), Some(mac(1)));
        // The address goes to another MAC.
        l.bind(mac(2), ip(2));
        assert_eq!(l.mac_for(ip(2)), Some(mac(2)));
        assert_eq!(l.ip_for(mac(1)), None);
        l.unbind(ip(2));
        assert_eq!(l.mac_for(ip(2)), None);
        assert!(l.is_empty());
    }
}
