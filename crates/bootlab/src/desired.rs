//! The desired state: every libvirt object `up` converges to, derived from
//! the inventory alone (names and MACs from [`Inventory::vm_specs`]).
//!
//! # Layout
//! - [`Desired::from_inventory`]: pool, volumes, network and domains.
//! - [`VolumeSpec`]: a disk (sized from the inventory, never shrunk), an
//!   appliance file uploaded into the pool, or the services VM's install
//!   payload ([`crate::payload`]).
//!
//! The services VM's first disk is its data disk (`services.data_dir`:
//! leases, state, the assets), serial `bootlab-data`; the install payload
//! is the last disk, read-only, serial `bootlab-payload`. A cloud image's
//! services VM has its root disk (an overlay of the image) before them and
//! the NoCloud seed (serial `bootlab-cidata`) after them, and boots only
//! from the root disk. A kickstart services VM has an empty root disk
//! first (the kickstart installs on it), no seed, and boots only from the
//! root disk too: that is its final definition; [`install_plan`] derives
//! the install-time one.

use std::path::{Path, PathBuf};

use bootlab_inventory::{Firmware, InstallMethod, Inventory, VirtType};

use crate::xml::{self, DirectBoot, DiskPlan, DomainPlan, NicPlan, VolFormat};

/// What a volume holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeContent {
    /// An empty sparse disk.
    Disk,
    /// A file uploaded from the host (appliance kernel or initramfs).
    Upload(PathBuf),
    /// The install payload: uploaded when created, and again whenever the
    /// services VM is about to boot (created, started, restarted), so it
    /// boots with the current inventory and TLS material; never rewritten
    /// under a running VM (live changes go through the admin API).
    Payload(PathBuf),
    /// A qcow2 overlay on the cloud image at this path (on the
    /// hypervisor): the cloud-image services VM's root disk. A disk like
    /// the others once created (never rewritten, kept by `down
    /// --keep-disks`).
    Overlay(PathBuf),
    /// The NoCloud seed file: uploaded when created and whenever the
    /// services VM is about to boot, like the payload.
    Seed(PathBuf),
    /// The kickstart installer's kernel or initrd (with the kickstart
    /// injected), from the ISO: uploaded when created and whenever the
    /// services VM is about to boot, like the payload.
    Installer(PathBuf),
}

impl VolumeContent {
    /// A disk the VM writes (its content is the VM's, not the host's).
    pub fn is_disk(&self) -> bool {
        matches!(self, VolumeContent::Disk | VolumeContent::Overlay(_))
    }
}

/// One volume in the lab pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    /// Volume name.
    pub name: String,
    /// Capacity in bytes (for uploads: the file's size).
    pub capacity: u64,
    /// qcow2 or raw.
    pub format: VolFormat,
    /// What goes in.
    pub content: VolumeContent,
}

impl VolumeSpec {
    /// The volume's XML.
    pub fn xml(&self) -> String {
        match &self.content {
            VolumeContent::Overlay(image) => {
                xml::overlay_volume_xml(&self.name, self.capacity, &image.to_string_lossy())
            }
            _ => xml::volume_xml(&self.name, self.capacity, self.format),
        }
    }
}

/// The appliance's boot files on the host, ready to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplianceFiles {
    /// Kernel image.
    pub kernel: PathBuf,
    /// Generated initramfs.
    pub initrd: PathBuf,
}

/// One domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSpec {
    /// The plan its XML comes from.
    pub plan: DomainPlan,
    /// Its XML.
    pub xml: String,
    /// True for the services VM.
    pub is_services: bool,
    /// The kickstart services VM's install-time XML ([`install_plan`]):
    /// `up` defines it instead of [`DomainSpec::xml`] when it creates the
    /// domain, runs the installer, then defines `xml`.
    pub install_xml: Option<String>,
}

/// The kickstart installer's boot files on the host (read out of the ISO,
/// the kickstart injected into the initrd), ready to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallerFiles {
    /// The installer's kernel.
    pub kernel: PathBuf,
    /// Its initrd with `/ks.cfg` appended.
    pub initrd: PathBuf,
}

/// Everything `up` creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// Pool name.
    pub pool: String,
    /// Pool directory.
    pub pool_path: String,
    /// Pool XML.
    pub pool_xml: String,
    /// Volumes, disks first.
    pub volumes: Vec<VolumeSpec>,
    /// Network name.
    pub network: String,
    /// Network XML.
    pub network_xml: String,
    /// Domains, the services VM first.
    pub domains: Vec<DomainSpec>,
}

/// Names of the kickstart installer's kernel and initrd (with the
/// kickstart injected) in the lab pool.
pub fn installer_volumes(domain: &str) -> (String, String) {
    (
        format!("{domain}-installer-vmlinuz"),
        format!("{domain}-installer-initrd.img"),
    )
}

/// The installer's kernel command line: the injected kickstart, the
/// installation tree on the cdrom (anaconda finds its stage 2 there), the
/// serial console (what `up` tails as progress) and text mode.
pub fn install_cmdline() -> String {
    format!(
        "{} inst.repo=cdrom inst.text console=ttyS0,115200",
        crate::kickstart::KS_ARG
    )
}

/// The kickstart services VM's install-time definition, from its final
/// one (`services`): the same disks and NICs, the installer's kernel and
/// initrd (volumes [`installer_volumes`]) booted directly with
/// [`install_cmdline`], the ISO as a cdrom, and a reboot ends it. `None`
/// for the other methods.
pub fn install_plan(inv: &Inventory, services: &DomainPlan) -> Option<DomainPlan> {
    let InstallMethod::Kickstart { iso } = &inv.services().install else {
        return None;
    };
    let pool: &Path = &inv.libvirt().pool_path;
    let (kernel, initrd) = installer_volumes(&services.name);
    let mut plan = services.clone();
    plan.direct_boot = Some(DirectBoot {
        kernel: pool.join(kernel).to_string_lossy().into_owned(),
        initrd: pool.join(initrd).to_string_lossy().into_owned(),
        cmdline: install_cmdline(),
    });
    plan.cdrom = Some(iso.to_string_lossy().into_owned());
    plan.install_phase = true;
    Some(plan)
}

impl Desired {
    /// Adds the kickstart installer's kernel and initrd volumes
    /// ([`installer_volumes`]) of the services VM.
    pub fn with_installer(mut self, files: &InstallerFiles) -> std::io::Result<Self> {
        let Some(services) = self.domains.iter().find(|d| d.is_services) else {
            return Ok(self);
        };
        let (k, i) = installer_volumes(&services.plan.name);
        for (name, path) in [(k, &files.kernel), (i, &files.initrd)] {
            self.volumes.push(VolumeSpec {
                name,
                capacity: std::fs::metadata(path)?.len(),
                format: VolFormat::Raw,
                content: VolumeContent::Installer(path.clone()),
            });
        }
        Ok(self)
    }
}

/// Name of a VM's `i`-th disk volume.
pub fn disk_volume(domain: &str, i: usize) -> String {
    format!("{domain}-disk{i}.qcow2")
}

/// Size of a cloud image's root disk: the overlay of the image is grown to
/// it (cloud-init grows the root file system on first boot).
pub const ROOT_DISK_SIZE: u64 = 10 << 30;

/// Size of the NoCloud seed volume (a FAT file system labelled `cidata`).
pub const SEED_SIZE: u64 = 4 << 20;

/// Serial of the NoCloud seed disk.
pub const SEED_SERIAL: &str = "bootlab-cidata";

/// Name of a cloud-image services VM's root disk volume.
pub fn root_volume(domain: &str) -> String {
    format!("{domain}-root.qcow2")
}

/// Name of a cloud-image services VM's NoCloud seed volume.
pub fn seed_volume(domain: &str) -> String {
    format!("{domain}-cidata.img")
}

/// Name of the services VM's install payload volume.
pub fn payload_volume(domain: &str) -> String {
    format!("{domain}-payload.tar")
}

/// Name prefixes of the appliance kernel and initramfs volumes.
pub fn appliance_volume_prefixes(domain: &str) -> (String, String) {
    (format!("{domain}-vmlinuz-"), format!("{domain}-initrd-"))
}

/// Names of the appliance kernel and initramfs volumes: the content's digest
/// is part of the name, so a changed appliance is a new volume (and a changed
/// domain definition) while an unchanged one is left alone.
pub fn appliance_volumes(
    domain: &str,
    files: &ApplianceFiles,
) -> std::io::Result<(String, String)> {
    let (k, i) = appliance_volume_prefixes(domain);
    Ok((
        format!("{k}{}", file_digest(&files.kernel)?),
        format!("{i}{}.img", file_digest(&files.initrd)?),
    ))
}

/// FNV-1a 64 of a file's bytes, 16 hex digits.
pub fn file_digest(path: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    Ok(format!("{h:016x}"))
}

/// Where libvirt logs a domain's serial console.
pub fn serial_log(domain: &str) -> String {
    format!("/var/log/libvirt/qemu/{domain}-serial0.log")
}

/// The appliance's kernel command line: console, and how to find and
/// address its lab NIC (by MAC: there are no udev names inside).
pub fn appliance_cmdline(inv: &Inventory) -> String {
    let s = &inv.services();
    let mut c = format!(
        "console=ttyS0,115200 panic=10 bootlab.mac={} bootlab.ip={}/{} bootlab.gw={}",
        s.mac,
        s.ip,
        inv.network().cidr.prefix_len(),
        inv.network().gateway
    );
    if !s.disks.is_empty() {
        let dev = xml::disk_target(inv.libvirt().disk_bus, 0);
        c.push_str(&format!(" bootlab.data=/dev/{dev}"));
    }
    let payload = xml::disk_target(inv.libvirt().disk_bus, s.disks.len());
    c.push_str(&format!(" bootlab.payload=/dev/{payload}"));
    if let Some(u) = &s.uplink {
        c.push_str(&format!(" bootlab.uplink={}", u.mac));
    }
    c
}

impl Desired {
    /// Derives the desired state. `virt_type` must already be resolved
    /// (never `Auto`). `appliance` is needed when the services VM's install
    /// method is `appliance`; without it the services VM gets no direct boot.
    /// `payload` is the install payload file ([`crate::payload::write`]);
    /// the services VM of the appliance gets its disk.
    pub fn from_inventory(
        inv: &Inventory,
        virt_type: VirtType,
        appliance: Option<&ApplianceFiles>,
        payload: Option<&Path>,
    ) -> std::io::Result<Self> {
        Self::with_seed(inv, virt_type, appliance, payload, None)
    }

    /// [`Desired::from_inventory`], with the NoCloud seed file of a
    /// cloud-image services VM ([`crate::cloudinit::write_seed`]).
    pub fn with_seed(
        inv: &Inventory,
        virt_type: VirtType,
        appliance: Option<&ApplianceFiles>,
        payload: Option<&Path>,
        seed: Option<&Path>,
    ) -> std::io::Result<Self> {
        let pool_path: &Path = &inv.libvirt().pool_path;
        let mut volumes = Vec::new();
        let mut domains = Vec::new();
        for spec in inv.vm_specs() {
            let cloud_image_vm = spec.is_services
                && matches!(inv.services().install, InstallMethod::CloudImage { .. });
            let kickstart_vm = spec.is_services
                && matches!(inv.services().install, InstallMethod::Kickstart { .. });
            let data_disks: Vec<DiskPlan> = spec
                .disks
                .iter()
                .enumerate()
                .map(|(i, &capacity)| DiskPlan {
                    volume: disk_volume(&spec.domain, i),
                    capacity,
                    format: VolFormat::Qcow2,
                    readonly: false,
                    serial: (spec.is_services && i == 0)
                        .then(|| crate::payload::DATA_SERIAL.to_owned()),
                })
                .collect();
            for d in &data_disks {
                volumes.push(VolumeSpec {
                    name: d.volume.clone(),
                    capacity: d.capacity,
                    format: VolFormat::Qcow2,
                    content: VolumeContent::Disk,
                });
            }
            // A cloud image's (an overlay of the image) or a kickstart-
            // installed services VM boots its root disk first.
            let mut disks = Vec::new();
            let root_content = match &inv.services().install {
                InstallMethod::CloudImage { image } if cloud_image_vm => {
                    Some(VolumeContent::Overlay(image.clone()))
                }
                _ if kickstart_vm => Some(VolumeContent::Disk),
                _ => None,
            };
            if let Some(content) = root_content {
                volumes.push(VolumeSpec {
                    name: root_volume(&spec.domain),
                    capacity: ROOT_DISK_SIZE,
                    format: VolFormat::Qcow2,
                    content,
                });
                disks.push(DiskPlan {
                    volume: root_volume(&spec.domain),
                    capacity: ROOT_DISK_SIZE,
                    format: VolFormat::Qcow2,
                    readonly: false,
                    serial: None,
                });
            }
            disks.extend(data_disks);
            // Every services VM gets the install payload (read-only, after
            // its data disks).
            if spec.is_services {
                let name = payload_volume(&spec.domain);
                let capacity = match payload {
                    Some(p) => std::fs::metadata(p)?.len(),
                    None => 1 << 20,
                };
                if let Some(p) = payload {
                    volumes.push(VolumeSpec {
                        name: name.clone(),
                        capacity,
                        format: VolFormat::Raw,
                        content: VolumeContent::Payload(p.to_path_buf()),
                    });
                }
                disks.push(DiskPlan {
                    volume: name,
                    capacity,
                    format: VolFormat::Raw,
                    readonly: true,
                    serial: Some(crate::payload::PAYLOAD_SERIAL.to_owned()),
                });
            }
            if cloud_image_vm {
                if let Some(seed) = seed {
                    volumes.push(VolumeSpec {
                        name: seed_volume(&spec.domain),
                        capacity: SEED_SIZE,
                        format: VolFormat::Raw,
                        content: VolumeContent::Seed(seed.to_path_buf()),
                    });
                }
                disks.push(DiskPlan {
                    volume: seed_volume(&spec.domain),
                    capacity: SEED_SIZE,
                    format: VolFormat::Raw,
                    readonly: true,
                    serial: Some(SEED_SERIAL.to_owned()),
                });
            }
            let mut direct_boot = None;
            let files = appliance
                .filter(|_| spec.is_services && inv.services().install == InstallMethod::Appliance);
            if let Some(files) = files {
                let (kname, iname) = appliance_volumes(&spec.domain, files)?;
                for (name, path) in [(&kname, &files.kernel), (&iname, &files.initrd)] {
                    volumes.push(VolumeSpec {
                        name: name.clone(),
                        capacity: std::fs::metadata(path)?.len(),
                        format: VolFormat::Raw,
                        content: VolumeContent::Upload(path.clone()),
                    });
                }
                direct_boot = Some(DirectBoot {
                    kernel: pool_path.join(&kname).to_string_lossy().into_owned(),
                    initrd: pool_path.join(&iname).to_string_lossy().into_owned(),
                    cmdline: appliance_cmdline(inv),
                });
            }
            let plan = DomainPlan {
                lab: inv.lab().name.clone(),
                name: spec.domain.clone(),
                virt_type,
                vcpus: spec.vcpus,
                memory: spec.memory,
                firmware: if spec.is_services {
                    Firmware::Bios
                } else {
                    spec.firmware
                },
                disks,
                pool: inv.libvirt().pool.clone(),
                disk_bus: inv.libvirt().disk_bus,
                nics: spec
                    .nics
                    .iter()
                    .map(|n| NicPlan {
                        network: n.network.clone(),
                        mac: n.mac.to_string(),
                    })
                    .collect(),
                direct_boot,
                network_boot: !spec.is_services,
                serial_log: serial_log(&spec.domain),
                cdrom: None,
                install_phase: false,
            };
            let install_xml = if spec.is_services {
                install_plan(inv, &plan).map(|p| xml::domain_xml(&p))
            } else {
                None
            };
            domains.push(DomainSpec {
                xml: xml::domain_xml(&plan),
                plan,
                is_services: spec.is_services,
                install_xml,
            });
        }
        Ok(Desired {
            pool: inv.libvirt().pool.clone(),
            pool_path: inv.libvirt().pool_path.to_string_lossy().into_owned(),
            pool_xml: xml::pool_xml(inv),
            volumes,
            network: inv.network().libvirt_name.clone(),
            network_xml: xml::network_xml(inv),
            domains,
        })
    }
}
