//! DNS request path: any datagram through the handler (fast path and
//! general path, UDP and TCP). No panic; the fast path must give the same
//! message as the general path (byte-identical but for name compression); every reply must parse, re-encode and parse
//! again; UDP replies stay within the EDNS cap.
#![no_main]

use std::sync::OnceLock;

use bootlab_dns::handler::{Handler, HandlerConfig, Outcome, Transport};
use hickory_proto::op::Message;
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use libfuzzer_sys::fuzz_target;

const LAB: &str = include_str!("../../config/okd-lab.toml");
const EXTRA: &str = r#"  { name = "www", type = "CNAME", value = "api" },
  { name = "loop1", type = "CNAME", value = "loop2" },
  { name = "loop2", type = "CNAME", value = "loop1" },
  { name = "_etcd._tcp", type = "SRV", value = "0 10 2380 master-0" },
  { name = "@", type = "MX", value = "10 services" },
  { name = "txt", type = "TXT", value = "\"v=1\" \"hello world\"" },
  { name = "v6", type = "AAAA", value = "fd00::10" },
"#;

fn handler() -> &'static Handler {
    static H: OnceLock<Handler> = OnceLock::new();
    H.get_or_init(|| {
        let anchor = "  { name = \"*.apps\",";
        let text = LAB.replacen(anchor, &format!("{EXTRA}{anchor}"), 1);
        let inv =
            bootlab_inventory::parse(&text, "okd-lab.toml".as_ref()).expect("okd-lab.toml parses");
        Handler::new(&inv, HandlerConfig::default()).expect("zones build")
    })
}

fuzz_target!(|data: &[u8]| {
    let h = handler();
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut fast = Vec::new();
        let mut general = Vec::new();
        let a = h.handle(data, transport, &mut fast);
        let b = h.handle_general(data, transport, &mut general);
        let (Outcome::Reply(_), Outcome::Reply(_)) = (&a, &b) else {
            assert_eq!(std::mem::discriminant(&a), std::mem::discriminant(&b));
            continue;
        };
        if fast != general {
            // Name compression may legitimately differ (a template's names
            // point at its own copy, the general encoder may find a longer
            // suffix in the question): the decoded messages must agree.
            let (f, g) = (Message::from_vec(&fast), Message::from_vec(&general));
            assert_eq!(
                f.expect("fast reply parses"),
                g.expect("general reply parses"),
                "fast path and general path disagree"
            );
        }
        if transport == Transport::Udp {
            assert!(fast.len() <= 1232, "UDP reply of {} bytes", fast.len());
        }
        let reply = Message::from_vec(&fast).expect("our reply parses");
        let mut again = Vec::new();
        reply
            .emit(&mut BinEncoder::new(&mut again))
            .expect("re-encodes");
        Message::from_vec(&again).expect("round trip parses");
    }
});
