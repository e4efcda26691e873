//! The package under a real systemd: a Debian 12 root file system (minbase
//! plus systemd, built with mmdebstrap and cached under target/nspawn/),
//! booted with `systemd-nspawn -b` (PID 1 is the guest's systemd; the root
//! is an overlay, so the cache stays pristine) in its own network namespace,
//! joined by a veth pair this test creates to a namespace of the test's
//! where a DHCP client runs. (`--network-namespace-path` would leave the
//! host's /sys/class/net in the guest, where bootlabd looks for its NIC by
//! MAC, and `--network-interface` waits for a udev the host does not run;
//! so the guest gets `--private-network` and the test moves its veth end
//! in once PID 1 is up.) In the guest:
//!
//! - `dpkg -i` installs the .deb; nothing is enabled or started, and
//!   `systemctl start` without /etc/bootlab/lab.toml does nothing
//!   (ConditionPathExists);
//! - with the example copied to /etc/bootlab/lab.toml, `systemctl enable
//!   --now bootlabd` reaches active (running) through READY=1 (the unit's
//!   status text is bootlabd's STATUS= line; the watchdog is fed);
//! - the hardening holds: the daemon runs as a dynamic user with exactly
//!   CAP_NET_BIND_SERVICE/ADMIN/RAW, no_new_privs and a seccomp filter; in
//!   its own mount namespace nothing outside /var/lib/bootlab is writable,
//!   not even for root, and /home is empty;
//! - a DHCP client (udhcpc) gets its reservation and the lease lands in the
//!   state directory;
//! - `systemctl reload bootlabd` swaps the inventory (a new DNS name
//!   answers) without a restart; `systemctl stop` ends it cleanly.
//!
//! No host systemd or D-Bus is needed: nspawn runs with `--register=no
//! --keep-unit`, and commands reach the guest with nsenter.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{build_deb, repo, run_ok};

/// What the root file system holds besides minbase: systemd as PID 1 and
/// the package's dependencies (libvirt0 for the host tool).
const GUEST_PACKAGES: &[&str] = &["systemd", "systemd-sysv", "dbus", "libvirt0"];
const SUITE: &str = "bookworm";

const SERVICES_IP: &str = "192.168.150.254";
const SERVICES_MAC: &str = "52:54:00:96:00:fe";
const NODE_MAC: &str = "52:54:00:96:00:0a";
const NODE_IP: &str = "192.168.150.10";

fn require_tools() {
    let uid = run_ok(Command::new("id").arg("-u"));
    assert_eq!(
        uid.trim(),
        "0",
        "this test needs root (namespaces, nspawn); it never skips"
    );
    for t in [
        "mmdebstrap",
        "systemd-nspawn",
        "nsenter",
        "ip",
        "udhcpc",
        "kdig",
        "curl",
    ] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "{t} is required (tests/apt-packages.txt); this test never skips"
        );
    }
}

/// The cached root file system, built on first use (cold: one mmdebstrap
/// run, about a minute). The key is the suite and package list.
fn rootfs() -> PathBuf {
    let key = format!("{SUITE}-minbase-{}", GUEST_PACKAGES.join("+"));
    let cache = repo("target/nspawn").join(&key);
    let root = cache.join("root");
    if root.join("usr/lib/systemd/systemd").is_file() {
        return root;
    }
    std::fs::create_dir_all(&cache).unwrap();
    let tmp = cache.join(format!("root.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let started = Instant::now();
    run_ok(
        Command::new("mmdebstrap")
            .args(["--variant=minbase", "--quiet"])
            .arg(format!("--include={}", GUEST_PACKAGES.join(",")))
            .arg(SUITE)
            .arg(&tmp),
    );
    eprintln!(
        "built the guest root file system ({key}) in {:.0?} (cold cache)",
        started.elapsed()
    );
    // Another test process may have won the race: keep its copy.
    if std::fs::rename(&tmp, &root).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    assert!(root.join("usr/lib/systemd/systemd").is_file());
    root
}

/// A network namespace with a name unique to this process, removed on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!("bl{tag}{}", std::process::id());
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        run_ok(Command::new("ip").args(["-n", &name, "link", "set", "lo", "up"]));
        Netns(name)
    }

    fn exec(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(args);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A veth end left in the host's namespace if the test fails before moving
/// it into the guest: deleted on drop (with its peer).
struct Veth(String);

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

/// The booted guest: nspawn and its PID 1. Powered off (then killed, if it
/// must be) on drop.
struct Guest {
    nspawn: Child,
    leader: u32,
    log: PathBuf,
}

impl Guest {
    fn boot(root: &Path, deb: &Path, log: PathBuf) -> Self {
        let console = std::fs::File::create(&log).unwrap();
        let nspawn = Command::new("systemd-nspawn")
            .args([
                "--register=no",
                "--keep-unit",
                "--volatile=overlay",
                "--quiet",
            ])
            .arg(format!("--machine=bootlab{}", std::process::id()))
            .arg("--private-network")
            .arg(format!("--bind-ro={}:/root/bootlab.deb", deb.display()))
            .arg("--console=pipe")
            .arg("-D")
            .arg(root)
            .arg("-b")
            .stdin(Stdio::null())
            .stdout(console.try_clone().unwrap())
            .stderr(console)
            .spawn()
            .expect("systemd-nspawn runs");
        let mut guest = Guest {
            leader: 0,
            nspawn,
            log,
        };
        // PID 1 of the guest: nspawn's child running systemd.
        let deadline = Instant::now() + Duration::from_secs(60);
        while guest.leader == 0 {
            if let Ok(Some(s)) = guest.nspawn.try_wait() {
                panic!("systemd-nspawn exited ({s}):\n{}", guest.console());
            }
            assert!(
                Instant::now() < deadline,
                "no guest PID 1:\n{}",
                guest.console()
            );
            guest.leader = children(guest.nspawn.id())
                .into_iter()
                .find(|p| comm(*p) == "systemd")
                .unwrap_or(0);
            std::thread::sleep(Duration::from_millis(100));
        }
        // Booted: `is-system-running --wait` returns once start-up is over.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = guest
                .cmd(&["systemctl", "is-system-running", "--wait"])
                .output()
                .unwrap();
            let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if state == "running" || state == "degraded" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "guest never booted ({state}):\n{}",
                guest.console()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        guest
    }

    /// Moves the host's interface `ifname` into the guest and gives it
    /// `addr` (with the host's `ip`, in the guest's network namespace).
    fn adopt_interface(&self, ifname: &str, addr: &str) {
        let leader = self.leader.to_string();
        run_ok(Command::new("ip").args(["link", "set", ifname, "netns", &leader]));
        for args in [
            vec!["ip", "addr", "add", addr, "dev", ifname],
            vec!["ip", "link", "set", ifname, "up"],
        ] {
            run_ok(
                Command::new("nsenter")
                    .args(["-t", &leader, "-n", "--"])
                    .args(args),
            );
        }
    }

    /// A command in the guest (all of its namespaces).
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.leader.to_string(), "-a", "--"])
            .args(args);
        c
    }

    /// Runs `args` in the guest; stdout, failing loudly with the unit's
    /// journal otherwise.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "guest: {args:?} failed ({}):\n{}{}\njournal:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.journal()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes `text` to `path` in the guest.
    fn write(&self, path: &str, text: &str) {
        let mut child = self
            .cmd(&["sh", "-c", &format!("cat > {path}")])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        assert!(
            child.wait().unwrap().success(),
            "writing {path} in the guest"
        );
    }

    /// `systemctl show -p NAME --value bootlabd`.
    fn prop(&self, name: &str) -> String {
        self.ok(&["systemctl", "show", "-p", name, "--value", "bootlabd"])
            .trim()
            .to_owned()
    }

    fn journal(&self) -> String {
        self.cmd(&["journalctl", "--no-pager", "-o", "cat", "-u", "bootlabd"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn console(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if self.leader != 0 {
            // SIGRTMIN+4: systemd powers off.
            let _ = Command::new("kill")
                .args(["-s", "RTMIN+4", &self.leader.to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        if self.leader != 0 {
            let _ = Command::new("kill")
                .args(["-KILL", &self.leader.to_string()])
                .status();
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// The `Name:` fields of /proc/PID/status.
fn status_field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("{name} not in /proc/PID/status:\n{status}"))
        .trim()
        .to_owned()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn deb_installs_and_runs_hardened_under_systemd_with_reload_and_dhcp() {
    require_tools();
    let deb = build_deb();
    let root = rootfs();
    let work = tempfile::tempdir().unwrap();

    // The guest's NIC carries services.mac and services.ip from
    // lab.toml.example; its peer, in the client's namespace, node-0's MAC
    // (which has a reservation).
    let client_ns = Netns::new("cl");
    let (vg, vc) = (
        format!("vg{}", std::process::id()),
        format!("vc{}", std::process::id()),
    );
    run_ok(Command::new("ip").args([
        "link",
        "add",
        &vg,
        "address",
        SERVICES_MAC,
        "type",
        "veth",
        "peer",
        "name",
        &vc,
        "netns",
        &client_ns.0,
        "address",
        NODE_MAC,
    ]));
    let _veth = Veth(vg.clone());
    run_ok(Command::new("ip").args(["-n", &client_ns.0, "link", "set", &vc, "up"]));

    let guest = Guest::boot(&root, &deb, work.path().join("console.log"));
    guest.adopt_interface(&vg, &format!("{SERVICES_IP}/24"));

    // Installing starts nothing.
    guest.ok(&["dpkg", "-i", "/root/bootlab.deb"]);
    assert_eq!(guest.prop("UnitFileState"), "disabled");
    assert_eq!(guest.prop("ActiveState"), "inactive");
    guest.ok(&["systemctl", "start", "bootlabd"]);
    assert_eq!(
        guest.prop("ActiveState"),
        "inactive",
        "started without lab.toml"
    );
    assert_eq!(guest.prop("ConditionResult"), "no");
    let verify = guest.ok(&["systemd-analyze", "verify", "--man=no", "bootlabd.service"]);
    assert!(verify.trim().is_empty(), "{verify}");

    // The documented manual install: write the inventory, enable --now.
    let example = guest.ok(&["cat", "/etc/bootlab/lab.toml.example"]);
    guest.write("/etc/bootlab/lab.toml", &example);
    guest.ok(&["systemctl", "enable", "--now", "bootlabd"]);
    // Type=notify: `start` returned once READY=1 arrived.
    assert_eq!(guest.prop("ActiveState"), "active", "{}", guest.journal());
    assert_eq!(guest.prop("SubState"), "running");
    assert_eq!(guest.prop("UnitFileState"), "enabled");
    let status_text = guest.prop("StatusText");
    assert!(
        status_text.starts_with("serving lab lab (2 nodes"),
        "{status_text}"
    );
    assert!(
        guest.journal().contains("bootlabd ready"),
        "{}",
        guest.journal()
    );
    let main_pid = guest.prop("MainPID");
    wait_until("the first WATCHDOG=1", || {
        guest
            .prop("WatchdogTimestampMonotonic")
            .parse::<u64>()
            .unwrap_or(0)
            > 0
    });

    // The hardening, seen from the running daemon: a dynamic (non-root)
    // user with exactly the three capabilities, no_new_privs, seccomp...
    let status = guest.ok(&["cat", &format!("/proc/{main_pid}/status")]);
    let uid = status_field(&status, "Uid");
    let uid = uid.split_whitespace().next().unwrap().to_owned();
    assert_ne!(uid, "0", "bootlabd runs as a dynamic user");
    // CAP_NET_BIND_SERVICE (10), CAP_NET_ADMIN (12), CAP_NET_RAW (13).
    assert_eq!(status_field(&status, "CapEff"), "0000000000003400");
    assert_eq!(status_field(&status, "CapBnd"), "0000000000003400");
    assert_eq!(status_field(&status, "NoNewPrivs"), "1");
    assert_eq!(status_field(&status, "Seccomp"), "2");
    // ...and its mount namespace: writable only /var/lib/bootlab (and its
    // private /tmp); even root there gets "Read-only file system".
    let probe = |as_uid: &str, path: &str| {
        guest
            .cmd(&[
                "nsenter",
                "-t",
                &main_pid,
                "-m",
                "-S",
                as_uid,
                "-G",
                as_uid,
                "--",
                "sh",
                "-c",
                &format!("echo probe > {path}"),
            ])
            .output()
            .unwrap()
    };
    for path in [
        "/etc/bootlab/probe",
        "/usr/lib/probe",
        "/var/lib/probe",
        "/root/probe",
    ] {
        let out = probe("0", path);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("Read-only file system"),
            "{path}: {err}"
        );
    }
    let out = probe(&uid, "/var/lib/bootlab/probe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let home = guest.ok(&["nsenter", "-t", &main_pid, "-m", "--", "ls", "-A", "/home"]);
    assert!(home.trim().is_empty(), "ProtectHome: {home}");
    guest.ok(&["test", "!", "-e", "/etc/bootlab/probe"]);

    // DHCP: node-0's reservation, and its lease in the state directory.
    let out = client_ns
        .exec(&[
            "udhcpc",
            "-i",
            &vc,
            "-f",
            "-q",
            "-n",
            "-t",
            "10",
            "-T",
            "2",
            "-s",
            "/bin/true",
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains(&format!("lease of {NODE_IP} obtained")),
        "udhcpc: {text}\njournal:\n{}",
        guest.journal()
    );
    let leases = guest.ok(&["sh", "-c", "cat /var/lib/bootlab/*lease*"]);
    assert!(leases.contains(NODE_IP), "{leases}");

    run_ok(&mut client_ns.exec(&["ip", "addr", "add", &format!("{NODE_IP}/24"), "dev", &vc]));
    let (code, body) = {
        let out = run_ok(&mut client_ns.exec(&[
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            &format!("http://{SERVICES_IP}:8080/readyz"),
        ]));
        let (body, code) = out.rsplit_once('\n').unwrap();
        (code.to_owned(), body.to_owned())
    };
    assert_eq!(code, "200", "{body}");
    // Reload: a new DNS name answers; same process, no restart.
    let dig = |name: &str| {
        run_ok(&mut client_ns.exec(&[
            "kdig",
            "+short",
            "+time=2",
            "+retry=2",
            &format!("@{SERVICES_IP}"),
            name,
        ]))
        .trim()
        .to_owned()
    };
    assert_eq!(dig("api.lab.example.test"), SERVICES_IP);
    assert_eq!(dig("reloaded.lab.example.test"), "");
    let reloaded = example.replace(
        "records = [\n",
        "records = [\n  { name = \"reloaded\", type = \"A\", value = \"192.168.150.77\" },\n",
    );
    assert_ne!(reloaded, example);
    guest.write("/etc/bootlab/lab.toml", &reloaded);
    guest.ok(&["systemctl", "reload", "bootlabd"]);
    wait_until("the reloaded name", || {
        dig("reloaded.lab.example.test") == "192.168.150.77"
    });
    assert_eq!(guest.prop("MainPID"), main_pid, "reload, not restart");
    assert_eq!(guest.prop("NRestarts"), "0");
    assert_eq!(guest.prop("ActiveState"), "active");
    assert!(
        guest.journal().contains("reloaded inventory"),
        "{}",
        guest.journal()
    );

    // Stop: clean exit.
    guest.ok(&["systemctl", "stop", "bootlabd"]);
    assert_eq!(guest.prop("ActiveState"), "inactive");
    assert_eq!(guest.prop("Result"), "success", "{}", guest.journal());
    assert!(guest.journal().contains("stopped"), "{}", guest.journal());
    drop(guest);
    drop(client_ns);
}
