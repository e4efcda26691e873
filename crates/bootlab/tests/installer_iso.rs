//! The kickstart method's installer ISO, read by [`bootlab_bootlab::iso`]:
//! images built here with the real `xorriso` in the installer layout
//! (`images/pxeboot/vmlinuz`, `images/pxeboot/initrd.img`, as Fedora's and
//! RHEL's DVDs have them), with Rock Ridge and Joliet like the real ones
//! and as plain ISO 9660; both files come back byte-identical. A missing
//! file and a file that is not an ISO give errors naming the path.
//!
//! Needs xorriso (tests/apt-packages.txt). Never skips.

use std::path::Path;
use std::process::Command;

use bootlab_bootlab::iso::{INITRD, Iso, IsoError, KERNEL, installer_boot_files};

/// Deterministic bytes that are not a multiple of the 2 KiB sector.
fn content(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn build_iso(dir: &Path, name: &str, extra: &[&str]) -> std::path::PathBuf {
    let tree = dir.join(format!("{name}-tree"));
    std::fs::create_dir_all(tree.join("images/pxeboot")).unwrap();
    std::fs::create_dir_all(tree.join("EFI/BOOT")).unwrap();
    std::fs::write(
        tree.join("images/pxeboot/vmlinuz"),
        content(1, 3 * 1024 * 1024 + 17),
    )
    .unwrap();
    std::fs::write(
        tree.join("images/pxeboot/initrd.img"),
        content(2, 5 * 1024 * 1024 + 4095),
    )
    .unwrap();
    std::fs::write(tree.join("images/install.img"), content(3, 100_000)).unwrap();
    std::fs::write(tree.join("EFI/BOOT/grub.cfg"), "menuentry x {}\n").unwrap();
    std::fs::write(tree.join(".treeinfo"), "[general]\nfamily = Fedora\n").unwrap();
    let iso = dir.join(format!("{name}.iso"));
    let out = Command::new("xorriso")
        .args(["-as", "mkisofs", "-V", "Fedora-S-dvd-x86_64-41"])
        .args(extra)
        .arg("-o")
        .arg(&iso)
        .arg(&tree)
        .output()
        .expect("xorriso (Debian package xorriso) must be installed");
    assert!(
        out.status.success(),
        "xorriso: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    iso
}

fn check_layout(name: &str, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let iso = build_iso(dir.path(), name, extra);
    let out = dir.path().join(format!("{name}-out"));
    std::fs::create_dir(&out).unwrap();
    let (kernel, initrd) = installer_boot_files(&iso, &out).unwrap();
    let tree = dir.path().join(format!("{name}-tree"));
    assert!(
        std::fs::read(&kernel).unwrap() == std::fs::read(tree.join(KERNEL)).unwrap(),
        "{name}: the kernel differs"
    );
    assert!(
        std::fs::read(&initrd).unwrap() == std::fs::read(tree.join(INITRD)).unwrap(),
        "{name}: the initrd differs"
    );
}

#[test]
fn rock_ridge_and_joliet_installer_layout_reads_back_byte_identical() {
    check_layout("rrjoliet", &["-R", "-J", "-joliet-long"]);
}

#[test]
fn rock_ridge_only_reads_back_byte_identical() {
    check_layout("rr", &["-R"]);
}

#[test]
fn plain_iso9660_reads_back_byte_identical() {
    check_layout("plain", &["-iso-level", "3"]);
}

#[test]
fn a_missing_file_names_the_iso_and_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let iso = build_iso(dir.path(), "x", &["-R", "-J"]);
    let mut image = Iso::open(&iso).unwrap();
    let err = image
        .copy_to("images/pxeboot/nothere", &mut Vec::new())
        .unwrap_err();
    assert!(matches!(err, IsoError::Missing { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&iso.display().to_string()) && msg.contains("images/pxeboot/nothere"),
        "{msg}"
    );
    // A directory is not the file either.
    let err = image
        .copy_to("images/pxeboot", &mut Vec::new())
        .unwrap_err();
    assert!(matches!(err, IsoError::Missing { .. }), "{err:?}");
}

#[test]
fn not_an_iso_and_no_file_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("Fedora.iso");
    std::fs::write(&fake, content(4, 64 * 1024)).unwrap();
    let err = installer_boot_files(&fake, dir.path()).unwrap_err();
    assert!(matches!(err, IsoError::NotIso { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&fake.display().to_string()),
        "{err}"
    );
    let short = dir.path().join("short.iso");
    std::fs::write(&short, b"tiny").unwrap();
    let err = installer_boot_files(&short, dir.path()).unwrap_err();
    assert!(
        err.to_string().contains(&short.display().to_string()),
        "{err}"
    );
    let none = dir.path().join("absent.iso");
    let err = installer_boot_files(&none, dir.path()).unwrap_err();
    assert!(matches!(err, IsoError::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("absent.iso"), "{err}");
}
