//! The boot table and the rendered scripts, against config/dev.toml and
//! config/okd-lab.toml.

use std::path::Path;

use bootlab_boot::render::{self, ScriptKind, VirtualFile};
use bootlab_boot::{BootFile, ClientInfo, ClientStage, decide};
use bootlab_inventory::{Inventory, Loader, load};

fn dev() -> Inventory {
    load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/dev.toml"
    )))
    .unwrap()
}

fn client(
    arch: Option<u16>,
    vendor: Option<&str>,
    user: Option<&[u8]>,
    opt175: bool,
) -> ClientInfo {
    ClientInfo {
        arch,
        vendor_class: vendor.map(str::to_owned),
        user_class: user.map(<[u8]>::to_vec),
        ipxe_options: opt175,
    }
}

fn none(_: &str) -> bool {
    false
}

#[test]
fn bios_gets_undionly() {
    let inv = dev();
    let d = decide(
        &inv,
        inv.nodes().first(),
        &client(
            Some(0),
            Some("PXEClient:Arch:00000:UNDI:002001"),
            None,
            false,
        ),
        &none,
    );
    assert_eq!(d.stage, ClientStage::BiosPxe);
    assert_eq!(d.file, Some(BootFile::Tftp("undionly.kpxe".into())));
}

#[test]
fn uefi_x64_gets_snponly_or_grub() {
    let inv = dev();
    for arch in [7, 9] {
        let d = decide(
            &inv,
            inv.nodes().get(1),
            &client(
                Some(arch),
                Some("PXEClient:Arch:00007:UNDI:003010"),
                None,
                false,
            ),
            &none,
        );
        assert_eq!(
            d.file,
            Some(BootFile::Tftp("snponly.efi".into())),
            "arch {arch}"
        );
    }
    let inv = bootlab_testkit::LabBuilder::dev()
        .edit(|f| f.profiles.get_mut("tiny").unwrap().loader = "grub".into())
        .build();
    assert_eq!(inv.profiles()["tiny"].loader, Loader::Grub);
    let d = decide(
        &inv,
        inv.nodes().get(1),
        &client(Some(7), None, None, false),
        &none,
    );
    assert_eq!(d.file, Some(BootFile::Tftp("grubnetx64.efi".into())));
}

#[test]
fn ipxe_by_user_class_or_175_gets_the_script_url_never_the_binary() {
    let inv = dev();
    for c in [
        client(Some(0), Some("PXEClient"), Some(b"iPXE"), false),
        client(Some(7), None, Some(b"\x04iPXE"), false),
        client(Some(0), None, None, true),
    ] {
        let d = decide(&inv, inv.nodes().first(), &c, &none);
        assert_eq!(d.stage, ClientStage::Ipxe);
        assert_eq!(
            d.file,
            Some(BootFile::Http("http://127.0.0.1:8080/boot.ipxe".into()))
        );
    }
}

#[test]
fn uefi_http_boot_gets_ipxe_efi_url_and_echo() {
    let inv = dev();
    let d = decide(
        &inv,
        None,
        &client(
            Some(16),
            Some("HTTPClient:Arch:00016:UNDI:003001"),
            None,
            false,
        ),
        &none,
    );
    assert_eq!(
        d.file,
        Some(BootFile::Http(
            "http://127.0.0.1:8080/assets/ipxe.efi".into()
        ))
    );
    assert!(d.echo_http_client);
}

#[test]
fn arm64_needs_its_loader() {
    let inv = dev();
    let d = decide(&inv, None, &client(Some(11), None, None, false), &none);
    assert_eq!(d.file, None);
    assert!(d.refusal.is_some());
    let d = decide(
        &inv,
        None,
        &client(Some(11), None, None, false),
        &|f: &str| f == "grubnetaa64.efi",
    );
    assert_eq!(d.file, Some(BootFile::Tftp("grubnetaa64.efi".into())));
}

#[test]
fn os_clients_and_malformed_arch() {
    let inv = dev();
    assert_eq!(
        decide(&inv, None, &client(None, None, None, false), &none).stage,
        ClientStage::Os
    );
    assert_eq!(ClientInfo::parse_arch(&[0]), None);
    assert_eq!(ClientInfo::parse_arch(&[]), None);
    assert_eq!(ClientInfo::parse_arch(&[0, 7, 0]), None);
    assert_eq!(ClientInfo::parse_arch(&[0, 7]), Some(7));
    // Arch from option 60 when 93 is missing or malformed.
    let c = client(None, Some("PXEClient:Arch:00007:UNDI:003010"), None, false);
    assert_eq!(decide(&inv, None, &c, &none).stage, ClientStage::UefiPxe);
    let d = decide(
        &inv,
        None,
        &client(Some(0x1234), Some("PXEClient"), None, false),
        &none,
    );
    assert_eq!(d.stage, ClientStage::Unsupported(0x1234));
}

#[test]
fn ipxe_script_has_initrd_names_on_the_kernel_line() {
    let inv = dev();
    let s = render::render(&inv, &inv.nodes()[1], ScriptKind::Ipxe).unwrap();
    assert!(s.starts_with("#!ipxe\n"), "{s}");
    assert!(
        s.contains("kernel http://127.0.0.1:8080/assets/vmlinuz initrd=initrd.img console=ttyS0 bootlab.node=node-uefi bootlab.marker=uefi-worker"),
        "{s}"
    );
    assert!(
        s.contains("initrd http://127.0.0.1:8080/assets/initrd.img"),
        "{s}"
    );
    assert!(s.contains("\nboot"), "{s}");
}

#[test]
fn grub_and_pxelinux_configs() {
    let inv = dev();
    let g = render::render(&inv, &inv.nodes()[0], ScriptKind::Grub).unwrap();
    assert!(
        g.contains(
            "linux (http,127.0.0.1:8080)/assets/vmlinuz console=ttyS0 bootlab.node=node-bios"
        ),
        "{g}"
    );
    assert!(
        g.contains("initrd (http,127.0.0.1:8080)/assets/initrd.img"),
        "{g}"
    );
    let p = render::render(&inv, &inv.nodes()[0], ScriptKind::Pxelinux).unwrap();
    assert!(p.contains("KERNEL vmlinuz"), "{p}");
    assert!(p.contains("APPEND initrd=initrd.img console=ttyS0"), "{p}");
}

#[test]
fn unknown_machine_scripts() {
    let inv = dev();
    assert_eq!(
        render::unknown_machine_ipxe("52:54:00:aa:bb:cc"),
        "#!ipxe\necho bootlab: unknown machine 52:54:00:aa:bb:cc\nexit\n"
    );
    assert!(render::unknown_machine_ipxe("x;;!\nquit").contains("unknown machine \n"));
    assert_eq!(
        render::chain_by_mac_ipxe(&inv),
        "#!ipxe\nchain http://127.0.0.1:8080/boot.ipxe?mac=${net0/mac}\n"
    );
}

#[test]
fn virtual_file_names() {
    let mac = "52:54:00:77:00:10".parse().unwrap();
    assert_eq!(
        VirtualFile::parse("/boot.ipxe"),
        Some(VirtualFile::BootIpxe)
    );
    assert_eq!(
        VirtualFile::parse("grub/grub.cfg"),
        Some(VirtualFile::GrubBySource)
    );
    assert_eq!(
        VirtualFile::parse("grub.cfg-01-52-54-00-77-00-10"),
        Some(VirtualFile::GrubForMac(mac))
    );
    assert_eq!(
        VirtualFile::parse("pxelinux.cfg/01-52-54-00-77-00-10"),
        Some(VirtualFile::PxelinuxForMac(mac))
    );
    assert_eq!(
        VirtualFile::parse("pxelinux.cfg/01-52:54:00:77:00:10"),
        None
    );
    assert_eq!(VirtualFile::parse("pxelinux.cfg/default"), None);
}

mod own_templates {
    use super::*;
    use bootlab_boot::render::{BootScripts, ScriptTemplates, TemplateError};

    /// dev.toml with its assets in `dir` and profile `tiny` using `template`.
    fn lab(dir: &Path, template: Option<&str>) -> Inventory {
        let t = template.map(str::to_owned);
        bootlab_testkit::LabBuilder::dev()
            .edit(|f| {
                f.services.assets_dir = Some(dir.display().to_string());
                f.profiles.get_mut("tiny").unwrap().template = t;
            })
            .build()
    }

    #[test]
    fn a_profile_renders_its_own_template_with_the_built_in_context() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("templates")).unwrap();
        std::fs::write(
            dir.path().join("templates/tiny.ipxe.j2"),
            "#!ipxe\n# own template for {{ name }} ({{ mac }})\nkernel {{ assets }}/{{ kernel }} {{ args }}\nboot\n",
        )
        .unwrap();
        let inv = lab(dir.path(), Some("templates/tiny.ipxe.j2"));
        let t = ScriptTemplates::load(&inv, dir.path()).unwrap();
        let node = &inv.nodes()[0];
        let ipxe = t.render(&inv, node, ScriptKind::Ipxe).unwrap();
        assert!(
            ipxe.contains("# own template for node-bios (52:54:00:77:00:10)"),
            "{ipxe}"
        );
        assert!(ipxe.contains("bootlab.node=node-bios"), "{ipxe}");
        // Other kinds keep the built-ins.
        let grub = t.render(&inv, node, ScriptKind::Grub).unwrap();
        assert_eq!(grub, render::render(&inv, node, ScriptKind::Grub).unwrap());
        // Every node's scripts, as bootlabd renders them at load.
        let scripts = BootScripts::render_with(&inv, &t).unwrap();
        let (_, text) = scripts.for_mac(&inv, node.mac, ScriptKind::Ipxe).unwrap();
        assert!(text.contains("own template"));
    }

    #[test]
    fn a_broken_own_template_is_refused_at_load_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("t.j2"),
            "#!ipxe\n\nkernel {{ kernel \nboot\n",
        )
        .unwrap();
        let inv = lab(dir.path(), Some("t.j2"));
        let e = ScriptTemplates::load(&inv, dir.path()).unwrap_err();
        // The parser's own position: where it met `boot` inside the block.
        assert!(matches!(e, TemplateError::Syntax { line: 4, .. }), "{e}");
        let shown = e.to_string();
        assert!(shown.starts_with("profiles.tiny.template: "), "{shown}");
        assert!(shown.contains("t.j2:4: "), "{shown}");

        // Compiles, but names what no template has: refused for a node.
        std::fs::write(dir.path().join("t.j2"), "#!ipxe\necho {{ flavour }}\n").unwrap();
        let e = ScriptTemplates::load(&inv, dir.path()).unwrap_err();
        assert!(matches!(e, TemplateError::Render { .. }), "{e}");
        assert!(e.to_string().contains("node node-bios"), "{e}");

        std::fs::remove_file(dir.path().join("t.j2")).unwrap();
        let e = ScriptTemplates::load(&inv, dir.path()).unwrap_err();
        assert!(matches!(e, TemplateError::Read { .. }), "{e}");
    }
}
