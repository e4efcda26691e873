//! Any hypervisor distribution: host trees laid out as Debian, Ubuntu,
//! Fedora and RHEL lay them out (`common::fixtures`) are read right
//! (os-release family, busybox, the kernel image, its module tree, QEMU,
//! OVMF, the QEMU user); what is missing is named with that distribution's
//! fix, by `bootlab doctor` (also the real binary under
//! `BOOTLAB_HOST_ROOT`) and by the appliance's input resolution; modules
//! compressed by the real xz / zstd / gzip come out byte for byte.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use bootlab_bootlab::appliance::{self, ApplianceInputs, GivenInputs, InputsError};
use bootlab_bootlab::doctor::{
    self, Finding, HostFacts, KvmState, Level, LibvirtFacts, PoolDirFacts, Probes,
};
use bootlab_bootlab::host::{Family, Need};
use bootlab_bootlab::procnet::{Bound, Route};
use bootlab_inventory::Inventory;
use common::fixtures::{ALL, DEBIAN, FEDORA, FixtureHost, Layout, Parts, RHEL, UBUNTU, compress};

fn inv() -> Inventory {
    let text = r#"
[lab]
name = "d"
domain = "lab.test"
[network]
cidr = "10.50.0.0/24"
mode = "nat"
gateway = "10.50.0.1"
host_ip = "10.50.0.1"
bridge = "virbr-d"
libvirt_name = "d"
[libvirt]
pool = "d"
pool_path = "/var/lib/libvirt/images/d"
[services]
name = "services"
ip = "10.50.0.254"
mac = "52:54:00:50:00:fe"
disks = ["10GiB"]
[services.install]
method = "appliance"
[profiles.p]
kernel = "k"
initrd = ["i"]
args = ""
[[nodes]]
name = "n"
profile = "p"
firmware = "uefi"
mac = "52:54:00:50:00:10"
ip = "10.50.0.10"
disks = ["20GiB"]
"#;
    bootlab_inventory::parse(text, Path::new("d.toml")).expect("valid")
}

fn family(l: &Layout) -> Family {
    match l.name {
        "debian" => Family::Debian,
        "ubuntu" => Family::Ubuntu,
        "fedora" => Family::Fedora,
        _ => Family::Rhel,
    }
}

/// The package command each family's fixes must name.
fn installer(l: &Layout) -> &'static str {
    match family(l) {
        Family::Debian | Family::Ubuntu => "apt-get install",
        _ => "dnf install",
    }
}

/// Probes of a host that is the fixture tree (files) and otherwise
/// unreachable or bare (no libvirtd, no QEMU/OVMF unless the tree has
/// them, no KVM), as a freshly installed hypervisor would be.
struct FixtureProbes<'a>(&'a FixtureHost);

impl Probes for FixtureProbes<'_> {
    fn host(&self) -> HostFacts {
        doctor::host_facts(&self.0.paths())
    }
    fn kvm(&self) -> KvmState {
        KvmState::Absent
    }
    fn nested(&self) -> Option<(String, bool)> {
        Some(("kvm_intel".into(), false))
    }
    fn libvirt(&self) -> Result<LibvirtFacts, String> {
        Err("Failed to connect socket to '/run/libvirt/virtqemud-sock': No such file".into())
    }
    fn qemu(&self) -> Option<PathBuf> {
        self.0.paths().qemu()
    }
    fn ovmf(&self) -> Option<PathBuf> {
        self.0.paths().ovmf()
    }
    fn routes(&self) -> Vec<Route> {
        vec![]
    }
    fn interfaces(&self) -> Vec<String> {
        vec!["lo".into()]
    }
    fn bound(&self) -> Vec<Bound> {
        vec![]
    }
    fn pool_dir(&self, _: &Path) -> PoolDirFacts {
        PoolDirFacts {
            free: Some(500 << 30),
            blocked: vec![],
            qemu_user: self.0.paths().qemu_user(),
        }
    }
}

fn finding<'a>(f: &'a [Finding], check: &str) -> &'a Finding {
    f.iter()
        .find(|x| x.check == check)
        .unwrap_or_else(|| panic!("no {check} finding in {f:#?}"))
}

#[test]
fn each_distribution_s_layout_is_found_where_it_puts_things() {
    for l in ALL {
        let host = FixtureHost::new(l, Parts::ALL);
        let facts = doctor::host_facts(&host.paths());
        assert_eq!(facts.distro.family, family(&l), "{}", l.name);
        assert_eq!(facts.kernel_release.as_deref(), Some(l.release));
        assert_eq!(
            facts.kernel,
            Some((host.at(l.kernel), true)),
            "{}: kernel",
            l.name
        );
        assert_eq!(facts.modules, Some(host.at(l.modules)), "{}", l.name);
        assert_eq!(facts.modules_absent, Vec::<String>::new(), "{}", l.name);
        // busybox-static's binary: static
        assert_eq!(
            facts.busybox,
            l.busybox.map(|b| (host.at(b), false)),
            "{}: busybox",
            l.name
        );
        assert_eq!(host.paths().qemu(), Some(host.at(l.qemu)), "{}", l.name);
        assert_eq!(host.paths().ovmf(), Some(host.at(l.ovmf)), "{}", l.name);
        let qemu_user = match family(&l) {
            Family::Fedora | Family::Rhel => "qemu",
            _ => "libvirt-qemu",
        };
        assert_eq!(host.paths().qemu_user(), qemu_user, "{}", l.name);

        let checks = doctor::appliance_checks(&inv(), &facts);
        for c in ["kernel", "modules"] {
            assert_eq!(
                finding(&checks, c).level,
                Level::Ok,
                "{}: {checks:#?}",
                l.name
            );
        }
        let bb = finding(&checks, "busybox");
        if l.busybox.is_some() {
            assert_eq!(bb.level, Level::Ok, "{}: {bb:?}", l.name);
            assert!(bb.message.contains("(static)"), "{bb:?}");
        } else {
            // RHEL and its rebuilds package no busybox
            assert_eq!(bb.level, Level::Fail, "{bb:?}");
            assert!(bb.fix.contains("--busybox PATH"), "{bb:?}");
        }
    }
}

#[test]
fn a_bare_host_gets_its_own_distribution_s_fix_on_every_failing_line() {
    for l in ALL {
        let host = FixtureHost::new(l, Parts::NONE);
        let f = doctor::run_checks(&inv(), &FixtureProbes(&host), "qemu:///system");
        let text = format!("{}: {f:#?}", l.name);
        for c in [
            "busybox", "kernel", "modules", "libvirtd", "qemu", "ovmf", "nft",
        ] {
            let x = finding(&f, c);
            assert_eq!(x.level, Level::Fail, "{c}: {text}");
            if !(c == "busybox" && family(&l) == Family::Rhel) {
                assert!(x.fix.contains(installer(&l)), "{c}: {text}");
            }
        }
        // every failing or warning line says how to fix it
        for x in f.iter().filter(|x| x.level != Level::Ok) {
            assert!(!x.fix.is_empty(), "{}: {x:?}", l.name);
        }
        // and never another family's package manager
        let other = if installer(&l) == "dnf install" {
            "apt-get"
        } else {
            "dnf"
        };
        assert!(
            !f.iter().any(|x| x.fix.contains(other)),
            "{}: names {other}: {text}",
            l.name
        );
        let fix = |c: &str| finding(&f, c).fix.clone();
        match family(&l) {
            Family::Debian => {
                assert!(fix("busybox").contains("busybox-static"), "{text}");
                assert!(fix("kernel").contains("linux-image-amd64"), "{text}");
                assert!(fix("qemu").contains("qemu-system-x86"), "{text}");
                assert!(fix("libvirtd").contains("libvirt-daemon-system"), "{text}");
            }
            Family::Ubuntu => {
                assert!(fix("busybox").contains("busybox-static"), "{text}");
                assert!(fix("modules").contains("linux-modules"), "{text}");
                assert!(fix("ovmf").contains("apt-get install ovmf"), "{text}");
            }
            Family::Fedora => {
                assert!(fix("busybox").contains("dnf install busybox"), "{text}");
                assert!(fix("modules").contains("kernel-modules"), "{text}");
                assert!(fix("ovmf").contains("edk2-ovmf"), "{text}");
                assert!(fix("libvirtd").contains("virtqemud"), "{text}");
            }
            _ => {
                assert!(fix("busybox").contains("--busybox PATH"), "{text}");
                assert!(fix("qemu").contains("qemu-kvm"), "{text}");
                assert!(fix("kernel").contains("kernel-core"), "{text}");
            }
        }
        // KVM absent and nested off: TCG works, both say so with a fix
        assert_eq!(finding(&f, "kvm").level, Level::Warn, "{text}");
        assert_eq!(finding(&f, "nested").level, Level::Warn, "{text}");
    }
}

#[test]
fn appliance_inputs_resolve_from_each_layout_or_list_everything_missing() {
    let bootlabd = std::env::current_exe().unwrap();
    for l in ALL {
        let host = FixtureHost::new(l, Parts::ALL);
        let given = GivenInputs {
            bootlabd: Some(bootlabd.clone()),
            busybox: l.busybox.is_none().then(|| PathBuf::from("/bin/busybox")),
            ..GivenInputs::default()
        };
        let i = ApplianceInputs::resolve(given, true, &host.paths())
            .unwrap_or_else(|e| panic!("{}: {e}", l.name));
        assert_eq!(i.kernel, host.at(l.kernel), "{}", l.name);
        assert_eq!(i.modules, host.at(l.modules), "{}", l.name);
        assert_eq!(
            i.busybox,
            l.busybox
                .map_or_else(|| PathBuf::from("/bin/busybox"), |b| host.at(b)),
            "{}",
            l.name
        );

        let bare = FixtureHost::new(l, Parts::NONE);
        let given = GivenInputs {
            bootlabd: Some(bootlabd.clone()),
            ..GivenInputs::default()
        };
        let Err(InputsError::Missing(missing)) =
            ApplianceInputs::resolve(given, true, &bare.paths())
        else {
            panic!("{}: a bare host resolves", l.name)
        };
        let d = bare.paths().distro();
        let whats: Vec<&str> = missing.iter().map(|m| m.what.as_str()).collect();
        assert_eq!(missing.len(), 3, "{}: {whats:?}", l.name);
        assert!(whats[0].contains(l.release), "{whats:?}");
        assert_eq!(missing[0].fix, d.fix(Need::Kernel));
        assert_eq!(missing[1].fix, d.fix(Need::Modules));
        assert_eq!(missing[2].fix, d.fix(Need::Busybox));
        // the error text lists every one with its fix
        let e = InputsError::Missing(missing).to_string();
        assert!(e.contains("no busybox") && e.contains(installer(&l)), "{e}");
    }
    // a remote URI needs the kernel and modules spelled out
    let host = FixtureHost::new(DEBIAN, Parts::ALL);
    assert!(matches!(
        ApplianceInputs::resolve(GivenInputs::default(), false, &host.paths()),
        Err(InputsError::Remote)
    ));
}

#[test]
fn modules_missing_from_the_running_kernel_warn_with_the_fix() {
    let host = FixtureHost::new(FEDORA, Parts::ALL);
    let dep = host.at(FEDORA.modules).join("modules.dep");
    let text = std::fs::read_to_string(&dep).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("kernel/nf_tables.ko"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&dep, without).unwrap();
    let facts = doctor::host_facts(&host.paths());
    assert_eq!(facts.modules_absent, vec!["nf_tables".to_owned()]);
    let checks = doctor::appliance_checks(&inv(), &facts);
    let m = finding(&checks, "modules");
    assert_eq!(m.level, Level::Warn, "{m:?}");
    assert!(m.message.contains("nf_tables"), "{m:?}");
    assert!(m.fix.contains("dnf install"), "{m:?}");
}

#[test]
fn a_dynamically_linked_busybox_is_named_so() {
    // Debian's and Ubuntu's `busybox` (not -static): any dynamic ELF will do.
    let host = FixtureHost::new(UBUNTU, Parts::ALL);
    std::fs::copy("/bin/true", host.at("usr/bin/busybox")).unwrap();
    let facts = doctor::host_facts(&host.paths());
    assert_eq!(facts.busybox, Some((host.at("usr/bin/busybox"), true)));
    let checks = doctor::appliance_checks(&inv(), &facts);
    assert!(
        finding(&checks, "busybox").message.contains("dynamic"),
        "{checks:#?}"
    );
    let libs = appliance::shared_libs(&host.at("usr/bin/busybox")).unwrap();
    assert!(
        libs.iter().any(|l| l.to_string_lossy().contains("libc.so")),
        "{libs:?}"
    );
    assert!(
        appliance::shared_libs(Path::new("/bin/busybox"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn an_unreadable_kernel_image_fails_with_what_to_do() {
    // Ubuntu installs /boot/vmlinuz-* 0600; as root the fixture is readable,
    // so the fact is fed as a non-root user would see it.
    let host = FixtureHost::new(UBUNTU, Parts::ALL);
    let mut facts = doctor::host_facts(&host.paths());
    facts.kernel = facts.kernel.map(|(p, _)| (p, false));
    let checks = doctor::appliance_checks(&inv(), &facts);
    let k = finding(&checks, "kernel");
    assert_eq!(k.level, Level::Fail);
    assert!(k.fix.contains("--kernel PATH"), "{k:?}");
}

#[test]
fn compressed_modules_come_out_byte_for_byte() {
    // A real ELF (the kernel takes modules as plain ELF), compressed the
    // way each distribution's kmod tooling does.
    let original = std::fs::read("/bin/busybox").unwrap();
    for suffix in ["", ".xz", ".zst", ".gz"] {
        let name = format!("kernel/net/netfilter/nf_tables.ko{suffix}");
        let packed = compress(&original, suffix);
        let (out_name, data) = appliance::decompress_module(&name, &packed)
            .unwrap_or_else(|e| panic!("{suffix}: {e:#}"));
        assert_eq!(out_name, "kernel/net/netfilter/nf_tables.ko");
        assert!(data == original, "{suffix}: content differs");
        // garbage with the suffix is an error naming the file, never a panic
        if !suffix.is_empty() {
            let e = appliance::decompress_module(&name, &packed[..packed.len() / 2]);
            let e = e.expect_err("a truncated stream is an error");
            assert!(format!("{e:#}").contains("nf_tables.ko"), "{e:#}");
        }
    }
}

#[test]
fn the_doctor_binary_reads_the_host_under_bootlab_host_root() {
    let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/okd-lab.toml");
    for l in [FEDORA, RHEL, UBUNTU] {
        let host = FixtureHost::new(l, Parts::NONE);
        let o = Command::new(env!("CARGO_BIN_EXE_bootlab"))
            .args(["doctor", lab.to_str().unwrap(), "--output", "json"])
            // a libvirt socket that is not there: "unreachable" with the fix
            .args([
                "--connect",
                "qemu:///system?socket=/nonexistent/libvirt-sock",
            ])
            .env("BOOTLAB_HOST_ROOT", host.root())
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{}: {out}{}",
            l.name,
            String::from_utf8_lossy(&o.stderr)
        );
        let findings: serde_json::Value = serde_json::from_str(&out).unwrap();
        let by = |c: &str| {
            findings
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["check"] == c)
                .unwrap_or_else(|| panic!("{c}: {out}"))
                .clone()
        };
        assert!(
            by("distro")["message"]
                .as_str()
                .unwrap()
                .contains(match l.name {
                    "fedora" => "fedora linux 41",
                    "rhel" => "red hat enterprise linux 9.4",
                    _ => "ubuntu 24.04",
                }),
            "{out}"
        );
        for c in ["busybox", "kernel", "modules", "libvirtd"] {
            assert_eq!(by(c)["level"], "fail", "{}: {c}: {out}", l.name);
        }
        assert!(
            by("kernel")["fix"]
                .as_str()
                .unwrap()
                .contains(installer(&l)),
            "{out}"
        );
        assert!(
            by("libvirtd")["fix"]
                .as_str()
                .unwrap()
                .contains(installer(&l)),
            "{out}"
        );
    }
}

#[test]
fn a_host_running_a_foreign_kernel_builds_from_its_newest_installed_one() {
    // The running kernel (a cloud's or a container host's) has no image or
    // modules here; two Debian kernels are installed, and a third release
    // has modules but no image.
    let host = FixtureHost::new(DEBIAN, Parts::ALL);
    std::fs::write(host.at("proc/sys/kernel/osrelease"), "6.18.44-custom\n").unwrap();
    let old = "6.1.0-9-amd64";
    std::fs::create_dir_all(host.at(&format!("lib/modules/{old}"))).unwrap();
    std::fs::copy(
        host.at(DEBIAN.modules).join("modules.dep"),
        host.at(&format!("lib/modules/{old}/modules.dep")),
    )
    .unwrap();
    std::fs::write(host.at(&format!("boot/vmlinuz-{old}")), b"k").unwrap();
    std::fs::create_dir_all(host.at("lib/modules/6.2.0-1-amd64")).unwrap();
    std::fs::write(host.at("lib/modules/6.2.0-1-amd64/modules.dep"), "").unwrap();

    assert_eq!(
        host.paths().appliance_release().as_deref(),
        Some(DEBIAN.release)
    );
    let facts = doctor::host_facts(&host.paths());
    assert_eq!(facts.kernel_release.as_deref(), Some("6.18.44-custom"));
    let checks = doctor::appliance_checks(&inv(), &facts);
    let k = finding(&checks, "kernel");
    assert_eq!(k.level, Level::Ok, "{k:?}");
    assert!(
        k.message.contains(DEBIAN.kernel)
            && k.message.contains("not the running kernel 6.18.44-custom"),
        "{k:?}"
    );
    let i = ApplianceInputs::resolve(
        GivenInputs {
            bootlabd: Some(std::env::current_exe().unwrap()),
            ..GivenInputs::default()
        },
        true,
        &host.paths(),
    )
    .unwrap();
    assert_eq!(i.kernel, host.at(DEBIAN.kernel));
    assert_eq!(i.modules, host.at(DEBIAN.modules));
}
