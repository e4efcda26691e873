//! The `[[balancers]]` of the inventory, run by `bootlab-lb`: binding at
//! start (a port clash stops start-up), the file-descriptor limit the caps
//! need, backend state changes into the log and the node's timeline, the
//! `balancers` report (`/api/v1/balancers`), metrics, and reconfiguring on
//! reload (drained nodes take no new connections; open ones finish).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bootlab_inventory::Inventory;
use bootlab_lb::{BackendState, BalancerConfig, BalancerStatus, LbEvent, LoadBalancers};
use bootlab_state::{Service, Shared};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::activation::Inherited;
use crate::services::Tasks;

/// The balancers' runtime configuration for `inv`.
pub(crate) fn configs(inv: &Inventory) -> Vec<BalancerConfig> {
    inv.balancers().iter().map(BalancerConfig::from).collect()
}

/// Binds every balancer and starts them; `None` when there are none.
pub(crate) async fn spawn(
    shared: &Shared,
    shutdown: &CancellationToken,
    tasks: &mut Tasks,
    inherited: &mut Inherited,
) -> anyhow::Result<Option<LoadBalancers>> {
    let configs = configs(&shared.inventory());
    if configs.is_empty() {
        return Ok(None);
    }
    let wanted = bootlab_lb::fds_needed(&configs);
    match bootlab_lb::raise_nofile(wanted) {
        Ok(l) if l.short => warn!(
            wanted,
            soft = l.soft,
            hard = l.hard,
            "RLIMIT_NOFILE is below what the balancers' connection caps need; raise LimitNOFILE"
        ),
        Ok(l) => info!(soft = l.soft, "RLIMIT_NOFILE raised for the balancers"),
        Err(e) => warn!("cannot raise RLIMIT_NOFILE: {e}"),
    }
    let mut bound = Vec::with_capacity(configs.len());
    for c in configs {
        let listener = match inherited.tcp(&format!("lb-{}", c.name)) {
            Some(s) => {
                s.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(s)?
            }
            None => bootlab_lb::bind(c.listen)
                .with_context(|| format!("binding balancer {} on {}", c.name, c.listen))?,
        };
        bound.push((c, listener));
    }
    let sink_shared = shared.clone();
    let lbs = LoadBalancers::start(
        bound,
        Arc::new(move |e: LbEvent| on_event(&sink_shared, &e)),
        shutdown.child_token(),
    )
    .await;
    register_report_and_metrics(shared, &lbs);
    let running = lbs.clone();
    tasks.spawn(async move {
        running.stopped().await;
        ("balancers", Ok(()))
    });
    Ok(Some(lbs))
}

/// A backend changed state (bootlab-lb logs it): put it on the node's
/// timeline.
fn on_event(shared: &Shared, e: &LbEvent) {
    let inv = shared.inventory();
    if let Some(node) = inv.node_named(&e.backend) {
        shared.timeline.note(
            node.mac,
            Service::Lb,
            e.state.as_str(),
            format!("balancer {}: {}", e.balancer, e.reason),
        );
    }
}

/// Applies the reloaded inventory's balancers.
pub(crate) fn reload(lbs: &LoadBalancers, shared: &Shared, inv: &Inventory) {
    let report = lbs.reconfigure(configs(inv));
    for e in &report.errors {
        error!("reload: balancer: {e}");
    }
    if !(report.added.is_empty() && report.removed.is_empty() && report.rebound.is_empty()) {
        info!(
            added = ?report.added,
            removed = ?report.removed,
            rebound = ?report.rebound,
            "balancers reconfigured"
        );
    }
    register_report_and_metrics(shared, lbs);
}

/// One snapshot serves a scrape (every series reads it).
struct Cached {
    lbs: LoadBalancers,
    last: Mutex<Option<(Instant, Arc<Vec<BalancerStatus>>)>>,
}

impl Cached {
    fn get(&self) -> Arc<Vec<BalancerStatus>> {
        let mut g = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match &*g {
            Some((at, s)) if at.elapsed() < Duration::from_millis(500) => s.clone(),
            _ => {
                let s = Arc::new(self.lbs.snapshot());
                *g = Some((Instant::now(), s.clone()));
                s
            }
        }
    }
}

/// The `balancers` report and one metric series per balancer and backend
/// (re-registered after a reload, so new backends appear).
fn register_report_and_metrics(shared: &Shared, lbs: &LoadBalancers) {
    let report = lbs.clone();
    shared.reports.register("balancers", move || {
        serde_json::to_value(report.snapshot()).unwrap_or_default()
    });
    let cached = Arc::new(Cached {
        lbs: lbs.clone(),
        last: Mutex::new(None),
    });
    let m = &shared.metrics;
    for b in lbs.snapshot() {
        let name = b.name.clone();
        let labels = [("balancer", name.as_str())];
        let series = |f: fn(&BalancerStatus) -> u64| {
            let (c, n) = (cached.clone(), name.clone());
            move || c.get().iter().find(|x| x.name == n).map(f)
        };
        m.counter_fn(
            "bootlab_lb_connections_total",
            "Client connections accepted by a balancer.",
            &labels,
            series(|x| x.total_connections),
        );
        m.counter_fn(
            "bootlab_lb_refused_over_cap_total",
            "Clients closed at once because the balancer's connection cap was reached.",
            &labels,
            series(|x| x.refused_over_cap),
        );
        m.counter_fn(
            "bootlab_lb_refused_no_backend_total",
            "Clients closed at once because no backend was up.",
            &labels,
            series(|x| x.refused_no_backend),
        );
        let active = series(|x| x.active_connections);
        m.gauge(
            "bootlab_lb_active_connections",
            "Client connections open through a balancer.",
            &labels,
            move || active().map_or(f64::NAN, |v| v as f64),
        );
        for be in &b.backends {
            let backend = be.name.clone();
            let labels = [("balancer", name.as_str()), ("backend", backend.as_str())];
            let per_backend = |f: fn(&bootlab_lb::BackendStatus) -> u64| {
                let (c, n, bn) = (cached.clone(), name.clone(), backend.clone());
                move || {
                    c.get()
                        .iter()
                        .find(|x| x.name == n)
                        .and_then(|x| x.backends.iter().find(|y| y.name == bn))
                        .map(f)
                }
            };
            let up = per_backend(|y| u64::from(y.state == BackendState::Up));
            m.gauge(
                "bootlab_lb_backend_up",
                "1 when a backend takes new connections (up), 0 when down or drained.",
                &labels,
                move || up().map_or(f64::NAN, |v| v as f64),
            );
            m.counter_fn(
                "bootlab_lb_backend_connections_total",
                "Connections a balancer made to a backend.",
                &labels,
                per_backend(|y| y.total_connections),
            );
            m.counter_fn(
                "bootlab_lb_backend_received_bytes_total",
                "Bytes from clients to a backend.",
                &labels,
                per_backend(|y| y.bytes_in),
            );
            m.counter_fn(
                "bootlab_lb_backend_sent_bytes_total",
                "Bytes from a backend to clients.",
                &labels,
                per_backend(|y| y.bytes_out),
            );
            m.counter_fn(
                "bootlab_lb_backend_connect_failures_total",
                "Connects to a backend that failed or timed out.",
                &labels,
                per_backend(|y| y.connect_failures),
            );
        }
    }
}
