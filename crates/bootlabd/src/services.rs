//! Binds every service's sockets and spawns it. Each protocol crate takes
//! already-bound sockets, the shared state and the shutdown token; binding
//! here means a port clash stops start-up with a clear error instead of a
//! half-running daemon.

use anyhow::Context as _;
use bootlab_boot::Shared;
use bootlab_dns::LearnedBatch;
use bootlab_http::{Limits, Readiness};
use tokio::sync::mpsc;

use crate::firewall::DaemonFirewall;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The running services' tasks: each yields its name and how it ended.
pub(crate) type Tasks = JoinSet<(&'static str, std::io::Result<()>)>;

/// Binds and spawns every service.
pub(crate) async fn spawn_all(
    shared: &Shared,
    shutdown: &CancellationToken,
    tasks: &mut Tasks,
    firewall: &DaemonFirewall,
    ready: &Readiness,
) -> anyhow::Result<()> {
    spawn_dhcp(shared, shutdown, tasks)?;
    spawn_dns(shared, shutdown, tasks, firewall).await?;
    spawn_tftp(shared, shutdown, tasks).await?;
    spawn_http(shared, shutdown, tasks, ready).await?;
    Ok(())
}

/// HTTP on `services.listen.http` (boot scripts, assets, machine API,
/// metrics, `/healthz`, `/readyz` following `ready`).
async fn spawn_http(
    shared: &Shared,
    shutdown: &CancellationToken,
    tasks: &mut Tasks,
    ready: &Readiness,
) -> anyhow::Result<()> {
    let addr = shared.inventory().services.listen.http;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding http on {addr}"))?;
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
) -> anyhow::Result<()> {
    let addr = shared.inventory().services.listen.tftp;
    let socket = tokio::net::UdpSocket::bind(addr)
        .await
        .with_context(|| format!("binding tftp on {addr}"))?;
    let (shared, shutdown) = (shared.clone(), shutdown.child_token());
    tasks.spawn(async move { ("tftp", bootlab_tftp::serve(socket, shared, shutdown).await) });
    Ok(())
}

/// DHCP on `services.interface` (or the NIC whose MAC is `services.mac`,
/// when listening on 0.0.0.0), else a plain UDP socket on
/// `services.listen.dhcp`.
fn spawn_dhcp(
    shared: &Shared,
    shutdown: &CancellationToken,
    tasks: &mut Tasks,
) -> anyhow::Result<()> {
    let inv = shared.inventory();
    let socket = bootlab_dhcp::bind(&inv)
        .with_context(|| format!("binding dhcp on {}", inv.services.listen.dhcp))?;
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
) -> anyhow::Result<()> {
    let addr = shared.inventory().services.listen.dns;
    let udp = tokio::net::UdpSocket::bind(addr)
        .await
        .with_context(|| format!("binding dns (udp) on {addr}"))?;
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding dns (tcp) on {addr}"))?;
    let learned = shared
        .inventory()
        .services
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
