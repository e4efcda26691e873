//! The NTP handler on any datagram: no panic; an answer only for a 48-byte
//! client request, never larger than the request; the header round-trips;
//! the answer echoes the client's transmit time and version.
#![no_main]

use std::time::{Duration, SystemTime};

use bootlab_ntp::packet::{HEADER_LEN, Header, mode};
use bootlab_ntp::{ClockState, NtpConfig, handle, kiss_rate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(h) = Header::parse(data) {
        assert_eq!(Header::parse(&h.encode()), Some(h));
    }
    let recv = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(data.len() as u32) << 20);
    let now = recv + Duration::from_nanos(data.first().copied().unwrap_or(0).into());
    let cfg = NtpConfig {
        local_stratum: data.get(1).copied().unwrap_or(10),
        require_sync: data.get(2).is_some_and(|b| b & 1 == 1),
    };
    let clock = ClockState {
        synchronized: data.get(3).is_some_and(|b| b & 1 == 1),
    };
    match handle(data, recv, now, &cfg, clock) {
        Ok(reply) => {
            assert_eq!(data.len(), HEADER_LEN);
            assert!(reply.len() <= data.len());
            let (req, rep) = (Header::parse(data).unwrap(), Header::parse(&reply).unwrap());
            assert_eq!(req.mode, mode::CLIENT);
            assert_eq!(rep.mode, mode::SERVER);
            assert_eq!(rep.origin, req.transmit);
            assert_eq!(rep.version, req.version);
            assert!((1..=15).contains(&rep.stratum));
            assert!(rep.receive <= rep.transmit);
            let kod = kiss_rate(data, recv, now).expect("a request that is answered can be kissed");
            assert!(kod.len() <= data.len());
        }
        Err(reason) => {
            let _ = reason.as_str();
            assert!(kiss_rate(data, recv, now).is_none());
        }
    }
});
