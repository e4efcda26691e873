//! The reference inventory loads unchanged and derives what the spec says.

use std::path::Path;

use bootlab_inventory::wire::VarValue;
use bootlab_inventory::{Inventory, RecordData, load};

fn okd() -> Inventory {
    load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/okd-lab.toml"
    )))
    .unwrap()
}

#[test]
fn reference_config_loads_with_the_okd_services() {
    // config/okd-lab.toml is the reference users read: it loads without
    // errors or warnings and carries the OKD services-VM duties.
    let inv = okd();
    assert!(inv.warnings().is_empty(), "{:?}", inv.warnings());
    let names: Vec<&str> = inv.balancers().iter().map(|b| b.name.as_str()).collect();
    assert_eq!(
        names,
        ["api", "machine-config", "ingress-https", "ingress-http"]
    );
    let api = &inv.balancers()[0];
    assert_eq!(api.listen.to_string(), "192.168.200.254:6443");
    let backends: Vec<&str> = api.backends.iter().map(|b| b.node.as_str()).collect();
    assert_eq!(backends, ["bootstrap", "master-0", "master-1", "master-2"]);
    assert!(inv.ntp().enable);
    assert_eq!(inv.ntp().local_stratum, 10);
}

#[test]
fn okd_derives_13_reservations_plus_services() {
    let inv = okd();
    let res = inv.hosts();
    assert_eq!(res.len(), 14);
    assert_eq!(
        res.iter()
            .filter(|r| matches!(r.kind, bootlab_inventory::HostRef::Node(_)))
            .count(),
        13
    );
    let boot = res.iter().find(|r| r.name == "bootstrap").unwrap();
    assert_eq!(boot.mac.to_string(), "f8:75:a4:ac:01:00");
    assert_eq!(boot.ip.to_string(), "192.168.200.10");
    assert_eq!(boot.fqdn, "bootstrap.okd.example.com");
    let svc = res.iter().find(|r| r.name == "services").unwrap();
    assert_eq!(svc.mac.to_string(), "52:54:00:c8:00:fe");
}

#[test]
fn okd_forward_zone_has_api_apps_nodes_and_services() {
    let inv = okd();
    let zones = inv.zones();
    let f = &zones.forward;
    assert_eq!(f.origin, "okd.example.com");
    let a = |name: &str| {
        f.records
            .iter()
            .filter(|r| r.name == name)
            .map(|r| r.data.clone())
            .collect::<Vec<_>>()
    };
    let svc = RecordData::A("192.168.200.254".parse().unwrap());
    assert_eq!(a("api.okd.example.com"), std::slice::from_ref(&svc));
    assert_eq!(a("api-int.okd.example.com"), std::slice::from_ref(&svc));
    assert_eq!(a("*.apps.okd.example.com"), std::slice::from_ref(&svc));
    assert_eq!(a("services.okd.example.com"), [svc]);
    for n in [
        "bootstrap",
        "compute-0",
        "compute-1",
        "compute-2",
        "master-0",
        "master-1",
        "master-2",
        "infra-0",
        "infra-1",
        "infra-2",
        "storage-0",
        "storage-1",
        "storage-2",
    ] {
        assert_eq!(a(&format!("{n}.okd.example.com")).len(), 1, "{n}");
    }
    // 13 nodes + services + api + api-int + *.apps
    assert_eq!(f.records.len(), 17);
    let apps = f.records.iter().find(|r| r.name.starts_with('*')).unwrap();
    assert_eq!(apps.ttl, 60);
}

#[test]
fn okd_reverse_zone_has_14_ptrs() {
    let inv = okd();
    let zones = inv.zones();
    assert_eq!(zones.reverse.len(), 1);
    let r = &zones.reverse[0];
    assert_eq!(r.origin, "200.168.192.in-addr.arpa");
    assert_eq!(r.records.len(), 14);
    let ptr = r
        .records
        .iter()
        .find(|r| r.name == "30.200.168.192.in-addr.arpa")
        .unwrap();
    assert_eq!(ptr.data, RecordData::Ptr("master-0.okd.example.com".into()));
}

#[test]
fn zone_serial_follows_content() {
    let inv = okd();
    let s1 = inv.zones().forward.serial;
    assert_eq!(
        s1,
        okd().zones().forward.serial,
        "same content, same serial"
    );
    let changed = bootlab_testkit::LabBuilder::okd()
        .edit(|f| f.nodes[0].ip = "192.168.200.11".into())
        .build();
    assert_ne!(s1, changed.zones().forward.serial);
}

#[test]
fn storage_nodes_render_worker_ignition_through_role_vars() {
    let inv = okd();
    let node = inv.nodes().iter().find(|n| n.name == "storage-1").unwrap();
    let p = &node.boot;
    assert!(
        p.args.contains(
            "coreos.inst.ignition_url=http://192.168.200.254:8080/assets/okd/ignitions/worker.ign"
        ),
        "{}",
        p.args
    );
    assert!(
        p.args
            .contains("coreos.live.rootfs_url=http://192.168.200.254:8080/assets/okd/rootfs/")
    );
    assert_eq!(p.kernel, "okd/kernel/fedora-coreos-live-kernel-x86_64");
    let boot = inv.nodes().iter().find(|n| n.name == "bootstrap").unwrap();
    assert!(boot.boot.args.contains("/bootstrap.ign"));
    let master = inv.nodes().iter().find(|n| n.name == "master-2").unwrap();
    assert!(master.boot.args.contains("/master.ign"));
}

#[test]
fn nodes_without_vars_of_their_own_share_their_roles_map() {
    let inv = bootlab_testkit::LabBuilder::okd()
        .edit(|f| {
            let w = f.nodes.iter_mut().find(|n| n.name == "compute-1").unwrap();
            w.vars
                .insert("ignition".into(), VarValue::Str("custom".into()));
        })
        .build();
    let node = |name: &str| inv.nodes().iter().find(|n| n.name == name).unwrap();
    let (m0, m1, w0, w1) = (
        node("master-0"),
        node("master-1"),
        node("compute-0"),
        node("compute-1"),
    );
    assert!(
        std::sync::Arc::ptr_eq(&m0.vars, &m1.vars),
        "one map per role"
    );
    assert!(!std::sync::Arc::ptr_eq(&m0.vars, &w0.vars));
    assert_eq!(m0.vars.get("ignition").map(String::as_str), Some("master"));
    assert_eq!(w0.vars.get("ignition").map(String::as_str), Some("worker"));
    // A node's own var overrides its role's, in its own map only.
    assert_eq!(w1.vars.get("ignition").map(String::as_str), Some("custom"));
    assert!(w1.boot.args.contains("/custom.ign"), "{}", w1.boot.args);
    assert!(w0.boot.args.contains("/worker.ign"), "{}", w0.boot.args);
}

#[test]
fn vm_specs_carry_prefix_sizes_and_macs() {
    let inv = okd();
    let specs = inv.vm_specs();
    assert_eq!(specs.len(), 14);
    assert_eq!(specs[0].domain, "okd-services");
    assert_eq!(specs[0].memory, 8 << 30);
    assert_eq!(specs[0].disks, [64u64 << 30]);
    let st = specs.iter().find(|s| s.domain == "okd-storage-0").unwrap();
    assert_eq!(st.vcpus, 8);
    assert_eq!(st.memory, 32 << 30);
    assert_eq!(st.disks, [128u64 << 30, 256 << 30]);
    assert_eq!(st.nics[0].network, "okd");
    assert_eq!(st.nics[0].mac.to_string(), "f8:75:a4:ac:05:00");
    assert_eq!(st.firmware, bootlab_inventory::Firmware::Bios);
}

#[test]
fn egress_defaults_to_the_services_vm() {
    let inv = okd();
    assert_eq!(
        inv.egress_hosts(),
        ["192.168.200.254".parse::<std::net::Ipv4Addr>().unwrap()]
    );
}

#[test]
fn every_config_file_loads() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Err(e) = load(&path) {
                panic!("{}: {e}", path.display());
            }
            n += 1;
        }
    }
    assert!(n >= 2, "expected okd-lab.toml and dev.toml at least");
}
