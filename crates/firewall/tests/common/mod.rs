//! Network-namespace helpers for the firewall tests, on testkit's
//! namespaces: each is unique to the test process and test and deleted on
//! drop (also when the test panics), with the servers started in it.
//! Nothing is configured outside the namespaces the tests create: all
//! `ip`/`nft` commands run inside them, and "internet" addresses
//! (198.51.100.0/24, 203.0.113.0/24, 192.0.2.0/24) exist only there.
//!
//! A missing tool or privilege fails the test loudly; nothing skips.

#![allow(dead_code)]

use std::path::Path;

use bootlab_firewall::Nft;
use bootlab_testkit::tools::{require_all, require_root};

pub use bootlab_testkit::Netns;

/// Panics with a clear message unless `nft` and `busybox` are installed
/// and we may create network namespaces (testkit checks `ip`, and `curl`
/// and `python3` where its HTTP helpers use them).
pub fn require_tools() {
    require_root();
    require_all(&[("nft", "nftables"), ("busybox", "busybox")]);
}

/// What the namespace HTTP servers serve (the golden files).
pub fn golden() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden"))
}

/// `nft` inside a namespace.
pub trait NftIn {
    /// `nft` inside this namespace.
    fn nft(&self) -> Nft;
}

impl NftIn for Netns {
    fn nft(&self) -> Nft {
        Nft::in_netns(self.name())
    }
}

/// A veth pair: `a_if` in `a`, `b_if` in `b`, both up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    bootlab_testkit::veth(a, a_if, b, b_if).up();
}
