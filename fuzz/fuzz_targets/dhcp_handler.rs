//! DHCP request parser and handler: no panic on any datagram, and every
//! reply the handler builds parses back (op flipped) with the same options.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use bootlab_dhcp::leases::LeaseTable;
use bootlab_dhcp::{DhcpHandler, Limits, Request};
use libfuzzer_sys::fuzz_target;

struct State {
    handler: DhcpHandler,
    tick: u64,
}

fn state() -> &'static Mutex<State> {
    static S: OnceLock<Mutex<State>> = OnceLock::new();
    S.get_or_init(|| {
        let text = include_str!("../../config/dev.toml");
        let inv = bootlab_inventory::parse(text, "dev.toml".as_ref()).expect("dev.toml");
        let limits = Limits {
            max_leases: 64,
            ..Limits::default()
        };
        Mutex::new(State {
            handler: DhcpHandler::new(Arc::new(inv), LeaseTable::default(), true, limits),
            tick: 0,
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = Request::parse(data);
    let mut s = state().lock().unwrap_or_else(|e| e.into_inner());
    s.tick += 250;
    let now = UNIX_EPOCH + Duration::from_secs(1_900_000_000) + Duration::from_millis(s.tick);
    let out = s.handler.handle(data, now);
    if let Some(reply) = out.reply {
        assert!(reply.bytes.len() >= 300 && reply.bytes.len() <= 1472);
        let mut back = reply.bytes.clone();
        back[0] = 1;
        let parsed = Request::parse(&back).expect("our reply parses");
        assert_eq!(parsed.xid, out.xid.unwrap());
        if let Some(ri) = Request::parse(data).ok().and_then(|r| r.relay_agent_info().map(<[u8]>::to_vec)) {
            assert_eq!(parsed.relay_agent_info(), Some(&ri[..]), "option 82 verbatim");
        }
    }
});
