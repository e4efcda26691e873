//! The kickstart method's installer ISO, read by [`bootlab_bootlab::iso`]:
//! images built here with the real `xorriso` in the installer layout
//! (`images/pxeboot/vmlinuz`, `images/pxeboot/initrd.img`, as Fedora's and
//! RHEL's DVDs have them), with Rock Ridge and Joliet like the real ones
//! and as plain ISO 9660; both files come back byte-identical. A missing
//! file and a file that is not an ISO give errors naming the path.
//!
//! The kickstart injected into an initrd shaped like Fedora's (an
//! uncompressed early cpio, then a gzip-compressed main one), taken from
//! such an ISO: each archive listed back with GNU `cpio -t` (the appended
//! one starts at the next 4-byte boundary after zeros), the originals
//! intact, `ks.cfg` equal to `bootlab render LAB kickstart`.
//!
//! Needs xorriso, cpio and gzip (tests/apt-packages.txt). Never skips.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

fn build_iso(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
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

/// Runs `cmd` with `input` on stdin; its stdout.
fn pipe(cmd: &mut Command, input: &[u8]) -> Vec<u8> {
    let name = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: {e} (see tests/apt-packages.txt)"));
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A newc archive of `files` (relative paths under `root`) by GNU cpio.
fn gnu_cpio(root: &Path, files: &[&str]) -> Vec<u8> {
    let list = files.iter().map(|f| format!("{f}\n")).collect::<String>();
    pipe(
        Command::new("cpio")
            .args(["-o", "-H", "newc", "--quiet"])
            .current_dir(root),
        list.as_bytes(),
    )
}

fn cpio_list(archive: &[u8]) -> Vec<String> {
    let out = pipe(Command::new("cpio").args(["-t", "--quiet"]), archive);
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_kickstart_injected_into_the_isos_initrd_lists_back_with_the_originals() {
    let dir = tempfile::tempdir().unwrap();
    // An initrd shaped like Fedora's: early microcode, then the gzip'd root.
    let root = dir.path().join("initrd-root");
    for (f, body) in [
        ("kernel/x86/microcode/GenuineIntel.bin", "microcode"),
        ("init", "#!/bin/sh\n"),
        ("etc/os-release", "NAME=Fedora\n"),
        ("usr/sbin/anaconda", "installer"),
    ] {
        std::fs::create_dir_all(root.join(f).parent().unwrap()).unwrap();
        std::fs::write(root.join(f), body).unwrap();
    }
    let early = gnu_cpio(
        &root,
        &[
            "kernel",
            "kernel/x86",
            "kernel/x86/microcode",
            "kernel/x86/microcode/GenuineIntel.bin",
        ],
    );
    // Real initrds end anywhere: grow a file until this one does not end
    // on a 4-byte boundary, so the padding is exercised.
    let mut filler = String::new();
    let main = loop {
        std::fs::write(root.join("usr/sbin/anaconda"), format!("installer{filler}")).unwrap();
        let main = pipe(
            Command::new("gzip").args(["-9", "-c"]),
            &gnu_cpio(
                &root,
                &[
                    "init",
                    "etc",
                    "etc/os-release",
                    "usr",
                    "usr/sbin",
                    "usr/sbin/anaconda",
                ],
            ),
        );
        if (early.len() + main.len()) % 4 != 0 {
            break main;
        }
        filler.push('!');
    };
    let mut initrd = early.clone();
    initrd.extend_from_slice(&main);
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("images/pxeboot")).unwrap();
    std::fs::write(tree.join("images/pxeboot/vmlinuz"), content(7, 9000)).unwrap();
    std::fs::write(tree.join("images/pxeboot/initrd.img"), &initrd).unwrap();
    let iso = dir.path().join("Fedora.iso");
    let o = Command::new("xorriso")
        .args(["-as", "mkisofs", "-R", "-J", "-o"])
        .arg(&iso)
        .arg(&tree)
        .output()
        .expect("xorriso");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // The lab and its kickstart, as `bootlab render` prints it.
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/isolated-lab.toml"),
    )
    .unwrap();
    let lab = dir.path().join("lab.toml");
    std::fs::write(
        &lab,
        base.replacen(
            "[services]\n",
            &format!("[services]\nssh_authorized_keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKEY me@host\"]\ninstall = {{ method = \"kickstart\", iso = \"{}\" }}\n", iso.display()),
            1,
        ),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_bootlab"))
        .arg("render")
        .arg(&lab)
        .arg("kickstart")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ks = String::from_utf8(o.stdout).unwrap();

    let out = dir.path().join("boot");
    std::fs::create_dir(&out).unwrap();
    let (_, injected) = installer_boot_files(&iso, &out).unwrap();
    bootlab_bootlab::kickstart::inject(&injected, &ks).unwrap();
    let bytes = std::fs::read(&injected).unwrap();

    // The original bytes are untouched, then zeros to a 4-byte boundary.
    assert!(
        bytes[..initrd.len()] == initrd[..],
        "the original initrd changed"
    );
    let start = initrd.len().div_ceil(4) * 4;
    assert!(bytes[initrd.len()..start].iter().all(|b| *b == 0));
    assert!(start > initrd.len(), "the test initrd should need padding");

    assert_eq!(
        cpio_list(&bytes[..early.len()]),
        [
            "kernel",
            "kernel/x86",
            "kernel/x86/microcode",
            "kernel/x86/microcode/GenuineIntel.bin"
        ]
    );
    let unzipped = pipe(
        Command::new("gzip").args(["-d", "-c"]),
        &bytes[early.len()..initrd.len()],
    );
    assert_eq!(
        cpio_list(&unzipped),
        [
            "init",
            "etc",
            "etc/os-release",
            "usr",
            "usr/sbin",
            "usr/sbin/anaconda"
        ]
    );
    let appended = &bytes[start..];
    assert_eq!(cpio_list(appended), ["ks.cfg"]);
    let body = pipe(
        Command::new("cpio").args(["-i", "--to-stdout", "--quiet", "ks.cfg"]),
        appended,
    );
    assert!(
        String::from_utf8(body).unwrap() == ks,
        "ks.cfg differs from `render kickstart`"
    );
}
