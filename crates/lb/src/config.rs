//! The runtime configuration of the balancers: plain data built from the
//! inventory's `[[balancers]]` (`From<&bootlab_inventory::Balancer>`, which
//! resolved backends and `drain` already); tests and the bench example
//! build them directly. The algorithm and health-check kinds are the
//! inventory's own types.
//!
//! Every field has the inventory's default where the inventory has one
//! ([`BalancerConfig::new`]); [`Limits::default`] documents the rest.

use std::net::SocketAddr;
use std::time::Duration;

pub use bootlab_inventory::{Algorithm, HealthCheck};

/// One balancer: a listening address and the backends it spreads
/// connections over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalancerConfig {
    /// The balancer's name (`[[balancers]] name`); unique among balancers,
    /// the key that keeps state across a reload.
    pub name: String,
    /// Where it listens (`address`/`services.ip` and `port`).
    pub listen: SocketAddr,
    /// The backends, in inventory order (that order is the round-robin
    /// order).
    pub backends: Vec<BackendConfig>,
    /// How a backend is picked for a new connection.
    pub algorithm: Algorithm,
    /// What a health check does.
    pub check: HealthCheck,
    /// Time between two checks of one backend; also each check's timeout.
    pub interval: Duration,
    /// Consecutive passed checks that bring a down backend up.
    pub rise: u32,
    /// Consecutive failed checks that take an up backend down.
    pub fall: u32,
    /// Connection cap, timeouts and attempts.
    pub limits: Limits,
}

impl BalancerConfig {
    /// A balancer with the inventory's defaults: roundrobin, tcp checks every
    /// 5 s, rise 2, fall 3, [`Limits::default`].
    pub fn new(name: impl Into<String>, listen: SocketAddr, backends: Vec<BackendConfig>) -> Self {
        Self {
            name: name.into(),
            listen,
            backends,
            algorithm: Algorithm::RoundRobin,
            check: HealthCheck::Tcp,
            interval: Duration::from_secs(5),
            rise: 2,
            fall: 3,
            limits: Limits::default(),
        }
    }
}

/// One backend of a balancer: a node's address and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendConfig {
    /// The node's name (shown in status and events).
    pub name: String,
    /// Where connections go (node address, `backend_port`).
    pub addr: SocketAddr,
    /// `drain = true` on the node or its role: no new connections, no checks;
    /// open connections finish.
    pub drained: bool,
}

impl BackendConfig {
    /// An undrained backend.
    pub fn new(name: impl Into<String>, addr: SocketAddr) -> Self {
        Self {
            name: name.into(),
            addr,
            drained: false,
        }
    }
}

/// Limits of one balancer. Defaults follow the OKD documentation's sample
/// haproxy configuration where it has a value (connect 10 s is shortened to
/// 5 s: a lab's backends are one switch away).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Client connections open at once (default 4096). Past it a new client
    /// is closed at once (no bytes), counted and logged rate-limited.
    pub max_connections: usize,
    /// Time allowed for one connect to a backend (default 5 s); on expiry the
    /// next healthy backend is tried.
    pub connect_timeout: Duration,
    /// Backends tried for one client before it is closed (default 3;
    /// haproxy's `retries 2` + `option redispatch 1`).
    pub max_connect_attempts: u32,
    /// A connection on which no byte moves in either direction for this long
    /// is closed (default 5 min). Counts from accept, so a client that sends
    /// nothing holds its slot for at most this long.
    pub idle_timeout: Duration,
    /// Size of each direction's copy buffer (default 64 KiB; haproxy uses
    /// 16 KiB).
    pub buffer_size: usize,
    /// A direction that fills a whole buffer in one read (a bulk transfer)
    /// continues with splice(2) through a pipe instead of copying through
    /// user space, as haproxy's `option splice-auto` (default true: about
    /// 45% less CPU per GiB streamed, no cost per connection; docs/lb.md,
    /// "Zero-copy").
    pub zero_copy: bool,
    /// On shutdown, how long open connections may still run (default 5 s).
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            connect_timeout: Duration::from_secs(5),
            max_connect_attempts: 3,
            idle_timeout: Duration::from_secs(300),
            buffer_size: 64 * 1024,
            zero_copy: true,
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// The inventory's balancer, as runtime configuration with default limits.
impl From<&bootlab_inventory::Balancer> for BalancerConfig {
    fn from(b: &bootlab_inventory::Balancer) -> Self {
        Self {
            name: b.name.clone(),
            listen: SocketAddr::V4(b.listen),
            backends: b
                .backends
                .iter()
                .map(|x| BackendConfig {
                    name: x.node.clone(),
                    addr: SocketAddr::V4(x.addr),
                    drained: x.drained,
                })
                .collect(),
            algorithm: b.algorithm,
            check: b.check.clone(),
            interval: b.interval,
            rise: b.rise,
            fall: b.fall,
            limits: Limits::default(),
        }
    }
}
