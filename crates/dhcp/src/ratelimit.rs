//! Bounded rate limiters: per-MAC token buckets (starvation floods) and a
//! once-per-key-per-interval gate for log lines (no log floods).
//!
//! Both tables have a fixed maximum size; when full, idle entries are
//! forgotten, and if none are idle the table starts over (fail open), so
//! memory stays flat whatever arrives.

use std::collections::HashMap;
use std::hash::Hash;

/// A token bucket per key.
#[derive(Debug, Clone)]
pub struct RateLimiter<K> {
    buckets: HashMap<K, Bucket>,
    burst: u32,
    per_sec: u32,
    max_keys: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens times 1000.
    milli_tokens: u64,
    at_ms: u64,
}

impl<K: Hash + Eq + Copy> RateLimiter<K> {
    /// `burst` requests at once, `per_sec` sustained, at most `max_keys` keys tracked.
    pub fn new(burst: u32, per_sec: u32, max_keys: usize) -> Self {
        Self {
            buckets: HashMap::new(),
            burst: burst.max(1),
            per_sec,
            max_keys: max_keys.max(1),
        }
    }

    /// True when `key` may go ahead at `now_ms` (and takes a token).
    pub fn allow(&mut self, key: K, now_ms: u64) -> bool {
        let full = u64::from(self.burst) * 1000;
        let rate = u64::from(self.per_sec);
        if !self.buckets.contains_key(&key) && self.buckets.len() >= self.max_keys {
            // Forget buckets that have refilled: they hold no information.
            self.buckets
                .retain(|_, b| b.milli_tokens + now_ms.saturating_sub(b.at_ms) * rate < full);
            if self.buckets.len() >= self.max_keys {
                self.buckets.clear();
            }
        }
        let b = self.buckets.entry(key).or_insert(Bucket {
            milli_tokens: full,
            at_ms: now_ms,
        });
        let refill = now_ms.saturating_sub(b.at_ms) * rate;
        b.milli_tokens = (b.milli_tokens + refill).min(full);
        b.at_ms = now_ms;
        if b.milli_tokens >= 1000 {
            b.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }

    /// Keys tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// Lets one event per key through per interval (for log lines).
#[derive(Debug, Clone)]
pub struct LogGate<K> {
    last: HashMap<K, u64>,
    interval_ms: u64,
    max_keys: usize,
}

impl<K: Hash + Eq + Copy> LogGate<K> {
    /// One per `interval_ms` per key, at most `max_keys` keys tracked.
    pub fn new(interval_ms: u64, max_keys: usize) -> Self {
        Self {
            last: HashMap::new(),
            interval_ms,
            max_keys: max_keys.max(1),
        }
    }

    /// True when `key` may log at `now_ms`.
    pub fn allow(&mut self, key: K, now_ms: u64) -> bool {
        if let Some(t) = self.last.get(&key) {
            if now_ms.saturating_sub(*t) < self.interval_ms {
                return false;
            }
        }
        if self.last.len() >= self.max_keys {
            let iv = self.interval_ms;
            self.last.retain(|_, t| now_ms.saturating_sub(*t) < iv);
            if self.last.len() >= self.max_keys {
                // Too many talkers: stay quiet until the interval passes.
                return false;
            }
        }
        self.last.insert(key, now_ms);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills() {
        let mut r = RateLimiter::new(2, 1, 10);
        assert!(r.allow(1, 0));
        assert!(r.allow(1, 0));
        assert!(!r.allow(1, 0));
        assert!(!r.allow(1, 500));
        assert!(r.allow(1, 1000));
        assert!(r.allow(2, 1000));
    }

    #[test]
    fn bounded() {
        let mut r = RateLimiter::new(2, 1, 100);
        for k in 0..100_000u32 {
            r.allow(k, u64::from(k));
            assert!(r.len() <= 100);
        }
        let mut g = LogGate::new(10_000, 50);
        let mut allowed = 0;
        for k in 0..10_000u32 {
            if g.allow(k, 0) {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 50);
        assert!(g.allow(1, 20_000));
    }
}
