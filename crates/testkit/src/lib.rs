//! Dev-only test support shared by every crate's tests (a dev-dependency
//! only; no product code links it). It owns the scaffolding the tests used
//! to copy: network namespaces, loopback ports, daemon and service handles,
//! typed inventories.
//!
//! # Layout
//! - [`lab`]: a typed lab builder: start from a shipped config (or the
//!   namespace tests' one-node lab), edit the wire structs, get the TOML
//!   text or the compiled inventory (no TOML edited as strings); a temp
//!   directory with an assets root ([`lab::LabDir`]).
//! - [`daemon`]: the real bootlabd on sockets the test bound itself
//!   (socket activation: no free-port races), or wrapped in `ip netns
//!   exec`; its log lines, signals.
//! - [`netns`]: network namespaces deleted on drop (also after a panic),
//!   veth pairs, bridges, taps, addresses, commands and sockets inside.
//! - [`net`]: loopback addresses: a refused one, listeners sharing a port,
//!   and free ports for programs that bind themselves.
//! - [`service`]: an in-process service task, cancelled on drop.
//! - [`tools`]: peer tools that must be installed, root, commands that
//!   must succeed.
//! - [`wait_until`] and [`PATIENCE`]: bounded waits (hang guards, never
//!   timing assertions); [`repo_root`].

#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod daemon;
pub mod lab;
pub mod net;
pub mod netns;
pub mod service;
pub mod tools;

pub use daemon::{Daemon, Sockets};
pub use lab::{LabBuilder, LabDir};
pub use netns::{Netns, veth};
pub use service::Service;

/// How long a test waits for something that should happen soon (a log
/// line, a port, a reload) before it fails: a hang guard, never a timing
/// assertion.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The workspace root (scripts under `tests/`, `boot-assets/`, `config/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Polls `ready` every 50 ms until it holds; panics after [`PATIENCE`].
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what}: not done after {PATIENCE:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
