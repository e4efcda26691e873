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
//! Every namespace is named `blegw-<pid>-<seq>-<role>` and deleted on drop
//! (also when an assertion fails); servers and the daemon are killed first.
//! Every `ip`/`nft` command runs under `ip netns exec`; the "internet"
//! addresses (documentation ranges) exist only inside these namespaces.
//! Needs root, `ip`, `nft`, `curl`, `python3` and `kdig` (knot-dnsutils); a
//! missing one fails the test, nothing skips.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bootlab_firewall::{BootlabTable, LearnedSet, Nft};

use bootlab_testkit::Daemon;
use bootlab_testkit::daemon::PATIENCE as READY;

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

static SEQ: AtomicU32 = AtomicU32::new(0);

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

/// A network namespace, deleted on drop after its background processes.
struct Netns {
    name: String,
    children: Vec<Child>,
}

impl Netns {
    fn new(role: &str) -> Self {
        let name = format!(
            "blegw-{}-{}-{role}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("run `ip netns add` (iproute2 is required)");
        assert!(
            out.status.success(),
            "cannot create network namespace {name} (root needed): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ns = Self {
            name,
            children: Vec::new(),
        };
        ns.sh("ip link set lo up");
        ns
    }

    /// `program` run inside the namespace.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// `sh -c script` inside the namespace; panics on failure.
    fn sh(&self, script: &str) -> String {
        self.try_sh(script)
            .unwrap_or_else(|e| panic!("in {}: `{script}` failed: {e}", self.name))
    }

    fn try_sh(&self, script: &str) -> Result<String, String> {
        let out = self
            .command("sh")
            .args(["-c", script])
            .output()
            .expect("run ip netns exec");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "exit {:?}: {}{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Starts a background process that lives until the namespace is dropped.
    fn spawn(&mut self, mut cmd: Command) {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        self.children.push(child);
    }

    fn nft(&self) -> Nft {
        Nft::in_netns(&self.name)
    }

    fn table(&self) -> BootlabTable {
        BootlabTable::new(self.nft())
    }

    /// The packet count of one of bootlab's named counters.
    fn counter(&self, name: &str) -> u64 {
        self.table()
            .state()
            .unwrap()
            .expect("table inet bootlab present")
            .counter(name)
            .unwrap_or_else(|| panic!("counter {name} missing"))
            .packets
    }

    /// `python3 -m http.server` on `addr:80` serving `dir`; waits until it answers.
    fn http_server(&mut self, addr: &str, port: u16, dir: &Path) {
        let mut c = self.command("python3");
        c.args(["-m", "http.server", "--bind", addr, &port.to_string()])
            .arg("--directory")
            .arg(dir);
        self.spawn(c);
        let url = format!("http://{addr}:{port}/");
        wait_until(&format!("HTTP server {url} in {}", self.name), || {
            self.try_sh(&format!(
                "curl -s -o /dev/null --connect-timeout 1 --max-time 5 {url}"
            ))
            .is_ok()
        });
    }

    /// An HTTP GET from here gets an answer (generous limits; a lost first
    /// SYN is retransmitted within the connect timeout).
    fn http_reachable(&self, addr: &str, port: u16) -> bool {
        self.try_sh(&format!(
            "curl -s -o /dev/null --connect-timeout 15 --max-time 30 http://{addr}:{port}/"
        ))
        .is_ok()
    }

    /// The connection attempt goes unanswered (curl exit 28): the SYN was
    /// dropped. Paired with a drop counter that must have grown, so a slow
    /// answer cannot pass as a drop.
    fn http_dropped(&self, addr: &str, port: u16) -> bool {
        let status = self
            .command("curl")
            .args(["-s", "-o", "/dev/null", "--connect-timeout", "2"])
            .arg(format!("http://{addr}:{port}/"))
            .status()
            .expect("run curl");
        status.code() == Some(28)
    }

    /// `kdig @server name A` from here: (status, answer addresses).
    fn dig(&self, server: &str, name: &str) -> (String, Vec<String>) {
        let (status, answers) = self.dig_ttl(server, name);
        (status, answers.into_iter().map(|(a, _)| a).collect())
    }

    /// `kdig @server name A` from here: (status, answer (address, TTL)s).
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

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Polls `ready` until it holds; panics after [`READY`].
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + READY;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what}: not ready after {READY:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A veth pair: `a_if` in `a`, `b_if` (with `b_mac`) in `b`, both up.
fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str, b_mac: &str) {
    a.sh(&format!(
        "ip link add {a_if} type veth peer name {b_if} netns {} && ip link set {a_if} up",
        b.name
    ));
    b.sh(&format!(
        "ip link set {b_if} address {b_mac} && ip link set {b_if} up"
    ));
}

fn require_tools() {
    for (tool, arg) in [
        ("ip", "-V"),
        ("nft", "--version"),
        ("curl", "--version"),
        ("python3", "--version"),
        ("kdig", "--version"),
    ] {
        let ok = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "`{tool}` is required (apt-get install -y $(grep -v '^#' tests/apt-packages.txt))"
        );
    }
}

/// `bootlabd` inside a namespace.
fn start_daemon(ns: &Netns, config: &Path) -> Daemon {
    let mut cmd = ns.command(BIN);
    cmd.arg("--config").arg(config);
    Daemon::spawn(cmd)
}

/// The isolated-mode inventory; `changed` adds a node and a CIDR (a valid,
/// different policy for the SIGHUP test).
fn isolated_lab(dir: &Path, changed: bool) -> String {
    let extra_cidr = if changed { ", \"192.0.2.128/25\"" } else { "" };
    let extra_node = if changed {
        "\n[[nodes]]\nname = \"node-1\"\nrole = \"worker\"\nmac = \"52:54:00:4d:00:11\"\nip = \"10.77.0.11\"\n"
    } else {
        ""
    };
    format!(
        r#"[lab]
name   = "egw"
domain = "lab.test"

[network]
cidr    = "10.77.0.0/24"
mode    = "isolated"
gateway = "{SERVICES}"
bridge  = "virbr-egw"
upstream_dns = ["{UPSTREAM_DNS}:53"]
lease   = "1h"

[services]
name   = "services"
ip     = "{SERVICES}"
mac    = "{LAB_MAC}"
uplink = {{ network = "default", mac = "{UPLINK_MAC}" }}
listen = {{ dhcp = "{SERVICES}:6767", dns = "{SERVICES}:53", tftp = "{SERVICES}:6969", http = "{SERVICES}:8080" }}
data_dir   = "{data}"
assets_dir = "{assets}"
firewall = true

[profiles.tiny]
loader = "ipxe"
kernel = "vmlinuz"
initrd = ["initrd.img"]
args   = "console=ttyS0"

[roles.worker]
profile = "tiny"

[[nodes]]
name = "node-0"
role = "worker"
mac  = "52:54:00:4d:00:10"
ip   = "{NODE}"
{extra_node}
[egress]
allow_hosts   = ["services"]
allow_cidrs   = ["{ALLOWED}/32"{extra_cidr}]
allow_domains = ["registry.lab.test"]
"#,
        data = dir.join("data").display(),
        assets = dir.join("assets").display(),
    )
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
        let mut internet = Netns::new("inet");
        let services = Netns::new("svc");
        let node = Netns::new("node");
        veth(&node, "eth0", &services, "eth0", LAB_MAC);
        veth(&internet, "in0", &services, "eth1", UPLINK_MAC);
        node.sh(&format!(
            "ip addr add {NODE}/24 dev eth0 && ip route add default via {SERVICES}"
        ));
        services.sh(&format!(
            "sysctl -qw net.ipv4.ip_forward=1 && ip addr add {SERVICES}/24 dev eth0 && \
             ip addr add 192.0.2.2/24 dev eth1 && ip route add default via 192.0.2.1"
        ));
        internet.sh("ip addr add 192.0.2.1/24 dev in0");
        for addr in [UPSTREAM_DNS, ALLOWED, DENIED, REGISTRY, MIRROR] {
            internet.sh(&format!("ip addr add {addr}/32 dev lo"));
        }

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
            .arg(format!("example.org={DENIED}=300"));
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

        let config = dir.path().join("lab.toml");
        std::fs::write(&config, isolated_lab(dir.path(), false)).unwrap();
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
    std::fs::write(&lab.config, isolated_lab(lab.dir.path(), true)).unwrap();
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
fn nat_lab(dir: &Path) -> String {
    format!(
        r#"[lab]
name   = "egwn"
domain = "lab.test"

[network]
cidr    = "10.77.0.0/24"
mode    = "nat"
gateway = "10.77.0.1"
host_ip = "10.77.0.1"
bridge  = "virbr-egwn"
lease   = "1h"

[services]
name   = "services"
ip     = "{SERVICES}"
mac    = "{LAB_MAC}"
listen = {{ dhcp = "{SERVICES}:6767", dns = "{SERVICES}:53", tftp = "{SERVICES}:6969", http = "{SERVICES}:8080" }}
data_dir   = "{data}"
assets_dir = "{assets}"
firewall = true

[profiles.tiny]
loader = "ipxe"
kernel = "vmlinuz"
initrd = ["initrd.img"]
args   = "console=ttyS0"

[roles.worker]
profile = "tiny"

[[nodes]]
name = "node-0"
role = "worker"
mac  = "52:54:00:4d:00:10"
ip   = "{NODE}"
"#,
        data = dir.join("data").display(),
        assets = dir.join("assets").display(),
    )
}

#[test]
fn nat_mode_applies_only_the_input_filter() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    std::fs::write(assets.join("hello.txt"), "hello from tftp\n").unwrap();
    let config = dir.path().join("lab.toml");
    std::fs::write(&config, nat_lab(dir.path())).unwrap();

    let mut services = Netns::new("natsvc");
    let node = Netns::new("natnode");
    veth(&node, "eth0", &services, "eth0", LAB_MAC);
    node.sh(&format!("ip addr add {NODE}/24 dev eth0"));
    services.sh(&format!("ip addr add {SERVICES}/24 dev eth0"));
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
