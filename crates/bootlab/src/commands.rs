//! The libvirt-facing commands: `doctor`, `plan`, `up`, `status`, `down`,
//! `console`, `egress apply|show|remove`. Flags arrive parsed (see
//! [`crate::Cli`]); this module turns them into ready objects and runs the
//! steps. `plan` and `up` cover both halves of a lab: libvirt's objects,
//! and what the running services VM serves (pushed live through its admin
//! API, [`crate::live`]).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bootlab_firewall::{BootlabTable, Nft, hypervisor_ruleset};
use bootlab_inventory::{InstallMethod, Inventory, NetworkMode, VirtType};
use serde::Serialize;
use virt::connect::Connect;

use crate::appliance::{self, ApplianceInputs, GivenInputs, InputsError};
use crate::desired::Desired;
use crate::doctor::{self, Probes as _, SystemProbes};
use crate::host::HostPaths;
use crate::hoststate::LabState;
use crate::libvirt::{self, Action, Actual, Change, Object, UpOptions};
use crate::live::{self, Connection, HostSide, LivePlan, Route};

/// `--output`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Output {
    /// For people.
    #[default]
    Text,
    /// For programs.
    Json,
}

/// Flags shared by the commands that talk to libvirt.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConnectArgs {
    /// libvirt URI (overrides libvirt.uri), e.g. qemu+ssh://host/system.
    #[arg(long = "connect", value_name = "URI")]
    pub connect: Option<String>,
}

/// Flags of `plan` and `up` that decide the appliance.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ApplianceArgs {
    /// Appliance kernel (default: the running kernel's image, /boot/vmlinuz-$(uname -r)
    /// or /lib/modules/$(uname -r)/vmlinuz; without one, the newest installed kernel
    /// that has its modules).
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Its module tree (default: that kernel's /lib/modules/<release> or
    /// /usr/lib/modules/<release>; .ko, .ko.xz, .ko.zst and .ko.gz alike).
    #[arg(long, value_name = "DIR")]
    pub modules: Option<PathBuf>,
    /// A busybox for the appliance, statically linked preferably (default: the
    /// distribution's: /bin/busybox from busybox-static on Debian and Ubuntu,
    /// /usr/sbin/busybox on Fedora; RHEL packages none).
    #[arg(long, value_name = "PATH")]
    pub busybox: Option<PathBuf>,
    /// The bootlabd binary to put in the appliance (default: next to bootlab, or on PATH).
    #[arg(long, value_name = "PATH")]
    pub bootlabd: Option<PathBuf>,
    /// The boot assets to push to the services VM's services.assets_dir
    /// (overrides libvirt.assets_source; e.g. what `boot-assets/gather.sh
    /// DIR` gathered). Only new or changed files are sent.
    #[arg(long, value_name = "DIR")]
    pub assets: Option<PathBuf>,
    /// How long `up` waits for a services VM it just started to answer on
    /// its admin API before pushing (seconds).
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub wait: u64,
    /// Build the appliance into DIR and keep it (default: a temporary directory).
    #[arg(long, value_name = "DIR")]
    pub appliance_dir: Option<PathBuf>,
}

fn uri(inv: &Inventory, c: &ConnectArgs) -> String {
    c.connect
        .clone()
        .unwrap_or_else(|| inv.libvirt().uri.clone())
}

/// `auto` -> kvm or qemu: locally by running a tiny KVM guest; remotely by
/// asking libvirt whether the hypervisor offers KVM.
fn resolve_virt_type(inv: &Inventory, conn: &Connect, local: bool) -> VirtType {
    if local {
        let probes = SystemProbes { uri: String::new() };
        doctor::resolve_virt_type(inv.libvirt().virt_type, || probes.kvm())
    } else {
        doctor::resolve_virt_type(inv.libvirt().virt_type, || {
            match conn.get_domain_capabilities(None, Some("x86_64"), None, Some("kvm"), 0) {
                Ok(_) => doctor::KvmState::GuestRuns,
                Err(e) => doctor::KvmState::GuestFails(e.to_string()),
            }
        })
    }
}

/// Everything `plan` and `up` work from.
struct Prepared {
    conn: Connect,
    desired: Desired,
    local: bool,
    virt_type: VirtType,
    uri: String,
    /// The lab's state directory.
    state: LabState,
    /// The lab's certificates (`None` for `plan` before the first `up`).
    pki: Option<bootlab_admin::pki::LabPki>,
    _work: tempfile::TempDir,
}

/// `plan` shows what it can without the appliance's inputs (and says what
/// is missing); `up` needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inputs {
    Required,
    Optional,
}

fn prepare(
    inv: &Inventory,
    c: &ConnectArgs,
    a: &ApplianceArgs,
    need: Inputs,
) -> anyhow::Result<Prepared> {
    let uri = uri(inv, c);
    let local = libvirt::is_local_uri(&uri);
    // Inputs first: a remote URI without --kernel is refused before any
    // connection is made.
    let inputs = if inv.services().install == InstallMethod::Appliance {
        let given = GivenInputs {
            kernel: a.kernel.clone(),
            modules: a.modules.clone(),
            busybox: a.busybox.clone(),
            bootlabd: a.bootlabd.clone(),
        };
        match ApplianceInputs::resolve(given, local, &HostPaths::system()) {
            Ok(i) => Some(i),
            Err(InputsError::Missing(missing)) if need == Inputs::Optional => {
                eprintln!(
                    "note: the services VM's appliance cannot be built on this host yet; \
                     the plan shows it without its boot files, and `up` needs them:"
                );
                for m in &missing {
                    eprintln!("  missing: {}\n     fix: {}", m.what, m.fix);
                }
                None
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        eprintln!(
            "note: services.install.method {:?} is not implemented yet: the services VM is defined without an OS",
            match inv.services().install {
                InstallMethod::Kickstart { .. } => "kickstart",
                _ => "cloud-image",
            }
        );
        None
    };
    let conn = libvirt::connect(&uri)?;
    let virt_type = resolve_virt_type(inv, &conn, local);
    let work = tempfile::tempdir()?;
    let files = match inputs {
        Some(inputs) => {
            let dir = a
                .appliance_dir
                .clone()
                .unwrap_or_else(|| work.path().to_path_buf());
            let (files, missing) = appliance::build(&inputs, &dir)?;
            if !missing.is_empty() {
                eprintln!(
                    "note: not modules of this kernel (built in or absent): {}",
                    missing.join(", ")
                );
            }
            Some(files)
        }
        None => None,
    };
    // The lab's certificates: made on the first `up`; `plan` never writes
    // them (it sizes the payload with throwaway ones).
    let state = LabState::of(inv);
    let pki = match need {
        Inputs::Required => {
            let (pki, created) = state.ensure_pki(inv)?;
            if created {
                eprintln!(
                    "note: the lab's admin API certificates are in {} (CA and client key: keep them; 0600)",
                    state.dir().display()
                );
            }
            Some(pki)
        }
        Inputs::Optional => state.pki(),
    };
    let payload = if inv.services().install == InstallMethod::Appliance {
        let sizing;
        let p = match &pki {
            Some(p) => p,
            None => {
                sizing = bootlab_admin::pki::LabPki::generate(
                    &inv.lab().name,
                    inv.services().ip.into(),
                    &[],
                )?;
                &sizing
            }
        };
        Some(crate::payload::write(inv, p, work.path())?)
    } else {
        None
    };
    let desired = Desired::from_inventory(inv, virt_type, files.as_ref(), payload.as_deref())?;
    Ok(Prepared {
        conn,
        desired,
        local,
        virt_type,
        uri,
        state,
        pki,
        _work: work,
    })
}

/// The host egress rule (nat mode, local URIs): a change when the live
/// table differs from the inventory's ruleset.
fn egress_change(inv: &Inventory, local: bool) -> anyhow::Result<Option<Change>> {
    if inv.network().mode != NetworkMode::Nat {
        return Ok(None);
    }
    if !local {
        return Ok(Some(Change {
            object: Object::Egress,
            name: "inet bootlab".into(),
            action: Action::Refuse {
                why: "a remote URI: the host egress rule belongs on the hypervisor; run `bootlab egress apply` there".into(),
            },
            note: String::new(),
        }));
    }
    let rs = hypervisor_ruleset(inv)?;
    let table = BootlabTable::new(Nft::system());
    let matches = table.matches(&rs).unwrap_or(false);
    Ok((!matches).then(|| Change {
        object: Object::Egress,
        name: "inet bootlab".into(),
        action: if table.state().ok().flatten().is_some() {
            Action::Update
        } else {
            Action::Create
        },
        note: "host egress rule".into(),
    }))
}

fn full_plan(inv: &Inventory, p: &Prepared, opts: &UpOptions) -> anyhow::Result<Vec<Change>> {
    let have = Actual::read(&p.conn, &p.desired)?;
    let mut changes = libvirt::plan(&p.desired, &have, opts);
    changes.extend(egress_change(inv, p.local)?);
    Ok(changes)
}

/// True when the services VM's domain exists and runs.
fn services_running(p: &Prepared) -> anyhow::Result<bool> {
    let have = Actual::read(&p.conn, &p.desired)?;
    Ok(p.desired
        .domains
        .iter()
        .filter(|d| d.is_services)
        .any(|d| have.domains.get(&d.plan.name).is_some_and(|s| s.active)))
}

/// What the live half of `plan`/`up` starts from: the host side, the route
/// and, when the services VM runs and answers, its state.
struct LiveView {
    host: HostSide,
    route: Route,
    conn: Option<Connection>,
    vm: Option<bootlab_admin::wire::State>,
    /// Why the VM's state is unknown, when it is.
    unreached: Option<String>,
}

fn live_view(inv: &Inventory, p: &Prepared, a: &ApplianceArgs) -> anyhow::Result<LiveView> {
    let host = HostSide::read(inv, &p.state, a.assets.as_deref())?;
    let route = live::route(inv, &p.uri);
    let mut view = LiveView {
        host,
        route: route.clone(),
        conn: None,
        vm: None,
        unreached: None,
    };
    if inv.services().install != InstallMethod::Appliance {
        view.unreached = Some("the services VM has no install method yet".into());
        return Ok(view);
    }
    if !services_running(p)? {
        view.unreached = Some("the services VM is not running".into());
        return Ok(view);
    }
    let Some(pki) = &p.pki else {
        view.unreached =
            Some("no certificates for this lab yet (the first `up` makes them)".into());
        return Ok(view);
    };
    if let Route::Refused(why) = &route {
        view.unreached = Some(why.clone());
        return Ok(view);
    }
    match Connection::open(inv, &route, pki) {
        Ok(conn) => {
            match conn.client.state() {
                Ok(s) => view.vm = Some(s),
                Err(e) => view.unreached = Some(format!("{e}")),
            }
            view.conn = Some(conn);
        }
        Err(e) => view.unreached = Some(format!("{e:#}")),
    }
    Ok(view)
}

/// The live plan from `view`: exact when the VM answered; everything
/// otherwise (the inventory only when the VM will not boot from a fresh
/// payload).
fn live_plan(view: &LiveView, fresh_boot: bool) -> LivePlan {
    match &view.vm {
        Some(vm) => live::compare(&view.host, vm),
        None => live::unreached(&view.host, fresh_boot),
    }
}

/// `bootlab doctor`
pub fn doctor(inv: &Inventory, c: &ConnectArgs, output: Output) -> anyhow::Result<ExitCode> {
    let uri = uri(inv, c);
    let local = libvirt::is_local_uri(&uri);
    let probes = SystemProbes { uri };
    let findings = doctor::run_checks(inv, &probes, local);
    let failed = match output {
        Output::Text => doctor::print_findings(&findings),
        Output::Json => {
            println!("{}", serde_json::to_string_pretty(&findings)?);
            findings.iter().any(|f| f.level == doctor::Level::Fail)
        }
    };
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Serialize)]
struct PlanJson<'a> {
    virt_type: &'static str,
    changes: &'a [Change],
    /// The services VM's admin API, when it could not be read.
    services_unreached: Option<&'a str>,
}

fn virt_name(v: VirtType) -> &'static str {
    match v {
        VirtType::Kvm => "kvm",
        _ => "qemu",
    }
}

/// `bootlab plan`
pub fn plan(
    inv: &Inventory,
    c: &ConnectArgs,
    a: &ApplianceArgs,
    start: bool,
    restart_services: bool,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let p = prepare(inv, c, a, Inputs::Optional)?;
    let view = live_view(inv, &p, a)?;
    let restart_for = view
        .vm
        .as_ref()
        .map(|vm| vm.services.restart_needed(&view.host.services))
        .unwrap_or_default();
    let opts = UpOptions {
        start_nodes: start,
        restart_services,
        services_restart_for: restart_for,
    };
    let mut changes = full_plan(inv, &p, &opts)?;
    let boots = libvirt::services_boots(&p.desired, &changes);
    let lp = live_plan(&view, boots);
    let why_not = match &view.route {
        Route::Refused(w) if !lp.is_empty() => Some(w.as_str()),
        _ => None,
    };
    changes.extend(live::changes(&lp, &view.host, boots, why_not));
    match output {
        Output::Text => {
            println!("virt type: {}", virt_name(p.virt_type));
            libvirt::print_plan(&changes);
            if let Some(why) = &view.unreached {
                if !lp.is_empty() {
                    println!(
                        "  (the services VM's state is unknown: {why}; `up` pushes once it answers)"
                    );
                }
            }
            for f in &lp.only_on_vm {
                println!("  on the services VM only (left alone): {f}");
            }
        }
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&PlanJson {
                virt_type: virt_name(p.virt_type),
                changes: &changes,
                services_unreached: view.unreached.as_deref(),
            })?
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `bootlab up`: libvirt first (node VMs not started yet), then the live
/// push to the services VM, then the node VMs: they boot once the services
/// VM serves the current inventory and assets.
pub fn up(
    inv: &Inventory,
    c: &ConnectArgs,
    a: &ApplianceArgs,
    start: bool,
    restart_services: bool,
) -> anyhow::Result<ExitCode> {
    let p = prepare(inv, c, a, Inputs::Required)?;
    let view = live_view(inv, &p, a)?;
    let restart_for = view
        .vm
        .as_ref()
        .map(|vm| vm.services.restart_needed(&view.host.services))
        .unwrap_or_default();
    let opts = UpOptions {
        start_nodes: start,
        restart_services,
        services_restart_for: restart_for,
    };
    let changes = full_plan(inv, &p, &opts)?;
    println!("virt type: {}", virt_name(p.virt_type));
    let is_node_start = |c: &Change| {
        c.object == Object::Domain
            && c.action == Action::Start
            && p.desired
                .domains
                .iter()
                .any(|d| !d.is_services && d.plan.name == c.name)
    };
    let (node_starts, now): (Vec<Change>, Vec<Change>) =
        changes.iter().cloned().partition(is_node_start);
    if !now.is_empty() {
        let bar = indicatif::ProgressBar::new(now.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg:40} [{bar:30}] {pos}/{len}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message("converging libvirt");
        let (egress, rest): (Vec<Change>, Vec<Change>) = now
            .iter()
            .cloned()
            .partition(|c| c.object == Object::Egress);
        libvirt::apply(&p.conn, &p.desired, &rest)?;
        bar.inc(rest.len() as u64);
        for e in &egress {
            match &e.action {
                Action::Refuse { why } => eprintln!("note: egress rule skipped: {why}"),
                _ => {
                    BootlabTable::new(Nft::system())
                        .apply(&hypervisor_ruleset(inv)?)
                        .context("applying the host egress rule")?;
                }
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        println!("done:");
        libvirt::print_plan(&now);
    } else if node_starts.is_empty() {
        println!("libvirt: nothing to do");
    }
    let booted = libvirt::services_boots(&p.desired, &changes);
    // A running services VM whose definition is not the current one was
    // probably installed by an older bootlab (no admin API).
    let definition_pending = changes.iter().any(|c| {
        c.object == Object::Domain
            && c.action == Action::Update
            && p.desired
                .domains
                .iter()
                .any(|d| d.is_services && d.plan.name == c.name)
    });
    let code = push_live(
        inv,
        &p,
        a,
        view,
        booted,
        definition_pending,
        !node_starts.is_empty(),
    )?;
    if !node_starts.is_empty() {
        libvirt::apply(&p.conn, &p.desired, &node_starts)?;
        libvirt::print_plan(&node_starts);
    }
    Ok(code)
}

/// The live half of `up`: wait for a services VM that just booted (when
/// there is something to push, or nodes about to boot from it), compare,
/// push.
fn push_live(
    inv: &Inventory,
    p: &Prepared,
    a: &ApplianceArgs,
    view: LiveView,
    booted: bool,
    definition_pending: bool,
    nodes_follow: bool,
) -> anyhow::Result<ExitCode> {
    if inv.services().install != InstallMethod::Appliance {
        return Ok(ExitCode::SUCCESS);
    }
    let has_assets = view
        .host
        .assets
        .as_ref()
        .is_some_and(|a| !a.entries.is_empty());
    if booted && !has_assets && !nodes_follow {
        println!(
            "services VM: boots with the current inventory (install payload); no assets to push"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let conn = match view.conn {
        Some(c) if !booted => c,
        _ => {
            let pki = p.pki.as_ref().context("the lab's certificates")?;
            if let Route::Refused(why) = &view.route {
                bail!("cannot push to the services VM: {why}");
            }
            Connection::open(inv, &view.route, pki)?
        }
    };
    let vm = match &view.vm {
        Some(s) if !booted => s.clone(),
        // just started, or still booting from an earlier `up`
        _ if booted || !definition_pending => {
            let wait = Duration::from_secs(a.wait);
            eprintln!(
                "waiting up to {wait:?} for the services VM's admin API at {}",
                conn.client.endpoint()
            );
            conn.wait_state(wait)
                .context("the services VM's admin API did not answer")?
        }
        _ => conn.wait_state(Duration::from_secs(15)).context(
            "the services VM runs but its admin API does not answer; if an older bootlab \
             installed it, restart it on the new appliance: bootlab up --restart-services",
        )?,
    };
    let lp = live::compare(&view.host, &vm);
    if !lp.restart.is_empty() {
        eprintln!(
            "! held: these changes need a restart of the services VM: {}; run `bootlab up --restart-services`",
            lp.restart.join("; ")
        );
        return Ok(ExitCode::from(EXIT_HELD));
    }
    for ch in live::changes(&lp, &view.host, false, None) {
        libvirt::print_plan(std::slice::from_ref(&ch));
    }
    let pushed = live::apply(&conn, &view.host, &lp)?;
    println!("services VM: {}", live::summary(&pushed));
    if let Some(applied) = &pushed.inventory {
        for w in &applied.warnings {
            eprintln!("{w}");
        }
    }
    for f in &lp.only_on_vm {
        println!("  on the services VM only (left alone): {f}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `up`'s exit code when changes wait for `--restart-services`.
pub const EXIT_HELD: u8 = 3;

/// `bootlab down`
pub fn down(inv: &Inventory, c: &ConnectArgs, keep_disks: bool) -> anyhow::Result<ExitCode> {
    let uri = uri(inv, c);
    let local = libvirt::is_local_uri(&uri);
    let conn = libvirt::connect(&uri)?;
    // Names do not depend on the appliance's content or the virt type.
    let desired = Desired::from_inventory(inv, VirtType::Qemu, None, None)?;
    let mut report = libvirt::down(&conn, &desired, keep_disks)?;
    let egress_is_ours = inv.network().mode == NetworkMode::Nat && local;
    if egress_is_ours && BootlabTable::new(Nft::system()).remove().unwrap_or(false) {
        report.removed.push("egress table inet bootlab".into());
    }
    for r in &report.removed {
        println!("- {r}");
    }
    for k in &report.kept {
        println!("  kept {k}");
    }
    Ok(ExitCode::SUCCESS)
}

/// One machine from bootlabd's `/api/v1/machines`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct MachineSummary {
    /// MAC.
    pub mac: String,
    /// Node name, if known.
    #[serde(default)]
    pub name: Option<String>,
    /// Latest boot stage.
    #[serde(default)]
    pub stage: Option<String>,
}

/// GET a small JSON document over plain HTTP/1.0, bounded in time.
pub fn http_get_json(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n\r\n"
    )?;
    let mut body = Vec::new();
    s.take(16 << 20).read_to_end(&mut body)?;
    let text = String::from_utf8_lossy(&body);
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP header end")?;
    if !head.starts_with("HTTP/1.") || head.split_whitespace().nth(1) != Some("200") {
        bail!("{}", head.lines().next().unwrap_or("bad response"));
    }
    Ok(serde_json::from_str(body)?)
}

#[derive(Serialize)]
struct VmStatus {
    domain: String,
    state: String,
    mac: String,
    stage: Option<String>,
}

/// A destination the egress policy refused recently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RefusedEgress {
    /// Destination address.
    pub addr: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Destination port.
    pub port: u16,
    /// Seconds before it is forgotten.
    pub expires_s: Option<u64>,
    /// Which firewall refused it: `hypervisor` or `services`.
    #[serde(default)]
    pub by: String,
}

#[derive(Serialize)]
struct StatusJson {
    network: String,
    network_state: String,
    bootlabd: String,
    vms: Vec<VmStatus>,
    /// bootlabd's `/api/v1/balancers`, when it has balancers.
    balancers: Vec<bootlab_lb::BalancerStatus>,
    /// Refused egress destinations, newest first.
    egress_refused: Vec<RefusedEgress>,
    /// The inventory the services VM serves vs the host's.
    inventory: InventoryStatus,
}

/// `bootlab status`'s inventory line: generations on both sides.
#[derive(Debug, Serialize)]
struct InventoryStatus {
    /// The host's lab.toml generation (SHA-256).
    host: String,
    /// The services VM's, when its admin API answered.
    services_vm: Option<String>,
    /// `installed` or `pushed`.
    source: Option<bootlab_admin::wire::InventorySource>,
    /// Both equal.
    in_sync: bool,
    /// Why the VM's is unknown.
    unknown_because: Option<String>,
    /// The services VM's boot id and uptime.
    machine: Option<bootlab_admin::wire::MachineFacts>,
    /// Its data disk.
    data_fs: Option<bootlab_admin::wire::FsFacts>,
}

/// `status`'s inventory and data disk lines.
fn inventory_text(i: &InventoryStatus) -> String {
    let short = |g: &str| g[..g.len().min(12)].to_owned();
    let mut out = match (&i.services_vm, i.in_sync) {
        (Some(vm), true) => format!(
            "inventory: in sync, generation {} ({} on the services VM)\n",
            short(vm),
            i.source.map_or("?", |s| match s {
                bootlab_admin::wire::InventorySource::Installed => "installed",
                bootlab_admin::wire::InventorySource::Pushed => "pushed",
            })
        ),
        (Some(vm), false) => format!(
            "inventory: the services VM serves generation {}, the host has {} (run `bootlab up`)\n",
            short(vm),
            short(&i.host)
        ),
        (None, _) => format!(
            "inventory: host generation {}; the services VM's is unknown: {}\n",
            short(&i.host),
            i.unknown_because.as_deref().unwrap_or("?")
        ),
    };
    if let Some(m) = &i.machine {
        out.push_str(&format!(
            "services VM: boot {}, up {}s\n",
            short(&m.boot_id),
            m.uptime_s as u64
        ));
    }
    if let Some(f) = &i.data_fs {
        out.push_str(&format!(
            "data disk: {} {} at {}, {} free of {}\n",
            f.device.as_deref().unwrap_or("?"),
            f.fs_type.as_deref().unwrap_or("?"),
            f.path,
            libvirt::human_any(f.available),
            libvirt::human_any(f.total)
        ));
    }
    out
}

/// Reads the services VM's state for `status` (short timeouts).
fn services_state(
    inv: &Inventory,
    uri: &str,
    running: bool,
) -> Result<bootlab_admin::wire::State, String> {
    if !running {
        return Err("the services VM is not running".into());
    }
    let pki = LabState::of(inv).pki().ok_or_else(|| {
        "no certificates for this lab on this host (the first `up` makes them)".to_owned()
    })?;
    let route = live::route(inv, uri);
    let mut conn = Connection::open(inv, &route, &pki).map_err(|e| format!("{e:#}"))?;
    conn.client = conn
        .client
        .clone()
        .with_timeouts(Duration::from_secs(3), Duration::from_secs(10));
    conn.client.state().map_err(|e| e.to_string())
}

/// The balancers and refused destinations as `bootlab status` prints them.
fn status_extras_text(
    balancers: &[bootlab_lb::BalancerStatus],
    refused: &[RefusedEgress],
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if !balancers.is_empty() {
        out.push_str("balancers:\n");
        for b in balancers {
            let _ = writeln!(
                out,
                "  {:<16} {:<22} {:<10} {} open, {} total, {} refused (no backend)",
                b.name,
                b.listen,
                b.algorithm.as_str(),
                b.active_connections,
                b.total_connections,
                b.refused_no_backend
            );
            for be in &b.backends {
                let why = match (&be.state, &be.last_check_error) {
                    (bootlab_lb::BackendState::Down, Some(e)) => format!(" ({e})"),
                    _ => String::new(),
                };
                let _ = writeln!(
                    out,
                    "    {:<14} {:<22} {:<8} {} open, {} total{why}",
                    be.name,
                    be.addr,
                    be.state.as_str(),
                    be.active_connections,
                    be.total_connections
                );
            }
        }
    }
    if refused.is_empty() {
        out.push_str("egress refused: none in the last hour\n");
    } else {
        out.push_str("egress refused (last hour):\n");
        for r in refused {
            let _ = writeln!(
                out,
                "  {:<16} {:<4} {:<6} by {}{}",
                r.addr,
                r.protocol,
                r.port,
                r.by,
                r.expires_s
                    .map(|s| format!(", forgotten in {s}s"))
                    .unwrap_or_default()
            );
        }
    }
    out
}

/// Refused destinations: the hypervisor's own table (nat mode, local URI)
/// and the services VM's (bootlabd's `egress` report).
fn refused_egress(inv: &Inventory, local: bool, api: Option<SocketAddr>) -> Vec<RefusedEgress> {
    let mut out = Vec::new();
    if local && inv.network().mode == NetworkMode::Nat {
        let table = BootlabTable::new(Nft::system());
        for e in table.denied_endpoints().unwrap_or_default() {
            out.push(RefusedEgress {
                addr: e.addr.to_string(),
                protocol: e.protocol.clone(),
                port: e.port,
                expires_s: e.expires.map(|d| d.as_secs()),
                by: "hypervisor".into(),
            });
        }
    }
    if let Some(addr) = api {
        if let Ok(v) = http_get_json(addr, "/api/v1/egress", Duration::from_secs(3)) {
            if let Ok(list) = serde_json::from_value::<Vec<RefusedEgress>>(v["denied"].clone()) {
                out.extend(list.into_iter().map(|r| RefusedEgress {
                    by: "services".into(),
                    ..r
                }));
            }
        }
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.expires_s));
    out
}

/// `bootlab status`
pub fn status(inv: &Inventory, c: &ConnectArgs, output: Output) -> anyhow::Result<ExitCode> {
    let conn = libvirt::connect(&uri(inv, c))?;
    let desired = Desired::from_inventory(inv, VirtType::Qemu, None, None)?;
    let have = Actual::read(&conn, &desired)?;
    let services_running = desired
        .domains
        .iter()
        .filter(|d| d.is_services)
        .any(|d| have.domains.get(&d.plan.name).is_some_and(|s| s.active));
    let host_gen = bootlab_admin::wire::generation(
        &std::fs::read(inv.source())
            .with_context(|| format!("reading {}", inv.source().display()))?,
    );
    let inventory = match services_state(inv, &uri(inv, c), services_running) {
        Ok(s) => InventoryStatus {
            in_sync: s.generation == host_gen,
            host: host_gen,
            services_vm: Some(s.generation),
            source: Some(s.source),
            unknown_because: None,
            machine: Some(s.machine),
            data_fs: s.data_fs,
        },
        Err(why) => InventoryStatus {
            host: host_gen,
            services_vm: None,
            source: None,
            in_sync: false,
            unknown_because: Some(why),
            machine: None,
            data_fs: None,
        },
    };
    let addr = SocketAddr::new(inv.services().ip.into(), inv.services().listen.http.port());
    let (api, machines, reachable): (String, Vec<MachineSummary>, bool) =
        match http_get_json(addr, "/api/v1/machines", Duration::from_secs(3)) {
            Ok(v) => match serde_json::from_value(v) {
                Ok(m) => (format!("answering at http://{addr}"), m, true),
                Err(e) => (
                    format!("unexpected answer from http://{addr}: {e}"),
                    vec![],
                    true,
                ),
            },
            Err(e) => (
                format!("not reachable at http://{addr}: {e:#}"),
                vec![],
                false,
            ),
        };
    let balancers: Vec<bootlab_lb::BalancerStatus> = if reachable && !inv.balancers().is_empty() {
        http_get_json(addr, "/api/v1/balancers", Duration::from_secs(3))
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default()
    } else {
        vec![]
    };
    let local = libvirt::is_local_uri(&uri(inv, c));
    let egress_refused = refused_egress(inv, local, reachable.then_some(addr));
    let vms: Vec<VmStatus> = desired
        .domains
        .iter()
        .map(|d| {
            let mac = d
                .plan
                .nics
                .first()
                .map(|n| n.mac.clone())
                .unwrap_or_default();
            VmStatus {
                domain: d.plan.name.clone(),
                state: match have.domains.get(&d.plan.name) {
                    None => "absent".into(),
                    Some(s) if s.active => "running".into(),
                    Some(_) => "shut off".into(),
                },
                stage: machines
                    .iter()
                    .find(|m| m.mac.eq_ignore_ascii_case(&mac))
                    .and_then(|m| m.stage.clone()),
                mac,
            }
        })
        .collect();
    let st = StatusJson {
        network: desired.network.clone(),
        network_state: match &have.network {
            None => "absent".into(),
            Some(n) if n.active => "active".into(),
            Some(_) => "inactive".into(),
        },
        bootlabd: api,
        vms,
        balancers,
        egress_refused,
        inventory,
    };
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&st)?),
        Output::Text => {
            println!("network {}: {}", st.network, st.network_state);
            println!("bootlabd: {}", st.bootlabd);
            print!("{}", inventory_text(&st.inventory));
            println!("{:<28} {:<9} {:<18} stage", "VM", "state", "MAC");
            for v in &st.vms {
                println!(
                    "{:<28} {:<9} {:<18} {}",
                    v.domain,
                    v.state,
                    v.mac,
                    v.stage.as_deref().unwrap_or("-")
                );
            }
            print!("{}", status_extras_text(&st.balancers, &st.egress_refused));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `bootlab console`: the services VM's serial console through `virsh
/// console` on the same libvirt URI (the appliance has no sshd; its
/// console shows the boot and bootlabd's log). Ctrl+] leaves.
pub fn console(inv: &Inventory, c: &ConnectArgs, force: bool) -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt as _;
    let domain = inv
        .vm_specs()
        .into_iter()
        .find(|s| s.is_services)
        .map(|s| s.domain)
        .context("the inventory has no services VM")?;
    let uri = uri(inv, c);
    let virsh = std::env::var_os("BOOTLAB_VIRSH").unwrap_or_else(|| "virsh".into());
    let mut cmd = std::process::Command::new(&virsh);
    cmd.args(["-c", &uri, "console", &domain]);
    if force {
        cmd.arg("--force");
    }
    eprintln!("bootlab: the serial console of {domain} (Ctrl+] leaves)");
    let err = cmd.exec();
    bail!(
        "cannot run {} console: {err} (install libvirt-clients / libvirt-client)",
        virsh.to_string_lossy()
    )
}

/// `bootlab egress apply|show|remove`
pub fn egress(inv: &Inventory, action: EgressAction) -> anyhow::Result<ExitCode> {
    let rs = hypervisor_ruleset(inv)?;
    let table = BootlabTable::new(Nft::system());
    match action {
        EgressAction::Show => {
            print!("{}", bootlab_firewall::render_nft(&rs));
            match table.listing_without_state()? {
                Some(_) if table.matches(&rs)? => println!("# live: table inet bootlab matches"),
                Some(_) => {
                    println!("# live: table inet bootlab differs (run `bootlab egress apply`)")
                }
                None => println!("# live: no table inet bootlab"),
            }
        }
        EgressAction::Apply => {
            let outcome = table.apply(&rs)?;
            println!("table inet bootlab: {outcome:?}");
        }
        EgressAction::Remove => {
            let existed = table.remove()?;
            println!(
                "table inet bootlab: {}",
                if existed { "removed" } else { "was not there" }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `bootlab egress <action>`
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum EgressAction {
    /// Apply the host egress rule (nat mode) as one transaction.
    Apply,
    /// Print the rule in nft syntax and whether the live table matches.
    Show,
    /// Remove bootlab's table (nothing else).
    Remove,
}

#[cfg(test)]
mod status_tests {
    use super::*;

    #[test]
    fn balancers_and_refused_egress_are_listed() {
        let json = serde_json::json!([{
            "name": "api", "listen": "192.168.200.254:6443", "algorithm": "roundrobin",
            "check": { "kind": "tcp" }, "active_connections": 1, "total_connections": 9,
            "max_connections": 4096, "refused_over_cap": 0, "refused_no_backend": 2,
            "idle_timeouts": 0,
            "backends": [
                { "name": "master-0", "addr": "192.168.200.30:6443", "state": "up",
                  "checks_passed_streak": 3, "checks_failed_streak": 0, "checks_passed": 9,
                  "checks_failed": 0, "last_check_error": null, "active_connections": 1,
                  "total_connections": 9, "bytes_in": 10, "bytes_out": 20, "connect_failures": 0 },
                { "name": "bootstrap", "addr": "192.168.200.10:6443", "state": "down",
                  "checks_passed_streak": 0, "checks_failed_streak": 3, "checks_passed": 0,
                  "checks_failed": 3, "last_check_error": "connect: Connection refused",
                  "active_connections": 0, "total_connections": 0, "bytes_in": 0,
                  "bytes_out": 0, "connect_failures": 0 }
            ]
        }]);
        let balancers: Vec<bootlab_lb::BalancerStatus> = serde_json::from_value(json).unwrap();
        let refused = vec![RefusedEgress {
            addr: "203.0.113.7".into(),
            protocol: "tcp".into(),
            port: 443,
            expires_s: Some(3500),
            by: "hypervisor".into(),
        }];
        let text = status_extras_text(&balancers, &refused);
        assert!(text.contains("api"), "{text}");
        assert!(text.contains("master-0") && text.contains("up"), "{text}");
        assert!(
            text.contains("bootstrap") && text.contains("total (connect: Connection refused)"),
            "{text}"
        );
        assert!(
            text.contains("203.0.113.7      tcp  443    by hypervisor, forgotten in 3500s"),
            "{text}"
        );
        assert!(status_extras_text(&[], &[]).contains("egress refused: none"));
    }
}
