//! The pure NTP rules: what is answered, what the answer says, what gets
//! silence (RELIABILITY.md, NTP).

use std::time::{Duration, SystemTime};

use bootlab_ntp::handler::{KISS_RATE, LOCAL_REFID, PRECISION, ROOT_DISPERSION};
use bootlab_ntp::packet::{HEADER_LEN, Header, NtpTimestamp, mode};
use bootlab_ntp::{ClockState, DropReason, NtpConfig, handle, kiss_rate, respond};

const SYNCED: ClockState = ClockState { synchronized: true };
const UNSYNCED: ClockState = ClockState {
    synchronized: false,
};

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000) + Duration::from_millis(250)
}

/// A client request as chronyd sends it: version 4, mode 3, its transmit
/// time a random-looking nonce.
fn request(version: u8, mode: u8) -> [u8; HEADER_LEN] {
    Header {
        version,
        mode,
        poll: 6,
        precision: -25,
        transmit: NtpTimestamp(0x1122_3344_5566_7788),
        ..Header::default()
    }
    .encode()
}

fn reply(req: &[u8], cfg: NtpConfig, clock: ClockState) -> Header {
    let recv = t0();
    let bytes = respond(req, recv, recv + Duration::from_micros(30), &cfg, clock)
        .expect("a client request is answered");
    Header::parse(&bytes).unwrap()
}

#[test]
fn a_client_request_gets_a_local_stratum_answer_like_chrony() {
    let r = reply(&request(4, mode::CLIENT), NtpConfig::default(), SYNCED);
    assert_eq!((r.leap, r.version, r.mode), (0, 4, mode::SERVER));
    assert_eq!(r.stratum, 10);
    assert_eq!(r.poll, 6, "the client's poll is echoed");
    assert_eq!(r.precision, PRECISION);
    assert_eq!(r.root_delay, 0);
    assert_eq!(r.root_dispersion, ROOT_DISPERSION);
    assert_eq!(r.reference_id, LOCAL_REFID);
    assert_eq!(r.reference_id, [127, 127, 1, 1]);
    assert_eq!(
        r.origin,
        NtpTimestamp(0x1122_3344_5566_7788),
        "origin = client's transmit"
    );
    assert_eq!(r.receive, NtpTimestamp::from_system(t0()));
    assert_eq!(
        r.transmit,
        NtpTimestamp::from_system(t0() + Duration::from_micros(30))
    );
    assert!(r.reference <= r.receive && r.receive <= r.transmit);
    // 2027-01-15 08:00:00.250 UTC in NTP seconds.
    assert_eq!(r.receive.seconds(), 1_800_000_000 + 2_208_988_800);
}

#[test]
fn the_configured_stratum_and_the_request_version_are_used() {
    let cfg = NtpConfig {
        local_stratum: 3,
        require_sync: false,
    };
    let r = reply(&request(3, mode::CLIENT), cfg, SYNCED);
    assert_eq!((r.stratum, r.version), (3, 3));
    let wild = NtpConfig {
        local_stratum: 0,
        require_sync: false,
    };
    assert_eq!(reply(&request(4, mode::CLIENT), wild, SYNCED).stratum, 1);
}

#[test]
fn require_sync_answers_alarm_while_the_clock_is_unsynchronised() {
    let strict = NtpConfig {
        local_stratum: 10,
        require_sync: true,
    };
    assert_eq!(reply(&request(4, mode::CLIENT), strict, UNSYNCED).leap, 3);
    assert_eq!(reply(&request(4, mode::CLIENT), strict, SYNCED).leap, 0);
    // Without require_sync the clock state does not matter.
    assert_eq!(
        reply(&request(4, mode::CLIENT), NtpConfig::default(), UNSYNCED).leap,
        0
    );
}

#[test]
fn only_client_requests_are_answered() {
    let cfg = NtpConfig::default();
    let now = t0();
    let why = |b: &[u8]| handle(b, now, now, &cfg, SYNCED).unwrap_err();
    assert_eq!(why(&request(4, 6)), DropReason::ControlMode);
    assert_eq!(why(&request(2, 7)), DropReason::ControlMode);
    for m in [0, 1, 2, 4, 5] {
        assert_eq!(why(&request(4, m)), DropReason::NotARequest, "mode {m}");
    }
    assert_eq!(why(&request(0, 3)), DropReason::BadVersion);
    assert_eq!(why(&request(5, 3)), DropReason::BadVersion);
    assert!(respond(&request(1, 3), now, now, &cfg, SYNCED).is_some());
}

#[test]
fn malformed_lengths_get_no_answer() {
    let cfg = NtpConfig::default();
    let now = t0();
    let good = request(4, mode::CLIENT);
    for n in 0..HEADER_LEN {
        assert_eq!(
            handle(&good[..n], now, now, &cfg, SYNCED).unwrap_err(),
            DropReason::TooShort,
            "{n} bytes"
        );
    }
    // Extension field (RFC 7822: type, length, 16+ bytes), a legacy MAC
    // (key ID + MD5), and plain garbage after the header.
    let mut ext = good.to_vec();
    ext.extend_from_slice(&[0x01, 0x04, 0x00, 0x10]);
    ext.extend_from_slice(&[0u8; 12]);
    let mut mac = good.to_vec();
    mac.extend_from_slice(&[0, 0, 0, 1]);
    mac.extend_from_slice(&[0xaa; 16]);
    let mut garbage = good.to_vec();
    garbage.push(0xff);
    for long in [ext, mac, garbage, vec![0x23; 468]] {
        assert_eq!(
            handle(&long, now, now, &cfg, SYNCED).unwrap_err(),
            DropReason::TooLong,
            "{} bytes",
            long.len()
        );
    }
}

#[test]
fn a_reply_is_never_larger_than_its_request() {
    // Every first byte (all versions and modes) at every length up to 64.
    let cfg = NtpConfig::default();
    let now = t0();
    for first in 0..=255u8 {
        for len in 0..64 {
            let mut req = vec![0u8; len];
            if let Some(b) = req.first_mut() {
                *b = first;
            }
            if let Some(r) = respond(&req, now, now, &cfg, SYNCED) {
                assert!(r.len() <= req.len());
            }
            if let Some(k) = kiss_rate(&req, now, now) {
                assert!(k.len() <= req.len());
            }
        }
    }
}

#[test]
fn kiss_o_death_rate() {
    let now = t0();
    let k = Header::parse(&kiss_rate(&request(4, mode::CLIENT), now, now).unwrap()).unwrap();
    assert_eq!((k.leap, k.mode, k.stratum), (3, mode::SERVER, 0));
    assert_eq!(k.reference_id, KISS_RATE);
    assert_eq!(&k.reference_id, b"RATE");
    assert_eq!(k.origin, NtpTimestamp(0x1122_3344_5566_7788));
    assert!(kiss_rate(&request(4, 6), now, now).is_none());
    assert!(kiss_rate(&[0x23], now, now).is_none());
}

#[test]
fn a_transmit_time_before_the_receive_time_is_never_sent() {
    // The wall clock stepped back between receive and transmit.
    let cfg = NtpConfig::default();
    let r = respond(
        &request(4, mode::CLIENT),
        t0(),
        t0() - Duration::from_secs(5),
        &cfg,
        SYNCED,
    )
    .unwrap();
    let h = Header::parse(&r).unwrap();
    assert!(h.transmit >= h.receive);
}
