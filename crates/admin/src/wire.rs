//! The admin API's protocol: paths, headers and the JSON documents both
//! sides exchange. Everything here is plain data; the server and the client
//! only move it.
//!
//! | request | body | answer |
//! |---|---|---|
//! | `GET /v1/state` | none | 200 [`State`] |
//! | `PUT /v1/inventory` | the lab.toml bytes | 200 [`InventoryApplied`]; 422 [`ApiError`] with the diagnostics (the old inventory keeps serving); 409 when a field that needs a restart changed |
//! | `PUT /v1/assets/<path>` | the file, `x-bootlab-sha256: <hex>` | 201 [`AssetStored`]; 400 bad or escaping path; 422 hash or length mismatch; 507 no space (the old file keeps serving) |
//!
//! Errors are always an [`ApiError`] document.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use bootlab_inventory::Inventory;
use serde::{Deserialize, Serialize};

/// `GET`: the services VM's state.
pub const PATH_STATE: &str = "/v1/state";
/// `PUT`: a new inventory.
pub const PATH_INVENTORY: &str = "/v1/inventory";
/// `PUT` prefix: an asset, by its path under the assets root
/// (percent-encoded per segment).
pub const PATH_ASSETS: &str = "/v1/assets/";
/// The SHA-256 (lowercase hex) an upload must hash to.
pub const HEADER_SHA256: &str = "x-bootlab-sha256";
/// What the sender calls the inventory file (named in diagnostics).
pub const HEADER_SOURCE_NAME: &str = "x-bootlab-source-name";
/// The largest inventory accepted.
pub const MAX_INVENTORY_BYTES: usize = 4 << 20;

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// True for 64 lowercase hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// An inventory's generation: the SHA-256 of its lab.toml bytes. The host
/// and the services VM compare these.
pub fn generation(text: &[u8]) -> String {
    sha256_hex(text)
}

/// Where the served inventory came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InventorySource {
    /// The file bootlabd was started with (`--config`).
    Installed,
    /// The last one pushed through the admin API (kept on the data disk).
    Pushed,
}

/// bootlabd's listen addresses, as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenView {
    /// DHCP.
    pub dhcp: String,
    /// DNS.
    pub dns: String,
    /// TFTP.
    pub tftp: String,
    /// HTTP.
    pub http: String,
    /// NTP.
    pub ntp: String,
    /// The admin API.
    pub admin: String,
}

/// The parts of `[services]` that bootlabd reads once at start (addresses,
/// the NIC, where its data lives): a change to any of them cannot be
/// applied to a running daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicesView {
    /// `services.ip`.
    pub ip: Ipv4Addr,
    /// `services.mac`.
    pub mac: String,
    /// `services.interface`.
    pub interface: Option<String>,
    /// `services.data_dir`.
    pub data_dir: String,
    /// `services.assets_dir`.
    pub assets_dir: String,
    /// `services.listen`.
    pub listen: ListenView,
}

impl ServicesView {
    /// The view of `inv`.
    pub fn of(inv: &Inventory) -> Self {
        let s = inv.services();
        let l = &s.listen;
        Self {
            ip: s.ip,
            mac: s.mac.to_string(),
            interface: s.interface.clone(),
            data_dir: s.data_dir.display().to_string(),
            assets_dir: s.assets_dir.display().to_string(),
            listen: ListenView {
                dhcp: l.dhcp.to_string(),
                dns: l.dns.to_string(),
                tftp: l.tftp.to_string(),
                http: l.http.to_string(),
                ntp: l.ntp.to_string(),
                admin: l.admin.to_string(),
            },
        }
    }

    /// What differs from `want` and so needs a restart of the services VM,
    /// as `field: old -> new` lines. Empty when a live push can apply it.
    pub fn restart_needed(&self, want: &Self) -> Vec<String> {
        let mut out = Vec::new();
        let mut cmp = |field: &str, a: String, b: String| {
            if a != b {
                out.push(format!("services.{field}: {a} -> {b}"));
            }
        };
        cmp("ip", self.ip.to_string(), want.ip.to_string());
        cmp("mac", self.mac.clone(), want.mac.clone());
        cmp(
            "interface",
            self.interface.clone().unwrap_or_else(|| "(by MAC)".into()),
            want.interface.clone().unwrap_or_else(|| "(by MAC)".into()),
        );
        cmp("data_dir", self.data_dir.clone(), want.data_dir.clone());
        cmp(
            "assets_dir",
            self.assets_dir.clone(),
            want.assets_dir.clone(),
        );
        let (a, b) = (&self.listen, &want.listen);
        cmp("listen.dhcp", a.dhcp.clone(), b.dhcp.clone());
        cmp("listen.dns", a.dns.clone(), b.dns.clone());
        cmp("listen.tftp", a.tftp.clone(), b.tftp.clone());
        cmp("listen.http", a.http.clone(), b.http.clone());
        cmp("listen.ntp", a.ntp.clone(), b.ntp.clone());
        cmp("listen.admin", a.admin.clone(), b.admin.clone());
        out
    }
}

/// One file under the assets root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetEntry {
    /// Path under the root, `/`-separated.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

/// Facts about the machine bootlabd runs on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineFacts {
    /// `/proc/sys/kernel/random/boot_id`: changes on every boot.
    pub boot_id: String,
    /// Seconds since boot.
    pub uptime_s: f64,
    /// `MemTotal`, bytes.
    pub mem_total: u64,
    /// `MemAvailable`, bytes.
    pub mem_available: u64,
    /// bootlabd's resident set, bytes.
    pub daemon_rss: u64,
}

/// A file system's size and free space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsFacts {
    /// The directory asked about.
    pub path: String,
    /// Bytes in the file system.
    pub total: u64,
    /// Bytes an unprivileged writer may still use.
    pub available: u64,
    /// The file system type (from /proc/mounts), when known.
    #[serde(default)]
    pub fs_type: Option<String>,
    /// The device it is mounted from, when known.
    #[serde(default)]
    pub device: Option<String>,
}

/// One DHCP binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseView {
    /// The client.
    pub mac: String,
    /// Its address.
    pub ip: Ipv4Addr,
}

/// `GET /v1/state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// `lab.name` of the served inventory.
    pub lab: String,
    /// [`generation`] of the served inventory.
    pub generation: String,
    /// Where it came from.
    pub source: InventorySource,
    /// Its `[services]` fields that need a restart to change.
    pub services: ServicesView,
    /// Every file under the assets root, by path.
    pub assets: Vec<AssetEntry>,
    /// The machine.
    pub machine: MachineFacts,
    /// The file system holding `services.data_dir`.
    pub data_fs: Option<FsFacts>,
    /// The file system holding `services.assets_dir`.
    pub assets_fs: Option<FsFacts>,
    /// DHCP bindings.
    pub leases: Vec<LeaseView>,
}

impl State {
    /// The assets by path.
    pub fn assets_by_path(&self) -> BTreeMap<&str, &AssetEntry> {
        self.assets.iter().map(|a| (a.path.as_str(), a)).collect()
    }
}

/// `PUT /v1/inventory` accepted and reloaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryApplied {
    /// The generation now serving.
    pub generation: String,
    /// Warnings of the new inventory (it loads; these may not work).
    pub warnings: Vec<String>,
}

/// `PUT /v1/assets/<path>` stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetStored {
    /// Path under the assets root.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

/// Every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong, for people.
    pub error: String,
    /// An invalid inventory's diagnostics, as `bootlab check` prints them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<String>,
}

/// Percent-encodes an asset path for [`PATH_ASSETS`], segment by segment
/// (`/` stays a separator).
pub fn asset_url_path(rel: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let mut out = String::from(PATH_ASSETS);
    for (i, seg) in rel.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.extend(utf8_percent_encode(seg, SEGMENT));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_and_generation() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_sha256_hex(&generation(b"")));
        assert!(!is_sha256_hex("ABC"));
    }

    #[test]
    fn asset_paths_are_encoded_per_segment() {
        assert_eq!(asset_url_path("a b/c%d.img"), "/v1/assets/a%20b/c%25d.img");
        assert_eq!(
            asset_url_path("fcos/rootfs.img"),
            "/v1/assets/fcos/rootfs.img"
        );
    }
}
