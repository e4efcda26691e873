//! Field-level differences between the definition bootlab asks for and the
//! one libvirt has: `plan` says *what* changes inside a domain or network
//! (memory 8 -> 16 GiB, a new NIC, another firmware, the network's bridge),
//! not only that its digest differs.
//!
//! Both sides are read with the same quick-xml scan, so libvirt's expanded
//! XML (addresses, controllers, UUIDs, machine versions it fills in) and
//! bootlab's own compare only on the fields bootlab writes: each becomes a
//! `(field, value)` pair with the value already in words (`8 GiB`,
//! `vol okd-master-0-disk0.qcow2 in pool okd, virtio`).
//!
//! # Layout
//! - [`domain_fields`], [`network_fields`]: XML -> [`Fields`].
//! - [`diff`]: two [`Fields`] -> [`FieldChange`]s, in the wanted order.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde::Serialize;

use crate::libvirt::human;

/// The fields bootlab sets on an object, in a stable order, values in words.
pub type Fields = Vec<(String, String)>;

/// One field that differs: `from` is absent for something added, `to` for
/// something removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// Which field (`memory`, `vcpus`, `firmware`, `nic 52:54:00:..`,
    /// `disk vdb`, `bridge`, `ip`...).
    pub field: String,
    /// Its value now (libvirt's).
    pub from: Option<String>,
    /// Its value as the inventory asks.
    pub to: Option<String>,
}

impl std::fmt::Display for FieldChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.from, &self.to) {
            (Some(a), Some(b)) => write!(f, "{}: {a} -> {b}", self.field),
            (None, Some(b)) => write!(f, "+ {}: {b}", self.field),
            (Some(a), None) => write!(f, "- {}: {a}", self.field),
            (None, None) => write!(f, "{}", self.field),
        }
    }
}

/// The changes from `have` to `want`: fields in `want`'s order, then the
/// ones only `have` has (removed).
pub fn diff(want: &Fields, have: &Fields) -> Vec<FieldChange> {
    let get = |fs: &Fields, k: &str| fs.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
    let mut out = Vec::new();
    for (k, v) in want {
        let old = get(have, k);
        if old.as_deref() != Some(v.as_str()) {
            out.push(FieldChange {
                field: k.clone(),
                from: old,
                to: Some(v.clone()),
            });
        }
    }
    for (k, v) in have {
        if get(want, k).is_none() {
            out.push(FieldChange {
                field: k.clone(),
                from: Some(v.clone()),
                to: None,
            });
        }
    }
    out
}

/// One element as the scan saw it.
#[derive(Debug, Default)]
struct El {
    /// Element names from the root, `/`-joined (`domain/devices/disk`).
    path: String,
    attrs: Vec<(String, String)>,
    text: String,
}

impl El {
    fn attr(&self, k: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }
}

fn attrs_of(e: &BytesStart<'_>) -> Vec<(String, String)> {
    e.attributes()
        .flatten()
        .filter_map(|a| {
            let v = a
                .normalized_value(quick_xml::XmlVersion::default())
                .ok()?
                .into_owned();
            Some((a.key.as_ref().to_string(), v))
        })
        .collect()
}

/// Every element with its path, attributes and text, in document order of
/// their ends (children before parents). Malformed XML ends the scan: what
/// was read so far is compared, which at worst shows a field as changed.
fn elements(xml: &str) -> Vec<El> {
    let mut r = Reader::from_str(xml);
    let mut stack: Vec<El> = Vec::new();
    let mut out = Vec::new();
    let path_with = |stack: &[El], name: &str| match stack.last() {
        Some(p) => format!("{}/{name}", p.path),
        None => name.to_string(),
    };
    loop {
        match r.read_event() {
            Ok(Event::Start(e)) => {
                let el = El {
                    path: path_with(&stack, e.name().as_ref()),
                    attrs: attrs_of(&e),
                    text: String::new(),
                };
                stack.push(el);
            }
            Ok(Event::Empty(e)) => out.push(El {
                path: path_with(&stack, e.name().as_ref()),
                attrs: attrs_of(&e),
                text: String::new(),
            }),
            Ok(Event::Text(t)) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                }
            }
            Ok(Event::GeneralRef(g)) => {
                if let (Some(top), Ok(Some(c))) = (stack.last_mut(), g.resolve_char_ref()) {
                    top.text.push(c);
                } else if let Some(top) = stack.last_mut() {
                    top.text.push_str(match &*g {
                        "amp" => "&",
                        "lt" => "<",
                        "gt" => ">",
                        "quot" => "\"",
                        "apos" => "'",
                        _ => "",
                    });
                }
            }
            Ok(Event::End(_)) => {
                if let Some(el) = stack.pop() {
                    out.push(el);
                }
            }
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => {}
        }
    }
    out
}

/// Bytes from libvirt's `<memory unit=..>N</memory>` (KiB when no unit).
fn memory_bytes(unit: Option<&str>, n: u64) -> u64 {
    let mult: u64 = match unit.unwrap_or("KiB") {
        "b" | "bytes" => 1,
        "KB" => 1000,
        "k" | "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "M" | "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "G" | "GiB" => 1 << 30,
        "TB" => 1_000_000_000_000,
        "T" | "TiB" => 1 << 40,
        _ => 1 << 10,
    };
    n.saturating_mul(mult)
}

/// The last path component (appliance volumes live in the pool directory).
fn file_name(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// The fields bootlab sets in a domain: type, memory, vCPUs, firmware,
/// direct kernel boot, CPU mode, disks by target, NICs by MAC, the serial
/// log file.
pub fn domain_fields(xml: &str) -> Fields {
    let els = elements(xml);
    let mut f: Fields = Vec::new();
    let mut push = |k: &str, v: String| f.push((k.to_string(), v));
    let find = |p: &str| els.iter().find(|e| e.path == p);
    if let Some(d) = find("domain") {
        push("type", d.attr("type").unwrap_or("?").to_string());
    }
    if let Some(m) = find("domain/memory") {
        let n: u64 = m.text.trim().parse().unwrap_or(0);
        push("memory", human(memory_bytes(m.attr("unit"), n)));
    }
    if let Some(v) = find("domain/vcpu") {
        push("vcpus", v.text.trim().to_string());
    }
    if let Some(os) = find("domain/os") {
        let fw = if os.attr("firmware") == Some("efi")
            || els
                .iter()
                .any(|e| e.path == "domain/os/loader" && e.attr("type") == Some("pflash"))
        {
            "uefi"
        } else {
            "bios"
        };
        push("firmware", fw.to_string());
    }
    for (k, p) in [
        ("kernel", "domain/os/kernel"),
        ("initrd", "domain/os/initrd"),
    ] {
        if let Some(e) = find(p) {
            push(k, file_name(e.text.trim()).to_string());
        }
    }
    if let Some(e) = find("domain/os/cmdline") {
        push("cmdline", e.text.trim().to_string());
    }
    // bootlab asks for host-passthrough under KVM and for nothing under
    // TCG, where libvirt writes `<cpu mode='custom'>` itself.
    if let Some(c) = find("domain/cpu")
        .and_then(|c| c.attr("mode"))
        .filter(|m| *m != "custom")
    {
        push("cpu", c.to_string());
    }
    // Disks and NICs: the element ends after its children, so children are
    // gathered by position (they precede their parent in `els`).
    let mut pending: Vec<&El> = Vec::new();
    for e in &els {
        if e.path.starts_with("domain/devices/disk/")
            || e.path.starts_with("domain/devices/interface/")
            || e.path.starts_with("domain/devices/serial/")
        {
            pending.push(e);
            continue;
        }
        let child = |name: &str| {
            pending
                .iter()
                .find(|c| c.path.ends_with(&format!("/{name}")))
                .copied()
        };
        match e.path.as_str() {
            "domain/devices/disk" => {
                let dev = child("target")
                    .and_then(|t| t.attr("dev"))
                    .unwrap_or("?")
                    .to_string();
                let bus = child("target").and_then(|t| t.attr("bus")).unwrap_or("?");
                let src = match child("source") {
                    Some(s) => match (s.attr("pool"), s.attr("volume"), s.attr("file")) {
                        (Some(p), Some(v), _) => format!("volume {v} in pool {p}"),
                        (_, _, Some(file)) => format!("file {file}"),
                        _ => "?".into(),
                    },
                    None => "no source".into(),
                };
                f.push((format!("disk {dev}"), format!("{src}, {bus}")));
                pending.clear();
            }
            "domain/devices/interface" => {
                let mac = child("mac")
                    .and_then(|m| m.attr("address"))
                    .unwrap_or("?")
                    .to_ascii_lowercase();
                let net = child("source")
                    .and_then(|s| s.attr("network").or(s.attr("bridge")))
                    .unwrap_or("?");
                let model = child("model").and_then(|m| m.attr("type")).unwrap_or("?");
                f.push((format!("nic {mac}"), format!("network {net}, {model}")));
                pending.clear();
            }
            "domain/devices/serial" => {
                if let Some(log) = child("log").and_then(|l| l.attr("file")) {
                    f.push(("serial log".into(), log.to_string()));
                }
                pending.clear();
            }
            _ => {}
        }
    }
    f
}

/// The fields bootlab sets in a network: forward mode, bridge, domain,
/// DNS, the host's address.
pub fn network_fields(xml: &str) -> Fields {
    let els = elements(xml);
    let find = |p: &str| els.iter().find(|e| e.path == p);
    let mut f: Fields = Vec::new();
    let mode = find("network/forward")
        .map(|e| e.attr("mode").unwrap_or("nat").to_string())
        .unwrap_or_else(|| "none (isolated)".into());
    f.push(("forward".into(), mode));
    if let Some(b) = find("network/bridge") {
        f.push((
            "bridge".into(),
            b.attr("name").unwrap_or("(libvirt picks)").to_string(),
        ));
    }
    if let Some(d) = find("network/domain").and_then(|d| d.attr("name")) {
        f.push(("domain".into(), d.to_string()));
    }
    if let Some(d) = find("network/dns") {
        f.push((
            "dns".into(),
            if d.attr("enable") == Some("no") {
                "off".into()
            } else {
                "on".into()
            },
        ));
    }
    for ip in els.iter().filter(|e| e.path == "network/ip") {
        let addr = ip.attr("address").unwrap_or("?");
        let prefix = match (ip.attr("prefix"), ip.attr("netmask")) {
            (Some(p), _) => p.to_string(),
            (None, Some(m)) => m
                .parse::<std::net::Ipv4Addr>()
                .map(|m| u32::from(m).count_ones().to_string())
                .unwrap_or_else(|_| m.to_string()),
            (None, None) => "?".into(),
        };
        f.push(("ip".into(), format!("{addr}/{prefix}")));
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIBVIRT_DOMAIN: &str = r#"<domain type='kvm'>
  <name>okd-master-0</name>
  <uuid>0b5c7a6e-1111-2222-3333-444455556666</uuid>
  <metadata><bootlab:object xmlns:bootlab="https://bootlab.invalid/xmlns/libvirt/1" lab="okd" digest="0123"/></metadata>
  <memory unit='KiB'>8388608</memory>
  <currentMemory unit='KiB'>8388608</currentMemory>
  <vcpu placement='static'>4</vcpu>
  <os firmware='efi'>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <firmware><feature enabled='no' name='secure-boot'/></firmware>
  </os>
  <cpu mode='host-passthrough' check='none' migratable='on'/>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source pool='okd' volume='okd-master-0-disk0.qcow2'/>
      <target dev='vda' bus='virtio'/>
      <boot order='2'/>
      <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>
    </disk>
    <controller type='usb' index='0' model='qemu-xhci'/>
    <interface type='network'>
      <mac address='F8:75:A4:AC:03:00'/>
      <source network='okd'/>
      <model type='virtio'/>
      <boot order='1'/>
    </interface>
    <serial type='pty'>
      <log file='/var/log/libvirt/qemu/okd-master-0-serial0.log' append='off'/>
      <target type='isa-serial' port='0'><model name='isa-serial'/></target>
    </serial>
  </devices>
</domain>"#;

    fn plan() -> crate::xml::DomainPlan {
        crate::xml::DomainPlan {
            lab: "okd".into(),
            name: "okd-master-0".into(),
            virt_type: bootlab_inventory::VirtType::Kvm,
            vcpus: 4,
            memory: 8 << 30,
            firmware: bootlab_inventory::Firmware::Uefi,
            disks: vec![crate::xml::DiskPlan {
                volume: "okd-master-0-disk0.qcow2".into(),
                capacity: 120 << 30,
                format: crate::xml::VolFormat::Qcow2,
                readonly: false,
                serial: None,
            }],
            pool: "okd".into(),
            disk_bus: bootlab_inventory::DiskBus::Virtio,
            nics: vec![crate::xml::NicPlan {
                network: "okd".into(),
                mac: "f8:75:a4:ac:03:00".into(),
            }],
            direct_boot: None,
            network_boot: true,
            serial_log: "/var/log/libvirt/qemu/okd-master-0-serial0.log".into(),
            cdrom: None,
            install_phase: false,
        }
    }

    #[test]
    fn libvirts_expanded_xml_equals_what_bootlab_wrote() {
        let want = domain_fields(&crate::xml::domain_xml(&plan()));
        let have = domain_fields(LIBVIRT_DOMAIN);
        assert_eq!(diff(&want, &have), vec![], "{want:?}\n{have:?}");
        assert!(want.contains(&("memory".into(), "8 GiB".into())));
        assert!(want.contains(&(
            "disk vda".into(),
            "volume okd-master-0-disk0.qcow2 in pool okd, virtio".into()
        )));
    }

    #[test]
    fn memory_vcpus_firmware_and_a_new_nic() {
        let mut p = plan();
        p.memory = 16 << 30;
        p.vcpus = 8;
        p.firmware = bootlab_inventory::Firmware::Bios;
        p.nics.push(crate::xml::NicPlan {
            network: "default".into(),
            mac: "52:54:00:00:00:02".into(),
        });
        p.disks.push(crate::xml::DiskPlan {
            volume: "okd-master-0-disk1.qcow2".into(),
            capacity: 1 << 30,
            format: crate::xml::VolFormat::Qcow2,
            readonly: false,
            serial: None,
        });
        let changes = diff(
            &domain_fields(&crate::xml::domain_xml(&p)),
            &domain_fields(LIBVIRT_DOMAIN),
        );
        let lines: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "memory: 8 GiB -> 16 GiB",
                "vcpus: 4 -> 8",
                "firmware: uefi -> bios",
                "+ disk vdb: volume okd-master-0-disk1.qcow2 in pool okd, virtio",
                "+ nic 52:54:00:00:00:02: network default, virtio",
            ]
        );
        // and back: removed things are listed as removed
        let back = diff(
            &domain_fields(LIBVIRT_DOMAIN),
            &domain_fields(&crate::xml::domain_xml(&p)),
        );
        assert!(
            back.iter()
                .any(|c| c.to_string() == "- nic 52:54:00:00:00:02: network default, virtio")
        );
    }

    #[test]
    fn libvirts_own_cpu_under_tcg_is_not_a_change() {
        let mut p = plan();
        p.virt_type = bootlab_inventory::VirtType::Qemu;
        let live = LIBVIRT_DOMAIN
            .replace("type='kvm'", "type='qemu'")
            .replace(
                "<cpu mode='host-passthrough' check='none' migratable='on'/>",
                "<cpu mode='custom' match='exact' check='none'><model fallback='forbid'>qemu64</model></cpu>",
            );
        assert_eq!(
            diff(
                &domain_fields(&crate::xml::domain_xml(&p)),
                &domain_fields(&live)
            ),
            vec![]
        );
    }

    #[test]
    fn appliance_kernel_shows_file_names() {
        let mut p = plan();
        p.direct_boot = Some(crate::xml::DirectBoot {
            kernel: "/pool/okd-services-vmlinuz-aaaa".into(),
            initrd: "/pool/okd-services-initrd-bbbb.img".into(),
            cmdline: "console=ttyS0".into(),
        });
        let mut q = p.clone();
        q.direct_boot.as_mut().unwrap().initrd = "/pool/okd-services-initrd-cccc.img".into();
        let c = diff(
            &domain_fields(&crate::xml::domain_xml(&q)),
            &domain_fields(&crate::xml::domain_xml(&p)),
        );
        assert_eq!(
            c.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["initrd: okd-services-initrd-bbbb.img -> okd-services-initrd-cccc.img"]
        );
    }

    #[test]
    fn network_fields_from_libvirt_and_from_bootlab() {
        let live = r#"<network connections='2'>
  <name>okd</name>
  <uuid>8f0c0000-0000-0000-0000-000000000000</uuid>
  <forward mode='nat'><nat><port start='1024' end='65535'/></nat></forward>
  <bridge name='virbr-okd' stp='on' delay='0'/>
  <mac address='52:54:00:11:22:33'/>
  <domain name='okd.lab.test' localOnly='yes'/>
  <dns enable='no'/>
  <ip address='192.168.200.1' netmask='255.255.255.0'/>
</network>"#;
        let want = r#"<network><name>okd</name><bridge name='virbr-okd2' stp='on' delay='0'/>
  <domain name='okd.lab.test' localOnly='yes'/><dns enable='no'/>
  <ip address='192.168.200.1' prefix='24'/></network>"#;
        let c: Vec<String> = diff(&network_fields(want), &network_fields(live))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            c,
            [
                "forward: nat -> none (isolated)",
                "bridge: virbr-okd -> virbr-okd2"
            ]
        );
    }

    #[test]
    fn malformed_xml_gives_what_was_read() {
        assert_eq!(
            domain_fields("<domain type='kvm'><memory unit='KiB'>1024</mem"),
            vec![]
        );
        assert_eq!(
            network_fields(""),
            vec![("forward".to_string(), "none (isolated)".to_string())]
        );
    }
}
