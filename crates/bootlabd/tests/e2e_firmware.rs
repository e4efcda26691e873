//! Every firmware path a lab meets, each booted by a real firmware under
//! QEMU (TCG) from bootlabd in a network namespace, to the marker kernel's
//! line with the node's own profile:
//!
//! | test | firmware | chain |
//! |---|---|---|
//! | `uefi_http_boot_ipxe` | OVMF HTTP boot (arch 16, PXE off) | HTTP `ipxe.efi` -> iPXE -> script -> kernel |
//! | `uefi_http_boot_grub` | OVMF HTTP boot | HTTP `grubx64-http.efi` -> `grub/grub.cfg` -> kernel over HTTP |
//! | `proxy_dhcp_bios_and_uefi` | SeaBIOS + iPXE ROM, OVMF PXE; dnsmasq hands out addresses | proxy offers (67) and acks (4011) only |
//! | `arm64_uefi_grub` | AAVMF (qemu-system-aarch64) PXE (arch 11) | TFTP `grubnetaa64.efi` -> `grub/grub.cfg` -> arm64 kernel |
//! | `secure_boot_shim_grub` | OVMF Secure Boot, Microsoft keys | TFTP `shimx64.efi` -> `grubx64.efi` -> signed kernel over TFTP |
//! | `secure_boot_refuses_an_unsigned_loader` | OVMF Secure Boot | TFTP `snponly.efi` (unsigned): refused by the firmware |
//!
//! Each boot is also checked at the packet level: tcpdump records the DHCP
//! exchange on the bridge, and the test reads what the firmware sent
//! (options 60, 93, 97, 43) and what bootlabd answered (file / URL,
//! next-server, option 60), so a regression names the option that broke.
//!
//! The guests run one at a time (QEMU under TCG on a shared machine): every
//! test holds [`QEMU`]. Assets (gather.sh --arm64, the amd64 and arm64 test
//! OS) are built once into `target/e2e-cache/firmware-assets-<hash>` and
//! reused. Needs root and the packages in tests/apt-packages.txt; a missing
//! tool fails the test.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

mod common;
use bootlab_testkit::{Netns, veth};
use common::{repo, run_ok};

const BIN: &str = env!("CARGO_BIN_EXE_bootlabd");
const SERVICES: &str = "10.77.0.254";
/// One boot, QEMU start to marker, at most (TCG on a busy 2-core machine).
const BOOT_DEADLINE: Duration = Duration::from_secs(420);
/// QEMU guests run one at a time.
static QEMU: Mutex<()> = Mutex::new(());

fn need(tool: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "{tool} is required (tests/apt-packages.txt)");
}

fn need_file(path: &str, package: &str) {
    assert!(
        Path::new(path).is_file(),
        "{path} is required (package {package}, tests/apt-packages.txt)"
    );
}

/// The shared assets: first stages (gather.sh --arm64), the amd64 test OS
/// at the root, the arm64 one under `arm64/`. Built once per script
/// version, cached under target/.
fn assets() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let scripts = [
            "boot-assets/gather.sh",
            "boot-assets/apt-arch.sh",
            "tests/e2e/build-test-os.sh",
        ];
        let mut h = DefaultHasher::new();
        for s in scripts {
            std::fs::read(repo(s)).unwrap().hash(&mut h);
        }
        let cache = std::env::var_os("BOOTLAB_E2E_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo("target/e2e-cache"));
        let dir = cache.join(format!("firmware-assets-{:016x}", h.finish()));
        if !dir.join("READY").exists() {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            run_ok(
                Command::new(repo("boot-assets/gather.sh"))
                    .env("BOOTLAB_APT_ARM64_STATE", cache.join("apt-arm64"))
                    .arg("--arm64")
                    .arg(&dir),
            );
            run_ok(Command::new(repo("tests/e2e/build-test-os.sh")).arg(&dir));
            run_ok(
                Command::new(repo("tests/e2e/build-test-os.sh"))
                    .args(["--arch", "arm64"])
                    .arg(dir.join("arm64")),
            );
            std::fs::write(dir.join("READY"), b"").unwrap();
        }
        dir
    })
}

/// A network namespace (testkit's) with bridge `br0` at the services
/// address and one tap per guest; optionally a second namespace (another
/// host on the link, e.g. a DHCP server) joined by a veth. Everything is
/// removed on drop, also when an assertion fails.
struct Lab {
    ns: Netns,
    other: Option<Netns>,
    children: Vec<Child>,
    work: tempfile::TempDir,
}

impl Lab {
    fn new(taps: &[&str]) -> Self {
        let ns = Netns::new("fw");
        ns.add_bridge("br0");
        ns.add_addr("br0", &format!("{SERVICES}/24"));
        for tap in taps {
            ns.add_tap(tap, "br0");
        }
        Self {
            ns,
            other: None,
            children: Vec::new(),
            work: tempfile::tempdir().unwrap(),
        }
    }

    /// A second host on the link: its own namespace, interface `lan0` at
    /// `addr/24`, its veth peer in the bridge. Returns the namespace's name.
    fn other_host(&mut self, addr: &str) -> String {
        let other = Netns::new("fwo");
        veth(&self.ns, "vpeer", &other, "lan0").up();
        self.ns.set_master("vpeer", "br0");
        other.add_addr("lan0", &format!("{addr}/24"));
        let name = other.name().to_owned();
        self.other = Some(other);
        name
    }

    fn command(&self, program: &str) -> Command {
        self.ns.command(program)
    }

    fn spawn(&mut self, mut cmd: Command) -> usize {
        self.children
            .push(cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}")));
        self.children.len() - 1
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    fn curl(&self, url: &str) -> String {
        run_ok(self.command("curl").args(["-sS", "--max-time", "10", url]))
    }

    /// Starts tcpdump on br0 for the DHCP ports; returns the capture file.
    fn capture(&mut self) -> PathBuf {
        need("tcpdump");
        let file = self.path("dhcp.pcap");
        let mut c = self.command("tcpdump");
        c.args(["-i", "br0", "-U", "-s", "0", "-w"])
            .arg(&file)
            .args([
                "udp", "and", "(port", "67", "or", "port", "68", "or", "port", "4011)",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.spawn(c);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !file.exists() {
            assert!(Instant::now() < deadline, "tcpdump did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        // tcpdump opens the file before its filter is attached.
        std::thread::sleep(Duration::from_millis(500));
        file
    }

    /// Starts bootlabd with `toml`; waits until HTTP answers.
    fn bootlabd(&mut self, toml: &str) {
        let config = self.path("lab.toml");
        std::fs::write(&config, toml).unwrap();
        let log = std::fs::File::create(self.path("bootlabd.log")).unwrap();
        let mut daemon = self.command(BIN);
        daemon
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info,bootlab=debug")
            .stdout(Stdio::null())
            .stderr(log);
        self.spawn(daemon);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self
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
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("bootlabd.log")).unwrap_or_default()
    }

    /// The machine's API record.
    fn machine(&self, mac: &str) -> serde_json::Value {
        let body = self.curl(&format!("http://{SERVICES}:8080/api/v1/machines/{mac}"));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }
}

impl Drop for Lab {
    /// The guests and daemons stop first; then the namespaces go (their
    /// own drop).
    fn drop(&mut self) {
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// How a guest boots.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Firmware {
    /// SeaBIOS with the NIC's iPXE option ROM.
    Bios,
    /// OVMF, native PXE first.
    UefiPxe,
    /// OVMF with PXE off: straight to HTTP boot over IPv4.
    UefiHttp,
    /// OVMF with Secure Boot enforced and Microsoft's keys enrolled.
    SecureBoot,
    /// AAVMF on qemu-system-aarch64.
    Arm64,
}

struct Guest {
    name: &'static str,
    mac: &'static str,
    tap: &'static str,
    firmware: Firmware,
}

impl Guest {
    fn serial(&self, lab: &Lab) -> PathBuf {
        lab.path(&format!("{}.serial", self.name))
    }

    fn start(&self, lab: &mut Lab) -> usize {
        let mut c = match self.firmware {
            Firmware::Arm64 => {
                need("qemu-system-aarch64");
                let mut c = lab.command("qemu-system-aarch64");
                c.args(["-machine", "virt", "-cpu", "cortex-a57"]);
                c
            }
            _ => {
                need("qemu-system-x86_64");
                lab.command("qemu-system-x86_64")
            }
        };
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
        c.arg("-serial")
            .arg(format!("file:{}", self.serial(lab).display()));
        c.args([
            "-netdev",
            &format!("tap,id=n0,ifname={},script=no,downscript=no", self.tap),
        ]);
        let (code, vars) = match self.firmware {
            Firmware::Bios => {
                c.args([
                    "-device",
                    &format!("virtio-net-pci,netdev=n0,mac={}", self.mac),
                    "-boot",
                    "n",
                ]);
                (None, None)
            }
            Firmware::UefiPxe | Firmware::UefiHttp => (
                Some("/usr/share/OVMF/OVMF_CODE_4M.fd"),
                Some("/usr/share/OVMF/OVMF_VARS_4M.fd"),
            ),
            Firmware::SecureBoot => {
                // SMM keeps the variable store out of the guest's reach, as
                // the Secure Boot build requires.
                c.args(["-machine", "q35,smm=on"]);
                c.args(["-global", "driver=cfi.pflash01,property=secure,value=on"]);
                (
                    Some("/usr/share/OVMF/OVMF_CODE_4M.ms.fd"),
                    Some("/usr/share/OVMF/OVMF_VARS_4M.ms.fd"),
                )
            }
            Firmware::Arm64 => (
                Some("/usr/share/AAVMF/AAVMF_CODE.fd"),
                Some("/usr/share/AAVMF/AAVMF_VARS.fd"),
            ),
        };
        if let (Some(code), Some(vars)) = (code, vars) {
            let package = if self.firmware == Firmware::Arm64 {
                "qemu-efi-aarch64"
            } else {
                "ovmf"
            };
            need_file(code, package);
            need_file(vars, package);
            // No option ROM: the firmware's own network stack boots.
            c.args([
                "-device",
                &format!(
                    "virtio-net-pci,netdev=n0,mac={},romfile=,bootindex=1",
                    self.mac
                ),
            ]);
            let copy = lab.path(&format!("{}-vars.fd", self.name));
            std::fs::copy(vars, &copy).unwrap();
            c.arg("-drive")
                .arg(format!("if=pflash,format=raw,readonly=on,file={code}"));
            c.arg("-drive")
                .arg(format!("if=pflash,format=raw,file={}", copy.display()));
        }
        if self.firmware == Firmware::UefiHttp {
            c.args([
                "-fw_cfg",
                "name=opt/org.tianocore/IPv4PXESupport,string=n",
                "-fw_cfg",
                "name=opt/org.tianocore/IPv6PXESupport,string=n",
            ]);
        }
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        lab.spawn(c)
    }

    fn console(&self, lab: &Lab) -> String {
        String::from_utf8_lossy(&std::fs::read(self.serial(lab)).unwrap_or_default()).into_owned()
    }

    /// Waits for a whole line containing `needle` on the serial console;
    /// fails with the console and bootlabd's log after [`BOOT_DEADLINE`].
    fn wait_line(&self, lab: &mut Lab, child: usize, needle: &str) -> String {
        self.wait_line_with(lab, child, &[needle])
    }

    /// Waits for a whole line containing every one of `needles`.
    fn wait_line_with(&self, lab: &mut Lab, child: usize, needles: &[&str]) -> String {
        let started = Instant::now();
        loop {
            let text = self.console(lab);
            if let Some(end) = text.rfind('\n') {
                if let Some(l) = text[..=end]
                    .lines()
                    .find(|l| needles.iter().all(|n| l.contains(n)))
                {
                    return l.trim().to_owned();
                }
            }
            let exited = lab.children[child].try_wait().ok().flatten().is_some();
            if exited || started.elapsed() > BOOT_DEADLINE {
                panic!(
                    "{} ({:?}) showed no line with {needles:?} within {:?} (QEMU exited: {exited}); serial:\n{}\nbootlabd:\n{}",
                    self.name,
                    self.firmware,
                    BOOT_DEADLINE,
                    text,
                    lab.log()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Boots to the marker; checks the kernel line is this node's profile.
    fn boot_to_marker(&self, lab: &mut Lab, token: &str) -> Duration {
        let started = Instant::now();
        let child = self.start(lab);
        let line = self.wait_line(lab, child, "BOOTLAB-MARKER");
        assert!(
            line.contains(&format!("bootlab.node={}", self.name)),
            "{} booted another node's profile: {line}",
            self.name
        );
        assert!(line.contains(&format!("bootlab.token={token}")), "{line}");
        let took = started.elapsed();
        eprintln!("{} ({:?}): marker after {took:?}", self.name, self.firmware);
        let _ = lab.children[child].kill();
        let _ = lab.children[child].wait();
        took
    }
}

/// The lab inventory: `nodes` as (name, mac, ip, profile, token);
/// `profiles` as TOML tables; `dhcp` the DHCP mode.
fn lab_toml(
    lab: &Lab,
    dhcp: &str,
    profiles: &str,
    nodes: &[(&str, &str, &str, &str, &str)],
) -> String {
    let mut t = format!(
        r#"[lab]
name = "fw"
domain = "lab.test"

[network]
cidr = "10.77.0.0/24"
mode = "bridge"
bridge = "br0"
gateway = "10.77.0.1"
lease = "1h"
dhcp = "{dhcp}"

[services]
ip = "{SERVICES}"
mac = "52:54:00:77:00:fe"
interface = "br0"
listen = {{ dhcp = "0.0.0.0:67", dns = "{SERVICES}:53", tftp = "0.0.0.0:69", http = "0.0.0.0:8080" }}
data_dir = "{data}"
assets_dir = "{assets}"
firewall = false

{profiles}
"#,
        data = lab.path("data").display(),
        assets = assets().display(),
    );
    for (name, mac, ip, profile, token) in nodes {
        t.push_str(&format!(
            "\n[[nodes]]\nname = \"{name}\"\nprofile = \"{profile}\"\nfirmware = \"uefi\"\nmac = \"{mac}\"\nip = \"{ip}\"\nvars = {{ token = \"{token}\" }}\n"
        ));
    }
    t
}

/// A profile of the amd64 test OS with `loader`.
fn amd64_profile(name: &str, loader: &str) -> String {
    format!(
        "[profiles.{name}]\nloader = \"{loader}\"\nkernel = \"vmlinuz\"\ninitrd = [\"initrd.img\"]\n\
         args = \"console=ttyS0 panic=-1 bootlab.node={{{{ node.name }}}} bootlab.token={{{{ vars.token }}}}\"\n"
    )
}

// ---------------------------------------------------------------------------
// The DHCP exchange at the packet level.

/// One DHCP datagram from the capture.
#[derive(Debug)]
struct Dhcp {
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    /// 1 = BOOTREQUEST, 2 = BOOTREPLY.
    op: u8,
    msg_type: u8,
    mac: String,
    yiaddr: Ipv4Addr,
    siaddr: Ipv4Addr,
    file: String,
    options: Vec<(u8, Vec<u8>)>,
}

impl Dhcp {
    fn opt(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_slice())
    }

    fn text(&self, code: u8) -> Option<String> {
        self.opt(code)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// The boot file: option 67, else the `file` field.
    fn boot_file(&self) -> String {
        self.text(67)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| self.file.clone())
    }
}

/// Reads every DHCP datagram of a pcap file (Ethernet, IPv4, UDP).
fn read_pcap(path: &Path) -> Vec<Dhcp> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(b.len() >= 24, "empty capture {}", path.display());
    let le = b[..4] == [0xd4, 0xc3, 0xb2, 0xa1];
    let u32_at = |o: usize| {
        let a = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    assert_eq!(u32_at(20), 1, "capture is not Ethernet");
    let mut out = Vec::new();
    let mut o = 24;
    while o + 16 <= b.len() {
        let caplen = u32_at(o + 8) as usize;
        let frame = &b[o + 16..(o + 16 + caplen).min(b.len())];
        o += 16 + caplen;
        if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ip[9] != 17 || ip.len() < ihl + 8 {
            continue;
        }
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        let udp = &ip[ihl..];
        let sport = u16::from_be_bytes([udp[0], udp[1]]);
        let dport = u16::from_be_bytes([udp[2], udp[3]]);
        let d = &udp[8..];
        if d.len() < 240 || d[236..240] != [99, 130, 83, 99] {
            continue;
        }
        let mut options = Vec::new();
        let mut i = 240;
        while i < d.len() && d[i] != 255 {
            if d[i] == 0 {
                i += 1;
                continue;
            }
            let (code, len) = (d[i], usize::from(*d.get(i + 1).unwrap_or(&0)));
            let v = d.get(i + 2..i + 2 + len).unwrap_or(&[]).to_vec();
            options.push((code, v));
            i += 2 + len;
        }
        let ip4 = |at: usize| Ipv4Addr::new(d[at], d[at + 1], d[at + 2], d[at + 3]);
        let file_end = d[108..236].iter().position(|&c| c == 0).unwrap_or(128);
        let msg_type = options
            .iter()
            .find(|(c, _)| *c == 53)
            .and_then(|(_, v)| v.first().copied())
            .unwrap_or(0);
        out.push(Dhcp {
            src: (src, sport),
            dst: (dst, dport),
            op: d[0],
            msg_type,
            mac: d[28..34]
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
            yiaddr: ip4(16),
            siaddr: ip4(20),
            file: String::from_utf8_lossy(&d[108..108 + file_end]).into_owned(),
            options,
        });
    }
    out
}

/// What one firmware stage must have sent, and what bootlabd must have
/// answered it.
struct Expect<'a> {
    mac: &'a str,
    /// Option 60 prefix as the firmware sent it (`PXEClient:Arch:00007`).
    class_prefix: &'a str,
    /// Option 93.
    arch: u16,
    /// bootlabd's answer: message type (2 offer, 5 ack), boot file or URL.
    answer_type: u8,
    file: &'a str,
    /// Option 60 in the answer (`HTTPClient` echoed, `PXEClient` in proxy mode).
    answer_class: Option<&'a str>,
    /// Whether the answer may carry an address (false in proxy mode).
    with_address: bool,
    /// The answer's source port (67, or 4011 for proxyDHCP boot requests).
    answer_port: u16,
}

/// Checks the capture against `want`; every failure names the option.
fn check_exchange(capture: &Path, want: &Expect<'_>) {
    let all = read_pcap(capture);
    let summary = || {
        all.iter()
            .map(|d| {
                format!(
                    "{}:{} -> {}:{} op={} type={} mac={} yiaddr={} siaddr={} file={:?} 60={:?} 93={:?}",
                    d.src.0, d.src.1, d.dst.0, d.dst.1, d.op, d.msg_type, d.mac, d.yiaddr, d.siaddr,
                    d.boot_file(), d.text(60), d.opt(93)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    // The firmware's request: its options as sent.
    let req = all
        .iter()
        .find(|d| {
            d.op == 1
                && d.mac == want.mac
                && d.text(60).is_some_and(|c| c.starts_with(want.class_prefix))
        })
        .unwrap_or_else(|| {
            panic!(
                "no request from {} with option 60 starting {:?} (vendor class as the firmware sends it):\n{}",
                want.mac,
                want.class_prefix,
                summary()
            )
        });
    let arch = req
        .opt(93)
        .filter(|v| v.len() >= 2)
        .map(|v| u16::from_be_bytes([v[0], v[1]]));
    assert_eq!(
        arch,
        Some(want.arch),
        "option 93 (client architecture) from {}: the firmware sent {:?}\n{}",
        want.mac,
        req.opt(93),
        summary()
    );
    let uuid = req.opt(97);
    assert!(
        uuid.is_some_and(|u| u.len() == 17 && u[0] == 0),
        "option 97 (client machine UUID, type 0 + 16 bytes) from {}: {uuid:?}",
        want.mac
    );
    eprintln!(
        "{}: option 60 {:?}, 93 {:?}, 97 {} bytes, 43 {:?}",
        want.mac,
        req.text(60),
        arch,
        uuid.map_or(0, <[u8]>::len),
        req.opt(43)
    );
    // bootlabd's answer to it.
    let services: Ipv4Addr = SERVICES.parse().unwrap();
    let answers: Vec<&Dhcp> = all
        .iter()
        .filter(|d| {
            d.op == 2
                && d.mac == want.mac
                && d.src.0 == services
                && d.src.1 == want.answer_port
                && d.msg_type == want.answer_type
        })
        .collect();
    assert!(
        !answers.is_empty(),
        "bootlabd sent {} no DHCP message type {} from port {}:\n{}",
        want.mac,
        want.answer_type,
        want.answer_port,
        summary()
    );
    let a = answers
        .iter()
        .find(|a| a.boot_file() == want.file)
        .unwrap_or_else(|| {
            panic!(
                "option 67 / file (boot file) to {}: want {:?}, bootlabd answered {:?}\n{}",
                want.mac,
                want.file,
                answers.iter().map(|a| a.boot_file()).collect::<Vec<_>>(),
                summary()
            )
        });
    if let Some(class) = want.answer_class {
        assert_eq!(
            a.text(60).as_deref(),
            Some(class),
            "option 60 (vendor class) in bootlabd's answer to {}",
            want.mac
        );
    }
    if !want.with_address {
        // proxyDHCP: always the next server (iPXE needs it with a URL too).
        assert_eq!(
            a.siaddr, services,
            "siaddr (next-server) in a proxyDHCP answer"
        );
    } else if want.file.starts_with("http") {
        assert_eq!(a.siaddr, Ipv4Addr::UNSPECIFIED, "siaddr with an HTTP URL");
    } else {
        assert_eq!(a.siaddr, services, "siaddr (next-server) for a TFTP file");
    }
    if !want.with_address {
        assert_eq!(
            a.yiaddr,
            Ipv4Addr::UNSPECIFIED,
            "proxyDHCP answer to {} carries an address (yiaddr)",
            want.mac
        );
        for code in [1u8, 3, 6, 51] {
            assert!(
                a.opt(code).is_none(),
                "proxyDHCP answer to {} carries option {code}",
                want.mac
            );
        }
    }
}

fn kinds(m: &serde_json::Value) -> Vec<String> {
    m["events"]
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

fn paths(m: &serde_json::Value) -> Vec<String> {
    m["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["path"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// The paths.

/// A node: name, MAC, IP, profile, marker token.
type Node = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

/// The one-node server-mode case: bootlabd serving `profiles` and `node`
/// on tap0, DHCP captured, the node's guest booted with `firmware` until
/// its kernel prints the node's marker. Returns the lab, the capture and
/// the guest.
fn boot_one(profiles: &str, node: Node, firmware: Firmware) -> (Lab, PathBuf, Guest) {
    let mut lab = Lab::new(&["tap0"]);
    let toml = lab_toml(&lab, "server", profiles, &[node]);
    lab.bootlabd(&toml);
    let pcap = lab.capture();
    let g = Guest {
        name: node.0,
        mac: node.1,
        tap: "tap0",
        firmware,
    };
    g.boot_to_marker(&mut lab, node.4);
    (lab, pcap, g)
}

const HTTP_IPXE_MAC: &str = "52:54:00:77:00:21";
const HTTP_GRUB_MAC: &str = "52:54:00:77:00:22";

#[test]
fn uefi_http_boot_ipxe() {
    let _q = QEMU.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, pcap, _g) = boot_one(
        &amd64_profile("testos", "ipxe"),
        (
            "http-ipxe",
            HTTP_IPXE_MAC,
            "10.77.0.21",
            "testos",
            "hi-3c1f",
        ),
        Firmware::UefiHttp,
    );
    check_exchange(
        &pcap,
        &Expect {
            mac: HTTP_IPXE_MAC,
            class_prefix: "HTTPClient:Arch:00016",
            arch: 16,
            answer_type: 2,
            file: &format!("http://{SERVICES}:8080/assets/ipxe.efi"),
            answer_class: Some("HTTPClient"),
            with_address: true,
            answer_port: 67,
        },
    );
    let m = lab.machine(HTTP_IPXE_MAC);
    let k = kinds(&m);
    assert!(
        !k.iter().any(|k| k.starts_with("tftp:")),
        "UEFI HTTP boot used no TFTP at all: {k:?}"
    );
    assert!(
        paths(&m).iter().any(|p| p.ends_with("ipxe.efi")),
        "the firmware fetched ipxe.efi over HTTP: {m}"
    );
}

#[test]
fn uefi_http_boot_grub() {
    let _q = QEMU.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, pcap, _g) = boot_one(
        &amd64_profile("grubos", "grub"),
        (
            "http-grub",
            HTTP_GRUB_MAC,
            "10.77.0.22",
            "grubos",
            "hg-81d0",
        ),
        Firmware::UefiHttp,
    );
    check_exchange(
        &pcap,
        &Expect {
            mac: HTTP_GRUB_MAC,
            class_prefix: "HTTPClient:Arch:00016",
            arch: 16,
            answer_type: 2,
            file: &format!("http://{SERVICES}:8080/assets/grubx64-http.efi"),
            answer_class: Some("HTTPClient"),
            with_address: true,
            answer_port: 67,
        },
    );
    let m = lab.machine(HTTP_GRUB_MAC);
    let k = kinds(&m);
    assert!(!k.iter().any(|k| k.starts_with("tftp:")), "no TFTP: {k:?}");
    let p = paths(&m);
    assert!(p.iter().any(|p| p.ends_with("grubx64-http.efi")), "{p:?}");
    assert!(
        p.iter().any(|p| p.contains("grub.cfg")),
        "GRUB read its config: {p:?}"
    );
}

const PROXY_BIOS_MAC: &str = "52:54:00:77:00:31";
const PROXY_UEFI_MAC: &str = "52:54:00:77:00:32";
const PROXY_STRANGER_MAC: &str = "52:54:00:77:00:39";

/// dnsmasq (Debian dnsmasq-base) on another host of the link: it owns the
/// addresses; bootlabd, in proxy mode, only the boot information.
fn start_dnsmasq(lab: &mut Lab, other: &str) {
    need("dnsmasq");
    let leases = lab.path("dnsmasq.leases");
    let mut c = Command::new("ip");
    c.args(["netns", "exec", other, "dnsmasq"])
        .args([
            "--keep-in-foreground",
            "--port=0",
            "--interface=lan0",
            "--bind-interfaces",
            "--user=root",
            "--log-dhcp",
            "--log-facility=-",
            // The BIOS node gets the inventory's address, the UEFI node
            // one from the range (bootlabd learns it from the client).
            "--dhcp-range=10.77.0.100,10.77.0.150,255.255.255.0,1h",
            "--dhcp-host=52:54:00:77:00:31,10.77.0.31",
        ])
        .arg(format!("--dhcp-leasefile={}", leases.display()))
        .arg(format!("--pid-file={}", lab.path("dnsmasq.pid").display()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(lab.path("dnsmasq.log")).unwrap());
    lab.spawn(c);
}

#[test]
fn proxy_dhcp_bios_and_uefi() {
    let _q = QEMU.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::new(&["tap0", "tap1", "tap2"]);
    let other = lab.other_host("10.77.0.1");
    start_dnsmasq(&mut lab, &other);
    let toml = lab_toml(
        &lab,
        "proxy",
        &amd64_profile("testos", "ipxe"),
        &[
            (
                "proxy-bios",
                PROXY_BIOS_MAC,
                "10.77.0.31",
                "testos",
                "pb-0d2e",
            ),
            (
                "proxy-uefi",
                PROXY_UEFI_MAC,
                "10.77.0.32",
                "testos",
                "pu-7a41",
            ),
        ],
    );
    lab.bootlabd(&toml);
    let pcap = lab.capture();
    let bios = Guest {
        name: "proxy-bios",
        mac: PROXY_BIOS_MAC,
        tap: "tap0",
        firmware: Firmware::Bios,
    };
    let uefi = Guest {
        name: "proxy-uefi",
        mac: PROXY_UEFI_MAC,
        tap: "tap1",
        firmware: Firmware::UefiPxe,
    };
    let stranger = Guest {
        name: "proxy-stranger",
        mac: PROXY_STRANGER_MAC,
        tap: "tap2",
        firmware: Firmware::Bios,
    };
    // The stranger PXE-boots alongside: dnsmasq gives it an address,
    // bootlabd nothing.
    let s = stranger.start(&mut lab);
    bios.boot_to_marker(&mut lab, "pb-0d2e");
    uefi.boot_to_marker(&mut lab, "pu-7a41");
    let _ = lab.children[s].kill();

    let services: Ipv4Addr = SERVICES.parse().unwrap();
    let all = read_pcap(&pcap);
    // Never an address from bootlabd, never a NAK, nothing to the stranger.
    for d in all.iter().filter(|d| d.op == 2 && d.src.0 == services) {
        assert_eq!(
            d.yiaddr,
            Ipv4Addr::UNSPECIFIED,
            "bootlabd handed out an address: {d:?}"
        );
        assert_ne!(d.msg_type, 6, "bootlabd NAKed in proxy mode: {d:?}");
        assert_ne!(
            d.mac, PROXY_STRANGER_MAC,
            "an unknown MAC got an answer: {d:?}"
        );
    }
    // BIOS: the iPXE ROM is iPXE already: the script URL in the proxy
    // offer on 67 (iPXE boots from an offer that names next-server and
    // file; it sends a ProxyDHCPREQUEST to 4011 only when the offer lacks them).
    let script = format!("http://{SERVICES}:8080/boot.ipxe");
    check_exchange(
        &pcap,
        &Expect {
            mac: PROXY_BIOS_MAC,
            class_prefix: "PXEClient:Arch:00000",
            arch: 0,
            answer_type: 2,
            file: &script,
            answer_class: Some("PXEClient"),
            with_address: false,
            answer_port: 67,
        },
    );
    // UEFI: OVMF's PXE gets snponly.efi in the proxy offer, then iPXE
    // gets the script, never the binary again.
    check_exchange(
        &pcap,
        &Expect {
            mac: PROXY_UEFI_MAC,
            class_prefix: "PXEClient:Arch:00007",
            arch: 7,
            answer_type: 2,
            file: "snponly.efi",
            answer_class: Some("PXEClient"),
            with_address: false,
            answer_port: 67,
        },
    );
    // A boot request a firmware sent to port 4011 got its ack (both
    // firmwares boot from the offer when it names next-server and file;
    // the handler tests cover port 4011 either way).
    for d in all.iter().filter(|d| d.op == 1 && d.dst.1 == 4011) {
        let acked = all
            .iter()
            .any(|a| a.op == 2 && a.src.1 == 4011 && a.mac == d.mac && a.msg_type == 5);
        assert!(acked, "a boot request on port 4011 went unanswered: {d:?}");
        eprintln!("{}: boot request on port 4011 acked", d.mac);
    }
    let snponly_answers = all
        .iter()
        .filter(|d| d.op == 2 && d.mac == PROXY_UEFI_MAC && d.src.0 == services)
        .filter(|d| d.boot_file() == "snponly.efi")
        .count();
    let script_answers = all
        .iter()
        .filter(|d| d.op == 2 && d.mac == PROXY_UEFI_MAC && d.src.0 == services)
        .filter(|d| d.boot_file() == script)
        .count();
    assert!(script_answers >= 1, "iPXE (snponly) got its script");
    assert!(
        snponly_answers <= 4,
        "no iPXE loop: {snponly_answers} snponly answers"
    );

    // The addresses came from dnsmasq; bootlabd learned them.
    let leases = std::fs::read_to_string(lab.path("dnsmasq.leases")).unwrap();
    let uefi_ip = leases
        .lines()
        .find(|l| l.contains(PROXY_UEFI_MAC))
        .and_then(|l| l.split(' ').nth(2))
        .unwrap_or_else(|| panic!("dnsmasq leased nothing to the UEFI node: {leases}"))
        .to_owned();
    assert!(uefi_ip.starts_with("10.77.0.1"), "{uefi_ip}");
    let m = lab.machine(PROXY_UEFI_MAC);
    assert_eq!(m["ip"], uefi_ip.as_str(), "the learned address: {m}");
    let k = kinds(&m);
    assert!(k.iter().any(|k| k == "dhcp:learned"), "{k:?}");
    assert!(
        k.iter().any(|k| k == "http:kernel"),
        "the timeline follows the learned address: {k:?}"
    );
    let m = lab.machine(PROXY_BIOS_MAC);
    assert_eq!(m["ip"], "10.77.0.31", "{m}");
    // DNS answers for the node.
    need("kdig");
    let a = run_ok(lab.command("kdig").args([
        "+short",
        &format!("@{SERVICES}"),
        "proxy-bios.fw.lab.test",
        "A",
    ]));
    assert_eq!(a.trim(), "10.77.0.31", "DNS in proxy mode");
    // The stranger: dnsmasq answered it, bootlabd counted it.
    let metrics = lab.curl(&format!("http://{SERVICES}:8080/metrics"));
    let dropped = |reason: &str| -> u64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "bootlab_dhcp_dropped_total{{reason=\"{reason}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert!(
        dropped("unknown_mac") > 0,
        "the stranger was counted:\n{metrics}"
    );
}

const ARM64_MAC: &str = "52:54:00:77:00:41";

#[test]
fn arm64_uefi_grub() {
    let _q = QEMU.lock().unwrap_or_else(|e| e.into_inner());
    let profile = "[profiles.arm64os]\nloader = \"grub\"\nkernel = \"arm64/vmlinuz\"\ninitrd = [\"arm64/initrd.img\"]\n\
         args = \"console=ttyAMA0 panic=-1 bootlab.node={{ node.name }} bootlab.token={{ vars.token }}\"\n";
    let (lab, pcap, _g) = boot_one(
        profile,
        ("arm64-0", ARM64_MAC, "10.77.0.41", "arm64os", "a6-5e90"),
        Firmware::Arm64,
    );
    check_exchange(
        &pcap,
        &Expect {
            mac: ARM64_MAC,
            class_prefix: "PXEClient:Arch:00011",
            arch: 11,
            answer_type: 2,
            file: "grubnetaa64.efi",
            answer_class: None,
            with_address: true,
            answer_port: 67,
        },
    );
    let m = lab.machine(ARM64_MAC);
    let p = paths(&m);
    assert!(p.iter().any(|p| p.ends_with("grubnetaa64.efi")), "{p:?}");
    assert!(p.iter().any(|p| p.ends_with("arm64/vmlinuz")), "{p:?}");
}

const SB_MAC: &str = "52:54:00:77:00:51";
const SB_UNSIGNED_MAC: &str = "52:54:00:77:00:52";

#[test]
fn secure_boot_shim_grub() {
    let _q = QEMU.lock().unwrap_or_else(|e| e.into_inner());
    let (lab, pcap, g) = boot_one(
        &amd64_profile("signed", "shim-grub"),
        ("sb-0", SB_MAC, "10.77.0.51", "signed", "sb-2b77"),
        Firmware::SecureBoot,
    );
    check_exchange(
        &pcap,
        &Expect {
            mac: SB_MAC,
            class_prefix: "PXEClient:Arch:00007",
            arch: 7,
            answer_type: 2,
            file: "shimx64.efi",
            answer_class: None,
            with_address: true,
            answer_port: 67,
        },
    );
    // The kernel really ran under Secure Boot.
    let console = g.console(&lab);
    assert!(
        console.contains("Secure boot enabled")
            || console.contains("secureboot: Secure boot enabled"),
        "the kernel did not report Secure Boot:\n{console}"
    );
    let m = lab.machine(SB_MAC);
    let p = paths(&m);
    eprintln!("sb-0 fetched: {p:?}");
    for want in ["shimx64.efi", "grubx64.efi", "vmlinuz", "initrd.img"] {
        assert!(
            p.iter().any(|p| p.ends_with(want)),
            "{want} not fetched: {p:?}"
        );
    }
    assert!(
        kinds(&m).iter().all(|k| !k.starts_with("http:")),
        "the signed chain used TFTP only: {m}"
    );
}

#[test]
fn secure_boot_refuses_an_unsigned_loader() {
    let _q = QEMU.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::new(&["tap0"]);
    // loader = "ipxe": UEFI gets snponly.efi, which nobody signed.
    let toml = lab_toml(
        &lab,
        "server",
        &amd64_profile("unsigned", "ipxe"),
        &[(
            "sb-unsigned",
            SB_UNSIGNED_MAC,
            "10.77.0.52",
            "unsigned",
            "su-0000",
        )],
    );
    lab.bootlabd(&toml);
    let g = Guest {
        name: "sb-unsigned",
        mac: SB_UNSIGNED_MAC,
        tap: "tap0",
        firmware: Firmware::SecureBoot,
    };
    let child = g.start(&mut lab);
    // The firmware downloaded the file over PXE, then refused to load it
    // (OVMF's image verification: "Access Denied" for the PXE boot option;
    // a "Security Violation" line later on is the firmware's own unsigned
    // shell, which proves nothing about the loader).
    let line = g.wait_line_with(
        &mut lab,
        child,
        &["failed to load Boot", "PXEv4", "Access Denied"],
    );
    eprintln!("firmware: {line}");
    let console = g.console(&lab);
    assert!(
        console.contains("NBP filename is snponly.efi")
            && console.contains("NBP file downloaded successfully"),
        "the firmware downloaded snponly.efi before refusing it:\n{console}"
    );
    assert!(
        !console
            .lines()
            .any(|l| l.contains("starting Boot") && l.contains("PXEv4")),
        "the firmware started the unsigned loader:\n{console}"
    );
    assert!(!console.contains("BOOTLAB-MARKER"), "{console}");
    assert!(
        !console.contains("iPXE initialising"),
        "iPXE ran: {console}"
    );
    let p = paths(&lab.machine(SB_UNSIGNED_MAC));
    assert!(
        p.iter().any(|p| p.ends_with("snponly.efi")),
        "the firmware downloaded the loader before refusing it: {p:?}"
    );
}
