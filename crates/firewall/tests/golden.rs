//! Golden tests: the generated rulesets for the reference configs, in nft
//! syntax. Regenerate with `BOOTLAB_UPDATE_GOLDEN=1 cargo test -p
//! bootlab-firewall --test golden` and review the diff.

use std::path::{Path, PathBuf};

use bootlab_firewall::{
    PolicyError, ServicesInterfaces, hypervisor_ruleset, render_nft, services_ruleset,
};
use bootlab_inventory::{Inventory, load};

fn config(name: &str) -> Inventory {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config")
        .join(name);
    load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn golden(name: &str, actual: &str) {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("BOOTLAB_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (set BOOTLAB_UPDATE_GOLDEN=1)", path.display()));
    assert_eq!(
        actual,
        expected,
        "{} differs from the generated ruleset",
        path.display()
    );
}

fn ifaces(uplink: bool) -> ServicesInterfaces {
    ServicesInterfaces {
        lab: "eth0".into(),
        uplink: uplink.then(|| "eth1".into()),
    }
}

#[test]
fn okd_lab_hypervisor_nat() {
    let inv = config("okd-lab.toml");
    golden(
        "okd-lab.hypervisor.nft",
        &render_nft(&hypervisor_ruleset(&inv).unwrap()),
    );
}

#[test]
fn okd_lab_services_input_filter_only() {
    let inv = config("okd-lab.toml");
    let rs = services_ruleset(&inv, &ifaces(false)).unwrap().unwrap();
    assert!(
        rs.chain("forward").is_none(),
        "nat mode: the services VM does not forward"
    );
    golden("okd-lab.services.nft", &render_nft(&rs));
}

#[test]
fn isolated_lab_services_gateway() {
    let inv = config("isolated-lab.toml");
    let rs = services_ruleset(&inv, &ifaces(true)).unwrap().unwrap();
    golden("isolated-lab.services.nft", &render_nft(&rs));
}

#[test]
fn isolated_lab_has_no_hypervisor_rule() {
    let inv = config("isolated-lab.toml");
    let err = hypervisor_ruleset(&inv).unwrap_err();
    assert_eq!(err, PolicyError::NotNatMode("isolated"));
    assert!(
        err.to_string().contains("services VM enforces egress"),
        "{err}"
    );
}

#[test]
fn gateway_without_uplink_interface_is_an_error() {
    let inv = config("isolated-lab.toml");
    let err = services_ruleset(&inv, &ifaces(false)).unwrap_err();
    assert!(
        matches!(err, PolicyError::MissingUplinkInterface(_)),
        "{err}"
    );
}

#[test]
fn firewall_off_means_no_ruleset() {
    let inv = config("dev.toml");
    assert_eq!(services_ruleset(&inv, &ifaces(false)).unwrap(), None);
}

#[test]
fn bad_interface_names_are_refused() {
    let inv = config("isolated-lab.toml");
    for bad in ["", "a\"b", "this-name-is-too-long", "a b", "x/y"] {
        let i = ServicesInterfaces {
            lab: bad.into(),
            uplink: Some("eth1".into()),
        };
        assert!(
            matches!(
                services_ruleset(&inv, &i),
                Err(PolicyError::BadInterfaceName(_))
            ),
            "{bad:?}"
        );
    }
    let same = ServicesInterfaces {
        lab: "eth0".into(),
        uplink: Some("eth0".into()),
    };
    assert!(matches!(
        services_ruleset(&inv, &same),
        Err(PolicyError::UplinkIsLab(_))
    ));
}
