//! Every XML the host tool generates validates against libvirt's own
//! schemas (`virt-xml-validate`, Debian `libvirt-clients`), for every
//! network mode, both firmwares, every disk bus and the appliance.

use std::path::{Path, PathBuf};
use std::process::Command;

use bootlab_bootlab::desired::{ApplianceFiles, Desired};
use bootlab_bootlab::xml;
use bootlab_inventory::{Inventory, VirtType};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load(rel: &str) -> Inventory {
    bootlab_inventory::load(&repo().join(rel)).expect("inventory loads")
}

fn parse(text: &str) -> Inventory {
    bootlab_inventory::parse(text, Path::new("test.toml")).expect("inventory is valid")
}

/// Runs virt-xml-validate on `text` as `kind`; fails loudly when the tool is missing.
fn validate(kind: &str, text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join(format!("{kind}.xml"));
    std::fs::write(&f, text).unwrap();
    let out = Command::new("virt-xml-validate")
        .arg(&f)
        .arg(kind)
        .output()
        .expect("virt-xml-validate must be installed (Debian libvirt-clients)");
    assert!(
        out.status.success(),
        "{kind} XML does not validate:\n{}\n{}{}",
        text,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn validate_all(inv: &Inventory, appliance: Option<&ApplianceFiles>) -> Desired {
    // The install payload goes with the appliance (1 MiB, as payload::write pads it).
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("payload.tar");
    std::fs::write(&payload, vec![0u8; 1 << 20]).unwrap();
    let d = Desired::from_inventory(
        inv,
        VirtType::Qemu,
        appliance,
        appliance.map(|_| payload.as_path()),
    )
    .unwrap();
    validate("network", &d.network_xml);
    validate("storagepool", &d.pool_xml);
    for v in &d.volumes {
        validate("storagevol", &v.xml());
    }
    for dom in &d.domains {
        validate("domain", &dom.xml);
    }
    d
}

fn with(mode_lines: &str, libvirt_extra: &str) -> String {
    format!(
        r#"
[lab]
name = "t"
domain = "lab.test"
[network]
cidr = "10.9.0.0/24"
{mode_lines}
bridge = "virbr-t"
libvirt_name = "t"
[libvirt]
pool = "t"
pool_path = "/var/lib/libvirt/images/t"
vm_prefix = "t-"
{libvirt_extra}
[services]
name = "services"
ip = "10.9.0.254"
mac = "52:54:00:09:00:fe"
memory = "256MiB"
disks = ["1GiB"]
{uplink}
[profiles.p]
kernel = "vmlinuz"
initrd = ["initrd.img"]
args = "console=ttyS0"
[[nodes]]
name = "bios"
profile = "p"
mac = "52:54:00:09:00:10"
ip = "10.9.0.10"
disks = ["2GiB", "3GiB"]
[[nodes]]
name = "uefi"
profile = "p"
firmware = "uefi"
mac = "52:54:00:09:00:11"
ip = "10.9.0.11"
disks = ["2GiB"]
"#,
        uplink = if mode_lines.contains("isolated") {
            r#"uplink = { network = "default", mac = "52:54:00:09:01:fe" }"#
        } else {
            ""
        }
    )
}

#[test]
fn shipped_configs_generate_valid_xml() {
    for rel in [
        "config/okd-lab.toml",
        "config/dev.toml",
        "config/isolated-lab.toml",
    ] {
        validate_all(&load(rel), None);
    }
}

#[test]
fn nat_network_has_no_dhcp_no_dns_and_the_host_ip() {
    let inv = parse(&with(
        "mode = \"nat\"\ngateway = \"10.9.0.1\"\nhost_ip = \"10.9.0.1\"",
        "",
    ));
    let d = validate_all(&inv, None);
    let x = &d.network_xml;
    assert!(x.contains("<forward mode=\"nat\"/>"), "{x}");
    assert!(x.contains("<dns enable=\"no\"/>"), "{x}");
    assert!(!x.contains("<dhcp"), "{x}");
    assert!(x.contains("<bridge name=\"virbr-t\""), "{x}");
    assert!(x.contains("<domain name=\"t.lab.test\""), "{x}");
    assert!(x.contains("address=\"10.9.0.1\" prefix=\"24\""), "{x}");
    assert!(
        d.pool_xml
            .contains("<path>/var/lib/libvirt/images/t</path>"),
        "{}",
        d.pool_xml
    );
}

#[test]
fn isolated_network_has_no_forward_and_services_vm_gets_its_uplink() {
    let inv = parse(&with("mode = \"isolated\"\ngateway = \"10.9.0.254\"", ""));
    let d = validate_all(&inv, None);
    assert!(!d.network_xml.contains("<forward"), "{}", d.network_xml);
    assert!(!d.network_xml.contains("<dhcp"), "{}", d.network_xml);
    assert!(
        !d.network_xml.contains("<ip "),
        "no host_ip given: {}",
        d.network_xml
    );
    let services = &d.domains[0].xml;
    assert!(services.contains("52:54:00:09:01:fe"), "{services}");
    assert!(
        services.contains("<source network=\"default\"/>"),
        "{services}"
    );
}

#[test]
fn bridge_network_attaches_to_the_host_bridge() {
    let inv = parse(&with("mode = \"bridge\"\ngateway = \"10.9.0.1\"", ""));
    let d = validate_all(&inv, None);
    let x = &d.network_xml;
    assert!(x.contains("<forward mode=\"bridge\"/>"), "{x}");
    assert!(x.contains("<bridge name=\"virbr-t\"/>"), "{x}");
    assert!(!x.contains("<ip"), "{x}");
}

#[test]
fn node_domains_carry_macs_firmware_disks_serial_and_boot_order() {
    for (bus, dev) in [("virtio", "vdb"), ("scsi", "sdb"), ("sata", "sdb")] {
        let inv = parse(&with(
            "mode = \"nat\"\ngateway = \"10.9.0.1\"\nhost_ip = \"10.9.0.1\"",
            &format!("disk_bus = \"{bus}\""),
        ));
        let d = validate_all(&inv, None);
        let bios = &d.domains[1].xml;
        assert!(bios.contains("<name>t-bios</name>"), "{bios}");
        assert!(bios.contains("<domain type=\"qemu\">"), "{bios}");
        assert!(
            bios.contains("<mac address=\"52:54:00:09:00:10\"/>"),
            "{bios}"
        );
        assert!(
            bios.contains(&format!("dev=\"{dev}\" bus=\"{bus}\"")),
            "{bios}"
        );
        assert!(bios.contains("volume=\"t-bios-disk1.qcow2\""), "{bios}");
        assert!(!bios.contains("firmware=\"efi\""), "{bios}");
        assert!(bios.contains("<serial type=\"pty\">"), "{bios}");
        assert!(bios.contains("t-bios-serial0.log"), "{bios}");
        // network first, then disk
        let net = bios.find("<boot order=\"1\"/>").unwrap();
        let iface = bios.find("<interface").unwrap();
        assert!(net > iface, "boot order 1 is on the NIC: {bios}");
        assert!(bios.contains("<boot order=\"2\"/>"), "{bios}");
        let uefi = &d.domains[2].xml;
        assert!(uefi.contains("<os firmware=\"efi\">"), "{uefi}");
        assert!(uefi.contains("name=\"secure-boot\""), "{uefi}");
        if bus == "scsi" {
            assert!(bios.contains("model=\"virtio-scsi\""), "{bios}");
        }
    }
}

#[test]
fn appliance_boots_its_kernel_from_pool_volumes() {
    let dir = tempfile::tempdir().unwrap();
    let files = ApplianceFiles {
        kernel: dir.path().join("k"),
        initrd: dir.path().join("i"),
    };
    std::fs::write(&files.kernel, b"kernel").unwrap();
    std::fs::write(&files.initrd, b"initrd!").unwrap();
    let inv = parse(&with(
        "mode = \"nat\"\ngateway = \"10.9.0.1\"\nhost_ip = \"10.9.0.1\"",
        "",
    ));
    let d = validate_all(&inv, Some(&files));
    let s = &d.domains[0].xml;
    assert!(
        s.contains("<kernel>/var/lib/libvirt/images/t/t-services-vmlinuz-"),
        "{s}"
    );
    assert!(
        s.contains("<initrd>/var/lib/libvirt/images/t/t-services-initrd-"),
        "{s}"
    );
    assert!(s.contains("bootlab.mac=52:54:00:09:00:fe"), "{s}");
    assert!(!s.contains("/boot/"), "never the host's /boot: {s}");
    assert!(!s.contains("<boot order"), "{s}");
    let sizes: Vec<_> = d
        .volumes
        .iter()
        .filter(|v| {
            v.name.starts_with("t-services-vmlinuz-") || v.name.starts_with("t-services-initrd-")
        })
        .map(|v| v.capacity)
        .collect();
    assert_eq!(sizes, vec![6, 7]);
    // the data disk and the read-only install payload, found by serial
    assert!(s.contains("<serial>bootlab-data</serial>"), "{s}");
    assert!(s.contains("<serial>bootlab-payload</serial>"), "{s}");
    assert!(s.contains("<readonly/>"), "{s}");
    assert!(s.contains("<driver name=\"qemu\" type=\"raw\"/>"), "{s}");
    assert!(s.contains("bootlab.payload=/dev/vdb"), "{s}");
    let payload = d
        .volumes
        .iter()
        .find(|v| v.name == "t-services-payload.tar")
        .expect("the payload volume");
    assert_eq!(payload.capacity, 1 << 20);
}

#[test]
fn kvm_domains_use_host_cpu() {
    let inv = parse(&with(
        "mode = \"nat\"\ngateway = \"10.9.0.1\"\nhost_ip = \"10.9.0.1\"",
        "",
    ));
    let d = Desired::from_inventory(&inv, VirtType::Kvm, None, None).unwrap();
    for dom in &d.domains {
        assert!(dom.xml.contains("<domain type=\"kvm\">"));
        validate("domain", &dom.xml);
    }
}

#[test]
fn digest_is_stored_and_read_back() {
    let inv = parse(&with(
        "mode = \"nat\"\ngateway = \"10.9.0.1\"\nhost_ip = \"10.9.0.1\"",
        "",
    ));
    let d = Desired::from_inventory(&inv, VirtType::Qemu, None, None).unwrap();
    let dg = xml::stored_digest(&d.domains[1].xml).expect("digest present");
    assert_eq!(dg.len(), 16);
    assert!(xml::stored_digest(&d.network_xml).is_some());
    assert_eq!(xml::stored_digest("<domain><name>x</name></domain>"), None);
    // another node's XML has another digest
    assert_ne!(Some(dg), xml::stored_digest(&d.domains[2].xml));
}

#[test]
fn disk_targets_follow_linux_names() {
    use bootlab_inventory::DiskBus;
    assert_eq!(xml::disk_target(DiskBus::Virtio, 0), "vda");
    assert_eq!(xml::disk_target(DiskBus::Sata, 25), "sdz");
    assert_eq!(xml::disk_target(DiskBus::Scsi, 26), "sdaa");
}

#[test]
fn uuid_is_inserted_after_the_name_and_keeps_the_digest() {
    let inv = parse(&with(
        "mode = \"nat\"\ngateway = \"10.9.0.1\"\nhost_ip = \"10.9.0.1\"",
        "",
    ));
    let d = Desired::from_inventory(&inv, VirtType::Qemu, None, None).unwrap();
    let u = "d313464f-bae1-4383-a680-2cc5e6eba584";
    for x in [&d.domains[1].xml, &d.network_xml] {
        let y = xml::with_uuid(x, u);
        assert!(y.contains(&format!("</name><uuid>{u}</uuid>")), "{y}");
        assert_eq!(xml::stored_digest(&y), xml::stored_digest(x));
    }
    validate("domain", &xml::with_uuid(&d.domains[1].xml, u));
    validate("network", &xml::with_uuid(&d.network_xml, u));
}
