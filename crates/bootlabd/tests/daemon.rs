//! The real `bootlabd` binary: `--check` exit codes, start-up, SIGHUP reload
//! (broken file keeps the old inventory; good file goes live), SIGTERM.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bootlab_testkit::lab::Listen;
use bootlab_testkit::{Daemon, LabBuilder, Sockets};

mod common;
use common::repo;

const BIN: &str = env!("CARGO_BIN_EXE_bootlabd");

/// `lab` with `extra` more worker nodes.
fn with_nodes(lab: LabBuilder, extra: usize) -> LabBuilder {
    lab.edit(|f| {
        for i in 0..extra {
            let mut n = f.nodes[0].clone();
            n.name = format!("extra-{i}");
            n.mac = None;
            n.ip = format!("127.0.0.{}", 20 + i);
            n.firmware = None;
            n.vars.clear();
            f.nodes.push(n);
        }
    })
}

/// config/dev.toml as a test daemon's inventory (for `--check`, which
/// binds nothing), state under `dir`.
fn lab_builder(dir: &Path) -> LabBuilder {
    LabBuilder::dev().local_daemon(dir, &Listen::free_loopback())
}

fn lab(dir: &Path) -> String {
    lab_builder(dir).toml()
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
    let text = lab_builder(dir.path())
        .edit(|f| {
            f.nodes[0].mac = Some("52:54:00:77:00:1g".into());
            f.network.lease = "soon".into();
        })
        .toml();
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
    let text = lab(dir.path());
    assert!(text.contains("firewall = false\n"), "{text}");
    let text = text.replacen(
        "firewall = false\n",
        "firewall = false\nfirewal = true\n",
        1,
    );
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
        err.contains("error: services.firewal: unknown key `firewal`"),
        "{err}"
    );
    assert!(err.contains(&format!("bad.toml:{line}:1\n")), "{err}");
    assert!(err.contains("did you mean `firewall`?"), "{err}");
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
    let sockets = Sockets::loopback(&[]);
    let base = sockets.lab(LabBuilder::dev(), dir.path());
    std::fs::write(&config, base.toml()).unwrap();
    let mut d = Daemon::on_sockets(Path::new(BIN), &config, sockets);

    // A broken file: the daemon keeps running and says why.
    std::fs::write(
        &config,
        base.clone()
            .edit(|f| f.nodes[1].ip = "10.0.0.11".into())
            .toml(),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_for("reload failed, keeping the old inventory");
    d.wait_for("nodes[1].ip");
    assert!(d.child.try_wait().unwrap().is_none(), "still running");

    // A good file with two more nodes goes live.
    std::fs::write(&config, with_nodes(base, 2).toml()).unwrap();
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
