//! The real daemon: `target/debug/bootlabd` serving config/okd-lab.toml on
//! loopback high ports, queried with `kdig`. SIGHUP with a changed inventory
//! swaps the zones (new record, new SOA serial); SIGHUP with a broken one
//! keeps the old zones serving; SIGTERM stops it.
//!
//! Needs `kdig` (knot-dnsutils) and a built `target/debug/bootlabd`
//! (`cargo build -p bootlab-bootlabd`; `cargo test --workspace` builds it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use bootlab_testkit::lab::free_port;

fn bootlabd_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    let p = target.join("debug/bootlabd");
    assert!(
        p.is_file(),
        "{} is missing: cargo build -p bootlab-bootlabd",
        p.display()
    );
    p
}

struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// okd-lab.toml as a loopback test daemon serves it, DNS on `dns_port`,
/// with `extra` records `(name, type, value)`.
fn lab_text(dir: &Path, dns_port: u16, extra: &[(&str, &str, &str)]) -> String {
    let mut listen = bootlab_testkit::lab::Listen::free_loopback();
    listen.dns = std::net::SocketAddr::from(([127, 0, 0, 1], dns_port));
    let mut lab = bootlab_testkit::LabBuilder::okd().local_daemon(dir, &listen);
    for (name, rtype, value) in extra {
        lab = lab.record(name, rtype, value);
    }
    lab.toml()
}

fn kdig(port: u16, args: &[&str]) -> String {
    let out = Command::new("kdig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+retry=0",
            "+timeout=5",
            "+short",
        ])
        .args(args)
        .output()
        .expect("kdig is missing: apt-get install knot-dnsutils (tests/apt-packages.txt)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn soa_serial(port: u16) -> String {
    kdig(port, &["okd.example.com.", "SOA"])
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_owned()
}

/// Polls `check` (up to ~10 s); a hang guard, not a timing assertion.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("never happened: {what}");
}

#[test]
fn bootlabd_serves_the_zones_and_reloads_them_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("lab.toml");
    std::fs::write(&config, lab_text(dir.path(), port, &[])).unwrap();
    let log = dir.path().join("bootlabd.log");
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(bootlabd_path())
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let daemon = Daemon { child, log };
    eventually("bootlabd listens for dns", || {
        daemon
            .log()
            .contains(&format!("listening for dns on 127.0.0.1:{port}"))
    });

    assert_eq!(
        kdig(port, &["master-0.okd.example.com.", "A"]),
        "192.168.200.30"
    );
    assert_eq!(
        kdig(port, &["-x", "192.168.200.30"]),
        "master-0.okd.example.com."
    );
    assert_eq!(
        kdig(port, &["master-0.okd.example.com.", "A", "+tcp"]),
        "192.168.200.30"
    );
    assert_eq!(kdig(port, &["added.okd.example.com.", "A"]), "");
    let serial_before = soa_serial(port);
    assert!(!serial_before.is_empty());

    // a good inventory with one more record
    std::fs::write(
        &config,
        lab_text(dir.path(), port, &[("added", "A", "192.168.200.99")]),
    )
    .unwrap();
    daemon.signal("HUP");
    eventually("new record served after SIGHUP", || {
        kdig(port, &["added.okd.example.com.", "A"]) == "192.168.200.99"
    });
    assert_ne!(
        soa_serial(port),
        serial_before,
        "SOA serial follows the content"
    );

    // a broken inventory: the old zones keep serving
    std::fs::write(&config, "this is not toml [").unwrap();
    daemon.signal("HUP");
    eventually("reload failure logged", || {
        daemon.log().contains("keeping the old inventory")
    });
    assert_eq!(
        kdig(port, &["added.okd.example.com.", "A"]),
        "192.168.200.99"
    );
    assert_eq!(
        kdig(port, &["master-0.okd.example.com.", "A"]),
        "192.168.200.30"
    );

    daemon.signal("TERM");
    let mut daemon = daemon;
    let mut stopped = false;
    for _ in 0..200 {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            assert!(status.success(), "{status}\n{}", daemon.log());
            stopped = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(stopped, "bootlabd stops on SIGTERM\n{}", daemon.log());
    assert!(daemon.log().contains("dns stopped"), "{}", daemon.log());
}
