//! Start-up, reload and shutdown.
//!
//! SIGHUP re-reads the inventory; an invalid one is logged with every
//! problem and the old one keeps serving; a valid one is published to every
//! service at once (leases, timeline and in-flight transfers stay). Listen
//! addresses are bound once: changing them needs a restart, which is logged.
//! SIGTERM/SIGINT cancel every service and wait up to [`SHUTDOWN_GRACE`].
//!
//! systemd hears of each step ([`crate::notify`]): `READY=1` only after
//! every socket is bound and the firewall applied (the same moment
//! `/readyz` turns 200 and "bootlabd ready" is logged), `RELOADING=1` and
//! `READY=1` around each reload, `STOPPING=1` when a stop begins, and
//! `WATCHDOG=1` on a tick while every service task is alive.

use std::path::PathBuf;

use anyhow::Context as _;
use bootlab_http::Readiness;
use bootlab_inventory::{Inventory, LoadError};
use bootlab_state::{Generation, Shared};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::SHUTDOWN_GRACE;
use crate::firewall::DaemonFirewall;
use crate::notify::{self, Liveness};
use crate::services;

/// The `STATUS=` line while serving `inv`.
fn serving_status(inv: &Inventory) -> String {
    let l = &inv.services().listen;
    format!(
        "serving lab {} ({} nodes, zone serial {}): dhcp {} dns {} tftp {} http {}",
        inv.lab().name,
        inv.nodes().len(),
        inv.zones().forward.serial,
        l.dhcp,
        l.dns,
        l.tftp,
        l.http
    )
}

/// Waits for the next watchdog tick, forever when there is no watchdog.
async fn next_tick(watchdog: &mut Option<tokio::time::Interval>) {
    match watchdog {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Serves `inv` until SIGTERM/SIGINT.
pub(crate) async fn serve(config: PathBuf, inv: Inventory) -> anyhow::Result<()> {
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;

    std::fs::create_dir_all(&inv.services().data_dir).with_context(|| {
        format!(
            "creating services.data_dir {}",
            inv.services().data_dir.display()
        )
    })?;
    report_inventory(&inv);
    let listen = inv.services().listen;
    let (shared, publisher) =
        Shared::new(inv).context("rendering the boot scripts of the inventory")?;
    let firewall = DaemonFirewall::system();
    notify::status("applying the firewall and binding the services");
    firewall.apply(&shared.inventory(), &shared)?;
    let shutdown = CancellationToken::new();
    let ready = Readiness::new(false);
    let mut tasks: JoinSet<(&'static str, std::io::Result<()>)> = JoinSet::new();
    let mut inherited = crate::activation::Inherited::from_env();
    let running = services::spawn_all(
        &shared,
        &shutdown,
        &mut tasks,
        &firewall,
        &ready,
        &mut inherited,
    )
    .await?;
    let mut liveness = Liveness::new(tasks.len());
    ready.set(true);
    notify::ready(&serving_status(&shared.inventory()));
    info!(config = %config.display(), "bootlabd ready");
    let mut watchdog = notify::watchdog_period().map(|period| {
        info!(
            ?period,
            "systemd watchdog on: WATCHDOG=1 while every service runs"
        );
        let mut i = tokio::time::interval(period);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });

    loop {
        tokio::select! {
            _ = hup.recv() => {
                notify::reloading();
                reload(&config, &shared, &publisher, listen, &firewall, &running);
                notify::ready(&serving_status(&shared.inventory()));
            }
            _ = term.recv() => { info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { info!("SIGINT: stopping"); break; }
            () = next_tick(&mut watchdog) => {
                if liveness.alive(tasks.len()) {
                    notify::watchdog();
                } else {
                    warn!(ended = ?liveness.ended_names(), "a service is gone: not sending WATCHDOG=1");
                }
            }
            Some(done) = tasks.join_next() => {
                match done {
                    Ok((name, Ok(()))) => {
                        warn!(service = name, "service ended");
                        liveness.ended(name);
                        notify::status(&format!("{name} ended; the other services keep serving"));
                    }
                    Ok((name, Err(e))) => {
                        error!(service = name, error = %e, "service failed; stopping");
                        stop_now(&ready, &format!("{name} failed: {e}"));
                        shutdown.cancel();
                        drain(&mut tasks).await;
                        return Err(e).with_context(|| format!("{name} failed"));
                    }
                    Err(e) => {
                        error!(error = %e, "service task panicked; stopping");
                        stop_now(&ready, &format!("a service task panicked: {e}"));
                        shutdown.cancel();
                        drain(&mut tasks).await;
                        anyhow::bail!("a service task panicked: {e}");
                    }
                }
            }
        }
    }
    stop_now(&ready, "stopping: draining the services");
    shutdown.cancel();
    drain(&mut tasks).await;
    info!("stopped");
    Ok(())
}

/// Not ready any more (`/readyz` 503) and `STOPPING=1`.
fn stop_now(ready: &Readiness, status: &str) {
    ready.set(false);
    notify::stopping(status);
}

async fn drain(tasks: &mut JoinSet<(&'static str, std::io::Result<()>)>) {
    let deadline = tokio::time::sleep(SHUTDOWN_GRACE);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { return },
            () = &mut deadline => {
                warn!(remaining = tasks.len(), "grace period over; aborting the rest");
                tasks.abort_all();
                return;
            }
        }
    }
}

fn reload(
    config: &std::path::Path,
    shared: &Shared,
    publisher: &bootlab_state::InventoryPublisher,
    listen: bootlab_inventory::Listen,
    firewall: &DaemonFirewall,
    running: &services::Running,
) {
    info!(config = %config.display(), "SIGHUP: reloading the inventory");
    match bootlab_inventory::load(config) {
        Ok(new) => {
            if new.services().listen != listen {
                warn!("services.listen changed; the new addresses take effect after a restart");
            }
            report_inventory(&new);
            let nodes = new.nodes().len();
            let generation = match Generation::new(new) {
                Ok(g) => g,
                Err(e) => {
                    error!("reload failed, keeping the old inventory: {e}");
                    return;
                }
            };
            // The ruleset first: a rejected one leaves the old rules in force.
            if let Err(e) = firewall.apply(&generation.inventory, shared) {
                error!("reload: firewall not updated, the previous rules stay in force: {e:#}");
            }
            let inv = generation.inventory.clone();
            publisher.install(generation);
            match &running.ntp {
                Some(tx) if inv.ntp().enable => {
                    tx.send_replace(services::ntp_config(&inv));
                }
                Some(_) => warn!("ntp.enable turned off; the NTP service stops after a restart"),
                None if inv.ntp().enable => {
                    warn!("ntp.enable turned on; the NTP service starts after a restart")
                }
                None => {}
            }
            match &running.lb {
                Some(lbs) => crate::balancers::reload(lbs, shared, &inv),
                None if !inv.balancers().is_empty() => warn!(
                    "balancers were added to an inventory that had none; they start after a restart"
                ),
                None => {}
            }
            let serial = shared.inventory().zones().forward.serial;
            info!(nodes, zone_serial = serial, "reloaded inventory");
        }
        Err(LoadError::Invalid(diags)) => {
            error!(
                "reload failed, keeping the old inventory: {} problem(s):\n{diags}",
                diags.len()
            );
        }
        Err(e) => error!("reload failed, keeping the old inventory: {e}"),
    }
}

/// Logs what loads but may not work: the inventory's warnings, and boot
/// files the profiles need that `services.assets_dir` lacks.
fn report_inventory(inv: &Inventory) {
    for w in inv.warnings() {
        warn!("{}", w.render(false));
    }
    let root = &inv.services().assets_dir;
    if !root.is_dir() {
        warn!(
            assets_dir = %root.display(),
            "services.assets_dir does not exist; TFTP and /assets will find no files (boot-assets/gather.sh fills it)"
        );
        return;
    }
    let missing = inv.missing_assets(root);
    for m in &missing {
        warn!(assets_dir = %root.display(), "{m}: nodes of this profile will not boot");
    }
}
