//! A real libvirtd for tests, in a network namespace the test creates and a
//! private mount namespace, so it collides with nothing on the machine:
//! `/run`, `/etc/libvirt`, `/var/lib/libvirt`, `/var/log/libvirt` and
//! `/var/cache/libvirt` are bind mounts of directories under a temp dir;
//! the test reaches libvirtd through `qemu:///system?socket=<temp>/run/libvirt/libvirt-sock`.
//! QEMU runs as root with no security driver (the temp dir is ours). Drop
//! destroys every domain, kills the daemons and leftovers in the namespace,
//! and deletes the namespace, also when the test failed.

#![allow(dead_code)]

pub mod fixtures;
pub mod pty;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The host tool under test.
pub fn bootlab() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bootlab"))
}

/// The daemon, built next to the host tool by `cargo test --workspace`.
pub fn bootlabd() -> PathBuf {
    let p = bootlab().with_file_name("bootlabd");
    assert!(
        p.is_file(),
        "{} is missing: `cargo build -p bootlab-bootlabd` (cargo test --workspace builds it)",
        p.display()
    );
    p
}

/// A command's stdout and stderr, for failure messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A command's stdout; fails with `what` and its output unless it succeeded.
pub fn ok(o: Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({}):\n{}",
        o.status,
        text(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Fails loudly unless the test can run: root, and the tools installed.
pub fn require_root_and_tools(tools: &[&str]) {
    let uid = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
    assert_eq!(
        uid.trim(),
        "0",
        "this test needs root (network namespaces, libvirtd); it never skips"
    );
    for t in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .unwrap()
            .status
            .success();
        assert!(found, "{t} is not installed (see tests/apt-packages.txt)");
    }
}

pub fn sh(cmd: &str) -> Output {
    Command::new("sh").args(["-c", cmd]).output().unwrap()
}

pub fn sh_ok(cmd: &str) -> String {
    let o = sh(cmd);
    assert!(
        o.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The SSH key the services VM of the libvirt tests is given.
pub const TEST_SSH_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOBbootlabtestkeyxxxxxxxxxxxxxxxxxxxxxxxxxx me@host";

/// A one-node lab on `env`'s libvirtd: lab, network, storage pool and VM
/// prefix all named `tag`, on 10.`octet`.0.0/24 (gateway .1, services VM
/// .254, node .10; MACs 52:54:00:`octet`:00:fe and :10), a services VM of
/// `memory` with `services_extra` (TOML lines) added to its section, and
/// one BIOS node booting the `marker` profile (vmlinuz + initrd.img).
pub fn one_node_lab(
    env: &LibvirtNetns,
    tag: &str,
    octet: u8,
    memory: &str,
    services_extra: &str,
) -> String {
    format!(
        r#"
[lab]
name = "{tag}"
domain = "lab.test"

[network]
cidr = "10.{octet}.0.0/24"
mode = "nat"
gateway = "10.{octet}.0.1"
host_ip = "10.{octet}.0.1"
bridge = "virbr-{tag}"
libvirt_name = "{tag}"
lease = "1h"

[libvirt]
uri = "{uri}"
pool = "{tag}"
pool_path = "{root}/pool/{tag}"
vm_prefix = "{tag}-"
virt_type = "qemu"

[services]
name = "services"
ip = "10.{octet}.0.254"
mac = "52:54:00:{octet:02x}:00:fe"
vcpus = 1
memory = "{memory}"
disks = ["64MiB"]
{services_extra}

[profiles.marker]
loader = "ipxe"
kernel = "vmlinuz"
initrd = ["initrd.img"]

[roles.node]
profile = "marker"
vcpus = 1
memory = "256MiB"
disks = ["1GiB"]

[[nodes]]
name = "bios"
role = "node"
firmware = "bios"
mac = "52:54:00:{octet:02x}:00:10"
ip = "10.{octet}.0.10"
"#,
        uri = env.uri,
        root = env.root().display(),
        services_extra = services_extra.trim_end(),
    )
}

/// libvirtd + virtlogd in their own network and mount namespaces.
pub struct LibvirtNetns {
    pub netns: String,
    pub dir: tempfile::TempDir,
    pub uri: String,
}

impl LibvirtNetns {
    pub fn start(tag: &str) -> Self {
        require_root_and_tools(&[
            "ip",
            "unshare",
            "libvirtd",
            "virtlogd",
            "qemu-system-x86_64",
        ]);
        let netns = format!("blhost-{tag}-{}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix("bootlab-libvirtd-")
            .tempdir_in("/tmp")
            .unwrap();
        let root = dir.path();
        // world-traversable: the pool lives in here too
        sh_ok(&format!("chmod 755 {}", root.display()));
        for d in [
            "run/libvirt",
            "lib/dnsmasq",
            "lib/qemu/nvram",
            "log/qemu",
            "cache",
            "etc",
            "pool",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        sh_ok(&format!(
            "cp -a /etc/libvirt/. {r}/etc/ && cp -a /var/lib/libvirt/. {r}/lib/",
            r = root.display()
        ));
        let mut qemu_conf = std::fs::read_to_string(root.join("etc/qemu.conf")).unwrap_or_default();
        qemu_conf.push_str(
            "\n# bootlab tests\nuser = \"root\"\ngroup = \"root\"\ndynamic_ownership = 0\n\
             security_driver = \"none\"\nnamespaces = [ ]\nremember_owner = 0\n",
        );
        std::fs::write(root.join("etc/qemu.conf"), qemu_conf).unwrap();
        // no autostart of anything shipped (the default network)
        let _ = std::fs::remove_dir_all(root.join("etc/qemu/networks/autostart"));
        let _ = std::fs::remove_file(root.join("etc/qemu/networks/default.xml"));

        sh_ok(&format!("ip netns add {netns}"));
        let me = LibvirtNetns {
            uri: format!(
                "qemu:///system?socket={}/run/libvirt/libvirt-sock",
                root.display()
            ),
            netns,
            dir,
        };
        sh_ok(&format!("ip -n {} link set lo up", me.netns));
        let r = me.dir.path().display().to_string();
        let script = format!(
            "set -e; mkdir -p /run/libvirt /var/cache/libvirt /var/log/libvirt; \
             mkdir -p {r}/run/lock; chmod 1777 {r}/run/lock; \
             mount --bind {r}/run /run; mount --bind {r}/etc /etc/libvirt; \
             mount --bind {r}/lib /var/lib/libvirt; mount --bind {r}/log /var/log/libvirt; \
             mount --bind {r}/cache /var/cache/libvirt; \
             virtlogd -d; libvirtd -d"
        );
        let o = Command::new("ip")
            .args([
                "netns",
                "exec",
                &me.netns,
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
            ])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "starting libvirtd failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let sock = me.dir.path().join("run/libvirt/libvirt-sock");
        me.wait_for("libvirtd's socket", Duration::from_secs(60), || {
            sock.exists()
        });
        me
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A copy of bootlabd under the root (target/ is shared, and a relinked
    /// bootlabd would, rightly, make a second `up` replace the appliance).
    pub fn copy_bootlabd(&self) -> PathBuf {
        let daemon = self.root().join("bootlabd");
        std::fs::copy(bootlabd(), &daemon).unwrap();
        daemon
    }

    /// The cloud kernel and its modules under `root/kernel`
    /// (tests/e2e/kernel-with-modules.sh: `vmlinuz` and `modules/`).
    pub fn kernel_with_modules(&self) -> PathBuf {
        let kdir = self.root().join("kernel");
        sh_ok(&format!(
            "{}/kernel-with-modules.sh {}",
            repo().join("tests/e2e").display(),
            kdir.display()
        ));
        kdir
    }

    /// Where libvirt writes a domain's serial log.
    pub fn serial_log(&self, domain: &str) -> PathBuf {
        self.root().join(format!("log/qemu/{domain}-serial0.log"))
    }

    /// Polls `cond` until true; panics with `what` after `limit` (a
    /// generous bound against hangs, not a timing assertion).
    pub fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        mut cond: impl FnMut() -> bool,
    ) -> Duration {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < limit,
                "gave up waiting for {what} after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        start.elapsed()
    }

    /// [`Self::wait_for`], calling `on_timeout` (e.g. to print logs) before panicking.
    pub fn wait_for_or(
        &self,
        what: &str,
        limit: Duration,
        on_timeout: impl FnOnce(),
        mut cond: impl FnMut() -> bool,
    ) -> Duration {
        let start = Instant::now();
        while !cond() {
            if start.elapsed() >= limit {
                on_timeout();
                panic!("gave up waiting for {what} after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        start.elapsed()
    }

    /// Runs a command inside the network namespace.
    pub fn exec(&self, program: &Path, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .arg(program)
            .args(args)
            .output()
            .unwrap()
    }

    fn pid(&self, file: &str) -> Option<i32> {
        std::fs::read_to_string(self.root().join("run").join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for LibvirtNetns {
    fn drop(&mut self) {
        // Domains first (through libvirt, so it cleans its own state up).
        if let Ok(conn) = virt::connect::Connect::open(Some(&self.uri)) {
            if let Ok(doms) = conn.list_all_domains(0) {
                for d in doms {
                    let _ = d.destroy();
                    let _ = d.undefine_flags(virt::sys::VIR_DOMAIN_UNDEFINE_NVRAM);
                }
            }
        }
        for pidfile in ["libvirtd.pid", "virtlogd.pid"] {
            if let Some(pid) = self.pid(pidfile) {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        }
        // Anything of ours still in the namespace (QEMU, helpers).
        std::thread::sleep(Duration::from_millis(500));
        let pids = sh(&format!("ip netns pids {}", self.netns));
        for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
        let _ = sh(&format!("ip netns del {}", self.netns));
    }
}
