//! Helpers shared by the DNS tests: inventories, queries, replies.

#![allow(dead_code)]

use std::path::PathBuf;

use bootlab_dns::handler::{Handler, HandlerConfig, Outcome, Transport, build_query};
use bootlab_inventory::Inventory;
use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RecordType};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `config/okd-lab.toml`, with `edit` applied to its text.
pub fn okd_with(edit: impl FnOnce(String) -> String) -> Inventory {
    let text = std::fs::read_to_string(repo().join("config/okd-lab.toml")).unwrap();
    bootlab_inventory::parse(&edit(text), &repo().join("config/okd-lab.toml")).unwrap()
}

/// `config/okd-lab.toml`.
pub fn okd() -> Inventory {
    okd_with(|t| t)
}

/// Adds `[dns].records` entries before the wildcard line of okd-lab.toml.
pub fn with_records(text: String, records: &str) -> String {
    let anchor = "  { name = \"*.apps\",";
    assert!(
        text.contains(anchor),
        "okd-lab.toml changed: no wildcard line"
    );
    text.replacen(anchor, &format!("{records}\n{anchor}"), 1)
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
