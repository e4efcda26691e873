//! Dev-only test support shared by every crate's tests (a dev-dependency
//! only; no product code links it).
//!
//! # Layout
//! - [`lab`]: a typed lab builder: start from a shipped config, edit the
//!   wire structs, get the TOML text or the compiled inventory (no TOML
//!   edited as strings).
//! - [`daemon`]: the real bootlabd on sockets the test bound itself
//!   (socket activation: no free-port races), its log lines, signals.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod daemon;
pub mod lab;

pub use daemon::{Daemon, Sockets};
pub use lab::LabBuilder;
