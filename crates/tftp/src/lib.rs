//! Read-only TFTP for network boot: files from `services.assets_dir`
//! (confined by path resolution), virtual per-machine boot configs rendered
//! from the inventory, and the options that make TFTP fast enough for
//! kernels and initrds (RFC 2347 framework, RFC 2348 blksize, RFC 2349
//! timeout/tsize, RFC 7440 windowsize).
//!
//! # Layout
//! - [`packet`]: the wire format; request parsing (the fuzzed parser) and
//!   packet encoding. Pure.
//! - [`options`]: option negotiation against the server's limits. Pure.
//! - [`source`]: what a file name means: a virtual per-MAC file, a confined
//!   file under the assets root, or a refusal with its ERROR packet.
//! - [`transfer`]: the windowed send loop: retransmit with backoff, give-up
//!   bound, no Sorcerer's Apprentice, block-number rollover.
//! - [`net`]: packet info through `bootlab_netio` (answer from the address
//!   the client talked to), per-transfer sockets, path MTU.
//! - [`server`]: the listening loop: refusals, session cap, metrics,
//!   rate-limited logs and ERROR replies (`bootlab_netio`'s limiter),
//!   timeline events. Entry points [`serve`] and
//!   [`serve_with`].
//!
//! # Why not async-tftp
//! The issue asked for `async-tftp` 0.4 with our own handler unless
//! measurements showed it cannot reach the targets. Measured on a veth pair
//! between two network namespaces (64 MiB file, atftp client, same run,
//! async-tftp 0.4.2's `DirHandler` vs tftpd-hpa 5.2): lock-step 512-byte
//! blocks 4.15 s vs 2.37 s, lock-step 1468-byte blocks 1.19 s vs 0.61 s
//! (both about half of tftpd-hpa's speed; the target is parity), and
//! `windowsize 16` 0.53 s (1.15x tftpd-hpa's 1468 lock-step; the target is
//! 4x). Its per-block reads go through a blocking thread pool and every
//! session shares one single-threaded executor. It also offers no hook for
//! the rest of the issue: it drops malformed requests silently (no metrics,
//! no log), binds transfer sockets to the listening address (with a
//! `0.0.0.0` bind the kernel picks the source address, not the one the
//! client talked to), retransmits at a fixed interval (100 times by
//! default) without backoff, has no session cap, clamps `blksize` to one
//! fixed limit rather than the path MTU, and its handler cannot tell a
//! finished transfer from an aborted one (needed for the timeline). So the
//! transfer loop here is our own.
//!
//! Ours, same setup, `bench/tftp.sh` (best of 5, servers alternating, on a
//! 2-core machine shared with four other engineers' builds, load average
//! 4-10, so expect +-20% run to run): lock-step 512 0.78x-1.04x tftpd-hpa,
//! lock-step 1468 0.85x-1.13x (parity within the noise; lower ratios at
//! higher load), windowsize 16 0.148-0.177 s for 64 MiB (~440 MB/s) =
//! 3.1x-3.9x tftpd-hpa's lock-step 1468 in the same run, short of the 4x
//! target here, and 5x-5.8x the 0.86 s reference in the issue. What makes
//! the windowed case fast: one `UDP_SEGMENT` send per window, one `preadv`
//! per window read ahead while the client works, no per-block allocation.
//! Tried and measured slower, so not kept: an optimistic non-blocking
//! `recv` before waiting for each ACK (lock-step 0.66x/0.72x).
//!
//! TFTP runs on a thread of its own (a current-thread runtime, see
//! [`serve_with`]). Measured against the caller's multi-thread runtime,
//! same binary, same runs: alone (`bench/tftp.sh`, best of 3) lock-step
//! 512 and 1468 at parity both ways, windowed 0.308 s vs 0.280 s (10%
//! slower, still 8.8x tftpd-hpa's lock-step); in a 500-client boot storm
//! (`bench/storm.sh`, 64 MiB each) the TFTP phase took 3.7 s per client
//! (max 6.0 s) vs 7.1 s (max 21 s), and at 300 clients x 2 MiB 1.7 s vs
//! 2.6 s (mean of 4 and 3 runs). A storm is what a lab meets, so the
//! thread stays.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod net;
pub mod options;
pub mod packet;
pub mod server;
pub mod source;
pub mod transfer;

pub use server::{TftpConfig, serve, serve_with};
pub use transfer::Retransmit;
