//! The pure request handler: request bytes, receive time, transmit time,
//! configuration and clock state in; a reply (or the reason for silence)
//! out. Every protocol rule lives and is tested here.
//!
//! What is answered: exactly 48 bytes, version 1 to 4, mode 3 (client).
//! Everything else gets no answer, counted by [`DropReason`]: shorter or
//! longer datagrams (extension fields, MACs, trailing garbage: a reply is
//! then never larger than its request, which is always 48 bytes), modes
//! 6/7 (control and private: the amplification vectors of old ntpd),
//! server, broadcast and symmetric modes, unknown versions.
//!
//! The reply is what chrony 4.3 with `local stratum 10` sends (measured:
//! LI 0, stratum 10, the client's poll echoed, root delay 0, reference ID
//! 127.127.1.1), with these choices:
//! - stratum: [`NtpConfig::local_stratum`];
//! - reference ID: `7F 7F 01 01` (127.127.1.1, the local-clock ID chrony
//!   and ntpd use for their local reference);
//! - root delay 0: there is no upstream path;
//! - root dispersion [`ROOT_DISPERSION`] (2^-10 s, about 1 ms): chrony
//!   reports 0, which claims a perfect reference; a millisecond is honest
//!   about an undisciplined local clock and far below every client's
//!   distance limit (chrony's `maxdistance` is 3 s);
//! - precision [`PRECISION`] (2^-20 s, about 1 us): what our timestamps
//!   are good to (kernel receive timestamp, transmit taken just before the
//!   send);
//! - reference time: the receive time rounded down to the second;
//! - leap indicator 3 (alarm) instead of 0 when
//!   [`NtpConfig::require_sync`] is set and the kernel reports the clock
//!   unsynchronised, so clients do not take an unset clock as truth.
//!
//! A client over its rate limit gets a kiss-o'-death instead ([`kiss_rate`]):
//! stratum 0, reference ID `RATE`, LI 3; the server limits those too.

use std::time::SystemTime;

use crate::packet::{HEADER_LEN, Header, NtpTimestamp, leap, mode};

/// Root dispersion sent, in NTP short format: 2^-10 s (about 1 ms).
pub const ROOT_DISPERSION: u32 = 1 << 6;
/// Precision sent, log2 seconds: 2^-20 s (about 1 us).
pub const PRECISION: i8 = -20;
/// Reference ID of a local clock: 127.127.1.1.
pub const LOCAL_REFID: [u8; 4] = [127, 127, 1, 1];
/// Kiss code of a rate-limit kiss-o'-death.
pub const KISS_RATE: [u8; 4] = *b"RATE";

/// What the server answers with. The lead wires it from the inventory's
/// `[ntp]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NtpConfig {
    /// Stratum reported to clients (chrony's `local stratum`; 1..=15).
    pub local_stratum: u8,
    /// Answer LI=3 (alarm) while the kernel reports the clock
    /// unsynchronised.
    pub require_sync: bool,
}

impl Default for NtpConfig {
    fn default() -> Self {
        Self {
            local_stratum: 10,
            require_sync: false,
        }
    }
}

/// What the kernel says about the system clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockState {
    /// Disciplined by a time service (not `STA_UNSYNC` / `TIME_ERROR`).
    pub synchronized: bool,
}

/// Why a datagram got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than the 48-byte header.
    TooShort,
    /// Longer than 48 bytes: extension fields, a MAC or garbage.
    TooLong,
    /// Version 0 or above 4.
    BadVersion,
    /// Mode 6 or 7 (control / private).
    ControlMode,
    /// Any other mode than a client request.
    NotARequest,
}

impl DropReason {
    /// Every reason, for registering counters up front.
    pub const ALL: [Self; 5] = [
        Self::TooShort,
        Self::TooLong,
        Self::BadVersion,
        Self::ControlMode,
        Self::NotARequest,
    ];

    /// A label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooShort => "too_short",
            Self::TooLong => "too_long",
            Self::BadVersion => "bad_version",
            Self::ControlMode => "control_mode",
            Self::NotARequest => "not_a_request",
        }
    }
}

/// The request's header when it is one this server answers.
pub fn parse_request(request: &[u8]) -> Result<Header, DropReason> {
    if request.len() < HEADER_LEN {
        return Err(DropReason::TooShort);
    }
    if request.len() > HEADER_LEN {
        return Err(DropReason::TooLong);
    }
    let h = Header::parse(request).ok_or(DropReason::TooShort)?;
    if h.mode == mode::CONTROL || h.mode == mode::PRIVATE {
        return Err(DropReason::ControlMode);
    }
    if !(1..=4).contains(&h.version) {
        return Err(DropReason::BadVersion);
    }
    if h.mode != mode::CLIENT {
        return Err(DropReason::NotARequest);
    }
    Ok(h)
}

/// The reply to `request`, received at `recv_time` and answered at `now`,
/// or why there is none.
pub fn handle(
    request: &[u8],
    recv_time: SystemTime,
    now: SystemTime,
    cfg: &NtpConfig,
    clock: ClockState,
) -> Result<[u8; HEADER_LEN], DropReason> {
    let req = parse_request(request)?;
    let receive = NtpTimestamp::from_system(recv_time);
    let alarm = cfg.require_sync && !clock.synchronized;
    Ok(Header {
        leap: if alarm { leap::ALARM } else { leap::NONE },
        version: req.version,
        mode: mode::SERVER,
        stratum: cfg.local_stratum.clamp(1, 15),
        poll: req.poll,
        precision: PRECISION,
        root_delay: 0,
        root_dispersion: ROOT_DISPERSION,
        reference_id: LOCAL_REFID,
        reference: receive.floor_seconds(),
        origin: req.transmit,
        receive,
        transmit: NtpTimestamp::from_system(now.max(recv_time)),
    }
    .encode())
}

/// [`handle`] without the reason: the reply, if any.
pub fn respond(
    request: &[u8],
    recv_time: SystemTime,
    now: SystemTime,
    cfg: &NtpConfig,
    clock: ClockState,
) -> Option<[u8; HEADER_LEN]> {
    handle(request, recv_time, now, cfg, clock).ok()
}

/// The rate-limit kiss-o'-death (RFC 5905 section 7.4) for `request`:
/// stratum 0, reference ID `RATE`, LI 3, the client's transmit time as
/// origin so the client recognises it; `None` when the request would get
/// no answer anyway.
pub fn kiss_rate(
    request: &[u8],
    recv_time: SystemTime,
    now: SystemTime,
) -> Option<[u8; HEADER_LEN]> {
    let req = parse_request(request).ok()?;
    let receive = NtpTimestamp::from_system(recv_time);
    Some(
        Header {
            leap: leap::ALARM,
            version: req.version,
            mode: mode::SERVER,
            stratum: 0,
            poll: req.poll,
            precision: PRECISION,
            root_delay: 0,
            root_dispersion: 0,
            reference_id: KISS_RATE,
            reference: NtpTimestamp(0),
            origin: req.transmit,
            receive,
            transmit: NtpTimestamp::from_system(now.max(recv_time)),
        }
        .encode(),
    )
}
