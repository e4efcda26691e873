//! The NTPv4 header (RFC 5905 section 7.3): 48 bytes, parsed and written
//! field by field. Pure.
//!
//! Only the fixed header exists here: a server that never answers anything
//! longer than 48 bytes has no use for extension fields or MACs, and never
//! needs to walk them (the handler drops such requests by their length).

use std::time::{Duration, SystemTime};

/// Bytes in the fixed header (and in every datagram this server accepts
/// or sends).
pub const HEADER_LEN: usize = 48;

/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch.
const UNIX_OFFSET: u64 = 2_208_988_800;

/// A 64-bit NTP timestamp: seconds since 1900 (era 0, wrapping in 2036 as
/// the format does) and a 32-bit binary fraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct NtpTimestamp(pub u64);

impl NtpTimestamp {
    /// `t` in NTP format (times before 1970 map to zero).
    pub fn from_system(t: SystemTime) -> Self {
        let d = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let secs = (d.as_secs() + UNIX_OFFSET) & 0xffff_ffff;
        let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
        Self((secs << 32) | frac)
    }

    /// The whole seconds part.
    pub fn seconds(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// This timestamp with its fraction cleared.
    pub fn floor_seconds(self) -> Self {
        Self(self.0 & !0xffff_ffff)
    }
}

/// Leap indicator values.
pub mod leap {
    /// No warning.
    pub const NONE: u8 = 0;
    /// Alarm: the clock is not synchronised.
    pub const ALARM: u8 = 3;
}

/// Association modes.
pub mod mode {
    /// Symmetric active.
    pub const SYMMETRIC_ACTIVE: u8 = 1;
    /// Client request.
    pub const CLIENT: u8 = 3;
    /// Server reply.
    pub const SERVER: u8 = 4;
    /// Broadcast.
    pub const BROADCAST: u8 = 5;
    /// NTP control messages (ntpq).
    pub const CONTROL: u8 = 6;
    /// Private (ntpdc "monlist").
    pub const PRIVATE: u8 = 7;
}

/// The fixed NTP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Leap indicator (2 bits).
    pub leap: u8,
    /// Version (3 bits).
    pub version: u8,
    /// Mode (3 bits).
    pub mode: u8,
    /// Stratum.
    pub stratum: u8,
    /// Poll interval, log2 seconds.
    pub poll: i8,
    /// Precision, log2 seconds.
    pub precision: i8,
    /// Root delay, NTP short format (16.16 seconds).
    pub root_delay: u32,
    /// Root dispersion, NTP short format (16.16 seconds).
    pub root_dispersion: u32,
    /// Reference ID (an address, or four ASCII characters).
    pub reference_id: [u8; 4],
    /// When the clock was last set or corrected.
    pub reference: NtpTimestamp,
    /// Origin: the client's transmit time, echoed.
    pub origin: NtpTimestamp,
    /// Receive: when the request arrived.
    pub receive: NtpTimestamp,
    /// Transmit: when the reply left.
    pub transmit: NtpTimestamp,
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

impl Header {
    /// Parses the first 48 bytes of `data`; `None` when it is shorter.
    pub fn parse(data: &[u8]) -> Option<Self> {
        let b = data.get(..HEADER_LEN)?;
        Some(Self {
            leap: b[0] >> 6,
            version: (b[0] >> 3) & 7,
            mode: b[0] & 7,
            stratum: b[1],
            poll: i8::from_be_bytes([b[2]]),
            precision: i8::from_be_bytes([b[3]]),
            root_delay: be32(&b[4..8]),
            root_dispersion: be32(&b[8..12]),
            reference_id: [b[12], b[13], b[14], b[15]],
            reference: NtpTimestamp(be64(&b[16..24])),
            origin: NtpTimestamp(be64(&b[24..32])),
            receive: NtpTimestamp(be64(&b[32..40])),
            transmit: NtpTimestamp(be64(&b[40..48])),
        })
    }

    /// The 48 bytes on the wire.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = (self.leap & 3) << 6 | (self.version & 7) << 3 | (self.mode & 7);
        b[1] = self.stratum;
        b[2] = self.poll.to_be_bytes()[0];
        b[3] = self.precision.to_be_bytes()[0];
        b[4..8].copy_from_slice(&self.root_delay.to_be_bytes());
        b[8..12].copy_from_slice(&self.root_dispersion.to_be_bytes());
        b[12..16].copy_from_slice(&self.reference_id);
        b[16..24].copy_from_slice(&self.reference.0.to_be_bytes());
        b[24..32].copy_from_slice(&self.origin.0.to_be_bytes());
        b[32..40].copy_from_slice(&self.receive.0.to_be_bytes());
        b[40..48].copy_from_slice(&self.transmit.0.to_be_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = Header {
            leap: 3,
            version: 4,
            mode: 3,
            stratum: 2,
            poll: -3,
            precision: -20,
            root_delay: 0x0001_8000,
            root_dispersion: 7,
            reference_id: *b"LOCL",
            reference: NtpTimestamp(1),
            origin: NtpTimestamp(u64::MAX),
            receive: NtpTimestamp(3),
            transmit: NtpTimestamp(4),
        };
        assert_eq!(Header::parse(&h.encode()), Some(h));
        assert_eq!(Header::parse(&[0u8; 47]), None);
    }

    #[test]
    fn timestamps_from_the_system_clock() {
        let unix = SystemTime::UNIX_EPOCH;
        assert_eq!(NtpTimestamp::from_system(unix).seconds(), 2_208_988_800);
        let half = NtpTimestamp::from_system(unix + Duration::from_millis(500));
        assert_eq!(half.0 & 0xffff_ffff, 1 << 31);
        assert_eq!(half.floor_seconds().0 & 0xffff_ffff, 0);
        // 2036-02-07 06:28:16 UTC wraps to era 1 (seconds 0).
        let wrap = unix + Duration::from_secs((1u64 << 32) - 2_208_988_800);
        assert_eq!(NtpTimestamp::from_system(wrap).seconds(), 0);
    }
}
