//! `[libvirt]` and `[services]`: the host tool's settings and the services VM.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use ipnet::Ipv4Net;

use super::{Checker, Taken, socket_addr, valid_ifname};
use crate::defaults;
use crate::diag::FieldPath;
use crate::model::*;
use crate::values::MacAddr;
use crate::wire;

/// `[services]` as far as it validated.
pub(crate) struct ServicesDraft {
    pub name: String,
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<MacAddr>,
    /// True when the MAC was derived from the address.
    pub mac_derived: bool,
    pub interface: Option<String>,
    pub vcpus: u32,
    pub memory: Option<u64>,
    pub disks: Option<Vec<u64>>,
    pub listen: Listen,
    pub data_dir: PathBuf,
    pub assets_dir: PathBuf,
    pub firewall: bool,
    pub uplink: Option<Uplink>,
    pub ssh_authorized_keys: Vec<String>,
    pub install: Option<InstallMethod>,
}

impl ServicesDraft {
    /// The model, once every required value validated.
    pub(crate) fn finish(self, ip: Ipv4Addr, mac: MacAddr) -> Services {
        Services {
            name: self.name,
            ip,
            mac,
            interface: self.interface,
            vcpus: self.vcpus,
            memory: self.memory.unwrap_or_default(),
            disks: self.disks.unwrap_or_default(),
            listen: self.listen,
            data_dir: self.data_dir,
            assets_dir: self.assets_dir,
            firewall: self.firewall,
            uplink: self.uplink,
            ssh_authorized_keys: self.ssh_authorized_keys,
            install: self.install.unwrap_or(InstallMethod::Appliance),
        }
    }
}

/// `[libvirt]`
pub(crate) fn libvirt(c: &mut Checker<'_>, lv: &wire::LibvirtSection, lab: &Lab) -> Libvirt {
    let p = FieldPath::of;
    let pool_name = lv.pool.clone().unwrap_or_else(|| lab.name.clone());
    let virt_type = c.one_of(
        &p("libvirt.virt_type"),
        lv.virt_type.as_deref().unwrap_or(defaults::VIRT_TYPE),
        &[
            ("auto", VirtType::Auto),
            ("kvm", VirtType::Kvm),
            ("qemu", VirtType::Qemu),
        ],
    );
    let disk_bus = c.one_of(
        &p("libvirt.disk_bus"),
        lv.disk_bus.as_deref().unwrap_or(defaults::DISK_BUS),
        &[
            ("virtio", DiskBus::Virtio),
            ("scsi", DiskBus::Scsi),
            ("sata", DiskBus::Sata),
        ],
    );
    if let Some(uri) = &lv.uri {
        if !uri.contains(":/") {
            c.err(
                &p("libvirt.uri"),
                format!("{uri:?} is not a libvirt URI"),
                "write e.g. \"qemu:///system\" or \"qemu+ssh://host/system\"",
            );
        }
    }
    let pool_path = lv
        .pool_path
        .clone()
        .unwrap_or_else(|| format!("{}/{pool_name}", defaults::LIBVIRT_POOL_PARENT));
    if !pool_path.starts_with('/') {
        c.err(
            &p("libvirt.pool_path"),
            format!("{pool_path:?} is not an absolute path"),
            "write an absolute directory such as /var/lib/libvirt/images/okd",
        );
    }
    let assets_source = lv.assets_source.as_deref().map(|s| {
        if s.trim().is_empty() {
            c.err(
                &p("libvirt.assets_source"),
                "assets_source is empty",
                "name the host directory holding the boot assets, or remove the key",
            );
        }
        c.dir(s)
    });
    Libvirt {
        uri: lv
            .uri
            .clone()
            .unwrap_or_else(|| defaults::LIBVIRT_URI.into()),
        pool: pool_name,
        pool_path: PathBuf::from(pool_path),
        vm_prefix: lv
            .vm_prefix
            .clone()
            .unwrap_or_else(|| format!("{}-", lab.name)),
        virt_type: virt_type.unwrap_or(VirtType::Auto),
        disk_bus: disk_bus.unwrap_or(DiskBus::Virtio),
        assets_source,
    }
}

/// `[services]`
pub(crate) fn services(
    c: &mut Checker<'_>,
    s: &wire::ServicesSection,
    cidr: Option<Ipv4Net>,
) -> ServicesDraft {
    let sp = FieldPath::of("services");
    let name = c.hostname(&sp.key("name"), &s.name);
    let ip = c.host_ip(&sp.key("ip"), &s.ip, cidr);
    let mac = match (&s.mac, ip) {
        (Some(m), _) => c.mac(&sp.key("mac"), m),
        (None, Some(ip)) => Some(MacAddr::derived_from(ip)),
        (None, None) => None,
    };
    if let Some(ifname) = &s.interface {
        if !valid_ifname(ifname) {
            c.err(
                &sp.key("interface"),
                format!("{ifname:?} is not a valid interface name"),
                "name an interface of the services node, e.g. \"eth0\", or omit it to find the NIC by services.mac",
            );
        }
    }
    let vcpus = s.vcpus.unwrap_or(defaults::VCPUS);
    if vcpus == 0 {
        c.err(
            &sp.key("vcpus"),
            "vcpus must be at least 1",
            &format!("set vcpus = {}", defaults::VCPUS),
        );
    }
    let memory = c.size(
        &sp.key("memory"),
        s.memory.as_deref().unwrap_or(defaults::SERVICES_MEMORY),
    );
    let disks = match &s.disks {
        Some(d) => c.sizes(&sp.key("disks"), d),
        None => c.sizes(&sp.key("disks"), &[defaults::SERVICES_DISK.to_owned()]),
    };
    let mut listen_addr = |key: &str, v: &Option<String>, default: &str| {
        let port = default
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let raw = v.as_deref().unwrap_or(default);
        socket_addr(raw, port).unwrap_or_else(|| {
            c.err(
                &sp.key("listen").key(key),
                format!("{raw:?} is not a socket address"),
                &format!("write an address and port, e.g. \"{default}\""),
            );
            SocketAddr::from(([0, 0, 0, 0], port))
        })
    };
    let l = &s.listen;
    let listen = Listen {
        dhcp: listen_addr("dhcp", &l.dhcp, defaults::LISTEN_DHCP),
        dns: listen_addr("dns", &l.dns, defaults::LISTEN_DNS),
        tftp: listen_addr("tftp", &l.tftp, defaults::LISTEN_TFTP),
        http: listen_addr("http", &l.http, defaults::LISTEN_HTTP),
        ntp: listen_addr("ntp", &l.ntp, defaults::LISTEN_NTP),
        admin: listen_addr("admin", &l.admin, defaults::LISTEN_ADMIN),
    };
    let data_dir = c.dir(s.data_dir.as_deref().unwrap_or(defaults::DATA_DIR));
    let assets_dir = match &s.assets_dir {
        Some(a) => c.dir(a),
        None => data_dir.join(defaults::ASSETS_SUBDIR),
    };
    let uplink = s.uplink.as_ref().and_then(|u| {
        if u.network.trim().is_empty() {
            c.err(
                &sp.key("uplink").key("network"),
                "the uplink network name is empty",
                "name the libvirt network that reaches the outside, e.g. \"default\"",
            );
        }
        c.mac(&sp.key("uplink").key("mac"), &u.mac)
            .map(|mac| Uplink {
                network: u.network.clone(),
                mac,
            })
    });
    for (i, key) in s.ssh_authorized_keys.iter().enumerate() {
        let kind = key.split_whitespace().next().unwrap_or_default();
        let known = kind.starts_with("ssh-")
            || kind.starts_with("ecdsa-")
            || kind.starts_with("sk-")
            || kind.starts_with("rsa-");
        if !known || key.split_whitespace().count() < 2 {
            c.err(
                &sp.key("ssh_authorized_keys").idx(i),
                "this is not an OpenSSH public key",
                "paste a line from ~/.ssh/id_ed25519.pub: \"ssh-ed25519 AAAA... user@host\"",
            );
        }
    }
    let install = install(c, &s.install, &sp.key("install"));
    ServicesDraft {
        name,
        ip,
        mac,
        mac_derived: s.mac.is_none(),
        interface: s.interface.clone(),
        vcpus,
        memory,
        disks,
        listen,
        data_dir,
        assets_dir,
        firewall: s.firewall,
        uplink,
        ssh_authorized_keys: s.ssh_authorized_keys.clone(),
        install,
    }
}

fn install(
    c: &mut Checker<'_>,
    w: &wire::InstallSection,
    ip_: &FieldPath,
) -> Option<InstallMethod> {
    let method = match w.method.as_str() {
        "appliance" => Some(InstallMethod::Appliance),
        "kickstart" => match &w.iso {
            Some(iso) => Some(InstallMethod::Kickstart {
                iso: PathBuf::from(iso),
            }),
            None => {
                c.err(
                    &ip_.key("method"),
                    "method = \"kickstart\" needs iso",
                    "set iso = \"/path/to/installer.iso\" in [services.install]",
                );
                None
            }
        },
        "cloud-image" => match &w.image {
            Some(image) => Some(InstallMethod::CloudImage {
                image: PathBuf::from(image),
            }),
            None => {
                c.err(
                    &ip_.key("method"),
                    "method = \"cloud-image\" needs image",
                    "set image = \"/path/to/cloud.qcow2\" in [services.install]",
                );
                None
            }
        },
        other => {
            let known = ["appliance", "kickstart", "cloud-image"];
            let help = match crate::diag::did_you_mean(other, known) {
                Some(m) => format!("did you mean {m:?}? (one of: {})", known.join(", ")),
                None => format!("use one of: {}", known.join(", ")),
            };
            c.err(
                &ip_.key("method"),
                format!("unknown install method {other:?}"),
                &help,
            );
            None
        }
    };
    if w.iso.is_some() && w.method != "kickstart" {
        c.err(
            &ip_.key("iso"),
            "iso is only used with method = \"kickstart\"",
            "remove iso, or set method = \"kickstart\"",
        );
    }
    if w.image.is_some() && w.method != "cloud-image" {
        c.err(
            &ip_.key("image"),
            "image is only used with method = \"cloud-image\"",
            "remove image, or set method = \"cloud-image\"",
        );
    }
    method
}

/// Registers the services VM's name, MACs and address as taken.
pub(crate) fn take_services(c: &mut Checker<'_>, taken: &mut Taken, svc: &ServicesDraft) {
    let sp = FieldPath::of("services");
    taken.names.insert(svc.name.clone(), sp.key("name"));
    if let Some(m) = svc.mac {
        taken.macs.insert(m, (sp.key("mac"), svc.mac_derived));
    }
    if let Some(u) = &svc.uplink {
        if let Some((first, _)) = taken.macs.get(&u.mac) {
            let first = first.clone();
            c.err(
                &sp.key("uplink").key("mac"),
                format!("MAC {} is already used by {first}", u.mac),
                "give the uplink NIC its own MAC",
            );
        } else {
            taken
                .macs
                .insert(u.mac, (sp.key("uplink").key("mac"), false));
        }
    }
    if let Some(ip) = svc.ip {
        taken.ips.insert(ip, sp.key("ip"));
    }
}
