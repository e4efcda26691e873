//! The one per-peer limiter: a token bucket per key in a table of bounded
//! size, and the log gate built on it.
//!
//! # Full-table policy (the same for every user)
//! The table holds at most `max_peers` keys. A key seen for the first time
//! starts with a full bucket. When a new key arrives and the table is full,
//! the key **seen least recently** is evicted (LRU) and the new key takes
//! its place; an evicted key that comes back starts with a full bucket
//! again. So:
//! - memory is bounded whatever arrives (a spoofed-source flood of any
//!   number of addresses never grows the table past `max_peers`);
//! - what happens when full is deterministic: it depends only on the order
//!   in which keys were seen, never on hashing or timing;
//! - a peer that keeps sending stays recent and stays limited; only a flood
//!   of more than `max_peers` distinct keys between two of its packets can
//!   push it out (then it is treated as new: fail open for that key, never
//!   fail closed for everyone else).
//!
//! Every decision is counted ([`LimiterStats`]): allowed, limited, and
//! evictions, so a service exports a metric for every limit hit.
//!
//! # Log gate
//! [`LogGate`] lets one line per key through per interval (a bucket of one
//! token refilled once per interval), plus a global budget of
//! `max_lines` lines per interval across all keys, so a flood from many
//! distinct (possibly spoofed) peers cannot flood the log either.

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

/// How much a key may do: `burst` at once, then `per_sec` sustained.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Bucket size: requests allowed at once.
    pub burst: u32,
    /// Tokens added per second.
    pub per_sec: f64,
}

impl Rate {
    /// `burst` at once, then `per_sec` per second.
    pub fn new(burst: u32, per_sec: f64) -> Self {
        Self {
            burst: burst.max(1),
            per_sec: per_sec.max(0.0),
        }
    }

    /// `n` per `interval` (burst `n`).
    pub fn per_interval(n: u32, interval: Duration) -> Self {
        let secs = interval.as_secs_f64();
        let per_sec = if secs > 0.0 {
            f64::from(n) / secs
        } else {
            f64::INFINITY
        };
        Self::new(n, per_sec)
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

impl Bucket {
    fn take(&mut self, rate: Rate, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.at_ms) as f64 / 1000.0;
        let full = f64::from(rate.burst);
        self.tokens = if rate.per_sec.is_finite() {
            (self.tokens + elapsed * rate.per_sec).min(full)
        } else {
            full
        };
        self.at_ms = self.at_ms.max(now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What a limiter has decided so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimiterStats {
    /// Requests let through.
    pub allowed: u64,
    /// Requests over their key's limit (a limit hit).
    pub limited: u64,
    /// Keys evicted because the table was full.
    pub evicted: u64,
    /// Keys tracked now.
    pub peers: usize,
}

/// A token bucket per key, at most `max_peers` keys (see the module docs
/// for the full-table policy). Time is given by the caller in milliseconds
/// of any monotonic clock, so handlers with injected time stay
/// deterministic; [`SharedLimiter`] uses the process clock.
#[derive(Debug)]
pub struct PeerLimiter<K: Hash + Eq> {
    rate: Rate,
    /// Grows with the keys seen, up to `max_peers` (an `LruCache` made
    /// with its capacity allocates the whole table at once: 65,536 DHCP
    /// peers were ~2 MiB per limiter before a single packet).
    table: LruCache<K, Bucket>,
    max_peers: NonZeroUsize,
    stats: LimiterStats,
}

impl<K: Hash + Eq> PeerLimiter<K> {
    /// A limiter giving each key `rate`, tracking at most `max_peers` keys.
    pub fn new(rate: Rate, max_peers: usize) -> Self {
        Self {
            rate,
            table: LruCache::unbounded(),
            max_peers: NonZeroUsize::new(max_peers).unwrap_or(NonZeroUsize::MIN),
            stats: LimiterStats::default(),
        }
    }

    /// True when `key` may go ahead at `now_ms` (and takes a token).
    pub fn allow(&mut self, key: K, now_ms: u64) -> bool {
        let rate = self.rate;
        let ok = if let Some(b) = self.table.get_mut(&key) {
            b.take(rate, now_ms)
        } else {
            let mut b = Bucket {
                tokens: f64::from(rate.burst),
                at_ms: now_ms,
            };
            let ok = b.take(rate, now_ms);
            if self.table.len() >= self.max_peers.get() {
                self.table.pop_lru();
                self.stats.evicted += 1;
            }
            self.table.put(key, b);
            ok
        };
        if ok {
            self.stats.allowed += 1;
        } else {
            self.stats.limited += 1;
        }
        ok
    }

    /// Keys tracked.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The largest number of keys tracked.
    pub fn capacity(&self) -> usize {
        self.max_peers.get()
    }

    /// The counts so far.
    pub fn stats(&self) -> LimiterStats {
        LimiterStats {
            peers: self.table.len(),
            ..self.stats
        }
    }
}

/// A [`PeerLimiter`] behind a mutex, on the process's monotonic clock, for
/// limiters shared between tasks or threads.
#[derive(Debug)]
pub struct SharedLimiter<K: Hash + Eq> {
    start: Instant,
    inner: Mutex<PeerLimiter<K>>,
}

impl<K: Hash + Eq> SharedLimiter<K> {
    /// See [`PeerLimiter::new`].
    pub fn new(rate: Rate, max_peers: usize) -> Self {
        Self {
            start: Instant::now(),
            inner: Mutex::new(PeerLimiter::new(rate, max_peers)),
        }
    }

    /// True when `key` may go ahead now (and takes a token).
    pub fn allow(&self, key: K) -> bool {
        let now_ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow(key, now_ms)
    }

    /// The counts so far.
    pub fn stats(&self) -> LimiterStats {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).stats()
    }
}

/// Lines in total per interval a [`LogGate`] lets through by default.
pub const DEFAULT_LOG_LINES: u32 = 100;
/// Keys a [`LogGate`] tracks by default.
pub const DEFAULT_LOG_PEERS: usize = 4096;

/// One log line per key per interval, and at most `max_lines` lines per
/// interval overall (see the module docs). Thread-safe.
#[derive(Debug)]
pub struct LogGate<K: Hash + Eq> {
    start: Instant,
    inner: Mutex<GateState<K>>,
}

#[derive(Debug)]
struct GateState<K: Hash + Eq> {
    peers: PeerLimiter<K>,
    global: Bucket,
    global_rate: Rate,
    suppressed: u64,
}

impl<K: Hash + Eq> LogGate<K> {
    /// One line per key per `interval`, [`DEFAULT_LOG_LINES`] lines per
    /// interval overall, [`DEFAULT_LOG_PEERS`] keys tracked.
    pub fn new(interval: Duration) -> Self {
        Self::with_limits(interval, DEFAULT_LOG_LINES, DEFAULT_LOG_PEERS)
    }

    /// One line per key per `interval`, `max_lines` per interval overall,
    /// `max_peers` keys tracked.
    pub fn with_limits(interval: Duration, max_lines: u32, max_peers: usize) -> Self {
        let global_rate = Rate::per_interval(max_lines.max(1), interval);
        Self {
            start: Instant::now(),
            inner: Mutex::new(GateState {
                peers: PeerLimiter::new(Rate::per_interval(1, interval), max_peers),
                global: Bucket {
                    tokens: f64::from(global_rate.burst),
                    at_ms: 0,
                },
                global_rate,
                suppressed: 0,
            }),
        }
    }

    /// Whether a line about `key` may be logged now.
    pub fn allow(&self, key: K) -> bool {
        let now_ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.allow_at(key, now_ms)
    }

    /// [`LogGate::allow`] at `now_ms` milliseconds after the gate was made.
    pub fn allow_at(&self, key: K, now_ms: u64) -> bool {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let ok = g.peers.allow(key, now_ms) && {
            let rate = g.global_rate;
            g.global.take(rate, now_ms)
        };
        if !ok {
            g.suppressed += 1;
        }
        ok
    }

    /// Lines held back so far.
    pub fn suppressed(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .suppressed
    }

    /// Keys tracked now.
    pub fn peers(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .peers
            .len()
    }
}

/// Why [`PeerSlots::try_acquire`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotRefusal {
    /// This peer holds its cap already.
    PeerFull,
    /// All slots are taken.
    TotalFull,
}

/// Concurrent slots (connections) per peer and in total: a peer holds at
/// most `per_peer` at once, everyone together at most `total`. A slot is
/// held by its [`Slot`] guard and freed when the guard drops (also on
/// panic or task abort). Memory is bounded by `total`: only peers holding
/// a slot are tracked.
#[derive(Debug, Clone)]
pub struct PeerSlots<K: Hash + Eq + Clone> {
    per_peer: usize,
    total: usize,
    state: std::sync::Arc<Mutex<SlotState<K>>>,
}

#[derive(Debug)]
struct SlotState<K> {
    held: std::collections::HashMap<K, usize>,
    in_use: usize,
}

/// One held slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot<K: Hash + Eq + Clone> {
    key: K,
    state: std::sync::Arc<Mutex<SlotState<K>>>,
}

impl<K: Hash + Eq + Clone> PeerSlots<K> {
    /// `per_peer` slots per key, `total` overall (both at least 1).
    pub fn new(per_peer: usize, total: usize) -> Self {
        Self {
            per_peer: per_peer.max(1),
            total: total.max(1),
            state: std::sync::Arc::new(Mutex::new(SlotState {
                held: std::collections::HashMap::new(),
                in_use: 0,
            })),
        }
    }

    /// Takes a slot for `key`, or says why not.
    pub fn try_acquire(&self, key: K) -> Result<Slot<K>, SlotRefusal> {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mine = g.held.get(&key).copied().unwrap_or(0);
        if mine >= self.per_peer {
            return Err(SlotRefusal::PeerFull);
        }
        if g.in_use >= self.total {
            return Err(SlotRefusal::TotalFull);
        }
        g.in_use += 1;
        *g.held.entry(key.clone()).or_insert(0) += 1;
        Ok(Slot {
            key,
            state: self.state.clone(),
        })
    }

    /// Slots held now (all peers).
    pub fn in_use(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).in_use
    }

    /// Peers holding at least one slot.
    pub fn peers(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .held
            .len()
    }
}

impl<K: Hash + Eq + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        g.in_use = g.in_use.saturating_sub(1);
        if let Some(n) = g.held.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                g.held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refills_at_the_rate() {
        let mut r = PeerLimiter::new(Rate::new(2, 1.0), 10);
        assert!(r.allow(1, 0));
        assert!(r.allow(1, 0));
        assert!(!r.allow(1, 0));
        assert!(!r.allow(1, 500));
        assert!(r.allow(1, 1000));
        assert!(r.allow(2, 1000), "other keys have their own bucket");
        let s = r.stats();
        assert_eq!((s.allowed, s.limited, s.peers), (4, 2, 2));
    }

    #[test]
    fn full_table_evicts_the_least_recently_seen_key() {
        let mut r = PeerLimiter::new(Rate::new(1, 0.0), 3);
        for k in 0..3 {
            assert!(r.allow(k, 0));
        }
        // Key 0 is seen again: 1 is now the least recently seen.
        assert!(!r.allow(0, 0));
        assert!(r.allow(3, 0), "a new key gets a full bucket");
        assert_eq!(r.stats().evicted, 1);
        assert!(!r.allow(0, 0), "0 was kept (recent) and is still limited");
        assert!(!r.allow(2, 0), "2 was kept and is still limited");
        assert!(r.allow(1, 0), "1 was evicted and starts afresh");
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn memory_is_bounded_under_a_flood_of_distinct_keys() {
        let mut r = PeerLimiter::new(Rate::new(2, 1.0), 100);
        for k in 0..100_000u32 {
            r.allow(k, u64::from(k));
            assert!(r.len() <= 100);
        }
        assert_eq!(r.stats().evicted, 100_000 - 100);
    }

    #[test]
    fn a_steady_abuser_stays_limited_while_others_churn() {
        // 10 new keys between two of the abuser's packets, table of 64: the
        // abuser is never the least recently seen, so it stays limited.
        let mut r = PeerLimiter::new(Rate::new(4, 0.0), 64);
        let mut limited = 0;
        let mut next = 1000u32;
        for _ in 0..1000 {
            if !r.allow(1, 0) {
                limited += 1;
            }
            for _ in 0..10 {
                r.allow(next, 0);
                next += 1;
            }
        }
        assert_eq!(limited, 1000 - 4);
    }

    #[test]
    fn log_gate_once_per_key_per_interval_and_a_global_budget() {
        let g = LogGate::with_limits(Duration::from_secs(10), 3, 100);
        assert!(g.allow_at("a", 0));
        assert!(!g.allow_at("a", 1));
        assert!(g.allow_at("b", 2));
        assert!(g.allow_at("c", 3));
        assert!(!g.allow_at("d", 4), "global budget of 3 per interval");
        assert!(g.allow_at("a", 10_001));
        assert_eq!(g.suppressed(), 2);
        let zero = LogGate::new(Duration::ZERO);
        assert!(zero.allow("a") && zero.allow("a"));
    }

    #[test]
    fn log_gate_memory_is_bounded() {
        let g = LogGate::with_limits(Duration::from_secs(3600), 10, 50);
        for k in 0..10_000u32 {
            g.allow_at(k, 0);
        }
        assert!(g.peers() <= 50);
    }

    #[test]
    fn slots_cap_each_peer_and_the_total() {
        let s = PeerSlots::new(2, 3);
        let a1 = s.try_acquire("a").unwrap();
        let _a2 = s.try_acquire("a").unwrap();
        assert_eq!(s.try_acquire("a").unwrap_err(), SlotRefusal::PeerFull);
        let _b1 = s.try_acquire("b").unwrap();
        assert_eq!(s.try_acquire("c").unwrap_err(), SlotRefusal::TotalFull);
        drop(a1);
        let _c1 = s.try_acquire("c").unwrap();
        assert_eq!((s.in_use(), s.peers()), (3, 3));
    }

    #[test]
    fn shared_limiter_counts() {
        let l = SharedLimiter::new(Rate::new(1, 0.0), 8);
        assert!(l.allow("x"));
        assert!(!l.allow("x"));
        assert_eq!(l.stats().limited, 1);
    }
}
