//! Network-namespace labs for the DHCP tests: a server namespace and a
//! client namespace joined by a veth pair, removed again on drop (also when
//! a test fails). Needs root and iproute2; fails loudly otherwise.

#![allow(dead_code)]

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

pub const SERVICES_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 254);
pub const SERVICES_MAC: &str = "52:54:00:4d:00:fe";
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const NODE_MAC: &str = "52:54:00:4d:00:10";
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 10);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Panics unless `tool` is on PATH (tests never skip green).
pub fn require(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(tool).is_file()
        || Path::new("/sbin").join(tool).is_file();
    assert!(
        found,
        "{tool} is missing: apt-get install {package} (see tests/apt-packages.txt)"
    );
}

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (network namespaces)"
    );
}

/// Two namespaces and a veth pair.
pub struct Lab {
    pub server_ns: String,
    pub client_ns: String,
    pub server_if: String,
    pub client_if: String,
    pub dir: tempfile::TempDir,
}

impl Lab {
    /// Server side gets `SERVICES_IP/24` and `SERVICES_MAC`; the client
    /// side gets `client_mac` and, if given, an address.
    pub fn new(client_mac: &str, client_ip: Option<Ipv4Addr>) -> Self {
        require_root();
        require("ip", "iproute2");
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{n}", std::process::id() % 100_000);
        let lab = Self {
            server_ns: format!("dhcpt-s{tag}"),
            client_ns: format!("dhcpt-c{tag}"),
            server_if: format!("bds{tag}"),
            client_if: format!("bdc{tag}"),
            dir: tempfile::tempdir().unwrap(),
        };
        // From here on, Drop cleans up whatever was made.
        run(Command::new("ip").args(["netns", "add", &lab.server_ns]));
        run(Command::new("ip").args(["netns", "add", &lab.client_ns]));
        run(Command::new("ip").args([
            "link",
            "add",
            &lab.server_if,
            "netns",
            &lab.server_ns,
            "type",
            "veth",
            "peer",
            "name",
            &lab.client_if,
            "netns",
            &lab.client_ns,
        ]));
        let s = |args: &[&str]| {
            run(Command::new("ip").arg("-n").arg(&lab.server_ns).args(args));
        };
        s(&["link", "set", "lo", "up"]);
        s(&["link", "set", &lab.server_if, "address", SERVICES_MAC]);
        s(&[
            "addr",
            "add",
            &format!("{SERVICES_IP}/24"),
            "dev",
            &lab.server_if,
        ]);
        s(&["link", "set", &lab.server_if, "up"]);
        let c = |args: &[&str]| {
            run(Command::new("ip").arg("-n").arg(&lab.client_ns).args(args));
        };
        c(&["link", "set", "lo", "up"]);
        c(&["link", "set", &lab.client_if, "address", client_mac]);
        if let Some(ip) = client_ip {
            c(&["addr", "add", &format!("{ip}/24"), "dev", &lab.client_if]);
        }
        c(&["link", "set", &lab.client_if, "up"]);
        lab
    }

    /// The inventory for this lab (written to the temp dir).
    pub fn inventory(&self, pool: bool) -> PathBuf {
        self.inventory_with(
            "10.77.0.0/24",
            pool.then_some(("10.77.0.100", "10.77.0.200")),
        )
    }

    /// The inventory with another CIDR and pool.
    pub fn inventory_with(&self, cidr: &str, pool: Option<(&str, &str)>) -> PathBuf {
        let dir = self.dir.path();
        let pool = match pool {
            Some((a, b)) => format!(r#"pool = {{ start = "{a}", end = "{b}" }}"#),
            None => String::new(),
        };
        let text = format!(
            r#"
[lab]
name = "nt"
domain = "lab.test"

[network]
cidr = "{cidr}"
mode = "nat"
gateway = "{GATEWAY}"
host_ip = "{GATEWAY}"
bridge = "virbr-nt"
lease = "1h"
{pool}

[libvirt]
pool = "nt"
pool_path = "/var/lib/libvirt/images/nt"
vm_prefix = "nt-"
virt_type = "qemu"

[services]
name = "services"
ip = "{SERVICES_IP}"
mac = "{SERVICES_MAC}"
interface = "{server_if}"
listen = {{ dhcp = "0.0.0.0:67", dns = "{SERVICES_IP}:53", tftp = "{SERVICES_IP}:69", http = "{SERVICES_IP}:8080" }}
data_dir = "{data}"
assets_dir = "{assets}"
firewall = false

[profiles.tiny]
loader = "ipxe"
kernel = "vmlinuz"
initrd = ["initrd.img"]
args = "console=ttyS0"

[roles.worker]
profile = "tiny"
vcpus = 1
memory = "512MiB"
disks = ["1GiB"]

[[nodes]]
name = "node-a"
role = "worker"
mac = "{NODE_MAC}"
ip = "{NODE_IP}"
"#,
            server_if = self.server_if,
            data = dir.join("data").display(),
            assets = dir.join("assets").display(),
        );
        std::fs::create_dir_all(dir.join("assets")).unwrap();
        let path = dir.join("lab.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs `f` on a thread that entered namespace `ns` (sockets made there
    /// stay in that namespace).
    pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{ns}");
        std::thread::spawn(move || {
            let fd = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("netns thread")
    }

    /// A command run inside the client namespace.
    pub fn client_cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.client_ns, program]);
        c
    }

    /// A command run inside the server namespace.
    pub fn server_cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.server_ns, program]);
        c
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.client_ns, &self.server_ns] {
            // Processes left in the namespace (clients, daemons) die first.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
