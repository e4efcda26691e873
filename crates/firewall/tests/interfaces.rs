//! Finding the services VM's NICs by MAC, against a fake `/sys/class/net`.

use std::path::Path;

use bootlab_firewall::{ServicesInterfaces, interface_by_mac, services_ruleset};
use bootlab_inventory::load;

fn fake_sysfs(nics: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, mac) in nics {
        std::fs::create_dir(dir.path().join(name)).unwrap();
        std::fs::write(dir.path().join(name).join("address"), format!("{mac}\n")).unwrap();
    }
    dir
}

#[test]
fn lab_and_uplink_are_found_by_mac() {
    let inv = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/isolated-lab.toml"))
        .unwrap();
    let sys = fake_sysfs(&[
        ("lo", "00:00:00:00:00:00"),
        ("enp1s0", "52:54:00:4d:00:fe"),
        ("enp2s0", "52:54:00:4D:01:FE"),
    ]);
    let ifaces = ServicesInterfaces::discover(&inv, sys.path()).unwrap();
    assert_eq!(
        ifaces,
        ServicesInterfaces {
            lab: "enp1s0".into(),
            uplink: Some("enp2s0".into()),
        }
    );
    assert!(services_ruleset(&inv, &ifaces).is_ok());
}

#[test]
fn a_missing_uplink_is_reported_by_the_policy() {
    let inv = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/isolated-lab.toml"))
        .unwrap();
    let sys = fake_sysfs(&[("eth0", "52:54:00:4d:00:fe")]);
    let ifaces = ServicesInterfaces::discover(&inv, sys.path()).unwrap();
    assert_eq!(ifaces.uplink, None);
    let err = services_ruleset(&inv, &ifaces).unwrap_err();
    assert!(err.to_string().contains("52:54:00:4d:01:fe"), "{err}");
}

#[test]
fn no_lab_nic_is_an_error_naming_the_mac() {
    let inv = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/isolated-lab.toml"))
        .unwrap();
    let sys = fake_sysfs(&[("eth0", "52:54:00:00:00:01")]);
    let err = ServicesInterfaces::discover(&inv, sys.path()).unwrap_err();
    assert!(err.to_string().contains("52:54:00:4d:00:fe"), "{err}");
    assert_eq!(
        interface_by_mac(sys.path(), "52:54:00:00:00:01".parse().unwrap()).unwrap(),
        Some("eth0".into())
    );
}

/// A bridge and its port share the MAC (the bridge takes its port's): the
/// bridge is the lab interface, whatever the names sort like.
#[test]
fn a_bridge_wins_over_its_port_with_the_same_mac() {
    let sys = fake_sysfs(&[
        ("br-lab", "52:54:00:4d:00:fe"),
        ("a-port", "52:54:00:4d:00:fe"),
    ]);
    std::fs::create_dir(sys.path().join("br-lab").join("bridge")).unwrap();
    std::fs::create_dir(sys.path().join("a-port").join("brport")).unwrap();
    assert_eq!(
        interface_by_mac(sys.path(), "52:54:00:4d:00:fe".parse().unwrap()).unwrap(),
        Some("br-lab".into())
    );
}
