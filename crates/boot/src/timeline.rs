//! The machine timeline: every service records what each MAC did, so
//! `/api/v1/machines` can show DHCP -> TFTP -> script -> kernel -> initrd.
//!
//! Fetches arrive by source address; the timeline maps addresses to MACs
//! through the inventory's reservations and the leases DHCP reports with
//! [`Timeline::bind`]. Memory is bounded: at most [`MAX_MACHINES`] machines
//! (the least recently seen is dropped) and [`MAX_EVENTS`] events each.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use bootlab_inventory::{Inventory, MacAddr};
use serde::Serialize;

/// Machines kept at most.
pub const MAX_MACHINES: usize = 4096;
/// Events kept per machine at most (oldest dropped first).
pub const MAX_EVENTS: usize = 256;

/// Which service saw the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// DHCP.
    Dhcp,
    /// TFTP.
    Tftp,
    /// HTTP.
    Http,
    /// DNS.
    Dns,
}

impl Service {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dhcp => "dhcp",
            Self::Tftp => "tftp",
            Self::Http => "http",
            Self::Dns => "dns",
        }
    }
}

/// A machine's boot stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Got (or asked for) an address.
    Dhcp,
    /// Fetched a first-stage loader over TFTP.
    Tftp,
    /// Fetched a boot script or per-MAC config.
    Script,
    /// Fetched its profile's kernel.
    Kernel,
    /// Fetched its profile's initrd.
    Initrd,
    /// Fetched other assets (ignition, rootfs...).
    Config,
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// When, RFC 3339 with milliseconds.
    #[serde(serialize_with = "ser_time")]
    pub at: SystemTime,
    /// Which service.
    pub service: Service,
    /// What happened (`discover`, `ack`, `kernel`, `script`, `file`...).
    pub kind: String,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Requested path, for fetches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Bytes sent, for fetches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The stage this event moves the machine to, if any.
    #[serde(skip)]
    pub stage: Option<Stage>,
}

fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

/// One machine's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Machine {
    /// MAC, lowercase with colons.
    pub mac: MacAddr,
    /// Host name from the inventory, when reserved.
    pub name: Option<String>,
    /// Current address (reservation or lease).
    pub ip: Option<Ipv4Addr>,
    /// The stage of the latest stage-bearing event.
    pub stage: Option<Stage>,
    /// Events, oldest first.
    pub events: VecDeque<Event>,
    #[serde(skip)]
    seen: u64,
}

/// What a fetch of `path` means for the machine that made it.
pub fn classify_fetch(inv: &Inventory, mac: Option<MacAddr>, path: &str, is_script: bool) -> Stage {
    if is_script {
        return Stage::Script;
    }
    let p = path.trim_start_matches('/');
    let asset = p.strip_prefix("assets/").unwrap_or(p);
    if let Some(node) = mac.and_then(|m| inv.node_by_mac(m)) {
        if let Some(prof) = inv.profiles.get(&node.profile) {
            if asset == prof.kernel {
                return Stage::Kernel;
            }
            if prof.initrd.iter().any(|i| i == asset) {
                return Stage::Initrd;
            }
        }
    }
    let loaders = [
        crate::decision::BIOS_LOADER,
        crate::decision::UEFI_LOADER,
        crate::decision::UEFI_HTTP_LOADER,
        crate::decision::GRUB_LOADER,
        crate::decision::ARM64_LOADER,
    ];
    if loaders.contains(&asset) || asset.starts_with("grub/") {
        return Stage::Tftp;
    }
    Stage::Config
}

#[derive(Default)]
struct Inner {
    machines: HashMap<MacAddr, Machine>,
    by_ip: HashMap<Ipv4Addr, MacAddr>,
    /// Reverse of `by_ip` (one lease address per MAC), so binds and event
    /// records stay O(1) however many leases the pool hands out.
    ip_by_mac: HashMap<MacAddr, Ipv4Addr>,
    reserved: HashMap<Ipv4Addr, (MacAddr, String)>,
    reserved_by_mac: HashMap<MacAddr, Ipv4Addr>,
    names: HashMap<MacAddr, String>,
    clock: u64,
}

/// The shared timeline. Cheap to clone (an `Arc`).
#[derive(Clone, Default)]
pub struct Timeline {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Timeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timeline").finish_non_exhaustive()
    }
}

impl Timeline {
    /// An empty timeline seeded with an inventory's reservations.
    pub fn new(inv: &Inventory) -> Self {
        let t = Self::default();
        t.set_inventory(inv);
        t
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-seeds names and reserved addresses (after a reload). Events stay.
    pub fn set_inventory(&self, inv: &Inventory) {
        let mut g = self.lock();
        g.reserved.clear();
        g.reserved_by_mac.clear();
        g.names.clear();
        for r in inv.reservations() {
            g.reserved.insert(r.ip, (r.mac, r.hostname.clone()));
            g.reserved_by_mac.insert(r.mac, r.ip);
            g.names.insert(r.mac, r.hostname);
        }
        let names = g.names.clone();
        for m in g.machines.values_mut() {
            m.name = names.get(&m.mac).cloned();
        }
    }

    /// Records that `mac` now holds `ip` (a DHCP ACK).
    pub fn bind(&self, mac: MacAddr, ip: Ipv4Addr) {
        let mut g = self.lock();
        if let Some(old) = g.ip_by_mac.insert(mac, ip) {
            if old != ip && g.by_ip.get(&old) == Some(&mac) {
                g.by_ip.remove(&old);
            }
        }
        if let Some(prev) = g.by_ip.insert(ip, mac) {
            if prev != mac && g.ip_by_mac.get(&prev) == Some(&ip) {
                g.ip_by_mac.remove(&prev);
            }
        }
        if let Some(m) = g.machines.get_mut(&mac) {
            m.ip = Some(ip);
        }
    }

    /// Forgets a binding (RELEASE, expiry).
    pub fn unbind(&self, ip: Ipv4Addr) {
        let mut g = self.lock();
        if let Some(mac) = g.by_ip.remove(&ip) {
            if g.ip_by_mac.get(&mac) == Some(&ip) {
                g.ip_by_mac.remove(&mac);
            }
        }
    }

    /// The MAC that holds `ip`: a lease first, then a reservation.
    pub fn mac_for_ip(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        let g = self.lock();
        g.by_ip
            .get(&ip)
            .copied()
            .or_else(|| g.reserved.get(&ip).map(|(m, _)| *m))
    }

    /// Records an event for `mac`.
    pub fn record(&self, mac: MacAddr, event: Event) {
        let mut g = self.lock();
        g.clock += 1;
        let clock = g.clock;
        if !g.machines.contains_key(&mac) && g.machines.len() >= MAX_MACHINES {
            // Drop the least recently seen sixteenth at once, so a flood of
            // new MACs costs one scan per MAX_MACHINES / 16 arrivals.
            let mut seen: Vec<(u64, MacAddr)> =
                g.machines.values().map(|m| (m.seen, m.mac)).collect();
            let n = (MAX_MACHINES / 16).max(1);
            seen.select_nth_unstable(n - 1);
            for (_, old) in &seen[..n] {
                g.machines.remove(old);
            }
        }
        let g = &mut *g;
        // Name and address are looked up only for a machine seen for the
        // first time (or still without an address): this runs per packet.
        let m = g.machines.entry(mac).or_insert_with(|| Machine {
            mac,
            name: g.names.get(&mac).cloned(),
            ip: None,
            stage: None,
            events: VecDeque::new(),
            seen: clock,
        });
        m.seen = clock;
        if m.ip.is_none() {
            m.ip = g
                .ip_by_mac
                .get(&mac)
                .or_else(|| g.reserved_by_mac.get(&mac))
                .copied();
        }
        if event.stage.is_some() {
            m.stage = event.stage;
        }
        if m.events.len() >= MAX_EVENTS {
            m.events.pop_front();
        }
        m.events.push_back(event);
    }

    /// Records a DHCP event (`discover`, `offer`, `request`, `ack`, `nak`,
    /// `decline`, `release`, `inform`).
    pub fn dhcp(&self, mac: MacAddr, kind: &str, detail: impl Into<String>) {
        self.record(
            mac,
            Event {
                at: SystemTime::now(),
                service: Service::Dhcp,
                kind: kind.to_owned(),
                detail: Some(detail.into()),
                path: None,
                bytes: None,
                stage: Some(Stage::Dhcp),
            },
        );
    }

    /// Records a fetch by a client at `ip` (TFTP or HTTP). The kind is the
    /// stage name (`tftp`, `script`, `kernel`, `initrd`, `config`). Returns
    /// the MAC it was attributed to, if any.
    #[allow(clippy::too_many_arguments)] // each is a distinct fact of the fetch
    pub fn fetch(
        &self,
        inv: &Inventory,
        ip: Ipv4Addr,
        mac_hint: Option<MacAddr>,
        service: Service,
        path: &str,
        bytes: u64,
        is_script: bool,
    ) -> Option<MacAddr> {
        let mac = mac_hint.or_else(|| self.mac_for_ip(ip))?;
        let stage = classify_fetch(inv, Some(mac), path, is_script);
        let kind = match stage {
            Stage::Dhcp => "dhcp",
            Stage::Tftp => "loader",
            Stage::Script => "script",
            Stage::Kernel => "kernel",
            Stage::Initrd => "initrd",
            Stage::Config => "config",
        };
        self.record(
            mac,
            Event {
                at: SystemTime::now(),
                service,
                kind: kind.to_owned(),
                detail: None,
                path: Some(path.to_owned()),
                bytes: Some(bytes),
                stage: Some(if service == Service::Tftp && stage == Stage::Config {
                    Stage::Tftp
                } else {
                    stage
                }),
            },
        );
        Some(mac)
    }

    /// Records a note that does not change the stage (unknown machine,
    /// refused path...).
    pub fn note(&self, mac: MacAddr, service: Service, kind: &str, detail: impl Into<String>) {
        self.record(
            mac,
            Event {
                at: SystemTime::now(),
                service,
                kind: kind.to_owned(),
                detail: Some(detail.into()),
                path: None,
                bytes: None,
                stage: None,
            },
        );
    }

    /// One machine.
    pub fn machine(&self, mac: MacAddr) -> Option<Machine> {
        self.lock().machines.get(&mac).cloned()
    }

    /// Every machine, reserved ones first in MAC order.
    pub fn machines(&self) -> Vec<Machine> {
        let g = self.lock();
        let mut v: Vec<Machine> = g.machines.values().cloned().collect();
        v.sort_by_key(|m| (m.name.is_none(), m.mac));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u32) -> MacAddr {
        let b = n.to_be_bytes();
        MacAddr([2, 0, b[0], b[1], b[2], b[3]])
    }

    #[test]
    fn binds_move_and_unbind() {
        let t = Timeline::default();
        let ip = |n: u8| Ipv4Addr::new(10, 0, 0, n);
        t.bind(mac(1), ip(1));
        t.bind(mac(1), ip(2));
        assert_eq!(t.mac_for_ip(ip(1)), None);
        assert_eq!(t.mac_for_ip(ip(2)), Some(mac(1)));
        // The address goes to another MAC.
        t.bind(mac(2), ip(2));
        assert_eq!(t.mac_for_ip(ip(2)), Some(mac(2)));
        t.dhcp(mac(1), "discover", "");
        assert_eq!(t.machine(mac(1)).unwrap().ip, None);
        t.unbind(ip(2));
        assert_eq!(t.mac_for_ip(ip(2)), None);
    }

    #[test]
    fn many_machines_stay_bounded() {
        let t = Timeline::default();
        for n in 0..(MAX_MACHINES as u32 * 3) {
            t.bind(mac(n), Ipv4Addr::from(0x0a00_0000 + n));
            t.dhcp(mac(n), "ack", "");
        }
        assert!(t.machines().len() <= MAX_MACHINES);
        let last = mac(MAX_MACHINES as u32 * 3 - 1);
        assert_eq!(
            t.machine(last).unwrap().ip,
            Some(Ipv4Addr::from(0x0a00_0000 + MAX_MACHINES as u32 * 3 - 1))
        );
    }
}
