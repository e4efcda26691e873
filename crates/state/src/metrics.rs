//! Prometheus metrics shared by every service: counters are atomics handed
//! out once at start-up (cheap on hot paths); gauges are read at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A counter handle.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

type GaugeFn = Box<dyn Fn() -> f64 + Send + Sync>;

struct Family {
    help: String,
    kind: &'static str,
    counters: BTreeMap<String, Counter>,
    gauges: BTreeMap<String, GaugeFn>,
}

/// The registry. Cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics {
    families: Arc<Mutex<BTreeMap<String, Family>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn label_string(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

impl Metrics {
    /// A new, empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter `name{labels}`, created on first use. Call at start-up and
    /// keep the handle; the same name and labels give the same counter.
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        let mut g = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let fam = g.entry(name.to_owned()).or_insert_with(|| Family {
            help: help.to_owned(),
            kind: "counter",
            counters: BTreeMap::new(),
            gauges: BTreeMap::new(),
        });
        fam.counters
            .entry(label_string(labels))
            .or_default()
            .clone()
    }

    /// Registers (or replaces) the gauge `name{labels}`, read at scrape time.
    pub fn gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        let mut g = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let fam = g.entry(name.to_owned()).or_insert_with(|| Family {
            help: help.to_owned(),
            kind: "gauge",
            counters: BTreeMap::new(),
            gauges: BTreeMap::new(),
        });
        fam.gauges.insert(label_string(labels), Box::new(read));
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let g = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for (name, fam) in g.iter() {
            let _ = writeln!(out, "# HELP {name} {}", fam.help);
            let _ = writeln!(out, "# TYPE {name} {}", fam.kind);
            for (labels, c) in &fam.counters {
                let _ = writeln!(out, "{name}{labels} {}", c.get());
            }
            for (labels, read) in &fam.gauges {
                let _ = writeln!(out, "{name}{labels} {}", read());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition() {
        let m = Metrics::new();
        let c = m.counter("bootlab_requests_total", "Requests.", &[("service", "dns")]);
        c.inc();
        c.add(2);
        m.counter("bootlab_requests_total", "Requests.", &[("service", "dns")])
            .inc();
        m.gauge("bootlab_leases", "Active leases.", &[], || 7.0);
        let text = m.render();
        assert!(
            text.contains("# TYPE bootlab_requests_total counter"),
            "{text}"
        );
        assert!(
            text.contains("bootlab_requests_total{service=\"dns\"} 4"),
            "{text}"
        );
        assert!(text.contains("bootlab_leases 7"), "{text}");
    }
}
