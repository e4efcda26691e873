//! The running balancers: accept loops, the connection cap, backend choice
//! with connect fallback, health-check tasks, reload and snapshots.
//!
//! Each balancer keeps its backends as an immutable list swapped whole on
//! reload; a backend (keyed by name and address) is one shared object, so a
//! reload that keeps it keeps its health and counters, and connections that
//! hold it finish even after it left the list. Each backend has one check
//! task; each client one relay task. Accept loops and relay tasks run on
//! the balancers' own threads (`crate::threads`: one per core, each
//! serving the connections it accepts from accept to close); check tasks,
//! reload and snapshots on the caller's runtime. Shutdown: the accept loops
//! stop at once, open connections get the largest [`Limits::drain_timeout`]
//! of the balancers, then are closed.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::config::{Algorithm, BackendConfig, BalancerConfig, HealthCheck, Limits};
use crate::health::{Health, Transition};
use crate::proxy::{RelayEnd, relay};
use crate::select;
use crate::status::{BackendState, BackendStatus, BalancerStatus, EventSink, LbEvent};
use crate::threads::RelayThreads;

/// Listen backlog of sockets bound by [`bind`].
pub const LISTEN_BACKLOG: i32 = 4096;

/// Binds a balancer's listening socket the way the balancers want it:
/// `SO_REUSEADDR`, non-blocking, a backlog of [`LISTEN_BACKLOG`] (a burst of
/// new connections waits in the kernel instead of being retried by SYN
/// timeouts). Must be called within a Tokio runtime.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// What a reload changed, and what it could not do.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReloadReport {
    /// Balancers started.
    pub added: Vec<String>,
    /// Balancers stopped (their open connections finish).
    pub removed: Vec<String>,
    /// Balancers now listening on a new address.
    pub rebound: Vec<String>,
    /// What failed (e.g. binding a new address); the rest was applied and
    /// the failed balancer keeps its old address, or is not started.
    pub errors: Vec<String>,
}

impl ReloadReport {
    /// Whether everything asked for was applied.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// The running load balancers; cheap to clone (one shared state).
#[derive(Clone)]
pub struct LoadBalancers {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LoadBalancers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadBalancers")
            .field("balancers", &self.snapshot())
            .finish()
    }
}

struct Inner {
    balancers: Mutex<Vec<Arc<Balancer>>>,
    events: EventSink,
    shutdown: CancellationToken,
    /// Cancelled when the drain time after shutdown is over.
    force_close: CancellationToken,
    /// Cancelled when every task has ended after shutdown.
    finished: CancellationToken,
    tracker: TaskTracker,
    /// The caller's runtime: checks, reload, the shutdown sequence.
    runtime: tokio::runtime::Handle,
    /// Where accept loops and relays run: the relay threads, or the
    /// caller's runtime when they could not be started.
    relay: Vec<tokio::runtime::Handle>,
    #[cfg(test)]
    threads: Option<RelayThreads>,
}

/// Settings of a balancer that a reload may change in place.
#[derive(Debug, Clone)]
struct Settings {
    listen: SocketAddr,
    algorithm: Algorithm,
    check: HealthCheck,
    interval: Duration,
    rise: u32,
    fall: u32,
    limits: Limits,
}

impl Settings {
    fn of(config: &BalancerConfig) -> Self {
        Self {
            listen: config.listen,
            algorithm: config.algorithm,
            check: config.check.clone(),
            interval: config.interval.max(Duration::from_millis(10)),
            rise: config.rise.max(1),
            fall: config.fall.max(1),
            limits: config.limits,
        }
    }
}

struct Balancer {
    name: String,
    settings: RwLock<Arc<Settings>>,
    backends: RwLock<Arc<Vec<Arc<Backend>>>>,
    cursor: AtomicUsize,
    active: AtomicU64,
    total: AtomicU64,
    refused_cap: AtomicU64,
    refused_no_backend: AtomicU64,
    idle_timeouts: AtomicU64,
    /// Stops the current accept loop (rebind, removal); child of shutdown.
    accepting: Mutex<CancellationToken>,
    /// Stops the check tasks; child of shutdown.
    stop: CancellationToken,
    log: RateLimitedLog,
}

struct Backend {
    name: String,
    addr: SocketAddr,
    drained: AtomicBool,
    up: AtomicBool,
    health: Mutex<Health>,
    active: AtomicU64,
    total: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    connect_failures: AtomicU64,
    /// Stops this backend's check task (removal).
    stop: CancellationToken,
    /// Runs a check now (undrain).
    wake: Notify,
}

impl Backend {
    fn new(config: &BackendConfig, parent: &CancellationToken) -> Self {
        Self {
            name: config.name.clone(),
            addr: config.addr,
            drained: AtomicBool::new(config.drained),
            up: AtomicBool::new(true),
            health: Mutex::new(Health::new()),
            active: AtomicU64::new(0),
            total: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            stop: parent.child_token(),
            wake: Notify::new(),
        }
    }

    fn eligible(&self) -> bool {
        self.up.load(Ordering::Relaxed) && !self.drained.load(Ordering::Relaxed)
    }

    fn state(&self) -> BackendState {
        if self.drained.load(Ordering::Relaxed) {
            BackendState::Drained
        } else if self.up.load(Ordering::Relaxed) {
            BackendState::Up
        } else {
            BackendState::Down
        }
    }

    fn status(&self) -> BackendStatus {
        let health = lock(&self.health);
        BackendStatus {
            name: self.name.clone(),
            addr: self.addr,
            state: self.state(),
            checks_passed_streak: health.passed_streak(),
            checks_failed_streak: health.failed_streak(),
            checks_passed: health.checks_passed(),
            checks_failed: health.checks_failed(),
            last_check_error: health.last_error().map(str::to_owned),
            active_connections: self.active.load(Ordering::Relaxed),
            total_connections: self.total.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            connect_failures: self.connect_failures.load(Ordering::Relaxed),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T: Clone>(l: &RwLock<T>) -> T {
    l.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

fn write<T>(l: &RwLock<T>, value: T) {
    *l.write().unwrap_or_else(std::sync::PoisonError::into_inner) = value;
}

/// One log line per kind per interval; the lines skipped meanwhile are
/// counted in the next one.
struct RateLimitedLog {
    interval: Duration,
    last: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl RateLimitedLog {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(skipped)` when a line about `kind` may be logged now.
    fn allow(&self, kind: &'static str) -> Option<u64> {
        let now = Instant::now();
        let mut last = lock(&self.last);
        match last.get_mut(kind) {
            Some((at, skipped)) if now.duration_since(*at) < self.interval => {
                *skipped += 1;
                None
            }
            Some((at, skipped)) => {
                *at = now;
                Some(std::mem::take(skipped))
            }
            None => {
                last.insert(kind, (now, 0));
                Some(0)
            }
        }
    }
}

/// Interval of the rate-limited log lines (no backend, cap, accept errors).
const LOG_INTERVAL: Duration = Duration::from_secs(10);

impl LoadBalancers {
    /// Starts `configs` on their already-bound listeners (bind with [`bind`]
    /// or any `TcpListener`; tests bind port 0). Backends start
    /// provisionally up and are checked at once. `events` receives every
    /// backend state change. Runs until `shutdown` is cancelled; then
    /// [`LoadBalancers::stopped`] resolves once open connections finished or
    /// the drain time is over. Two configs with one name: the second is
    /// logged and ignored. Must be called within a Tokio runtime.
    pub async fn start(
        configs: Vec<(BalancerConfig, TcpListener)>,
        events: EventSink,
        shutdown: CancellationToken,
    ) -> Self {
        let finished = CancellationToken::new();
        // The relay threads end when the balancers have finished, or when
        // this runtime shuts down first and drops the task holding the guard.
        let threads_stop = CancellationToken::new();
        let guard = threads_stop.clone().drop_guard();
        let done = finished.clone();
        tokio::spawn(async move {
            let _guard = guard;
            done.cancelled().await;
        });
        let runtime = tokio::runtime::Handle::current();
        let threads = match RelayThreads::start(&threads_stop) {
            Ok(t) => Some(t),
            Err(e) => {
                error!(
                    "load balancers: cannot start their threads ({e}); relaying on the daemon's runtime"
                );
                None
            }
        };
        let relay = threads
            .as_ref()
            .map_or_else(|| vec![runtime.clone()], |t| t.handles().to_vec());
        let inner = Arc::new(Inner {
            balancers: Mutex::new(Vec::new()),
            events,
            shutdown: shutdown.clone(),
            force_close: CancellationToken::new(),
            finished,
            tracker: TaskTracker::new(),
            runtime,
            relay,
            #[cfg(test)]
            threads,
        });
        let this = Self { inner };
        for (config, listener) in configs {
            if this.find(&config.name).is_some() {
                error!(
                    "balancer {}: defined twice, the second one is ignored",
                    config.name
                );
                continue;
            }
            this.add(config, listener);
        }
        let inner = Arc::clone(&this.inner);
        tokio::spawn(async move {
            inner.shutdown.cancelled().await;
            inner.tracker.close();
            let drain = lock(&inner.balancers)
                .iter()
                .map(|b| read(&b.settings).limits.drain_timeout)
                .max()
                .unwrap_or_default();
            if tokio::time::timeout(drain, inner.tracker.wait())
                .await
                .is_err()
            {
                let open: u64 = lock(&inner.balancers)
                    .iter()
                    .map(|b| b.active.load(Ordering::Relaxed))
                    .sum();
                warn!(
                    "load balancers: {open} connection(s) still open after {drain:?}: closing them"
                );
                inner.force_close.cancel();
                inner.tracker.wait().await;
            }
            info!("load balancers stopped");
            inner.finished.cancel();
        });
        this
    }

    /// Resolves when the balancers have stopped after shutdown: listeners
    /// closed, open connections finished or closed after the drain time.
    pub async fn stopped(&self) {
        self.inner.finished.cancelled().await;
    }

    /// Each balancer's state and counters, in start/reload order.
    pub fn snapshot(&self) -> Vec<BalancerStatus> {
        lock(&self.inner.balancers)
            .iter()
            .map(|b| b.status())
            .collect()
    }

    /// Applies a new set of balancers (reload). Balancers and backends that
    /// stay (same balancer name; same backend name and address) keep their
    /// health and counters. Drained or removed backends take no new
    /// connections while open ones finish; removed balancers stop listening
    /// and their open connections finish. A balancer whose listen address
    /// changed is rebound: the new address is bound first, and only if that
    /// works does the old listener close (else it keeps its old address and
    /// the error is reported). New balancers are bound here, with [`bind`].
    pub fn reconfigure(&self, new: Vec<BalancerConfig>) -> ReloadReport {
        let _runtime = self.inner.runtime.enter();
        let mut report = ReloadReport::default();
        if self.inner.shutdown.is_cancelled() {
            report
                .errors
                .push("load balancers are shutting down".into());
            return report;
        }
        let mut seen: Vec<String> = Vec::new();
        for config in new {
            if seen.contains(&config.name) {
                report.errors.push(format!(
                    "balancer {}: defined twice, the second one is ignored",
                    config.name
                ));
                continue;
            }
            seen.push(config.name.clone());
            match self.find(&config.name) {
                Some(balancer) => self.update(&balancer, config, &mut report),
                None => match bind(config.listen) {
                    Ok(listener) => {
                        report.added.push(config.name.clone());
                        self.add(config, listener);
                    }
                    Err(e) => report.errors.push(format!(
                        "balancer {}: binding {}: {e}",
                        config.name, config.listen
                    )),
                },
            }
        }
        let mut balancers = lock(&self.inner.balancers);
        balancers.retain(|b| {
            if seen.contains(&b.name) {
                return true;
            }
            info!("balancer {}: removed; its open connections finish", b.name);
            lock(&b.accepting).cancel();
            b.stop.cancel();
            report.removed.push(b.name.clone());
            false
        });
        drop(balancers);
        for e in &report.errors {
            error!("load balancer reload: {e}");
        }
        report
    }

    fn find(&self, name: &str) -> Option<Arc<Balancer>> {
        lock(&self.inner.balancers)
            .iter()
            .find(|b| b.name == name)
            .cloned()
    }

    fn add(&self, config: BalancerConfig, listener: TcpListener) {
        let stop = self.inner.shutdown.child_token();
        let balancer = Arc::new(Balancer {
            name: config.name.clone(),
            settings: RwLock::new(Arc::new(Settings::of(&config))),
            backends: RwLock::new(Arc::new(Vec::new())),
            cursor: AtomicUsize::new(0),
            active: AtomicU64::new(0),
            total: AtomicU64::new(0),
            refused_cap: AtomicU64::new(0),
            refused_no_backend: AtomicU64::new(0),
            idle_timeouts: AtomicU64::new(0),
            accepting: Mutex::new(stop.child_token()),
            stop,
            log: RateLimitedLog::new(LOG_INTERVAL),
        });
        let backends = config
            .backends
            .iter()
            .map(|b| self.new_backend(&balancer, b))
            .collect();
        write(&balancer.backends, Arc::new(backends));
        lock(&self.inner.balancers).push(Arc::clone(&balancer));
        self.spawn_accept(&balancer, listener);
    }

    fn new_backend(&self, balancer: &Arc<Balancer>, config: &BackendConfig) -> Arc<Backend> {
        let backend = Arc::new(Backend::new(config, &balancer.stop));
        let (b, be, inner) = (
            Arc::clone(balancer),
            Arc::clone(&backend),
            Arc::clone(&self.inner),
        );
        self.inner.tracker.spawn(
            check_loop(b, be, inner).instrument(
                info_span!("lb_check", balancer = %balancer.name, backend = %config.name),
            ),
        );
        backend
    }

    /// One accept loop per relay thread, each on its own copy (`dup`) of the
    /// listener registered with that thread, so a burst of new connections
    /// is accepted on every core and each connection stays on the thread
    /// that accepted it (bench/lb.sh, "connect").
    fn spawn_accept(&self, balancer: &Arc<Balancer>, listener: TcpListener) {
        let stop = lock(&balancer.accepting).clone();
        let addr = listener
            .local_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string());
        info!("listening for lb {} on {addr}", balancer.name);
        // Inherited by every accepted socket (tests/relay.rs checks it).
        if let Err(e) = socket2::SockRef::from(&listener).set_tcp_nodelay(true) {
            warn!("lb {}: TCP_NODELAY on {addr}: {e}", balancer.name);
        }
        // Leaves this runtime's epoll; each relay thread registers a copy.
        let listener = match listener.into_std() {
            Ok(l) => l,
            Err(e) => {
                error!(
                    "lb {}: cannot hand {addr} to the relay threads: {e}",
                    balancer.name
                );
                return;
            }
        };
        for relay in &self.inner.relay {
            let copy = match listener.try_clone() {
                Ok(c) => c,
                Err(e) => {
                    error!(
                        "lb {}: duplicating the listener on {addr}: {e}",
                        balancer.name
                    );
                    continue;
                }
            };
            let (b, inner, stop) = (Arc::clone(balancer), Arc::clone(&self.inner), stop.clone());
            let accepting = async move {
                // Registers the copy with the thread this runs on.
                match TcpListener::from_std(copy) {
                    Ok(l) => accept_loop(b, l, stop, inner).await,
                    Err(e) => error!("lb {}: registering the listener: {e}", b.name),
                }
            };
            relay.spawn(
                self.inner.tracker.track_future(
                    accepting.instrument(info_span!("lb", balancer = %balancer.name)),
                ),
            );
        }
    }

    fn update(&self, balancer: &Arc<Balancer>, config: BalancerConfig, report: &mut ReloadReport) {
        let old = read(&balancer.settings);
        let mut settings = Settings::of(&config);
        if config.listen != old.listen {
            match bind(config.listen) {
                Ok(listener) => {
                    let fresh = balancer.stop.child_token();
                    let previous = std::mem::replace(&mut *lock(&balancer.accepting), fresh);
                    previous.cancel();
                    self.spawn_accept(balancer, listener);
                    info!(
                        "balancer {}: moved from {} to {}",
                        balancer.name, old.listen, config.listen
                    );
                    report.rebound.push(balancer.name.clone());
                }
                Err(e) => {
                    report.errors.push(format!(
                        "balancer {}: binding {}: {e}; still listening on {}",
                        balancer.name, config.listen, old.listen
                    ));
                    settings.listen = old.listen;
                }
            }
        }
        write(&balancer.settings, Arc::new(settings));

        let current = read(&balancer.backends);
        let mut next = Vec::with_capacity(config.backends.len());
        for wanted in &config.backends {
            let existing = current.iter().find(|b| {
                b.name == wanted.name
                    && b.addr == wanted.addr
                    && !next.iter().any(|n: &Arc<Backend>| Arc::ptr_eq(n, b))
            });
            let backend = match existing {
                Some(b) => {
                    let was = b.drained.swap(wanted.drained, Ordering::Relaxed);
                    if wanted.drained && !was {
                        self.emit(
                            balancer,
                            b,
                            "drained by reload: no new connections, open ones finish",
                        );
                    } else if !wanted.drained && was {
                        lock(&b.health).restart();
                        b.up.store(true, Ordering::Relaxed);
                        b.wake.notify_one();
                        self.emit(
                            balancer,
                            b,
                            "undrained by reload: up until its first check says otherwise",
                        );
                    }
                    Arc::clone(b)
                }
                None => self.new_backend(balancer, wanted),
            };
            next.push(backend);
        }
        for gone in current
            .iter()
            .filter(|b| !next.iter().any(|n| Arc::ptr_eq(n, b)))
        {
            info!(
                "balancer {}: backend {} ({}) removed; {} open connection(s) finish",
                balancer.name,
                gone.name,
                gone.addr,
                gone.active.load(Ordering::Relaxed)
            );
            gone.stop.cancel();
        }
        write(&balancer.backends, Arc::new(next));
    }

    fn emit(&self, balancer: &Balancer, backend: &Backend, reason: &str) {
        emit(&self.inner, balancer, backend, reason.to_owned());
    }
}

fn emit(inner: &Inner, balancer: &Balancer, backend: &Backend, reason: String) {
    let event = LbEvent {
        balancer: balancer.name.clone(),
        backend: backend.name.clone(),
        addr: backend.addr,
        state: backend.state(),
        reason,
    };
    match event.state {
        BackendState::Down => warn!("{event}"),
        _ => info!("{event}"),
    }
    (inner.events)(event);
}

impl Balancer {
    fn status(&self) -> BalancerStatus {
        let settings = read(&self.settings);
        BalancerStatus {
            name: self.name.clone(),
            listen: settings.listen,
            algorithm: settings.algorithm,
            check: settings.check.clone(),
            active_connections: self.active.load(Ordering::Relaxed),
            total_connections: self.total.load(Ordering::Relaxed),
            max_connections: settings.limits.max_connections,
            refused_over_cap: self.refused_cap.load(Ordering::Relaxed),
            refused_no_backend: self.refused_no_backend.load(Ordering::Relaxed),
            idle_timeouts: self.idle_timeouts.load(Ordering::Relaxed),
            backends: read(&self.backends).iter().map(|b| b.status()).collect(),
        }
    }
}

async fn accept_loop(
    balancer: Arc<Balancer>,
    listener: TcpListener,
    stop: CancellationToken,
    inner: Arc<Inner>,
) {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                if let Some(skipped) = balancer.log.allow("accept") {
                    error!("accept on {addr}: {e} ({skipped} more not logged)");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        balancer.total.fetch_add(1, Ordering::Relaxed);
        let limits = read(&balancer.settings).limits;
        if balancer.active.fetch_add(1, Ordering::Relaxed) >= limits.max_connections as u64 {
            balancer.active.fetch_sub(1, Ordering::Relaxed);
            balancer.refused_cap.fetch_add(1, Ordering::Relaxed);
            if let Some(skipped) = balancer.log.allow("cap") {
                warn!(%peer, "connection cap ({}) reached: closing new clients ({skipped} more not logged)", limits.max_connections);
            }
            drop(stream);
            continue;
        }
        // On this thread's runtime: the connection never changes threads.
        let (b, i) = (Arc::clone(&balancer), Arc::clone(&inner));
        inner
            .tracker
            .spawn(client(b, stream, i).instrument(info_span!("lb_conn", %peer)));
    }
    debug!("lb {}: an accept loop on {addr} stopped", balancer.name);
}

/// Decrements a counter when dropped.
struct Held<'a>(&'a AtomicU64);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn client(balancer: Arc<Balancer>, stream: TcpStream, inner: Arc<Inner>) {
    let _slot = Held(&balancer.active);
    let settings = read(&balancer.settings);
    let limits = settings.limits;
    // TCP_NODELAY comes from the listener (spawn_accept), as Linux copies it
    // into accepted sockets: one setsockopt less per connection.
    let Some((backend, server)) = connect(&balancer, &settings).await else {
        balancer.refused_no_backend.fetch_add(1, Ordering::Relaxed);
        if let Some(skipped) = balancer.log.allow("no_backend") {
            warn!(
                "balancer {}: no healthy backend: closing clients ({skipped} more not logged)",
                balancer.name
            );
        }
        return; // dropping the stream closes it; not one byte was sent
    };
    let _conn = Held(&backend.active);
    backend.total.fetch_add(1, Ordering::Relaxed);
    let _ = server.set_nodelay(true);
    let end = relay(
        stream,
        server,
        &limits,
        &backend.bytes_in,
        &backend.bytes_out,
        &inner.force_close,
    )
    .await;
    match end {
        RelayEnd::Closed => {}
        RelayEnd::Error(e) => debug!(backend = %backend.name, "relay ended: {e}"),
        RelayEnd::IdleTimeout => {
            balancer.idle_timeouts.fetch_add(1, Ordering::Relaxed);
            debug!(backend = %backend.name, "idle for {:?}: closed", limits.idle_timeout);
        }
        RelayEnd::Shutdown => debug!(backend = %backend.name, "closed by shutdown"),
    }
}

/// Connects to the first backend that answers, in the order the algorithm
/// gives, at most `max_connect_attempts` tries. The backend's open count is
/// raised while connecting so concurrent leastconn picks spread.
async fn connect(balancer: &Balancer, settings: &Settings) -> Option<(Arc<Backend>, TcpStream)> {
    let list = read(&balancer.backends);
    let eligible: Vec<&Arc<Backend>> = list.iter().filter(|b| b.eligible()).collect();
    if eligible.is_empty() {
        return None;
    }
    let active: Vec<u64> = eligible
        .iter()
        .map(|b| b.active.load(Ordering::Relaxed))
        .collect();
    let cursor = balancer.cursor.fetch_add(1, Ordering::Relaxed);
    let attempts = settings.limits.max_connect_attempts.max(1) as usize;
    for i in select::order(settings.algorithm, &active, cursor)
        .into_iter()
        .take(attempts)
    {
        let backend = eligible[i];
        backend.active.fetch_add(1, Ordering::Relaxed);
        let outcome = tokio::time::timeout(
            settings.limits.connect_timeout,
            TcpStream::connect(backend.addr),
        )
        .await;
        backend.active.fetch_sub(1, Ordering::Relaxed);
        let error = match outcome {
            Ok(Ok(stream)) => {
                backend.active.fetch_add(1, Ordering::Relaxed);
                return Some((Arc::clone(backend), stream));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("timed out after {:?}", settings.limits.connect_timeout),
        };
        backend.connect_failures.fetch_add(1, Ordering::Relaxed);
        if let Some(skipped) = balancer.log.allow("connect") {
            warn!(
                "balancer {}: connect to {} ({}) failed: {error}; trying the next backend ({skipped} more not logged)",
                balancer.name, backend.name, backend.addr
            );
        }
    }
    None
}

async fn check_loop(balancer: Arc<Balancer>, backend: Arc<Backend>, inner: Arc<Inner>) {
    loop {
        let settings = read(&balancer.settings);
        let started = tokio::time::Instant::now();
        if !backend.drained.load(Ordering::Relaxed) {
            let outcome = tokio::select! {
                () = backend.stop.cancelled() => return,
                r = crate::probe::probe(&settings.check, backend.addr, settings.interval) => r,
            };
            if let Err(e) = &outcome {
                debug!("check failed: {e}");
            }
            let transition = {
                let mut health = lock(&backend.health);
                let t = health.record(
                    outcome.map_err(|e| e.to_string()),
                    settings.rise,
                    settings.fall,
                );
                backend.up.store(health.is_up(), Ordering::Relaxed);
                t
            };
            // A drain that raced this check already said so; the check result waits for undrain.
            if !backend.drained.load(Ordering::Relaxed) {
                match transition {
                    Some(Transition::Up { reason } | Transition::Down { reason }) => {
                        emit(&inner, &balancer, &backend, reason)
                    }
                    None => {}
                }
            }
        }
        tokio::select! {
            () = backend.stop.cancelled() => return,
            () = tokio::time::sleep_until(started + settings.interval) => {}
            () = backend.wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The accept path relies on Linux copying TCP_NODELAY from the
    /// listener into accepted sockets.
    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay_from_the_listener() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        socket2::SockRef::from(&listener)
            .set_tcp_nodelay(true)
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(accepted.nodelay().unwrap());
    }

    /// A balancer on port 0 in front of a listener nobody accepts on (the
    /// kernel completes the handshakes, enough for a tcp check).
    async fn one_balancer(
        shutdown: &CancellationToken,
    ) -> (LoadBalancers, std::net::TcpListener, SocketAddr) {
        let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let config = BalancerConfig::new(
            "t",
            "127.0.0.1:0".parse().unwrap(),
            vec![BackendConfig::new("b", backend.local_addr().unwrap())],
        );
        let listener = bind(config.listen).unwrap();
        let addr = listener.local_addr().unwrap();
        let lbs =
            LoadBalancers::start(vec![(config, listener)], Arc::new(|_| {}), shutdown.clone())
                .await;
        (lbs, backend, addr)
    }

    fn threads_finished(lbs: &LoadBalancers) -> bool {
        let threads = lbs.inner.threads.as_ref().expect("relay threads started");
        // Bounded wait: the threads end right after the token fires.
        for _ in 0..500 {
            if threads.all_finished() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn relay_threads_serve_connections_and_end_after_shutdown() {
        let shutdown = CancellationToken::new();
        let (lbs, backend, addr) = one_balancer(&shutdown).await;
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = tokio::task::spawn_blocking(move || backend.accept())
            .await
            .unwrap()
            .unwrap();
        drop(accepted);
        shutdown.cancel();
        lbs.stopped().await;
        assert!(
            threads_finished(&lbs),
            "relay threads still running after shutdown"
        );
        assert!(TcpStream::connect(addr).await.is_err(), "still listening");
    }

    /// A caller that drops its runtime without shutting the balancers down
    /// (a test ending early) does not leave their threads and listeners behind.
    #[test]
    fn relay_threads_end_with_the_callers_runtime() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let shutdown = CancellationToken::new();
        let (lbs, _backend, addr) = runtime.block_on(one_balancer(&shutdown));
        drop(runtime);
        assert!(threads_finished(&lbs), "relay threads outlived the runtime");
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "still listening"
        );
    }

    #[test]
    fn the_rate_limited_log_counts_what_it_skipped() {
        let log = RateLimitedLog::new(Duration::from_secs(3600));
        assert_eq!(log.allow("a"), Some(0));
        assert_eq!(log.allow("a"), None);
        assert_eq!(log.allow("a"), None);
        assert_eq!(log.allow("b"), Some(0));
        let log = RateLimitedLog::new(Duration::ZERO);
        assert_eq!(log.allow("a"), Some(0));
        assert_eq!(log.allow("a"), Some(0));
    }
}
