//! Durability against the real daemon: `perfdhcp` runs DORA exchanges
//! against `bootlabd` in a network namespace, `bootlabd` is killed with
//! SIGKILL mid-run, and restarted. Every ACK seen on the wire (captured
//! with tcpdump) must be in the lease log, and after the restart each of
//! those addresses is still the same MAC's (INIT-REBOOT gets an ACK) and is
//! never offered to another MAC.
//!
//! Needs root, iproute2, kea-admin (perfdhcp), tcpdump and a built
//! `target/debug/bootlabd` (`cargo build -p bootlab-bootlabd`).

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bootlab_inventory::MacAddr;
use bootlab_testkit::Daemon;
use bootlab_testkit::daemon::bootlabd;
use bootlab_testkit::lab::wire::PoolSection;
use common::{Lab, SERVICES_IP, require, run};
use dhcproto::v4::{self, DhcpOption, MessageType};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

const PERF_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const CHECK_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);

/// bootlabd with `config` in the lab's server namespace, serving DHCP.
fn start_daemon(lab: &Lab, config: &Path) -> Daemon {
    let mut cmd = lab.server.command(bootlabd());
    cmd.arg("--config").arg(config);
    let mut daemon = Daemon::spawn(cmd);
    daemon.wait_for("listening for dhcp");
    daemon
}

/// (mac, yiaddr) of every DHCPACK in a pcap file (Ethernet, IPv4, UDP).
fn acks_in_pcap(path: &Path) -> Vec<(MacAddr, Ipv4Addr)> {
    let data = std::fs::read(path).unwrap();
    assert!(data.len() >= 24, "empty capture");
    let le = data[..4] == [0xd4, 0xc3, 0xb2, 0xa1];
    let u32_at = |b: &[u8]| {
        let a = [b[0], b[1], b[2], b[3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let mut out = Vec::new();
    let mut i = 24;
    while i + 16 <= data.len() {
        let caplen = u32_at(&data[i + 8..]) as usize;
        let start = i + 16;
        let end = start + caplen;
        if end > data.len() {
            break; // a record cut by the capture's stop
        }
        let frame = &data[start..end];
        i = end;
        if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ihl = usize::from(frame[14] & 0x0f) * 4;
        let udp = 14 + ihl;
        let dhcp = &frame[(udp + 8).min(frame.len())..];
        let Ok(msg) = v4::Message::decode(&mut Decoder::new(dhcp)) else {
            continue;
        };
        if msg.opcode() == v4::Opcode::BootReply && msg.opts().msg_type() == Some(MessageType::Ack)
        {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&msg.chaddr()[..6]);
            out.push((MacAddr(mac), msg.yiaddr()));
        }
    }
    out
}

/// A relay agent on CHECK_IP:67 in the client namespace, to ask the
/// daemon questions after the restart.
struct Relay(UdpSocket);

impl Relay {
    fn new(lab: &Lab) -> Self {
        let sock = lab
            .client
            .run_in(|| UdpSocket::bind((CHECK_IP, 67)).expect("bind relay"));
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        Self(sock)
    }

    fn ask(&self, mac: MacAddr, t: MessageType, requested: Ipv4Addr, xid: u32) -> v4::Message {
        let mut m = v4::Message::new_with_id(
            xid,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            CHECK_IP,
            &mac.octets(),
        );
        m.opts_mut().insert(DhcpOption::MessageType(t));
        m.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(requested));
        let mut b = Vec::new();
        m.encode(&mut Encoder::new(&mut b)).unwrap();
        let server = SocketAddr::from((SERVICES_IP, 67));
        let mut buf = [0u8; 1500];
        // Retransmit like a client would; a lost datagram is not a verdict.
        for _ in 0..5 {
            self.0.send_to(&b, server).unwrap();
            while let Ok((n, _)) = self.0.recv_from(&mut buf) {
                let r = v4::Message::decode(&mut Decoder::new(&buf[..n])).unwrap();
                if r.xid() == xid {
                    return r;
                }
            }
        }
        panic!("no answer to {t:?} for {mac} / {requested}");
    }
}

#[test]
fn acked_leases_survive_kill_9_and_are_never_offered_to_another() {
    require("perfdhcp", "kea-admin");
    require("tcpdump", "tcpdump");
    let lab = Lab::new("02:00:00:4d:aa:02", Some(PERF_IP));
    lab.client
        .add_addr(&lab.client_if, &format!("{CHECK_IP}/24"));
    let config = lab.write(&lab.lab(false).edit(|f| {
        f.network.cidr = "10.77.0.0/16".into();
        f.network.pool = Some(PoolSection {
            start: "10.77.1.0".into(),
            end: "10.77.255.250".into(),
        });
    }));
    let mut daemon = start_daemon(&lab, &config);

    let pcap = lab.dir.path().join("acks.pcap");
    let mut tcpdump = lab
        .client
        .command("tcpdump")
        .args(["-i", &lab.client_if, "-U", "-n", "-s", "1500", "-w"])
        .arg(&pcap)
        .args([
            "udp",
            "and",
            "dst",
            "port",
            "67",
            "and",
            "dst",
            "host",
            &PERF_IP.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // tcpdump writes the file header once it is capturing.
    for _ in 0..100 {
        if std::fs::metadata(&pcap).is_ok_and(|m| m.len() >= 24) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let perf = lab
        .client
        .command("perfdhcp")
        .args([
            "-4",
            "-l",
            &PERF_IP.to_string(),
            "-r",
            "400",
            "-R",
            "1000000",
            "-p",
            "6",
            "-s",
            "7",
        ])
        .arg(SERVICES_IP.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let it run, then SIGKILL the daemon mid-run.
    std::thread::sleep(Duration::from_secs(3));
    daemon.kill();
    let perf_out = perf.wait_with_output().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    run(Command::new("kill").arg(tcpdump.id().to_string()));
    let _ = tcpdump.wait();

    let acks = acks_in_pcap(&pcap);
    assert!(
        acks.len() >= 100,
        "too few ACKs captured ({}); perfdhcp said:\n{}",
        acks.len(),
        String::from_utf8_lossy(&perf_out.stdout)
    );
    // Last ACK per MAC wins (perfdhcp may reuse a MAC).
    let mut acked: BTreeMap<MacAddr, Ipv4Addr> = BTreeMap::new();
    for (mac, ip) in &acks {
        acked.insert(*mac, *ip);
    }

    // 1. Every ACKed lease is in the log the daemon left behind.
    let (store, report) = bootlab_dhcp::LeaseStore::open(&lab.dir.path().join("data")).unwrap();
    for (mac, ip) in &acked {
        let lease = store.table().by_ip(*ip);
        assert_eq!(
            lease.map(|l| l.mac),
            Some(*mac),
            "ACKed {ip} to {mac} is not in the log"
        );
    }
    drop(store);
    eprintln!(
        "{} ACKs captured, {} MACs, log: {report:?}",
        acks.len(),
        acked.len()
    );

    // 2. After a restart the daemon still knows: same MAC gets an ACK for
    //    its address, another MAC is never offered it.
    let daemon = start_daemon(&lab, &config);
    let relay = Relay::new(&lab);
    for (n, (mac, ip)) in acked.iter().enumerate() {
        let n = n as u32;
        let r = relay.ask(*mac, MessageType::Request, *ip, 0x1000_0000 + n);
        assert_eq!(
            r.opts().msg_type(),
            Some(MessageType::Ack),
            "{mac} lost {ip}"
        );
        assert_eq!(r.yiaddr(), *ip);
        let other = MacAddr([0x02, 0xee, (n >> 16) as u8, (n >> 8) as u8, n as u8, 0x01]);
        let r = relay.ask(other, MessageType::Discover, *ip, 0x2000_0000 + n);
        assert_eq!(r.opts().msg_type(), Some(MessageType::Offer));
        assert_ne!(r.yiaddr(), *ip, "{ip} (ACKed to {mac}) offered to {other}");
    }
    drop(daemon);
}

#[test]
fn the_daemon_finds_its_interface_by_services_mac() {
    require("udhcpc", "udhcpc");
    let lab = Lab::new(common::NODE_MAC, None);
    // No services.interface: bootlabd must find the NIC whose MAC is services.mac.
    let config = lab.write(&lab.lab(false).edit(|f| f.services.interface = None));
    let mut daemon = start_daemon(&lab, &config);
    let log = daemon.log();
    assert!(
        log.contains(&format!(
            "listening for dhcp on 0.0.0.0:67 (interface {})",
            lab.server_if
        )),
        "{log}"
    );
    let out = run(&mut lab.udhcpc(
        5,
        &lab.dir.path().join("bound.sh"),
        "#!/bin/sh\n[ \"$1\" = bound ] && echo \"ip=$ip\"\nexit 0\n",
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("ip={}", common::NODE_IP)),
        "{stdout}"
    );
    drop(daemon);
}
