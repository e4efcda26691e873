//! GRUB's own HTTP client against the service: a UEFI QEMU guest (OVMF, TCG)
//! network-boots a GRUB 2 image built from Debian's `grub-efi-amd64-bin`,
//! which loads the per-MAC config rendered by the service over HTTP, then
//! the kernel and initrd it names, and boots them to a marker.
//!
//! This is the client that needs Title-Case `Content-Length`, exact lengths
//! and no redirects. The guest uses QEMU's user-mode network: its TFTP
//! serves the GRUB image for the firmware's PXE, and the guest's 10.0.2.2
//! is this machine's loopback, so the service listens on 127.0.0.1 only.
//! Needs qemu-system-x86, ovmf, grub-common, grub-efi-amd64-bin,
//! busybox-static and cpio (tests/apt-packages.txt); fails if any is missing.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bootlab_http::Limits;
use bootlab_testkit::lab::LabFile;
use bootlab_testkit::repo_root;
use bootlab_testkit::tools::{require, run};
use common::Lab;

const GUEST_MAC: &str = "52:54:00:77:00:11";
const DEADLINE: Duration = Duration::from_secs(300);

/// Kills the guest on drop, also when an assertion fails.
struct Guest(Child);

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The dev lab moved from 127.0.0.0/24 to QEMU's user network 10.0.2.0/24
/// (same host numbers; services at 10.0.2.2), HTTP still listening on the
/// loopback port the test bound.
fn as_seen_from_qemu(f: &mut LabFile) {
    let moved = |a: &mut String| {
        assert!(a.starts_with("127.0.0."), "{a}");
        *a = a.replacen("127.0.0.", "10.0.2.", 1);
    };
    moved(&mut f.network.cidr);
    moved(&mut f.network.gateway);
    f.network.host_ip.iter_mut().for_each(moved);
    if let Some(pool) = &mut f.network.pool {
        moved(&mut pool.start);
        moved(&mut pool.end);
    }
    f.services.ip = "10.0.2.2".into();
    let l = &mut f.services.listen;
    for a in [&mut l.dhcp, &mut l.dns, &mut l.tftp, &mut l.ntp] {
        a.iter_mut().for_each(moved);
    }
    f.dns.records.iter_mut().for_each(|r| moved(&mut r.value));
    f.nodes.iter_mut().for_each(|n| moved(&mut n.ip));
}

#[test]
fn grub_loads_its_config_kernel_and_initrd_over_http_and_boots() {
    for (tool, package) in [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("grub-mkstandalone", "grub-common"),
        ("cpio", "cpio"),
    ] {
        require(tool, package);
    }
    let ovmf_code = Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd");
    let ovmf_vars = Path::new("/usr/share/OVMF/OVMF_VARS_4M.fd");
    assert!(
        ovmf_code.exists() && ovmf_vars.exists(),
        "OVMF is required (package ovmf)"
    );

    // The lab as the guest sees it: services at 10.0.2.2 (QEMU's alias for
    // the host loopback), node-uefi holding the guest's MAC.
    let lab = Lab::start_custom(Limits::default(), |lab| lab.edit(as_seen_from_qemu));
    let port = lab.addr.port();
    assert_eq!(lab.shared.inventory().services().ip.to_string(), "10.0.2.2");

    // The tiny test OS (a Debian cloud kernel + a busybox marker initramfs).
    run(Command::new(repo_root().join("tests/e2e/build-test-os.sh")).arg(&lab.assets));

    // GRUB: fetch the per-MAC config bootlab renders, over HTTP.
    let work = lab.dir.path();
    let tftp = work.join("tftp");
    std::fs::create_dir_all(&tftp).unwrap();
    let cfg = work.join("embedded.cfg");
    std::fs::write(
        &cfg,
        format!(
            "echo 'bootlab-test: fetching grub.cfg-01-52-54-00-77-00-11'\n\
             configfile (http,10.0.2.2:{port})/grub.cfg-01-52-54-00-77-00-11\n\
             echo 'bootlab-test: configfile returned'\n"
        ),
    )
    .unwrap();
    run(Command::new("grub-mkstandalone")
        .args(["-O", "x86_64-efi", "--locales=", "--fonts=", "--themes="])
        .args(["--modules=efinet net http linux normal echo configfile"])
        .arg("-o")
        .arg(tftp.join("bootx64.efi"))
        .arg(format!("boot/grub/grub.cfg={}", cfg.display())));
    let vars = work.join("vars.fd");
    std::fs::copy(ovmf_vars, &vars).unwrap();
    let serial = work.join("serial.log");

    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args([
        "-accel",
        "tcg",
        "-m",
        "512",
        "-machine",
        "q35",
        "-display",
        "none",
        "-no-reboot",
    ])
    .arg("-drive")
    .arg(format!(
        "if=pflash,format=raw,readonly=on,file={}",
        ovmf_code.display()
    ))
    .arg("-drive")
    .arg(format!("if=pflash,format=raw,file={}", vars.display()))
    .arg("-netdev")
    .arg(format!(
        "user,id=n0,tftp={},bootfile=bootx64.efi",
        tftp.display()
    ))
    .arg("-device")
    .arg(format!(
        "virtio-net-pci,netdev=n0,mac={GUEST_MAC},romfile=,bootindex=0"
    ))
    .arg("-serial")
    .arg(format!("file:{}", serial.display()))
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut guest = Guest(qemu.spawn().expect("qemu-system-x86_64 starts"));

    let started = Instant::now();
    let console = loop {
        let text =
            String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();
        // Only a whole marker line counts: QEMU may be mid-way through it.
        if text
            .split_inclusive('\n')
            .any(|l| l.ends_with('\n') && l.contains("BOOTLAB-MARKER"))
        {
            break text;
        }
        let exited = guest.0.try_wait().expect("qemu status").is_some();
        assert!(
            !exited && started.elapsed() < DEADLINE,
            "the guest never printed the marker (exited: {exited}); console:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    drop(guest);

    let marker = console
        .lines()
        .find(|l| l.starts_with("BOOTLAB-MARKER"))
        .unwrap_or_default();
    // The kernel command line is the one rendered for node-uefi.
    assert!(marker.contains("bootlab.node=node-uefi"), "{marker}");
    assert!(marker.contains("bootlab.marker=uefi-worker"), "{marker}");
    // GRUB's only complaint may be about video modes (the guest has no
    // display); anything else (a short read, a bad length...) fails.
    let errors: Vec<&str> = console
        .lines()
        .filter(|l| l.contains("error:") && !l.contains("no suitable video mode"))
        .collect();
    assert!(
        errors.is_empty(),
        "GRUB reported {errors:?}; console:\n{console}"
    );

    // The service saw the config fetch for that MAC.
    let m = lab
        .shared
        .machine(GUEST_MAC.parse().unwrap())
        .expect("the config fetch is in the timeline");
    assert!(
        m.events
            .iter()
            .any(|e| e.path.as_deref() == Some("/grub.cfg-01-52-54-00-77-00-11")),
        "{m:?}"
    );
    println!("GRUB booted over HTTP in {:?}", started.elapsed());
}
