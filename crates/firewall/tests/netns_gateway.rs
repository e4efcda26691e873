//! Isolated mode: the services VM is the lab's gateway (config/isolated-lab.toml),
//! with real packets in network namespaces.
//!
//! ```text
//!  node 10.77.0.10 ── eth0 [services 10.77.0.254 | uplink eth1 192.0.2.2] ── internet 192.0.2.1
//!                                                     HTTP on 198.51.100.10 (allow_cidrs 198.51.100.0/25),
//!                                                     198.51.100.200 (not allowed), 203.0.113.80 and
//!                                                     203.0.113.81 ("registry.lab.test" answers)
//! ```
//! The DNS forwarder is not part of this crate: the test plays its part by
//! calling [`LearnedSet::add`] exactly as bootlabd does with each address
//! the forwarder learns. Needs root, `ip`, `nft`, `curl`, `python3`.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use bootlab_firewall::{
    ApplyOutcome, BootlabTable, COUNTER_LAB_EGRESS_DENIED, COUNTER_SERVICES_INPUT_DENIED,
    LEARNED_SET, Learned, LearnedSet, ServicesInterfaces, register_firewall_metrics, render_nft,
    services_ruleset,
};
use bootlab_inventory::Inventory;
use bootlab_state::Metrics;
use bootlab_testkit::LabBuilder;
use bootlab_testkit::netns::Gateway;
use common::{Netns, NftIn, golden, require_tools, veth};

const ALLOWED: &str = "198.51.100.10";
const DENIED: &str = "198.51.100.200";
const REGISTRY: &str = "203.0.113.80";
const SHORT_LIVED: &str = "203.0.113.81";
/// The services VM's NICs in config/isolated-lab.toml.
const LAB_MAC: &str = "52:54:00:4d:00:fe";
const UPLINK_MAC: &str = "52:54:00:4d:01:fe";

fn isolated() -> Inventory {
    LabBuilder::config("isolated-lab").build()
}

struct GatewayLab {
    services: Netns,
    node: Netns,
    _internet: Netns,
}

impl GatewayLab {
    fn new() -> Self {
        require_tools();
        let hosts = [ALLOWED, DENIED, REGISTRY, SHORT_LIVED];
        let Gateway {
            mut services,
            node,
            mut internet,
        } = Gateway::new(LAB_MAC, UPLINK_MAC, &hosts);
        for addr in hosts {
            internet.http_server(addr, 80, golden());
        }
        services.http_server(Gateway::SERVICES, 8080, golden());
        services.http_server(Gateway::SERVICES, 9999, golden());
        Self {
            services,
            node,
            _internet: internet,
        }
    }

    fn table(&self) -> BootlabTable {
        BootlabTable::new(self.services.nft())
    }

    fn counter(&self, name: &str) -> u64 {
        self.table()
            .state()
            .unwrap()
            .expect("table present")
            .counter(name)
            .unwrap_or_else(|| panic!("counter {name} missing"))
            .packets
    }
}

fn ifaces() -> ServicesInterfaces {
    ServicesInterfaces {
        lab: "eth0".into(),
        uplink: Some("eth1".into()),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn gateway_mode_allows_cidrs_and_learned_addresses_only() {
    let lab = GatewayLab::new();
    let rs = services_ruleset(&isolated(), &ifaces()).unwrap().unwrap();
    assert!(
        lab.services.http_reachable(DENIED, 80),
        "topology broken before applying"
    );

    assert_eq!(lab.table().apply(&rs).unwrap(), ApplyOutcome::Created);
    assert_eq!(
        lab.table().listing_without_state().unwrap().unwrap(),
        render_nft(&rs)
    );

    // The services VM itself goes out freely (output is not filtered).
    assert!(lab.services.http_reachable(DENIED, 80));

    // Forward policy: allow_cidrs yes, anything else no, registry not yet.
    // The internet has no route to 10.77.0.0/24: any answer proves masquerade.
    assert!(lab.node.http_reachable(ALLOWED, 80), "node -> allow_cidrs");
    let denied = lab.counter(COUNTER_LAB_EGRESS_DENIED);
    assert!(
        lab.node.http_dropped(DENIED, 80),
        "node -> not allowed address"
    );
    assert!(
        lab.node.http_dropped(REGISTRY, 80),
        "registry reachable before DNS answered"
    );
    assert!(
        lab.counter(COUNTER_LAB_EGRESS_DENIED) >= denied + 2,
        "drops not counted"
    );

    // Input filter: the HTTP service yes, another port no (and counted).
    assert!(
        lab.node.http_reachable("10.77.0.254", 8080),
        "node -> bootlabd HTTP"
    );
    let refused = lab.counter(COUNTER_SERVICES_INPUT_DENIED);
    assert!(
        lab.node.http_dropped("10.77.0.254", 9999),
        "node -> unlisted port"
    );
    assert!(lab.counter(COUNTER_SERVICES_INPUT_DENIED) > refused);

    // What bootlabd does for each address the forwarder learns.
    let learned = LearnedSet::new(lab.services.nft());
    assert_eq!(
        learned.add(ip(REGISTRY), Duration::from_secs(600)).unwrap(),
        Learned::Added(Duration::from_secs(600))
    );
    assert_eq!(
        learned
            .add(ip("2001:db8::1"), Duration::from_secs(600))
            .unwrap(),
        Learned::NotIpv4
    );
    assert!(
        lab.node.http_reachable(REGISTRY, 80),
        "learned address not reachable"
    );
    let denied = lab.counter(COUNTER_LAB_EGRESS_DENIED);
    assert!(
        lab.node.http_dropped(SHORT_LIVED, 80),
        "an address nobody resolved passed"
    );
    assert!(lab.counter(COUNTER_LAB_EGRESS_DENIED) > denied);

    // A shorter TTL for the same address never shortens its life.
    let Learned::Added(granted) = learned.add(ip(REGISTRY), Duration::from_secs(5)).unwrap() else {
        panic!("IPv4 address not added");
    };
    assert!(
        granted > Duration::from_secs(60),
        "shortened to {granted:?}"
    );
    let el = learned.elements().unwrap();
    let reg = el.iter().find(|e| e.addr.to_string() == REGISTRY).unwrap();
    assert!(reg.timeout > Some(Duration::from_secs(60)), "{reg:?}");

    // SIGHUP: re-apply keeps learned addresses and counters; nothing changes.
    let listing = lab.table().listing_without_state().unwrap();
    let before = lab.table().state().unwrap().unwrap();
    assert_eq!(lab.table().apply(&rs).unwrap(), ApplyOutcome::Replaced);
    let after = lab.table().state().unwrap().unwrap();
    assert_eq!(lab.table().listing_without_state().unwrap(), listing);
    assert_eq!(
        after.counters, before.counters,
        "counters reset by re-apply"
    );
    assert_eq!(
        after
            .set(LEARNED_SET)
            .unwrap()
            .elements
            .iter()
            .map(|e| e.addr)
            .collect::<Vec<_>>(),
        before
            .set(LEARNED_SET)
            .unwrap()
            .elements
            .iter()
            .map(|e| e.addr)
            .collect::<Vec<_>>(),
        "learned addresses lost on re-apply"
    );
    assert!(
        lab.node.http_reachable(REGISTRY, 80),
        "learned address lost on re-apply"
    );

    // /metrics shows the denied flows.
    let metrics = Metrics::new();
    let reports = bootlab_state::Reports::default();
    register_firewall_metrics(&metrics, &reports, lab.table(), &rs);
    let text = metrics.render();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("bootlab_firewall_denied_packets_total{counter=\"lab_egress_denied\"}")
        })
        .unwrap_or_else(|| panic!("no lab_egress_denied gauge in\n{text}"));
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(value >= 2.0, "{line}");
    assert!(
        text.contains("bootlab_firewall_learned_addresses 1"),
        "{text}"
    );

    // What the node tried and was refused, for `bootlab status`.
    let refused: Vec<String> = lab
        .table()
        .denied_endpoints()
        .unwrap()
        .iter()
        .map(|e| format!("{} {} {}", e.addr, e.protocol, e.port))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        refused,
        [
            format!("{DENIED} tcp 80"),
            format!("{REGISTRY} tcp 80"),
            format!("{SHORT_LIVED} tcp 80"),
        ]
    );
    assert!(
        text.contains("bootlab_firewall_denied_endpoints 3"),
        "{text}"
    );
    // The same, as the `egress` report the API serves.
    let report = reports.get("egress").expect("egress report registered");
    let mut api: Vec<String> = report["denied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["addr"].as_str().unwrap(),
                e["protocol"].as_str().unwrap(),
                e["port"]
            )
        })
        .collect();
    api.sort();
    assert_eq!(api, refused, "{report}");
    assert_eq!(report["learned"].as_array().unwrap().len(), 1, "{report}");
}

#[test]
fn a_learned_address_stops_passing_when_its_ttl_runs_out() {
    let lab = GatewayLab::new();
    let rs = services_ruleset(&isolated(), &ifaces()).unwrap().unwrap();
    lab.table().apply(&rs).unwrap();
    let denied = lab.counter(COUNTER_LAB_EGRESS_DENIED);
    assert!(
        lab.node.http_dropped(SHORT_LIVED, 80),
        "reachable before DNS answered"
    );
    assert!(lab.counter(COUNTER_LAB_EGRESS_DENIED) > denied);

    let learned = LearnedSet::new(lab.services.nft());
    learned
        .add(ip(SHORT_LIVED), Duration::from_secs(8))
        .unwrap();
    assert!(
        lab.node.http_reachable(SHORT_LIVED, 80),
        "not reachable after DNS answered"
    );

    // Wait for the kernel to expire the element (no deadline asserted: the
    // loop ends when the element is gone), then the address is refused again.
    while learned
        .elements()
        .unwrap()
        .iter()
        .any(|e| e.addr.to_string() == SHORT_LIVED)
    {
        std::thread::sleep(Duration::from_millis(250));
    }
    let denied = lab.counter(COUNTER_LAB_EGRESS_DENIED);
    assert!(
        lab.node.http_dropped(SHORT_LIVED, 80),
        "reachable after the TTL expired"
    );
    assert!(lab.counter(COUNTER_LAB_EGRESS_DENIED) > denied);
}

#[test]
fn learning_without_the_table_is_an_error_that_says_so() {
    require_tools();
    let ns = Netns::new("nolearn");
    let learned = LearnedSet::new(ns.nft());
    let err = learned
        .add(ip(REGISTRY), Duration::from_secs(60))
        .unwrap_err();
    assert!(
        err.to_string().contains("No such file or directory"),
        "{err}"
    );
}

/// DHCP clients send from 0.0.0.0: the input filter must match the lab
/// interface, not a source address; the same packet on the uplink is refused.
#[test]
fn dhcp_from_the_unconfigured_address_passes_on_the_lab_interface_only() {
    require_tools();
    let services = Netns::new("gwdhcp");
    let client = Netns::new("dhcpcl");
    let outside = Netns::new("dhcpout");
    veth(&client, "eth0", &services, "eth0");
    veth(&services, "eth1", &outside, "in0");
    services.add_addr("eth0", "10.77.0.254/24");
    services.add_addr("eth1", "192.0.2.2/24");
    let rs = services_ruleset(&isolated(), &ifaces()).unwrap().unwrap();
    let table = BootlabTable::new(services.nft());
    table.apply(&rs).unwrap();
    let refused = || {
        table
            .state()
            .unwrap()
            .unwrap()
            .counter(COUNTER_SERVICES_INPUT_DENIED)
            .unwrap()
            .packets
    };

    // A stand-in DHCP server: prints the source of the first datagram on :67.
    let mut server = services
        .command("python3")
        .arg("-c")
        .arg(
            "import socket\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             s.bind(('0.0.0.0', 67))\n\
             print(s.recvfrom(2048)[1][0], flush=True)\n",
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start python3");
    let discover = |ns: &Netns, ifname: &str| {
        // udhcpc gives up after one discover; we only care that it was sent.
        let _ = ns.try_sh(&format!(
            "busybox udhcpc -i {ifname} -n -q -t 1 -T 1 -s /bin/true"
        ));
    };

    // From outside (uplink): dropped and counted, the server hears nothing.
    let before = refused();
    discover(&outside, "in0");
    assert!(refused() > before, "DHCP on the uplink was not refused");
    assert!(
        server.try_wait().unwrap().is_none(),
        "DHCP from the uplink reached the server"
    );

    // From the lab, unconfigured: passes. (Repeat until the server heard one:
    // the listener may not be bound yet when the first discover goes out.)
    while server.try_wait().unwrap().is_none() {
        discover(&client, "eth0");
    }
    let out = server.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0.0.0.0");
}
