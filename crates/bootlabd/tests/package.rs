//! The Debian package (tests/build-deb.sh): the files it ships, its
//! dependencies, lintian without errors, an installation that enables and
//! starts nothing, a bootlabd that needs only glibc (>= 2.34 symbols at
//! most) and libgcc_s, and `cargo install --path` for both programs.
//! Installing and running it under systemd: tests/systemd_guest.rs.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::{build_deb, repo, run_ok};

#[test]
fn deb_ships_binaries_unit_example_pages_and_completions() {
    let deb = build_deb();
    let listing = run_ok(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let files: BTreeSet<&str> = listing
        .lines()
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| l.split_whitespace().last())
        .map(|p| p.trim_start_matches('.'))
        .collect();
    for want in [
        "/usr/sbin/bootlabd",
        "/usr/bin/bootlab",
        "/usr/lib/systemd/system/bootlabd.service",
        "/etc/bootlab/lab.toml.example",
        "/usr/share/man/man1/bootlab.1.gz",
        "/usr/share/man/man1/bootlab-plan.1.gz",
        "/usr/share/man/man8/bootlabd.8.gz",
        "/usr/share/man/man5/lab.toml.5.gz",
        "/usr/share/bash-completion/completions/bootlab",
        "/usr/share/bash-completion/completions/bootlabd",
        "/usr/share/zsh/vendor-completions/_bootlab",
        "/usr/share/zsh/vendor-completions/_bootlabd",
        "/usr/share/fish/vendor_completions.d/bootlab.fish",
        "/usr/share/fish/vendor_completions.d/bootlabd.fish",
        "/usr/share/doc/bootlab/copyright",
        "/usr/share/doc/bootlab/changelog.Debian.gz",
    ] {
        assert!(
            files.contains(want),
            "{want} missing from the .deb:\n{listing}"
        );
    }
    assert!(
        !files.contains("/etc/bootlab/lab.toml"),
        "the package must not ship the inventory (the unit waits for it)"
    );
    // The unit and example shipped are the repository's.
    let x = tempfile::tempdir().unwrap();
    run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(x.path()));
    for (shipped, ours) in [
        (
            "usr/lib/systemd/system/bootlabd.service",
            "deploy/systemd/bootlabd.service",
        ),
        ("etc/bootlab/lab.toml.example", "deploy/lab.toml.example"),
    ] {
        assert_eq!(
            std::fs::read(x.path().join(shipped)).unwrap(),
            std::fs::read(repo(ours)).unwrap(),
            "{shipped}"
        );
    }
    // The example is valid and keeps the firewall off.
    let example = x.path().join("etc/bootlab/lab.toml.example");
    run_ok(
        Command::new(x.path().join("usr/sbin/bootlabd"))
            .args(["--check", "--config"])
            .arg(&example),
    );
    let text = std::fs::read_to_string(&example).unwrap();
    assert!(text.contains("\nfirewall   = false"), "{text}");
}

#[test]
fn deb_control_depends_conffiles_and_no_autostart() {
    let deb = build_deb();
    let field = |f: &str| {
        run_ok(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(f))
            .trim()
            .to_owned()
    };
    assert_eq!(field("Package"), "bootlab");
    let depends = field("Depends");
    let names: Vec<&str> = depends
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(names, ["libc6", "libvirt0"], "{depends}");
    assert!(depends.contains("libc6 (>= 2.34)"), "{depends}");

    let ctl = tempfile::tempdir().unwrap();
    run_ok(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(ctl.path()));
    let conffiles = std::fs::read_to_string(ctl.path().join("conffiles")).unwrap();
    assert!(
        conffiles.contains("/etc/bootlab/lab.toml.example"),
        "{conffiles}"
    );
    // Installing neither enables nor starts the unit.
    let postinst = std::fs::read_to_string(ctl.path().join("postinst")).unwrap_or_default();
    assert!(
        !postinst.contains("deb-systemd-invoke start") && !postinst.contains("systemctl start"),
        "{postinst}"
    );
    assert!(
        !postinst.contains("deb-systemd-helper enable"),
        "{postinst}"
    );
}

#[test]
fn lintian_finds_no_errors() {
    let deb = build_deb();
    let out = Command::new("lintian")
        .args(["--fail-on", "error", "--no-tag-display-limit"])
        .arg(&deb)
        .output()
        .expect("lintian (tests/apt-packages.txt) is required");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.lines().any(|l| l.starts_with("E: ")),
        "lintian errors:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `GLIBC_x.y` versions the binary's dynamic symbols need, as (x, y).
fn glibc_versions(bin: &Path) -> BTreeSet<(u32, u32)> {
    run_ok(Command::new("objdump").arg("-T").arg(bin))
        .split_whitespace()
        .filter_map(|w| {
            w.trim_matches(|c| c == '(' || c == ')')
                .strip_prefix("GLIBC_")
        })
        .filter_map(|v| {
            let (a, b) = v.split_once('.')?;
            Some((a.parse().ok()?, b.split('.').next()?.parse().ok()?))
        })
        .collect()
}

#[test]
fn packaged_bootlabd_needs_only_glibc_2_34_and_libgcc_s() {
    // What the Fedora/RHEL path (binary + unit, no .deb) relies on.
    let deb = build_deb();
    let x = tempfile::tempdir().unwrap();
    run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(x.path()));
    let bin = x.path().join("usr/sbin/bootlabd");
    let dynamic = run_ok(Command::new("readelf").arg("-d").arg(&bin));
    let needed: BTreeSet<&str> = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    let glibc: BTreeSet<&str> = ["libc.so.6", "libm.so.6", "ld-linux-x86-64.so.2"].into();
    for lib in &needed {
        assert!(
            glibc.contains(lib) || *lib == "libgcc_s.so.1",
            "bootlabd needs {lib}: {needed:?}"
        );
    }
    let newest = glibc_versions(&bin).into_iter().max().unwrap();
    assert!(
        newest <= (2, 34),
        "bootlabd needs GLIBC_{}.{}",
        newest.0,
        newest.1
    );
    assert!(
        !run_ok(Command::new("readelf").arg("-S").arg(&bin)).contains(".debug_info"),
        "the packaged binary is stripped"
    );
}

#[test]
fn cargo_install_path_installs_both_programs() {
    build_deb(); // the release build cargo install reuses
    let root = tempfile::tempdir().unwrap();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| repo("target"), std::path::PathBuf::from);
    for (krate, bin) in [
        ("crates/bootlabd", "bootlabd"),
        ("crates/bootlab", "bootlab"),
    ] {
        run_ok(
            Command::new(env!("CARGO"))
                .args(["install", "--locked", "--offline", "--path"])
                .arg(repo(krate))
                .arg("--root")
                .arg(root.path())
                .arg("--target-dir")
                .arg(&target),
        );
        let version = run_ok(Command::new(root.path().join("bin").join(bin)).arg("--version"));
        assert!(version.starts_with(&format!("{bin} ")), "{version}");
    }
}
