//! The proof that bootlab boots machines: real BIOS (SeaBIOS + the NIC's
//! iPXE ROM) and UEFI (OVMF with native EDK2 PXE -> TFTP snponly.efi -> iPXE
//! -> HTTP) QEMU guests PXE-boot a Debian cloud kernel and a busybox
//! initramfs from bootlabd inside a network namespace.
//!
//! Topology: namespace `bl-e2e-<pid>` with bridge `br0` (10.77.0.254/24, the
//! services address) and one tap per guest. Everything is removed on drop,
//! also when an assertion fails. Needs root, QEMU, OVMF, ipxe-qemu,
//! busybox-static, cpio and the packages `boot-assets/gather.sh` copies from.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bootlabd");
const SERVICES: &str = "10.77.0.254";
const BOOT_DEADLINE: Duration = Duration::from_secs(240);

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace with a bridge and taps; removed on drop.
struct Netns {
    name: String,
    children: Vec<Child>,
}

impl Netns {
    fn new(taps: &[&str]) -> Self {
        let name = format!("bl-e2e-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Self {
            name,
            children: Vec::new(),
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns.ip(&["link", "add", "br0", "type", "bridge"]);
        ns.ip(&["addr", "add", &format!("{SERVICES}/24"), "dev", "br0"]);
        ns.ip(&["link", "set", "br0", "up"]);
        for tap in taps {
            ns.ip(&["tuntap", "add", "dev", tap, "mode", "tap"]);
            ns.ip(&["link", "set", tap, "master", "br0"]);
            ns.ip(&["link", "set", tap, "up"]);
        }
        ns
    }

    fn ip(&self, args: &[&str]) {
        run(Command::new("ip")
            .args(["netns", "exec", &self.name, "ip"])
            .args(args));
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    fn spawn(&mut self, mut cmd: Command) {
        self.children
            .push(cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}")));
    }

    fn curl(&self, url: &str) -> String {
        run(self.command("curl").args(["-sS", "--max-time", "10", url]))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
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

fn lab_toml(assets: &Path, data: &Path) -> String {
    format!(
        r#"[lab]
name = "e2e"
domain = "lab.test"

[network]
cidr = "10.77.0.0/24"
mode = "bridge"
bridge = "br0"
gateway = "10.77.0.1"
lease = "1h"

[services]
ip = "{SERVICES}"
mac = "52:54:00:77:00:fe"
interface = "br0"
listen = {{ dhcp = "0.0.0.0:67", dns = "{SERVICES}:53", tftp = "0.0.0.0:69", http = "0.0.0.0:8080" }}
data_dir = "{data}"
assets_dir = "{assets}"
firewall = false

[profiles.testos]
kernel = "vmlinuz"
initrd = ["initrd.img"]
args = "console=ttyS0 panic=-1 bootlab.node={{{{ node.name }}}} bootlab.token={{{{ vars.token }}}}"

[[nodes]]
name = "bios-0"
profile = "testos"
firmware = "bios"
mac = "52:54:00:77:00:10"
ip = "10.77.0.10"
vars = {{ token = "bios-e9c1" }}

[[nodes]]
name = "uefi-0"
profile = "testos"
firmware = "uefi"
mac = "52:54:00:77:00:11"
ip = "10.77.0.11"
vars = {{ token = "uefi-47ad" }}
"#,
        data = data.display(),
        assets = assets.display()
    )
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
    let data = work.path().join("data");
    std::fs::create_dir_all(&assets).unwrap();
    run(Command::new(repo("tests/e2e/build-test-os.sh")).arg(&assets));
    run(Command::new(repo("boot-assets/gather.sh")).arg(&assets));
    let config = work.path().join("lab.toml");
    std::fs::write(&config, lab_toml(&assets, &data)).unwrap();

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
    let mut ns = Netns::new(&["tap0", "tap1", "tap2"]);
    let log = std::fs::File::create(work.path().join("bootlabd.log")).unwrap();
    let mut daemon = ns.command(BIN);
    daemon
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info,bootlab=debug");
    daemon.stdout(Stdio::null()).stderr(log);
    ns.spawn(daemon);
    // Wait until HTTP answers: the daemon binds every service before that.
    let deadline = Instant::now() + Duration::from_secs(30);
    while ns
        .command("curl")
        .args([
            "-sf",
            "--max-time",
            "2",
            &format!("http://{SERVICES}:8080/metrics"),
        ])
        .stdout(Stdio::null())
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        assert!(
            Instant::now() < deadline,
            "bootlabd did not come up: {}",
            std::fs::read_to_string(work.path().join("bootlabd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

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
                    std::fs::read_to_string(work.path().join("bootlabd.log")).unwrap_or_default()
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
        let body = ns.curl(&format!("http://{SERVICES}:8080/api/v1/machines/{}", g.mac));
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
    let all: serde_json::Value =
        serde_json::from_str(&ns.curl(&format!("http://{SERVICES}:8080/api/v1/machines"))).unwrap();
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
    let metrics = ns.curl(&format!("http://{SERVICES}:8080/metrics"));
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
