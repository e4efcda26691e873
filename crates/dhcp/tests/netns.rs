//! Real DHCP clients against the server in network namespaces: ISC
//! `dhclient` and busybox `udhcpc` get their reserved address, host name,
//! router, DNS server and domain; an unknown MAC gets nothing without a pool
//! and a pool address with one. The server runs in-process in interface
//! mode (SO_BINDTODEVICE on the server end of a veth pair).
//!
//! Needs root, iproute2, isc-dhcp-client and udhcpc; fails loudly without.

mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use bootlab_dhcp::{DhcpSocket, SocketMode};
use bootlab_state::{InventoryPublisher, Shared};
use bootlab_testkit::Service;
use common::{GATEWAY, Lab, NODE_IP, NODE_MAC, SERVICES_IP};

struct Server {
    shared: Shared,
    publisher: InventoryPublisher,
    service: Service,
}

impl Server {
    async fn start(lab: &Lab, pool: bool) -> Self {
        Self::start_with(lab, pool, true).await
    }

    /// `neighbours`: whether the server can write neighbour entries (as
    /// bootlabd with CAP_NET_ADMIN can) or must broadcast.
    async fn start_with(lab: &Lab, pool: bool, neighbours: bool) -> Self {
        let inv = bootlab_inventory::load(&lab.inventory(pool)).expect("lab inventory");
        let ifname = lab.server_if.clone();
        // Both are opened in the server's namespace, where the device is.
        let (std_socket, neigh) = lab.server.run_in(move || {
            let socket =
                bootlab_dhcp::server::interface_socket(&ifname, 67).expect("bind in netns");
            let neigh = neighbours.then(|| bootlab_netio::Neighbours::open(&ifname).unwrap());
            (socket, neigh)
        });
        let socket = DhcpSocket::from_std(std_socket, SocketMode::Interface(lab.server_if.clone()))
            .unwrap()
            .with_neighbours(neigh);
        let (shared, publisher) = Shared::new(inv).expect("boot scripts render");
        let service = {
            let shared = shared.clone();
            Service::spawn(move |stop| bootlab_dhcp::serve(socket, shared, stop))
        };
        Self {
            shared,
            publisher,
            service,
        }
    }

    async fn stop(self) {
        self.service.stop().await;
    }

    fn dropped(&self, reason: &str) -> u64 {
        let text = self.shared.metrics.render();
        let key = format!("bootlab_dhcp_dropped_total{{reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&key))
            .map_or(0, |v| v.trim().parse().unwrap())
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Runs udhcpc once; returns the script's record of the lease, or None when
/// it got none.
fn udhcpc(lab: &Lab, tries: u32) -> Option<String> {
    udhcpc_with(lab, tries, &[])
}

/// [`udhcpc`] with more arguments.
fn udhcpc_with(lab: &Lab, tries: u32, extra: &[&str]) -> Option<String> {
    let dir = lab.dir.path();
    let out = dir.join("udhcpc.env");
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = bound ]; then\n  echo \"ip=$ip subnet=$subnet router=$router dns=$dns domain=$domain hostname=$hostname serverid=$serverid lease=$lease\" > {}\nfi\nexit 0\n",
        out.display()
    );
    let status = lab
        .udhcpc(tries, &dir.join("udhcpc.sh"), &script)
        .args(["-A", "1"])
        .args(extra)
        .output()
        .unwrap();
    if status.status.success() {
        Some(std::fs::read_to_string(&out).unwrap_or_default())
    } else {
        None
    }
}

/// Runs dhclient once (up to 20 s); returns its lease file.
fn dhclient(lab: &Lab) -> String {
    common::require("dhclient", "isc-dhcp-client");
    let dir = lab.dir.path();
    let leases = dir.join("dhclient.leases");
    let pid = dir.join("dhclient.pid");
    let conf = dir.join("dhclient.conf");
    std::fs::write(
        &conf,
        "timeout 20;\nrequest subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, domain-search, host-name;\n",
    )
    .unwrap();
    let out = lab
        .client
        .command("dhclient")
        .args(["-1", "-v", "-sf", "/bin/true", "-cf"])
        .arg(&conf)
        .arg("-lf")
        .arg(&leases)
        .arg("-pf")
        .arg(&pid)
        .arg(&lab.client_if)
        .output()
        .unwrap();
    // dhclient forks into the background after binding; stop it by its pid.
    if let Ok(p) = std::fs::read_to_string(&pid) {
        let _ = std::process::Command::new("kill").arg(p.trim()).status();
    }
    assert!(
        out.status.success(),
        "dhclient got no lease: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&leases).unwrap()
}

fn field<'a>(record: &'a str, key: &str) -> &'a str {
    record
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} missing in {record}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dhclient_gets_the_reservation() {
    let lab = std::sync::Arc::new(Lab::new(NODE_MAC, None));
    let server = Server::start(&lab, false).await;
    let l = lab.clone();
    let lease = blocking(move || dhclient(&l)).await;
    assert!(
        lease.contains(&format!("fixed-address {NODE_IP};")),
        "{lease}"
    );
    assert!(lease.contains("option host-name \"node-a\";"), "{lease}");
    assert!(
        lease.contains(&format!("option routers {GATEWAY};")),
        "{lease}"
    );
    assert!(
        lease.contains(&format!("option domain-name-servers {SERVICES_IP};")),
        "{lease}"
    );
    assert!(
        lease.contains("option domain-name \"nt.lab.test\";"),
        "{lease}"
    );
    assert!(
        lease.contains("option subnet-mask 255.255.255.0;"),
        "{lease}"
    );
    assert!(lease.contains("option dhcp-lease-time 3600;"), "{lease}");
    let m = server
        .shared
        .machine(NODE_MAC.parse().unwrap())
        .expect("the machine is on the timeline");
    let kinds: Vec<&str> = m.events.iter().map(|e| e.kind.as_str()).collect();
    assert!(
        kinds.contains(&"discover") && kinds.contains(&"ack"),
        "{kinds:?}"
    );
    assert_eq!(m.ip, Some(NODE_IP));
    // OFFER and ACK went out; their latencies are in the histogram.
    let text = server.shared.metrics.render();
    let count: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("bootlab_dhcp_reply_duration_seconds_count "))
        .map_or(0, |v| v.trim().parse().unwrap());
    assert!(count >= 2, "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udhcpc_gets_the_reservation() {
    let lab = std::sync::Arc::new(Lab::new(NODE_MAC, None));
    let server = Server::start(&lab, false).await;
    let l = lab.clone();
    let record = blocking(move || udhcpc(&l, 5))
        .await
        .expect("udhcpc got no lease");
    assert_eq!(field(&record, "ip"), NODE_IP.to_string(), "{record}");
    assert_eq!(field(&record, "hostname"), "node-a", "{record}");
    assert_eq!(field(&record, "router"), GATEWAY.to_string(), "{record}");
    assert_eq!(field(&record, "dns"), SERVICES_IP.to_string(), "{record}");
    assert_eq!(field(&record, "domain"), "nt.lab.test", "{record}");
    assert_eq!(field(&record, "subnet"), "255.255.255.0", "{record}");
    assert_eq!(
        field(&record, "serverid"),
        SERVICES_IP.to_string(),
        "{record}"
    );
    // The lease is on disk before the ACK went out.
    let log = std::fs::read_to_string(
        lab.dir
            .path()
            .join("data")
            .join(bootlab_dhcp::leases::LEASE_LOG),
    )
    .unwrap();
    assert!(
        log.contains(&format!("lease {NODE_IP} {NODE_MAC} ")),
        "{log}"
    );
    server.stop().await;
}

/// After a reload the server serves the new inventory and keeps nothing of
/// the old one (at 10,000 nodes an inventory is ~18 MB): the start-up
/// generation was once held for the server's lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_lets_go_of_the_old_inventory() {
    let lab = std::sync::Arc::new(Lab::new(NODE_MAC, None));
    let server = Server::start(&lab, false).await;
    let old = std::sync::Arc::downgrade(&server.shared.inventory());
    let l = lab.clone();
    assert!(
        blocking(move || udhcpc(&l, 5)).await.is_some(),
        "served before the reload"
    );
    let inv = bootlab_inventory::load(&lab.inventory(false)).expect("lab inventory");
    server.publisher.publish(inv).expect("boot scripts render");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while old.upgrade().is_some() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        old.upgrade().is_none(),
        "the replaced inventory is still held after the reload"
    );
    let l = lab.clone();
    let record = blocking(move || udhcpc(&l, 5))
        .await
        .expect("served after the reload");
    assert_eq!(field(&record, "ip"), NODE_IP.to_string(), "{record}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_mac_gets_nothing_without_a_pool() {
    let lab = std::sync::Arc::new(Lab::new("02:00:00:4d:99:01", None));
    let server = Server::start(&lab, false).await;
    let l = lab.clone();
    let got = blocking(move || udhcpc(&l, 3)).await;
    assert_eq!(got, None, "an unknown MAC must get silence");
    assert!(
        server.dropped("unknown_mac") >= 3,
        "{}",
        server.shared.metrics.render()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_mac_gets_a_pool_address_with_a_pool() {
    let lab = std::sync::Arc::new(Lab::new("02:00:00:4d:99:02", None));
    let server = Server::start(&lab, true).await;
    let l = lab.clone();
    let record = blocking(move || udhcpc(&l, 5))
        .await
        .expect("udhcpc got no pool lease");
    let ip: Ipv4Addr = field(&record, "ip").parse().unwrap();
    assert!(
        (100..=200).contains(&ip.octets()[3]) && ip.octets()[..3] == [10, 77, 0],
        "{ip}"
    );
    assert_eq!(field(&record, "router"), GATEWAY.to_string());
    assert_eq!(field(&record, "dns"), SERVICES_IP.to_string());
    // A second run (same MAC) gets the same address back.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let l = lab.clone();
    let again = blocking(move || udhcpc(&l, 5)).await.expect("second lease");
    assert_eq!(field(&again, "ip"), ip.to_string());
    server.stop().await;
    assert!(Path::new(&lab.dir.path().join("data")).is_dir());
}

/// A relayed DISCOVER for NODE_MAC from `giaddr`.
fn relayed_discover(giaddr: Ipv4Addr, xid: u32) -> Vec<u8> {
    use dhcproto::Encodable as _;
    use dhcproto::v4::{DhcpOption, Message, MessageType};
    let mac: bootlab_inventory::MacAddr = NODE_MAC.parse().unwrap();
    let mut m = Message::new_with_id(
        xid,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        giaddr,
        &mac.octets(),
    );
    m.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Discover));
    let mut b = Vec::new();
    m.encode(&mut dhcproto::Encoder::new(&mut b)).unwrap();
    b
}

/// A UDP header (68 -> 67) whose length field says `claimed` payload bytes,
/// checksum 0 (none), followed by `payload`.
fn udp_datagram(payload: &[u8], claimed: usize) -> Vec<u8> {
    let mut d = Vec::with_capacity(8 + payload.len());
    d.extend_from_slice(&67u16.to_be_bytes());
    d.extend_from_slice(&67u16.to_be_bytes());
    d.extend_from_slice(&((8 + claimed) as u16).to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(payload);
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_length_disagreeing_with_the_datagram() {
    let relay_ip = Ipv4Addr::new(10, 77, 0, 2);
    let lab = std::sync::Arc::new(Lab::new("02:00:00:4d:99:03", Some(relay_ip)));
    let server = Server::start(&lab, false).await;
    // A relay socket (for replies) and a raw UDP socket (to lie about the
    // UDP length), both in the client namespace.
    let (relay, raw) = lab.client.run_in(move || {
        use socket2::{Domain, Protocol, Socket, Type};
        let relay = std::net::UdpSocket::bind((relay_ip, 67)).unwrap();
        relay
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP)).unwrap();
        (relay, raw)
    });
    let to: socket2::SockAddr = std::net::SocketAddr::from((SERVICES_IP, 67)).into();
    let discover = relayed_discover(relay_ip, 0xdead_0001);
    // Shorter than the datagram: the kernel trims to 100 bytes, the server
    // sees a truncated DHCP message and drops it (counted).
    raw.send_to(&udp_datagram(&discover, 100), &to).unwrap();
    // Longer than the datagram: the kernel drops it before the server.
    raw.send_to(&udp_datagram(&discover, discover.len() + 200), &to)
        .unwrap();
    // Then an honest one: still served, and only it is answered.
    let good = relayed_discover(relay_ip, 0xdead_0002);
    raw.send_to(&udp_datagram(&good, good.len()), &to).unwrap();
    let reply = blocking(move || {
        let mut buf = [0u8; 1500];
        let (n, _) = relay
            .recv_from(&mut buf)
            .expect("a reply to the honest DISCOVER");
        buf[..n].to_vec()
    })
    .await;
    assert_eq!(
        &reply[4..8],
        &0xdead_0002u32.to_be_bytes(),
        "answered the honest one"
    );
    assert_eq!(&reply[16..20], &NODE_IP.octets(), "yiaddr");
    assert_eq!(
        server.dropped("malformed"),
        1,
        "{}",
        server.shared.metrics.render()
    );
    server.stop().await;
}

/// Counts the DHCP answers reaching the client's NIC, by link-layer kind,
/// with an nftables ingress hook on the client's veth end (the client's
/// raw socket sees the frames either way; the counters tell how they came).
struct ReplyCounter<'a> {
    lab: &'a Lab,
}

impl<'a> ReplyCounter<'a> {
    fn install(lab: &'a Lab) -> Self {
        lab.client.sh(&format!(
            "nft -f - <<'NFT'\n\
             table netdev bltest {{\n\
               chain in {{\n\
                 type filter hook ingress device \"{dev}\" priority 0;\n\
                 udp dport 68 meta pkttype host counter comment \"unicast\"\n\
                 udp dport 68 meta pkttype broadcast counter comment \"broadcast\"\n\
               }}\n\
             }}\n\
             NFT",
            dev = lab.client_if
        ));
        Self { lab }
    }

    /// (unicast, broadcast) answers so far.
    fn counts(&self) -> (u64, u64) {
        let rules = self.lab.client.sh("nft list chain netdev bltest in");
        let packets = |kind: &str| -> u64 {
            let line = rules
                .lines()
                .find(|l| l.contains(&format!("comment \"{kind}\"")))
                .unwrap_or_else(|| panic!("no {kind} rule in {rules}"));
            let after = line.split("packets ").nth(1).expect("a counter");
            after.split_whitespace().next().unwrap().parse().unwrap()
        };
        (packets("unicast"), packets("broadcast"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_an_address_is_answered_by_unicast_at_its_mac() {
    let lab = std::sync::Arc::new(Lab::new(NODE_MAC, None));
    let counter = ReplyCounter::install(&lab);
    let server = Server::start(&lab, false).await;
    let l = lab.clone();
    let record = blocking(move || udhcpc(&l, 5))
        .await
        .expect("udhcpc got no lease");
    assert_eq!(field(&record, "ip"), NODE_IP.to_string(), "{record}");
    let (unicast, broadcast) = counter.counts();
    assert!(unicast >= 2, "OFFER and ACK unicast: {unicast}");
    assert_eq!(
        broadcast, 0,
        "nothing broadcast to a client that did not ask"
    );
    // The server wrote the client's neighbour entry before answering.
    let neigh = lab
        .server
        .sh(&format!("ip -4 neigh show dev {}", lab.server_if));
    assert!(
        neigh.contains(&format!("{NODE_IP} lladdr {NODE_MAC}")),
        "{neigh}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_asking_for_broadcast_and_a_server_without_neighbours_broadcast() {
    // The client sets the broadcast bit (udhcpc -B): broadcast, though the
    // server could unicast.
    let lab = std::sync::Arc::new(Lab::new(NODE_MAC, None));
    let counter = ReplyCounter::install(&lab);
    let server = Server::start(&lab, false).await;
    let l = lab.clone();
    let record = blocking(move || udhcpc_with(&l, 5, &["-B"]))
        .await
        .expect("udhcpc -B got no lease");
    assert_eq!(field(&record, "ip"), NODE_IP.to_string(), "{record}");
    let (unicast, broadcast) = counter.counts();
    assert_eq!(unicast, 0, "the broadcast bit was ignored");
    assert!(broadcast >= 2, "OFFER and ACK broadcast: {broadcast}");
    server.stop().await;

    // A server that cannot write neighbour entries (no CAP_NET_ADMIN)
    // still answers, by broadcast.
    let lab = std::sync::Arc::new(Lab::new(NODE_MAC, None));
    let counter = ReplyCounter::install(&lab);
    let server = Server::start_with(&lab, false, false).await;
    let l = lab.clone();
    let record = blocking(move || udhcpc(&l, 5))
        .await
        .expect("udhcpc got no lease from a server without neighbours");
    assert_eq!(field(&record, "ip"), NODE_IP.to_string(), "{record}");
    let (unicast, broadcast) = counter.counts();
    assert_eq!(unicast, 0);
    assert!(broadcast >= 2, "OFFER and ACK broadcast: {broadcast}");
    server.stop().await;
}
