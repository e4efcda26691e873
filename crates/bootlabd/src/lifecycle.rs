//! Start-up, reload and shutdown.
//!
//! SIGHUP re-reads the inventory ([`crate::source`]: the installed file, or
//! the last push while the installed file is the one it was pushed over);
//! an invalid one is logged with every problem and the old one keeps
//! serving; a valid one is published to every service at once (leases,
//! timeline and in-flight transfers stay). An inventory pushed through the
//! admin API takes the same steps here, one at a time with SIGHUPs: parsed
//! as the `--config` file would be, its scripts rendered, then persisted on
//! the data disk and published; a refusal answers with the diagnostics.
//! Listen addresses are bound once: changing them needs a restart, which
//! is logged (and a push that changes them is refused with 409).
//! SIGTERM/SIGINT cancel every service and wait up to [`SHUTDOWN_GRACE`].
//!
//! systemd hears of each step ([`crate::notify`]): `READY=1` only after
//! every socket is bound and the firewall applied (the same moment
//! `/readyz` turns 200 and "bootlabd ready" is logged), `RELOADING=1` and
//! `READY=1` around each reload, `STOPPING=1` when a stop begins, and
//! `WATCHDOG=1` on a tick while every service task is alive.

use std::path::Path;

use anyhow::Context as _;
use bootlab_admin::server::Refusal;
use bootlab_admin::wire::{self, ApiError, InventoryApplied, InventorySource, ServicesView};
use bootlab_http::Readiness;
use bootlab_inventory::{Inventory, LoadError};
use bootlab_state::{Generation, Shared};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::SHUTDOWN_GRACE;
use crate::admin::{Current, PushRequest};
use crate::firewall::DaemonFirewall;
use crate::notify::{self, Liveness};
use crate::services;
use crate::source::{ConfigSource, Loaded};

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

/// Serves `loaded` until SIGTERM/SIGINT.
pub(crate) async fn serve(source: ConfigSource, loaded: Loaded) -> anyhow::Result<()> {
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;

    let inv = loaded.inv;
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
    let (current, current_rx) = watch::channel(Current {
        generation: loaded.generation,
        source: loaded.source,
    });
    let (pushes, mut push_rx) = mpsc::channel::<PushRequest>(4);
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
        services::AdminWiring {
            current: current_rx,
            pushes: pushes.clone(),
        },
    )
    .await?;
    let mut liveness = Liveness::new(tasks.len());
    ready.set(true);
    notify::ready(&serving_status(&shared.inventory()));
    info!(config = %source.installed().display(), "bootlabd ready");
    let reloader = Reloader {
        source: &source,
        shared: &shared,
        publisher: &publisher,
        listen,
        firewall: &firewall,
        running: &running,
        current: &current,
    };
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
                reloader.reload_from_disk();
                notify::ready(&serving_status(&shared.inventory()));
            }
            Some(push) = push_rx.recv() => {
                notify::reloading();
                let answer = reloader.push(&push.text, push.name.as_deref());
                notify::ready(&serving_status(&shared.inventory()));
                let _ = push.reply.send(answer);
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
    drop(pushes);
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

/// What a reload touches.
struct Reloader<'a> {
    source: &'a ConfigSource,
    shared: &'a Shared,
    publisher: &'a bootlab_state::InventoryPublisher,
    listen: bootlab_inventory::Listen,
    firewall: &'a DaemonFirewall,
    running: &'a services::Running,
    current: &'a watch::Sender<Current>,
}

fn refusal(status: u16, error: String, diagnostics: Option<String>) -> Refusal {
    Refusal {
        status,
        error: ApiError { error, diagnostics },
    }
}

impl Reloader<'_> {
    /// SIGHUP: re-read the inventory from disk.
    fn reload_from_disk(&self) {
        info!(config = %self.source.installed().display(), "SIGHUP: reloading the inventory");
        match self.source.load() {
            Ok(loaded) => {
                report_inventory(&loaded.inv);
                match Generation::new(loaded.inv) {
                    Ok(g) => self.install(
                        g,
                        Current {
                            generation: loaded.generation,
                            source: loaded.source,
                        },
                    ),
                    Err(e) => error!("reload failed, keeping the old inventory: {e}"),
                }
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

    /// An inventory pushed through the admin API: validated as SIGHUP
    /// validates, kept on the data disk, then published.
    fn push(&self, text: &[u8], name: Option<&str>) -> Result<InventoryApplied, Refusal> {
        let name = name.unwrap_or("lab.toml (pushed)");
        info!(
            name,
            bytes = text.len(),
            "admin API: reloading a pushed inventory"
        );
        let refuse = |r: Refusal| {
            error!(
                "pushed inventory refused, keeping the old one: {}{}",
                r.error.error,
                r.error
                    .diagnostics
                    .as_deref()
                    .map(|d| format!(":\n{d}"))
                    .unwrap_or_default()
            );
            Err(r)
        };
        let Ok(s) = std::str::from_utf8(text) else {
            return refuse(refusal(422, "the inventory is not UTF-8".into(), None));
        };
        let inv = match self.source.parse(s, Path::new(name)) {
            Ok(inv) => inv,
            Err(diags) => {
                return refuse(refusal(
                    422,
                    format!(
                        "the inventory is invalid ({} problem(s)); the old one keeps serving",
                        diags.len()
                    ),
                    Some(diags.render(false)),
                ));
            }
        };
        let running = self.shared.inventory();
        let needs = ServicesView::of(&running).restart_needed(&ServicesView::of(&inv));
        if !needs.is_empty() {
            return refuse(refusal(
                409,
                format!(
                    "these changes cannot apply to a running bootlabd; restart the services VM on the new inventory (bootlab up --restart-services): {}",
                    needs.join("; ")
                ),
                None,
            ));
        }
        let warnings = inventory_warnings(&inv);
        report_inventory(&inv);
        let generation = match Generation::new(inv) {
            Ok(g) => g,
            Err(e) => {
                return refuse(refusal(
                    422,
                    "the inventory's boot scripts do not render; the old one keeps serving".into(),
                    Some(e.to_string()),
                ));
            }
        };
        if let Err(e) = self.source.persist_push(&running.services().data_dir, text) {
            return refuse(refusal(
                500,
                format!("cannot keep the inventory on the data disk ({e}); nothing changed"),
                None,
            ));
        }
        let gen_hash = wire::generation(text);
        self.install(
            generation,
            Current {
                generation: gen_hash.clone(),
                source: InventorySource::Pushed,
            },
        );
        Ok(InventoryApplied {
            generation: gen_hash,
            warnings,
        })
    }

    /// Publishes a validated, rendered inventory to every service.
    fn install(&self, generation: Generation, current: Current) {
        let new = &generation.inventory;
        if new.services().listen != self.listen {
            warn!("services.listen changed; the new addresses take effect after a restart");
        }
        let nodes = new.nodes().len();
        // The ruleset first: a rejected one leaves the old rules in force.
        if let Err(e) = self.firewall.apply(&generation.inventory, self.shared) {
            error!("reload: firewall not updated, the previous rules stay in force: {e:#}");
        }
        let inv = generation.inventory.clone();
        self.publisher.install(generation);
        self.current.send_replace(current);
        match &self.running.ntp {
            Some(tx) if inv.ntp().enable => {
                tx.send_replace(services::ntp_config(&inv));
            }
            Some(_) => warn!("ntp.enable turned off; the NTP service stops after a restart"),
            None if inv.ntp().enable => {
                warn!("ntp.enable turned on; the NTP service starts after a restart")
            }
            None => {}
        }
        match &self.running.lb {
            Some(lbs) => crate::balancers::reload(lbs, self.shared, &inv),
            None if !inv.balancers().is_empty() => warn!(
                "balancers were added to an inventory that had none; they start after a restart"
            ),
            None => {}
        }
        let serial = self.shared.inventory().zones().forward.serial;
        info!(nodes, zone_serial = serial, "reloaded inventory");
    }
}

/// What loads but may not work, as text: the inventory's warnings, and
/// boot files the profiles need that `services.assets_dir` lacks.
fn inventory_warnings(inv: &Inventory) -> Vec<String> {
    let mut out: Vec<String> = inv.warnings().iter().map(|w| w.render(false)).collect();
    let root = &inv.services().assets_dir;
    if root.is_dir() {
        for m in inv.missing_assets(root) {
            out.push(format!(
                "{m} under services.assets_dir {}: nodes of this profile will not boot",
                root.display()
            ));
        }
    }
    out
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
