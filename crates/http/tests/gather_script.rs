//! `boot-assets/gather.sh DIR` with the real Debian packages: the first-stage
//! binaries and GRUB modules land in DIR with a manifest that verifies, and
//! the HTTP service serves them byte for byte. On other distributions
//! (`BOOTLAB_HOST_ROOT` holding their os-release): a Fedora host downloads
//! with the real `dnf download` (from a local repository made with
//! createrepo_c of RPMs laid out as Fedora's ipxe-bootimgs-x86,
//! grub2-efi-x64 and grub2-efi-x64-modules, built with rpmbuild around
//! Debian's loader binaries), a RHEL host takes them installed (`rpm
//! --root`), an offline host takes a directory of .rpm or .deb files, and a
//! distribution it cannot tell fails saying what to do.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bootlab_testkit::repo_root;
use common::{Lab, get};

#[test]
fn gather_puts_loaders_and_grub_modules_with_a_verifying_manifest() {
    let lab = Lab::start();
    let dir = &lab.assets;
    let script = repo_root().join("boot-assets/gather.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(dir)
        .output()
        .expect("bash runs gather.sh");
    assert!(
        out.status.success(),
        "gather.sh failed (needs apt-get update and the Debian archive):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    for name in [
        "undionly.kpxe",
        "snponly.efi",
        "ipxe.efi",
        "grubnetx64.efi",
        "grubx64.efi",
        "shimx64.efi",
        "grubx64-http.efi",
    ] {
        let bytes = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(bytes.len() > 10_000, "{name} is {} bytes", bytes.len());
        if name.ends_with(".efi") {
            assert_eq!(&bytes[..2], b"MZ", "{name} is a PE/COFF image");
        }
    }
    for module in [
        "http.mod",
        "net.mod",
        "linux.mod",
        "efinet.mod",
        "moddep.lst",
        "command.lst",
    ] {
        assert!(
            dir.join("grub/x86_64-efi").join(module).is_file(),
            "{module}"
        );
    }

    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    assert!(
        sums.lines()
            .any(|l| l.ends_with("  grub/x86_64-efi/http.mod")),
        "{sums}"
    );
    assert!(!sums.contains("vmlinuz"), "only gathered files are listed");
    let check = Command::new("sha256sum")
        .args(["--check", "--quiet", "--strict", "SHA256SUMS"])
        .current_dir(dir)
        .output()
        .expect("sha256sum runs");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    let packages = std::fs::read_to_string(dir.join("PACKAGES")).unwrap();
    for pkg in [
        "ipxe ",
        "grub-efi-amd64-signed ",
        "grub-efi-amd64-bin ",
        "shim-signed ",
    ] {
        assert!(packages.lines().any(|l| l.starts_with(pkg)), "{packages}");
    }

    // What UEFI HTTP boot fetches: served byte for byte.
    let (code, body) = get(&[&lab.url("/assets/ipxe.efi")]);
    assert_eq!(code, 200);
    assert_eq!(body, std::fs::read(dir.join("ipxe.efi")).unwrap());
    let (code, body) = get(&[&lab.url("/assets/grub/x86_64-efi/http.mod")]);
    assert_eq!(code, 200);
    assert_eq!(
        body,
        std::fs::read(dir.join("grub/x86_64-efi/http.mod")).unwrap()
    );
}

/// Debian's installed loader files: what the test RPMs carry.
const IPXE: [(&str, &str); 3] = [
    ("/usr/lib/ipxe/undionly.kpxe", "undionly.kpxe"),
    ("/usr/lib/ipxe/snponly.efi", "ipxe-snponly-x86_64.efi"),
    ("/usr/lib/ipxe/ipxe.efi", "ipxe-x86_64.efi"),
];
const GRUB_EFI: &str = "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed";
const GRUB_MODULES: &str = "/usr/lib/grub/x86_64-efi";
const SHIM_EFI: &str = "/usr/lib/shim/shimx64.efi.signed";

fn run_ok(cmd: &mut Command) -> Output {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn require(tools: &[&str]) {
    for t in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .unwrap()
            .status
            .success();
        assert!(found, "{t} is not installed (tests/apt-packages.txt)");
    }
}

/// Builds `name` as an RPM from `tree` (a root-relative file tree) into
/// `out` with the real rpmbuild.
fn rpmbuild(work: &Path, out: &Path, name: &str, version: &str, arch: &str, tree: &Path) {
    let spec = work.join(format!("{name}.spec"));
    std::fs::write(
        &spec,
        format!(
            "Name: {name}\nVersion: {version}\nRelease: 1.fc41\nSummary: test package laid out as Fedora's\n\
             License: GPL-2.0-or-later\nBuildArch: {arch}\n\
             %define debug_package %{{nil}}\n%define __os_install_post %{{nil}}\n\
             %description\nbootlab gather.sh test package.\n\
             %install\ncp -a {tree}/. %{{buildroot}}/\n\
             %files\n/*\n",
            tree = tree.display()
        ),
    )
    .unwrap();
    run_ok(
        Command::new("rpmbuild")
            .arg("-bb")
            .arg("--define")
            .arg(format!("_topdir {}", work.join("rpmbuild").display()))
            .arg("--define")
            .arg(format!("_rpmdir {}", out.display()))
            .arg("--define")
            .arg("_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm")
            .arg(&spec),
    );
}

/// ipxe-bootimgs-x86, grub2-efi-x64 (grubx64.efi under EFI/`vendor`) and
/// grub2-efi-x64-modules, holding Debian's binaries at Fedora's paths.
fn fedora_like_rpms(work: &Path, vendor: &str) -> PathBuf {
    require(&["rpmbuild", "rpm", "rpm2cpio", "cpio"]);
    let out = work.join("rpms");
    std::fs::create_dir_all(&out).unwrap();
    let tree = |name: &str| {
        let t = work.join("trees").join(name);
        std::fs::create_dir_all(&t).unwrap();
        t
    };
    let ipxe = tree("ipxe");
    std::fs::create_dir_all(ipxe.join("usr/share/ipxe")).unwrap();
    for (from, to) in IPXE {
        std::fs::copy(from, ipxe.join("usr/share/ipxe").join(to)).unwrap();
    }
    rpmbuild(work, &out, "ipxe-bootimgs-x86", "20240119", "noarch", &ipxe);
    let efi = tree("efi");
    let d = efi.join("boot/efi/EFI").join(vendor);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(GRUB_EFI, d.join("grubx64.efi")).unwrap();
    rpmbuild(work, &out, "grub2-efi-x64", "2.12", "x86_64", &efi);
    let mods = tree("modules");
    std::fs::create_dir_all(mods.join("usr/lib/grub")).unwrap();
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(GRUB_MODULES)
            .arg(mods.join("usr/lib/grub/")),
    );
    rpmbuild(work, &out, "grub2-efi-x64-modules", "2.12", "noarch", &mods);
    let shim = tree("shim");
    let d = shim.join("boot/efi/EFI").join(vendor);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(SHIM_EFI, d.join("shimx64.efi")).unwrap();
    rpmbuild(work, &out, "shim-x64", "15.8", "x86_64", &shim);
    out
}

/// A host root holding only `os-release`.
fn host_root(work: &Path, os_release: &str) -> PathBuf {
    let root = work.join("host");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/os-release"), os_release).unwrap();
    root
}

const FEDORA: &str =
    "NAME=\"Fedora Linux\"\nVERSION=\"41 (Server Edition)\"\nID=fedora\nVERSION_ID=41\n";
const RHEL: &str =
    "NAME=\"Red Hat Enterprise Linux\"\nID=\"rhel\"\nID_LIKE=\"fedora\"\nVERSION_ID=\"9.4\"\n";
const UBUNTU: &str = "NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"24.04\"\n";

fn gather(root: Option<&Path>, args: &[&str], dnf_opts: Option<&str>) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("boot-assets/gather.sh"))
        .args(args);
    if let Some(r) = root {
        cmd.env("BOOTLAB_HOST_ROOT", r);
    }
    if let Some(o) = dnf_opts {
        cmd.env("BOOTLAB_DNF_OPTS", o);
    }
    cmd.output().unwrap()
}

/// DIR holds Debian's binaries under bootlab's names, the GRUB modules,
/// and a manifest that verifies; PACKAGES names `packages`.
fn assert_gathered(dir: &Path, packages: &[&str]) {
    for (from, name) in [
        ("/usr/lib/ipxe/undionly.kpxe", "undionly.kpxe"),
        ("/usr/lib/ipxe/snponly.efi", "snponly.efi"),
        ("/usr/lib/ipxe/ipxe.efi", "ipxe.efi"),
        (GRUB_EFI, "grubnetx64.efi"),
        (GRUB_EFI, "grubx64.efi"),
        (SHIM_EFI, "shimx64.efi"),
        (
            "/usr/lib/grub/x86_64-efi/http.mod",
            "grub/x86_64-efi/http.mod",
        ),
        (
            "/usr/lib/grub/x86_64-efi/moddep.lst",
            "grub/x86_64-efi/moddep.lst",
        ),
    ] {
        let got = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            got == std::fs::read(from).unwrap(),
            "{name} differs from {from}"
        );
    }
    let check = Command::new("sha256sum")
        .args(["--check", "--quiet", "--strict", "SHA256SUMS"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let listed = std::fs::read_to_string(dir.join("PACKAGES")).unwrap();
    let names: Vec<&str> = listed.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(names, packages, "{listed}");
}

#[test]
fn gather_on_a_fedora_host_downloads_with_dnf() {
    require(&["dnf", "createrepo_c"]);
    let work = tempfile::tempdir().unwrap();
    let rpms = fedora_like_rpms(work.path(), "fedora");
    run_ok(Command::new("createrepo_c").arg("-q").arg(&rpms));
    let root = host_root(work.path(), FEDORA);
    // dnf's own state in a scratch root; the only repository is the mirror
    let opts = format!(
        "--installroot={} --releasever=41 --setopt=reposdir=/nonexistent \
         --repofrompath=mirror,file://{} --repo=mirror",
        work.path().join("dnfroot").display(),
        rpms.display()
    );
    let dest = work.path().join("assets");
    let o = gather(Some(&root), &[dest.to_str().unwrap()], Some(&opts));
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{t}");
    assert!(t.contains("(rpm, download)"), "{t}");
    assert_gathered(
        &dest,
        &[
            "ipxe-bootimgs-x86",
            "grub2-efi-x64",
            "grub2-efi-x64-modules",
            "shim-x64",
        ],
    );
    let packages = std::fs::read_to_string(dest.join("PACKAGES")).unwrap();
    assert!(
        packages.contains("grub2-efi-x64 2.12-1.fc41\n"),
        "{packages}"
    );

    // a dnf that cannot find the package says so and what to do
    let o = gather(
        Some(&root),
        &[work.path().join("none").to_str().unwrap()],
        Some(&format!(
            "--installroot={} --releasever=41 --setopt=reposdir=/nonexistent \
             --repofrompath=empty,file://{} --repo=empty",
            work.path().join("dnfroot2").display(),
            work.path().join("trees").display()
        )),
    );
    assert_eq!(o.status.code(), Some(69));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("dnf download ipxe-bootimgs-x86 failed"), "{e}");
}

#[test]
fn gather_on_a_rhel_host_takes_the_installed_rpms() {
    let work = tempfile::tempdir().unwrap();
    let rpms = fedora_like_rpms(work.path(), "redhat");
    let root = host_root(work.path(), RHEL);
    let dest = work.path().join("assets");
    // not installed yet: which package to install, with dnf
    let o = gather(Some(&root), &["--installed", dest.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(69));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("dnf install ipxe-bootimgs-x86"), "{e}");
    // install them into the host root with the real rpm
    let mut files: Vec<PathBuf> = std::fs::read_dir(&rpms)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "{files:?}");
    run_ok(
        Command::new("rpm")
            .arg("--root")
            .arg(&root)
            .args(["-i", "--nodeps", "--noscripts"])
            .args(&files),
    );
    assert!(root.join("boot/efi/EFI/redhat/grubx64.efi").is_file());
    let o = gather(Some(&root), &["--installed", dest.to_str().unwrap()], None);
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{t}");
    assert!(t.contains("(rpm, installed)"), "{t}");
    assert_gathered(
        &dest,
        &[
            "ipxe-bootimgs-x86",
            "grub2-efi-x64",
            "grub2-efi-x64-modules",
            "shim-x64",
        ],
    );
}

#[test]
fn gather_on_an_offline_host_takes_a_directory_of_packages() {
    require(&["dpkg-deb"]);
    let work = tempfile::tempdir().unwrap();
    // .rpm files, whatever the host
    let rpms = fedora_like_rpms(work.path(), "rocky");
    let dest = work.path().join("from-rpms");
    let o = gather(
        None,
        &["--packages", rpms.to_str().unwrap(), dest.to_str().unwrap()],
        None,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_gathered(
        &dest,
        &[
            "ipxe-bootimgs-x86",
            "grub2-efi-x64",
            "grub2-efi-x64-modules",
            "shim-x64",
        ],
    );

    // .deb files on an Ubuntu host: the packages built with dpkg-deb from
    // the installed files, as apt-get download would have fetched them
    let debs = work.path().join("debs");
    std::fs::create_dir_all(&debs).unwrap();
    for (pkg, paths) in [
        (
            "ipxe",
            vec![
                "/usr/lib/ipxe/undionly.kpxe",
                "/usr/lib/ipxe/snponly.efi",
                "/usr/lib/ipxe/ipxe.efi",
            ],
        ),
        ("grub-efi-amd64-signed", vec![GRUB_EFI]),
        ("grub-efi-amd64-bin", vec![GRUB_MODULES]),
        ("shim-signed", vec![SHIM_EFI]),
    ] {
        let t = work.path().join("deb-trees").join(pkg);
        std::fs::create_dir_all(t.join("DEBIAN")).unwrap();
        std::fs::write(
            t.join("DEBIAN/control"),
            format!(
                "Package: {pkg}\nVersion: 1.0-test\nArchitecture: all\n\
                 Maintainer: bootlab tests <tests@bootlab.invalid>\nDescription: test package\n"
            ),
        )
        .unwrap();
        for p in paths {
            let to = t.join(p.trim_start_matches('/'));
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            run_ok(Command::new("cp").arg("-aL").arg(p).arg(&to));
        }
        run_ok(
            Command::new("dpkg-deb")
                .args(["--root-owner-group", "--build"])
                .arg(&t)
                .arg(debs.join(format!("{pkg}_1.0-test_all.deb"))),
        );
    }
    let root = host_root(work.path(), UBUNTU);
    let dest = work.path().join("from-debs");
    let o = gather(
        Some(&root),
        &["--packages", debs.to_str().unwrap(), dest.to_str().unwrap()],
        None,
    );
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{t}");
    assert!(t.contains("(deb, packages)"), "{t}");
    assert_gathered(
        &dest,
        &[
            "ipxe",
            "grub-efi-amd64-signed",
            "grub-efi-amd64-bin",
            "shim-signed",
        ],
    );

    // a directory missing one of them names it
    std::fs::remove_file(debs.join("grub-efi-amd64-bin_1.0-test_all.deb")).unwrap();
    let o = gather(
        Some(&root),
        &[
            "--packages",
            debs.to_str().unwrap(),
            work.path().join("x").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(66));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no grub-efi-amd64-bin package"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn gather_on_a_distribution_it_cannot_tell_says_what_to_do() {
    let work = tempfile::tempdir().unwrap();
    let root = host_root(work.path(), "NAME=\"Arch Linux\"\nID=arch\n");
    let o = gather(
        Some(&root),
        &[work.path().join("a").to_str().unwrap()],
        None,
    );
    assert_eq!(o.status.code(), Some(69));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("arch") && e.contains("--packages DIR"), "{e}");
}

#[test]
fn gather_from_the_installed_debian_packages() {
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("assets");
    let o = gather(None, &["--installed", dest.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_gathered(
        &dest,
        &[
            "ipxe",
            "grub-efi-amd64-signed",
            "grub-efi-amd64-bin",
            "shim-signed",
        ],
    );
}
