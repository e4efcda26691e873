//! Apply/replace/remove semantics against a real kernel, in a namespace of
//! its own: idempotence, policy changes, state kept, foreign tables untouched.
//! Needs root and `nft`; fails loudly without them.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use bootlab_firewall::{
    BootlabTable, LEARNED_SET, LearnedSet, ServicesInterfaces, hypervisor_ruleset, render_nft,
    services_ruleset, strip_state,
};
use bootlab_inventory::Inventory;
use bootlab_testkit::LabBuilder;
use common::{Netns, NftIn, require_tools};

fn config(name: &str) -> Inventory {
    LabBuilder::config(name.trim_end_matches(".toml")).build()
}

const FOREIGN: &str = "table inet foreign {
	counter seen {
		packets 7 bytes 700
	}

	set blocked {
		type ipv4_addr
		elements = { 198.51.100.1, 198.51.100.2 }
	}

	chain input {
		type filter hook input priority filter + 5; policy accept;
		ip saddr @blocked counter name \"seen\" drop
	}
}
";

#[test]
fn reapply_is_idempotent_policy_changes_apply_and_foreign_tables_stay() {
    require_tools();
    let ns = Netns::new("apply");
    ns.sh(&format!("nft -f - <<'EOF'\n{FOREIGN}EOF"));
    let foreign = || ns.sh("nft list table inet foreign");
    assert_eq!(foreign(), FOREIGN);
    let table = BootlabTable::new(ns.nft());
    let ifaces = ServicesInterfaces {
        lab: "eth0".into(),
        uplink: Some("eth1".into()),
    };
    let gateway = services_ruleset(&config("isolated-lab.toml"), &ifaces)
        .unwrap()
        .unwrap();
    let hypervisor = hypervisor_ruleset(&config("okd-lab.toml")).unwrap();

    // Fresh apply, then re-apply: byte-identical listing, same as `show`.
    table.apply(&gateway).unwrap();
    let first = table.listing_without_state().unwrap().unwrap();
    assert_eq!(first, render_nft(&gateway));
    let learned = LearnedSet::new(ns.nft());
    learned
        .add(
            "203.0.113.80".parse::<IpAddr>().unwrap(),
            Duration::from_secs(600),
        )
        .unwrap();
    let with_element = table.listing().unwrap().unwrap();
    table.apply(&gateway).unwrap();
    assert_eq!(table.listing_without_state().unwrap().unwrap(), first);
    let again = table.listing().unwrap().unwrap();
    assert!(again.contains("203.0.113.80 timeout 10m"), "{again}");
    assert_eq!(strip_state(&again), strip_state(&with_element));

    // A different policy replaces chains, drops the set it no longer has.
    table.apply(&hypervisor).unwrap();
    assert!(table.matches(&hypervisor).unwrap(), "{:?}", table.listing());
    assert!(table.state().unwrap().unwrap().set(LEARNED_SET).is_none());
    // And back: the set comes back empty, the chains in order.
    table.apply(&gateway).unwrap();
    assert!(table.matches(&gateway).unwrap(), "{:?}", table.listing());
    assert!(learned.elements().unwrap().is_empty());

    assert_eq!(foreign(), FOREIGN, "foreign table touched");
    assert!(table.remove().unwrap());
    assert_eq!(table.listing().unwrap(), None);
    assert_eq!(foreign(), FOREIGN, "foreign table touched by remove");
}

/// What `egress show` / `--dry-run` prints is valid `nft -f` input, and nft
/// makes of it exactly the table the JSON batch makes.
#[test]
fn the_shown_ruleset_is_what_nft_builds_from_either_form() {
    require_tools();
    let ifaces_gw = ServicesInterfaces {
        lab: "eth0".into(),
        uplink: Some("eth1".into()),
    };
    let ifaces_nat = ServicesInterfaces {
        lab: "eth0".into(),
        uplink: None,
    };
    let rulesets = [
        hypervisor_ruleset(&config("okd-lab.toml")).unwrap(),
        services_ruleset(&config("okd-lab.toml"), &ifaces_nat)
            .unwrap()
            .unwrap(),
        services_ruleset(&config("isolated-lab.toml"), &ifaces_gw)
            .unwrap()
            .unwrap(),
    ];
    for rs in &rulesets {
        let text = render_nft(rs);
        let by_text = Netns::new("text");
        by_text.sh(&format!("nft -f - <<'EOF'\n{text}EOF"));
        let by_json = Netns::new("json");
        BootlabTable::new(by_json.nft()).apply(rs).unwrap();
        let listing = |ns: &Netns| strip_state(&ns.sh("nft list table inet bootlab"));
        assert_eq!(listing(&by_text), text);
        assert_eq!(listing(&by_json), text);
    }
}
