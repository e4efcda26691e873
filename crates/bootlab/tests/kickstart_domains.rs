//! The kickstart services VM's two libvirt definitions, as `bootlab render`
//! prints them, checked by libvirt itself:
//!
//! - `install-domain-xml`: the installer's kernel and initrd (the pool
//!   volumes `up` uploads, the kickstart injected) booted directly with
//!   `inst.ks=file:/ks.cfg`, `inst.repo=cdrom` and the serial console, the
//!   installer ISO (built here with xorriso) as a read-only cdrom, the root
//!   disk, data disk and payload, and a reboot that ends the domain;
//! - `domain-xml`: the final one, booting the root disk only, no kernel,
//!   no cdrom.
//!
//! Both pass `virt-xml-validate` and are defined, one after the other
//! under the same name (as `up` redefines the domain when the installer
//! has powered off), on a real libvirtd in its own namespaces (see
//! `common`); libvirt's own XML of each is checked.
//!
//! Needs root, libvirt-daemon-system, libvirt-clients (virt-xml-validate),
//! qemu-system-x86 and xorriso. Never skips.

mod common;
use common::text;

use std::path::Path;
use std::process::Command;

use common::LibvirtNetns;
use virt::connect::Connect;
use virt::domain::Domain;

fn lab_toml(env: &LibvirtNetns, iso: &Path) -> String {
    common::one_node_lab(
        env,
        "ks",
        127,
        "1GiB",
        &format!(
            "ssh_authorized_keys = [\"{}\"]\ninstall = {{ method = \"kickstart\", iso = \"{}\" }}",
            common::TEST_SSH_KEY,
            iso.display()
        ),
    )
}

fn render(lab: &Path, name: &str) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_bootlab"))
        .arg("render")
        .arg(lab)
        .arg(name)
        .output()
        .unwrap();
    assert!(o.status.success(), "render {name}: {}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

fn validate(dir: &Path, name: &str, xml: &str) {
    let f = dir.join(format!("{name}.xml"));
    std::fs::write(&f, xml).unwrap();
    let o = Command::new("virt-xml-validate")
        .arg(&f)
        .arg("domain")
        .output()
        .expect("virt-xml-validate (libvirt-clients)");
    assert!(o.status.success(), "{name}: {}\n{xml}", text(&o));
}

#[test]
fn install_and_final_domains_validate_and_are_defined_on_a_real_libvirtd() {
    common::require_root_and_tools(&["xorriso", "virt-xml-validate"]);
    let env = LibvirtNetns::start("ks");
    let root = env.root().to_path_buf();
    // The installer ISO in its layout (not booted here).
    let tree = root.join("iso-tree");
    std::fs::create_dir_all(tree.join("images/pxeboot")).unwrap();
    std::fs::write(tree.join("images/pxeboot/vmlinuz"), b"kernel").unwrap();
    std::fs::write(tree.join("images/pxeboot/initrd.img"), b"initrd").unwrap();
    let iso = root.join("Fedora-Server-dvd-x86_64.iso");
    let o = Command::new("xorriso")
        .args([
            "-as",
            "mkisofs",
            "-R",
            "-J",
            "-V",
            "Fedora-S-dvd-x86_64",
            "-o",
        ])
        .arg(&iso)
        .arg(&tree)
        .output()
        .unwrap();
    assert!(o.status.success(), "xorriso: {}", text(&o));
    let lab = root.join("lab.toml");
    std::fs::write(&lab, lab_toml(&env, &iso)).unwrap();

    let install = render(&lab, "install-domain-xml");
    let fin = render(&lab, "domain-xml");
    validate(&root, "install", &install);
    validate(&root, "final", &fin);

    let pool = root.join("pool/ks");
    for want in [
        format!(
            "<kernel>{}/ks-services-installer-vmlinuz</kernel>",
            pool.display()
        ),
        format!(
            "<initrd>{}/ks-services-installer-initrd.img</initrd>",
            pool.display()
        ),
        "<cmdline>inst.ks=file:/ks.cfg inst.repo=cdrom inst.text console=ttyS0,115200</cmdline>"
            .to_owned(),
        format!("<source file=\"{}\"/>", iso.display()),
        "<on_reboot>destroy</on_reboot>".to_owned(),
        "<on_poweroff>destroy</on_poweroff>".to_owned(),
    ] {
        assert!(install.contains(&want), "{want} in\n{install}");
    }
    let cdrom = install.split("device=\"cdrom\"").nth(1).unwrap();
    assert!(
        cdrom
            .split("</disk>")
            .next()
            .unwrap()
            .contains("<readonly/>"),
        "{install}"
    );
    assert!(!install.contains("<boot "), "direct boot: {install}");
    // the same disks, root first
    let disks = |xml: &str| -> Vec<String> {
        xml.split("<source pool=")
            .skip(1)
            .map(|s| s.split('/').next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(disks(&install), disks(&fin));
    assert!(
        disks(&fin)[0].contains("ks-services-root.qcow2"),
        "{:?}",
        disks(&fin)
    );
    assert!(!fin.contains("<kernel>") && !fin.contains("cdrom"), "{fin}");
    assert_eq!(fin.matches("<boot ").count(), 1, "{fin}");
    assert!(fin.contains("<on_reboot>restart</on_reboot>"), "{fin}");

    // libvirt takes both, under one name, the final one replacing the
    // install-time one.
    let conn = Connect::open(Some(&env.uri)).unwrap();
    let d = Domain::define_xml(&conn, &install).unwrap_or_else(|e| panic!("{e}\n{install}"));
    let live = d.get_xml_desc(0).unwrap();
    assert!(live.contains("<cmdline>inst.ks=file:/ks.cfg"), "{live}");
    assert!(live.contains("device='cdrom'"), "{live}");
    assert!(
        live.contains(&format!("<source file='{}'", iso.display())),
        "{live}"
    );
    assert!(live.contains("<on_reboot>destroy</on_reboot>"), "{live}");
    let uuid = d.get_uuid_string().unwrap();
    let d = Domain::define_xml(&conn, &bootlab_bootlab::xml::with_uuid(&fin, &uuid))
        .unwrap_or_else(|e| panic!("{e}\n{fin}"));
    let live = d.get_xml_desc(0).unwrap();
    assert_eq!(d.get_uuid_string().unwrap(), uuid);
    assert!(
        !live.contains("<kernel>") && !live.contains("cdrom"),
        "{live}"
    );
    assert!(live.contains("<boot order='1'/>"), "{live}");
    assert_eq!(
        conn.list_all_domains(0).unwrap().len(),
        1,
        "one domain, redefined"
    );
    d.undefine().unwrap();
}
