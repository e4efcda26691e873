//! TFTP request parsing and option negotiation: no panic on any datagram,
//! and whatever is negotiated stays inside RFC 2347/2348/2349/7440 bounds.
#![no_main]

use bootlab_tftp::options::{self, Limits, max_blksize_for_mtu};
use bootlab_tftp::packet::{self, parse_client_packet, parse_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_client_packet(data);
    match parse_request(data) {
        Ok(req) => {
            assert!(!req.filename.is_empty() && req.filename.len() <= packet::MAX_FILENAME);
            let mtu = data.first().map_or(1500, |b| u32::from(*b) * 300);
            let limits = Limits {
                max_blksize: max_blksize_for_mtu(mtu),
                ..Limits::default()
            };
            let size = data.len() as u64 * 1000;
            let n = options::negotiate(&req.options, req.mode, size, &limits);
            assert!((8..=options::MAX_BLKSIZE).contains(&n.blksize));
            assert!(n.blksize <= limits.max_blksize);
            assert!((1..=limits.max_windowsize).contains(&n.windowsize));
            let _ = packet::encode_oack(&n.oack);
        }
        Err(e) => {
            let _ = (e.kind(), e.reply(), e.to_string());
        }
    }
});
