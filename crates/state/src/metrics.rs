//! Prometheus metrics shared by every service, on the `prometheus-client`
//! crate: counters and histograms are handed out once at start-up (atomics,
//! cheap on hot paths); gauges and externally kept counters (nftables'
//! counters) are read at scrape time through a collector.
//!
//! Names follow Prometheus conventions: `bootlab_<service>_<what>`, units
//! in the name (`_bytes`, `_seconds`), counters end in `_total` (the name
//! passed in must end so; the client library adds the suffix on output and
//! the registry keeps the base name). `bootlab_build_info` carries the
//! version. The exposition is the Prometheus text format 0.0.4.
//! [`Metrics::samples`] reads a family's current values back by name (the
//! status page's service counters), so no one parses the exposition.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter as PCounter};
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram as PHistogram;
use prometheus_client::registry::Registry;

/// A row of [`Metrics::counter_fns`]: name, help, and how to read the
/// counter from the service's state.
pub type CounterRow<'a, T> = (&'a str, &'a str, fn(&T) -> u64);

type Labels = Vec<(String, String)>;

/// A counter handle.
#[derive(Debug, Clone, Default)]
pub struct Counter(PCounter);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.inc();
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.inc_by(n);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A histogram handle (latencies in seconds).
#[derive(Debug, Clone)]
pub struct Histogram(PHistogram);

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, v: f64) {
        self.0.observe(v);
    }

    /// Records a duration in seconds.
    pub fn observe_duration(&self, d: std::time::Duration) {
        self.0.observe(d.as_secs_f64());
    }
}

/// Latency buckets for replies, in seconds: 10 µs to ~1.3 s.
pub const LATENCY_BUCKETS: [f64; 18] = [
    0.000_01, 0.000_02, 0.000_05, 0.000_1, 0.000_2, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
    0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

#[derive(Clone)]
struct Buckets(&'static [f64]);

impl MetricConstructor<PHistogram> for Buckets {
    fn new_metric(&self) -> PHistogram {
        PHistogram::new(self.0.iter().copied())
    }
}

/// Reads a value at scrape time; `None` leaves the series out.
type ReadFn = Box<dyn Fn() -> Option<f64> + Send + Sync>;

/// One scrape-time family: help, type, and a reader per label set.
type ScrapeFamily = (String, MetricType, BTreeMap<Labels, ReadFn>);

/// Values read at scrape time, by family name.
#[derive(Default)]
struct ScrapeTime {
    families: RwLock<BTreeMap<String, ScrapeFamily>>,
}

impl std::fmt::Debug for ScrapeTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScrapeTime").finish_non_exhaustive()
    }
}

impl Collector for ScrapeTime {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let families = self.families.read().unwrap_or_else(|e| e.into_inner());
        for (name, (help, kind, series)) in families.iter() {
            let mut family = encoder.encode_descriptor(name, help, None, *kind)?;
            for (labels, read) in series {
                let Some(v) = read() else { continue };
                let metric = family.encode_family(labels)?;
                if *kind == MetricType::Counter {
                    ConstCounter::new(v.max(0.0) as u64).encode(metric)?;
                } else {
                    ConstGauge::new(v).encode(metric)?;
                }
            }
        }
        Ok(())
    }
}

struct Inner {
    registry: Registry,
    counters: HashMap<String, Family<Labels, PCounter>>,
    /// Every counter handed out, by base name and labels, so
    /// [`Metrics::samples`] can read them (a `Family` cannot be listed).
    handed: HashMap<String, BTreeMap<Labels, PCounter>>,
    histograms: HashMap<String, Family<Labels, PHistogram, Buckets>>,
    scrape: Arc<ScrapeTime>,
}

/// The registry. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn labels(labels: &[(&str, &str)]) -> Labels {
    labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Help text without a final period (the library adds one).
fn help_text(help: &str) -> &str {
    help.trim_end().trim_end_matches('.')
}

/// The registry's name for a counter: without the `_total` the exposition adds.
fn counter_base(name: &str) -> &str {
    debug_assert!(
        name.ends_with("_total"),
        "counter {name} must end in _total"
    );
    name.strip_suffix("_total").unwrap_or(name)
}

impl Metrics {
    /// A new registry holding `bootlab_build_info`.
    pub fn new() -> Self {
        let scrape = Arc::new(ScrapeTime::default());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(scrape.clone()));
        let m = Self {
            inner: Arc::new(Mutex::new(Inner {
                registry,
                counters: HashMap::new(),
                handed: HashMap::new(),
                histograms: HashMap::new(),
                scrape,
            })),
        };
        m.gauge(
            "bootlab_build_info",
            "bootlab's version (always 1).",
            &[("version", env!("CARGO_PKG_VERSION"))],
            || 1.0,
        );
        m
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The counter `name{labels}` (`name` ends in `_total`), created on
    /// first use. Call at start-up and keep the handle; the same name and
    /// labels give the same counter.
    pub fn counter(&self, name: &str, help: &str, labels_: &[(&str, &str)]) -> Counter {
        let mut g = self.lock();
        let base = counter_base(name);
        if !g.counters.contains_key(base) {
            let family = Family::<Labels, PCounter>::default();
            g.registry.register(base, help_text(help), family.clone());
            g.counters.insert(base.to_owned(), family);
        }
        let labels_ = labels(labels_);
        let counter = g.counters[base].get_or_create_owned(&labels_);
        g.handed
            .entry(base.to_owned())
            .or_default()
            .entry(labels_)
            .or_insert_with(|| counter.clone());
        Counter(counter)
    }

    /// The current samples of the counter (`name` ends in `_total`) or
    /// gauge `name`, each with its labels, sorted by labels; empty when
    /// nothing of that name is registered. Histograms are not listed.
    /// Scrape-time readers of that name run (and only those), so this is
    /// as cheap as the readers are; unreadable samples are left out.
    pub fn samples(&self, name: &str) -> Vec<(Labels, f64)> {
        let base = name.strip_suffix("_total").unwrap_or(name);
        let (mut out, scrape): (Vec<(Labels, f64)>, _) = {
            let g = self.lock();
            let handed = g
                .handed
                .get(base)
                .map(|m| m.iter().map(|(l, c)| (l.clone(), c.get() as f64)).collect())
                .unwrap_or_default();
            (handed, g.scrape.clone())
        };
        let families = scrape.families.read().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, series)) = families.get(base).or_else(|| families.get(name)) {
            out.extend(
                series
                    .iter()
                    .filter_map(|(l, read)| read().filter(|v| !v.is_nan()).map(|v| (l.clone(), v))),
            );
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The latency histogram `name{labels}` (seconds, [`LATENCY_BUCKETS`]).
    pub fn histogram(&self, name: &str, help: &str, labels_: &[(&str, &str)]) -> Histogram {
        let mut g = self.lock();
        if !g.histograms.contains_key(name) {
            let family = Family::new_with_constructor(Buckets(&LATENCY_BUCKETS));
            g.registry.register(name, help_text(help), family.clone());
            g.histograms.insert(name.to_owned(), family);
        }
        Histogram(g.histograms[name].get_or_create_owned(&labels(labels_)))
    }

    /// Registers (or replaces) the gauge `name{labels}`, read at scrape time.
    pub fn gauge(
        &self,
        name: &str,
        help: &str,
        labels_: &[(&str, &str)],
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        self.scrape_time(
            name,
            help,
            MetricType::Gauge,
            labels_,
            Box::new(move || Some(read())),
        );
    }

    /// Registers (or replaces) the counter `name{labels}` (ending in
    /// `_total`) whose value is kept elsewhere (e.g. by nftables) and read
    /// at scrape time; `None` (unreadable) leaves the sample out.
    pub fn counter_fn(
        &self,
        name: &str,
        help: &str,
        labels_: &[(&str, &str)],
        read: impl Fn() -> Option<u64> + Send + Sync + 'static,
    ) {
        let base = counter_base(name).to_owned();
        self.scrape_time(
            &base,
            help,
            MetricType::Counter,
            labels_,
            Box::new(move || read().map(|v| v as f64)),
        );
    }

    /// One [`Metrics::counter_fn`] per row of `table` (name, help, how to
    /// read the counter from `state`): a service's plain counters, kept in
    /// its own atomics and read at scrape time.
    pub fn counter_fns<T: Send + Sync + 'static>(
        &self,
        state: &Arc<T>,
        table: &[CounterRow<'_, T>],
    ) {
        for &(name, help, read) in table {
            let state = Arc::clone(state);
            self.counter_fn(name, help, &[], move || Some(read(&state)));
        }
    }

    fn scrape_time(
        &self,
        name: &str,
        help: &str,
        kind: MetricType,
        labels_: &[(&str, &str)],
        read: ReadFn,
    ) {
        let scrape = self.lock().scrape.clone();
        let mut f = scrape.families.write().unwrap_or_else(|e| e.into_inner());
        f.entry(name.to_owned())
            .or_insert_with(|| (help.to_owned(), kind, BTreeMap::new()))
            .2
            .insert(labels(labels_), read);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let g = self.lock();
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &g.registry);
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
        m.counter_fn("bootlab_denied_packets_total", "Denied.", &[], || Some(5));
        m.counter_fn("bootlab_unreadable_total", "Unreadable.", &[], || None);
        let h = m.histogram(
            "bootlab_reply_duration_seconds",
            "Reply latency.",
            &[("service", "dns")],
        );
        h.observe(0.000_3);
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
        assert!(text.contains("bootlab_denied_packets_total 5"), "{text}");
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("bootlab_unreadable_total")),
            "an unreadable counter has no sample: {text}"
        );
        assert!(
            text.contains("bootlab_reply_duration_seconds_bucket{service=\"dns\",le=\"0.0005\"} 1"),
            "{text}"
        );
        assert!(text.contains("bootlab_build_info{version=\""), "{text}");
    }

    #[test]
    fn samples_read_counters_and_scrape_time_values() {
        let m = Metrics::new();
        m.counter("bootlab_x_total", "X.", &[("kind", "b")]).add(2);
        m.counter("bootlab_x_total", "X.", &[("kind", "a")]).inc();
        m.counter("bootlab_x_total", "X.", &[("kind", "a")]).inc();
        m.gauge("bootlab_g", "G.", &[], || 7.0);
        m.gauge("bootlab_nan", "NaN.", &[], || f64::NAN);
        m.counter_fn("bootlab_kept_total", "Kept.", &[("c", "z")], || Some(5));
        let lab = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
        assert_eq!(
            m.samples("bootlab_x_total"),
            [(lab("kind", "a"), 2.0), (lab("kind", "b"), 2.0)]
        );
        assert_eq!(m.samples("bootlab_g"), [(vec![], 7.0)]);
        assert_eq!(m.samples("bootlab_kept_total"), [(lab("c", "z"), 5.0)]);
        assert!(m.samples("bootlab_nan").is_empty());
        assert!(m.samples("bootlab_absent_total").is_empty());
    }
}
