//! The proof that bootlab boots machines: real BIOS (SeaBIOS + the NIC's
//! iPXE ROM) and UEFI (OVMF with native EDK2 PXE -> TFTP snponly.efi -> iPXE
//! -> HTTP) QEMU guests PXE-boot a Debian cloud kernel and a busybox
//! initramfs from bootlabd inside a network namespace.
//!
//! Topology: a testkit namespace (`bltk-<pid>-<seq>-e2e`) with bridge `br0`
//! (10.77.0.254/24, the services address) and one tap per guest. Everything
//! is removed on drop, also when an assertion fails. Needs root, QEMU, OVMF, ipxe-qemu,
//! busybox-static, cpio and the packages `boot-assets/gather.sh` copies from.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bootlab_testkit::lab::wire;
use bootlab_testkit::tools::{run, run_text};
use bootlab_testkit::{Daemon, LabBuilder, Netns, repo_root};

const BIN: &str = env!("CARGO_BIN_EXE_bootlabd");
const SERVICES: &str = "10.77.0.254";
const BOOT_DEADLINE: Duration = Duration::from_secs(240);

/// The namespace: bridge `br0` with the services address and one tap per
/// guest.
fn netns(taps: &[&str]) -> Netns {
    let ns = Netns::new("e2e");
    ns.add_bridge("br0");
    ns.add_addr("br0", &format!("{SERVICES}/24"));
    for tap in taps {
        ns.add_tap(tap, "br0");
    }
    ns
}

fn curl(ns: &Netns, url: &str) -> String {
    run_text(ns.command("curl").args(["-sS", "--max-time", "10", url]))
}

struct Guest {
    name: &'static str,
    mac: &'static str,
    tap: &'static str,
    uefi: bool,
    serial: PathBuf,
}

fn qemu(ns: &Netns, g: &Guest, work: &Path) -> Command {
    let mut c = ns.command("qemu-system-x86_64");
    c.args([
        "-accel",
        "tcg",
        "-m",
        "512",
        "-display",
        "none",
        "-no-reboot",
        "-monitor",
        "none",
    ]);
    c.arg("-serial").arg(format!("file:{}", g.serial.display()));
    c.args([
        "-netdev",
        &format!("tap,id=n0,ifname={},script=no,downscript=no", g.tap),
    ]);
    if g.uefi {
        // No option ROM: OVMF's own virtio-net driver and EDK2 PXE must
        // fetch snponly.efi over TFTP first.
        c.args([
            "-device",
            &format!(
                "virtio-net-pci,netdev=n0,mac={},romfile=,bootindex=1",
                g.mac
            ),
        ]);
        let vars = work.join(format!("{}-vars.fd", g.name));
        std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars).unwrap();
        c.args([
            "-drive",
            "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
        ]);
        c.arg("-drive")
            .arg(format!("if=pflash,format=raw,file={}", vars.display()));
    } else {
        // SeaBIOS with the NIC's iPXE option ROM (ipxe-qemu).
        c.args([
            "-device",
            &format!("virtio-net-pci,netdev=n0,mac={}", g.mac),
        ]);
        c.args(["-boot", "n"]);
    }
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Bridge mode on br0, services 10.77.0.254, two reserved nodes booting
/// the test OS with their own name and token on the kernel line.
fn lab(dir: &Path) -> LabBuilder {
    LabBuilder::netns().dirs(dir).edit(|f| {
        f.lab.name = "e2e".into();
        f.network.mode = "bridge".into();
        f.network.bridge = Some("br0".into());
        f.network.host_ip = None;
        f.libvirt = Default::default();
        let s = &mut f.services;
        s.ip = SERVICES.into();
        s.mac = Some("52:54:00:77:00:fe".into());
        s.interface = Some("br0".into());
        s.listen.dhcp = Some("0.0.0.0:67".into());
        s.listen.dns = Some(format!("{SERVICES}:53"));
        s.listen.tftp = Some("0.0.0.0:69".into());
        s.listen.http = Some("0.0.0.0:8080".into());
        f.profiles.clear();
        f.profiles.insert(
            "testos".into(),
            wire::ProfileSection {
                loader: "ipxe".into(),
                kernel: "vmlinuz".into(),
                initrd: vec!["initrd.img".into()],
                args: "console=ttyS0 panic=-1 bootlab.node={{ node.name }} bootlab.token={{ vars.token }}"
                    .into(),
                template: None,
            },
        );
        f.roles.clear();
        let base = f.nodes[0].clone();
        f.nodes = [
            ("bios-0", "bios", "52:54:00:77:00:10", "10.77.0.10", "bios-e9c1"),
            ("uefi-0", "uefi", "52:54:00:77:00:11", "10.77.0.11", "uefi-47ad"),
        ]
        .into_iter()
        .map(|(name, firmware, mac, ip, token)| wire::NodeSection {
            name: name.into(),
            role: None,
            profile: Some("testos".into()),
            firmware: Some(firmware.into()),
            mac: Some(mac.into()),
            ip: ip.into(),
            vars: [("token".to_owned(), wire::VarValue::Str(token.into()))].into(),
            ..base.clone()
        })
        .collect();
    })
}

fn marker(serial: &Path) -> Option<String> {
    let bytes = std::fs::read(serial).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    // Only whole lines: the console file is read while QEMU is still
    // writing it, so the last segment may be a line cut in half.
    let complete = &text[..text.rfind('\n')? + 1];
    complete
        .lines()
        .find(|l| l.contains("BOOTLAB-MARKER"))
        .map(|l| l.trim().to_owned())
}

/// The stage kinds of a machine's events, in order, from the API.
fn kinds(json: &serde_json::Value) -> Vec<String> {
    json["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    format!(
                        "{}:{}",
                        e["service"].as_str().unwrap_or(""),
                        e["kind"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn position(kinds: &[String], want: &str) -> usize {
    kinds
        .iter()
        .position(|k| k == want)
        .unwrap_or_else(|| panic!("no {want} event in {kinds:?}"))
}

#[test]
fn bios_and_uefi_guests_pxe_boot_their_own_profiles() {
    let work = tempfile::tempdir().unwrap();
    let assets = work.path().join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    run(Command::new(repo_root().join("tests/e2e/build-test-os.sh")).arg(&assets));
    run(Command::new(repo_root().join("boot-assets/gather.sh")).arg(&assets));
    let config = lab(work.path()).write(&work.path().join("lab.toml"));

    let guests = [
        Guest {
            name: "bios-0",
            mac: "52:54:00:77:00:10",
            tap: "tap0",
            uefi: false,
            serial: work.path().join("bios-0.log"),
        },
        Guest {
            name: "uefi-0",
            mac: "52:54:00:77:00:11",
            tap: "tap1",
            uefi: true,
            serial: work.path().join("uefi-0.log"),
        },
        Guest {
            name: "stranger",
            mac: "52:54:00:77:00:99",
            tap: "tap2",
            uefi: false,
            serial: work.path().join("stranger.log"),
        },
    ];
    let mut ns = netns(&["tap0", "tap1", "tap2"]);
    // Ready once every service is bound.
    let mut daemon = ns.command(BIN);
    daemon
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info,bootlab=debug");
    let mut daemon = Daemon::spawn(daemon);

    let started = Instant::now();
    for g in &guests {
        let cmd = qemu(&ns, g, work.path());
        ns.spawn(cmd);
    }
    let known = &guests[..2];
    let mut times = Vec::new();
    for g in known {
        let line = loop {
            if let Some(line) = marker(&g.serial) {
                break line;
            }
            if started.elapsed() > BOOT_DEADLINE {
                panic!(
                    "{} showed no marker within {:?}; serial:\n{}\nbootlabd:\n{}",
                    g.name,
                    BOOT_DEADLINE,
                    String::from_utf8_lossy(&std::fs::read(&g.serial).unwrap_or_default()),
                    daemon.log()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        times.push((g.name, started.elapsed()));
        // The right profile went to the right MAC.
        assert!(line.contains(&format!("bootlab.node={}", g.name)), "{line}");
        let token = if g.uefi { "uefi-47ad" } else { "bios-e9c1" };
        assert!(line.contains(&format!("bootlab.token={token}")), "{line}");
        assert!(
            line.contains("initrd=initrd.img"),
            "UEFI needs initrd= on the kernel line: {line}"
        );
    }
    eprintln!("boot times (QEMU start to marker): {times:?}");

    for g in known {
        let body = curl(
            &ns,
            &format!("http://{SERVICES}:8080/api/v1/machines/{}", g.mac),
        );
        let m: serde_json::Value = serde_json::from_str(&body).unwrap();
        let reserved = if g.uefi { "10.77.0.11" } else { "10.77.0.10" };
        assert_eq!(m["ip"], reserved, "{body}");
        assert_eq!(m["name"], g.name, "{body}");
        let k = kinds(&m);
        let ack = position(&k, "dhcp:ack");
        let script = position(&k, "http:script");
        let kernel = position(&k, "http:kernel");
        let initrd = position(&k, "http:initrd");
        assert!(ack < script && script < kernel && kernel < initrd, "{k:?}");
        if g.uefi {
            let loader = position(&k, "tftp:loader");
            assert!(
                ack < loader && loader < script,
                "UEFI fetched snponly.efi over TFTP first: {k:?}"
            );
        }
    }

    // Reservation-only: the stranger asked and got nothing — no lease, no
    // timeline entry with an offer or an address, counted as unknown_mac.
    let stranger = guests[2].mac;
    let all: serde_json::Value = serde_json::from_str(&curl(
        &ns,
        &format!("http://{SERVICES}:8080/api/v1/machines"),
    ))
    .unwrap();
    if let Some(m) = all
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mac"] == stranger)
    {
        let k = kinds(m);
        assert!(
            !k.iter().any(|k| k == "dhcp:offer" || k == "dhcp:ack"),
            "no lease for an unknown MAC: {m}"
        );
        assert!(m["ip"].is_null(), "{m}");
    }
    let metrics = curl(&ns, &format!("http://{SERVICES}:8080/metrics"));
    let dropped: u64 = metrics
        .lines()
        .find(|l| l.starts_with("bootlab_dhcp_dropped_total{reason=\"unknown_mac\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no unknown_mac drop counter in:\n{metrics}"));
    assert!(
        dropped > 0,
        "the stranger's requests were counted as unknown_mac drops"
    );
    assert!(marker(&guests[2].serial).is_none());
}
