//! libvirt XML for the lab's objects, written with a real XML writer
//! (quick-xml), never by string concatenation.
//!
//! # Layout
//! - [`network_xml`]: the lab network per `network.mode`.
//! - [`pool_xml`], [`volume_xml`]: the dir storage pool and its volumes.
//! - [`domain_xml`]: a VM from a [`DomainPlan`] (firmware, disks, NICs,
//!   serial console with a log file, boot order network then disk, optional
//!   direct kernel boot for the appliance).
//!
//! Domains and networks carry a `<metadata>` element in bootlab's namespace
//! with a digest of what was asked for: `plan` compares digests instead of
//! libvirt's expanded XML, and `down` only removes objects marked as ours.

use std::io;

use bootlab_inventory::{DiskBus, Firmware, Inventory, NetworkMode, VirtType};
use quick_xml::Writer;
use quick_xml::events::BytesText;

/// XML namespace of bootlab's `<metadata>` element.
pub const METADATA_NS: &str = "https://bootlab.invalid/xmlns/libvirt/1";

/// Writes XML into a string; writing into a `Vec` cannot fail, so the
/// closure's `io::Result` is only there because quick-xml's API wants it.
fn write_xml(f: impl FnOnce(&mut Writer<Vec<u8>>) -> io::Result<()>) -> String {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    f(&mut w).expect("writing XML into a Vec cannot fail");
    let mut s = String::from_utf8(w.into_inner()).expect("quick-xml writes UTF-8");
    s.push('\n');
    s
}

/// `<tag>text</tag>`
fn text_el(w: &mut Writer<Vec<u8>>, tag: &str, text: &str) -> io::Result<()> {
    w.create_element(tag)
        .write_text_content(BytesText::new(text))?;
    Ok(())
}

/// A short stable digest (FNV-1a 64, hex) of the XML asked for, stored in
/// the object's metadata so `plan` can tell "as asked" from "changed".
pub fn digest(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Writes `<metadata><bootlab:object xmlns:bootlab=.. lab=.. digest=../></metadata>`.
fn metadata(w: &mut Writer<Vec<u8>>, lab: &str, digest: &str) -> io::Result<()> {
    w.create_element("metadata").write_inner_content(|w| {
        w.create_element("bootlab:object")
            .with_attribute(("xmlns:bootlab", METADATA_NS))
            .with_attribute(("lab", lab))
            .with_attribute(("digest", digest))
            .write_empty()?;
        Ok(())
    })?;
    Ok(())
}

/// Produces the final XML: the body is written once without metadata to
/// compute its digest, then again with the metadata element inserted.
fn with_digest(
    lab: &str,
    body: impl Fn(&mut Writer<Vec<u8>>, Option<&str>) -> io::Result<()>,
) -> String {
    let bare = write_xml(|w| body(w, None));
    let d = digest(&bare);
    write_xml(|w| {
        let _ = lab;
        body(w, Some(&d))
    })
}

/// The lab network (`network.mode`): nat or isolated with bridge name,
/// domain, `host_ip`, `<dns enable='no'/>` and no `<dhcp>` (bootlabd is the
/// only DHCP server there); bridge mode attaches to an existing host bridge.
pub fn network_xml(inv: &Inventory) -> String {
    let net = &inv.network();
    let lab = inv.lab().name.as_str();
    with_digest(lab, |w, d| {
        w.create_element("network").write_inner_content(|w| {
            text_el(w, "name", &net.libvirt_name)?;
            if let Some(d) = d {
                metadata(w, lab, d)?;
            }
            match net.mode {
                NetworkMode::Nat => {
                    w.create_element("forward")
                        .with_attribute(("mode", "nat"))
                        .write_empty()?;
                }
                NetworkMode::Isolated => {}
                NetworkMode::Bridge => {
                    w.create_element("forward")
                        .with_attribute(("mode", "bridge"))
                        .write_empty()?;
                    w.create_element("bridge")
                        .with_attribute(("name", net.bridge.as_str()))
                        .write_empty()?;
                    return Ok(());
                }
            }
            w.create_element("bridge")
                .with_attribute(("name", net.bridge.as_str()))
                .with_attribute(("stp", "on"))
                .with_attribute(("delay", "0"))
                .write_empty()?;
            w.create_element("domain")
                .with_attribute(("name", inv.zone()))
                .with_attribute(("localOnly", "yes"))
                .write_empty()?;
            w.create_element("dns")
                .with_attribute(("enable", "no"))
                .write_empty()?;
            let host_ip = match net.mode {
                NetworkMode::Nat => Some(net.host_ip.unwrap_or(net.gateway)),
                _ => net.host_ip,
            };
            if let Some(ip) = host_ip {
                w.create_element("ip")
                    .with_attribute(("address", ip.to_string().as_str()))
                    .with_attribute(("prefix", net.cidr.prefix_len().to_string().as_str()))
                    .write_empty()?;
            }
            Ok(())
        })?;
        Ok(())
    })
}

/// The dir storage pool holding every volume of the lab.
pub fn pool_xml(inv: &Inventory) -> String {
    write_xml(|w| {
        w.create_element("pool")
            .with_attribute(("type", "dir"))
            .write_inner_content(|w| {
                text_el(w, "name", &inv.libvirt().pool)?;
                w.create_element("target").write_inner_content(|w| {
                    text_el(w, "path", &inv.libvirt().pool_path.to_string_lossy())
                })?;
                Ok(())
            })?;
        Ok(())
    })
}

/// Volume format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolFormat {
    /// Sparse qcow2 (VM disks).
    Qcow2,
    /// Raw bytes (appliance kernel and initramfs).
    Raw,
}

impl VolFormat {
    /// libvirt's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Qcow2 => "qcow2",
            Self::Raw => "raw",
        }
    }
}

/// A storage volume: `capacity` bytes; qcow2 volumes allocate nothing up front.
pub fn volume_xml(name: &str, capacity: u64, format: VolFormat) -> String {
    write_xml(|w| {
        w.create_element("volume").write_inner_content(|w| {
            text_el(w, "name", name)?;
            w.create_element("capacity")
                .with_attribute(("unit", "bytes"))
                .write_text_content(BytesText::new(&capacity.to_string()))?;
            w.create_element("allocation")
                .with_attribute(("unit", "bytes"))
                .write_text_content(BytesText::new("0"))?;
            w.create_element("target").write_inner_content(|w| {
                w.create_element("format")
                    .with_attribute(("type", format.as_str()))
                    .write_empty()?;
                Ok(())
            })?;
            Ok(())
        })?;
        Ok(())
    })
}

/// A qcow2 volume whose backing store is the qcow2 image at `backing`
/// (a cloud image on the hypervisor), grown to `capacity`.
pub fn overlay_volume_xml(name: &str, capacity: u64, backing: &str) -> String {
    write_xml(|w| {
        w.create_element("volume").write_inner_content(|w| {
            text_el(w, "name", name)?;
            w.create_element("capacity")
                .with_attribute(("unit", "bytes"))
                .write_text_content(BytesText::new(&capacity.to_string()))?;
            w.create_element("target").write_inner_content(|w| {
                w.create_element("format")
                    .with_attribute(("type", "qcow2"))
                    .write_empty()?;
                Ok(())
            })?;
            w.create_element("backingStore").write_inner_content(|w| {
                text_el(w, "path", backing)?;
                w.create_element("format")
                    .with_attribute(("type", "qcow2"))
                    .write_empty()?;
                Ok(())
            })?;
            Ok(())
        })?;
        Ok(())
    })
}

/// One disk of a domain: a volume in the lab pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskPlan {
    /// Volume name.
    pub volume: String,
    /// Capacity in bytes.
    pub capacity: u64,
    /// qcow2 (VM disks) or raw (the install payload).
    pub format: VolFormat,
    /// Attached read-only.
    pub readonly: bool,
    /// The serial the guest sees (`/sys/block/vdX/serial`).
    pub serial: Option<String>,
}

/// One NIC of a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicPlan {
    /// libvirt network.
    pub network: String,
    /// MAC, lowercase with colons.
    pub mac: String,
}

/// Direct kernel boot (the appliance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectBoot {
    /// Kernel file on the hypervisor (a pool volume's path).
    pub kernel: String,
    /// Initramfs file on the hypervisor (a pool volume's path).
    pub initrd: String,
    /// Kernel command line.
    pub cmdline: String,
}

/// Everything a domain's XML is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainPlan {
    /// Lab name (metadata).
    pub lab: String,
    /// Domain name.
    pub name: String,
    /// `kvm` or `qemu` (TCG); `auto` is resolved before.
    pub virt_type: VirtType,
    /// vCPUs.
    pub vcpus: u32,
    /// Memory in bytes.
    pub memory: u64,
    /// SeaBIOS or OVMF.
    pub firmware: Firmware,
    /// Disks, in order.
    pub disks: Vec<DiskPlan>,
    /// Storage pool of the disks.
    pub pool: String,
    /// Disk bus.
    pub disk_bus: DiskBus,
    /// NICs, the first on the lab network.
    pub nics: Vec<NicPlan>,
    /// Direct kernel boot, for the appliance.
    pub direct_boot: Option<DirectBoot>,
    /// Without direct boot: the first NIC boots before the first disk
    /// (nodes PXE-boot), or only the first disk boots (a services VM
    /// installed from a cloud image or a kickstart).
    pub network_boot: bool,
    /// File the serial console is logged to (on the hypervisor).
    pub serial_log: String,
    /// An ISO on the hypervisor attached as a read-only SATA cdrom (the
    /// kickstart method's installer, in its install-time definition).
    pub cdrom: Option<String>,
    /// The install-time definition: a reboot ends the domain like a power
    /// off does (`on_reboot` destroy), so the installer never boots again
    /// and `up` sees it finish.
    pub install_phase: bool,
}

/// Device name of the `i`-th disk on `bus`: vda.. for virtio, sda.. otherwise.
pub fn disk_target(bus: DiskBus, i: usize) -> String {
    let prefix = match bus {
        DiskBus::Virtio => "vd",
        DiskBus::Scsi | DiskBus::Sata => "sd",
    };
    let mut suffix = String::new();
    let mut n = i;
    loop {
        suffix.insert(0, char::from(b'a' + (n % 26) as u8));
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    format!("{prefix}{suffix}")
}

/// A domain: q35 machine, SeaBIOS or OVMF (firmware autoselection, secure
/// boot off), disks on the pool by volume, the inventory MACs, boot order
/// network then disk (or direct kernel boot), a serial console logged to a
/// file.
pub fn domain_xml(p: &DomainPlan) -> String {
    let dtype = match p.virt_type {
        VirtType::Kvm => "kvm",
        VirtType::Qemu | VirtType::Auto => "qemu",
    };
    with_digest(&p.lab, |w, d| {
        w.create_element("domain")
            .with_attribute(("type", dtype))
            .write_inner_content(|w| {
                text_el(w, "name", &p.name)?;
                if let Some(d) = d {
                    metadata(w, &p.lab, d)?;
                }
                w.create_element("memory")
                    .with_attribute(("unit", "KiB"))
                    .write_text_content(BytesText::new(&(p.memory / 1024).to_string()))?;
                text_el(w, "vcpu", &p.vcpus.to_string())?;
                let mut os = w.create_element("os");
                if p.firmware == Firmware::Uefi {
                    os = os.with_attribute(("firmware", "efi"));
                }
                os.write_inner_content(|w| {
                    w.create_element("type")
                        .with_attribute(("arch", "x86_64"))
                        .with_attribute(("machine", "q35"))
                        .write_text_content(BytesText::new("hvm"))?;
                    if p.firmware == Firmware::Uefi {
                        w.create_element("firmware").write_inner_content(|w| {
                            w.create_element("feature")
                                .with_attribute(("enabled", "no"))
                                .with_attribute(("name", "secure-boot"))
                                .write_empty()?;
                            Ok(())
                        })?;
                    }
                    if let Some(b) = &p.direct_boot {
                        text_el(w, "kernel", &b.kernel)?;
                        text_el(w, "initrd", &b.initrd)?;
                        text_el(w, "cmdline", &b.cmdline)?;
                    }
                    Ok(())
                })?;
                w.create_element("features").write_inner_content(|w| {
                    w.create_element("acpi").write_empty()?;
                    w.create_element("apic").write_empty()?;
                    Ok(())
                })?;
                if p.virt_type == VirtType::Kvm {
                    w.create_element("cpu")
                        .with_attribute(("mode", "host-passthrough"))
                        .write_empty()?;
                }
                text_el(w, "on_poweroff", "destroy")?;
                text_el(
                    w,
                    "on_reboot",
                    if p.install_phase {
                        "destroy"
                    } else {
                        "restart"
                    },
                )?;
                text_el(w, "on_crash", "destroy")?;
                w.create_element("devices")
                    .write_inner_content(|w| devices(w, p))?;
                Ok(())
            })?;
        Ok(())
    })
}

fn devices(w: &mut Writer<Vec<u8>>, p: &DomainPlan) -> io::Result<()> {
    // With direct kernel boot there is no firmware boot order at all.
    let boot_orders = p.direct_boot.is_none();
    let disk_order = if p.network_boot {
        p.nics.len().max(1) + 1
    } else {
        1
    };
    if p.disk_bus == DiskBus::Scsi && !p.disks.is_empty() {
        w.create_element("controller")
            .with_attribute(("type", "scsi"))
            .with_attribute(("index", "0"))
            .with_attribute(("model", "virtio-scsi"))
            .write_empty()?;
    }
    for (i, disk) in p.disks.iter().enumerate() {
        w.create_element("disk")
            .with_attribute(("type", "volume"))
            .with_attribute(("device", "disk"))
            .write_inner_content(|w| {
                w.create_element("driver")
                    .with_attribute(("name", "qemu"))
                    .with_attribute(("type", disk.format.as_str()))
                    .write_empty()?;
                w.create_element("source")
                    .with_attribute(("pool", p.pool.as_str()))
                    .with_attribute(("volume", disk.volume.as_str()))
                    .write_empty()?;
                w.create_element("target")
                    .with_attribute(("dev", disk_target(p.disk_bus, i).as_str()))
                    .with_attribute(("bus", p.disk_bus.as_str()))
                    .write_empty()?;
                if disk.readonly {
                    w.create_element("readonly").write_empty()?;
                }
                if let Some(serial) = &disk.serial {
                    text_el(w, "serial", serial)?;
                }
                if boot_orders && i == 0 {
                    w.create_element("boot")
                        .with_attribute(("order", disk_order.to_string().as_str()))
                        .write_empty()?;
                }
                Ok(())
            })?;
    }
    if let Some(iso) = &p.cdrom {
        // After the disks when they are on SATA too.
        let n = if p.disk_bus == DiskBus::Sata {
            p.disks.len()
        } else {
            0
        };
        w.create_element("disk")
            .with_attribute(("type", "file"))
            .with_attribute(("device", "cdrom"))
            .write_inner_content(|w| {
                w.create_element("driver")
                    .with_attribute(("name", "qemu"))
                    .with_attribute(("type", "raw"))
                    .write_empty()?;
                w.create_element("source")
                    .with_attribute(("file", iso.as_str()))
                    .write_empty()?;
                w.create_element("target")
                    .with_attribute(("dev", disk_target(DiskBus::Sata, n).as_str()))
                    .with_attribute(("bus", "sata"))
                    .write_empty()?;
                w.create_element("readonly").write_empty()?;
                Ok(())
            })?;
    }
    for (i, nic) in p.nics.iter().enumerate() {
        w.create_element("interface")
            .with_attribute(("type", "network"))
            .write_inner_content(|w| {
                w.create_element("source")
                    .with_attribute(("network", nic.network.as_str()))
                    .write_empty()?;
                w.create_element("mac")
                    .with_attribute(("address", nic.mac.as_str()))
                    .write_empty()?;
                w.create_element("model")
                    .with_attribute(("type", "virtio"))
                    .write_empty()?;
                if boot_orders && p.network_boot && i == 0 {
                    w.create_element("boot")
                        .with_attribute(("order", "1"))
                        .write_empty()?;
                }
                Ok(())
            })?;
    }
    w.create_element("serial")
        .with_attribute(("type", "pty"))
        .write_inner_content(|w| {
            w.create_element("log")
                .with_attribute(("file", p.serial_log.as_str()))
                .with_attribute(("append", "off"))
                .write_empty()?;
            w.create_element("target")
                .with_attribute(("port", "0"))
                .write_empty()?;
            Ok(())
        })?;
    w.create_element("console")
        .with_attribute(("type", "pty"))
        .write_inner_content(|w| {
            w.create_element("target")
                .with_attribute(("type", "serial"))
                .with_attribute(("port", "0"))
                .write_empty()?;
            Ok(())
        })?;
    w.create_element("rng")
        .with_attribute(("model", "virtio"))
        .write_inner_content(|w| {
            w.create_element("backend")
                .with_attribute(("model", "random"))
                .write_text_content(BytesText::new("/dev/urandom"))?;
            Ok(())
        })?;
    Ok(())
}

/// Reads the digest bootlab stored in a domain's or network's XML, if any.
/// A tiny scan with quick-xml's reader; anything unexpected means "not ours".
pub fn stored_digest(xml: &str) -> Option<String> {
    use quick_xml::Reader;
    use quick_xml::events::Event;
    let mut r = Reader::from_str(xml);
    loop {
        match r.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) if e.name().local_name().as_ref() == "object" => {
                let mut ns_ok = false;
                let mut digest = None;
                for a in e.attributes().flatten() {
                    let v = a
                        .normalized_value(quick_xml::XmlVersion::default())
                        .ok()?
                        .into_owned();
                    match a.key.as_ref() {
                        k if k.ends_with("digest") => digest = Some(v),
                        k if k.starts_with("xmlns") && v == METADATA_NS => ns_ok = true,
                        _ => {}
                    }
                }
                if ns_ok {
                    return digest;
                }
            }
            Ok(Event::Eof) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// The same XML with `<uuid>` after the top-level `<name>`: redefining an
/// existing domain or network must keep libvirt's UUID, and the digest
/// (computed without it) stays the same.
pub fn with_uuid(xml: &str, uuid: &str) -> String {
    use quick_xml::Reader;
    use quick_xml::events::{BytesEnd, BytesStart, Event};
    let mut r = Reader::from_str(xml);
    let mut w = Writer::new(Vec::new());
    let mut depth = 0usize;
    loop {
        let ev = match r.read_event() {
            Ok(Event::Eof) => break,
            Ok(ev) => ev,
            Err(_) => return xml.to_string(),
        };
        let after_name = matches!(&ev, Event::End(e) if depth == 2 && e.name().as_ref() == "name");
        match &ev {
            Event::Start(_) => depth += 1,
            Event::End(_) => depth = depth.saturating_sub(1),
            _ => {}
        }
        if w.write_event(ev).is_err() {
            return xml.to_string();
        }
        if after_name {
            let ok = w
                .write_event(Event::Start(BytesStart::new("uuid")))
                .and_then(|_| w.write_event(Event::Text(BytesText::new(uuid))))
                .and_then(|_| w.write_event(Event::End(BytesEnd::new("uuid"))));
            if ok.is_err() {
                return xml.to_string();
            }
        }
    }
    String::from_utf8(w.into_inner()).unwrap_or_else(|_| xml.to_string())
}
