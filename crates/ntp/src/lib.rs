//! bootlab's NTP server: answers NTPv4 client requests (RFC 5905) for the
//! lab as chrony's `local stratum 10` does, so machines booted by the lab
//! agree on the time with the services node. Never a client: keeping the
//! services node's own clock right is the OS's job (chrony, systemd-
//! timesyncd); with `require_sync` the answers say when it is not.
//!
//! What it owns: the NTP header format, which datagrams get an answer
//! (client requests only, never larger than the request), what the answer
//! says (stratum, reference ID, dispersion, leap indicator), the
//! per-client rate limit with kiss-o'-death RATE, and the socket loop. It
//! depends on `bootlab_netio` only; the daemon wires it to the inventory.
//!
//! # Layout
//! - [`packet`]: the 48-byte header and NTP timestamps. Pure.
//! - [`handler`]: [`respond`] / [`handle`] / [`kiss_rate`]: the pure rules;
//!   the tests of packet logic live there and in `tests/handler.rs`.
//! - [`clock`]: the kernel's synchronisation state (`adjtimex`, read-only;
//!   the crate's only `unsafe`, explained there).
//! - [`server`]: [`serve`] / [`serve_with`], [`NtpCounters`].
//!
//! # Why not ntp-proto
//! The issue asked to evaluate `ntp-proto` (ntpd-rs) for the packet format
//! first. Measured with ntp-proto 1.9.0 (the current release): its README
//! says it "is not intended as a public interface at this time" and that
//! its version "is not intended to give any stability guarantee"; it
//! resolves to about 55 crates, among them rustls, aws-lc-rs/aws-lc-sys (a
//! C library built with cmake), aes-siv and md-5, for NTS and MACs this
//! server refuses by design; and its server-side response builder
//! (`NtpPacket::timestamp_response`) needs its daemon's `SystemSnapshot`
//! and `NtpClock` types rather than taking plain values. The fixed 48-byte
//! header is twelve fields at fixed offsets (`packet.rs`, fuzzed by
//! `fuzz/fuzz_targets/ntp_request.rs`), so it is written here.

#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod clock;
pub mod handler;
pub mod packet;
pub mod server;

pub use clock::kernel_clock_state;
pub use handler::{ClockState, DropReason, NtpConfig, handle, kiss_rate, parse_request, respond};
pub use server::{NtpCounters, ServeOptions, serve, serve_with};
