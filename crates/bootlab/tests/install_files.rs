//! `bootlab render LAB NAME` for the services VM's install, checked by the
//! real consumers:
//!
//! - `user-data` passes `cloud-init schema --config-file` (and a broken
//!   document fails it, so the check has teeth); `meta-data` is YAML with
//!   an instance id; `network-config` goes through cloud-init's own
//!   converter (`cloud-init devel net-convert`, to systemd-networkd files)
//!   and comes out matching the lab NIC by MAC with the static address,
//!   the default route in nat mode, DHCP on the uplink in isolated mode;
//! - `domain-xml`, `install-domain-xml`, `domain-xml:<node>` and
//!   `network-xml` pass `virt-xml-validate`; the cloud-image services VM
//!   boots its root disk only, and carries the data disk, the read-only
//!   payload and the seed by serial;
//! - `unit` is the packaged unit; what does not apply to the lab's method
//!   is refused with a message;
//! - `kickstart` passes `ksvalidator` (PyPI pykickstart, in a venv under
//!   target/: Debian has no package and its system pip refuses) for F41
//!   and RHEL9, in nat and isolated mode (and a broken one fails it).
//!
//! Needs cloud-init, python3-yaml (cloud-init's dependency),
//! libvirt-clients (virt-xml-validate), python3-venv and PyPI. Never
//! skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOBbootlabtestkeyxxxxxxxxxxxxxxxxxxxxxxxxxx me@host";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    let name = format!("{cmd:?}");
    cmd.output()
        .unwrap_or_else(|e| panic!("{name}: {e} (see tests/apt-packages.txt)"))
}

fn render(lab: &Path, name: &str) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_bootlab"))
        .arg("render")
        .arg(lab)
        .arg(name))
}

fn rendered(lab: &Path, name: &str) -> String {
    let o = render(lab, name);
    assert!(o.status.success(), "render {name}: {}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

/// `config/<base>.toml` with the cloud-image method and an admin key.
fn cloud_lab(dir: &Path, base: &str) -> PathBuf {
    lab_with(
        dir,
        base,
        "method = \"cloud-image\", image = \"/var/lib/libvirt/images/debian-12-genericcloud-amd64.qcow2\"",
    )
}

/// `config/<base>.toml` with `method` (inline table keys) and an admin key.
fn lab_with(dir: &Path, base: &str, method: &str) -> PathBuf {
    let src = std::fs::read_to_string(repo().join(format!("config/{base}.toml"))).unwrap();
    let text = if src.contains("[services.install]") {
        src.replace(
            "ssh_authorized_keys = []",
            &format!("ssh_authorized_keys = [\"{KEY}\"]"),
        )
        .replace(
            "method = \"appliance\" ",
            &format!("{}\n", method.replace(", ", "\n")),
        )
    } else {
        src.replacen(
            "[services]\n",
            &format!("[services]\nssh_authorized_keys = [\"{KEY}\"]\ninstall = {{ {method} }}\n"),
            1,
        )
    };
    assert_ne!(text, src);
    let lab = dir.join(format!("{base}-{}.toml", method.len()));
    std::fs::write(&lab, text).unwrap();
    lab
}

fn schema(file: &Path) -> Output {
    run(Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(file))
}

/// cloud-init's converter: the networkd files it writes, by name.
fn networkd(dir: &Path, network_config: &str) -> Vec<(String, String)> {
    let src = dir.join("network-config");
    std::fs::write(&src, network_config).unwrap();
    let out = dir.join("net-out");
    let _ = std::fs::remove_dir_all(&out);
    let o = run(Command::new("cloud-init")
        .args([
            "devel",
            "net-convert",
            "-k",
            "yaml",
            "-D",
            "debian",
            "-O",
            "networkd",
            "-p",
        ])
        .arg(&src)
        .arg("-d")
        .arg(&out));
    assert!(o.status.success(), "net-convert: {}", text(&o));
    let dir = out.join("etc/systemd/network");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}; {}", dir.display(), text(&o)))
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_cloud_image_seed_passes_cloud_init_itself() {
    let dir = tempfile::tempdir().unwrap();
    for base in ["isolated-lab", "okd-lab"] {
        let lab = cloud_lab(dir.path(), base);
        // user-data: cloud-init's schema
        let user_data = rendered(&lab, "user-data");
        assert!(user_data.starts_with("#cloud-config\n"), "{user_data}");
        assert!(user_data.contains(KEY), "{user_data}");
        let f = dir.path().join(format!("{base}-user-data"));
        std::fs::write(&f, &user_data).unwrap();
        let o = schema(&f);
        assert!(o.status.success(), "{base}: {}\n{user_data}", text(&o));
        assert!(text(&o).contains("Valid cloud-config"), "{}", text(&o));

        // meta-data: YAML with an instance id and the host name
        let meta = rendered(&lab, "meta-data");
        let m = dir.path().join(format!("{base}-meta-data"));
        std::fs::write(&m, &meta).unwrap();
        let o = run(Command::new("python3")
            .args([
                "-c",
                "import sys, yaml; d = yaml.safe_load(open(sys.argv[1])); print(d['instance-id'], d['local-hostname'])",
            ])
            .arg(&m));
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).starts_with("bootlab-"), "{}", text(&o));
        assert!(text(&o).contains(" services"), "{}", text(&o));

        // network-config: cloud-init's own converter
        let files = networkd(dir.path(), &rendered(&lab, "network-config"));
        let lab_nic = files
            .iter()
            .find(|(n, _)| n.contains("lab0"))
            .unwrap_or_else(|| panic!("{files:?}"));
        match base {
            "isolated-lab" => {
                assert!(
                    lab_nic.1.contains("MACAddress=52:54:00:4d:00:fe"),
                    "{lab_nic:?}"
                );
                assert!(lab_nic.1.contains("Address=10.77.0.254/24"), "{lab_nic:?}");
                assert!(!lab_nic.1.contains("Gateway="), "{lab_nic:?}");
                let up = files
                    .iter()
                    .find(|(n, _)| n.contains("uplink0"))
                    .unwrap_or_else(|| panic!("{files:?}"));
                assert!(up.1.contains("MACAddress=52:54:00:4d:01:fe"), "{up:?}");
                assert!(up.1.contains("DHCP=ipv4"), "{up:?}");
            }
            _ => {
                assert!(
                    lab_nic.1.contains("MACAddress=52:54:00:c8:00:fe"),
                    "{lab_nic:?}"
                );
                assert!(
                    lab_nic.1.contains("Address=192.168.200.254/24"),
                    "{lab_nic:?}"
                );
                assert!(lab_nic.1.contains("Gateway=192.168.200.1"), "{lab_nic:?}");
                assert_eq!(files.len(), 1, "{files:?}");
            }
        }
    }

    // the schema check has teeth
    let bad = dir.path().join("bad-user-data");
    std::fs::write(
        &bad,
        "#cloud-config\n{\"users\": [{\"name\": \"x\", \"lock_passwd\": \"sometimes\"}], \"runcmd\": 5}\n",
    )
    .unwrap();
    assert!(!schema(&bad).status.success());
}

#[test]
fn definitions_validate_and_the_services_vm_boots_its_root_disk() {
    let dir = tempfile::tempdir().unwrap();
    let lab = cloud_lab(dir.path(), "isolated-lab");
    let validate = |name: &str, kind: &str| {
        let xml = rendered(&lab, name);
        let f = dir.path().join(format!("{}.xml", name.replace(':', "-")));
        std::fs::write(&f, &xml).unwrap();
        let o = run(Command::new("virt-xml-validate").arg(&f).arg(kind));
        assert!(o.status.success(), "{name}: {}\n{xml}", text(&o));
        xml
    };
    let domain = validate("domain-xml", "domain");
    assert_eq!(validate("install-domain-xml", "domain"), domain);
    validate("network-xml", "network");
    let node = validate("domain-xml:node-0", "domain");
    assert!(
        node.contains("<boot order=\"1\"/>"),
        "nodes PXE-boot first: {node}"
    );

    // root disk first and the only boot device; data, payload, seed
    let disks: Vec<&str> = domain.split("<disk ").skip(1).collect();
    assert_eq!(disks.len(), 4, "{domain}");
    assert!(
        disks[0].contains("volume=\"iso-services-root.qcow2\""),
        "{}",
        disks[0]
    );
    assert!(disks[0].contains("<boot order=\"1\"/>"), "{}", disks[0]);
    assert_eq!(domain.matches("<boot ").count(), 1, "{domain}");
    assert!(!domain.contains("<kernel>"), "{domain}");
    assert!(
        disks[1].contains("<serial>bootlab-data</serial>"),
        "{}",
        disks[1]
    );
    assert!(
        disks[2].contains("<readonly/>") && disks[2].contains("<serial>bootlab-payload</serial>"),
        "{}",
        disks[2]
    );
    assert!(
        disks[3].contains("<readonly/>") && disks[3].contains("iso-services-cidata.img"),
        "{}",
        disks[3]
    );

    // the packaged unit
    assert_eq!(
        rendered(&lab, "unit"),
        std::fs::read_to_string(repo().join("deploy/systemd/bootlabd.service")).unwrap()
    );
    // what does not apply is refused with why
    let o = render(&repo().join("config/isolated-lab.toml"), "user-data");
    assert!(!o.status.success());
    assert!(text(&o).contains("method = \"appliance\""), "{}", text(&o));
    let o = render(&lab, "domain-xml:nope");
    assert!(!o.status.success());
    assert!(
        text(&o).contains("no node VM named \"nope\""),
        "{}",
        text(&o)
    );
}

/// ksvalidator from pykickstart in a venv under target/ (made once).
fn ksvalidator() -> PathBuf {
    let venv = repo().join("target/ksvenv");
    let bin = venv.join("bin/ksvalidator");
    if !bin.is_file() {
        let o = run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
        assert!(
            o.status.success(),
            "python3 -m venv (python3-venv): {}",
            text(&o)
        );
        let o =
            run(Command::new(venv.join("bin/pip")).args(["install", "-q", "pykickstart==3.78"]));
        assert!(o.status.success(), "pip install pykickstart: {}", text(&o));
    }
    assert!(
        bin.is_file(),
        "{} after installing pykickstart",
        bin.display()
    );
    bin
}

#[test]
fn the_kickstart_passes_ksvalidator_for_f41_and_rhel9() {
    let dir = tempfile::tempdir().unwrap();
    let ksv = ksvalidator();
    let validate = |ks: &Path, version: &str| {
        let o = run(Command::new(&ksv).args(["-e", "-v", version]).arg(ks));
        (o.status.success(), text(&o))
    };
    let method = "method = \"kickstart\", iso = \"/var/lib/libvirt/images/Fedora-Server-dvd-x86_64-41-1.4.iso\"";
    for base in ["okd-lab", "isolated-lab"] {
        let lab = lab_with(dir.path(), base, method);
        let ks = rendered(&lab, "kickstart");
        assert!(ks.contains(KEY), "{ks}");
        assert!(ks.contains("%post"), "{ks}");
        let f = dir.path().join(format!("{base}.ks"));
        std::fs::write(&f, &ks).unwrap();
        for version in ["F41", "RHEL9"] {
            let (ok, out) = validate(&f, version);
            assert!(ok, "{base} {version}: {out}\n{ks}");
            assert!(
                !out.contains("problem") && !out.contains("deprecated"),
                "{out}"
            );
        }
        // and the validator has teeth
        let bad = dir.path().join(format!("{base}-bad.ks"));
        std::fs::write(
            &bad,
            ks.replace("--bootproto=static", "--bootproto=static --frobnicate"),
        )
        .unwrap();
        assert!(!validate(&bad, "F41").0);
    }
    // another method's lab has no kickstart
    let o = render(&cloud_lab(dir.path(), "isolated-lab"), "kickstart");
    assert!(!o.status.success());
    assert!(
        text(&o).contains("method = \"cloud-image\""),
        "{}",
        text(&o)
    );
}
