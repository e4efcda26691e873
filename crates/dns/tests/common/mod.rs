//! Helpers shared by the DNS tests: inventories (typed edits of
//! `config/okd-lab.toml`), queries, replies.

#![allow(dead_code)]

use bootlab_dns::handler::{Handler, HandlerConfig, Outcome, Transport, build_query};
use bootlab_inventory::Inventory;
use bootlab_inventory::wire::UplinkSection;
use bootlab_testkit::LabBuilder;
use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RecordType};

/// `config/okd-lab.toml`.
pub fn okd() -> Inventory {
    LabBuilder::okd().build()
}

/// `config/okd-lab.toml` with `records` `(name, type, value)` added to
/// `[dns].records`.
pub fn okd_with_records<'a>(
    records: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
) -> Inventory {
    records
        .into_iter()
        .fold(LabBuilder::okd(), |lab, (name, rtype, value)| {
            lab.record(name, rtype, value)
        })
        .build()
}

/// okd-lab.toml in isolated mode (services as the gateway, an uplink)
/// with allow-listed `domains` and `upstreams`.
pub fn isolated_inventory(domains: &[&str], upstreams: &[&str]) -> Inventory {
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let (domains, upstreams) = (strings(domains), strings(upstreams));
    LabBuilder::okd()
        .edit(|f| {
            f.network.mode = "isolated".into();
            f.network.gateway = "192.168.200.254".into();
            f.network.upstream_dns = upstreams;
            f.services.uplink = Some(UplinkSection {
                network: "default".into(),
                mac: "52:54:00:c8:01:fe".into(),
            });
            f.egress.allow_domains = domains;
        })
        .build()
}

/// A handler for `inv` with default settings.
pub fn handler(inv: &Inventory) -> Handler {
    Handler::new(inv, HandlerConfig::default()).unwrap()
}

/// A query for `name`/`qtype`, with EDNS of `edns` bytes if given.
pub fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    build_query(0x1234, &Name::from_ascii(name).unwrap(), qtype, edns)
}

/// Runs the handler (fast path first) and checks the fast path and the
/// general path agree byte for byte.
pub fn ask(h: &Handler, q: &[u8], transport: Transport) -> (Outcome, Vec<u8>) {
    let mut out = Vec::new();
    let outcome = h.handle(q, transport, &mut out);
    let mut general = Vec::new();
    let g = h.handle_general(q, transport, &mut general);
    if let (Outcome::Reply(_), Outcome::Reply(_)) = (&outcome, &g) {
        assert_eq!(out, general, "fast and general paths disagree");
    }
    (outcome, out)
}

/// Asks over UDP and parses the reply.
pub fn reply(h: &Handler, q: &[u8]) -> Message {
    reply_over(h, q, Transport::Udp)
}

/// Asks and parses the reply.
pub fn reply_over(h: &Handler, q: &[u8], transport: Transport) -> Message {
    let (outcome, out) = ask(h, q, transport);
    assert!(
        matches!(outcome, Outcome::Reply(_)),
        "expected a reply, got {outcome:?}"
    );
    Message::from_vec(&out).unwrap()
}
