//! `bootlab doctor`: is this host ready for the lab?
//!
//! Checks are pure functions of what the [`Probes`] report, so tests feed
//! them (a CIDR clash, a port clash, "KVM present but unusable", ...);
//! [`SystemProbes`] reads the real host and libvirt.
//!
//! Every fix names the command for the host's distribution (Debian, Ubuntu,
//! Fedora, the RHEL family; [`crate::host`]).
//!
//! # Layout
//! - [`Probes`]: every fact a check needs, behind one trait.
//! - [`run_checks`]: inventory + probes -> [`Finding`]s (ok / warn / fail + fix).
//! - [`host_facts`]: the distribution and the appliance's inputs (busybox,
//!   kernel, modules), read under a root (a fixture tree in tests).
//! - [`SystemProbes`]: /dev/kvm, a tiny KVM guest, /proc/net, /sys, libvirt.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bootlab_inventory::{Firmware, InstallMethod, Inventory, NetworkMode, VirtType};
use ipnet::Ipv4Net;
use serde::Serialize;

use crate::appliance::{WANTED_MODULES, module_name, parse_modules_dep, shared_libs};
use crate::host::{BUSYBOX_PATHS, Distro, HostPaths, Need, shown};
use crate::procnet::{self, Bound, NetworkFacts, Route};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, but worth knowing.
    Warn,
    /// `up` would fail or the lab would misbehave.
    Fail,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Check name (`kvm`, `cidr`, `ports`, ...).
    pub check: &'static str,
    /// Outcome.
    pub level: Level,
    /// What was found.
    pub message: String,
    /// How to fix it (empty when ok).
    pub fix: String,
}

fn f(
    check: &'static str,
    level: Level,
    message: impl Into<String>,
    fix: impl Into<String>,
) -> Finding {
    Finding {
        check,
        level,
        message: message.into(),
        fix: fix.into(),
    }
}

/// Whether /dev/kvm can be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvmState {
    /// No /dev/kvm.
    Absent,
    /// /dev/kvm exists but cannot be opened.
    NoAccess(String),
    /// /dev/kvm exists and a tiny guest ran to completion cleanly.
    GuestRuns,
    /// /dev/kvm exists but a guest hangs or misbehaves (why).
    GuestFails(String),
}

/// libvirtd as seen through the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibvirtFacts {
    /// libvirt version (`9.0.0`).
    pub version: String,
    /// Every network libvirt knows.
    pub networks: Vec<NetworkFacts>,
}

/// The pool directory (or its nearest existing ancestor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolDirFacts {
    /// Free bytes on its file system.
    pub free: Option<u64>,
    /// Directories on the way that the QEMU user cannot traverse.
    pub blocked: Vec<PathBuf>,
    /// The QEMU user (from qemu.conf; `libvirt-qemu` on Debian).
    pub qemu_user: String,
}

/// The host's distribution and what the appliance would be built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// From os-release.
    pub distro: Distro,
    /// `uname -r`.
    pub kernel_release: Option<String>,
    /// The release the appliance is built from: the running one, else the
    /// newest installed one with its modules ([`HostPaths::appliance_release`]).
    pub appliance_release: Option<String>,
    /// busybox and whether it is dynamically linked.
    pub busybox: Option<(PathBuf, bool)>,
    /// The running kernel's image, and whether this user can read it.
    pub kernel: Option<(PathBuf, bool)>,
    /// The module tree.
    pub modules: Option<PathBuf>,
    /// Modules the appliance wants that this kernel has neither as a
    /// module nor built in.
    pub modules_absent: Vec<String>,
    /// nft.
    pub nft: Option<PathBuf>,
}

/// Reads [`HostFacts`] under `paths.root`.
pub fn host_facts(paths: &HostPaths) -> HostFacts {
    let running = paths.kernel_release();
    let appliance_release = paths.appliance_release();
    let release = appliance_release.clone().or_else(|| running.clone());
    let kernel = release.as_deref().and_then(|r| paths.kernel(r)).map(|k| {
        let readable = std::fs::File::open(&k).is_ok();
        (k, readable)
    });
    let modules = release.as_deref().and_then(|r| paths.modules(r));
    let modules_absent = modules
        .as_ref()
        .map(|m| {
            let dep = parse_modules_dep(
                &std::fs::read_to_string(m.join("modules.dep")).unwrap_or_default(),
            );
            let mut have: std::collections::BTreeSet<String> =
                dep.keys().map(|p| module_name(p)).collect();
            have.extend(
                std::fs::read_to_string(m.join("modules.builtin"))
                    .unwrap_or_default()
                    .lines()
                    .map(module_name),
            );
            WANTED_MODULES
                .iter()
                .filter(|w| !have.contains(**w))
                .map(|w| (*w).to_owned())
                .collect()
        })
        .unwrap_or_default();
    let nft = paths.nft();
    HostFacts {
        distro: paths.distro(),
        kernel_release: running,
        appliance_release,
        busybox: paths.busybox().map(|b| {
            let dynamic = shared_libs(&b).is_ok_and(|l| !l.is_empty());
            (b, dynamic)
        }),
        kernel,
        modules,
        modules_absent,
        nft,
    }
}

/// Every fact a check needs. Tests feed these.
pub trait Probes {
    /// The distribution and the appliance's inputs.
    fn host(&self) -> HostFacts;
    /// KVM.
    fn kvm(&self) -> KvmState;
    /// `kvm_intel`/`kvm_amd` and their `nested` parameter.
    fn nested(&self) -> Option<(String, bool)>;
    /// libvirtd reachable, or why not.
    fn libvirt(&self) -> Result<LibvirtFacts, String>;
    /// The QEMU system emulator for x86_64.
    fn qemu(&self) -> Option<PathBuf>;
    /// OVMF firmware (needed by UEFI nodes).
    fn ovmf(&self) -> Option<PathBuf>;
    /// The host's IPv4 routes.
    fn routes(&self) -> Vec<Route>;
    /// The host's network interfaces.
    fn interfaces(&self) -> Vec<String>;
    /// Sockets bound on the host.
    fn bound(&self) -> Vec<Bound>;
    /// The pool directory.
    fn pool_dir(&self, path: &Path) -> PoolDirFacts;
}

/// Runs every check against the libvirt at `uri` (the one `--connect`
/// named, else the inventory's `libvirt.uri`: findings name it). For
/// remote URIs the host checks say where to run them instead.
pub fn run_checks(inv: &Inventory, probes: &dyn Probes, uri: &str) -> Vec<Finding> {
    let local = crate::libvirt::is_local_uri(uri);
    let mut out = Vec::new();
    let host = probes.host();
    let distro = &host.distro;
    let libvirt = probes.libvirt();
    match &libvirt {
        Ok(l) => out.push(f(
            "libvirtd",
            Level::Ok,
            format!("{uri} reachable, libvirt {}", l.version),
            "",
        )),
        Err(e) => out.push(f(
            "libvirtd",
            Level::Fail,
            format!("cannot connect to {uri}: {e}"),
            format!(
                "{}; check the URI (--connect) and that you may use it (group libvirt)",
                distro.fix(Need::Libvirt)
            ),
        )),
    }
    if let Ok(l) = &libvirt {
        out.extend(network_clash_with_libvirt(inv, &l.networks));
    }
    if !local {
        out.push(f(
            "host",
            Level::Warn,
            "remote URI: host checks (KVM, QEMU, OVMF, routes, ports, pool directory) were not run",
            "run `bootlab doctor --connect qemu:///system` on the hypervisor itself",
        ));
        return out;
    }
    out.push(f(
        "distro",
        Level::Ok,
        format!("{} ({:?} family)", distro.name, distro.family).to_lowercase(),
        "",
    ));
    out.extend(appliance_checks(inv, &host));
    out.push(kvm_check(inv.libvirt().virt_type, &probes.kvm()));
    out.push(match probes.nested() {
        Some((m, true)) => f(
            "nested",
            Level::Ok,
            format!("{m}: nested virtualisation on"),
            "",
        ),
        Some((m, false)) => f(
            "nested",
            Level::Warn,
            format!("{m}: nested virtualisation off (only matters for nested labs)"),
            format!("echo 'options {m} nested=1' > /etc/modprobe.d/{m}.conf and reload {m}"),
        ),
        None => f(
            "nested",
            Level::Ok,
            "no kvm_intel/kvm_amd module: nested virtualisation n/a",
            "",
        ),
    });
    out.push(match probes.qemu() {
        Some(p) => f("qemu", Level::Ok, format!("{} present", p.display()), ""),
        None => f(
            "qemu",
            Level::Fail,
            "qemu-system-x86_64 (or qemu-kvm) not found",
            distro.fix(Need::Qemu),
        ),
    });
    let uefi = inv.nodes().iter().any(|n| n.firmware == Firmware::Uefi);
    out.push(match (probes.ovmf(), uefi) {
        (Some(p), _) => f("ovmf", Level::Ok, format!("{} present", p.display()), ""),
        (None, true) => f(
            "ovmf",
            Level::Fail,
            "UEFI nodes need OVMF, which is not installed",
            distro.fix(Need::Ovmf),
        ),
        (None, false) => f("ovmf", Level::Ok, "OVMF not installed (no UEFI nodes)", ""),
    });
    out.extend(cidr_clash_with_routes(
        inv,
        &probes.routes(),
        &probes.interfaces(),
    ));
    out.push(match (&host.nft, inv.network().mode) {
        (Some(p), _) => f("nft", Level::Ok, format!("{} present", p.display()), ""),
        (None, NetworkMode::Nat) => f(
            "nft",
            Level::Fail,
            "nft not found: `up` applies the host egress rule with it (nat mode)",
            distro.fix(Need::Nft),
        ),
        (None, _) => f(
            "nft",
            Level::Ok,
            "nft not installed (not needed on the host in this mode)",
            "",
        ),
    });
    out.push(port_clash(inv, &probes.bound()));
    out.extend(pool_dir_check(
        inv,
        &probes.pool_dir(&inv.libvirt().pool_path),
    ));
    out
}

/// busybox, the kernel image and its modules for the `appliance` install
/// method, each with the fix for this distribution.
pub fn appliance_checks(inv: &Inventory, host: &HostFacts) -> Vec<Finding> {
    if inv.services().install != InstallMethod::Appliance {
        return vec![f(
            "appliance",
            Level::Ok,
            "services.install is not the appliance: no busybox or host kernel needed",
            "",
        )];
    }
    let d = &host.distro;
    let release = host.kernel_release.as_deref().unwrap_or("?");
    let not_running = match host.appliance_release.as_deref() {
        Some(r) if r != release => format!(" (not the running kernel {release}: it has none here)"),
        _ => String::new(),
    };
    let mut out = Vec::new();
    out.push(match &host.busybox {
        Some((p, false)) => f(
            "busybox",
            Level::Ok,
            format!("{} (static)", p.display()),
            "",
        ),
        Some((p, true)) => f(
            "busybox",
            Level::Ok,
            format!(
                "{} (dynamic: its libraries go into the appliance too)",
                p.display()
            ),
            "",
        ),
        None => f(
            "busybox",
            Level::Fail,
            format!(
                "no busybox for the appliance (looked for {})",
                shown(BUSYBOX_PATHS)
            ),
            d.fix(Need::Busybox),
        ),
    });
    out.push(match &host.kernel {
        Some((p, true)) => f(
            "kernel",
            Level::Ok,
            format!("{} for the appliance{not_running}", p.display()),
            "",
        ),
        Some((p, false)) => f(
            "kernel",
            Level::Fail,
            format!(
                "{} is not readable by you (Ubuntu installs it 0600)",
                p.display()
            ),
            "run bootlab as root, or copy it readable (install -m 0644) and pass --kernel PATH",
        ),
        None => f(
            "kernel",
            Level::Fail,
            format!(
                "no image of the running kernel {release} in /boot or /lib/modules/{release}, \
                 nor another installed kernel with its modules"
            ),
            d.fix(Need::Kernel),
        ),
    });
    out.push(match (&host.modules, host.modules_absent.as_slice()) {
        (Some(p), []) => f(
            "modules",
            Level::Ok,
            format!(
                "{} has what the appliance loads (virtio, nf_tables...)",
                p.display()
            ),
            "",
        ),
        (Some(p), absent) => f(
            "modules",
            Level::Warn,
            format!(
                "{}: neither modules nor built in: {}",
                p.display(),
                absent.join(", ")
            ),
            d.fix(Need::Modules),
        ),
        (None, _) => f(
            "modules",
            Level::Fail,
            format!("no module tree for {release} (/lib/modules/{release}/modules.dep)"),
            d.fix(Need::Modules),
        ),
    });
    out
}

/// KVM: usable, or why TCG will be used.
pub fn kvm_check(wanted: VirtType, state: &KvmState) -> Finding {
    let fail_if_kvm = |msg: String, fix: &str| {
        let level = if wanted == VirtType::Kvm {
            Level::Fail
        } else {
            Level::Warn
        };
        let mut fix = fix.to_string();
        if wanted == VirtType::Kvm {
            fix.push_str("; or set libvirt.virt_type = \"auto\" (or \"qemu\") to use TCG");
        }
        f("kvm", level, msg, fix)
    };
    match state {
        KvmState::GuestRuns => f("kvm", Level::Ok, "/dev/kvm usable: a test guest ran", ""),
        KvmState::Absent => fail_if_kvm(
            "no /dev/kvm: guests run under TCG (slow)".into(),
            "enable virtualisation in the firmware and load kvm_intel or kvm_amd",
        ),
        KvmState::NoAccess(e) => fail_if_kvm(
            format!("/dev/kvm present but not usable by you: {e}; TCG will be used"),
            "add your user to group kvm, or run as root",
        ),
        KvmState::GuestFails(why) => fail_if_kvm(
            format!("KVM present but unusable: {why}; virt_type \"auto\" picks TCG"),
            "fix the host's virtualisation (nested setups often lack CPU features), or keep TCG",
        ),
    }
}

/// Which virt type `auto` resolves to.
pub fn resolve_virt_type(wanted: VirtType, kvm: impl FnOnce() -> KvmState) -> VirtType {
    match wanted {
        VirtType::Auto => match kvm() {
            KvmState::GuestRuns => VirtType::Kvm,
            _ => VirtType::Qemu,
        },
        other => other,
    }
}

/// The lab CIDR or bridge clashes with another libvirt network.
pub fn network_clash_with_libvirt(inv: &Inventory, nets: &[NetworkFacts]) -> Vec<Finding> {
    let mut out = Vec::new();
    let ours = &inv.network().libvirt_name;
    for n in nets.iter().filter(|n| &n.name != ours) {
        if inv.network().mode != NetworkMode::Bridge {
            for c in n.nets.iter().filter(|c| overlaps(c, &inv.network().cidr)) {
                out.push(f(
                    "cidr",
                    Level::Fail,
                    format!("lab network {} overlaps libvirt network {:?} ({c})", inv.network().cidr, n.name),
                    format!("pick another network.cidr, or `virsh net-destroy {0}; virsh net-undefine {0}`", n.name),
                ));
            }
        }
        if n.bridge.as_deref() == Some(inv.network().bridge.as_str()) {
            out.push(f(
                "bridge",
                Level::Fail,
                format!(
                    "bridge {} is already used by libvirt network {:?}",
                    inv.network().bridge,
                    n.name
                ),
                "pick another network.bridge",
            ));
        }
    }
    if out.is_empty() {
        out.push(f(
            "libvirt-networks",
            Level::Ok,
            format!(
                "no other libvirt network uses {} or bridge {}",
                inv.network().cidr,
                inv.network().bridge
            ),
            "",
        ));
    }
    out
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The lab CIDR clashes with a host route on another interface; the bridge
/// is missing (bridge mode) or taken by something else (nat/isolated).
pub fn cidr_clash_with_routes(
    inv: &Inventory,
    routes: &[Route],
    ifaces: &[String],
) -> Vec<Finding> {
    let net = &inv.network();
    let mut out = Vec::new();
    let bridge_exists = ifaces.iter().any(|i| i == &net.bridge);
    if net.mode != NetworkMode::Bridge {
        for r in routes.iter().filter(|r| {
            r.net.prefix_len() > 0 && r.iface != net.bridge && overlaps(&r.net, &net.cidr)
        }) {
            out.push(f(
                "cidr",
                Level::Fail,
                format!("lab network {} overlaps the host route {} on {}", net.cidr, r.net, r.iface),
                "pick another network.cidr (traffic to the lab would leave through the wrong interface)",
            ));
        }
    }
    match (net.mode, bridge_exists) {
        (NetworkMode::Bridge, false) => out.push(f(
            "bridge",
            Level::Fail,
            format!("bridge mode, but the host has no bridge {}", net.bridge),
            format!(
                "create it first (e.g. `ip link add {} type bridge`), or use mode nat",
                net.bridge
            ),
        )),
        (NetworkMode::Bridge, true) => out.push(f(
            "bridge",
            Level::Ok,
            format!("host bridge {} exists", net.bridge),
            "",
        )),
        _ => {}
    }
    if out.iter().all(|x| x.level == Level::Ok) {
        out.push(f(
            "cidr",
            Level::Ok,
            format!("{} clashes with no host route", net.cidr),
            "",
        ));
    }
    out
}

/// Something on the host already bound to DHCP/DNS/TFTP on the lab
/// address (or every address) would answer the lab's clients.
pub fn port_clash(inv: &Inventory, bound: &[Bound]) -> Finding {
    let host_ip = inv.network().host_ip;
    let mut clashes: Vec<String> = bound
        .iter()
        .filter(|b| b.proto == "udp" && matches!(b.port, 53 | 67 | 69))
        .filter(|b| {
            b.addr.is_unspecified()
                || Some(b.addr) == host_ip
                || inv.network().cidr.contains(&b.addr)
        })
        .map(|b| format!("{}:{}/{}", b.addr, b.port, b.proto))
        .collect();
    clashes.sort();
    clashes.dedup();
    if clashes.is_empty() {
        f(
            "ports",
            Level::Ok,
            "nothing on the host bound to 53/67/69 on the lab address",
            "",
        )
    } else {
        f(
            "ports",
            Level::Fail,
            format!(
                "already bound on the host: {} (would answer lab clients instead of bootlabd)",
                clashes.join(", ")
            ),
            "stop that service or bind it to other addresses (`ss -ulpn` shows who)",
        )
    }
}

/// Free space and QEMU access at the pool path.
pub fn pool_dir_check(inv: &Inventory, p: &PoolDirFacts) -> Vec<Finding> {
    let mut out = Vec::new();
    let need: u64 = inv.vm_specs().iter().flat_map(|v| v.disks.iter()).sum();
    const GIB: u64 = 1 << 30;
    out.push(match p.free {
        None => f(
            "space",
            Level::Warn,
            format!(
                "cannot tell free space at {}",
                inv.libvirt().pool_path.display()
            ),
            "",
        ),
        Some(free) if free < GIB => f(
            "space",
            Level::Fail,
            format!(
                "only {} MiB free at {}",
                free >> 20,
                inv.libvirt().pool_path.display()
            ),
            "free space or move libvirt.pool_path",
        ),
        Some(free) if free < need => f(
            "space",
            Level::Warn,
            format!(
                "{} GiB free, disks may grow to {} GiB (qcow2 is sparse)",
                free / GIB,
                need.div_ceil(GIB)
            ),
            "free space or shrink the disks",
        ),
        Some(free) => f(
            "space",
            Level::Ok,
            format!("{} GiB free at the pool path", free / GIB),
            "",
        ),
    });
    out.push(if p.blocked.is_empty() {
        f(
            "qemu-access",
            Level::Ok,
            format!("{} can reach the pool path", p.qemu_user),
            "",
        )
    } else {
        let dirs: Vec<String> = p.blocked.iter().map(|d| d.display().to_string()).collect();
        f(
            "qemu-access",
            Level::Fail,
            format!("{} cannot traverse {}", p.qemu_user, dirs.join(", ")),
            format!("chmod o+x {}", dirs.join(" ")),
        )
    });
    out
}

/// The real host and libvirt.
pub struct SystemProbes {
    /// libvirt URI.
    pub uri: String,
}

/// A 512-byte boot sector: `out 0xf4, 1` (isa-debug-exit: QEMU exits 3), `hlt`.
fn exit_boot_sector() -> Vec<u8> {
    let mut b = vec![0xB0, 0x01, 0xE6, 0xF4, 0xFA, 0xF4, 0xEB, 0xFE];
    b.resize(510, 0);
    b.extend([0x55, 0xAA]);
    b
}

/// Runs a tiny KVM guest that exits at once. Hanging (no exit within the
/// deadline), a wrong exit code or KVM reporting missing baseline CPU
/// features all count as "KVM unusable".
pub fn probe_kvm_guest(qemu: &Path, deadline: Duration) -> KvmState {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return KvmState::GuestFails(format!("no temp dir: {e}")),
    };
    let img = dir.path().join("exit.img");
    let err = dir.path().join("stderr");
    if let Err(e) = std::fs::write(&img, exit_boot_sector()) {
        return KvmState::GuestFails(e.to_string());
    }
    let Ok(errf) = std::fs::File::create(&err) else {
        return KvmState::GuestFails("cannot create a temp file".into());
    };
    let child = Command::new(qemu)
        .args([
            "-machine",
            "pc,accel=kvm",
            "-display",
            "none",
            "-nodefaults",
            "-no-reboot",
            "-m",
            "16",
        ])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-drive")
        .arg(format!("file={},format=raw,if=ide", img.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(errf)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return KvmState::GuestFails(format!("cannot run {}: {e}", qemu.display())),
    };
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if start.elapsed() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    match status {
        None => KvmState::GuestFails(format!("a test guest did not finish within {deadline:?}")),
        Some(s) if s.code() != Some(3) => {
            KvmState::GuestFails(format!("a test guest failed ({s}): {}", stderr.trim()))
        }
        Some(_) if stderr.contains("support requested feature") => KvmState::GuestFails(format!(
            "KVM lacks baseline CPU features ({})",
            stderr.lines().next().unwrap_or("").trim()
        )),
        Some(_) => KvmState::GuestRuns,
    }
}

/// The QEMU binary on this host: on PATH, else where the distribution puts
/// it (RHEL's /usr/libexec/qemu-kvm is not on PATH).
pub fn local_qemu() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|d| ["qemu-system-x86_64", "qemu-kvm"].map(|n| d.join(n)))
        .find(|p| p.is_file())
        .or_else(|| HostPaths::system().qemu())
}

impl Probes for SystemProbes {
    fn host(&self) -> HostFacts {
        host_facts(&HostPaths::system())
    }

    fn kvm(&self) -> KvmState {
        if !Path::new("/dev/kvm").exists() {
            return KvmState::Absent;
        }
        if let Err(e) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
        {
            return KvmState::NoAccess(e.to_string());
        }
        match self.qemu() {
            Some(q) => probe_kvm_guest(&q, Duration::from_secs(20)),
            None => KvmState::GuestFails("no QEMU to try a guest with".into()),
        }
    }

    fn nested(&self) -> Option<(String, bool)> {
        ["kvm_intel", "kvm_amd"].iter().find_map(|m| {
            let v = std::fs::read_to_string(format!("/sys/module/{m}/parameters/nested")).ok()?;
            Some((m.to_string(), matches!(v.trim(), "Y" | "1")))
        })
    }

    fn libvirt(&self) -> Result<LibvirtFacts, String> {
        let conn = crate::libvirt::connect(&self.uri).map_err(|e| format!("{e:#}"))?;
        let version = conn.get_lib_version().map_err(|e| e.to_string())?;
        let networks = conn
            .list_all_networks(0)
            .map_err(|e| e.to_string())?
            .iter()
            .filter_map(|n| n.get_xml_desc(0).ok())
            .map(|x| procnet::parse_network_facts(&x))
            .collect();
        Ok(LibvirtFacts {
            version: format!(
                "{}.{}.{}",
                version / 1_000_000,
                version / 1000 % 1000,
                version % 1000
            ),
            networks,
        })
    }

    fn qemu(&self) -> Option<PathBuf> {
        if std::env::var_os("BOOTLAB_HOST_ROOT").is_some() {
            HostPaths::system().qemu()
        } else {
            local_qemu()
        }
    }

    fn ovmf(&self) -> Option<PathBuf> {
        HostPaths::system().ovmf()
    }

    fn routes(&self) -> Vec<Route> {
        procnet::parse_routes(&std::fs::read_to_string("/proc/net/route").unwrap_or_default())
    }

    fn interfaces(&self) -> Vec<String> {
        std::fs::read_dir("/sys/class/net")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn bound(&self) -> Vec<Bound> {
        let mut v = procnet::parse_sockets(
            &std::fs::read_to_string("/proc/net/udp").unwrap_or_default(),
            "udp",
        );
        v.extend(procnet::parse_sockets(
            &std::fs::read_to_string("/proc/net/tcp").unwrap_or_default(),
            "tcp",
        ));
        v
    }

    fn pool_dir(&self, path: &Path) -> PoolDirFacts {
        let qemu_user = HostPaths::system().qemu_user();
        let mut existing = path.to_path_buf();
        while !existing.exists() {
            if !existing.pop() {
                break;
            }
        }
        let free = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&existing)
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .nth(1)?
                    .trim()
                    .parse()
                    .ok()
            });
        let mut blocked = Vec::new();
        if qemu_user != "root" {
            use std::os::unix::fs::PermissionsExt;
            for a in existing.ancestors() {
                let closed =
                    std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 == 0);
                if closed {
                    blocked.push(a.to_path_buf());
                }
            }
        }
        PoolDirFacts {
            free,
            blocked,
            qemu_user,
        }
    }
}

/// Prints findings as a table; returns true when any failed.
pub fn print_findings(findings: &[Finding]) -> bool {
    for x in findings {
        let tag = match x.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        println!("{tag} {:<16} {}", x.check, x.message);
        if !x.fix.is_empty() && x.level != Level::Ok {
            println!("     {:<16} fix: {}", "", x.fix);
        }
    }
    findings.iter().any(|x| x.level == Level::Fail)
}
