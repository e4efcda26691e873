//! The parts of the validated model: what every service and the host tool
//! work from, reached through [`crate::Inventory`]'s accessors.
//!
//! These values only exist inside an [`crate::Inventory`] after validation
//! succeeded, so their fields can be trusted: addresses are inside the CIDR,
//! MACs are unique, roles and profiles resolve, templates render.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::values::MacAddr;

/// `[lab]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lab {
    /// Cluster name (`okd`).
    pub name: String,
    /// Base domain (`example.com`).
    pub domain: String,
}

impl Lab {
    /// The lab zone: `<name>.<domain>` (no trailing dot).
    pub fn zone(&self) -> String {
        format!("{}.{}", self.name, self.domain)
    }
}

/// How the lab network reaches the outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// libvirt NATs through the hypervisor.
    Nat,
    /// No forwarding on the hypervisor; the services VM is the gateway.
    Isolated,
    /// An existing host bridge.
    Bridge,
}

impl NetworkMode {
    /// The name used in lab.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nat => "nat",
            Self::Isolated => "isolated",
            Self::Bridge => "bridge",
        }
    }
}

/// `[network]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// The lab subnet.
    pub cidr: Ipv4Net,
    /// nat | isolated | bridge
    pub mode: NetworkMode,
    /// DHCP option 3.
    pub gateway: Ipv4Addr,
    /// The hypervisor's address on the bridge.
    pub host_ip: Option<Ipv4Addr>,
    /// libvirt network name.
    pub libvirt_name: String,
    /// Bridge device name.
    pub bridge: String,
    /// Upstream resolvers (empty: the services node's resolv.conf).
    pub upstream_dns: Vec<SocketAddr>,
    /// Lease time.
    pub lease: Duration,
    /// Dynamic pool, if any.
    pub pool: Option<Pool>,
    /// Whether bootlabd hands out addresses or only PXE boot information.
    pub dhcp: DhcpMode,
}

/// `network.dhcp`: who hands out addresses on the lab network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhcpMode {
    /// bootlabd is the network's DHCP server (addresses and boot files).
    Server,
    /// Another DHCP server hands out addresses; bootlabd answers PXE
    /// clients with boot information only (proxyDHCP: offers without an
    /// address on port 67, boot requests on port 4011).
    Proxy,
}

impl DhcpMode {
    /// The name used in lab.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Proxy => "proxy",
        }
    }
}

/// An inclusive address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    /// First address.
    pub start: Ipv4Addr,
    /// Last address.
    pub end: Ipv4Addr,
}

impl Pool {
    /// True when `ip` is inside the pool.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (self.start..=self.end).contains(&ip)
    }

    /// Number of addresses.
    pub fn len(&self) -> u32 {
        u32::from(self.end) - u32::from(self.start) + 1
    }

    /// Always false: a pool has at least one address.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// libvirt virtualisation type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtType {
    /// KVM when a guest actually runs, else TCG.
    Auto,
    /// KVM.
    Kvm,
    /// TCG.
    Qemu,
}

/// Disk bus for node volumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskBus {
    /// virtio-blk (`/dev/vda`).
    Virtio,
    /// virtio-scsi.
    Scsi,
    /// AHCI.
    Sata,
}

impl DiskBus {
    /// The libvirt name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Virtio => "virtio",
            Self::Scsi => "scsi",
            Self::Sata => "sata",
        }
    }
}

/// `[libvirt]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Libvirt {
    /// Connection URI.
    pub uri: String,
    /// Storage pool name.
    pub pool: String,
    /// Storage pool directory.
    pub pool_path: PathBuf,
    /// Domain name prefix.
    pub vm_prefix: String,
    /// Virtualisation type.
    pub virt_type: VirtType,
    /// Disk bus.
    pub disk_bus: DiskBus,
    /// Host-side directory the services VM's assets come from.
    pub assets_source: Option<PathBuf>,
}

/// Where bootlabd listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    /// DHCP.
    pub dhcp: SocketAddr,
    /// DNS (UDP and TCP).
    pub dns: SocketAddr,
    /// TFTP.
    pub tftp: SocketAddr,
    /// HTTP.
    pub http: SocketAddr,
    /// NTP.
    pub ntp: SocketAddr,
    /// The admin API (HTTPS with mutual TLS; the host tool's pushes).
    pub admin: SocketAddr,
}

/// Services VM install method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallMethod {
    /// Kernel + generated initramfs holding bootlabd.
    Appliance,
    /// Installer ISO + kickstart.
    Kickstart {
        /// The ISO.
        iso: PathBuf,
    },
    /// Cloud image + NoCloud seed.
    CloudImage {
        /// The image.
        image: PathBuf,
    },
}

/// The services VM's uplink NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uplink {
    /// libvirt network.
    pub network: String,
    /// NIC MAC.
    pub mac: MacAddr,
}

/// `[services]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Services {
    /// Host name.
    pub name: String,
    /// Lab address.
    pub ip: Ipv4Addr,
    /// Lab NIC MAC.
    pub mac: MacAddr,
    /// Interface override.
    pub interface: Option<String>,
    /// vCPUs.
    pub vcpus: u32,
    /// Memory in bytes.
    pub memory: u64,
    /// Disk sizes in bytes.
    pub disks: Vec<u64>,
    /// Listen addresses.
    pub listen: Listen,
    /// Leases and state.
    pub data_dir: PathBuf,
    /// TFTP root and `/assets`.
    pub assets_dir: PathBuf,
    /// Manage nftables.
    pub firewall: bool,
    /// Uplink NIC (isolated mode).
    pub uplink: Option<Uplink>,
    /// SSH keys.
    pub ssh_authorized_keys: Vec<String>,
    /// Install method.
    pub install: InstallMethod,
}

/// A DNS record's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordData {
    /// IPv4 address.
    A(Ipv4Addr),
    /// IPv6 address.
    Aaaa(Ipv6Addr),
    /// Alias target (absolute, no trailing dot).
    Cname(String),
    /// Character strings.
    Txt(Vec<String>),
    /// Service location.
    Srv {
        /// Priority.
        priority: u16,
        /// Weight.
        weight: u16,
        /// Port.
        port: u16,
        /// Target (absolute, no trailing dot).
        target: String,
    },
    /// Mail exchanger.
    Mx {
        /// Preference.
        preference: u16,
        /// Exchange (absolute, no trailing dot).
        exchange: String,
    },
    /// Reverse pointer (absolute, no trailing dot).
    Ptr(String),
}

impl RecordData {
    /// The record type's mnemonic.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::A(_) => "A",
            Self::Aaaa(_) => "AAAA",
            Self::Cname(_) => "CNAME",
            Self::Txt(_) => "TXT",
            Self::Srv { .. } => "SRV",
            Self::Mx { .. } => "MX",
            Self::Ptr(_) => "PTR",
        }
    }
}

/// An extra record from `[dns].records`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecord {
    /// Owner relative to the lab zone, lowercase (`api`, `*.apps`; `@` is the apex, stored as "").
    pub name: String,
    /// Data.
    pub data: RecordData,
    /// TTL in seconds.
    pub ttl: u32,
}

/// Which first-stage loader a profile uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loader {
    /// iPXE (undionly.kpxe / snponly.efi, then iPXE scripts over HTTP).
    Ipxe,
    /// GRUB (grubnetx64.efi + rendered grub.cfg) for UEFI clients.
    Grub,
    /// The Secure Boot chain for UEFI x86-64 clients: shim (signed by
    /// Microsoft) -> Debian's signed GRUB netboot image -> a signed kernel,
    /// kernel and initrd over TFTP (the signed GRUB has no HTTP). BIOS
    /// clients of such a profile get the iPXE path.
    ShimGrub,
}

impl Loader {
    /// The name used in lab.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ipxe => "ipxe",
            Self::Grub => "grub",
            Self::ShimGrub => "shim-grub",
        }
    }
}

/// `[profiles.<name>]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Name.
    pub name: String,
    /// Loader.
    pub loader: Loader,
    /// Kernel path under the assets dir.
    pub kernel: String,
    /// Initrd paths under the assets dir.
    pub initrd: Vec<String>,
    /// Kernel command line template (minijinja).
    pub args: String,
    /// Own boot script template (iPXE for `loader = "ipxe"`, grub.cfg for
    /// `grub`), a path under the assets root; `None`: the built-in one.
    pub template: Option<String>,
}

/// How a VM boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Firmware {
    /// SeaBIOS.
    Bios,
    /// OVMF.
    Uefi,
}

impl Firmware {
    /// The name used in lab.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bios => "bios",
            Self::Uefi => "uefi",
        }
    }
}

/// A node's boot profile, resolved and rendered once at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootProfile {
    /// Profile name.
    pub name: String,
    /// Loader.
    pub loader: Loader,
    /// Kernel path under the assets dir.
    pub kernel: String,
    /// Initrd paths under the assets dir.
    pub initrd: Vec<String>,
    /// Rendered kernel command line.
    pub args: String,
}

/// A node, with its role's defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Host name.
    pub name: String,
    /// Fully qualified name, `<name>.<lab zone>`.
    pub fqdn: String,
    /// Role, if any.
    pub role: Option<String>,
    /// NIC MAC.
    pub mac: MacAddr,
    /// True when the MAC was derived from the IP.
    pub mac_derived: bool,
    /// Reserved address.
    pub ip: Ipv4Addr,
    /// Boot profile name (a key of [`Inventory::profiles`]).
    pub profile: String,
    /// Firmware.
    pub firmware: Firmware,
    /// vCPUs.
    pub vcpus: u32,
    /// Memory in bytes.
    pub memory: u64,
    /// Disk sizes in bytes.
    pub disks: Vec<u64>,
    /// Template variables: role vars overridden by node vars (nodes
    /// without vars of their own share their role's map).
    pub vars: Arc<BTreeMap<String, String>>,
    /// Out of every balancer (node's `drain`, else its role's).
    pub drain: bool,
    /// The boot profile, rendered for this node.
    pub boot: BootProfile,
}

/// Which host a [`Host`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostRef {
    /// `nodes[i]`.
    Node(usize),
    /// The services VM.
    Services,
}

/// A host of the lab with an address: a node or the services VM. Each has a
/// DHCP reservation, an A and a PTR record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The NIC's MAC.
    pub mac: MacAddr,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Short host name (DHCP option 12).
    pub name: String,
    /// Fully qualified name.
    pub fqdn: String,
    /// Whose it is.
    pub kind: HostRef,
}

/// `[ntp]`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ntp {
    /// Serve NTP and send DHCP option 42.
    pub enable: bool,
    /// Stratum served.
    pub local_stratum: u8,
    /// Answer "unsynchronised" (LI 3) while the kernel clock is.
    pub require_sync: bool,
}

/// How a balancer picks a backend for a new connection.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Each new connection goes to the next backend in turn (the default).
    #[default]
    RoundRobin,
    /// The backend with the fewest open connections; ties in turn.
    LeastConn,
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Algorithm {
    /// The name used in lab.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "roundrobin",
            Self::LeastConn => "leastconn",
        }
    }
}

/// What one health check does. TLS never verifies certificates (cluster
/// CAs are self-signed) and sends no SNI (the backend is addressed by IP).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum HealthCheck {
    /// A TCP connect succeeds (the default).
    #[default]
    Tcp,
    /// A TCP connect and a complete TLS handshake succeed.
    Tls,
    /// Over TLS, `GET path` answers with status `status`.
    Https {
        /// Request path, e.g. `/readyz`.
        path: String,
        /// The status that counts as healthy, e.g. 200.
        status: u16,
    },
}

impl std::fmt::Display for HealthCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp => f.write_str("tcp"),
            Self::Tls => f.write_str("tls"),
            Self::Https { path, status } => write!(f, "https GET {path} -> {status}"),
        }
    }
}

/// One backend of a balancer: a node's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalancerBackend {
    /// The node's name.
    pub node: String,
    /// The node's address and the backend port.
    pub addr: SocketAddrV4,
    /// The node is drained: no new connections.
    pub drained: bool,
}

/// `[[balancers]]`: a layer-4 TCP balancer on the services node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balancer {
    /// Name.
    pub name: String,
    /// Listen address.
    pub listen: SocketAddrV4,
    /// Backends, in inventory order (nodes of the named roles and nodes, once each).
    pub backends: Vec<BalancerBackend>,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Health check.
    pub check: HealthCheck,
    /// Time between checks.
    pub interval: Duration,
    /// Passes that bring a backend back.
    pub rise: u32,
    /// Failures that take it out.
    pub fall: u32,
}

/// `[egress]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Egress {
    /// Host names (nodes or the services VM) allowed out.
    pub allow_hosts: Vec<String>,
    /// Destinations every lab host may reach.
    pub allow_cidrs: Vec<Ipv4Net>,
    /// Names the forwarder may resolve (isolated mode), lowercase, no trailing dot.
    pub allow_domains: Vec<String>,
}
