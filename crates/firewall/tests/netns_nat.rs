//! nat mode on the hypervisor, with real packets in network namespaces.
//!
//! ```text
//!  services (52:54:00:c8:00:fe 192.168.200.254) ─┐
//!                                                ├─ hypervisor: bridge virbr-okd 192.168.200.1,
//!  node     (f8:75:a4:ac:01:00 192.168.200.10)  ─┘   br_netfilter on, a stand-in "libvirt" table
//!                                                    (forward accept + masquerade), uplink 192.0.2.2
//!                                                              │
//!                                   internet 192.0.2.1: HTTP on 198.51.100.10 (in allow_cidrs
//!                                   198.51.100.0/25) and 198.51.100.200 (not allowed)
//! ```
//! Needs root, `ip`, `nft`, `curl`, `python3`; fails loudly without them.

mod common;

use bootlab_firewall::ruleset::{Action, Rule, Verdict};
use bootlab_firewall::{
    ApplyOutcome, BootlabTable, COUNTER_LAB_EGRESS_DENIED, Ruleset, TableError, hypervisor_ruleset,
    render_nft, strip_state,
};
use bootlab_inventory::Inventory;
use bootlab_testkit::LabBuilder;
use bootlab_testkit::veth;
use common::{Netns, NftIn, golden, require_tools};

const ALLOWED: &str = "198.51.100.10";
const DENIED: &str = "198.51.100.200";
const FOREIGN_TABLE: &str = "table ip libvirt_test";

/// okd-lab.toml with one allowed CIDR.
fn okd_with_allow_cidr() -> Inventory {
    LabBuilder::okd()
        .edit(|f| f.egress.allow_cidrs = vec!["198.51.100.0/25".into()])
        .build()
}

struct NatLab {
    hypervisor: Netns,
    services: Netns,
    node: Netns,
    _internet: Netns,
}

impl NatLab {
    fn new() -> Self {
        require_tools();
        let hypervisor = Netns::new("hv");
        let mut services = Netns::new("services");
        let mut node = Netns::new("node");
        let mut internet = Netns::new("inet");
        hypervisor.forward_ipv4();
        hypervisor.add_bridge("virbr-okd");
        hypervisor.add_addr("virbr-okd", "192.168.200.1/24");
        // br_netfilter: bridged IPv4 goes through the inet forward hook.
        if let Err(e) = hypervisor.try_sh("sysctl -qw net.bridge.bridge-nf-call-iptables=1") {
            panic!(
                "br_netfilter is not available (run `modprobe br_netfilter` on the host; \
                 this test must see bridged packets in the forward hook): {e}"
            );
        }
        for (guest, port, mac, ip) in [
            (&services, "vnet0", "52:54:00:c8:00:fe", "192.168.200.254"),
            (&node, "vnet1", "f8:75:a4:ac:01:00", "192.168.200.10"),
        ] {
            veth(&hypervisor, port, guest, "eth0").b_mac(mac).up();
            hypervisor.set_master(port, "virbr-okd");
            guest.add_addr("eth0", &format!("{ip}/24"));
            guest.default_route("192.168.200.1");
        }
        veth(&hypervisor, "up0", &internet, "in0").up();
        hypervisor.add_addr("up0", "192.0.2.2/24");
        hypervisor.ip(&["route", "add", "198.51.100.0/24", "via", "192.0.2.1"]);
        internet.add_addr("in0", "192.0.2.1/24");
        for host in [ALLOWED, DENIED] {
            internet.add_addr("lo", &format!("{host}/32"));
        }
        // A stand-in for libvirt's own rules: accept all forwarding, NAT the
        // lab, and count bridged lab traffic (proves br_netfilter is active).
        hypervisor.sh("nft -f - <<'EOF'
table ip libvirt_test {
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname \"virbr-okd\" oifname \"virbr-okd\" counter accept
		counter accept
	}

	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 192.168.200.0/24 oifname \"up0\" masquerade
	}
}
EOF");
        internet.http_server(ALLOWED, 80, golden());
        internet.http_server(DENIED, 80, golden());
        services.http_server("192.168.200.254", 8080, golden());
        node.http_server("192.168.200.10", 8080, golden());
        Self {
            hypervisor,
            services,
            node,
            _internet: internet,
        }
    }

    fn table(&self) -> BootlabTable {
        BootlabTable::new(self.hypervisor.nft())
    }

    fn foreign_table(&self) -> String {
        strip_state(&self.hypervisor.sh(&format!("nft list {FOREIGN_TABLE}")))
    }

    fn bridged_packets(&self) -> u64 {
        let listing = self.hypervisor.sh(&format!("nft list {FOREIGN_TABLE}"));
        let line = listing
            .lines()
            .find(|l| l.contains("iifname \"virbr-okd\" oifname \"virbr-okd\""))
            .expect("bridge counter rule");
        let packets = line
            .split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .unwrap();
        packets.parse().unwrap()
    }

    fn denied(&self) -> u64 {
        self.table()
            .state()
            .unwrap()
            .expect("table present")
            .counter(COUNTER_LAB_EGRESS_DENIED)
            .expect("counter present")
            .packets
    }
}

#[test]
fn nat_mode_lets_services_out_and_nodes_only_to_allow_cidrs() {
    let lab = NatLab::new();
    let rs = hypervisor_ruleset(&okd_with_allow_cidr()).unwrap();
    // The topology works before the rule: the node reaches everything.
    assert!(
        lab.node.http_reachable(DENIED, 80),
        "topology broken before applying"
    );
    let foreign = lab.foreign_table();

    assert_eq!(lab.table().apply(&rs).unwrap(), ApplyOutcome::Created);
    assert_eq!(
        lab.table().listing_without_state().unwrap().unwrap(),
        render_nft(&rs),
        "the kernel's table differs from what `egress show` prints"
    );

    assert!(
        lab.services.http_reachable(ALLOWED, 80),
        "services -> allowed CIDR"
    );
    assert!(
        lab.services.http_reachable(DENIED, 80),
        "services -> any address"
    );
    assert!(lab.node.http_reachable(ALLOWED, 80), "node -> allow_cidrs");
    let before = lab.denied();
    assert!(
        lab.node.http_dropped(DENIED, 80),
        "node -> not allowed address passed"
    );
    assert!(lab.denied() > before, "the drop was not counted");

    // Traffic that stays on the bridge is untouched, although br_netfilter
    // sends it through the forward hook.
    let bridged_before = lab.bridged_packets();
    assert!(
        lab.node.http_reachable("192.168.200.254", 8080),
        "node -> services on the bridge"
    );
    assert!(
        lab.services.http_reachable("192.168.200.10", 8080),
        "services -> node on the bridge"
    );
    assert!(
        lab.bridged_packets() > bridged_before,
        "bridged packets did not reach the forward hook: br_netfilter is not active, so this test proves nothing about it"
    );

    // The spoofing guard: the node using the services address is still refused
    // (allow_hosts matches MAC and address together).
    lab.node.sh("ip addr add 192.168.200.254/32 dev eth0");
    let before = lab.denied();
    assert!(
        lab.node
            .try_sh(&format!(
                "curl -s -o /dev/null --interface 192.168.200.254 --connect-timeout 2 http://{DENIED}/"
            ))
            .is_err(),
        "node spoofing the services address got out"
    );
    assert!(lab.denied() > before);
    lab.node.sh("ip addr del 192.168.200.254/32 dev eth0");

    // Re-apply: nothing changes, counters keep counting from where they were.
    let listing = lab.table().listing_without_state().unwrap();
    let denied = lab.denied();
    assert_eq!(lab.table().apply(&rs).unwrap(), ApplyOutcome::Replaced);
    assert_eq!(lab.table().listing_without_state().unwrap(), listing);
    assert!(lab.table().matches(&rs).unwrap());
    assert_eq!(lab.denied(), denied, "re-apply reset the counter");
    assert!(lab.node.http_dropped(DENIED, 80));
    assert!(
        lab.denied() > denied,
        "the counter stopped counting after re-apply"
    );

    // The foreign table was never touched.
    assert_eq!(lab.foreign_table(), foreign);

    // Remove: the node is free again, the foreign table still untouched.
    assert!(lab.table().remove().unwrap());
    assert!(!lab.table().remove().unwrap(), "second remove is a no-op");
    assert_eq!(lab.table().listing().unwrap(), None);
    assert!(
        lab.node.http_reachable(DENIED, 80),
        "rule still in force after remove"
    );
    assert_eq!(lab.foreign_table(), foreign);
}

#[test]
fn a_ruleset_nft_rejects_leaves_the_previous_one_in_force() {
    let lab = NatLab::new();
    let good = hypervisor_ruleset(&okd_with_allow_cidr()).unwrap();
    lab.table().apply(&good).unwrap();
    assert!(lab.node.http_dropped(DENIED, 80));
    let denied = lab.denied();

    // An "open everything" ruleset that nft must reject (jump to a missing
    // chain, after the accept). Were it applied in pieces, the node would get out.
    let mut bad: Ruleset = good.clone();
    let egress = bad
        .chains
        .iter_mut()
        .find(|c| c.name == "lab_egress")
        .unwrap();
    egress.rules = vec![
        Rule::new(vec![], Action::Verdict(Verdict::Accept)),
        Rule::new(vec![], Action::Jump("no_such_chain".into())),
    ];
    let err = lab.table().apply(&bad).unwrap_err();
    assert!(
        matches!(&err, TableError::Refused { stderr, .. } if !stderr.is_empty()),
        "{err}"
    );
    assert!(err.to_string().contains("nothing was changed"), "{err}");

    assert!(
        lab.table().matches(&good).unwrap(),
        "previous rules altered"
    );
    assert_eq!(lab.denied(), denied, "counter lost");
    assert!(lab.node.http_reachable(ALLOWED, 80));
    assert!(
        lab.node.http_dropped(DENIED, 80),
        "previous policy no longer in force"
    );
    assert!(lab.denied() > denied);
}
