//! Every default of `lab.toml`, in one table.
//!
//! The wire structs (`serde(default = ...)`), validation and the docs read
//! these; nothing else writes a default value down. Defaults that are other
//! fields (the libvirt network name defaults to the lab name...) are derived
//! in validation and documented in docs/inventory.md.

/// `network.mode`
pub const NETWORK_MODE: &str = "nat";
/// `network.dhcp`
pub const NETWORK_DHCP: &str = "server";
/// `network.lease`
pub const LEASE: &str = "12h";
/// The shortest lease accepted.
pub const LEASE_MIN_SECS: u64 = 60;

/// `libvirt.uri`
pub const LIBVIRT_URI: &str = "qemu:///system";
/// `libvirt.pool_path` is this directory joined with the pool name.
pub const LIBVIRT_POOL_PARENT: &str = "/var/lib/libvirt/images";
/// `libvirt.virt_type`
pub const VIRT_TYPE: &str = "auto";
/// `libvirt.disk_bus`
pub const DISK_BUS: &str = "virtio";

/// `services.name`
pub const SERVICES_NAME: &str = "services";
/// `services.vcpus`, `roles.*.vcpus`, `nodes.*.vcpus`
pub const VCPUS: u32 = 2;
/// `services.memory`
pub const SERVICES_MEMORY: &str = "2GiB";
/// `services.disks`
pub const SERVICES_DISK: &str = "16GiB";
/// `services.data_dir`
pub const DATA_DIR: &str = "/var/lib/bootlab";
/// `services.assets_dir` is this directory under `data_dir`.
pub const ASSETS_SUBDIR: &str = "assets";
/// `services.firewall`
pub const FIREWALL: bool = true;
/// `services.install.method`
pub const INSTALL_METHOD: &str = "appliance";

/// `services.listen.dhcp`
pub const LISTEN_DHCP: &str = "0.0.0.0:67";
/// `services.listen.dns`
pub const LISTEN_DNS: &str = "0.0.0.0:53";
/// `services.listen.tftp`
pub const LISTEN_TFTP: &str = "0.0.0.0:69";
/// `services.listen.http`
pub const LISTEN_HTTP: &str = "0.0.0.0:8080";
/// `services.listen.ntp`
pub const LISTEN_NTP: &str = "0.0.0.0:123";
/// `services.listen.admin`: the admin API (HTTPS, mutual TLS) the host
/// tool pushes the inventory and assets through.
pub const LISTEN_ADMIN: &str = "0.0.0.0:8443";

/// `dns.records[].ttl`, and the TTL of derived A and PTR records.
pub const TTL: u32 = 300;

/// `profiles.*.loader`
pub const LOADER: &str = "ipxe";

/// `nodes.*.firmware` when neither the node nor its role sets it.
pub const FIRMWARE: &str = "bios";
/// `nodes.*.memory` when neither the node nor its role sets it.
pub const NODE_MEMORY: &str = "4GiB";
/// `nodes.*.disks` when neither the node nor its role sets them.
pub const NODE_DISK: &str = "32GiB";
/// `nodes.*.drain`, `roles.*.drain`
pub const DRAIN: bool = false;

/// `ntp.enable`
pub const NTP_ENABLE: bool = true;
/// `ntp.local_stratum`
pub const NTP_LOCAL_STRATUM: u8 = 10;
/// `ntp.require_sync`
pub const NTP_REQUIRE_SYNC: bool = false;

/// `balancers[].algorithm`
pub const LB_ALGORITHM: &str = "roundrobin";
/// `balancers[].check.kind`
pub const LB_CHECK_KIND: &str = "tcp";
/// `balancers[].check.path` (https checks)
pub const LB_CHECK_PATH: &str = "/";
/// `balancers[].check.status` (https checks)
pub const LB_CHECK_STATUS: u16 = 200;
/// `balancers[].interval`
pub const LB_INTERVAL: &str = "5s";
/// `balancers[].rise`
pub const LB_RISE: u32 = 2;
/// `balancers[].fall`
pub const LB_FALL: u32 = 3;

/// The reference inventory users read for every key.
pub const REFERENCE: &str = "config/okd-lab.toml and docs/inventory.md";
