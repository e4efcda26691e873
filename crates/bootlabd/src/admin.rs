//! The admin API in bootlabd (`bootlab-admin`'s server): on
//! `services.listen.admin` (or the socket passed as `admin`) when the TLS
//! material is in `data_dir/admin/` (`ca.crt`, `server.crt`, `server.key`);
//! without it the API is off and that is logged.
//!
//! A pushed inventory is not applied here: it goes to the lifecycle loop
//! ([`PushRequest`]), which validates, persists and reloads it with the
//! same steps as SIGHUP, one at a time with them.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;

use anyhow::Context as _;
use bootlab_admin::pki::{CA_CERT, SERVER_CERT, SERVER_KEY};
use bootlab_admin::server::{AdminCounters, AdminServer, Backend, HandshakeRefusal, Refusal};
use bootlab_admin::wire::{
    ApiError, InventoryApplied, InventorySource, LeaseView, ServicesView, State,
};
use bootlab_admin::{facts, layout};
use bootlab_state::Shared;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::activation::Inherited;
use crate::services::{Tasks, tcp_listener};

/// The inventory being served: its generation and origin.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    /// SHA-256 of its bytes.
    pub generation: String,
    /// Installed or pushed.
    pub source: InventorySource,
}

/// A pushed inventory on its way to the lifecycle loop.
pub(crate) struct PushRequest {
    /// The bytes.
    pub text: Vec<u8>,
    /// What the sender calls the file.
    pub name: Option<String>,
    /// The answer.
    pub reply: oneshot::Sender<Result<InventoryApplied, Refusal>>,
}

struct DaemonBackend {
    shared: Shared,
    current: watch::Receiver<Current>,
    pushes: mpsc::Sender<PushRequest>,
}

fn unavailable(why: &str) -> Refusal {
    Refusal {
        status: 503,
        error: ApiError {
            error: why.to_owned(),
            diagnostics: None,
        },
    }
}

impl Backend for DaemonBackend {
    fn state(&self) -> State {
        let inv = self.shared.inventory();
        let cur = self.current.borrow().clone();
        State {
            lab: inv.lab().name.clone(),
            generation: cur.generation,
            source: cur.source,
            services: ServicesView::of(&inv),
            assets: Vec::new(),
            machine: facts::machine(),
            data_fs: facts::fs(&inv.services().data_dir),
            assets_fs: facts::fs(&inv.services().assets_dir),
            leases: self
                .shared
                .leases
                .snapshot()
                .into_iter()
                .map(|(mac, ip)| LeaseView {
                    mac: mac.to_string(),
                    ip,
                })
                .collect(),
        }
    }

    async fn apply_inventory(
        &self,
        text: Vec<u8>,
        name: Option<String>,
    ) -> Result<InventoryApplied, Refusal> {
        let (reply, answer) = oneshot::channel();
        self.pushes
            .send(PushRequest { text, name, reply })
            .await
            .map_err(|_| unavailable("bootlabd is stopping"))?;
        answer
            .await
            .map_err(|_| unavailable("bootlabd is stopping"))?
    }
}

/// Starts the admin API when its TLS material is there. Returns the
/// counters when it runs.
pub(crate) async fn spawn(
    shared: &Shared,
    current: watch::Receiver<Current>,
    pushes: mpsc::Sender<PushRequest>,
    shutdown: &CancellationToken,
    tasks: &mut Tasks,
    inherited: &mut Inherited,
) -> anyhow::Result<Option<Arc<AdminCounters>>> {
    let inv = shared.inventory();
    let dir = layout::admin_dir(&inv.services().data_dir);
    let files = [CA_CERT, SERVER_CERT, SERVER_KEY].map(|f| dir.join(f));
    let missing: Vec<String> = files
        .iter()
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if !missing.is_empty() {
        info!(
            dir = %dir.display(),
            "admin API off: its TLS material is missing ({}); `bootlab up` installs it with the services VM",
            missing.join(", ")
        );
        return Ok(None);
    }
    let key = &files[2];
    if let Ok(m) = std::fs::metadata(key) {
        if m.permissions().mode() & 0o077 != 0 {
            warn!(key = %key.display(), "the admin API's key was readable by others; setting it to 0600");
            let _ = std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600));
        }
    }
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    let tls = match (|| {
        let (ca, cert, key) = (read(&files[0])?, read(&files[1])?, read(&files[2])?);
        Ok::<_, anyhow::Error>(bootlab_admin::pki::server_config(&ca, &cert, &key)?)
    })() {
        Ok(t) => t,
        Err(e) => {
            warn!(
                "admin API off: its TLS material in {} is unusable: {e:#}",
                dir.display()
            );
            return Ok(None);
        }
    };
    let listener = tcp_listener(inherited, "admin", inv.services().listen.admin).await?;
    let counters = Arc::new(AdminCounters::default());
    register_metrics(&shared.metrics, &counters);
    let server = AdminServer {
        tls: Arc::new(tls),
        backend: Arc::new(DaemonBackend {
            shared: shared.clone(),
            current,
            pushes,
        }),
        assets_root: inv.services().assets_dir.clone(),
        manifest_cache: dir.join(layout::MANIFEST_CACHE),
        counters: counters.clone(),
        limits: Default::default(),
    };
    let shutdown = shutdown.child_token();
    tasks.spawn(async move { ("admin", server.serve(listener, shutdown).await) });
    Ok(Some(counters))
}

/// `bootlab_admin_*` counters, read from the server's atomics at scrape time.
fn register_metrics(metrics: &bootlab_state::Metrics, c: &Arc<AdminCounters>) {
    use std::sync::atomic::Ordering::Relaxed;
    type Read = fn(&AdminCounters) -> u64;
    let plain: [(&str, &str, Read); 7] = [
        (
            "bootlab_admin_requests_total",
            "Admin API requests answered (after a successful TLS handshake).",
            |c| c.requests.load(Relaxed),
        ),
        (
            "bootlab_admin_uploads_total",
            "Assets stored through the admin API.",
            |c| c.uploads.load(Relaxed),
        ),
        (
            "bootlab_admin_upload_bytes_total",
            "Bytes of assets stored through the admin API.",
            |c| c.upload_bytes.load(Relaxed),
        ),
        (
            "bootlab_admin_uploads_refused_total",
            "Uploads refused or failed (the old file kept serving).",
            |c| c.uploads_refused.load(Relaxed),
        ),
        (
            "bootlab_admin_inventories_applied_total",
            "Pushed inventories validated, persisted and reloaded.",
            |c| c.inventories_applied.load(Relaxed),
        ),
        (
            "bootlab_admin_inventories_refused_total",
            "Pushed inventories refused (the old one kept serving).",
            |c| c.inventories_refused.load(Relaxed),
        ),
        (
            "bootlab_admin_connections_over_cap_total",
            "Admin connections closed at once: the connection cap was reached.",
            |c| c.over_cap.load(Relaxed),
        ),
    ];
    metrics.counter_fns(c, &plain);
    for reason in HandshakeRefusal::ALL {
        let c = c.clone();
        metrics.counter_fn(
            "bootlab_admin_handshakes_refused_total",
            "Admin TLS handshakes refused, by reason (no client certificate, expired, unknown CA...).",
            &[("reason", reason.as_str())],
            move || Some(c.handshakes_refused(reason)),
        );
    }
}
