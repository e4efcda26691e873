//! The DNS-learned address set: addresses the forwarder resolved for names
//! under `egress.allow_domains`, each kept for its record's TTL.
//!
//! The DNS crate emits `(name, address, ttl)` on a channel; bootlabd turns
//! each into [`LearnedSet::add`] (or collects a burst into
//! [`LearnedSet::add_many`]), *before* it sends the answer to the client, so
//! the first connection after resolving already passes.
//!
//! The kernel does the expiry: each element carries its own timeout and stops
//! matching when it runs out. A newer answer for the same address never
//! shortens its life (two names may share an address with different TTLs),
//! and TTLs are clamped to [`TtlBounds`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::batch::learn_batch;
use crate::live::LearnedElement;
use crate::ruleset::LEARNED_SET;
use crate::table::{BootlabTable, Nft, TableError};

/// Shortest and longest time an address stays in the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlBounds {
    /// Lower bound (nft needs at least one second).
    pub min: Duration,
    /// Upper bound, so an upstream cannot pin an address forever.
    pub max: Duration,
}

impl Default for TtlBounds {
    fn default() -> Self {
        Self {
            min: Duration::from_secs(1),
            max: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// What [`LearnedSet::add`] did with one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// In the set now, expiring after this long.
    Added(Duration),
    /// IPv6 (or other non-IPv4): the lab is IPv4-only and its IPv6 egress is
    /// dropped anyway; nothing was added.
    NotIpv4,
}

/// The `learned_destinations` set of `table inet bootlab`.
#[derive(Debug)]
pub struct LearnedSet {
    nft: Nft,
    bounds: TtlBounds,
    /// When each address we added expires, to never shorten a timeout.
    deadlines: Mutex<HashMap<Ipv4Addr, Instant>>,
}

impl LearnedSet {
    /// The set in the table reached through `nft`, default TTL bounds.
    pub fn new(nft: Nft) -> Self {
        Self::with_bounds(nft, TtlBounds::default())
    }

    /// The set with explicit TTL bounds.
    pub fn with_bounds(nft: Nft, bounds: TtlBounds) -> Self {
        Self {
            nft,
            bounds,
            deadlines: Mutex::new(HashMap::new()),
        }
    }

    /// Lets `addr` through for `ttl` (clamped, never shortening an earlier
    /// grant). Fails when the set does not exist (firewall not applied, or
    /// not the gateway) or nft refuses.
    pub fn add(&self, addr: IpAddr, ttl: Duration) -> Result<Learned, TableError> {
        Ok(self
            .add_many(&[(addr, ttl)])?
            .pop()
            .unwrap_or(Learned::NotIpv4))
    }

    /// [`LearnedSet::add`] for many addresses in one transaction; one
    /// outcome per input, in order.
    pub fn add_many(&self, entries: &[(IpAddr, Duration)]) -> Result<Vec<Learned>, TableError> {
        let now = Instant::now();
        let mut deadlines = self.deadlines.lock().unwrap_or_else(|e| e.into_inner());
        deadlines.retain(|_, d| *d > now);
        let mut batch = Vec::new();
        let mut outcomes = Vec::with_capacity(entries.len());
        for &(addr, ttl) in entries {
            let IpAddr::V4(v4) = addr else {
                outcomes.push(Learned::NotIpv4);
                continue;
            };
            let ttl = ttl.clamp(self.bounds.min, self.bounds.max);
            let remaining = deadlines
                .get(&v4)
                .map(|d| d.saturating_duration_since(now))
                .unwrap_or_default();
            let grant = ttl.max(remaining);
            // Whole seconds, rounded up, as nft stores them.
            let grant = Duration::from_secs(grant.as_secs() + u64::from(grant.subsec_nanos() > 0));
            batch.push((v4, grant));
            outcomes.push(Learned::Added(grant));
        }
        if !batch.is_empty() {
            self.nft
                .run_batch(&learn_batch(&batch), "add learned addresses")?;
            for (v4, grant) in batch {
                deadlines.insert(v4, now + grant);
            }
        }
        Ok(outcomes)
    }

    /// The set's current elements with their remaining time (empty when the
    /// table or set does not exist).
    pub fn elements(&self) -> Result<Vec<LearnedElement>, TableError> {
        let table = BootlabTable::new(self.nft.clone());
        Ok(table
            .state()?
            .and_then(|s| s.set(LEARNED_SET).map(|set| set.elements.clone()))
            .unwrap_or_default())
    }
}
