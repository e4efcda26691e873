//! Live changes: bringing a running services VM to the inventory through
//! bootlabd's admin API (HTTPS, mutual TLS), without rebuilding or
//! rebooting it.
//!
//! - [`route`]: how the host reaches the admin API for a libvirt URI:
//!   local URIs over the lab network (to `services.ip`; the services
//!   firewall opens the port to `network.host_ip` only, so a lab without a
//!   host address is refused), `qemu+ssh://` (and `+libssh`/`+libssh2`)
//!   through an SSH tunnel to the same host and user ([`Tunnel`]: `ssh -N
//!   -L <socket>:<services ip>:<port>`), any other remote transport
//!   refused with what to do.
//! - [`HostSide::read`]: what the host wants served: its lab.toml (bytes
//!   and generation), the restart-only `[services]` fields, and every file
//!   under `libvirt.assets_source` with its SHA-256 (a hash cache in the
//!   lab's state directory: unchanged files are not read again).
//! - [`compare`]: host vs the VM's `GET /v1/state` -> a [`LivePlan`]:
//!   assets new or changed (by content hash: an unchanged file is never
//!   sent again), the inventory when its generation differs, and the
//!   fields that need a restart (then nothing is pushed: `up
//!   --restart-services` restarts the VM on a fresh install payload).
//! - [`apply`]: pushes the assets first (the new inventory may name them,
//!   or templates among them), then the inventory, which bootlabd
//!   validates and reloads before it answers; then reads the state again
//!   to confirm the generation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bootlab_admin::client::{AdminClient, ClientError, Endpoint};
use bootlab_admin::pki::LabPki;
use bootlab_admin::wire::{self, AssetEntry, InventoryApplied, ServicesView, State};
use bootlab_inventory::Inventory;
use serde::Serialize;

use crate::hoststate::LabState;
use crate::libvirt::{Action, Change, Object, human_any};

/// Where `ssh` takes a `qemu+ssh://` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// `user@`, if given.
    pub user: Option<String>,
    /// The host.
    pub host: String,
    /// `:port`, if given.
    pub port: Option<u16>,
    /// `?keyfile=`.
    pub keyfile: Option<String>,
    /// `?known_hosts=`.
    pub known_hosts: Option<String>,
    /// `?no_verify=1`.
    pub no_verify: bool,
}

/// How the host reaches the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Over the lab network.
    Direct(SocketAddr),
    /// Through an SSH tunnel to the hypervisor, then to this address.
    Ssh(SshTarget, SocketAddr),
    /// Not possible; why and what to do.
    Refused(String),
}

/// Parses an SSH libvirt URI (`qemu+ssh://[user@]host[:port]/system?keyfile=..`).
pub fn ssh_target(uri: &str) -> Option<SshTarget> {
    let (scheme, rest) = uri.split_once("://")?;
    let transport = scheme.split_once('+').map(|(_, t)| t)?;
    if !matches!(transport, "ssh" | "libssh" | "libssh2") {
        return None;
    }
    let (authority, path_query) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_owned()).filter(|u| !u.is_empty()), h),
        None => (None, authority),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, tail) = v6.split_once(']')?;
        (
            h.to_owned(),
            tail.strip_prefix(':').and_then(|p| p.parse().ok()),
        )
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p.parse().ok()?)),
            None => (hostport.to_owned(), None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let mut t = SshTarget {
        user,
        host,
        port,
        keyfile: None,
        known_hosts: None,
        no_verify: false,
    };
    if let Some((_, query)) = path_query.split_once('?') {
        for kv in query.split('&') {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let v = percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned();
            match k {
                "keyfile" => t.keyfile = Some(v),
                "known_hosts" => t.known_hosts = Some(v),
                "no_verify" => t.no_verify = v == "1",
                _ => {}
            }
        }
    }
    Some(t)
}

/// The admin API's address on the lab network.
pub fn admin_addr(inv: &Inventory) -> SocketAddr {
    SocketAddr::new(inv.services().ip.into(), inv.services().listen.admin.port())
}

/// How to reach the admin API for `uri`.
pub fn route(inv: &Inventory, uri: &str) -> Route {
    let addr = admin_addr(inv);
    if bootlab_firewall::admin_source(inv).is_none() {
        return Route::Refused(format!(
            "network.mode = \"{}\" without network.host_ip: the hypervisor has no address on the lab network, so it cannot reach the services VM's admin API (its firewall opens it to host_ip only); set network.host_ip",
            inv.network().mode.as_str()
        ));
    }
    if crate::libvirt::is_local_uri(uri) {
        return Route::Direct(addr);
    }
    match ssh_target(uri) {
        Some(t) => Route::Ssh(t, addr),
        None => Route::Refused(format!(
            "the libvirt URI {uri} is remote and not SSH: bootlab pushes to the services VM over the lab network (local URIs) or through an SSH tunnel (qemu+ssh://); connect with qemu+ssh://, or run bootlab on the hypervisor"
        )),
    }
}

/// An `ssh -N -L` tunnel to the admin API; the `ssh` process is ended on drop.
pub struct Tunnel {
    child: Child,
    _dir: tempfile::TempDir,
    /// The local end.
    pub socket: PathBuf,
}

impl Tunnel {
    /// Opens it (waiting up to `wait` for the local socket).
    pub fn open(t: &SshTarget, remote: SocketAddr, wait: Duration) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("bootlab-tunnel-")
            .tempdir()
            .context("a directory for the tunnel's socket")?;
        let socket = dir.path().join("admin.sock");
        let ssh = std::env::var_os("BOOTLAB_SSH").unwrap_or_else(|| "ssh".into());
        let mut cmd = Command::new(&ssh);
        cmd.args([
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ServerAliveInterval=15",
        ]);
        if let Some(p) = t.port {
            cmd.arg("-p").arg(p.to_string());
        }
        if let Some(k) = &t.keyfile {
            cmd.arg("-i").arg(k);
        }
        if let Some(k) = &t.known_hosts {
            cmd.arg("-o").arg(format!("UserKnownHostsFile={k}"));
        }
        if t.no_verify {
            cmd.args(["-o", "StrictHostKeyChecking=no"]);
        }
        cmd.arg("-L").arg(format!(
            "{}:{}:{}",
            socket.display(),
            remote.ip(),
            remote.port()
        ));
        cmd.arg(match &t.user {
            Some(u) => format!("{u}@{}", t.host),
            None => t.host.clone(),
        });
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("running {}", ssh.to_string_lossy()))?;
        let start = Instant::now();
        while !socket.exists() {
            if let Some(status) = child.try_wait()? {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                bail!(
                    "the SSH tunnel to {} exited ({status}): {}",
                    t.host,
                    err.trim()
                );
            }
            if start.elapsed() > wait {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the SSH tunnel to {} did not come up in {wait:?}", t.host);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Self {
            child,
            _dir: dir,
            socket,
        })
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client of the services VM's admin API, with its tunnel when it has one.
pub struct Connection {
    /// The client.
    pub client: AdminClient,
    _tunnel: Option<Tunnel>,
}

impl Connection {
    /// Connects along `route` with the lab's client certificate.
    pub fn open(inv: &Inventory, route: &Route, pki: &LabPki) -> anyhow::Result<Self> {
        let config = Arc::new(bootlab_admin::pki::client_config(
            &pki.ca.cert,
            Some(&pki.client),
        )?);
        let ip = inv.services().ip.into();
        match route {
            Route::Direct(a) => Ok(Self {
                client: AdminClient::new(Endpoint::Tcp(*a), ip, config),
                _tunnel: None,
            }),
            Route::Ssh(t, a) => {
                let tunnel = Tunnel::open(t, *a, Duration::from_secs(30))?;
                Ok(Self {
                    client: AdminClient::new(Endpoint::Unix(tunnel.socket.clone()), ip, config),
                    _tunnel: Some(tunnel),
                })
            }
            Route::Refused(why) => bail!("{why}"),
        }
    }

    /// Reads the state, retrying while the admin API does not answer yet
    /// (the services VM booting), up to `wait`. TLS and HTTP errors are
    /// final.
    pub fn wait_state(&self, wait: Duration) -> Result<State, ClientError> {
        let start = Instant::now();
        loop {
            match self.client.state() {
                Ok(s) => return Ok(s),
                Err(e @ (ClientError::Connect { .. } | ClientError::Io { .. }))
                    if start.elapsed() < wait =>
                {
                    let _ = e;
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The host's files under the assets source.
#[derive(Debug, Clone)]
pub struct HostAssets {
    /// `libvirt.assets_source` (or `--assets`).
    pub root: PathBuf,
    /// Every file with its hash.
    pub entries: Vec<AssetEntry>,
}

/// What the host wants the services VM to serve.
#[derive(Debug, Clone)]
pub struct HostSide {
    /// The inventory file's path.
    pub path: PathBuf,
    /// Its bytes.
    pub text: Vec<u8>,
    /// Its generation.
    pub generation: String,
    /// The restart-only `[services]` fields.
    pub services: ServicesView,
    /// The assets, when there is a source.
    pub assets: Option<HostAssets>,
}

impl HostSide {
    /// Reads the inventory file and hashes the assets source (`assets`
    /// overrides `libvirt.assets_source`), with the lab's hash cache.
    pub fn read(inv: &Inventory, state: &LabState, assets: Option<&Path>) -> anyhow::Result<Self> {
        let path = inv.source().to_path_buf();
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let root = assets
            .map(Path::to_path_buf)
            .or_else(|| inv.libvirt().assets_source.clone());
        let assets = match root {
            None => None,
            Some(root) => {
                if !root.is_dir() {
                    bail!(
                        "the assets source {} does not exist (libvirt.assets_source or --assets)",
                        root.display()
                    );
                }
                let mut m = state.assets_manifest();
                let bar = indicatif::ProgressBar::new_spinner();
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{msg} {bytes} hashed")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                let scan = m
                    .scan(&root, true, &mut |p, n| {
                        bar.set_message(format!("hashing {p}"));
                        bar.inc(n);
                    })
                    .with_context(|| format!("reading the assets in {}", root.display()))?;
                bar.finish_and_clear();
                if let Err(e) = m.save() {
                    eprintln!("note: cannot save the assets hash cache: {e}");
                }
                for s in &scan.skipped {
                    eprintln!(
                        "note: {s} under {} is not pushed (not a regular file, or not UTF-8)",
                        root.display()
                    );
                }
                Some(HostAssets {
                    root,
                    entries: scan.entries,
                })
            }
        };
        Ok(Self {
            generation: wire::generation(&text),
            path,
            text,
            services: ServicesView::of(inv),
            assets,
        })
    }
}

/// One file to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AssetPush {
    /// Path under the assets root.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256.
    pub sha256: String,
    /// Not on the VM yet (else: different there).
    pub new: bool,
}

/// What a live sync would do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LivePlan {
    /// Assets to send, in path order.
    pub assets: Vec<AssetPush>,
    /// (VM's generation, host's) when the inventory differs.
    pub inventory: Option<(String, String)>,
    /// Fields that need a restart (then nothing is pushed live).
    pub restart: Vec<String>,
    /// Files on the VM that the source does not have (left alone).
    pub only_on_vm: Vec<String>,
}

impl LivePlan {
    /// Nothing to send and nothing to restart.
    pub fn is_empty(&self) -> bool {
        self.assets.is_empty() && self.inventory.is_none() && self.restart.is_empty()
    }

    /// Bytes of assets to send.
    pub fn bytes(&self) -> u64 {
        self.assets.iter().map(|a| a.size).sum()
    }
}

/// Host vs the VM's state.
pub fn compare(host: &HostSide, vm: &State) -> LivePlan {
    let on_vm = vm.assets_by_path();
    let mut plan = LivePlan::default();
    if let Some(a) = &host.assets {
        for e in &a.entries {
            match on_vm.get(e.path.as_str()) {
                Some(v) if v.sha256 == e.sha256 && v.size == e.size => {}
                other => plan.assets.push(AssetPush {
                    path: e.path.clone(),
                    size: e.size,
                    sha256: e.sha256.clone(),
                    new: other.is_none(),
                }),
            }
        }
        let mine: std::collections::BTreeSet<&str> =
            a.entries.iter().map(|e| e.path.as_str()).collect();
        plan.only_on_vm = vm
            .assets
            .iter()
            .filter(|v| !mine.contains(v.path.as_str()))
            .map(|v| v.path.clone())
            .collect();
    }
    if vm.generation != host.generation {
        plan.inventory = Some((vm.generation.clone(), host.generation.clone()));
    }
    plan.restart = vm.services.restart_needed(&host.services);
    plan
}

/// Everything, for a services VM that does not answer yet: every asset;
/// the inventory only when the VM will not boot from a fresh payload.
pub fn unreached(host: &HostSide, fresh_boot: bool) -> LivePlan {
    LivePlan {
        assets: host
            .assets
            .iter()
            .flat_map(|a| &a.entries)
            .map(|e| AssetPush {
                path: e.path.clone(),
                size: e.size,
                sha256: e.sha256.clone(),
                new: true,
            })
            .collect(),
        inventory: (!fresh_boot).then(|| ("unknown".to_owned(), host.generation.clone())),
        restart: vec![],
        only_on_vm: vec![],
    }
}

fn short(g: &str) -> &str {
    &g[..g.len().min(12)]
}

/// The plan as lines of `bootlab plan` (`restarting`: `up` restarts the
/// services VM for the restart-only fields).
pub fn changes(
    plan: &LivePlan,
    host: &HostSide,
    restarting: bool,
    why_not: Option<&str>,
) -> Vec<Change> {
    let mut out = Vec::new();
    let held = (!plan.restart.is_empty() && !restarting).then(|| {
        format!(
            "these changes need a restart of the services VM: {}; run `bootlab up --restart-services`",
            plan.restart.join("; ")
        )
    });
    let action = |bytes: u64| match (&held, why_not) {
        (_, Some(why)) => Action::Refuse {
            why: why.to_owned(),
        },
        (Some(h), None) => Action::Hold { why: h.clone() },
        (None, None) => Action::Push { bytes },
    };
    for a in &plan.assets {
        out.push(Change {
            object: Object::Asset,
            name: a.path.clone(),
            action: action(a.size),
            note: if a.new {
                "new".into()
            } else {
                format!("changed, sha256 {}", short(&a.sha256))
            },
            fields: vec![],
        });
    }
    if let Some((from, to)) = &plan.inventory {
        if !restarting {
            out.push(Change {
                object: Object::Inventory,
                name: host.path.display().to_string(),
                action: action(host.text.len() as u64),
                note: format!("generation {} -> {}", short(from), short(to)),
                fields: vec![],
            });
        }
    } else if held.is_some() {
        out.push(Change {
            object: Object::Inventory,
            name: host.path.display().to_string(),
            action: action(0),
            note: String::new(),
            fields: vec![],
        });
    }
    out
}

/// What [`apply`] sent.
#[derive(Debug, Default)]
pub struct Pushed {
    /// Assets stored.
    pub assets: Vec<String>,
    /// Their bytes.
    pub bytes: u64,
    /// The inventory's answer, when it was pushed.
    pub inventory: Option<InventoryApplied>,
    /// The state afterwards.
    pub state: Option<State>,
}

/// Pushes `plan`: assets, then the inventory (validated and reloaded by
/// bootlabd before it answers), then reads the state to confirm.
pub fn apply(conn: &Connection, host: &HostSide, plan: &LivePlan) -> anyhow::Result<Pushed> {
    let mut done = Pushed::default();
    if let Some(a) = &host.assets {
        let total = plan.bytes();
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg:40} {bar:30} {bytes}/{total_bytes}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        for p in &plan.assets {
            bar.set_message(format!("push {}", p.path));
            let file = a.root.join(&p.path);
            let stored = conn
                .client
                .put_asset(&p.path, &file, &p.sha256, &mut |n| bar.inc(n))
                .with_context(|| format!("pushing {}", p.path))?;
            if stored.sha256 != p.sha256 {
                bail!(
                    "{} changed while it was pushed; run `bootlab up` again",
                    p.path
                );
            }
            done.assets.push(p.path.clone());
            done.bytes += stored.size;
        }
        bar.finish_and_clear();
    }
    if plan.inventory.is_some() {
        let name = host.path.display().to_string();
        match conn.client.put_inventory(&host.text, &name) {
            Ok(applied) => done.inventory = Some(applied),
            Err(ClientError::Status { status, error }) => {
                let mut msg = format!(
                    "the services VM refused the inventory ({status}): {}",
                    error.error
                );
                if let Some(d) = &error.diagnostics {
                    msg.push('\n');
                    msg.push_str(d);
                }
                bail!("{msg}");
            }
            Err(e) => return Err(e).context("pushing the inventory"),
        }
    }
    let state = conn
        .client
        .state()
        .context("reading the state after the push")?;
    if state.generation != host.generation {
        bail!(
            "the services VM serves generation {} after the push, the host has {}",
            short(&state.generation),
            short(&host.generation)
        );
    }
    done.state = Some(state);
    Ok(done)
}

/// One line about what was pushed.
pub fn summary(p: &Pushed) -> String {
    let mut parts = Vec::new();
    if !p.assets.is_empty() {
        parts.push(format!(
            "{} asset{} ({})",
            p.assets.len(),
            if p.assets.len() == 1 { "" } else { "s" },
            human_any(p.bytes)
        ));
    }
    if let Some(i) = &p.inventory {
        parts.push(format!(
            "the inventory (generation {})",
            short(&i.generation)
        ));
    }
    if parts.is_empty() {
        "nothing to push: the services VM serves the inventory and assets of the host".into()
    } else {
        format!("pushed {}; no rebuild, no reboot", parts.join(" and "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_uris() {
        let t = ssh_target("qemu+ssh://root@hv.example:2222/system?keyfile=/k%20x&no_verify=1")
            .unwrap();
        assert_eq!(t.user.as_deref(), Some("root"));
        assert_eq!(t.host, "hv.example");
        assert_eq!(t.port, Some(2222));
        assert_eq!(t.keyfile.as_deref(), Some("/k x"));
        assert!(t.no_verify);
        let t = ssh_target("qemu+libssh2://[fe80::1]/system").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.user), ("fe80::1", None, None));
        assert!(ssh_target("qemu+tcp://hv/system").is_none());
        assert!(ssh_target("qemu:///system").is_none());
        assert!(ssh_target("qemu+ssh:///system").is_none());
    }
}
