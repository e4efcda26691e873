//! The host tool against a real libvirtd (started by the test in its own
//! network and mount namespaces, see `common`): `bootlab up` on a small
//! inventory (services VM appliance + 1 BIOS node + 1 UEFI node, TCG, the
//! Debian cloud kernel and its modules via `--kernel/--modules`) creates
//! pool, volumes, network and VMs; a second `up` changes no object's XML and
//! `plan` has nothing to do; the appliance boots and bootlabd answers; the
//! nodes PXE-boot from it to the test marker; `status` shows their boot
//! stages; `down` leaves no domain, network, pool or volume behind (and does
//! not touch a foreign network).
//!
//! Needs root, libvirt-daemon-system, qemu-system-x86, ovmf, ipxe-qemu,
//! busybox-static, cpio and `target/debug/bootlabd` (cargo test --workspace
//! builds it; alone: `cargo build -p bootlab-bootlabd`). Never skips.

mod common;
use common::{bootlab, ok, repo, text};

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{LibvirtNetns, sh_ok};
use virt::connect::Connect;
use virt::domain::Domain;
use virt::network::Network;
use virt::storage_pool::StoragePool;

/// Every object's XML, minus what changes by itself (allocation, free
/// space, timestamps).
fn snapshot(conn: &Connect, pool: &str, net: &str, doms: &[&str]) -> BTreeMap<String, String> {
    let volatile = |x: String| -> String {
        x.lines()
            .filter(|l| {
                ![
                    "<allocation",
                    "<available",
                    "<physical",
                    "time>",
                    "<timestamps",
                    "</timestamps",
                ]
                .iter()
                .any(|k| l.contains(k))
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut m = BTreeMap::new();
    let p = StoragePool::lookup_by_name(conn, pool).expect("pool exists");
    // libvirt learns some facts (qcow2 cluster size) only on a refresh
    p.refresh(0).unwrap();
    m.insert(format!("pool {pool}"), volatile(p.get_xml_desc(0).unwrap()));
    for v in p.list_all_volumes(0).unwrap() {
        m.insert(
            format!("volume {}", v.get_name().unwrap()),
            volatile(v.get_xml_desc(0).unwrap()),
        );
    }
    let n = Network::lookup_by_name(conn, net).expect("network exists");
    m.insert(
        format!("network {net}"),
        n.get_xml_desc(virt::sys::VIR_NETWORK_XML_INACTIVE).unwrap(),
    );
    m.insert(format!("network {net} (live)"), n.get_xml_desc(0).unwrap());
    for d in doms {
        let dom = Domain::lookup_by_name(conn, d).expect("domain exists");
        m.insert(
            format!("domain {d}"),
            dom.get_xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE)
                .unwrap(),
        );
    }
    m
}

fn lab_toml(env: &LibvirtNetns) -> String {
    format!(
        r#"
[lab]
name = "e2e"
domain = "lab.test"

[network]
cidr = "10.123.0.0/24"
mode = "nat"
gateway = "10.123.0.1"
host_ip = "10.123.0.1"
bridge = "virbr-e2e"
libvirt_name = "e2e"
lease = "1h"

[libvirt]
uri = "{uri}"
pool = "e2e"
pool_path = "{root}/pool/e2e"
vm_prefix = "e2e-"
virt_type = "auto"

[services]
name = "services"
ip = "10.123.0.254"
mac = "52:54:00:7b:00:fe"
vcpus = 1
memory = "512MiB"
disks = ["64MiB"]
data_dir = "/var/lib/bootlab"
assets_dir = "/var/lib/bootlab/assets"
firewall = true

[profiles.marker]
loader = "ipxe"
kernel = "vmlinuz"
initrd = ["initrd.img"]
args = "console=ttyS0 bootlab.node={{{{ node.name }}}}"

[roles.node]
profile = "marker"
vcpus = 1
memory = "256MiB"
disks = ["1GiB"]

[[nodes]]
name = "bios"
role = "node"
firmware = "bios"
mac = "52:54:00:7b:00:10"
ip = "10.123.0.10"

[[nodes]]
name = "uefi"
role = "node"
firmware = "uefi"
mac = "52:54:00:7b:00:11"
ip = "10.123.0.11"
"#,
        uri = env.uri,
        root = env.root().display()
    )
}

fn log_has(path: &Path, needle: &str) -> bool {
    std::fs::read(path).is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle))
}

#[test]
fn appliance_lab_up_is_idempotent_boots_nodes_and_down_leaves_nothing() {
    common::require_root_and_tools(&[
        "cpio",
        "busybox",
        "apt-get",
        "dpkg-deb",
        "depmod",
        "nft",
        "virt-xml-validate",
    ]);
    let env = LibvirtNetns::start("e2e");
    let root = env.root().to_path_buf();
    let daemon = env.copy_bootlabd();

    // Inputs: the cloud kernel + its modules (appliance), the marker OS and
    // the first-stage binaries (what the nodes boot, served by bootlabd).
    let assets = root.join("assets");
    let kdir = root.join("kernel");
    let scripts = repo().join("tests/e2e");
    sh_ok(&format!(
        "{}/build-test-os.sh {}",
        scripts.display(),
        assets.display()
    ));
    sh_ok(&format!(
        "{}/kernel-with-modules.sh {}",
        scripts.display(),
        kdir.display()
    ));
    sh_ok(&format!(
        "{}/boot-assets/gather.sh {}",
        repo().display(),
        assets.display()
    ));
    let lab = root.join("lab.toml");
    std::fs::write(&lab, lab_toml(&env)).unwrap();
    let lab_s = lab.to_str().unwrap();
    let appliance = [
        "--kernel",
        &format!("{}/vmlinuz", kdir.display()),
        "--modules",
        &format!("{}/modules", kdir.display()),
        "--bootlabd",
        daemon.to_str().unwrap(),
        "--assets",
        assets.to_str().unwrap(),
    ]
    .map(|s| s.to_string());
    let run = |args: &[&str]| env.exec(&bootlab(), args);
    let with_appliance = |cmd: &str, extra: &[&str]| {
        let mut a: Vec<&str> = vec![cmd, lab_s];
        a.extend(appliance.iter().map(String::as_str));
        a.extend(extra);
        run(&a)
    };

    let conn = Connect::open(Some(&env.uri)).expect("test connects to its libvirtd");
    // A foreign network `down` must not touch.
    Network::define_xml(
        &conn,
        "<network><name>foreign</name><bridge name='virbr-foreign'/></network>",
    )
    .unwrap();

    // doctor runs against this libvirtd
    let doc = run(&["doctor", lab_s]);
    let doc_text = text(&doc);
    println!("--- bootlab doctor\n{doc_text}");
    assert!(doc_text.contains("reachable, libvirt"), "{doc_text}");

    // up #1
    let t_up = Instant::now();
    let out = ok(with_appliance("up", &[]), "bootlab up");
    let up_secs = t_up.elapsed();
    println!("--- bootlab up ({up_secs:?})\n{out}");
    let probe = bootlab_bootlab::doctor::local_qemu()
        .map(|q| bootlab_bootlab::doctor::probe_kvm_guest(&q, Duration::from_secs(30)));
    let expect_kvm = matches!(probe, Some(bootlab_bootlab::doctor::KvmState::GuestRuns));
    assert!(
        out.contains(if expect_kvm {
            "virt type: kvm"
        } else {
            "virt type: qemu"
        }),
        "virt_type auto must follow the KVM probe ({probe:?}): {out}"
    );
    let doms = ["e2e-services", "e2e-bios", "e2e-uefi"];
    let before = snapshot(&conn, "e2e", "e2e", &doms);
    for d in &doms {
        let x = &before[&format!("domain {d}")];
        assert!(
            x.contains(if expect_kvm {
                "type='kvm'"
            } else {
                "type='qemu'"
            }),
            "{x}"
        );
    }
    assert!(
        before["domain e2e-uefi"].contains("firmware='efi'"),
        "{}",
        before["domain e2e-uefi"]
    );
    assert!(before["domain e2e-bios"].contains("52:54:00:7b:00:10"));
    assert!(
        before["domain e2e-services"].contains("<kernel>"),
        "direct kernel boot"
    );
    assert!(
        !before["domain e2e-services"].contains("/boot/"),
        "never the host's /boot"
    );
    assert!(
        before
            .keys()
            .any(|k| k.starts_with("volume e2e-services-initrd-"))
    );
    assert!(
        before["network e2e"].contains("<dns enable='no'/>"),
        "{}",
        before["network e2e"]
    );
    assert!(
        !before["network e2e"].contains("<dhcp"),
        "{}",
        before["network e2e"]
    );
    assert!(
        Domain::lookup_by_name(&conn, "e2e-services")
            .unwrap()
            .is_active()
            .unwrap(),
        "up starts the services VM"
    );
    assert!(
        !Domain::lookup_by_name(&conn, "e2e-bios")
            .unwrap()
            .is_active()
            .unwrap(),
        "node VMs are not started without --start"
    );
    sh_ok(&format!(
        "ip netns exec {} nft list table inet bootlab",
        env.netns
    ));

    // the appliance boots and bootlabd answers inside it
    let services_log = env.serial_log("e2e-services");
    let dump_services = || {
        let t = std::fs::read(&services_log).unwrap_or_default();
        let t = String::from_utf8_lossy(&t);
        let start = t.len().saturating_sub(6000);
        let start = (start..t.len())
            .find(|&i| t.is_char_boundary(i))
            .unwrap_or(0);
        eprintln!("--- serial log of e2e-services (tail)\n{}", &t[start..]);
    };
    let boot = env.wait_for_or(
        "bootlabd's HTTP listener in the appliance",
        Duration::from_secs(240),
        dump_services,
        || log_has(&services_log, "listening for http"),
    );
    env.wait_for("bootlabd's DHCP listener", Duration::from_secs(120), || {
        log_has(&services_log, "listening for dhcp")
    });
    assert!(
        log_has(&services_log, "data on /dev/vda (ext4)"),
        "the data disk is mounted, ext4"
    );
    // nft and the nf_tables modules work inside the appliance
    env.wait_for_or(
        "bootlabd's firewall in the appliance",
        Duration::from_secs(120),
        dump_services,
        || log_has(&services_log, "firewall applied"),
    );
    println!(
        "services VM: bootlabd listening {boot:?} after `up` returned (up itself took {up_secs:?})"
    );
    // up #2: nothing changes; plan: nothing to do
    let out = ok(with_appliance("up", &[]), "second bootlab up");
    assert!(out.contains("nothing to do"), "{out}");
    let after = snapshot(&conn, "e2e", "e2e", &doms);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (k, v) in &before {
        assert_eq!(v, &after[k], "{k} changed on the second up");
    }
    let out = ok(with_appliance("plan", &[]), "bootlab plan");
    assert!(out.contains("nothing to do"), "{out}");
    let json: serde_json::Value = serde_json::from_str(&ok(
        with_appliance("plan", &["--output", "json"]),
        "plan --output json",
    ))
    .unwrap();
    assert_eq!(json["changes"], serde_json::json!([]), "{json}");

    let status = ok(run(&["status", lab_s]), "bootlab status");
    println!("--- bootlab status\n{status}");
    assert!(status.contains("bootlabd: answering"), "{status}");

    // the nodes PXE-boot from it to the marker
    let t_start = Instant::now();
    ok(with_appliance("up", &["--start"]), "bootlab up --start");
    for (dom, node) in [("e2e-bios", "bios"), ("e2e-uefi", "uefi")] {
        let log = env.serial_log(dom);
        let marker = format!("bootlab.node={node}");
        let dump = || {
            for d in ["e2e-services", "e2e-bios", "e2e-uefi"] {
                let t = std::fs::read(env.serial_log(d)).unwrap_or_default();
                let t = String::from_utf8_lossy(&t);
                let start = t.len().saturating_sub(3000);
                let start = (start..t.len())
                    .find(|&i| t.is_char_boundary(i))
                    .unwrap_or(0);
                eprintln!("--- serial log of {d} (tail)\n{}", &t[start..]);
            }
        };
        env.wait_for_or(
            &format!("{dom} to print the marker"),
            Duration::from_secs(400),
            dump,
            || {
                std::fs::read(&log).is_ok_and(|b| {
                    String::from_utf8_lossy(&b)
                        .lines()
                        .any(|l| l.contains("BOOTLAB-MARKER") && l.contains(&marker))
                })
            },
        );
        println!("{dom}: marker {:?} after `up --start`", t_start.elapsed());
    }
    let st: serde_json::Value = serde_json::from_str(&ok(
        run(&["status", lab_s, "--output", "json"]),
        "status --output json",
    ))
    .unwrap();
    println!("--- bootlab status --output json\n{st:#}");
    for dom in ["e2e-bios", "e2e-uefi"] {
        let vm = st["vms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["domain"] == dom)
            .unwrap();
        let stage = vm["stage"].as_str().unwrap_or_default();
        assert!(
            ["kernel", "initrd", "config"].contains(&stage),
            "{dom} boot stage {stage:?}: {st:#}"
        );
    }

    // without a terminal and without --yes, down refuses and removes nothing
    let o = run(&["down", lab_s]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--yes"), "{}", text(&o));
    assert_eq!(
        conn.list_all_domains(0).unwrap().len(),
        3,
        "nothing removed"
    );

    // down --yes leaves nothing of ours, and the foreign network
    let out = ok(run(&["down", lab_s, "--yes"]), "bootlab down --yes");
    println!("--- bootlab down\n{out}");
    let left: Vec<String> = conn
        .list_all_domains(0)
        .unwrap()
        .iter()
        .map(|d| d.get_name().unwrap())
        .collect();
    assert!(left.is_empty(), "domains left: {left:?}");
    let nets: Vec<String> = conn
        .list_all_networks(0)
        .unwrap()
        .iter()
        .map(|n| n.get_name().unwrap())
        .collect();
    assert_eq!(nets, vec!["foreign".to_string()]);
    let pools = conn.list_all_storage_pools(0).unwrap();
    assert!(pools.is_empty(), "pools left: {}", pools.len());
    assert!(!root.join("pool/e2e").exists(), "pool directory removed");
    let tables = sh_ok(&format!("ip netns exec {} nft list tables", env.netns));
    assert!(!tables.contains("bootlab"), "{tables}");
}

/// Changing the inventory: `up` redefines the domain in place (same UUID),
/// grows a disk, never shrinks one, and updates the network's persistent
/// definition without destroying the running network.
#[test]
fn changed_inventory_updates_in_place_grows_disks_and_never_shrinks() {
    common::require_root_and_tools(&["cpio", "busybox", "apt-get", "dpkg-deb", "depmod", "nft"]);
    let env = LibvirtNetns::start("upd");
    let root = env.root().to_path_buf();
    let daemon = env.copy_bootlabd();
    let kdir = env.kernel_with_modules();
    let lab = root.join("lab.toml");
    let base = lab_toml(&env);
    std::fs::write(&lab, &base).unwrap();
    let lab_s = lab.to_str().unwrap().to_string();
    let kernel = format!("{}/vmlinuz", kdir.display());
    let modules = format!("{}/modules", kdir.display());
    let cmd = |c: &str, extra: &[&str]| {
        let mut a: Vec<&str> = vec![c, &lab_s, "--kernel", &kernel, "--modules", &modules];
        a.extend(["--bootlabd", daemon.to_str().unwrap()]);
        a.extend(extra);
        env.exec(&bootlab(), &a)
    };
    ok(cmd("up", &[]), "bootlab up");
    let conn = Connect::open(Some(&env.uri)).unwrap();
    let uuid = |d: &str| {
        Domain::lookup_by_name(&conn, d)
            .unwrap()
            .get_uuid_string()
            .unwrap()
    };
    let net_uuid = Network::lookup_by_name(&conn, "e2e")
        .unwrap()
        .get_uuid_string()
        .unwrap();
    let bios_uuid = uuid("e2e-bios");

    // more memory for the nodes, a bigger disk, another domain name
    let changed = base
        .replace(
            "memory = \"256MiB\"\ndisks = [\"1GiB\"]",
            "memory = \"384MiB\"\ndisks = [\"2GiB\"]",
        )
        .replace("domain = \"lab.test\"", "domain = \"lab2.test\"");
    assert_ne!(changed, base);
    std::fs::write(&lab, &changed).unwrap();
    let plan = ok(cmd("plan", &[]), "plan after the change");
    println!("--- plan after the change\n{plan}");
    assert!(
        plan.contains("~ domain  e2e-bios") && plan.contains("update"),
        "{plan}"
    );
    assert!(
        plan.contains("~ volume  e2e-bios-disk0.qcow2") && plan.contains("grow"),
        "{plan}"
    );
    assert!(plan.contains("~ network e2e"), "{plan}");
    // The inventory is not part of the services VM's definition: it is
    // pushed to the running VM, which does not restart.
    assert!(!plan.contains("e2e-services"), "{plan}");
    assert!(plan.contains("^ inventory"), "{plan}");
    let services_id = |c: &Connect| Domain::lookup_by_name(c, "e2e-services").unwrap().get_id();
    let before = services_id(&conn);
    assert!(before.is_some(), "the services VM runs");
    let out = ok(cmd("up", &[]), "up after the change");
    println!("--- up after the change\n{out}");
    assert!(out.contains("pushed the inventory"), "{out}");
    assert_eq!(services_id(&conn), before, "the services VM kept running");
    assert_eq!(uuid("e2e-bios"), bios_uuid, "redefined in place");
    let net = Network::lookup_by_name(&conn, "e2e").unwrap();
    assert_eq!(net.get_uuid_string().unwrap(), net_uuid);
    assert!(
        net.is_active().unwrap(),
        "the running network was not destroyed"
    );
    assert!(
        net.get_xml_desc(virt::sys::VIR_NETWORK_XML_INACTIVE)
            .unwrap()
            .contains("e2e.lab2.test"),
        "persistent definition updated"
    );
    let x = Domain::lookup_by_name(&conn, "e2e-bios")
        .unwrap()
        .get_xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE)
        .unwrap();
    assert!(x.contains("<memory unit='KiB'>393216</memory>"), "{x}");
    let pool = StoragePool::lookup_by_name(&conn, "e2e").unwrap();
    let cap = |v: &str| {
        pool.refresh(0).unwrap();
        virt::storage_vol::StorageVol::lookup_by_name(&pool, v)
            .unwrap()
            .get_info()
            .unwrap()
            .capacity
    };
    assert_eq!(cap("e2e-bios-disk0.qcow2"), 2 << 30);
    // the running network keeps its old definition until restarted: plan says so
    let plan = ok(cmd("plan", &[]), "plan after up");
    assert!(plan.contains("does not destroy a network"), "{plan}");
    // ... and what the restart will change
    assert!(
        plan.contains("domain: e2e.lab.test -> e2e.lab2.test"),
        "{plan}"
    );
    assert!(
        !plan
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("domain")),
        "no domain changes left: {plan}"
    );

    // The services VM's own memory: its definition changes, and
    // --restart-services restarts it on the new one.
    let more = changed.replace("memory = \"512MiB\"", "memory = \"640MiB\"");
    assert_ne!(more, changed);
    std::fs::write(&lab, &more).unwrap();
    let plan = ok(cmd("plan", &[]), "plan after the services change");
    assert!(
        plan.contains("~ domain  e2e-services") && plan.contains("--restart-services"),
        "{plan}"
    );
    let out = ok(
        cmd("up", &["--restart-services"]),
        "up --restart-services after the change",
    );
    println!("--- up --restart-services\n{out}");
    let after = services_id(&conn);
    assert!(
        after.is_some() && after != before,
        "the services VM restarted: {before:?} -> {after:?}"
    );
    let changed = more;

    // back to the smaller disk: never shrunk
    std::fs::write(
        &lab,
        changed.replace("disks = [\"2GiB\"]", "disks = [\"1GiB\"]"),
    )
    .unwrap();
    ok(cmd("up", &[]), "up with a smaller disk");
    assert_eq!(cap("e2e-bios-disk0.qcow2"), 2 << 30, "never shrunk");

    // down --keep-disks keeps the disks (and so the pool), removes the rest
    let out = ok(
        env.exec(&bootlab(), &["down", &lab_s, "--keep-disks"]),
        "down --keep-disks",
    );
    println!("--- down --keep-disks\n{out}");
    assert!(conn.list_all_domains(0).unwrap().is_empty());
    assert!(conn.list_all_networks(0).unwrap().is_empty());
    let mut vols: Vec<String> = pool.list_volumes().unwrap();
    vols.sort();
    assert_eq!(
        vols,
        [
            "e2e-bios-disk0.qcow2",
            "e2e-services-disk0.qcow2",
            "e2e-uefi-disk0.qcow2"
        ]
    );
    ok(
        env.exec(&bootlab(), &["down", &lab_s, "--yes"]),
        "down --yes",
    );
    assert!(conn.list_all_storage_pools(0).unwrap().is_empty());
}
