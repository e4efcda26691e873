//! Live reports other parts of the daemon publish for the HTTP API and the
//! status page: `balancers` (each backend's state and counters), `egress`
//! (refused destinations)... Each is a JSON snapshot taken when asked, so
//! the HTTP service needs no dependency on the crate that owns the data.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

type Snapshot = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Named snapshot providers. Cheap to clone.
#[derive(Clone, Default)]
pub struct Reports {
    inner: Arc<RwLock<BTreeMap<String, Snapshot>>>,
}

impl std::fmt::Debug for Reports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Reports {
    /// Registers (or replaces) the report `name` (a path segment such as
    /// `balancers`), served as `GET /api/v1/<name>`.
    pub fn register(
        &self,
        name: &str,
        snapshot: impl Fn() -> serde_json::Value + Send + Sync + 'static,
    ) {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        g.insert(name.to_owned(), Arc::new(snapshot));
    }

    /// The report `name` now, if registered.
    pub fn get(&self, name: &str) -> Option<serde_json::Value> {
        let f = {
            let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
            g.get(name).cloned()
        };
        f.map(|f| f())
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        g.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_are_taken_when_asked() {
        let r = Reports::default();
        let n = Arc::new(std::sync::atomic::AtomicU64::new(1));
        let m = Arc::clone(&n);
        r.register(
            "count",
            move || serde_json::json!({ "n": m.load(std::sync::atomic::Ordering::Relaxed) }),
        );
        assert_eq!(r.get("count").unwrap()["n"], 1);
        n.store(2, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(r.get("count").unwrap()["n"], 2);
        assert!(r.get("nope").is_none());
        assert_eq!(r.names(), ["count"]);
    }
}
