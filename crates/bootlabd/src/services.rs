//! Binds every service's sockets and spawns it. Each protocol crate takes
//! already-bound sockets, the shared state and the shutdown token; binding
//! here means a port clash stops start-up with a clear error instead of a
//! half-running daemon.

use anyhow::Context as _;
use bootlab_dns::LearnedBatch;
use bootlab_http::{Limits, Readiness};
use bootlab_state::Shared;
use tokio::sync::mpsc;

use crate::activation::Inherited;
use crate::firewall::DaemonFirewall;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The running services' tasks: each yields its name and how it ended.
pub(crate) type Tasks = JoinSet<(&'static str, std::io::Result<()>)>;

/// Handles of running services that reload acts on directly.
pub(crate) struct Running {
    /// The balancers, when the inventory has any.
    pub lb: Option<bootlab_lb::LoadBalancers>,
    /// The NTP service's configuration, when `[ntp] enable`.
    pub ntp: Option<tokio::sync::watch::Sender<bootlab_ntp::NtpConfig>>,
}

/// The NTP service's configuration from the inventory's `[ntp]`.
pub(crate) fn ntp_config(inv: &bootlab_inventory::Inventory) -> bootlab_ntp::NtpConfig {
    bootlab_ntp::NtpConfig {
        local_stratum: inv.ntp().local_stratum,
        require_sync: inv.ntp().require_sync,
    }
}

/// What the admin API is wired to: the served generation, and the channel
/// pushed inventories travel to the lifecycle loop on.
pub(crate) struct AdminWiring {
    /// The inventory being served.
    pub current: tokio::sync::watch::Receiver<crate::admin::Current>,
    /// Pushed inventories.
    pub pushes: mpsc::Sender<crate::admin::PushRequest>,
}

/// Binds (or takes over from `inherited`) and spawns every service.
pub(crate) async fn spawn_all(
    shared: &Shared,
    shutdown: &CancellationToken,
    tasks: &mut Tasks,
    firewall: &DaemonFirewall,
    ready: &Readiness,
    inherited: &mut Inherited,
    admin: AdminWiring,
) -> anyhow::Result<Running> {
    spawn_dhcp(shared, shutdown, tasks, inherited)?;
    spawn_dns(shared, shutdown, tasks, firewall, inherited).await?;
    spawn_tftp(shared, shutdown, tasks, inherited).await?;
    spawn_http(shared, shutdown, tasks, ready, inherited).await?;
    let ntp = spawn_ntp(shared, shutdown, tasks, inherited).await?;
    let lb = crate::balancers::spawn(shared, shutdown, tasks, inherited).await?;
    crate::admin::spawn(
        shared,
        admin.current,
        admin.pushes,
        shutdown,
        tasks,
        inherited,
    )
    .await?;
    inherited.warn_unused();
    Ok(Running { lb, ntp })
}

/// The UDP socket passed as `name`, else one bound on `addr`.
pub(crate) async fn udp_socket(
    inherited: &mut Inherited,
    name: &str,
    addr: std::net::SocketAddr,
) -> anyhow::Result<tokio::net::UdpSocket> {
    match inherited.udp(name) {
        Some(s) => {
            s.set_nonblocking(true)?;
            Ok(tokio::net::UdpSocket::from_std(s)?)
        }
        None => tokio::net::UdpSocket::bind(addr)
            .await
            .with_context(|| format!("binding {name} on {addr}")),
    }
}

/// The TCP listener passed as `name`, else one bound on `addr`.
pub(crate) async fn tcp_listener(
    inherited: &mut Inherited,
    name: &str,
    addr: std::net::SocketAddr,
) -> anyhow::Result<tokio::net::TcpListener> {
    match inherited.tcp(name) {
        Some(s) => {
            s.set_nonblocking(true)?;
            Ok(tokio::net::TcpListener::from_std(s)?)
        }
        None => tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {name} on {addr}")),
    }
}

/// NTP on `services.listen.ntp` when `[ntp] enable` (server replies only;
/// DHCP option 42 points clients here).
async fn spawn_ntp(
    shared: &Shared,
    shutdown: &CancellationToken,
    tasks: &mut Tasks,
    inherited: &mut Inherited,
) -> anyhow::Result<Option<tokio::sync::watch::Sender<bootlab_ntp::NtpConfig>>> {
    let inv = shared.inventory();
    if !inv.ntp().enable {
        return Ok(None);
    }
    let socket = udp_socket(inherited, "ntp", inv.services().listen.ntp).await?;
    let (tx, rx) = tokio::sync::watch::channel(ntp_config(&inv));
    let counters = std::sync::Arc::new(bootlab_ntp::NtpCounters::default());
    register_ntp_metrics(&shared.metrics, &counters);
    let shutdown = shutdown.child_token();
    tasks.spawn(async move {
        (
            "ntp",
            bootlab_ntp::serve_with(
                socket,
                rx,
                shutdown,
                bootlab_ntp::ServeOptions::default(),
                counters,
            )
            .await,
        )
    });
    Ok(Some(tx))
}

/// `bootlab_ntp_*` counters, read from the service's atomics at scrape time.
fn register_ntp_metrics(
    metrics: &bootlab_state::Metrics,
    counters: &std::sync::Arc<bootlab_ntp::NtpCounters>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    type Read = fn(&bootlab_ntp::NtpCounters) -> u64;
    let plain: [(&str, &str, Read); 6] = [
        (
            "bootlab_ntp_requests_total",
            "NTP datagrams received.",
            |c| c.requests.load(Relaxed),
        ),
        ("bootlab_ntp_replies_total", "NTP time replies sent.", |c| {
            c.replies.load(Relaxed)
        }),
        (
            "bootlab_ntp_rate_limited_total",
            "NTP requests over their client's limit.",
            |c| c.rate_limited.load(Relaxed),
        ),
        (
            "bootlab_ntp_kiss_sent_total",
            "NTP kiss-o'-death RATE replies sent.",
            |c| c.kiss_sent.load(Relaxed),
        ),
        (
            "bootlab_ntp_kiss_suppressed_total",
            "Over-limit NTP requests answered with silence.",
            |c| c.kiss_suppressed.load(Relaxed),
        ),
        (
            "bootlab_ntp_send_errors_total",
            "NTP replies the kernel refused.",
            |c| c.send_errors.load(Relaxed),
        ),
    ];
    metrics.counter_fns(counters, &plain);
    for reason in bootlab_ntp::DropReason::ALL {
        let c = counters.clone();
        metrics.counter_fn(
            "bootlab_ntp_dropped_total",
            "NTP datagrams dropped without an answer, by reason.",
            &[("reason", reason.as_str())],
            move || Some(c.dropped(reason)),
        );
    }
}

/// HTTP on `services.listen.http` (boot scripts, assets, machine API,
/// metrics, `/healthz`, `/readyz` following `ready`).
async fn spawn_http(
    shared: &Shared,
    shutdown: &CancellationToken,
    tasks: &mut Tasks,
    ready: &Readiness,
    inherited: &mut Inherited,
) -> anyhow::Result<()> {
    let addr = shared.inventory().services().listen.http;
    let listener = tcp_listener(inherited, "http", addr).await?;
    let (shared, shutdown, ready) = (shared.clone(), shutdown.child_token(), ready.clone());
    tasks.spawn(async move {
        (
            "http",
            bootlab_http::serve_with_readiness(
                listener,
                shared,
                shutdown,
                Limits::default(),
                ready,
            )
            .await,
        )
    });
    Ok(())
}

/// TFTP on `services.listen.tftp` (read-only boot assets and per-MAC configs).
async fn spawn_tftp(
    shared: &Shared,
    shutdown: &CancellationToken,
    tasks: &mut Tasks,
    inherited: &mut Inherited,
) -> anyhow::Result<()> {
    let addr = shared.inventory().services().listen.tftp;
    let socket = udp_socket(inherited, "tftp", addr).await?;
    let (shared, shutdown) = (shared.clone(), shutdown.child_token());
    tasks.spawn(async move { ("tftp", bootlab_tftp::serve(socket, shared, shutdown).await) });
    Ok(())
}

/// DHCP on `services.interface` (or the NIC whose MAC is `services.mac`,
/// when listening on 0.0.0.0), else a plain UDP socket on
/// `services.listen.dhcp`; a socket passed as `dhcp` is used in address
/// mode (replies to the sender).
fn spawn_dhcp(
    shared: &Shared,
    shutdown: &CancellationToken,
    tasks: &mut Tasks,
    inherited: &mut Inherited,
) -> anyhow::Result<()> {
    let inv = shared.inventory();
    let socket = match inherited.udp("dhcp") {
        Some(s) => {
            s.set_nonblocking(true)?;
            bootlab_dhcp::DhcpSocket::from_std(s, bootlab_dhcp::SocketMode::Address)?
        }
        None => bootlab_dhcp::bind(&inv)
            .with_context(|| format!("binding dhcp on {}", inv.services().listen.dhcp))?,
    };
    if inv.network().dhcp == bootlab_inventory::DhcpMode::Proxy {
        // proxyDHCP: PXE clients send their boot request to port 4011.
        let pxe = match inherited.udp("pxe") {
            Some(s) => {
                s.set_nonblocking(true)?;
                bootlab_dhcp::DhcpSocket::from_std(s, bootlab_dhcp::SocketMode::Address)?
            }
            None => bootlab_dhcp::bind_boot_server(&inv).with_context(|| {
                format!(
                    "binding the PXE boot server port {}",
                    bootlab_dhcp::BOOT_SERVER_PORT
                )
            })?,
        };
        let (shared, shutdown) = (shared.clone(), shutdown.child_token());
        tasks.spawn(async move {
            (
                "pxe",
                bootlab_dhcp::serve_boot_server(pxe, shared, shutdown).await,
            )
        });
    }
    let (shared, shutdown) = (shared.clone(), shutdown.child_token());
    tasks.spawn(async move { ("dhcp", bootlab_dhcp::serve(socket, shared, shutdown).await) });
    Ok(())
}

/// DNS on `services.listen.dns`, UDP and TCP (the lab zones; forwarding for
/// `egress.allow_domains`). Addresses the forwarder learns go into the
/// firewall's learned set when the firewall is on.
async fn spawn_dns(
    shared: &Shared,
    shutdown: &CancellationToken,
    tasks: &mut Tasks,
    firewall: &DaemonFirewall,
    inherited: &mut Inherited,
) -> anyhow::Result<()> {
    let addr = shared.inventory().services().listen.dns;
    let udp = udp_socket(inherited, "dns", addr).await?;
    let tcp = tcp_listener(inherited, "dns", addr).await?;
    let learned = shared
        .inventory()
        .services()
        .firewall
        .then(|| spawn_learned_consumer(firewall.clone(), shutdown.child_token(), tasks));
    let (shared, shutdown) = (shared.clone(), shutdown.child_token());
    tasks.spawn(async move {
        (
            "dns",
            bootlab_dns::serve(udp, tcp, shared, learned, shutdown).await,
        )
    });
    Ok(())
}

/// Feeds DNS-learned addresses into the firewall's set, then lets the DNS
/// answer go (the batch's `applied` signal), so a client's first connection
/// to a just-resolved address is already allowed.
fn spawn_learned_consumer(
    firewall: DaemonFirewall,
    shutdown: CancellationToken,
    tasks: &mut Tasks,
) -> mpsc::Sender<LearnedBatch> {
    let (tx, mut rx) = mpsc::channel::<LearnedBatch>(1024);
    tasks.spawn(async move {
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => break,
                next = rx.recv() => match next { Some(b) => b, None => break },
            };
            let mut batches = vec![first];
            while let Ok(more) = rx.try_recv() {
                batches.push(more);
            }
            let entries: Vec<_> = batches
                .iter()
                .flat_map(|b| b.addresses.iter().map(|a| (a.address, a.ttl)))
                .collect();
            let fw = firewall.clone();
            let _ = tokio::task::spawn_blocking(move || fw.learn(&entries)).await;
            for b in batches {
                let _ = b.applied.send(());
            }
        }
        ("dns-learned", Ok(()))
    });
    tx
}
