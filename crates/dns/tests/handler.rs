//! Handler-level tests: the protocol rules of the issue and every DNS item of
//! RELIABILITY.md, bytes in and bytes out, no sockets.

mod common;

use bootlab_dns::handler::{DropReason, Handler};
use bootlab_dns::handler::{HandlerConfig, Outcome, Transport};
use bootlab_testkit::LabBuilder;
use common::*;
use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

const ZONE: &str = "okd.example.com.";

fn header(id: u16, flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    let mut h = Vec::new();
    for v in [id, flags, qd, an, ns, ar] {
        h.extend_from_slice(&v.to_be_bytes());
    }
    h
}

fn wire_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for l in name.trim_end_matches('.').split('.') {
        out.push(l.len() as u8);
        out.extend_from_slice(l.as_bytes());
    }
    out.push(0);
    out
}

fn opt(payload: u16, version: u8, do_bit: bool) -> Vec<u8> {
    let mut o = vec![0, 0, 41];
    o.extend_from_slice(&payload.to_be_bytes());
    o.extend_from_slice(&[0, version, if do_bit { 0x80 } else { 0 }, 0, 0, 0]);
    o
}

fn question(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = wire_name(name);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

fn rcode_of(h: &Handler, q: &[u8]) -> ResponseCode {
    reply(h, q).metadata.response_code
}

#[test]
fn answers_every_node_and_services_with_aa_and_ra_0() {
    let inv = okd();
    let h = handler(&inv);
    for r in inv.hosts() {
        let m = reply(&h, &query(&format!("{}.", r.fqdn), RecordType::A, None));
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NoError,
            "{}",
            r.fqdn
        );
        assert!(m.metadata.authoritative, "AA=1");
        assert!(!m.metadata.recursion_available, "RA=0");
        assert_eq!(m.answers.len(), 1);
        assert_eq!(
            m.answers[0].data,
            RData::A(hickory_proto::rr::rdata::A(r.ip))
        );
        assert!(
            m.edns.is_none(),
            "no OPT in the reply when the query had none"
        );
    }
    assert_eq!(inv.hosts().len(), 14, "13 nodes + services");
}

#[test]
fn ptr_for_every_node_and_services() {
    let inv = okd();
    let h = handler(&inv);
    for r in inv.hosts() {
        let o = r.ip.octets();
        let name = format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0]);
        let m = reply(&h, &query(&name, RecordType::PTR, None));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        let RData::PTR(target) = &m.answers[0].data else {
            panic!()
        };
        assert_eq!(target.0.to_ascii(), format!("{}.", r.fqdn));
    }
}

#[test]
fn extra_records_and_wildcard() {
    let h = handler(&okd());
    for name in ["api", "api-int"] {
        let m = reply(&h, &query(&format!("{name}.{ZONE}"), RecordType::A, None));
        assert_eq!(m.answers.len(), 1, "{name}");
    }
    let m = reply(
        &h,
        &query(
            &format!("console-openshift.apps.{ZONE}"),
            RecordType::A,
            None,
        ),
    );
    assert_eq!(m.answers.len(), 1);
    assert_eq!(
        m.answers[0].name.to_ascii(),
        format!("console-openshift.apps.{ZONE}")
    );
    assert_eq!(m.answers[0].ttl, 60);
    // two labels below the wildcard are covered too (RFC 4592)
    let m = reply(&h, &query(&format!("a.b.apps.{ZONE}"), RecordType::A, None));
    assert_eq!(m.answers.len(), 1);
    // the wildcard's parent is an empty non-terminal: NODATA, not NXDOMAIN
    let m = reply(&h, &query(&format!("apps.{ZONE}"), RecordType::A, None));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
}

#[test]
fn soa_and_ns_at_the_apex_with_glue() {
    let h = handler(&okd());
    let m = reply(&h, &query(ZONE, RecordType::SOA, None));
    let RData::SOA(soa) = &m.answers[0].data else {
        panic!()
    };
    assert_eq!(soa.mname.to_ascii(), format!("services.{ZONE}"));
    assert_eq!(soa.rname.to_ascii(), format!("hostmaster.{ZONE}"));
    assert_ne!(soa.serial, 0);
    let m = reply(&h, &query(ZONE, RecordType::NS, None));
    let RData::NS(ns) = &m.answers[0].data else {
        panic!()
    };
    assert_eq!(ns.0.to_ascii(), format!("services.{ZONE}"));
    assert_eq!(m.additionals.len(), 1, "glue A of the name server");
    let m = reply(
        &h,
        &query("200.168.192.in-addr.arpa.", RecordType::SOA, None),
    );
    assert!(m.metadata.authoritative && m.answers.len() == 1);
}

#[test]
fn soa_serial_follows_content() {
    let serial = |inv| {
        let h = handler(&inv);
        let m = reply(&h, &query(ZONE, RecordType::SOA, None));
        let RData::SOA(soa) = &m.answers[0].data else {
            panic!()
        };
        soa.serial
    };
    let a = serial(okd());
    assert_eq!(a, serial(okd()), "same content, same serial");
    let b = serial(okd_with_records([("new", "A", "192.168.200.77")]));
    assert_ne!(a, b);
}

#[test]
fn nxdomain_with_soa_in_authority() {
    let h = handler(&okd());
    let m = reply(
        &h,
        &query(&format!("nope.{ZONE}"), RecordType::A, Some(1232)),
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.metadata.authoritative);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities.len(), 1);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    assert!(
        m.authorities[0].ttl <= 60,
        "negative TTL is the SOA minimum"
    );
    let m = reply(
        &h,
        &query("99.200.168.192.in-addr.arpa.", RecordType::PTR, None),
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        m.authorities[0].name.to_ascii(),
        "200.168.192.in-addr.arpa."
    );
}

#[test]
fn unknown_type_at_existing_name_is_nodata() {
    let h = handler(&okd());
    for qtype in [
        RecordType::AAAA,
        RecordType::MX,
        RecordType::Unknown(65280),
        RecordType::HINFO,
    ] {
        let m = reply(&h, &query(&format!("master-0.{ZONE}"), qtype, None));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{qtype}");
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    }
}

#[test]
fn names_outside_our_zones_are_refused() {
    let h = handler(&okd());
    for name in [
        "example.org.",
        "example.com.",
        "com.",
        ".",
        "okd.example.com.evil.",
    ] {
        let m = reply(&h, &query(name, RecordType::A, None));
        assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{name}");
        assert!(!m.metadata.authoritative);
        assert!(!m.metadata.recursion_available);
        assert!(m.answers.is_empty());
    }
    // other classes are refused too (CH version.bind)
    let mut q = header(1, 0, 1, 0, 0, 0);
    q.extend_from_slice(&wire_name("version.bind"));
    q.extend_from_slice(&[0, 16, 0, 3]);
    assert_eq!(rcode_of(&h, &q), ResponseCode::Refused);
}

#[test]
fn zone_transfers_are_refused() {
    let h = handler(&okd());
    for qtype in [RecordType::AXFR, RecordType::IXFR] {
        for transport in [Transport::Udp, Transport::Tcp] {
            let m = reply_over(&h, &query(ZONE, qtype, None), transport);
            assert_eq!(m.metadata.response_code, ResponseCode::Refused);
            assert!(m.answers.is_empty());
        }
    }
}

#[test]
fn unknown_opcodes_and_tkey_are_notimp() {
    let h = handler(&okd());
    for opcode in [1u16, 2, 3, 4, 5, 6, 15] {
        let mut q = header(7, opcode << 11, 1, 0, 0, 0);
        q.extend_from_slice(&question(ZONE, 1));
        let m = reply(&h, &q);
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NotImp,
            "opcode {opcode}"
        );
        assert_eq!(m.metadata.op_code, OpCode::from_u8(opcode as u8));
        assert_eq!(m.metadata.id, 7);
    }
    for qtype in [249u16, 250, 253, 254] {
        let mut q = header(7, 0, 1, 0, 0, 0);
        q.extend_from_slice(&question(ZONE, qtype));
        assert_eq!(rcode_of(&h, &q), ResponseCode::NotImp, "qtype {qtype}");
    }
}

#[test]
fn compression_pointer_loop_is_formerr() {
    let h = handler(&okd());
    // question name is a pointer to itself
    let mut q = header(9, 0, 1, 0, 0, 0);
    q.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert_eq!(rcode_of(&h, &q), ResponseCode::FormErr);
    // two pointers pointing at each other (the second one forward: also invalid)
    let mut q = header(9, 0, 1, 0, 0, 0);
    q.extend_from_slice(&[1, b'a', 0xc0, 16, 0xc0, 14, 0, 1, 0, 1]);
    assert_eq!(rcode_of(&h, &q), ResponseCode::FormErr);
    // pointer into the header
    let mut q = header(9, 0, 1, 0, 0, 0);
    q.extend_from_slice(&[0xc0, 0, 0, 1, 0, 1]);
    let (outcome, _) = ask(&h, &q, Transport::Udp);
    assert!(
        matches!(outcome, Outcome::Reply(_)),
        "never a panic or silence"
    );
}

#[test]
fn long_labels_and_names_are_formerr() {
    let h = handler(&okd());
    // a 64-byte label: length byte 0x40 is a reserved label type
    let mut q = header(1, 0, 1, 0, 0, 0);
    q.push(64);
    q.extend_from_slice(&[b'a'; 64]);
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let m = reply(&h, &q);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(m.metadata.id, 1);
    assert!(m.queries.is_empty());
    // a name of 5 x 63-byte labels (> 255 bytes)
    let mut q = header(1, 0, 1, 0, 0, 0);
    for _ in 0..5 {
        q.push(63);
        q.extend_from_slice(&[b'a'; 63]);
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert_eq!(rcode_of(&h, &q), ResponseCode::FormErr);
    // truncated question
    let mut q = header(1, 0, 1, 0, 0, 0);
    q.extend_from_slice(&[3, b'a', b'b']);
    assert_eq!(rcode_of(&h, &q), ResponseCode::FormErr);
}

#[test]
fn question_count_must_be_one() {
    let h = handler(&okd());
    assert_eq!(
        rcode_of(&h, &header(1, 0, 0, 0, 0, 0)),
        ResponseCode::FormErr
    );
    let mut q = header(1, 0, 2, 0, 0, 0);
    q.extend_from_slice(&question(ZONE, 1));
    q.extend_from_slice(&question(ZONE, 2));
    assert_eq!(rcode_of(&h, &q), ResponseCode::FormErr);
}

#[test]
fn edns_version_above_0_is_badvers() {
    let h = handler(&okd());
    let mut q = header(1, 0, 1, 0, 0, 1);
    q.extend_from_slice(&question(ZONE, 6));
    q.extend_from_slice(&opt(1232, 1, false));
    let m = reply(&h, &q);
    assert_eq!(
        u16::from(m.metadata.response_code),
        16,
        "BADVERS (shares 16 with BADSIG)"
    );
    let edns = m.edns.expect("BADVERS carries an OPT");
    assert_eq!(edns.version(), 0);
    assert!(m.answers.is_empty());
}

#[test]
fn duplicate_opt_is_formerr() {
    let h = handler(&okd());
    let mut q = header(1, 0, 1, 0, 0, 2);
    q.extend_from_slice(&question(ZONE, 6));
    q.extend_from_slice(&opt(1232, 0, false));
    q.extend_from_slice(&opt(1232, 0, false));
    assert_eq!(rcode_of(&h, &q), ResponseCode::FormErr);
}

#[test]
fn opt_mirrors_the_query() {
    let h = handler(&okd());
    let m = reply(&h, &query(ZONE, RecordType::SOA, None));
    assert!(m.edns.is_none());
    let m = reply(&h, &query(ZONE, RecordType::SOA, Some(4096)));
    let edns = m.edns.expect("OPT in reply");
    assert_eq!(edns.max_payload(), 1232, "we advertise our own cap");
    let mut q = header(1, 0, 1, 0, 0, 1);
    q.extend_from_slice(&question(ZONE, 6));
    q.extend_from_slice(&opt(1232, 0, true));
    assert!(reply(&h, &q).edns.unwrap().flags().dnssec_ok, "DO copied");
}

#[test]
fn short_datagrams_and_responses_are_dropped() {
    let h = handler(&okd());
    for len in 0..12 {
        let mut out = Vec::new();
        assert_eq!(
            h.handle(&vec![0u8; len], Transport::Udp, &mut out),
            Outcome::Drop(DropReason::TooShort)
        );
    }
    let mut q = query(ZONE, RecordType::A, None);
    q[2] |= 0x80;
    let mut out = Vec::new();
    assert_eq!(
        h.handle(&q, Transport::Udp, &mut out),
        Outcome::Drop(DropReason::NotAQuery)
    );
}

#[test]
fn records_in_answer_section_of_a_query_are_formerr() {
    let h = handler(&okd());
    let mut q = header(1, 0, 1, 1, 0, 0);
    q.extend_from_slice(&question(ZONE, 1));
    q.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4]);
    assert_eq!(rcode_of(&h, &q), ResponseCode::FormErr);
}

fn big_inventory() -> bootlab_inventory::Inventory {
    let mut records = Vec::new();
    for i in 0..40 {
        records.push((
            "big".to_owned(),
            "TXT",
            format!("record number {i} of a deliberately oversized answer"),
        ));
        records.push(("many".to_owned(), "A", format!("192.168.200.{}", 100 + i)));
    }
    okd_with_records(records.iter().map(|(n, t, v)| (n.as_str(), *t, v.as_str())))
}

#[test]
fn udp_size_limits_truncation_and_tcp() {
    let h = handler(&big_inventory());
    let name = format!("big.{ZONE}");
    // no EDNS: 512 bytes at most, TC=1
    let (_, out) = ask(&h, &query(&name, RecordType::TXT, None), Transport::Udp);
    assert!(out.len() <= 512);
    let m = Message::from_vec(&out).unwrap();
    assert!(m.metadata.truncation && m.answers.is_empty());
    // EDNS 4096: capped at 1232
    let (_, out) = ask(
        &h,
        &query(&name, RecordType::TXT, Some(4096)),
        Transport::Udp,
    );
    assert!(out.len() <= 1232);
    assert!(Message::from_vec(&out).unwrap().metadata.truncation);
    // TCP: the full answer
    let m = reply_over(&h, &query(&name, RecordType::TXT, None), Transport::Tcp);
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 40);
    // 40 A records fit into 1232 (with EDNS) but not 512
    let many = format!("many.{ZONE}");
    let m = reply(&h, &query(&many, RecordType::A, None));
    assert!(m.metadata.truncation);
    let (_, out) = ask(&h, &query(&many, RecordType::A, Some(1232)), Transport::Udp);
    let m = Message::from_vec(&out).unwrap();
    assert!(!m.metadata.truncation && m.answers.len() == 40);
    // a client size below 512 counts as 512
    let (_, out) = ask(&h, &query(&many, RecordType::A, Some(100)), Transport::Udp);
    assert!(out.len() <= 512);
    // a smaller server cap
    let small = Handler::new(
        &big_inventory(),
        HandlerConfig {
            max_udp_payload: 600,
            ..HandlerConfig::default()
        },
    )
    .unwrap();
    let (_, out) = ask(
        &small,
        &query(&many, RecordType::A, Some(4096)),
        Transport::Udp,
    );
    assert!(out.len() <= 600);
    assert!(Message::from_vec(&out).unwrap().metadata.truncation);
}

#[test]
fn cname_chased_inside_the_zone() {
    let inv = okd_with_records([
        ("www", "CNAME", "web"),
        ("web", "CNAME", "api"),
        ("out", "CNAME", "example.org."),
        ("dangling", "CNAME", "missing"),
    ]);
    let h = handler(&inv);
    let m = reply(&h, &query(&format!("www.{ZONE}"), RecordType::A, None));
    let types: Vec<RecordType> = m.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types, [RecordType::CNAME, RecordType::CNAME, RecordType::A]);
    let m = reply(&h, &query(&format!("www.{ZONE}"), RecordType::CNAME, None));
    assert_eq!(m.answers.len(), 1, "asking for the CNAME itself");
    let m = reply(&h, &query(&format!("out.{ZONE}"), RecordType::A, None));
    assert_eq!(
        m.answers.len(),
        1,
        "out-of-zone target left to the resolver"
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let m = reply(&h, &query(&format!("dangling.{ZONE}"), RecordType::A, None));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
}

#[test]
fn question_case_is_echoed() {
    let h = handler(&okd());
    for transport in [Transport::Udp, Transport::Tcp] {
        for name in [
            "MaStEr-0.OKD.example.COM.",
            "X.ApPs.okd.example.com.",
            "NoPe.OKD.example.com.",
            "EXAMPLE.org.",
        ] {
            let m = reply_over(&h, &query(name, RecordType::A, Some(1232)), transport);
            assert_eq!(m.queries[0].name().to_ascii(), name);
        }
    }
}

#[test]
fn rd_and_cd_are_copied_id_kept() {
    let h = handler(&okd());
    for name in [
        "master-0.okd.example.com.",
        "nope.okd.example.com.",
        "x.apps.okd.example.com.",
    ] {
        let mut q = query(name, RecordType::A, None);
        q[0] = 0xbe;
        q[1] = 0xef;
        q[2] |= 0x01;
        q[3] |= 0x10;
        let m = reply(&h, &q);
        assert_eq!(m.metadata.id, 0xbeef);
        assert!(m.metadata.recursion_desired && m.metadata.checking_disabled);
        assert!(!m.metadata.recursion_available);
    }
}

#[test]
fn fast_path_covers_the_static_zone_and_matches_the_general_path() {
    let inv = big_inventory();
    let h = handler(&inv);
    assert!(h.fast_entries() > 100, "{}", h.fast_entries());
    let mut names: Vec<String> = inv.hosts().iter().map(|r| format!("{}.", r.fqdn)).collect();
    names.extend([
        "api.okd.example.com.".into(),
        "x.apps.okd.example.com.".into(),
        "a.b.apps.okd.example.com.".into(),
    ]);
    names.push("10.200.168.192.in-addr.arpa.".into());
    names.push(ZONE.into());
    let mut fast = 0;
    for name in &names {
        let upper = name.to_uppercase();
        for n in [name.as_str(), upper.as_str()] {
            for qtype in [
                RecordType::A,
                RecordType::AAAA,
                RecordType::PTR,
                RecordType::SOA,
                RecordType::NS,
                RecordType::TXT,
            ] {
                for edns in [None, Some(512), Some(1232), Some(4096)] {
                    for transport in [Transport::Udp, Transport::Tcp] {
                        let (outcome, _) = ask(&h, &query(n, qtype, edns), transport);
                        if let Outcome::Reply(info) = outcome {
                            fast += usize::from(info.fast);
                        }
                    }
                }
            }
        }
    }
    assert!(fast > names.len() * 40, "fast path used {fast} times");
}

#[test]
fn forwarding_only_for_allow_listed_names_and_never_to_ourselves() {
    let inv = isolated_inventory(&["quay.io"], &["127.0.0.1:5300", "127.0.0.1:53"]);
    let upstreams = bootlab_dns::server::upstreams_for(
        &inv,
        "127.0.0.1:53".parse().unwrap(),
        std::path::Path::new("/nonexistent"),
    );
    assert_eq!(
        upstreams,
        ["127.0.0.1:5300".parse().unwrap()],
        "our own listen address is never an upstream"
    );
    let h = Handler::new(
        &inv,
        HandlerConfig {
            upstreams,
            ..HandlerConfig::default()
        },
    )
    .unwrap();
    for name in ["quay.io.", "cdn.QUAY.io."] {
        let (outcome, _) = ask(&h, &query(name, RecordType::A, None), Transport::Udp);
        let Outcome::Forward(req) = outcome else {
            panic!("{name}: {outcome:?}")
        };
        assert_eq!(req.question.name().to_ascii(), name.to_lowercase());
    }
    for name in ["notquay.io.", "io.", "example.org."] {
        let m = reply(&h, &query(name, RecordType::A, None));
        assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{name}");
    }
    // loopback on our own port when listening on 0.0.0.0 is us as well
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        "# test\nnameserver 127.0.0.1\nnameserver 10.9.9.9\nsearch lab\n",
    )
    .unwrap();
    let inv = isolated_inventory(&["quay.io"], &[]);
    let ups = bootlab_dns::server::upstreams_for(&inv, "0.0.0.0:53".parse().unwrap(), &resolv);
    assert_eq!(ups, ["10.9.9.9:53".parse().unwrap()]);
    // no upstream at all: SERVFAIL, never a loop
    let h = handler(&inv);
    let m = reply(&h, &query("quay.io.", RecordType::A, None));
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

#[test]
fn handler_survives_every_prefix_and_bit_flip() {
    // Deterministic mini-fuzz over real queries: no panic, always a reply or a drop.
    let h = handler(&okd());
    let base = query("master-0.okd.example.com.", RecordType::A, Some(1232));
    for len in 0..=base.len() {
        let _ = ask(&h, &base[..len], Transport::Udp);
    }
    for i in 0..base.len() {
        for bit in 0..8 {
            let mut q = base.clone();
            q[i] ^= 1 << bit;
            let _ = ask(&h, &q, Transport::Udp);
            let _ = ask(&h, &q, Transport::Tcp);
        }
    }
    let _ = Name::root();
}

#[test]
fn reverse_zones_for_a_wider_prefix() {
    // a /22 gives four /24 reverse zones (delegation-style names)
    let inv = LabBuilder::okd()
        .edit(|f| f.network.cidr = "192.168.200.0/22".into())
        .build();
    let h = handler(&inv);
    for third in 200..204 {
        let m = reply(
            &h,
            &query(
                &format!("{third}.168.192.in-addr.arpa."),
                RecordType::SOA,
                None,
            ),
        );
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{third}");
        assert!(m.metadata.authoritative);
    }
    let m = reply(
        &h,
        &query("30.200.168.192.in-addr.arpa.", RecordType::PTR, None),
    );
    assert_eq!(m.answers.len(), 1);
    let m = reply(
        &h,
        &query("1.204.168.192.in-addr.arpa.", RecordType::PTR, None),
    );
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::Refused,
        "outside the /22"
    );
    let m = reply(
        &h,
        &query("7.201.168.192.in-addr.arpa.", RecordType::PTR, None),
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        m.authorities[0].name.to_ascii(),
        "201.168.192.in-addr.arpa."
    );
}

/// A wire name from raw labels (a label may hold a `.` byte).
fn raw_labels(labels: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in labels {
        out.push(l.len() as u8);
        out.extend_from_slice(l);
    }
    out.push(0);
    out
}

fn raw_query(labels: &[&[u8]]) -> Vec<u8> {
    let mut q = header(5, 0, 1, 0, 0, 0);
    q.extend_from_slice(&raw_labels(labels));
    q.extend_from_slice(&[0, 1, 0, 1]);
    q
}

#[test]
fn a_dot_inside_a_label_never_looks_like_a_zone_boundary() {
    let h = handler(&okd());
    // the label "x.okd" under example.com: not our zone
    let q = raw_query(&[b"x.okd", b"example", b"com"]);
    assert_eq!(rcode_of(&h, &q), ResponseCode::Refused);
    // the label "master-0" + "okd.example" + "com": not our zone either
    let q = raw_query(&[b"master-0", b"okd.example", b"com"]);
    assert_eq!(rcode_of(&h, &q), ResponseCode::Refused);
    // the label "x.apps" under our zone: no such name, and *.apps does not cover it
    let q = raw_query(&[b"x.apps", b"okd", b"example", b"com"]);
    let m = reply(&h, &q);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.answers.is_empty());
    // the label "master-0.okd" is not master-0
    let q = raw_query(&[b"master-0.okd", b"example", b"com"]);
    assert_eq!(rcode_of(&h, &q), ResponseCode::Refused);

    // forwarding: the label "x.quay" under io is not under quay.io
    let inv = isolated_inventory(&["quay.io"], &["127.0.0.1:5300"]);
    let h = Handler::new(
        &inv,
        HandlerConfig {
            upstreams: vec!["127.0.0.1:5300".parse().unwrap()],
            ..HandlerConfig::default()
        },
    )
    .unwrap();
    let q = raw_query(&[b"x.quay", b"io"]);
    assert_eq!(rcode_of(&h, &q), ResponseCode::Refused);
    let q = raw_query(&[b"x", b"quay", b"io"]);
    let (outcome, _) = ask(&h, &q, Transport::Udp);
    assert!(matches!(outcome, Outcome::Forward(_)));
}

#[test]
fn nxdomain_fast_path_matches_for_every_name_length() {
    let h = handler(&okd());
    for len in 1..=63 {
        for depth in 1..=3 {
            let label = "q".repeat(len);
            let name = format!("{}okd.example.com.", format!("{label}.").repeat(depth));
            for edns in [None, Some(1232)] {
                let (outcome, out) = ask(&h, &query(&name, RecordType::A, edns), Transport::Udp);
                let Outcome::Reply(info) = outcome else {
                    panic!()
                };
                assert!(info.fast, "{name}");
                let m = Message::from_vec(&out).unwrap();
                assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
                assert_eq!(m.authorities[0].name.to_ascii(), "okd.example.com.");
            }
        }
    }
    let (outcome, _) = ask(
        &h,
        &query("1.2.200.168.192.in-addr.arpa.", RecordType::PTR, None),
        Transport::Udp,
    );
    assert!(
        matches!(outcome, Outcome::Reply(ref i) if i.fast && i.rcode == ResponseCode::NXDomain)
    );
}
