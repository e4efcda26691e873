//! `bootlab doctor` checks with fed probes: each check's ok / warn / fail,
//! including a CIDR clash, a port clash and "KVM present but unusable".

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use bootlab_bootlab::doctor::{
    HostFacts, KvmState, Level, LibvirtFacts, PoolDirFacts, Probes, resolve_virt_type, run_checks,
};
use bootlab_bootlab::host::Distro;
use bootlab_bootlab::procnet::{Bound, NetworkFacts, Route};
use bootlab_inventory::{Inventory, VirtType};

#[derive(Clone)]
struct Fed {
    host: HostFacts,
    kvm: KvmState,
    nested: Option<(String, bool)>,
    libvirt: Result<LibvirtFacts, String>,
    qemu: Option<PathBuf>,
    ovmf: Option<PathBuf>,
    routes: Vec<Route>,
    ifaces: Vec<String>,
    bound: Vec<Bound>,
    pool: PoolDirFacts,
}

impl Default for Fed {
    fn default() -> Self {
        Fed {
            host: HostFacts {
                distro: Distro::parse(
                    "ID=debian\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
                ),
                kernel_release: Some("6.1.0-37-amd64".into()),
                appliance_release: Some("6.1.0-37-amd64".into()),
                busybox: Some(("/bin/busybox".into(), false)),
                kernel: Some(("/boot/vmlinuz-6.1.0-37-amd64".into(), true)),
                modules: Some("/lib/modules/6.1.0-37-amd64".into()),
                modules_absent: vec![],
                nft: Some("/usr/sbin/nft".into()),
            },
            kvm: KvmState::GuestRuns,
            nested: Some(("kvm_intel".into(), true)),
            libvirt: Ok(LibvirtFacts {
                version: "9.0.0".into(),
                networks: vec![NetworkFacts {
                    name: "default".into(),
                    bridge: Some("virbr0".into()),
                    nets: vec!["192.168.122.0/24".parse().unwrap()],
                }],
            }),
            qemu: Some("/usr/bin/qemu-system-x86_64".into()),
            ovmf: Some("/usr/share/OVMF/OVMF_CODE_4M.fd".into()),
            routes: vec![
                Route {
                    iface: "eth0".into(),
                    net: "0.0.0.0/0".parse().unwrap(),
                },
                Route {
                    iface: "eth0".into(),
                    net: "192.168.1.0/24".parse().unwrap(),
                },
            ],
            ifaces: vec!["lo".into(), "eth0".into(), "virbr0".into()],
            bound: vec![Bound {
                proto: "udp",
                addr: Ipv4Addr::LOCALHOST,
                port: 53,
            }],
            pool: PoolDirFacts {
                free: Some(500 << 30),
                blocked: vec![],
                qemu_user: "libvirt-qemu".into(),
            },
        }
    }
}

impl Probes for Fed {
    fn host(&self) -> HostFacts {
        self.host.clone()
    }
    fn kvm(&self) -> KvmState {
        self.kvm.clone()
    }
    fn nested(&self) -> Option<(String, bool)> {
        self.nested.clone()
    }
    fn libvirt(&self) -> Result<LibvirtFacts, String> {
        self.libvirt.clone()
    }
    fn qemu(&self) -> Option<PathBuf> {
        self.qemu.clone()
    }
    fn ovmf(&self) -> Option<PathBuf> {
        self.ovmf.clone()
    }
    fn routes(&self) -> Vec<Route> {
        self.routes.clone()
    }
    fn interfaces(&self) -> Vec<String> {
        self.ifaces.clone()
    }
    fn bound(&self) -> Vec<Bound> {
        self.bound.clone()
    }
    fn pool_dir(&self, _: &Path) -> PoolDirFacts {
        self.pool.clone()
    }
}

fn inv(mode: &str, virt_type: &str) -> Inventory {
    let text = format!(
        r#"
[lab]
name = "d"
domain = "lab.test"
[network]
cidr = "10.50.0.0/24"
mode = "{mode}"
gateway = "10.50.0.1"
host_ip = "10.50.0.1"
bridge = "virbr-d"
libvirt_name = "d"
[libvirt]
pool = "d"
pool_path = "/var/lib/libvirt/images/d"
virt_type = "{virt_type}"
[services]
name = "services"
ip = "10.50.0.254"
mac = "52:54:00:50:00:fe"
disks = ["10GiB"]
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
"#
    );
    bootlab_inventory::parse(&text, Path::new("d.toml")).expect("valid")
}

fn level(findings: &[bootlab_bootlab::doctor::Finding], check: &str) -> Level {
    findings
        .iter()
        .filter(|f| f.check == check)
        .map(|f| f.level)
        .max_by_key(|l| match l {
            Level::Ok => 0,
            Level::Warn => 1,
            Level::Fail => 2,
        })
        .unwrap_or_else(|| panic!("no {check} finding in {findings:#?}"))
}

fn has_fail(findings: &[bootlab_bootlab::doctor::Finding]) -> bool {
    findings.iter().any(|f| f.level == Level::Fail)
}

#[test]
fn a_healthy_host_passes_every_check() {
    let f = run_checks(&inv("nat", "auto"), &Fed::default(), "qemu:///system");
    assert!(!has_fail(&f), "{f:#?}");
    for c in [
        "libvirtd",
        "kvm",
        "nested",
        "qemu",
        "ovmf",
        "cidr",
        "ports",
        "space",
        "qemu-access",
    ] {
        assert_eq!(level(&f, c), Level::Ok, "{c}: {f:#?}");
    }
}

#[test]
fn kvm_present_but_unusable_warns_with_auto_and_fails_with_kvm() {
    let fed = Fed {
        kvm: KvmState::GuestFails("a test guest did not finish within 20s".into()),
        ..Fed::default()
    };
    let f = run_checks(&inv("nat", "auto"), &fed, "qemu:///system");
    assert_eq!(level(&f, "kvm"), Level::Warn, "{f:#?}");
    assert!(
        f.iter()
            .any(|x| x.check == "kvm" && x.message.contains("KVM present but unusable"))
    );
    assert!(!has_fail(&f));
    let f = run_checks(&inv("nat", "kvm"), &fed, "qemu:///system");
    assert_eq!(level(&f, "kvm"), Level::Fail);
    assert!(
        f.iter()
            .any(|x| x.check == "kvm" && x.fix.contains("virt_type"))
    );
    // and auto then picks TCG
    assert_eq!(
        resolve_virt_type(VirtType::Auto, || fed.kvm.clone()),
        VirtType::Qemu
    );
    assert_eq!(
        resolve_virt_type(VirtType::Auto, || KvmState::GuestRuns),
        VirtType::Kvm
    );
    assert_eq!(
        resolve_virt_type(VirtType::Kvm, || KvmState::Absent),
        VirtType::Kvm
    );
}

#[test]
fn no_kvm_device_warns() {
    let fed = Fed {
        kvm: KvmState::Absent,
        ..Fed::default()
    };
    assert_eq!(
        level(
            &run_checks(&inv("nat", "auto"), &fed, "qemu:///system"),
            "kvm"
        ),
        Level::Warn
    );
    let fed = Fed {
        kvm: KvmState::NoAccess("Permission denied".into()),
        ..Fed::default()
    };
    assert_eq!(
        level(
            &run_checks(&inv("nat", "auto"), &fed, "qemu:///system"),
            "kvm"
        ),
        Level::Warn
    );
}

#[test]
fn nested_off_warns() {
    let fed = Fed {
        nested: Some(("kvm_amd".into(), false)),
        ..Fed::default()
    };
    let f = run_checks(&inv("nat", "auto"), &fed, "qemu:///system");
    assert_eq!(level(&f, "nested"), Level::Warn);
    assert!(f.iter().any(|x| x.fix.contains("nested=1")));
}

#[test]
fn cidr_clash_with_a_host_route_fails() {
    let mut fed = Fed::default();
    fed.routes.push(Route {
        iface: "wlan0".into(),
        net: "10.50.0.0/16".parse().unwrap(),
    });
    let f = run_checks(&inv("nat", "auto"), &fed, "qemu:///system");
    assert_eq!(level(&f, "cidr"), Level::Fail, "{f:#?}");
    assert!(f.iter().any(|x| x.message.contains("wlan0")));
    // the lab's own bridge route is no clash (after `up`)
    let mut fed = Fed::default();
    fed.routes.push(Route {
        iface: "virbr-d".into(),
        net: "10.50.0.0/24".parse().unwrap(),
    });
    assert_eq!(
        level(
            &run_checks(&inv("nat", "auto"), &fed, "qemu:///system"),
            "cidr"
        ),
        Level::Ok
    );
}

#[test]
fn cidr_or_bridge_clash_with_another_libvirt_network_fails() {
    let mut fed = Fed::default();
    if let Ok(l) = &mut fed.libvirt {
        l.networks.push(NetworkFacts {
            name: "other".into(),
            bridge: Some("virbr-d".into()),
            nets: vec!["10.50.0.128/25".parse().unwrap()],
        });
        // our own network (same name) is no clash
        l.networks.push(NetworkFacts {
            name: "d".into(),
            bridge: Some("virbr-d".into()),
            nets: vec!["10.50.0.0/24".parse().unwrap()],
        });
    }
    let f = run_checks(&inv("nat", "auto"), &fed, "qemu:///system");
    assert_eq!(level(&f, "cidr"), Level::Fail, "{f:#?}");
    assert_eq!(level(&f, "bridge"), Level::Fail, "{f:#?}");
    assert_eq!(
        f.iter().filter(|x| x.message.contains("\"d\"")).count(),
        0,
        "{f:#?}"
    );
}

#[test]
fn bridge_mode_needs_the_host_bridge() {
    let f = run_checks(&inv("bridge", "auto"), &Fed::default(), "qemu:///system");
    assert_eq!(level(&f, "bridge"), Level::Fail);
    let mut fed = Fed::default();
    fed.ifaces.push("virbr-d".into());
    assert_eq!(
        level(
            &run_checks(&inv("bridge", "auto"), &fed, "qemu:///system"),
            "bridge"
        ),
        Level::Ok
    );
}

#[test]
fn port_clash_on_the_lab_address_fails() {
    for (addr, port) in [
        (Ipv4Addr::UNSPECIFIED, 67),
        (Ipv4Addr::new(10, 50, 0, 1), 53),
        (Ipv4Addr::UNSPECIFIED, 69),
    ] {
        let mut fed = Fed::default();
        fed.bound.push(Bound {
            proto: "udp",
            addr,
            port,
        });
        let f = run_checks(&inv("nat", "auto"), &fed, "qemu:///system");
        assert_eq!(level(&f, "ports"), Level::Fail, "{addr}:{port} {f:#?}");
        assert!(
            f.iter()
                .any(|x| x.message.contains(&format!("{addr}:{port}")))
        );
    }
    // other addresses and TCP listeners on other ports are fine
    let mut fed = Fed::default();
    fed.bound.push(Bound {
        proto: "udp",
        addr: Ipv4Addr::new(192, 168, 122, 1),
        port: 67,
    });
    assert_eq!(
        level(
            &run_checks(&inv("nat", "auto"), &fed, "qemu:///system"),
            "ports"
        ),
        Level::Ok
    );
}

#[test]
fn libvirtd_unreachable_fails_with_a_fix() {
    let fed = Fed {
        libvirt: Err("Failed to connect socket".into()),
        ..Fed::default()
    };
    let f = run_checks(&inv("nat", "auto"), &fed, "qemu:///system");
    assert_eq!(level(&f, "libvirtd"), Level::Fail);
    assert!(
        f.iter()
            .any(|x| x.check == "libvirtd" && x.fix.contains("libvirtd"))
    );
}

/// Regression (issue 17): `doctor --connect URI` reported the inventory's
/// `libvirt.uri` instead of the URI it used.
#[test]
fn findings_name_the_uri_that_was_used() {
    let used = "qemu:///system?socket=/nonexistent/libvirt-sock";
    let fed = Fed {
        libvirt: Err("Failed to connect socket".into()),
        ..Fed::default()
    };
    let f = run_checks(&inv("nat", "auto"), &fed, used);
    let msg = &f.iter().find(|x| x.check == "libvirtd").unwrap().message;
    assert!(msg.contains(used), "{msg}");
    let f = run_checks(&inv("nat", "auto"), &Fed::default(), used);
    let msg = &f.iter().find(|x| x.check == "libvirtd").unwrap().message;
    assert!(msg.starts_with(used) && msg.contains("reachable"), "{msg}");
}

#[test]
fn missing_qemu_or_ovmf_for_uefi_nodes_fails() {
    let fed = Fed {
        qemu: None,
        ovmf: None,
        ..Fed::default()
    };
    let f = run_checks(&inv("nat", "auto"), &fed, "qemu:///system");
    assert_eq!(level(&f, "qemu"), Level::Fail);
    assert_eq!(level(&f, "ovmf"), Level::Fail);
}

#[test]
fn pool_directory_space_and_access() {
    let mut fed = Fed::default();
    fed.pool.free = Some(512 << 20);
    fed.pool.blocked = vec!["/var/lib/libvirt".into()];
    let f = run_checks(&inv("nat", "auto"), &fed, "qemu:///system");
    assert_eq!(level(&f, "space"), Level::Fail);
    assert_eq!(level(&f, "qemu-access"), Level::Fail);
    assert!(
        f.iter()
            .any(|x| x.fix.contains("chmod o+x /var/lib/libvirt"))
    );
    fed.pool.free = Some(15 << 30); // less than the 30 GiB the disks may grow to
    fed.pool.blocked.clear();
    assert_eq!(
        level(
            &run_checks(&inv("nat", "auto"), &fed, "qemu:///system"),
            "space"
        ),
        Level::Warn
    );
}

#[test]
fn remote_uri_skips_host_checks_and_says_where_to_run_them() {
    let fed = Fed {
        kvm: KvmState::Absent,
        qemu: None,
        ..Fed::default()
    };
    let f = run_checks(&inv("nat", "auto"), &fed, "qemu+ssh://root@hv/system");
    assert!(!f.iter().any(|x| x.check == "kvm" || x.check == "qemu"));
    assert!(
        f.iter()
            .any(|x| x.check == "host" && x.fix.contains("on the hypervisor"))
    );
}

#[test]
fn the_real_kvm_probe_reports_something() {
    // This machine's answer is not asserted (hosts differ); the probe must
    // finish and classify.
    let Some(q) = bootlab_bootlab::doctor::local_qemu() else {
        panic!("qemu-system-x86_64 must be installed (Debian qemu-system-x86)");
    };
    let s = bootlab_bootlab::doctor::probe_kvm_guest(&q, std::time::Duration::from_secs(30));
    eprintln!("kvm probe: {s:?}");
}
