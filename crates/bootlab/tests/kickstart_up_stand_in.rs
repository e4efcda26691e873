//! `bootlab up` with `install = { method = "kickstart" }` on a real
//! libvirtd (in its own namespaces, see `common`), with a **STAND-IN
//! INSTALLER**: no Fedora or RHEL ISO is available to the tests, so the
//! ISO built here (xorriso, the installer layout) carries the Debian cloud
//! kernel and a busybox initrd (gzip'd cpio, like Fedora's) whose `/init`
//! prints its command line and the `/ks.cfg` it finds, then powers off.
//! It is NOT anaconda: nothing is installed on the root disk, and the
//! final domain then boots an empty disk.
//!
//! What it shows is bootlab's sequence around the installer: `up` reads
//! the kernel and initrd out of the ISO, injects the kickstart (a real
//! kernel unpacks the appended archive: the stand-in sees `/ks.cfg`, as
//! long as `render kickstart`), uploads them, defines and starts the
//! install-time domain (`inst.ks=file:/ks.cfg` on its command line, the
//! ISO as cdrom), prints the serial log as progress (`installer | ...`)
//! until the installer powers off, then redefines the domain to boot its
//! root disk and starts it.
//!
//! Needs root, libvirt-daemon-system, qemu-system-x86, xorriso, cpio,
//! gzip, busybox-static, util-linux (nsenter), apt-get/dpkg-deb (the
//! kernel, cached under target/e2e-cache) and `target/debug/bootlabd`.
//! Never skips.

mod common;
use common::{bootlab, text};

use std::path::Path;
use std::process::Command;

use common::{LibvirtNetns, sh_ok};
use virt::connect::Connect;
use virt::domain::Domain;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;

const STAND_IN_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /dev
/bin/busybox mount -t proc proc /proc
echo "stand-in installer: cmdline $(/bin/busybox cat /proc/cmdline)"
if [ -f /ks.cfg ]; then
  echo "stand-in installer: /ks.cfg $(/bin/busybox wc -c < /ks.cfg) bytes"
else
  echo "stand-in installer: no /ks.cfg"
fi
echo "stand-in installer: powering off"
/bin/busybox poweroff -f
"#;

fn lab_toml(env: &LibvirtNetns, iso: &Path) -> String {
    common::one_node_lab(
        env,
        "ku",
        125,
        "512MiB",
        &format!(
            "ssh_authorized_keys = [\"{}\"]\ninstall = {{ method = \"kickstart\", iso = \"{}\" }}",
            common::TEST_SSH_KEY,
            iso.display()
        ),
    )
}

#[test]
fn up_runs_a_stand_in_installer_then_boots_the_root_disk() {
    common::require_root_and_tools(&["xorriso", "cpio", "gzip", "busybox", "nsenter"]);
    let env = LibvirtNetns::start("ku");
    let root = env.root().to_path_buf();
    let daemon = bootlab().with_file_name("bootlabd");
    assert!(
        daemon.is_file(),
        "{} is missing: cargo build -p bootlab-bootlabd",
        daemon.display()
    );

    // The stand-in installer ISO.
    let kdir = env.kernel_with_modules();
    let initrd_root = root.join("stand-in");
    std::fs::create_dir_all(initrd_root.join("bin")).unwrap();
    std::fs::copy(
        sh_ok("command -v busybox").trim(),
        initrd_root.join("bin/busybox"),
    )
    .unwrap();
    std::fs::write(initrd_root.join("init"), STAND_IN_INIT).unwrap();
    sh_ok(&format!(
        "chmod 755 {0}/init {0}/bin/busybox",
        initrd_root.display()
    ));
    let tree = root.join("iso-tree");
    std::fs::create_dir_all(tree.join("images/pxeboot")).unwrap();
    std::fs::copy(kdir.join("vmlinuz"), tree.join("images/pxeboot/vmlinuz")).unwrap();
    sh_ok(&format!(
        "cd {} && printf 'bin\\nbin/busybox\\ninit\\n' | cpio -o -H newc --quiet | gzip -9 > {}/images/pxeboot/initrd.img",
        initrd_root.display(),
        tree.display()
    ));
    let iso = root.join("stand-in-installer.iso");
    sh_ok(&format!(
        "xorriso -as mkisofs -R -J -V STAND-IN -o {} {} 2>&1",
        iso.display(),
        tree.display()
    ));
    let lab = root.join("lab.toml");
    std::fs::write(&lab, lab_toml(&env, &iso)).unwrap();
    let ks = Command::new(bootlab())
        .arg("render")
        .arg(&lab)
        .arg("kickstart")
        .output()
        .unwrap();
    assert!(ks.status.success(), "{}", text(&ks));
    let ks_len = ks.stdout.len();

    // bootlab runs where libvirtd runs (its mount namespace has the
    // serial log at the path the domain names).
    let pid = std::fs::read_to_string(root.join("run/libvirtd.pid")).unwrap();
    let o = Command::new("nsenter")
        .args(["-t", pid.trim(), "-m", "-n"])
        .arg(bootlab())
        .arg("up")
        .arg(&lab)
        .arg("--bootlabd")
        .arg(&daemon)
        .output()
        .unwrap();
    let out = text(&o);
    println!("--- up\n{out}");
    assert!(o.status.success(), "up failed:\n{out}");
    for want in [
        "installer | stand-in installer: cmdline".to_owned(),
        "inst.ks=file:/ks.cfg inst.repo=cdrom inst.text console=ttyS0,115200".to_owned(),
        format!("installer | stand-in installer: /ks.cfg {ks_len} bytes"),
        "installer | stand-in installer: powering off".to_owned(),
        "the installer powered off; the domain now boots its root disk".to_owned(),
    ] {
        assert!(out.contains(&want), "{want:?} in\n{out}");
    }

    let conn = Connect::open(Some(&env.uri)).unwrap();
    let dom = Domain::lookup_by_name(&conn, "ku-services").unwrap();
    let live = dom.get_xml_desc(0).unwrap();
    assert!(
        !live.contains("<kernel>") && !live.contains("cdrom"),
        "{live}"
    );
    assert!(live.contains("<boot order='1'/>"), "{live}");
    assert!(dom.is_active().unwrap(), "the final domain was started");
    let pool = StoragePool::lookup_by_name(&conn, "ku").unwrap();
    for v in [
        "ku-services-installer-vmlinuz",
        "ku-services-installer-initrd.img",
        "ku-services-root.qcow2",
        "ku-services-payload.tar",
    ] {
        StorageVol::lookup_by_name(&pool, v).unwrap_or_else(|e| panic!("{v}: {e}"));
    }
    let _ = dom.destroy();
}
