//! `bootlab doctor`: is this host ready for the lab?
//!
//! Checks are pure functions of what the [`Probes`] report, so tests feed
//! them (a CIDR clash, a port clash, "KVM present but unusable", ...);
//! [`SystemProbes`] reads the real host and libvirt.
//!
//! # Layout
//! - [`Probes`]: every fact a check needs, behind one trait.
//! - [`run_checks`]: inventory + probes -> [`Finding`]s (ok / warn / fail + fix).
//! - [`SystemProbes`]: /dev/kvm, a tiny KVM guest, /proc/net, /sys, libvirt.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bootlab_inventory::{Firmware, Inventory, NetworkMode, VirtType};
use ipnet::Ipv4Net;
use serde::Serialize;

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

/// Every fact a check needs. Tests feed these.
pub trait Probes {
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

/// Runs every check. `local` is false for remote URIs: host checks then say
/// where to run them instead.
pub fn run_checks(inv: &Inventory, probes: &dyn Probes, local: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    let libvirt = probes.libvirt();
    match &libvirt {
        Ok(l) => out.push(f(
            "libvirtd",
            Level::Ok,
            format!("reachable, libvirt {}", l.version),
            "",
        )),
        Err(e) => out.push(f(
            "libvirtd",
            Level::Fail,
            format!("cannot connect to {}: {e}", inv.libvirt().uri),
            "start libvirtd (`systemctl start libvirtd`, or `virtlogd -d && libvirtd -d`), \
             check the URI (--connect) and that you may use it (group libvirt)",
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
            "qemu-system-x86_64 not found",
            "apt-get install qemu-system-x86",
        ),
    });
    let uefi = inv.nodes().iter().any(|n| n.firmware == Firmware::Uefi);
    out.push(match (probes.ovmf(), uefi) {
        (Some(p), _) => f("ovmf", Level::Ok, format!("{} present", p.display()), ""),
        (None, true) => f(
            "ovmf",
            Level::Fail,
            "UEFI nodes need OVMF, which is not installed",
            "apt-get install ovmf",
        ),
        (None, false) => f("ovmf", Level::Ok, "OVMF not installed (no UEFI nodes)", ""),
    });
    out.extend(cidr_clash_with_routes(
        inv,
        &probes.routes(),
        &probes.interfaces(),
    ));
    out.push(port_clash(inv, &probes.bound()));
    out.extend(pool_dir_check(
        inv,
        &probes.pool_dir(&inv.libvirt().pool_path),
    ));
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

fn find_in_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain(["/usr/bin".into(), "/usr/libexec".into()]) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// The QEMU binary on this host.
pub fn local_qemu() -> Option<PathBuf> {
    find_in_path(&["qemu-system-x86_64", "qemu-kvm"])
}

impl Probes for SystemProbes {
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
        match local_qemu() {
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
        local_qemu()
    }

    fn ovmf(&self) -> Option<PathBuf> {
        [
            "/usr/share/OVMF/OVMF_CODE_4M.fd",
            "/usr/share/OVMF/OVMF_CODE.fd",
            "/usr/share/edk2/ovmf/OVMF_CODE.fd",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
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
        let qemu_user = std::fs::read_to_string("/etc/libvirt/qemu.conf")
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    let l = l.trim();
                    let v = l.strip_prefix("user")?.trim_start().strip_prefix('=')?;
                    Some(v.trim().trim_matches('"').to_string())
                })
            })
            .unwrap_or_else(|| "libvirt-qemu".into());
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
