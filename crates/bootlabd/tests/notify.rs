//! systemd notifications from the real `bootlabd` binary, received on a unix
//! datagram socket the test owns (`NOTIFY_SOCKET`), as systemd receives
//! them: `READY=1` only once every port is bound (checked the moment it
//! arrives), `RELOADING=1` + `MONOTONIC_USEC` then `READY=1` around SIGHUP,
//! `STOPPING=1` on SIGTERM, `WATCHDOG=1` when `WATCHDOG_USEC` is set, and no
//! `READY=1` at all when a port is taken. With `services.firewall = true`
//! (in a network namespace the test creates): `READY=1` only once the
//! nftables table is in place, and never when it cannot be applied.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Daemon, READY, lab_builder_on, lab_on, ports};

const BIN: &str = env!("CARGO_BIN_EXE_bootlabd");

/// The service manager's end: a datagram socket in a temp dir.
struct NotifySocket {
    socket: UnixDatagram,
    path: std::path::PathBuf,
    /// Every message so far, in order.
    seen: Vec<String>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Self {
            socket,
            path,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for a message with the line `line`; returns it. Fails
    /// when the daemon exits first.
    fn wait_for(&mut self, d: &mut Daemon, line: &str) -> String {
        let deadline = Instant::now() + READY;
        let mut buf = vec![0u8; 4096];
        while Instant::now() < deadline {
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    self.seen.push(msg.clone());
                    if msg.lines().any(|l| l == line) {
                        return msg;
                    }
                }
                Err(_) => {
                    if let Ok(Some(status)) = d.child.try_wait() {
                        panic!(
                            "bootlabd exited ({status}) before {line:?}; notifications: {:?}",
                            self.seen
                        );
                    }
                }
            }
        }
        panic!(
            "no {line:?} within {READY:?}; notifications: {:?}",
            self.seen
        );
    }

    /// Every message still queued.
    fn drain(&mut self) -> &[String] {
        let mut buf = vec![0u8; 4096];
        self.socket.set_nonblocking(true).unwrap();
        while let Ok(n) = self.socket.recv(&mut buf) {
            self.seen
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        self.socket.set_nonblocking(false).unwrap();
        &self.seen
    }
}

fn value<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    msg.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// GET `path` over plain HTTP/1.0: (status, body).
fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: t\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, body.to_owned())
}

fn bootlabd(config: &Path, notify: &NotifySocket) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(config)
        .env("NOTIFY_SOCKET", &notify.path)
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID");
    cmd
}

#[test]
fn ready_only_once_bound_reloading_ready_around_sighup_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lab.toml");
    let [dhcp, dns, tftp, http] = ports();
    std::fs::write(&config, lab_on(dir.path(), [dhcp, dns, tftp, http], 0)).unwrap();
    let mut notify = NotifySocket::bind(dir.path());
    let mut d = Daemon::start(bootlabd(&config, &notify));

    let ready = notify.wait_for(&mut d, "READY=1");
    // The moment READY=1 is read, every socket is bound: TCP connects, the
    // UDP ports are taken, /readyz says ready.
    TcpStream::connect(("127.0.0.1", http)).expect("http accepts at READY=1");
    TcpStream::connect(("127.0.0.1", dns)).expect("dns/tcp accepts at READY=1");
    for (what, port) in [("dhcp", dhcp), ("dns", dns), ("tftp", tftp)] {
        let e = UdpSocket::bind(("127.0.0.1", port))
            .err()
            .unwrap_or_else(|| panic!("{what} udp port {port} not bound at READY=1"));
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{what}: {e}");
    }
    let (code, body) = http_get(http, "/readyz");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("2 nodes"), "{body}");
    let status = value(&ready, "STATUS").expect("READY comes with a STATUS line");
    assert!(status.starts_with("serving lab dev (2 nodes"), "{status}");
    assert!(
        status.contains(&format!("http 127.0.0.1:{http}")),
        "{status}"
    );
    // Nothing said READY before this one.
    assert_eq!(
        notify
            .seen
            .iter()
            .filter(|m| m.lines().any(|l| l == "READY=1"))
            .count(),
        1,
        "{:?}",
        notify.seen
    );
    assert_eq!(http_get(http, "/healthz"), (200, "ok\n".into()));

    // SIGHUP with a lab of two more nodes: RELOADING=1 + MONOTONIC_USEC,
    // then READY=1, by which time the new inventory serves.
    std::fs::write(&config, lab_on(dir.path(), [dhcp, dns, tftp, http], 2)).unwrap();
    d.signal("HUP");
    let reloading = notify.wait_for(&mut d, "RELOADING=1");
    let usec: u64 = value(&reloading, "MONOTONIC_USEC")
        .expect("RELOADING=1 carries MONOTONIC_USEC")
        .parse()
        .expect("MONOTONIC_USEC is a number");
    assert!(usec > 0);
    let after = notify.wait_for(&mut d, "READY=1");
    assert!(
        value(&after, "STATUS").is_some_and(|s| s.contains("(4 nodes")),
        "{after}"
    );
    let (code, body) = http_get(http, "/readyz");
    assert_eq!(code, 200);
    assert!(body.contains("4 nodes"), "{body}");

    // SIGTERM: STOPPING=1, then exit 0.
    d.signal("TERM");
    let stopping = notify.wait_for(&mut d, "STOPPING=1");
    assert!(value(&stopping, "STATUS").is_some(), "{stopping}");
    let deadline = Instant::now() + READY;
    while d.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "bootlabd ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(d.child.try_wait().unwrap().unwrap().code(), Some(0));
    assert!(
        !notify.drain().iter().any(|m| m.contains("WATCHDOG=1")),
        "no watchdog without WATCHDOG_USEC: {:?}",
        notify.seen
    );
}

#[test]
fn a_port_clash_never_says_ready() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lab.toml");
    let ports = ports();
    std::fs::write(&config, lab_on(dir.path(), ports, 0)).unwrap();
    // Someone else holds the HTTP port (bound last: every other socket is
    // bound by then).
    let _taken = TcpListener::bind(("127.0.0.1", ports[3])).unwrap();
    let notify = NotifySocket::bind(dir.path());
    let mut notify = notify;
    let mut d = Daemon::start(bootlabd(&config, &notify));
    let deadline = Instant::now() + READY;
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "bootlabd kept running on a port clash"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "{status}");
    d.wait_for("binding http");
    let seen = notify.drain();
    assert!(
        !seen.iter().any(|m| m.lines().any(|l| l == "READY=1")),
        "{seen:?}"
    );
}

#[test]
fn watchdog_pings_while_every_service_runs() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lab.toml");
    std::fs::write(&config, lab_on(dir.path(), ports(), 0)).unwrap();
    let mut notify = NotifySocket::bind(dir.path());
    let mut cmd = bootlabd(&config, &notify);
    // As systemd sets it for WatchdogSec=0.4s (WATCHDOG_PID names the daemon
    // only when systemd knows it; without it any process may use it).
    cmd.env("WATCHDOG_USEC", "400000");
    let mut d = Daemon::start(cmd);
    notify.wait_for(&mut d, "READY=1");
    for _ in 0..3 {
        notify.wait_for(&mut d, "WATCHDOG=1");
    }
    d.stop();
}

/// A network namespace with only `lo` up, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!("blnotify-{tag}-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip (iproute2) is required");
        assert!(ok.success(), "ip netns add {name} (root needed)");
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn ip(&self, args: &[&str]) {
        let ok = Command::new("ip")
            .args(["-n", &self.0])
            .args(args)
            .status()
            .unwrap();
        assert!(ok.success(), "ip -n {} {args:?}", self.0);
    }

    /// `nft list table inet bootlab` in the namespace, if it exists.
    fn bootlab_table(&self) -> Option<String> {
        let o = Command::new("ip")
            .args([
                "netns", "exec", &self.0, "nft", "list", "table", "inet", "bootlab",
            ])
            .output()
            .expect("nft (nftables) is required");
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    }

    fn bootlabd(&self, config: &Path, notify: &NotifySocket) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.0, BIN])
            .arg("--config")
            .arg(config)
            .env("NOTIFY_SOCKET", &notify.path)
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID");
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn ready_only_once_the_firewall_is_applied_and_never_when_it_cannot_be() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lab.toml");
    std::fs::write(
        &config,
        lab_builder_on(dir.path(), ports(), 0)
            .edit(|f| f.services.firewall = true)
            .toml(),
    )
    .unwrap();
    let ns = Netns::new("fw");

    // No NIC with services.mac in the namespace: the ruleset cannot be
    // built, start-up fails closed, and systemd never hears READY=1.
    let mut notify = NotifySocket::bind(dir.path());
    let mut d = Daemon::start(ns.bootlabd(&config, &notify));
    let deadline = Instant::now() + READY;
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "bootlabd kept running without its firewall"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "{status}");
    d.wait_for("interfaces for the firewall");
    assert!(
        !notify
            .drain()
            .iter()
            .any(|m| m.lines().any(|l| l == "READY=1")),
        "READY=1 without a firewall: {:?}",
        notify.seen
    );
    assert!(ns.bootlab_table().is_none());
    drop(notify);
    std::fs::remove_file(dir.path().join("notify.sock")).unwrap();

    // The lab NIC (services.mac) exists: READY=1, and at that moment the
    // table is in place.
    // (a veth pair inside the namespace: not every kernel has `dummy`)
    ns.ip(&[
        "link", "add", "lab0", "type", "veth", "peer", "name", "lab1",
    ]);
    ns.ip(&["link", "set", "lab0", "address", "52:54:00:77:00:fe", "up"]);
    let mut notify = NotifySocket::bind(dir.path());
    let mut d = Daemon::start(ns.bootlabd(&config, &notify));
    notify.wait_for(&mut d, "READY=1");
    let table = ns
        .bootlab_table()
        .expect("table inet bootlab is applied when READY=1 arrives");
    assert!(table.contains("chain input"), "{table}");
    d.signal("TERM");
    notify.wait_for(&mut d, "STOPPING=1");
}
