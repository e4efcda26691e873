//! The machine timeline: every service records what each MAC did, so
//! `/api/v1/machines` can show DHCP -> TFTP -> script -> kernel -> initrd.
//!
//! The timeline only keeps events, keyed by MAC. Which MAC made a fetch
//! (by source address) and a machine's name and address come from the
//! inventory and the leases view ([`crate::Shared`]), not from here.
//! Memory is bounded: at most [`MAX_MACHINES`] machines (the least
//! recently seen are dropped) and [`MAX_EVENTS`] events each.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use bootlab_boot::decision;
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
    /// The load balancers (a node's backend state changes).
    Lb,
}

impl Service {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dhcp => "dhcp",
            Self::Tftp => "tftp",
            Self::Http => "http",
            Self::Dns => "dns",
            Self::Lb => "lb",
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
    /// Host name from the inventory, when reserved (filled when read).
    pub name: Option<String>,
    /// Current address, reservation or lease (filled when read).
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
        if asset == node.boot.kernel {
            return Stage::Kernel;
        }
        if node.boot.initrd.iter().any(|i| i == asset) {
            return Stage::Initrd;
        }
    }
    let loaders = [
        decision::BIOS_LOADER,
        decision::UEFI_LOADER,
        decision::UEFI_HTTP_LOADER,
        decision::GRUB_LOADER,
        decision::GRUB_HTTP_LOADER,
        decision::SHIM_LOADER,
        decision::SHIM_SECOND_STAGE,
        decision::ARM64_LOADER,
    ];
    if loaders.contains(&asset) || asset.starts_with("grub/") {
        return Stage::Tftp;
    }
    Stage::Config
}

#[derive(Default)]
struct Inner {
    machines: HashMap<MacAddr, Machine>,
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
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
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
        let m = g.machines.entry(mac).or_insert_with(|| Machine {
            mac,
            name: None,
            ip: None,
            stage: None,
            events: VecDeque::new(),
            seen: clock,
        });
        m.seen = clock;
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

    /// Records a fetch of `path` by `mac` (TFTP or HTTP), classified
    /// against `inv` (kernel, initrd, script, loader, config).
    pub fn fetch(
        &self,
        inv: &Inventory,
        mac: MacAddr,
        service: Service,
        path: &str,
        bytes: u64,
        is_script: bool,
    ) {
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

    /// Every machine, in MAC order.
    pub fn machines(&self) -> Vec<Machine> {
        let g = self.lock();
        let mut v: Vec<Machine> = g.machines.values().cloned().collect();
        v.sort_by_key(|m| m.mac);
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
    fn many_machines_stay_bounded() {
        let t = Timeline::default();
        for n in 0..(MAX_MACHINES as u32 * 3) {
            t.dhcp(mac(n), "ack", "");
        }
        assert!(t.machines().len() <= MAX_MACHINES);
        let last = mac(MAX_MACHINES as u32 * 3 - 1);
        assert_eq!(t.machine(last).unwrap().events.len(), 1);
    }

    #[test]
    fn events_per_machine_stay_bounded() {
        let t = Timeline::default();
        for _ in 0..(MAX_EVENTS * 2) {
            t.dhcp(mac(1), "discover", "");
        }
        assert_eq!(t.machine(mac(1)).unwrap().events.len(), MAX_EVENTS);
    }
}
