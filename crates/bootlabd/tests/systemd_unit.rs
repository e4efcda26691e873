//! deploy/systemd/bootlabd.service passes `systemd-analyze verify` and
//! rates "OK" or better (exposure <= 3.0) in `systemd-analyze security`,
//! the figure docs/install.md states. (The unit running under a real
//! systemd is tests/systemd_guest.rs.)

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_bootlabd");

/// What docs/install.md says the unit rates.
const DOCUMENTED_EXPOSURE: &str = "1.6";

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/systemd/bootlabd.service")
}

fn analyze(args: &[&str], unit: &Path) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .expect("systemd-analyze (package systemd) is required");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn unit_verifies_clean() {
    // verify checks that ExecStart's program exists: point the unit at the
    // binary just built, everything else unchanged.
    let text = std::fs::read_to_string(unit_path()).unwrap();
    assert!(text.contains("/usr/sbin/bootlabd"));
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("bootlabd.service");
    std::fs::write(&unit, text.replace("/usr/sbin/bootlabd", BIN)).unwrap();
    // Documentation= (man pages) is checked by tests of the package, where
    // the pages are installed.
    let (ok, out) = analyze(&["verify", "--man=no"], &unit);
    assert!(ok, "systemd-analyze verify failed:\n{out}");
    assert!(out.trim().is_empty(), "verify printed warnings:\n{out}");
}

#[test]
fn unit_exposure_is_ok_or_better_and_as_documented() {
    let (ok, out) = analyze(
        &["security", "--offline=true", "--threshold=30", "--no-pager"],
        &unit_path(),
    );
    let overall = out
        .lines()
        .find(|l| l.contains("Overall exposure level for bootlabd.service"))
        .unwrap_or_else(|| panic!("no overall exposure line:\n{out}"));
    let figure = overall
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{overall}"));
    let exposure: f64 = figure.parse().unwrap();
    assert!(ok && exposure <= 3.0, "exposure {exposure} > 3.0:\n{out}");
    assert!(
        overall.contains(" OK") || overall.contains("SAFE") || overall.contains("PERFECT"),
        "{overall}"
    );
    assert_eq!(
        figure, DOCUMENTED_EXPOSURE,
        "docs/install.md states {DOCUMENTED_EXPOSURE}: update it (and this constant)"
    );
    let docs = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/install.md"),
    )
    .unwrap();
    assert!(
        docs.contains(&format!("exposure {DOCUMENTED_EXPOSURE}")),
        "docs/install.md must state the exposure figure {DOCUMENTED_EXPOSURE}"
    );
}
