//! Denied-flow counters in `/metrics`.
//!
//! [`register_firewall_metrics`] adds scrape-time gauges to the shared
//! [`Metrics`] registry:
//!
//! * `bootlab_firewall_denied_packets_total{counter="<name>"}` and
//!   `bootlab_firewall_denied_bytes_total{counter="<name>"}` for every named counter
//!   of the ruleset (see [`crate::policy`] for what each counts);
//! * `bootlab_firewall_denied_endpoints`: distinct refused endpoints of the
//!   last hour (list them with [`crate::BootlabTable::denied_endpoints`]);
//! * `bootlab_firewall_learned_addresses` when the ruleset has the learned set.
//!
//! It also registers the `egress` report (`GET /api/v1/egress`): the named
//! counters, the refused destinations of the last hour and the learned
//! addresses, for `bootlab status` and the status page.
//!
//! One scrape runs `nft` once: the listing is cached for a second. When nft
//! fails (table removed, nft missing) the gauges read NaN and the counters
//! have no sample.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bootlab_state::{Metrics, Reports};

use crate::live::TableState;
use crate::ruleset::{DENIED_SET, LEARNED_SET, Ruleset};
use crate::table::BootlabTable;

/// How long one listing serves scrapes.
const SNAPSHOT_TTL: Duration = Duration::from_secs(1);

/// The `egress` report: counters, refused destinations, learned addresses.
fn egress_report(t: &TableState) -> serde_json::Value {
    let denied: Vec<serde_json::Value> = t
        .set(DENIED_SET)
        .map(|set| {
            set.endpoints
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "addr": e.addr.to_string(),
                        "protocol": e.protocol,
                        "port": e.port,
                        "expires_s": e.expires.map(|d| d.as_secs()),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let learned: Vec<serde_json::Value> = t
        .set(LEARNED_SET)
        .map(|set| {
            set.elements
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "addr": e.addr.to_string(),
                        "expires_s": e.expires.map(|d| d.as_secs()),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let counters: Vec<serde_json::Value> = t
        .counters
        .iter()
        .map(|c| serde_json::json!({ "name": c.name, "packets": c.packets, "bytes": c.bytes }))
        .collect();
    serde_json::json!({ "counters": counters, "denied": denied, "learned": learned })
}

#[derive(Debug)]
struct Snapshot {
    table: BootlabTable,
    last: Mutex<Option<(Instant, Option<TableState>)>>,
}

impl Snapshot {
    fn read<T>(&self, f: impl Fn(&TableState) -> Option<T>) -> Option<T> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = matches!(&*last, Some((at, _)) if at.elapsed() < SNAPSHOT_TTL);
        if !fresh {
            *last = Some((Instant::now(), self.table.state().ok().flatten()));
        }
        last.as_ref().and_then(|(_, s)| s.as_ref()).and_then(f)
    }
}

/// Registers the firewall gauges for `ruleset`'s counters (and learned set),
/// read from `table` at scrape time. Call again after a reload with the new
/// ruleset; gauges of the same name are replaced.
pub fn register_firewall_metrics(
    metrics: &Metrics,
    reports: &Reports,
    table: BootlabTable,
    ruleset: &Ruleset,
) {
    let snap = Arc::new(Snapshot {
        table,
        last: Mutex::new(None),
    });
    {
        let s = snap.clone();
        reports.register("egress", move || {
            s.read(|t| Some(egress_report(t)))
                .unwrap_or_else(|| serde_json::json!({ "error": "nftables table not readable" }))
        });
    }
    for c in &ruleset.counters {
        let labels = [("counter", c.name.as_str())];
        let (s, name) = (snap.clone(), c.name.clone());
        metrics.counter_fn(
            "bootlab_firewall_denied_packets_total",
            "packets dropped by bootlab's nftables policy, by named counter",
            &labels,
            move || s.read(|t| t.counter(&name).map(|c| c.packets)),
        );
        let (s, name) = (snap.clone(), c.name.clone());
        metrics.counter_fn(
            "bootlab_firewall_denied_bytes_total",
            "bytes dropped by bootlab's nftables policy, by named counter",
            &labels,
            move || s.read(|t| t.counter(&name).map(|c| c.bytes)),
        );
    }
    if ruleset.has_set(DENIED_SET) {
        let s = snap.clone();
        metrics.gauge(
            "bootlab_firewall_denied_endpoints",
            "distinct destination address/protocol/port refused in the last hour",
            &[],
            move || {
                s.read(|t| t.set(DENIED_SET).map(|set| set.endpoints.len() as f64))
                    .unwrap_or(f64::NAN)
            },
        );
    }
    if ruleset.has_set(LEARNED_SET) {
        let s = snap.clone();
        metrics.gauge(
            "bootlab_firewall_learned_addresses",
            "addresses currently allowed because DNS answered them for allow_domains",
            &[],
            move || {
                s.read(|t| t.set(LEARNED_SET).map(|set| set.elements.len() as f64))
                    .unwrap_or(f64::NAN)
            },
        );
    }
}
