//! Handler-level tests: every RFC 2131 path, the boot table on the wire,
//! relays and option 82, and RELIABILITY.md's DHCP bad-input list.
//! Inventory: config/dev.toml (127.0.0.0/24, services 127.0.0.1, nodes
//! node-bios 52:54:00:77:00:10/.10 and node-uefi 52:54:00:77:00:11/.11,
//! pool .100-.150), with the pool removed for reservation-only tests.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bootlab_dhcp::leases::{LeaseTable, RecordKind};
use bootlab_dhcp::packet::{HEADER_LEN, RawOptions};
use bootlab_dhcp::{DhcpHandler, DropReason, Limits, MachineEvent, Outcome, ReplyTo};
use bootlab_inventory::{Inventory, Loader, MacAddr, load};
use bootlab_testkit::LabBuilder;
use dhcproto::v4::{self, DhcpOption, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

const SERVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const BIOS_MAC: [u8; 6] = [0x52, 0x54, 0, 0x77, 0, 0x10];
const BIOS_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 10);
const UEFI_MAC: [u8; 6] = [0x52, 0x54, 0, 0x77, 0, 0x11];
const UNKNOWN_MAC: [u8; 6] = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];

const DEV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/dev.toml");

fn dev() -> Inventory {
    load(Path::new(DEV)).unwrap()
}

fn reservation_only() -> Inventory {
    LabBuilder::dev().edit(|f| f.network.pool = None).build()
}

fn handler(inv: Inventory) -> DhcpHandler {
    DhcpHandler::new(
        Arc::new(inv),
        LeaseTable::default(),
        false,
        Limits::default(),
    )
}

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_900_000_000)
}

/// A client message built with dhcproto, as a real client would.
struct Msg(v4::Message);

impl Msg {
    fn new(mac: [u8; 6], t: MessageType) -> Self {
        let mut m = v4::Message::new_with_id(
            0x1234_5678,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &mac,
        );
        m.opts_mut().insert(DhcpOption::MessageType(t));
        m.opts_mut().insert(DhcpOption::ParameterRequestList(vec![
            OptionCode::SubnetMask,
            OptionCode::Router,
            OptionCode::DomainNameServer,
            OptionCode::Hostname,
            OptionCode::DomainName,
        ]));
        Self(m)
    }
    fn opt(mut self, o: DhcpOption) -> Self {
        self.0.opts_mut().insert(o);
        self
    }
    fn raw(self, code: u8, data: &[u8]) -> Self {
        self.opt(DhcpOption::Unknown(v4::UnknownOption::new(
            code.into(),
            data.to_vec(),
        )))
    }
    fn requested(self, ip: Ipv4Addr) -> Self {
        self.opt(DhcpOption::RequestedIpAddress(ip))
    }
    fn server(self, ip: Ipv4Addr) -> Self {
        self.opt(DhcpOption::ServerIdentifier(ip))
    }
    fn ciaddr(mut self, ip: Ipv4Addr) -> Self {
        self.0.set_ciaddr(ip);
        self
    }
    fn giaddr(mut self, ip: Ipv4Addr) -> Self {
        self.0.set_giaddr(ip);
        self
    }
    fn broadcast(mut self) -> Self {
        self.0.set_flags(v4::Flags::default().set_broadcast());
        self
    }
    fn arch(self, a: u16) -> Self {
        self.raw(93, &a.to_be_bytes())
    }
    fn bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        self.0.encode(&mut Encoder::new(&mut b)).unwrap();
        b
    }
    /// The datagram with extra options appended as given (even empty ones).
    fn bytes_with(&self, extra: &[(u8, &[u8])]) -> Vec<u8> {
        let mut b = self.bytes();
        assert_eq!(b.pop(), Some(255));
        for (c, d) in extra {
            b.push(*c);
            b.push(d.len() as u8);
            b.extend_from_slice(d);
        }
        b.push(255);
        b
    }
}

/// A reply, decoded, with its options in wire order.
struct Answer {
    msg: v4::Message,
    order: Vec<u8>,
    raw: RawOptions,
    to: ReplyTo,
    len: usize,
}

impl Answer {
    fn of(out: &Outcome) -> Self {
        let r = out.reply.as_ref().expect("a reply");
        let msg = v4::Message::decode(&mut Decoder::new(&r.bytes)).unwrap();
        let mut order = Vec::new();
        let area = &r.bytes[HEADER_LEN..];
        let mut i = 0;
        while i < area.len() && area[i] != 255 {
            if area[i] == 0 {
                i += 1;
                continue;
            }
            order.push(area[i]);
            i += 2 + usize::from(area[i + 1]);
        }
        // Re-read as a request to get RawOptions (flip op to BOOTREQUEST).
        let mut as_req = r.bytes.clone();
        as_req[0] = 1;
        let raw = bootlab_dhcp::Request::parse(&as_req).unwrap().options;
        Self {
            msg,
            order,
            raw,
            to: r.to,
            len: r.bytes.len(),
        }
    }
    fn kind(&self) -> MessageType {
        self.msg.opts().msg_type().unwrap()
    }
    fn text(&self, code: u8) -> Option<String> {
        self.raw
            .get(code)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
    fn ip(&self, code: u8) -> Option<Ipv4Addr> {
        self.raw
            .get(code)
            .map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    }
    fn file(&self) -> String {
        self.msg
            .fname()
            .map(|f| String::from_utf8_lossy(f).trim_end_matches('\0').to_owned())
            .unwrap_or_default()
    }
}

fn dropped(out: &Outcome) -> DropReason {
    assert!(out.reply.is_none(), "expected silence, got {:?}", out.reply);
    out.dropped.expect("a drop reason")
}

fn ack(h: &mut DhcpHandler, mac: [u8; 6], ip: Ipv4Addr, at: SystemTime) -> Outcome {
    let out = h.handle(
        &Msg::new(mac, MessageType::Request)
            .server(SERVER)
            .requested(ip)
            .bytes(),
        at,
    );
    assert_eq!(Answer::of(&out).kind(), MessageType::Ack, "{out:?}");
    out
}

// ---- DISCOVER / OFFER -------------------------------------------------------

#[test]
fn reserved_client_gets_its_address_hostname_router_dns_and_domain() {
    let mut h = handler(reservation_only());
    let out = h.handle(&Msg::new(BIOS_MAC, MessageType::Discover).bytes(), t0());
    let a = Answer::of(&out);
    assert_eq!(a.kind(), MessageType::Offer);
    assert_eq!(a.msg.yiaddr(), BIOS_IP);
    assert_eq!(a.msg.opcode(), v4::Opcode::BootReply);
    assert_eq!(a.msg.xid(), 0x1234_5678);
    assert_eq!(a.text(12).as_deref(), Some("node-bios"));
    assert_eq!(a.ip(3), Some(Ipv4Addr::new(127, 0, 0, 254)));
    assert_eq!(a.ip(6), Some(SERVER));
    assert_eq!(a.ip(54), Some(SERVER));
    assert_eq!(a.ip(1), Some(Ipv4Addr::new(255, 255, 255, 0)));
    assert_eq!(a.text(15).as_deref(), Some("dev.lab.test"));
    assert_eq!(a.raw.get(51), Some(&3600u32.to_be_bytes()[..]));
    assert_eq!(a.raw.get(58), Some(&1800u32.to_be_bytes()[..]));
    assert_eq!(a.raw.get(59), Some(&3150u32.to_be_bytes()[..]));
    // Option 119 in RFC 1035 wire form.
    assert_eq!(a.raw.get(119), Some(&b"\x03dev\x03lab\x04test\x00"[..]));
    // [ntp] enable (the default): option 42 names the services node.
    assert_eq!(a.ip(42), Some(SERVER));
    // No address yet, broadcast bit clear: unicast at its MAC (RFC 2131 4.1).
    assert_eq!(
        a.to,
        ReplyTo::Hardware {
            ip: BIOS_IP,
            mac: bootlab_inventory::MacAddr(BIOS_MAC)
        }
    );
    assert!(a.len >= 300, "BOOTP minimum size");
    assert!(out.commit.is_none(), "an OFFER commits nothing");
    assert!(
        out.events
            .iter()
            .any(|e| matches!(e, MachineEvent::Dhcp { kind: "offer", .. }))
    );
}

#[test]
fn no_ntp_option_when_ntp_is_off() {
    let inv = LabBuilder::dev().edit(|f| f.ntp.enable = false).build();
    let mut h = handler(inv);
    let out = h.handle(&Msg::new(BIOS_MAC, MessageType::Discover).bytes(), t0());
    assert_eq!(Answer::of(&out).ip(42), None);
}

#[test]
fn option_55_order_is_honoured() {
    let mut h = handler(reservation_only());
    let out = h.handle(
        &Msg::new(BIOS_MAC, MessageType::Discover)
            .opt(DhcpOption::ParameterRequestList(vec![
                OptionCode::DomainName,
                OptionCode::Hostname,
                OptionCode::DomainNameServer,
                OptionCode::Router,
                OptionCode::SubnetMask,
            ]))
            .bytes(),
        t0(),
    );
    let a = Answer::of(&out);
    assert_eq!(&a.order[..7], &[53, 54, 15, 12, 6, 3, 1], "{:?}", a.order);
}

#[test]
fn option_57_bounds_the_reply_and_overload_carries_the_rest() {
    // A 255-byte option 82 plus a PXE reply does not fit in 548 bytes.
    let relay_info: Vec<u8> = [1u8, 253]
        .into_iter()
        .chain(std::iter::repeat_n(0xab, 253))
        .collect();
    let mk = |max: Option<u16>| {
        let mut m = Msg::new(BIOS_MAC, MessageType::Discover)
            .arch(0)
            .raw(60, b"PXEClient:Arch:00000:UNDI:002001")
            .giaddr(Ipv4Addr::new(127, 0, 0, 2));
        if let Some(x) = max {
            m = m.opt(DhcpOption::MaxMessageSize(x));
        }
        // Appended raw: dhcproto's own encoding of an unknown 82 repeats it.
        m.bytes_with(&[(82, &relay_info)])
    };
    let mut h = handler(reservation_only());
    let small = h.handle(&mk(None), t0());
    let r = small.reply.as_ref().unwrap();
    assert!(r.bytes.len() <= 576 - 28, "{}", r.bytes.len());
    let a = Answer::of(&small);
    assert_eq!(
        a.raw.get(82),
        Some(&relay_info[..]),
        "82 is mandatory and verbatim"
    );
    assert_eq!(
        a.text(12).as_deref(),
        Some("node-bios"),
        "{:?}",
        r.dropped_options
    );
    let overload = a.raw.get(52).map(|v| v[0]);
    assert_eq!(
        overload,
        Some(2),
        "sname overloaded (file carries the boot file)"
    );
    assert_eq!(a.file(), "undionly.kpxe");

    let mut h = handler(reservation_only());
    let big = h.handle(&mk(Some(1500)), t0());
    let a = Answer::of(&big);
    assert!(a.raw.get(52).is_none(), "room enough: no overload");
    assert!(big.reply.unwrap().dropped_options.is_empty());
    // A bogus 57 below the minimum is raised to 576.
    let mut h = handler(reservation_only());
    let tiny = h.handle(&mk(Some(100)), t0());
    assert!(tiny.reply.unwrap().bytes.len() <= 548);
}

// ---- REQUEST in each state -----------------------------------------------------

#[test]
fn selecting_request_is_acked_after_commit_and_binds() {
    let mut h = handler(reservation_only());
    let out = ack(&mut h, BIOS_MAC, BIOS_IP, t0());
    let rec = out
        .commit
        .expect("the lease must be committed before the ACK");
    assert_eq!(rec.kind, RecordKind::Lease);
    assert_eq!(rec.ip, BIOS_IP);
    assert_eq!(rec.mac, MacAddr(BIOS_MAC));
    assert_eq!(rec.until, 1_900_000_000 + 3600);
    assert!(out.events.contains(&MachineEvent::Bind {
        mac: MacAddr(BIOS_MAC),
        ip: BIOS_IP
    }));
    let detail = out
        .events
        .iter()
        .find_map(|e| match e {
            MachineEvent::Dhcp {
                kind: "ack",
                detail,
                ..
            } => Some(detail.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(detail, "arch=- ipxe=false file=-");
}

#[test]
fn selecting_request_for_the_wrong_address_is_naked() {
    let mut h = handler(reservation_only());
    let out = h.handle(
        &Msg::new(BIOS_MAC, MessageType::Request)
            .server(SERVER)
            .requested(Ipv4Addr::new(127, 0, 0, 77))
            .bytes(),
        t0(),
    );
    let a = Answer::of(&out);
    assert_eq!(a.kind(), MessageType::Nak);
    assert_eq!(a.msg.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(a.to, ReplyTo::Broadcast);
    assert!(a.raw.get(51).is_none());
    assert!(out.commit.is_none());
}

#[test]
fn request_for_another_server_is_silent_and_frees_the_offer() {
    let mut h = handler(dev());
    let offer = Answer::of(&h.handle(&Msg::new(UNKNOWN_MAC, MessageType::Discover).bytes(), t0()));
    let ip = offer.msg.yiaddr();
    let out = h.handle(
        &Msg::new(UNKNOWN_MAC, MessageType::Request)
            .server(Ipv4Addr::new(127, 0, 0, 200))
            .requested(ip)
            .bytes(),
        t0(),
    );
    assert_eq!(dropped(&out), DropReason::OtherServer);
    // The address is free again for another client.
    let other = Answer::of(
        &h.handle(
            &Msg::new([2, 0, 0, 0, 0, 9], MessageType::Discover)
                .requested(ip)
                .bytes(),
            t0(),
        ),
    );
    assert_eq!(other.msg.yiaddr(), ip);
}

#[test]
fn init_reboot() {
    let mut h = handler(reservation_only());
    // Right address: ACK.
    let out = h.handle(
        &Msg::new(BIOS_MAC, MessageType::Request)
            .requested(BIOS_IP)
            .bytes(),
        t0(),
    );
    assert_eq!(Answer::of(&out).kind(), MessageType::Ack);
    assert!(out.commit.is_some());
    // Wrong address on our network: NAK.
    let out = h.handle(
        &Msg::new(BIOS_MAC, MessageType::Request)
            .requested(Ipv4Addr::new(127, 0, 0, 99))
            .bytes(),
        t0(),
    );
    assert_eq!(Answer::of(&out).kind(), MessageType::Nak);
    // Another network altogether: NAK.
    let out = h.handle(
        &Msg::new(BIOS_MAC, MessageType::Request)
            .requested(Ipv4Addr::new(192, 168, 1, 10))
            .bytes(),
        t0(),
    );
    assert_eq!(Answer::of(&out).kind(), MessageType::Nak);
}

#[test]
fn renewing_is_unicast_and_rebinding_too() {
    let mut h = handler(dev());
    let offer = Answer::of(&h.handle(&Msg::new(UNKNOWN_MAC, MessageType::Discover).bytes(), t0()));
    let ip = offer.msg.yiaddr();
    ack(&mut h, UNKNOWN_MAC, ip, t0());
    let later = t0() + Duration::from_secs(1800);
    // RENEWING: unicast from ciaddr, no server-id, no 50.
    let out = h.handle(
        &Msg::new(UNKNOWN_MAC, MessageType::Request)
            .ciaddr(ip)
            .bytes(),
        later,
    );
    let a = Answer::of(&out);
    assert_eq!(a.kind(), MessageType::Ack);
    assert_eq!(a.msg.yiaddr(), ip);
    assert_eq!(a.msg.ciaddr(), ip);
    assert_eq!(a.to, ReplyTo::Client(ip));
    assert_eq!(out.commit.unwrap().until, 1_900_000_000 + 1800 + 3600);
    // REBINDING: the same, broadcast.
    let out = h.handle(
        &Msg::new(UNKNOWN_MAC, MessageType::Request)
            .ciaddr(ip)
            .broadcast()
            .bytes(),
        later + Duration::from_secs(1000),
    );
    assert_eq!(Answer::of(&out).kind(), MessageType::Ack);
    // Renewing an address that is someone else's: NAK.
    let out = h.handle(
        &Msg::new([2, 0, 0, 0, 0, 7], MessageType::Request)
            .ciaddr(ip)
            .bytes(),
        later,
    );
    assert_eq!(Answer::of(&out).kind(), MessageType::Nak);
}

// ---- reservation-only, pool, identity ---------------------------------------------

#[test]
fn unknown_mac_gets_silence_without_a_pool_also_on_the_pxe_path() {
    let mut h = handler(reservation_only());
    for m in [
        Msg::new(UNKNOWN_MAC, MessageType::Discover),
        Msg::new(UNKNOWN_MAC, MessageType::Discover)
            .arch(7)
            .raw(60, b"PXEClient:Arch:00007:UNDI:003016"),
        Msg::new(UNKNOWN_MAC, MessageType::Discover)
            .raw(77, b"iPXE")
            .raw(175, &[1, 1, 1]),
        Msg::new(UNKNOWN_MAC, MessageType::Request)
            .server(SERVER)
            .requested(Ipv4Addr::new(127, 0, 0, 120)),
        Msg::new(UNKNOWN_MAC, MessageType::Request).requested(Ipv4Addr::new(127, 0, 0, 120)),
        Msg::new(UNKNOWN_MAC, MessageType::Inform).ciaddr(Ipv4Addr::new(127, 0, 0, 120)),
    ] {
        let out = h.handle(&m.bytes(), t0());
        assert_eq!(dropped(&out), DropReason::UnknownMac);
        assert!(
            out.events.is_empty(),
            "unknown MACs stay out of the timeline"
        );
    }
}

#[test]
fn unknown_mac_gets_a_pool_address_with_a_pool() {
    let mut h = handler(dev());
    let a = Answer::of(&h.handle(&Msg::new(UNKNOWN_MAC, MessageType::Discover).bytes(), t0()));
    let ip = a.msg.yiaddr();
    assert!((100..=150).contains(&ip.octets()[3]), "{ip}");
    assert!(a.raw.get(12).is_none(), "pool clients get no host name");
    let b = Answer::of(&h.handle(
        &Msg::new([2, 0, 0, 0, 0, 1], MessageType::Discover).bytes(),
        t0(),
    ));
    assert_ne!(
        b.msg.yiaddr(),
        ip,
        "an offered address is held for its client"
    );
    ack(&mut h, UNKNOWN_MAC, ip, t0());
    // Back later: the same address.
    let again = Answer::of(&h.handle(
        &Msg::new(UNKNOWN_MAC, MessageType::Discover).bytes(),
        t0() + Duration::from_secs(10),
    ));
    assert_eq!(again.msg.yiaddr(), ip);
}

#[test]
fn a_reservation_keys_on_the_mac_whatever_the_client_id() {
    let mut h = handler(reservation_only());
    for client_id in [
        &[1u8, 0x52, 0x54, 0, 0x77, 0, 0x10][..],
        b"\xff\x00\x00\x00\x01\x00\x04firmware-duid",
        b"\x00os-uuid",
    ] {
        let out = h.handle(
            &Msg::new(BIOS_MAC, MessageType::Discover)
                .opt(DhcpOption::ClientIdentifier(client_id.to_vec()))
                .bytes(),
            t0(),
        );
        assert_eq!(Answer::of(&out).msg.yiaddr(), BIOS_IP);
        let out = ack(&mut h, BIOS_MAC, BIOS_IP, t0());
        assert_eq!(out.commit.unwrap().mac, MacAddr(BIOS_MAC));
    }
}

#[test]
fn global_lease_cap() {
    let limits = Limits {
        max_leases: 2,
        ..Limits::default()
    };
    let mut h = DhcpHandler::new(Arc::new(dev()), LeaseTable::default(), false, limits);
    for i in 0..2 {
        let out = h.handle(
            &Msg::new([2, 0, 0, 0, 1, i], MessageType::Discover).bytes(),
            t0(),
        );
        assert_eq!(Answer::of(&out).kind(), MessageType::Offer);
    }
    let out = h.handle(
        &Msg::new([2, 0, 0, 0, 1, 9], MessageType::Discover).bytes(),
        t0(),
    );
    assert_eq!(dropped(&out), DropReason::LeaseCap);
    // Reserved clients are not counted against the cap.
    let out = h.handle(&Msg::new(BIOS_MAC, MessageType::Discover).bytes(), t0());
    assert_eq!(Answer::of(&out).kind(), MessageType::Offer);
}

#[test]
fn per_mac_rate_limit_and_flat_memory_under_a_million_identical_requests() {
    let mut h = handler(dev());
    let bytes = Msg::new(UNKNOWN_MAC, MessageType::Discover).bytes();
    let mut offers = 0;
    let mut limited = 0;
    for i in 0..1_000_000u64 {
        // 1000 requests per simulated second.
        let out = h.handle(&bytes, t0() + Duration::from_micros(i * 1000));
        match out.dropped {
            Some(DropReason::RateLimited) => limited += 1,
            None => offers += 1,
            Some(other) => panic!("{other:?}"),
        }
        if i % 100_000 == 0 {
            assert!(
                h.table_sizes().iter().all(|n| *n <= 2),
                "{:?}",
                h.table_sizes()
            );
        }
    }
    // 16 at once, then 4 a second over 1000 simulated seconds.
    assert!(offers <= 16 + 4 * 1000 + 1, "{offers}");
    assert!(limited >= 995_000);
    assert!(
        h.table_sizes().iter().all(|n| *n <= 2),
        "{:?}",
        h.table_sizes()
    );
}

// ---- DECLINE, RELEASE, INFORM ----------------------------------------------------

#[test]
fn decline_needs_our_server_id_and_the_clients_address_then_quarantines() {
    let mut h = handler(dev());
    let ip = Answer::of(&h.handle(&Msg::new(UNKNOWN_MAC, MessageType::Discover).bytes(), t0()))
        .msg
        .yiaddr();
    ack(&mut h, UNKNOWN_MAC, ip, t0());
    let decline = |sid: Option<Ipv4Addr>, req: Option<Ipv4Addr>, mac| {
        let mut m = Msg::new(mac, MessageType::Decline);
        if let Some(s) = sid {
            m = m.server(s);
        }
        if let Some(r) = req {
            m = m.requested(r);
        }
        m.bytes()
    };
    assert_eq!(
        dropped(&h.handle(&decline(None, Some(ip), UNKNOWN_MAC), t0())),
        DropReason::DeclineRefused
    );
    assert_eq!(
        dropped(&h.handle(
            &decline(Some(Ipv4Addr::new(127, 0, 0, 9)), Some(ip), UNKNOWN_MAC),
            t0()
        )),
        DropReason::DeclineRefused
    );
    assert_eq!(
        dropped(&h.handle(&decline(Some(SERVER), None, UNKNOWN_MAC), t0())),
        DropReason::DeclineRefused
    );
    // Another client cannot decline our address.
    assert_eq!(
        dropped(&h.handle(&decline(Some(SERVER), Some(ip), [2, 0, 0, 0, 0, 5]), t0())),
        DropReason::DeclineRefused
    );
    let out = h.handle(&decline(Some(SERVER), Some(ip), UNKNOWN_MAC), t0());
    assert!(out.reply.is_none() && out.dropped.is_none());
    let rec = out.commit.unwrap();
    assert_eq!(rec.kind, RecordKind::Decline);
    assert!(h.leases().quarantined(ip, 1_900_000_000 + 10));
    // Nobody is offered the quarantined address, even asking for it.
    for m in [UNKNOWN_MAC, [2, 0, 0, 0, 0, 6]] {
        let a = Answer::of(&h.handle(
            &Msg::new(m, MessageType::Discover).requested(ip).bytes(),
            t0(),
        ));
        assert_ne!(a.msg.yiaddr(), ip);
    }
}

#[test]
fn declines_are_capped_per_client() {
    let mut h = handler(dev());
    let mut accepted = 0;
    for i in 0..10 {
        let at = t0() + Duration::from_secs(i);
        let ip = Answer::of(&h.handle(&Msg::new(UNKNOWN_MAC, MessageType::Discover).bytes(), at))
            .msg
            .yiaddr();
        let out = h.handle(
            &Msg::new(UNKNOWN_MAC, MessageType::Decline)
                .server(SERVER)
                .requested(ip)
                .bytes(),
            at,
        );
        match out.dropped {
            None => accepted += 1,
            Some(DropReason::DeclineCapped) => {}
            Some(o) => panic!("{o:?}"),
        }
    }
    assert_eq!(accepted, Limits::default().max_declines_per_client);
}

#[test]
fn release_only_from_the_leases_mac() {
    let mut h = handler(dev());
    let ip = Answer::of(&h.handle(&Msg::new(UNKNOWN_MAC, MessageType::Discover).bytes(), t0()))
        .msg
        .yiaddr();
    ack(&mut h, UNKNOWN_MAC, ip, t0());
    let out = h.handle(
        &Msg::new([2, 0, 0, 0, 0, 5], MessageType::Release)
            .server(SERVER)
            .ciaddr(ip)
            .bytes(),
        t0(),
    );
    assert_eq!(dropped(&out), DropReason::ReleaseRefused);
    assert!(h.leases().by_ip(ip).unwrap().until > 1_900_000_000);
    let out = h.handle(
        &Msg::new(UNKNOWN_MAC, MessageType::Release)
            .server(SERVER)
            .ciaddr(ip)
            .bytes(),
        t0(),
    );
    assert!(out.reply.is_none() && out.dropped.is_none());
    assert_eq!(out.commit.unwrap().kind, RecordKind::Release);
    assert!(out.events.contains(&MachineEvent::Unbind { ip }));
    // The address is free for another client now.
    let other = Answer::of(
        &h.handle(
            &Msg::new([2, 0, 0, 0, 0, 5], MessageType::Discover)
                .requested(ip)
                .bytes(),
            t0() + Duration::from_secs(1),
        ),
    );
    assert_eq!(other.msg.yiaddr(), ip);
}

#[test]
fn inform_gets_an_ack_without_lease_and_creates_none() {
    let mut h = handler(reservation_only());
    let out = h.handle(
        &Msg::new(BIOS_MAC, MessageType::Inform)
            .ciaddr(BIOS_IP)
            .bytes(),
        t0(),
    );
    let a = Answer::of(&out);
    assert_eq!(a.kind(), MessageType::Ack);
    assert_eq!(a.msg.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(a.msg.ciaddr(), BIOS_IP);
    for c in [51, 58, 59] {
        assert!(a.raw.get(c).is_none(), "option {c} in an INFORM ACK");
    }
    assert_eq!(a.ip(3), Some(Ipv4Addr::new(127, 0, 0, 254)));
    assert_eq!(a.to, ReplyTo::Client(BIOS_IP));
    assert!(out.commit.is_none());
    assert!(h.leases().is_empty());
}

// ---- relays and option 82 --------------------------------------------------------

#[test]
fn relayed_requests_go_back_to_the_relay_with_option_82_verbatim() {
    let relay = Ipv4Addr::new(127, 0, 0, 2);
    let info = [1u8, 4, b'p', b'o', b'r', b't', 2, 3, 9, 8, 7];
    let mut h = handler(reservation_only());
    let out = h.handle(
        &Msg::new(BIOS_MAC, MessageType::Discover)
            .giaddr(relay)
            .bytes_with(&[(82, &info)]),
        t0(),
    );
    let a = Answer::of(&out);
    assert_eq!(a.to, ReplyTo::Relay(relay));
    assert_eq!(a.msg.giaddr(), relay);
    assert_eq!(a.raw.get(82), Some(&info[..]));
    assert_eq!(a.order.last(), Some(&82), "82 goes last: {:?}", a.order);
    // A NAK through a relay: broadcast bit set, 82 echoed.
    let out = h.handle(
        &Msg::new(BIOS_MAC, MessageType::Request)
            .server(SERVER)
            .requested(Ipv4Addr::new(127, 0, 0, 99))
            .giaddr(relay)
            .bytes_with(&[(82, &info)]),
        t0(),
    );
    let a = Answer::of(&out);
    assert_eq!(a.kind(), MessageType::Nak);
    assert!(a.msg.flags().broadcast());
    assert_eq!(a.to, ReplyTo::Relay(relay));
    assert_eq!(a.raw.get(82), Some(&info[..]));
    // A relay outside our network is not served.
    let out = h.handle(
        &Msg::new(BIOS_MAC, MessageType::Discover)
            .giaddr(Ipv4Addr::new(10, 9, 9, 1))
            .bytes(),
        t0(),
    );
    assert_eq!(dropped(&out), DropReason::ForeignSubnet);
}

#[test]
fn oversized_option_82_is_dropped() {
    let mut m = Msg::new(BIOS_MAC, MessageType::Discover)
        .giaddr(Ipv4Addr::new(127, 0, 0, 2))
        .bytes();
    // Two concatenated 82 chunks (RFC 3396): 400 bytes in all.
    m.pop(); // End
    m.extend_from_slice(&[82, 200]);
    m.extend(std::iter::repeat_n(1u8, 200));
    m.extend_from_slice(&[82, 200]);
    m.extend(std::iter::repeat_n(2u8, 200));
    m.push(255);
    let mut h = handler(reservation_only());
    assert_eq!(dropped(&h.handle(&m, t0())), DropReason::OversizedRelayInfo);
}

/// Found by the CI fuzz run (`dhcp_handler`): a relayed request whose
/// option 82 could not be placed in the reply got a reply without it. A
/// relayed reply either carries 82 verbatim or is not sent.
#[test]
fn a_relayed_reply_carries_option_82_or_is_not_sent() {
    let data = include_bytes!("data/fuzz-option-82-reply.bin");
    let req = bootlab_dhcp::Request::parse(data).unwrap();
    let info = req
        .relay_agent_info()
        .expect("the input carries option 82")
        .to_vec();
    let mut h = dev_handler_like_the_fuzzer();
    let out = h.handle(data, t0());
    match &out.reply {
        None => assert_eq!(dropped(&out), DropReason::OversizedRelayInfo),
        Some(_) => assert_eq!(Answer::of(&out).raw.get(82), Some(&info[..])),
    }
    assert!(out.reply.is_none(), "this input's 82 cannot fit: no reply");
}

fn dev_handler_like_the_fuzzer() -> DhcpHandler {
    let limits = bootlab_dhcp::Limits {
        max_leases: 64,
        ..bootlab_dhcp::Limits::default()
    };
    DhcpHandler::new(
        std::sync::Arc::new(dev()),
        bootlab_dhcp::leases::LeaseTable::default(),
        true,
        limits,
    )
}

// ---- the boot table on the wire ---------------------------------------------------

fn boot(inv: Inventory, arm64: bool, m: Msg) -> Answer {
    let mut h = DhcpHandler::new(
        Arc::new(inv),
        LeaseTable::default(),
        arm64,
        Limits::default(),
    );
    Answer::of(&h.handle(&m.bytes(), t0()))
}

#[test]
fn bios_pxe_gets_undionly_over_tftp() {
    let a = boot(
        dev(),
        false,
        Msg::new(BIOS_MAC, MessageType::Discover)
            .arch(0)
            .raw(60, b"PXEClient:Arch:00000:UNDI:002001"),
    );
    assert_eq!(a.file(), "undionly.kpxe");
    assert_eq!(a.msg.siaddr(), SERVER);
    assert_eq!(a.text(67).as_deref(), Some("undionly.kpxe"));
    assert_eq!(a.text(66).as_deref(), Some("127.0.0.1"));
}

#[test]
fn uefi_x64_gets_snponly_and_grub_profiles_get_grub() {
    for arch in [7, 9] {
        let a = boot(
            dev(),
            false,
            Msg::new(UEFI_MAC, MessageType::Discover).arch(arch),
        );
        assert_eq!(a.file(), "snponly.efi", "arch {arch}");
    }
    let inv = LabBuilder::dev()
        .edit(|f| {
            for p in f.profiles.values_mut() {
                p.loader = "grub".into();
            }
        })
        .build();
    assert!(inv.profiles().values().all(|p| p.loader == Loader::Grub));
    let a = boot(
        inv,
        false,
        Msg::new(UEFI_MAC, MessageType::Discover).arch(7),
    );
    assert_eq!(a.file(), "grubnetx64.efi");
}

#[test]
fn uefi_http_boot_gets_the_url_and_httpclient_echoed() {
    let a = boot(
        dev(),
        false,
        Msg::new(UEFI_MAC, MessageType::Discover)
            .arch(16)
            .raw(60, b"HTTPClient:Arch:00016:UNDI:003001"),
    );
    assert_eq!(a.file(), "http://127.0.0.1:8080/assets/ipxe.efi");
    assert_eq!(
        a.text(67).as_deref(),
        Some("http://127.0.0.1:8080/assets/ipxe.efi")
    );
    assert_eq!(a.text(60).as_deref(), Some("HTTPClient"));
    assert_eq!(a.msg.siaddr(), Ipv4Addr::UNSPECIFIED);
}

#[test]
fn arm64_gets_its_loader_only_when_present() {
    let a = boot(
        dev(),
        true,
        Msg::new(UEFI_MAC, MessageType::Discover).arch(11),
    );
    assert_eq!(a.file(), "grubnetaa64.efi");
    assert_eq!(a.msg.siaddr(), SERVER);
    // Absent: the host still gets its address, without a boot file (refusal logged).
    let mut h = handler(dev());
    let out = h.handle(
        &Msg::new(UEFI_MAC, MessageType::Discover).arch(11).bytes(),
        t0(),
    );
    assert!(out.note.as_deref().unwrap().contains("grubnetaa64.efi"));
    let a = Answer::of(&out);
    assert_eq!(a.kind(), MessageType::Offer);
    assert_eq!(a.file(), "");
    assert!(a.raw.get(67).is_none());
}

#[test]
fn ipxe_by_77_or_175_gets_the_script_url_never_the_binary() {
    let url = "http://127.0.0.1:8080/boot.ipxe";
    for m in [
        Msg::new(BIOS_MAC, MessageType::Discover)
            .arch(0)
            .raw(77, b"iPXE"),
        Msg::new(BIOS_MAC, MessageType::Discover)
            .arch(7)
            .raw(175, &[0xb1, 1, 1]),
        Msg::new(BIOS_MAC, MessageType::Discover).raw(77, b"\x04iPXE"),
        Msg::new(BIOS_MAC, MessageType::Request)
            .server(SERVER)
            .requested(BIOS_IP)
            .arch(7)
            .raw(77, b"iPXE"),
    ] {
        let a = boot(dev(), false, m);
        assert_eq!(a.file(), url);
        assert_eq!(a.text(67).as_deref(), Some(url));
    }
    let mut h = handler(dev());
    let out = h.handle(
        &Msg::new(BIOS_MAC, MessageType::Request)
            .server(SERVER)
            .requested(BIOS_IP)
            .arch(0)
            .raw(77, b"iPXE")
            .bytes(),
        t0(),
    );
    let detail = out
        .events
        .iter()
        .find_map(|e| match e {
            MachineEvent::Dhcp {
                kind: "ack",
                detail,
                ..
            } => Some(detail.clone()),
            _ => None,
        })
        .unwrap();
    // The decision, then the options as the client sent them.
    assert_eq!(detail, format!("arch=0 ipxe=true file={url} opt93=0000"));
}

#[test]
fn os_clients_get_no_boot_file() {
    let a = boot(dev(), false, Msg::new(BIOS_MAC, MessageType::Discover));
    assert_eq!(a.file(), "");
    assert!(a.raw.get(67).is_none());
    assert_eq!(a.msg.siaddr(), Ipv4Addr::UNSPECIFIED);
}

// ---- bad input (RELIABILITY.md, DHCP) ------------------------------------------

#[test]
fn every_truncation_of_a_request_is_dropped_or_answered_never_a_panic() {
    let full = Msg::new(BIOS_MAC, MessageType::Discover)
        .arch(0)
        .raw(60, b"PXEClient:Arch:00000:UNDI:002001")
        .bytes_with(&[(82, &[1, 2, 3, 4])]);
    let mut h = handler(dev());
    for n in 0..full.len() {
        let out = h.handle(&full[..n], t0());
        if n < HEADER_LEN {
            assert_eq!(dropped(&out), DropReason::Malformed, "{n} bytes");
        } else {
            // Cut mid-option: dropped; cut between options: still a request.
            assert!(
                out.reply.is_some()
                    || out.dropped == Some(DropReason::Malformed)
                    || out.dropped == Some(DropReason::RateLimited)
            );
        }
    }
}

#[test]
fn malformed_headers_are_dropped() {
    let good = Msg::new(BIOS_MAC, MessageType::Discover).bytes();
    let mut h = handler(dev());
    let mut reply_op = good.clone();
    reply_op[0] = 2;
    let mut cookie = good.clone();
    cookie[236] = 0;
    let mut not_eth = good.clone();
    not_eth[2] = 16;
    let mut no_type = good.clone();
    no_type.truncate(HEADER_LEN);
    no_type.push(255);
    let mut bad_type = good.clone();
    let pos = HEADER_LEN
        + bad_type[HEADER_LEN..]
            .windows(2)
            .position(|w| w == [53, 1])
            .unwrap();
    bad_type[pos + 2] = 99;
    // The message type itself cut off at the end of the packet.
    let mut type_cut = good.clone();
    type_cut.truncate(HEADER_LEN);
    type_cut.extend_from_slice(&[53, 1]);
    for b in [reply_op, cookie, not_eth, no_type, bad_type, type_cut] {
        assert_eq!(dropped(&h.handle(&b, t0())), DropReason::Malformed);
    }
    // The last option runs past the end (sloppy firmware): answered from
    // the options that parsed, the cut one reported as malformed.
    let mut truncated = good.clone();
    truncated.truncate(HEADER_LEN);
    truncated.extend_from_slice(&[53, 1, 1, 61, 20, 1, 2]);
    let out = h.handle(&truncated, t0());
    assert_eq!(Answer::of(&out).kind(), MessageType::Offer);
    assert_eq!(out.malformed_options, vec![61]);
    // A server message sent to the server.
    let offer = Msg::new(BIOS_MAC, MessageType::Offer).bytes();
    assert_eq!(dropped(&h.handle(&offer, t0())), DropReason::UnexpectedType);
}

#[test]
fn malformed_60_77_93_97_and_names_are_tolerated_and_reported() {
    let mut h = handler(dev());
    let m = Msg::new(BIOS_MAC, MessageType::Discover).bytes_with(&[
        (93, &[0]),
        (60, &[0xff, 0xfe]),
        (77, &[]),
        (97, &[1, 2, 3]),
        (12, &[]),
        (81, &[0, 0, 0, 64]),
    ]);
    let out = h.handle(&m, t0());
    let a = Answer::of(&out);
    assert_eq!(a.kind(), MessageType::Offer);
    assert_eq!(a.msg.yiaddr(), BIOS_IP);
    let mut bad = out.malformed_options.clone();
    bad.sort_unstable();
    assert_eq!(bad, vec![12, 60, 77, 81, 93, 97]);
    // Overlong host name and FQDN labels > 63 bytes.
    let long = vec![b'a'; 64];
    let mut fqdn = vec![0u8, 0, 0];
    fqdn.extend_from_slice(&long);
    let out = h.handle(
        &Msg::new(UEFI_MAC, MessageType::Discover)
            .raw(12, &long)
            .raw(81, &fqdn)
            .bytes(),
        t0(),
    );
    assert_eq!(Answer::of(&out).kind(), MessageType::Offer);
    assert_eq!(
        Answer::of(&out).text(12).as_deref(),
        Some("node-uefi"),
        "our name, not theirs"
    );
    let mut bad = out.malformed_options;
    bad.sort_unstable();
    assert_eq!(bad, vec![12, 81]);
    // Option 81 shorter than its 3 fixed bytes (found by the fuzzer: dhcproto asserts).
    for short in [&[][..], &[0], &[0, 0]] {
        let out = h.handle(
            &Msg::new(UEFI_MAC, MessageType::Discover).bytes_with(&[(81, short)]),
            t0(),
        );
        assert_eq!(out.malformed_options, vec![81]);
    }
}

#[test]
fn option_lengths_that_are_not_multiples_of_4_where_they_must_be() {
    let mut h = handler(reservation_only());
    // Requested IP of 5 bytes, server-id of 3: treated as absent and reported.
    let m = Msg::new(BIOS_MAC, MessageType::Request)
        .raw(50, &[127, 0, 0, 10, 1])
        .raw(54, &[127, 0, 0]);
    let out = h.handle(&m.bytes(), t0());
    assert_eq!(
        dropped(&out),
        DropReason::Malformed,
        "no usable requested IP"
    );
    let mut bad = out.malformed_options;
    bad.sort_unstable();
    assert_eq!(bad, vec![50, 54]);
    // A router option of 6 bytes in a DISCOVER means nothing to us.
    let out = h.handle(
        &Msg::new(BIOS_MAC, MessageType::Discover)
            .raw(3, &[1, 2, 3, 4, 5, 6])
            .bytes(),
        t0(),
    );
    assert_eq!(Answer::of(&out).kind(), MessageType::Offer);
    // Option 57 of 3 bytes: ignored, 576 assumed.
    let out = h.handle(
        &Msg::new(BIOS_MAC, MessageType::Discover)
            .raw(57, &[5, 220, 0])
            .bytes(),
        t0(),
    );
    assert!(out.reply.unwrap().bytes.len() <= 548);
    assert_eq!(out.malformed_options, vec![57]);
}

#[test]
fn overloaded_requests_are_read() {
    // Option 53 and 50 live in `file`, announced by option 52 = 1.
    let mut b = Msg::new(BIOS_MAC, MessageType::Request).bytes();
    b.truncate(HEADER_LEN);
    b.extend_from_slice(&[52, 1, 1, 54, 4, 127, 0, 0, 1, 255]);
    b[108..118].copy_from_slice(&[53, 1, 3, 50, 4, 127, 0, 0, 10, 255]);
    let mut h = handler(reservation_only());
    let out = h.handle(&b, t0());
    assert_eq!(Answer::of(&out).kind(), MessageType::Ack);
}

#[test]
fn reload_keeps_leases() {
    let mut h = handler(dev());
    let ip = Answer::of(&h.handle(&Msg::new(UNKNOWN_MAC, MessageType::Discover).bytes(), t0()))
        .msg
        .yiaddr();
    ack(&mut h, UNKNOWN_MAC, ip, t0());
    h.set_inventory(Arc::new(dev()), false);
    let a = Answer::of(&h.handle(&Msg::new(UNKNOWN_MAC, MessageType::Discover).bytes(), t0()));
    assert_eq!(a.msg.yiaddr(), ip);
}

fn with_loader(loader: &str) -> Inventory {
    let loader = loader.to_owned();
    LabBuilder::dev()
        .edit(move |f| {
            for p in f.profiles.values_mut() {
                p.loader = loader.clone();
            }
        })
        .build()
}

#[test]
fn grub_profiles_get_the_http_grub_over_uefi_http_boot() {
    let a = boot(
        with_loader("grub"),
        false,
        Msg::new(UEFI_MAC, MessageType::Discover)
            .arch(16)
            .raw(60, b"HTTPClient:Arch:00016:UNDI:003001"),
    );
    assert_eq!(a.file(), "http://127.0.0.1:8080/assets/grubx64-http.efi");
    assert_eq!(a.text(60).as_deref(), Some("HTTPClient"));
}

#[test]
fn shim_grub_profiles_get_shim_on_uefi_and_ipxe_on_bios() {
    let a = boot(
        with_loader("shim-grub"),
        false,
        Msg::new(UEFI_MAC, MessageType::Discover)
            .arch(7)
            .raw(60, b"PXEClient:Arch:00007:UNDI:003000"),
    );
    assert_eq!(a.file(), "shimx64.efi");
    assert_eq!(a.msg.siaddr(), SERVER);
    // BIOS has no Secure Boot: the iPXE path, and the handler says so.
    let mut h = handler(with_loader("shim-grub"));
    let out = h.handle(
        &Msg::new(BIOS_MAC, MessageType::Discover)
            .arch(0)
            .raw(60, b"PXEClient:Arch:00000:UNDI:002001")
            .bytes(),
        t0(),
    );
    assert_eq!(Answer::of(&out).file(), "undionly.kpxe");
    assert!(
        out.note.as_deref().unwrap().contains("shim-grub"),
        "{out:?}"
    );
    // UEFI HTTP boot cannot run the signed GRUB: refused with the reason.
    let mut h = handler(with_loader("shim-grub"));
    let out = h.handle(
        &Msg::new(UEFI_MAC, MessageType::Discover)
            .arch(16)
            .raw(60, b"HTTPClient:Arch:00016:UNDI:003001")
            .bytes(),
        t0(),
    );
    assert_eq!(Answer::of(&out).file(), "");
    assert!(out.note.as_deref().unwrap().contains("PXE only"), "{out:?}");
}

fn proxy() -> Inventory {
    LabBuilder::dev()
        .edit(|f| {
            f.network.pool = None;
            f.network.dhcp = "proxy".into();
        })
        .build()
}

fn proxy_handler(listener: bootlab_dhcp::Listener) -> DhcpHandler {
    handler(proxy()).on(listener)
}

const OTHER_SERVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

#[test]
fn proxy_offers_boot_information_without_an_address_on_port_67() {
    let mut h = proxy_handler(bootlab_dhcp::Listener::Server);
    let out = h.handle(
        &Msg::new(UEFI_MAC, MessageType::Discover)
            .arch(7)
            .raw(60, b"PXEClient:Arch:00007:UNDI:003000")
            .raw(97, &[0; 17])
            .bytes(),
        t0(),
    );
    let a = Answer::of(&out);
    assert_eq!(a.kind(), MessageType::Offer);
    assert_eq!(a.msg.yiaddr(), Ipv4Addr::UNSPECIFIED, "never an address");
    assert_eq!(a.msg.siaddr(), SERVER);
    assert_eq!(a.file(), "snponly.efi");
    assert_eq!(a.text(60).as_deref(), Some("PXEClient"));
    assert_eq!(a.raw.get(43), Some(&[6, 1, 8, 255][..]));
    for absent in [1, 3, 6, 51, 58, 59] {
        assert!(
            a.raw.get(absent).is_none(),
            "option {absent} in a proxy offer"
        );
    }
    assert_eq!(a.to, ReplyTo::Broadcast);
    assert!(out.commit.is_none(), "no lease record");
    // The timeline records what the firmware sent.
    let detail = out
        .events
        .iter()
        .find_map(|e| match e {
            MachineEvent::Dhcp {
                kind: "proxy-offer",
                detail,
                ..
            } => Some(detail.clone()),
            _ => None,
        })
        .expect("a proxy-offer event");
    assert!(detail.contains("opt93=0007"), "{detail}");
    assert!(detail.contains("PXEClient:Arch:00007"), "{detail}");
    assert!(detail.contains("opt97=0000"), "{detail}");
}

#[test]
fn proxy_answers_boot_requests_on_port_4011_and_learns_the_address() {
    let client = Ipv4Addr::new(127, 0, 0, 77);
    let mut h = proxy_handler(bootlab_dhcp::Listener::BootServer);
    let out = h.handle(
        &Msg::new(UEFI_MAC, MessageType::Request)
            .arch(7)
            .raw(60, b"PXEClient:Arch:00007:UNDI:003000")
            .ciaddr(client)
            .bytes(),
        t0(),
    );
    let a = Answer::of(&out);
    assert_eq!(a.kind(), MessageType::Ack);
    assert_eq!(a.msg.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(a.file(), "snponly.efi");
    // Broadcast to the client's port: it may not answer ARP yet.
    assert_eq!(a.to, ReplyTo::BroadcastToPeerPort);
    assert!(out.events.contains(&MachineEvent::Bind {
        mac: MacAddr(UEFI_MAC),
        ip: client
    }));
    // iPXE behind the proxy gets its script, never the binary again.
    let out = h.handle(
        &Msg::new(UEFI_MAC, MessageType::Request)
            .arch(7)
            .raw(60, b"PXEClient:Arch:00007:UNDI:003000")
            .raw(77, b"iPXE")
            .ciaddr(client)
            .bytes(),
        t0(),
    );
    assert_eq!(Answer::of(&out).file(), "http://127.0.0.1:8080/boot.ipxe");
    // A DISCOVER on 4011 is not a PXE boot request.
    let out = h.handle(
        &Msg::new(UEFI_MAC, MessageType::Discover).arch(7).bytes(),
        t0(),
    );
    assert!(out.reply.is_none());
}

#[test]
fn proxy_never_hands_out_addresses_and_ignores_strangers() {
    let mut h = proxy_handler(bootlab_dhcp::Listener::Server);
    // An OS client (no PXE marks) of a reserved MAC: silence.
    let out = h.handle(&Msg::new(BIOS_MAC, MessageType::Discover).bytes(), t0());
    assert!(out.reply.is_none());
    assert_eq!(out.dropped, Some(DropReason::NotPxe));
    // An unknown MAC, even a PXE one: silence.
    let out = h.handle(
        &Msg::new(UNKNOWN_MAC, MessageType::Discover)
            .arch(0)
            .raw(60, b"PXEClient:Arch:00000:UNDI:002001")
            .bytes(),
        t0(),
    );
    assert!(out.reply.is_none());
    assert_eq!(out.dropped, Some(DropReason::UnknownMac));
    // A REQUEST to the other server: no ACK, no NAK; the address is learned.
    let out = h.handle(
        &Msg::new(BIOS_MAC, MessageType::Request)
            .arch(0)
            .raw(60, b"PXEClient:Arch:00000:UNDI:002001")
            .server(OTHER_SERVER)
            .requested(BIOS_IP)
            .bytes(),
        t0(),
    );
    assert!(out.reply.is_none());
    assert!(out.commit.is_none());
    assert!(out.events.contains(&MachineEvent::Bind {
        mac: MacAddr(BIOS_MAC),
        ip: BIOS_IP
    }));
    // Even a REQUEST naming us gets nothing on port 67.
    let out = h.handle(
        &Msg::new(BIOS_MAC, MessageType::Request)
            .server(SERVER)
            .requested(BIOS_IP)
            .bytes(),
        t0(),
    );
    assert!(out.reply.is_none());
    // Server mode never answers on 4011.
    let mut h = handler(dev()).on(bootlab_dhcp::Listener::BootServer);
    let out = h.handle(
        &Msg::new(BIOS_MAC, MessageType::Request)
            .arch(0)
            .ciaddr(BIOS_IP)
            .bytes(),
        t0(),
    );
    assert!(out.reply.is_none());
}

#[test]
fn a_client_that_sets_the_broadcast_bit_is_broadcast_to() {
    let mut h = handler(reservation_only());
    let out = h.handle(
        &Msg::new(BIOS_MAC, MessageType::Discover)
            .broadcast()
            .bytes(),
        t0(),
    );
    let a = Answer::of(&out);
    assert_eq!(a.kind(), MessageType::Offer);
    assert_eq!(a.msg.yiaddr(), BIOS_IP);
    assert!(a.msg.flags().broadcast(), "the flag is echoed");
    assert_eq!(a.to, ReplyTo::Broadcast);
}
