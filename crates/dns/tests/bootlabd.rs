//! The real daemon: `target/debug/bootlabd` serving config/okd-lab.toml on
//! loopback high ports, queried with `kdig`. SIGHUP with a changed inventory
//! swaps the zones (new record, new SOA serial); SIGHUP with a broken one
//! keeps the old zones serving; SIGTERM stops it.
//!
//! Needs `kdig` (knot-dnsutils) and a built `target/debug/bootlabd`
//! (`cargo build -p bootlab-bootlabd`; `cargo test --workspace` builds it).

use std::process::Command;

use bootlab_testkit::daemon::bootlabd;
use bootlab_testkit::{Daemon, LabBuilder, Sockets, wait_until};

/// `base` with `extra` records `(name, type, value)`.
fn lab_text(base: &LabBuilder, extra: &[(&str, &str, &str)]) -> String {
    let mut lab = base.clone();
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

#[test]
fn bootlabd_serves_the_zones_and_reloads_them_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let sockets = Sockets::loopback(&[]);
    let port = sockets.listen.dns.port();
    let base = sockets.lab(LabBuilder::okd(), dir.path());
    let config = dir.path().join("lab.toml");
    std::fs::write(&config, lab_text(&base, &[])).unwrap();
    let mut daemon = Daemon::on_sockets(&bootlabd(), &config, sockets);
    daemon.wait_for("listening for dns on");

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
        lab_text(&base, &[("added", "A", "192.168.200.99")]),
    )
    .unwrap();
    daemon.signal("HUP");
    wait_until("new record served after SIGHUP", || {
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
    daemon.wait_for("keeping the old inventory");
    assert_eq!(
        kdig(port, &["added.okd.example.com.", "A"]),
        "192.168.200.99"
    );
    assert_eq!(
        kdig(port, &["master-0.okd.example.com.", "A"]),
        "192.168.200.30"
    );

    daemon.stop();
    assert!(
        daemon.seen.iter().any(|l| l.contains("dns stopped")),
        "{}",
        daemon.seen.join("\n")
    );
}
