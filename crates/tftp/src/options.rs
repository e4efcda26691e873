//! Option negotiation (RFC 2347 framework, RFC 2348 blksize, RFC 2349
//! timeout and tsize, RFC 7440 windowsize). Pure: the request's options, the
//! file's size and the server's limits in, the transfer parameters and the
//! OACK out.
//!
//! Rules:
//! - `blksize` 8..65464, clamped to what fits one unfragmented datagram on
//!   the path (`path MTU - 20 - 8 - 4`); below 8 or not a number: ignored.
//! - `timeout` 1..255 seconds: accepted and echoed; anything else ignored.
//! - `tsize` (octet mode only): answered with the file's size.
//! - `windowsize` >= 1, clamped to the server's window cap and to a byte
//!   budget per window (so a window fits a default receive buffer).
//! - Unknown options are ignored (not echoed).

use crate::packet::Mode;

/// Smallest block size RFC 2348 allows.
pub const MIN_BLKSIZE: u64 = 8;
/// Largest block size RFC 2348 allows.
pub const MAX_BLKSIZE: u16 = 65464;
/// Block size without the option (RFC 1350).
pub const DEFAULT_BLKSIZE: u16 = 512;
/// IPv4 + UDP + TFTP DATA header bytes.
const HEADERS: u32 = 20 + 8 + 4;

/// Server-side bounds for one transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest block size for this path (see [`max_blksize_for_mtu`]).
    pub max_blksize: u16,
    /// Largest window (blocks in flight).
    pub max_windowsize: u16,
    /// Largest window in bytes (`windowsize * blksize`); at least one block
    /// is always allowed.
    pub max_window_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_blksize: max_blksize_for_mtu(1500),
            max_windowsize: 64,
            max_window_bytes: 128 * 1024,
        }
    }
}

/// The largest block that fits one datagram on a path with this MTU, within
/// RFC 2348's range and never below the RFC 1350 default.
pub fn max_blksize_for_mtu(mtu: u32) -> u16 {
    let fit = mtu.saturating_sub(HEADERS);
    let fit = fit.clamp(u32::from(DEFAULT_BLKSIZE), u32::from(MAX_BLKSIZE));
    u16::try_from(fit).unwrap_or(MAX_BLKSIZE)
}

/// The parameters a transfer runs with, and the OACK that announces them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Bytes per DATA block.
    pub blksize: u16,
    /// Blocks sent before waiting for an ACK.
    pub windowsize: u16,
    /// The client's retransmission timeout in seconds, when it set one.
    pub timeout_secs: Option<u8>,
    /// Options to acknowledge, in request order; empty: no OACK, data
    /// starts at block 1 right away.
    pub oack: Vec<(&'static str, String)>,
}

/// Parses a plain decimal number (digits only, no sign, no spaces); numbers
/// too large for `u64` come back as `u64::MAX` (then clamped or refused).
fn number(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(value.parse::<u64>().unwrap_or(u64::MAX))
}

/// Negotiates the request's `options` for a file of `size` bytes.
pub fn negotiate(
    options: &[(String, String)],
    mode: Mode,
    size: u64,
    limits: &Limits,
) -> Negotiated {
    let mut blksize = DEFAULT_BLKSIZE;
    let mut windowsize: u16 = 1;
    let mut timeout_secs = None;
    let mut oack: Vec<(&'static str, String)> = Vec::new();
    // blksize first: the window budget depends on it.
    if let Some((_, v)) = options.iter().find(|(n, _)| n == "blksize") {
        if let Some(n) = number(v).filter(|n| *n >= MIN_BLKSIZE) {
            let cap = u64::from(limits.max_blksize.min(MAX_BLKSIZE));
            blksize = u16::try_from(n.min(cap)).unwrap_or(MAX_BLKSIZE);
        }
    }
    for (name, value) in options {
        match name.as_str() {
            "blksize" if number(value).is_some_and(|n| n >= MIN_BLKSIZE) => {
                oack.push(("blksize", blksize.to_string()));
            }
            "timeout" => {
                if let Some(n) = number(value).filter(|n| (1..=255).contains(n)) {
                    let n = u8::try_from(n).unwrap_or(u8::MAX);
                    timeout_secs = Some(n);
                    oack.push(("timeout", n.to_string()));
                }
            }
            // An empty file's size goes unannounced: curl rejects `tsize 0`
            // in an OACK as invalid and aborts; without it every client
            // simply gets the empty block.
            "tsize" if mode == Mode::Octet && size > 0 && number(value).is_some() => {
                oack.push(("tsize", size.to_string()));
            }
            "windowsize" => {
                if let Some(n) = number(value).filter(|n| *n >= 1) {
                    let by_bytes = (limits.max_window_bytes / usize::from(blksize)).max(1);
                    let cap = usize::from(limits.max_windowsize.max(1)).min(by_bytes);
                    let n = usize::try_from(n).unwrap_or(usize::MAX).min(cap);
                    windowsize = u16::try_from(n).unwrap_or(1);
                    oack.push(("windowsize", windowsize.to_string()));
                }
            }
            _ => {}
        }
    }
    Negotiated {
        blksize,
        windowsize,
        timeout_secs,
        oack,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn no_options_no_oack() {
        let n = negotiate(&[], Mode::Octet, 10, &Limits::default());
        assert_eq!((n.blksize, n.windowsize, n.oack.len()), (512, 1, 0));
    }

    #[test]
    fn blksize_range_and_mtu_clamp() {
        let l = Limits::default();
        let n = negotiate(&opts(&[("blksize", "1468")]), Mode::Octet, 0, &l);
        assert_eq!(n.blksize, 1468);
        let n = negotiate(&opts(&[("blksize", "65464")]), Mode::Octet, 0, &l);
        assert_eq!(n.blksize, 1468);
        assert_eq!(n.oack, vec![("blksize", "1468".to_owned())]);
        let big = Limits {
            max_blksize: max_blksize_for_mtu(65536),
            ..l
        };
        let n = negotiate(
            &opts(&[("blksize", "99999999999999999999999")]),
            Mode::Octet,
            0,
            &big,
        );
        assert_eq!(n.blksize, 65464);
        let n = negotiate(&opts(&[("blksize", "8")]), Mode::Octet, 0, &l);
        assert_eq!(n.blksize, 8);
        for bad in ["7", "0", "", "-1", "+512", "12a", " 512"] {
            let n = negotiate(&opts(&[("blksize", bad)]), Mode::Octet, 0, &l);
            assert_eq!((n.blksize, n.oack.len()), (512, 0), "{bad:?}");
        }
    }

    #[test]
    fn mtu_to_blksize() {
        assert_eq!(max_blksize_for_mtu(1500), 1468);
        assert_eq!(max_blksize_for_mtu(9000), 8968);
        assert_eq!(max_blksize_for_mtu(65536), 65464);
        assert_eq!(max_blksize_for_mtu(0), 512);
    }

    #[test]
    fn timeout_tsize_windowsize_unknown() {
        let l = Limits::default();
        let n = negotiate(
            &opts(&[
                ("timeout", "3"),
                ("tsize", "0"),
                ("windowsize", "16"),
                ("x-foo", "1"),
            ]),
            Mode::Octet,
            4242,
            &l,
        );
        assert_eq!(n.timeout_secs, Some(3));
        assert_eq!(n.windowsize, 16);
        assert_eq!(
            n.oack,
            vec![
                ("timeout", "3".to_owned()),
                ("tsize", "4242".to_owned()),
                ("windowsize", "16".to_owned())
            ]
        );
        // Huge or zero timeouts are ignored, not clamped.
        for bad in ["0", "256", "99999999999999999999999999"] {
            let n = negotiate(&opts(&[("timeout", bad)]), Mode::Octet, 0, &l);
            assert_eq!((n.timeout_secs, n.oack.len()), (None, 0), "{bad}");
        }
        // No tsize for an empty file (curl refuses `tsize 0`).
        let n = negotiate(&opts(&[("tsize", "0")]), Mode::Octet, 0, &l);
        assert!(n.oack.is_empty());
        // tsize only in octet mode.
        let n = negotiate(&opts(&[("tsize", "0")]), Mode::Netascii, 5, &l);
        assert!(n.oack.is_empty());
    }

    #[test]
    fn windowsize_clamped_by_count_and_bytes() {
        let l = Limits::default();
        let n = negotiate(&opts(&[("windowsize", "65535")]), Mode::Octet, 0, &l);
        assert_eq!(n.windowsize, 64);
        let n = negotiate(&opts(&[("windowsize", "0")]), Mode::Octet, 0, &l);
        assert_eq!((n.windowsize, n.oack.len()), (1, 0));
        let big = Limits {
            max_blksize: MAX_BLKSIZE,
            ..l
        };
        let n = negotiate(
            &opts(&[("windowsize", "64"), ("blksize", "65464")]),
            Mode::Octet,
            0,
            &big,
        );
        assert_eq!((n.blksize, n.windowsize), (65464, 2));
        assert_eq!(n.oack[0], ("windowsize", "2".to_owned()));
        // blksize 8 with other options.
        let n = negotiate(
            &opts(&[("blksize", "8"), ("windowsize", "8"), ("tsize", "0")]),
            Mode::Octet,
            100,
            &l,
        );
        assert_eq!((n.blksize, n.windowsize), (8, 8));
    }
}
