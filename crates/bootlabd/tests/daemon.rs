//! The real `bootlabd` binary: `--check` exit codes, start-up, SIGHUP reload
//! (broken file keeps the old inventory; good file goes live), SIGTERM.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{Daemon, lab_on, ports, repo};

const BIN: &str = env!("CARGO_BIN_EXE_bootlabd");

/// A small lab on loopback with fresh free ports.
fn lab(dir: &Path, extra_nodes: usize) -> String {
    lab_on(dir, ports(), extra_nodes)
}

#[test]
fn check_accepts_every_shipped_config() {
    for cfg in ["config/dev.toml", "config/okd-lab.toml"] {
        let out = Command::new(BIN)
            .args(["--check", "--config"])
            .arg(repo(cfg))
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{cfg}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
    }
}

#[test]
fn check_exits_64_with_every_error_located() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text = lab(dir.path(), 0)
        .replace(
            "mac  = \"52:54:00:77:00:10\"",
            "mac  = \"52:54:00:77:00:1g\"",
        )
        .replace("lease   = \"1h\"", "lease   = \"soon\"");
    std::fs::write(&bad, &text).unwrap();
    let out = Command::new(BIN)
        .arg("--check")
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    let mac_line = text.lines().position(|l| l.contains("00:1g")).unwrap() + 1;
    assert!(err.contains(&format!("bad.toml:{mac_line}:")), "{err}");
    assert!(err.contains("nodes[0].mac"), "{err}");
    assert!(err.contains("network.lease"), "{err}");
    assert!(err.contains("2 errors"), "{err}");
}

#[test]
fn check_rejects_unknown_keys_with_their_location() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text =
        lab(dir.path(), 0).replace("firewall   = false", "firewall   = false\nfirewal = true");
    std::fs::write(&bad, &text).unwrap();
    let out = Command::new(BIN)
        .arg("--check")
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .position(|l| l.starts_with("firewal "))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!(
            "bad.toml:{line}:1: services.firewal: unknown key `firewal`"
        )),
        "{err}"
    );
}

#[test]
fn missing_config_exits_64_and_says_what_to_do() {
    let out = Command::new(BIN)
        .args(["--check", "--config", "/nonexistent/lab.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
}

#[test]
fn sighup_keeps_old_inventory_on_error_and_swaps_on_success_then_sigterm_stops() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lab.toml");
    let ports = ports();
    let good = lab_on(dir.path(), ports, 0);
    std::fs::write(&config, &good).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(&config);
    let mut d = Daemon::spawn(cmd);

    // A broken file: the daemon keeps running and says why.
    std::fs::write(
        &config,
        good.replace("ip   = \"127.0.0.11\"", "ip   = \"10.0.0.11\""),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_for("reload failed, keeping the old inventory");
    d.wait_for("nodes[1].ip");
    assert!(d.child.try_wait().unwrap().is_none(), "still running");

    // A good file with two more nodes goes live.
    std::fs::write(&config, lab_on(dir.path(), ports, 2)).unwrap();
    d.signal("HUP");
    let line = d.wait_for("reloaded inventory");
    assert!(line.contains("nodes=4"), "{line}");

    // SIGTERM: exits 0 within the grace deadline.
    d.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = d.child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bootlabd did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !d.seen.iter().any(|l| l.contains("services.listen changed")),
        "{}",
        d.seen.join("\n")
    );
}
