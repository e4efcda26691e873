//! The load balancer's https-check status-line parser: no panic on any
//! bytes; a status is three digits from 100 to 999 after `HTTP/1.x `; an
//! answer on a prefix never changes when more bytes arrive (errors are
//! final, a status stays the status).
#![no_main]

use bootlab_lb::probe::parse_status_line;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = parse_status_line(data);
    if let Ok(Some(status)) = whole {
        assert!((100..=999).contains(&status));
        assert!(data.starts_with(b"HTTP/1."));
    }
    for cut in [1, 7, 9, 12, 13, data.len() / 2] {
        if cut >= data.len() {
            continue;
        }
        match parse_status_line(&data[..cut]) {
            Ok(None) => {}
            prefix => assert_eq!(prefix, whole, "prefix of {cut} bytes"),
        }
    }
});
