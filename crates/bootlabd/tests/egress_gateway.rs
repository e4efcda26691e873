//! Issue 8's DNS-driven gateway mode, end to end with the real `bootlabd`:
//! the lab reaches `allow_domains` addresses only after resolving them
//! through bootlabd, only for the record's TTL, and learned addresses
//! survive a SIGHUP re-apply. Plus a nat-mode smoke test (input filter only).
//!
//! ```text
//!  node 10.77.0.10 ── eth0 [services: bootlabd, 10.77.0.254 | uplink eth1 192.0.2.2] ── internet 192.0.2.1
//!                                                   DNS 203.0.113.53 (registry.lab.test -> 203.0.113.80, TTL 5 s;
//!                                                   mirror.registry.lab.test -> 203.0.113.81, TTL 300 s;
//!                                                   example.org -> 198.51.100.200), HTTP on 198.51.100.10
//!                                                   (allow_cidrs), 198.51.100.200 (not allowed), .80, .81
//! ```
//!
//! The namespaces are testkit's (`bltk-<pid>-<seq>-<role>`, the topology
//! is `testkit::netns::Gateway`), deleted on drop (also when an assertion
//! fails); servers and the daemon are killed first.
//! Every `ip`/`nft` command runs under `ip netns exec`; the "internet"
//! addresses (documentation ranges) exist only inside these namespaces.
//! Needs root, `ip`, `nft`, `curl`, `python3` and `kdig` (knot-dnsutils); a
//! missing one fails the test, nothing skips.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bootlab_firewall::{BootlabTable, LearnedSet, Nft};

use bootlab_testkit::PATIENCE as READY;
use bootlab_testkit::lab::wire;
use bootlab_testkit::netns::Gateway;
use bootlab_testkit::tools::{require_all, require_root};
use bootlab_testkit::{Daemon, LabBuilder, Netns, veth, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_bootlabd");

const SERVICES: &str = "10.77.0.254";
const NODE: &str = "10.77.0.10";
const LAB_MAC: &str = "52:54:00:4d:00:fe";
const UPLINK_MAC: &str = "52:54:00:4d:01:fe";
const UPSTREAM_DNS: &str = "203.0.113.53";
/// Allowed by `allow_cidrs` (its /32).
const ALLOWED: &str = "198.51.100.10";
/// Allowed by nothing (and what the upstream says `example.org` is).
const DENIED: &str = "198.51.100.200";
/// `registry.lab.test`, short TTL.
const REGISTRY: &str = "203.0.113.80";
const REGISTRY_TTL: u64 = 5;
/// `mirror.registry.lab.test` (under `allow_domains`), long TTL.
const MIRROR: &str = "203.0.113.81";
const MIRROR_TTL: u64 = 300;

/// Upstream DNS stand-in: answers A questions from a fixed table, NODATA for
/// other types of known names, NXDOMAIN otherwise; appends every question
/// it gets to a log file.
const DNS_RESPONDER: &str = r#"
import socket, struct, sys
addr, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
records = {}
for spec in sys.argv[4:]:
    name, ip, ttl = spec.split("=")
    records[name] = (ip, int(ttl))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr, port))
while True:
    data, peer = s.recvfrom(4096)
    try:
        qid, flags, qdcount = struct.unpack("!HHH", data[:6])
        if qdcount != 1 or flags & 0x8000:
            continue
        i, labels = 12, []
        while data[i] != 0:
            n = data[i]
            labels.append(data[i + 1:i + 1 + n].decode().lower())
            i += 1 + n
        qtype, qclass = struct.unpack("!HH", data[i + 1:i + 5])
        question = data[12:i + 5]
    except Exception:
        continue
    name = ".".join(labels)
    with open(log, "a") as f:
        f.write(f"{name} {qtype}\n")
    rec = records.get(name)
    answer, ancount, rcode = b"", 0, 0
    if rec is None:
        rcode = 3
    elif qtype == 1:
        ip, ttl = rec
        answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, ttl, 4) + socket.inet_aton(ip)
        ancount = 1
    header = struct.pack("!HHHHHH", qid, 0x8000 | (flags & 0x0100) | 0x0080 | rcode, 1, ancount, 0, 0)
    s.sendto(header + question + answer, peer)
"#;

/// What the test does in its namespaces beyond testkit's: bootlab's nft
/// table and counters, and kdig.
trait LabNs {
    fn nft(&self) -> Nft;
    fn table(&self) -> BootlabTable;
    /// The packet count of one of bootlab's named counters.
    fn counter(&self, name: &str) -> u64;
    /// `kdig @server name A` from here: (status, answer addresses).
    fn dig(&self, server: &str, name: &str) -> (String, Vec<String>);
    /// `kdig @server name A` from here: (status, answer (address, TTL)s).
    fn dig_ttl(&self, server: &str, name: &str) -> (String, Vec<(String, u64)>);
}

impl LabNs for Netns {
    fn nft(&self) -> Nft {
        Nft::in_netns(self.name())
    }

    fn table(&self) -> BootlabTable {
        BootlabTable::new(self.nft())
    }

    fn counter(&self, name: &str) -> u64 {
        self.table()
            .state()
            .unwrap()
            .expect("table inet bootlab present")
            .counter(name)
            .unwrap_or_else(|| panic!("counter {name} missing"))
            .packets
    }

    fn dig(&self, server: &str, name: &str) -> (String, Vec<String>) {
        let (status, answers) = self.dig_ttl(server, name);
        (status, answers.into_iter().map(|(a, _)| a).collect())
    }

    fn dig_ttl(&self, server: &str, name: &str) -> (String, Vec<(String, u64)>) {
        let out = self.sh(&format!(
            "kdig @{server} {name} A +timeout=5 +retry=2 +noall +header +answer"
        ));
        let status = out
            .lines()
            .find_map(|l| l.split("status: ").nth(1))
            .and_then(|rest| rest.split(';').next())
            .unwrap_or_else(|| panic!("no status in kdig output:\n{out}"))
            .trim()
            .to_owned();
        let addresses = out
            .lines()
            .filter(|l| !l.starts_with(';'))
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 5 && f[3] == "A").then(|| (f[4].to_owned(), f[1].parse().unwrap()))
            })
            .collect();
        (status, addresses)
    }
}

/// `nft` and `kdig`, and root (testkit checks `ip`, and `curl` and
/// `python3` where its HTTP helpers use them).
fn require_tools() {
    require_root();
    require_all(&[("nft", "nftables"), ("kdig", "knot-dnsutils")]);
}

/// `bootlabd` inside a namespace.
fn start_daemon(ns: &Netns, config: &Path) -> Daemon {
    let mut cmd = ns.command(BIN);
    cmd.arg("--config").arg(config);
    Daemon::spawn(cmd)
}

/// What both inventories share: the one-node lab on 10.77.0.0/24 named
/// `name`, bootlabd on the services address (DHCP, TFTP on high ports),
/// state under `dir`, nftables managed.
fn lab(dir: &Path, name: &str) -> LabBuilder {
    let name = name.to_owned();
    LabBuilder::netns().dirs(dir).edit(|f| {
        f.lab.name = name.clone();
        f.network.bridge = Some(format!("virbr-{name}"));
        f.libvirt = Default::default();
        let l = &mut f.services.listen;
        l.dhcp = Some(format!("{SERVICES}:6767"));
        l.dns = Some(format!("{SERVICES}:53"));
        l.tftp = Some(format!("{SERVICES}:6969"));
        l.http = Some(format!("{SERVICES}:8080"));
        f.services.firewall = true;
        f.nodes[0].name = "node-0".into();
    })
}

/// The isolated-mode inventory; `changed` adds a node and a CIDR (a valid,
/// different policy for the SIGHUP test).
fn isolated_lab(dir: &Path, changed: bool) -> LabBuilder {
    lab(dir, "egw").edit(|f| {
        f.network.mode = "isolated".into();
        f.network.gateway = SERVICES.into();
        f.network.host_ip = None;
        f.network.upstream_dns = vec![format!("{UPSTREAM_DNS}:53")];
        f.services.uplink = Some(wire::UplinkSection {
            network: "default".into(),
            mac: UPLINK_MAC.into(),
        });
        f.egress.allow_hosts = Some(vec!["services".into()]);
        f.egress.allow_cidrs = vec![format!("{ALLOWED}/32")];
        f.egress.allow_domains = vec!["registry.lab.test".into()];
        if changed {
            f.egress.allow_cidrs.push("192.0.2.128/25".into());
            let mut n = f.nodes[0].clone();
            n.name = "node-1".into();
            n.mac = Some("52:54:00:4d:00:11".into());
            n.ip = "10.77.0.11".into();
            f.nodes.push(n);
        }
    })
}

/// internet + services (bootlabd) + node, wired as in the module docs.
/// Field order is drop order: the daemon goes before the namespaces.
struct GatewayLab {
    daemon: Daemon,
    services: Netns,
    node: Netns,
    /// Holds the upstream DNS and HTTP servers.
    _internet: Netns,
    config: PathBuf,
    dns_log: PathBuf,
    dir: tempfile::TempDir,
}

impl GatewayLab {
    fn new() -> Self {
        require_tools();
        let dir = tempfile::tempdir().unwrap();
        let Gateway {
            services,
            node,
            mut internet,
        } = Gateway::new(
            LAB_MAC,
            UPLINK_MAC,
            &[UPSTREAM_DNS, ALLOWED, DENIED, REGISTRY, MIRROR],
        );

        // Upstream DNS.
        let script = dir.path().join("dns.py");
        std::fs::write(&script, DNS_RESPONDER).unwrap();
        let dns_log = dir.path().join("upstream-queries.log");
        let mut c = internet.command("python3");
        c.arg(&script)
            .args([UPSTREAM_DNS, "53"])
            .arg(&dns_log)
            .arg(format!("registry.lab.test={REGISTRY}={REGISTRY_TTL}"))
            .arg(format!("mirror.registry.lab.test={MIRROR}={MIRROR_TTL}"))
            .arg(format!("example.org={DENIED}=300"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        internet.spawn(c);
        wait_until("upstream DNS", || {
            internet
                .try_sh(&format!(
                    "kdig @{UPSTREAM_DNS} ready.test +timeout=1 +retry=0 | grep -q NXDOMAIN"
                ))
                .is_ok()
        });

        // HTTP servers.
        let www = dir.path().join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), "internet\n").unwrap();
        for addr in [ALLOWED, DENIED, REGISTRY, MIRROR] {
            internet.http_server(addr, 80, &www);
        }
        // Topology check before any firewall: services reaches everything.
        assert!(
            services.http_reachable(DENIED, 80),
            "topology broken: services cannot reach the internet"
        );

        // A foreign table that must survive bootlabd's apply and remove.
        services.sh("nft -f - <<'EOF'\n\
             table inet othertool {\n\
               set keep { type ipv4_addr; elements = { 192.0.2.99 }; }\n\
               chain keepout { ip daddr @keep counter drop; }\n\
             }\n\
             EOF");

        let config = isolated_lab(dir.path(), false).write(&dir.path().join("lab.toml"));
        let daemon = start_daemon(&services, &config);
        Self {
            daemon,
            services,
            node,
            _internet: internet,
            config,
            dns_log,
            dir,
        }
    }

    fn learned(&self) -> Vec<bootlab_firewall::LearnedElement> {
        LearnedSet::new(self.services.nft()).elements().unwrap()
    }

    fn learned_element(&self, addr: &str) -> Option<bootlab_firewall::LearnedElement> {
        self.learned()
            .into_iter()
            .find(|e| e.addr.to_string() == addr)
    }

    fn egress_denied(&self) -> u64 {
        self.services.counter("lab_egress_denied")
    }

    fn upstream_questions(&self) -> String {
        std::fs::read_to_string(&self.dns_log).unwrap_or_default()
    }

    fn metrics(&self) -> String {
        self.services.sh(&format!(
            "curl -sS --max-time 30 http://{SERVICES}:8080/metrics"
        ))
    }
}

/// The value of the first metrics line starting with `prefix`.
fn metric(text: &str, prefix: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no metric {prefix} in\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn gateway_mode_learns_from_dns_forgets_after_ttl_and_keeps_across_sighup() {
    let mut lab = GatewayLab::new();
    let foreign = lab.services.sh("nft list table inet othertool");
    let listing = lab
        .services
        .table()
        .listing()
        .unwrap()
        .expect("bootlabd applied table inet bootlab at start");
    assert!(listing.contains("set learned_destinations"), "{listing}");
    assert!(listing.contains("masquerade"), "{listing}");

    // allow_cidrs: reachable without any DNS.
    assert!(lab.node.http_reachable(ALLOWED, 80), "node -> allow_cidrs");

    // Before resolving: the registry's address is dropped (and counted).
    let denied = lab.egress_denied();
    assert!(
        lab.node.http_dropped(REGISTRY, 80),
        "registry reachable before the node resolved it"
    );
    assert!(lab.egress_denied() > denied, "drop not counted");

    // A name outside allow_domains: REFUSED, never asked upstream, and the
    // address the upstream would have given is unreachable.
    let (status, addrs) = lab.node.dig(SERVICES, "example.org");
    assert_eq!(status, "REFUSED", "{addrs:?}");
    assert!(addrs.is_empty(), "{addrs:?}");
    assert!(
        !lab.upstream_questions().contains("example.org"),
        "example.org was forwarded:\n{}",
        lab.upstream_questions()
    );
    let denied = lab.egress_denied();
    assert!(
        lab.node.http_dropped(DENIED, 80),
        "not allowed server reachable"
    );
    assert!(lab.egress_denied() > denied, "drop not counted");

    // Resolve through bootlabd: the answer carries the address and the
    // address becomes reachable for the record's TTL.
    // A lost first SYN (the set update racing the answer) is retransmitted
    // within http_reachable's connect timeout.
    let (status, answers) = lab.node.dig_ttl(SERVICES, "registry.lab.test");
    assert_eq!(status, "NOERROR");
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0].0, REGISTRY);
    assert!(
        answers[0].1 <= REGISTRY_TTL,
        "the lab may cache the address longer than the firewall allows it: {answers:?}"
    );
    assert!(
        lab.node.http_reachable(REGISTRY, 80),
        "registry not reachable after resolving it through bootlabd"
    );
    // The set element (if the kernel has not expired it yet) carries the TTL.
    if let Some(el) = lab.learned_element(REGISTRY) {
        assert_eq!(
            el.timeout,
            Some(Duration::from_secs(REGISTRY_TTL)),
            "{el:?}"
        );
    }
    // Wait (bounded) for the kernel to expire it, then new connections are
    // refused again.
    let deadline = Instant::now() + Duration::from_secs(REGISTRY_TTL) + READY;
    while lab.learned_element(REGISTRY).is_some() {
        assert!(
            Instant::now() < deadline,
            "learned address not expired long after its TTL: {:?}",
            lab.learned()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let denied = lab.egress_denied();
    assert!(
        lab.node.http_dropped(REGISTRY, 80),
        "registry reachable after its TTL expired"
    );
    assert!(lab.egress_denied() > denied, "drop not counted");

    // Learned addresses survive a SIGHUP with a changed (valid) inventory.
    let (status, addrs) = lab.node.dig(SERVICES, "mirror.registry.lab.test");
    assert_eq!(status, "NOERROR");
    assert_eq!(addrs, [MIRROR]);
    assert!(
        lab.node.http_reachable(MIRROR, 80),
        "mirror after resolving"
    );
    let before = lab.learned_element(MIRROR).expect("mirror learned");
    assert_eq!(before.timeout, Some(Duration::from_secs(MIRROR_TTL)));
    let denied_before_hup = lab.egress_denied();
    isolated_lab(lab.dir.path(), true).write(&lab.config);
    lab.daemon.signal("HUP");
    let applied = lab.daemon.wait_for("firewall applied");
    assert!(applied.contains("Replaced"), "{applied}");
    let reloaded = lab.daemon.wait_for("reloaded inventory");
    assert!(reloaded.contains("nodes=2"), "{reloaded}");
    let listing = lab.services.table().listing().unwrap().unwrap();
    assert!(
        listing.contains("192.0.2.128/25"),
        "new policy not applied:\n{listing}"
    );
    let after = lab
        .learned_element(MIRROR)
        .expect("learned address lost on SIGHUP");
    assert_eq!(after.timeout, before.timeout);
    assert!(
        lab.egress_denied() >= denied_before_hup,
        "counter reset by SIGHUP"
    );
    assert!(
        lab.node.http_reachable(MIRROR, 80),
        "learned address unreachable after SIGHUP"
    );
    assert!(lab.node.http_reachable(ALLOWED, 80));

    // /metrics: the firewall's and the DNS forwarder's.
    let m = lab.metrics();
    assert!(
        metric(
            &m,
            "bootlab_firewall_denied_packets_total{counter=\"lab_egress_denied\"}"
        ) >= 3.0,
        "{m}"
    );
    assert!(
        metric(&m, "bootlab_firewall_learned_addresses") >= 1.0,
        "{m}"
    );
    assert!(
        metric(&m, "bootlab_firewall_denied_endpoints") >= 2.0,
        "{m}"
    );
    assert!(
        metric(&m, "bootlab_dns_learned_addresses_total") >= 2.0,
        "{m}"
    );
    assert!(
        metric(&m, "bootlab_dns_upstream_queries_total") >= 2.0,
        "{m}"
    );

    // Stop: the rules stay (fail closed). --firewall-remove drops bootlab's
    // table only; the foreign table is as it was.
    lab.daemon.stop();
    assert!(
        lab.services.table().listing().unwrap().is_some(),
        "table removed on stop"
    );
    let out = lab
        .services
        .command(BIN)
        .arg("--firewall-remove")
        .arg("--config")
        .arg(&lab.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("removed table inet bootlab"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(lab.services.table().listing().unwrap().is_none());
    assert_eq!(lab.services.sh("nft list table inet othertool"), foreign);
    let again = lab
        .services
        .command(BIN)
        .arg("--firewall-remove")
        .arg("--config")
        .arg(&lab.config)
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("was not present"));
}

/// The nat-mode inventory: bootlabd with `services.firewall = true` and no
/// uplink applies only the input filter.
fn nat_lab(dir: &Path) -> LabBuilder {
    lab(dir, "egwn")
}

#[test]
fn nat_mode_applies_only_the_input_filter() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    std::fs::write(assets.join("hello.txt"), "hello from tftp\n").unwrap();
    let config = nat_lab(dir.path()).write(&dir.path().join("lab.toml"));

    let mut services = Netns::new("natsvc");
    let node = Netns::new("natnode");
    veth(&node, "eth0", &services, "eth0").b_mac(LAB_MAC).up();
    node.add_addr("eth0", &format!("{NODE}/24"));
    services.add_addr("eth0", &format!("{SERVICES}/24"));
    // Something bootlabd does not serve, on the services address.
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    services.http_server(SERVICES, 9999, &www);

    let daemon = start_daemon(&services, &config);
    let listing = services
        .table()
        .listing()
        .unwrap()
        .expect("table inet bootlab applied");
    assert!(listing.contains("chain input"), "{listing}");
    for absent in ["chain forward", "masquerade", "learned_destinations"] {
        assert!(
            !listing.contains(absent),
            "{absent} in nat mode:\n{listing}"
        );
    }

    // DNS, HTTP and TFTP from the lab pass.
    let (status, addrs) = node.dig(SERVICES, "node-0.egwn.lab.test");
    assert_eq!(status, "NOERROR");
    assert_eq!(addrs, [NODE]);
    assert!(node.http_reachable(SERVICES, 8080), "HTTP from the lab");
    let got = node.sh(&format!(
        "curl -sS --max-time 30 tftp://{SERVICES}:6969/hello.txt"
    ));
    assert_eq!(got, "hello from tftp\n");

    // Anything else is dropped and counted, also on /metrics.
    let before = services.counter("services_input_denied");
    assert!(node.http_dropped(SERVICES, 9999), "unlisted port reachable");
    let after = services.counter("services_input_denied");
    assert!(after > before, "drop not counted");
    let m = node.sh(&format!(
        "curl -sS --max-time 30 http://{SERVICES}:8080/metrics"
    ));
    assert!(
        metric(
            &m,
            "bootlab_firewall_denied_packets_total{counter=\"services_input_denied\"}"
        ) >= 1.0,
        "{m}"
    );
    drop(daemon);
}
