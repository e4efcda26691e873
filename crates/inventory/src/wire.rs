//! The wire format: serde structs that mirror `lab.toml` exactly.
//!
//! Every struct denies unknown fields. Values that need checking (addresses,
//! MACs, sizes, enumerations) stay strings here, so that validation can report
//! every problem at once with its location instead of stopping at the first.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::defaults;

/// The whole file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LabFile {
    /// `[lab]`
    pub lab: LabSection,
    /// `[network]`
    pub network: NetworkSection,
    /// `[libvirt]`
    #[serde(default)]
    pub libvirt: LibvirtSection,
    /// `[services]`
    pub services: ServicesSection,
    /// `[dns]`
    #[serde(default)]
    pub dns: DnsSection,
    /// `[profiles.<name>]`
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileSection>,
    /// `[roles.<name>]`
    #[serde(default)]
    pub roles: BTreeMap<String, RoleSection>,
    /// `[[nodes]]`
    #[serde(default)]
    pub nodes: Vec<NodeSection>,
    /// `[egress]`
    #[serde(default)]
    pub egress: EgressSection,
    /// `[ntp]`
    #[serde(default)]
    pub ntp: NtpSection,
    /// `[[balancers]]`
    #[serde(default)]
    pub balancers: Vec<BalancerSection>,
}

/// `[lab]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LabSection {
    /// Cluster name.
    pub name: String,
    /// Base domain.
    pub domain: String,
}

/// `[network]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// The lab subnet.
    pub cidr: String,
    /// nat | isolated | bridge
    #[serde(default = "default_mode")]
    pub mode: String,
    /// DHCP option 3.
    pub gateway: String,
    /// The hypervisor's address on the lab bridge.
    pub host_ip: Option<String>,
    /// libvirt network name.
    pub libvirt_name: Option<String>,
    /// Bridge device name.
    pub bridge: Option<String>,
    /// Upstream resolvers for allow-listed names.
    #[serde(default)]
    pub upstream_dns: Vec<String>,
    /// Lease time.
    #[serde(default = "default_lease")]
    pub lease: String,
    /// Optional dynamic pool.
    pub pool: Option<PoolSection>,
    /// server | proxy
    #[serde(default = "default_dhcp")]
    pub dhcp: String,
}

fn default_dhcp() -> String {
    defaults::NETWORK_DHCP.into()
}

fn default_mode() -> String {
    defaults::NETWORK_MODE.into()
}

fn default_lease() -> String {
    defaults::LEASE.into()
}

/// `network.pool`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    /// First address.
    pub start: String,
    /// Last address (inclusive).
    pub end: String,
}

/// `[libvirt]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LibvirtSection {
    /// Connection URI.
    pub uri: Option<String>,
    /// Storage pool name.
    pub pool: Option<String>,
    /// Storage pool directory.
    pub pool_path: Option<String>,
    /// Domain name prefix.
    pub vm_prefix: Option<String>,
    /// auto | kvm | qemu
    pub virt_type: Option<String>,
    /// virtio | scsi | sata
    pub disk_bus: Option<String>,
    /// Host-side directory whose files the services VM serves as its assets.
    pub assets_source: Option<String>,
}

/// `[services]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServicesSection {
    /// Host name of the services VM.
    #[serde(default = "default_services_name")]
    pub name: String,
    /// Its lab address.
    pub ip: String,
    /// Its lab NIC's MAC (derived from `ip` when absent).
    pub mac: Option<String>,
    /// Interface override.
    pub interface: Option<String>,
    /// vCPUs of the services VM.
    pub vcpus: Option<u32>,
    /// Memory of the services VM.
    pub memory: Option<String>,
    /// Disks of the services VM.
    pub disks: Option<Vec<String>>,
    /// Listen addresses.
    #[serde(default)]
    pub listen: ListenSection,
    /// Leases and state.
    pub data_dir: Option<String>,
    /// TFTP root and `/assets`.
    pub assets_dir: Option<String>,
    /// Manage nftables on the services node.
    #[serde(default = "default_true")]
    pub firewall: bool,
    /// Second NIC (isolated mode).
    pub uplink: Option<UplinkSection>,
    /// SSH keys for the admin user.
    #[serde(default)]
    pub ssh_authorized_keys: Vec<String>,
    /// How the host tool installs the VM.
    #[serde(default)]
    pub install: InstallSection,
}

fn default_services_name() -> String {
    defaults::SERVICES_NAME.into()
}

fn default_true() -> bool {
    defaults::FIREWALL
}

/// `services.listen`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    /// DHCP listen address.
    pub dhcp: Option<String>,
    /// DNS listen address.
    pub dns: Option<String>,
    /// TFTP listen address.
    pub tftp: Option<String>,
    /// HTTP listen address.
    pub http: Option<String>,
    /// NTP listen address.
    pub ntp: Option<String>,
    /// Admin API listen address (HTTPS, mutual TLS).
    pub admin: Option<String>,
}

/// `services.uplink`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkSection {
    /// libvirt network the uplink NIC joins.
    pub network: String,
    /// The uplink NIC's MAC.
    pub mac: String,
}

/// `[services.install]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InstallSection {
    /// appliance | kickstart | cloud-image
    #[serde(default = "default_method")]
    pub method: String,
    /// Installer ISO (kickstart).
    pub iso: Option<String>,
    /// Cloud image (cloud-image).
    pub image: Option<String>,
}

impl Default for InstallSection {
    fn default() -> Self {
        Self {
            method: default_method(),
            iso: None,
            image: None,
        }
    }
}

fn default_method() -> String {
    defaults::INSTALL_METHOD.into()
}

/// `[dns]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSection {
    /// Extra records.
    #[serde(default)]
    pub records: Vec<RecordSection>,
}

/// One entry of `dns.records`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSection {
    /// Owner, relative to the lab zone (`api`, `*.apps`, `@`).
    pub name: String,
    /// A | AAAA | CNAME | TXT | SRV | MX
    #[serde(rename = "type")]
    pub rtype: String,
    /// Zone-file style value.
    pub value: String,
    /// TTL in seconds.
    pub ttl: Option<u32>,
}

/// `[profiles.<name>]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSection {
    /// ipxe | grub
    #[serde(default = "default_loader")]
    pub loader: String,
    /// Kernel path under the assets dir.
    pub kernel: String,
    /// Initrd paths under the assets dir.
    #[serde(default)]
    pub initrd: Vec<String>,
    /// Kernel command line template.
    #[serde(default)]
    pub args: String,
    /// Own boot script template, a path under the assets root.
    pub template: Option<String>,
}

fn default_loader() -> String {
    defaults::LOADER.into()
}

/// A template variable value: a string, integer, float or boolean.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum VarValue {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl std::fmt::Display for VarValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Str(s) => f.write_str(s),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// `[roles.<name>]`: defaults for the nodes of a role.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSection {
    /// Boot profile.
    pub profile: Option<String>,
    /// bios | uefi
    pub firmware: Option<String>,
    /// vCPUs.
    pub vcpus: Option<u32>,
    /// Memory size.
    pub memory: Option<String>,
    /// Disk sizes.
    pub disks: Option<Vec<String>>,
    /// Template variables.
    #[serde(default)]
    pub vars: BTreeMap<String, VarValue>,
    /// Take the role's nodes out of every balancer.
    pub drain: Option<bool>,
}

/// `[[nodes]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Host name.
    pub name: String,
    /// Role (defaults come from `[roles.<role>]`).
    pub role: Option<String>,
    /// NIC MAC (derived from `ip` when absent).
    pub mac: Option<String>,
    /// Reserved address.
    pub ip: String,
    /// Boot profile override.
    pub profile: Option<String>,
    /// Firmware override.
    pub firmware: Option<String>,
    /// vCPUs override.
    pub vcpus: Option<u32>,
    /// Memory override.
    pub memory: Option<String>,
    /// Disks override.
    pub disks: Option<Vec<String>>,
    /// Template variables (merged over the role's).
    #[serde(default)]
    pub vars: BTreeMap<String, VarValue>,
    /// Take the node out of every balancer (overrides its role's).
    pub drain: Option<bool>,
}

/// `[egress]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EgressSection {
    /// Hosts (node or services names) that may reach beyond the lab.
    pub allow_hosts: Option<Vec<String>>,
    /// Destinations every lab host may reach.
    #[serde(default)]
    pub allow_cidrs: Vec<String>,
    /// Names the DNS forwarder may resolve (isolated mode).
    #[serde(default)]
    pub allow_domains: Vec<String>,
}

/// `[ntp]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NtpSection {
    /// Serve NTP and send DHCP option 42.
    #[serde(default = "default_ntp_enable")]
    pub enable: bool,
    /// The stratum served (as chrony's `local stratum`).
    #[serde(default = "default_ntp_stratum")]
    pub local_stratum: u8,
    /// Answer "unsynchronised" while the kernel clock is.
    #[serde(default = "default_ntp_require_sync")]
    pub require_sync: bool,
}

impl Default for NtpSection {
    fn default() -> Self {
        Self {
            enable: default_ntp_enable(),
            local_stratum: default_ntp_stratum(),
            require_sync: default_ntp_require_sync(),
        }
    }
}

fn default_ntp_enable() -> bool {
    defaults::NTP_ENABLE
}

fn default_ntp_stratum() -> u8 {
    defaults::NTP_LOCAL_STRATUM
}

fn default_ntp_require_sync() -> bool {
    defaults::NTP_REQUIRE_SYNC
}

/// `[[balancers]]`: a layer-4 TCP load balancer on the services node.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BalancerSection {
    /// Name (`api`, `ingress-https`...).
    pub name: String,
    /// Listen port.
    pub port: u16,
    /// Listen address (default: services.ip).
    pub address: Option<String>,
    /// Role and/or node names.
    pub backends: Vec<String>,
    /// Backend port (default: port).
    pub backend_port: Option<u16>,
    /// roundrobin | leastconn
    pub algorithm: Option<String>,
    /// Health check.
    pub check: Option<CheckSection>,
    /// Time between checks.
    pub interval: Option<String>,
    /// Passes that bring a backend back.
    pub rise: Option<u32>,
    /// Failures that take a backend out.
    pub fall: Option<u32>,
}

/// `balancers[].check`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSection {
    /// tcp | tls | https
    pub kind: Option<String>,
    /// Request path (https).
    pub path: Option<String>,
    /// Expected status (https).
    pub status: Option<u16>,
}
