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
use crate::terminal::{
    BarSteps, ColorChoice, Palette, PlainSteps, ProgressMode, QuietSteps, StepReporter,
};

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
    /// The bootlabd binary to put in the appliance, or in the install payload of
    /// the cloud-image method (default: next to bootlab; the appliance also looks on PATH).
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
    } else if let InstallMethod::Kickstart { .. } = inv.services().install {
        crate::cloudinit::check(inv)?;
        if !local {
            bail!(
                "services.install.method = \"kickstart\" reads the installer ISO and the installer's serial log on this host: use a local libvirt URI"
            );
        }
        None
    } else {
        crate::cloudinit::check(inv)?;
        None
    };
    // A full distribution installs the bootlabd binary from the payload.
    let daemon = match inv.services().install {
        InstallMethod::CloudImage { .. } | InstallMethod::Kickstart { .. } => {
            let found = a.bootlabd.clone().or_else(|| {
                std::env::current_exe()
                    .ok()
                    .and_then(|e| Some(e.parent()?.join("bootlabd")))
                    .filter(|p| p.is_file())
            });
            match (found, need) {
                (Some(p), _) if p.is_file() => Some(p),
                (Some(p), Inputs::Required) => bail!("{}: no such file (--bootlabd)", p.display()),
                (None, Inputs::Required) => bail!(
                    "bootlabd not found next to bootlab: pass the binary the services VM installs with --bootlabd PATH"
                ),
                (_, Inputs::Optional) => None,
            }
        }
        _ => None,
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
    let full_distribution = matches!(inv.services().install, InstallMethod::CloudImage { .. });
    // Every method's services VM reads the install payload.
    let payload = {
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
        Some(crate::payload::write(
            inv,
            p,
            daemon.as_deref(),
            work.path(),
        )?)
    };
    let seed = if full_distribution {
        Some(crate::cloudinit::write_seed(inv, work.path())?)
    } else {
        None
    };
    let mut desired = Desired::with_seed(
        inv,
        virt_type,
        files.as_ref(),
        payload.as_deref(),
        seed.as_deref(),
    )?;
    // The kickstart installer's kernel and initrd, out of the ISO with the
    // kickstart injected (`plan` without a readable ISO says so).
    if let InstallMethod::Kickstart { iso } = &inv.services().install {
        match crate::iso::installer_boot_files(iso, work.path()) {
            Ok((kernel, initrd)) => {
                crate::kickstart::inject(&initrd, &crate::kickstart::kickstart(inv)?)
                    .with_context(|| {
                        format!("injecting the kickstart into {}", initrd.display())
                    })?;
                desired =
                    desired.with_installer(&crate::desired::InstallerFiles { kernel, initrd })?;
            }
            Err(e) if need == Inputs::Optional => {
                eprintln!("note: {e}; the plan shows the services VM without its installer")
            }
            Err(e) => return Err(e.into()),
        }
    }
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
            fields: vec![],
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
        fields: vec![],
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
    if let InstallMethod::Kickstart { .. } = inv.services().install {
        view.unreached = Some(
            "the kickstart method's live changes are not pushed by `up` yet (see docs/deviations.md)".into(),
        );
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
    let probes = SystemProbes { uri: uri.clone() };
    let findings = doctor::run_checks(inv, &probes, &uri);
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

/// `bootlab plan`: the changes `up` would make, with the fields that change
/// inside each domain and network; coloured on a terminal (`--color`).
pub fn plan(
    inv: &Inventory,
    c: &ConnectArgs,
    a: &ApplianceArgs,
    opts: UpOptions,
    output: Output,
    color: ColorChoice,
) -> anyhow::Result<ExitCode> {
    let p = prepare(inv, c, a, Inputs::Optional)?;
    let view = live_view(inv, &p, a)?;
    let mut opts = opts;
    opts.services_restart_for = view
        .vm
        .as_ref()
        .map(|vm| vm.services.restart_needed(&view.host.services))
        .unwrap_or_default();
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
            print!(
                "{}",
                libvirt::plan_text(&changes, Palette::new(color.for_stdout()))
            );
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
/// VM serves the current inventory and assets. Each libvirt step shows on
/// a progress bar on a terminal (the step's name, bytes during uploads),
/// one plain line per step otherwise, nothing with `quiet` (errors and
/// notes still go to stderr).
pub fn up(
    inv: &Inventory,
    c: &ConnectArgs,
    a: &ApplianceArgs,
    opts: UpOptions,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let p = prepare(inv, c, a, Inputs::Required)?;
    let view = live_view(inv, &p, a)?;
    let mut opts = opts;
    opts.services_restart_for = view
        .vm
        .as_ref()
        .map(|vm| vm.services.restart_needed(&view.host.services))
        .unwrap_or_default();
    let changes = full_plan(inv, &p, &opts)?;
    if !quiet {
        println!("virt type: {}", virt_name(p.virt_type));
    }
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
        apply_steps(inv, &p, &now, quiet)?;
    } else if node_starts.is_empty() && !quiet {
        println!("nothing to do: libvirt matches the inventory");
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
    let facts = UpFacts {
        booted,
        definition_pending,
        nodes_follow: !node_starts.is_empty(),
        quiet,
    };
    let code = push_live(inv, &p, a, view, &facts)?;
    if !node_starts.is_empty() {
        apply_steps(inv, &p, &node_starts, quiet)?;
    }
    Ok(code)
}

/// Applies libvirt changes (and the host egress rule) step by step,
/// reporting each: a bar on a terminal, plain lines elsewhere, nothing
/// with `quiet`.
fn apply_steps(
    inv: &Inventory,
    p: &Prepared,
    changes: &[Change],
    quiet: bool,
) -> anyhow::Result<()> {
    // libvirt first, the host egress rule last (a refused egress rule is
    // only a note: it belongs on the hypervisor).
    let (egress, rest): (Vec<Change>, Vec<Change>) = changes
        .iter()
        .cloned()
        .partition(|c| c.object == Object::Egress);
    if let Some(why) = libvirt::refusal(&rest) {
        bail!("{why}");
    }
    let steps: Vec<Change> = rest.into_iter().chain(egress).collect();
    let stderr_tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mode = ProgressMode::choose(quiet, stderr_tty);
    let mut reporter: Box<dyn StepReporter> = match mode {
        ProgressMode::Quiet => Box::new(QuietSteps),
        ProgressMode::Bar => Box::new(BarSteps::new(steps.len())),
        ProgressMode::Plain => Box::new(PlainSteps::new(std::io::stdout())),
    };
    let mut notes = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        reporter.step(i + 1, steps.len(), &libvirt::step_words(step));
        if step.object != Object::Egress {
            libvirt::apply_one(&p.conn, &p.desired, step, reporter.as_mut())?;
            continue;
        }
        match &step.action {
            Action::Refuse { why } => notes.push(format!("note: egress rule skipped: {why}")),
            _ => {
                BootlabTable::new(Nft::system())
                    .apply(&hypervisor_ruleset(inv)?)
                    .context("applying the host egress rule")?;
            }
        }
    }
    reporter.finish();
    drop(reporter);
    for n in &notes {
        eprintln!("{n}");
    }
    match mode {
        ProgressMode::Quiet => {}
        ProgressMode::Plain => println!("done: {} steps", steps.len()),
        ProgressMode::Bar => {
            println!("done:");
            print!(
                "{}",
                libvirt::plan_text(&steps, Palette::new(ColorChoice::Auto.for_stdout()))
            );
        }
    }
    Ok(())
}

/// What `up` learnt from libvirt before its live half.
#[derive(Debug, Clone, Copy)]
struct UpFacts {
    /// The services VM (re)starts in this `up`.
    booted: bool,
    /// The running services VM's definition is not the current one.
    definition_pending: bool,
    /// Node VMs start after the push.
    nodes_follow: bool,
    /// `up --quiet`.
    quiet: bool,
}

/// The live half of `up`: wait for a services VM that just booted (when
/// there is something to push, or nodes about to boot from it), compare,
/// push.
fn push_live(
    inv: &Inventory,
    p: &Prepared,
    a: &ApplianceArgs,
    view: LiveView,
    facts: &UpFacts,
) -> anyhow::Result<ExitCode> {
    let UpFacts {
        booted,
        definition_pending,
        nodes_follow,
        quiet,
    } = *facts;
    if let InstallMethod::Kickstart { .. } = inv.services().install {
        if booted && !quiet {
            println!(
                "the services VM boots the installed system: `bootlab up` again once bootlabd runs on it pushes the assets (`bootlab status`)"
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let has_assets = view
        .host
        .assets
        .as_ref()
        .is_some_and(|a| !a.entries.is_empty());
    if booted && !has_assets && !nodes_follow {
        if quiet {
            return Ok(ExitCode::SUCCESS);
        }
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
    let pushes = live::changes(&lp, &view.host, false, None);
    if !quiet && !pushes.is_empty() {
        print!(
            "{}",
            libvirt::plan_text(&pushes, Palette::new(ColorChoice::Auto.for_stdout()))
        );
    }
    let pushed = live::apply(&conn, &view.host, &lp)?;
    if !quiet {
        println!("services VM: {}", live::summary(&pushed));
    }
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

/// `bootlab down`: disks are deleted only after a yes on the terminal or
/// with `--yes`; without a terminal and without `--yes` it refuses (exit 2)
/// before removing anything.
pub fn down(
    inv: &Inventory,
    c: &ConnectArgs,
    keep_disks: bool,
    yes: bool,
) -> anyhow::Result<ExitCode> {
    use crate::terminal::{DownConfirmation, down_question, down_refusal, is_yes};
    let uri = uri(inv, c);
    let local = libvirt::is_local_uri(&uri);
    let conn = libvirt::connect(&uri)?;
    // Names do not depend on the appliance's content or the virt type.
    let desired = Desired::from_inventory(inv, VirtType::Qemu, None, None)?;
    let disks = if keep_disks {
        vec![]
    } else {
        libvirt::disks_down_deletes(&conn, &desired)?
    };
    let stdin_tty = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let lab = &inv.lab().name;
    match DownConfirmation::decide(disks.len(), yes, keep_disks, stdin_tty) {
        DownConfirmation::Proceed => {}
        DownConfirmation::Refuse => {
            eprintln!("{}", down_refusal(lab, &disks));
            return Ok(ExitCode::from(2));
        }
        DownConfirmation::Ask => {
            eprint!("{}", down_question(lab, &disks));
            let _ = std::io::stderr().flush();
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer)?;
            if !is_yes(&answer) {
                eprintln!(
                    "nothing was deleted (`bootlab down --keep-disks` removes the rest and keeps the disks)"
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    }
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
    /// Current address (reservation or lease).
    #[serde(default)]
    pub ip: Option<String>,
    /// Latest boot stage.
    #[serde(default)]
    pub stage: Option<String>,
    /// Its events, oldest first.
    #[serde(default)]
    pub events: Vec<MachineEvent>,
}

/// One event of a machine's timeline (the fields `status` shows).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct MachineEvent {
    /// RFC 3339 time.
    pub at: String,
    /// `dhcp`, `tftp`, `http`...
    pub service: String,
    /// What happened (`ack`, `kernel`, `script`...).
    pub kind: String,
}

/// `12s ago: http kernel` for a machine's latest event, `now` being the
/// current time.
pub fn last_event_words(m: &MachineSummary, now: std::time::SystemTime) -> Option<String> {
    let e = m.events.last()?;
    let age = humantime::parse_rfc3339_weak(&e.at)
        .ok()
        .and_then(|t| now.duration_since(t).ok())
        .map(|d| format!("{} ago", short_duration(d)))
        .unwrap_or_else(|| e.at.clone());
    Some(format!("{age}: {} {}", e.service, e.kind))
}

/// `5s`, `3m12s`, `2h05m`, `3d04h`.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
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

/// One VM in `bootlab status`.
#[derive(Debug, Clone, Serialize)]
pub struct VmStatus {
    /// Domain name.
    pub domain: String,
    /// `running`, `shut off` or `absent`.
    pub state: String,
    /// Its lab NIC's MAC.
    pub mac: String,
    /// Its address, from bootlabd (lease or reservation).
    pub ip: Option<String>,
    /// Its boot stage, from bootlabd.
    pub stage: Option<String>,
    /// Its latest event (`12s ago: http kernel`), from bootlabd.
    pub last_event: Option<String>,
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

/// Everything `bootlab status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct StatusJson {
    /// Network name.
    pub network: String,
    /// `active`, `inactive` or `absent`.
    pub network_state: String,
    /// Whether bootlabd answers, in words.
    pub bootlabd: String,
    /// The inventory's VMs.
    pub vms: Vec<VmStatus>,
    /// bootlabd's `/api/v1/balancers`, when it has balancers.
    pub balancers: Vec<bootlab_lb::BalancerStatus>,
    /// Refused egress destinations, newest first.
    pub egress_refused: Vec<RefusedEgress>,
    /// The inventory the services VM serves vs the host's.
    pub inventory: InventoryStatus,
}

/// `bootlab status`'s inventory line: generations on both sides.
#[derive(Debug, Clone, Serialize)]
pub struct InventoryStatus {
    /// The host's lab.toml generation (SHA-256).
    pub host: String,
    /// The services VM's, when its admin API answered.
    pub services_vm: Option<String>,
    /// `installed` or `pushed`.
    pub source: Option<bootlab_admin::wire::InventorySource>,
    /// Both equal.
    pub in_sync: bool,
    /// Why the VM's is unknown.
    pub unknown_because: Option<String>,
    /// The services VM's boot id and uptime.
    pub machine: Option<bootlab_admin::wire::MachineFacts>,
    /// Its data disk.
    pub data_fs: Option<bootlab_admin::wire::FsFacts>,
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
        // The packaged unit hides the boot id from bootlabd.
        let boot = if m.boot_id.is_empty() {
            "boot id hidden".to_owned()
        } else {
            format!("boot {}", short(&m.boot_id))
        };
        out.push_str(&format!("services VM: {boot}, up {}s\n", m.uptime_s as u64));
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

/// `bootlab status`'s text.
pub fn status_text(st: &StatusJson) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "network {}: {}", st.network, st.network_state);
    let _ = writeln!(out, "bootlabd: {}", st.bootlabd);
    out.push_str(&inventory_text(&st.inventory));
    let _ = writeln!(
        out,
        "{:<24} {:<9} {:<18} {:<16} {:<8} last event",
        "VM", "state", "MAC", "IP", "stage"
    );
    for v in &st.vms {
        let _ = writeln!(
            out,
            "{:<24} {:<9} {:<18} {:<16} {:<8} {}",
            v.domain,
            v.state,
            v.mac,
            v.ip.as_deref().unwrap_or("-"),
            v.stage.as_deref().unwrap_or("-"),
            v.last_event.as_deref().unwrap_or("-")
        );
    }
    out.push_str(&status_extras_text(&st.balancers, &st.egress_refused));
    out
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

/// One look at the lab: libvirt's view plus bootlabd's when it answers, and
/// the services VM's inventory generation from its admin API.
fn status_snapshot(
    inv: &Inventory,
    conn: &Connect,
    desired: &Desired,
    uri: &str,
    local: bool,
) -> anyhow::Result<StatusJson> {
    let have = Actual::read(conn, desired)?;
    let services_running = desired
        .domains
        .iter()
        .filter(|d| d.is_services)
        .any(|d| have.domains.get(&d.plan.name).is_some_and(|s| s.active));
    let host_gen = bootlab_admin::wire::generation(
        &std::fs::read(inv.source())
            .with_context(|| format!("reading {}", inv.source().display()))?,
    );
    let inventory = match services_state(inv, uri, services_running) {
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
    let egress_refused = refused_egress(inv, local, reachable.then_some(addr));
    let now = std::time::SystemTime::now();
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
            let m = machines.iter().find(|m| m.mac.eq_ignore_ascii_case(&mac));
            VmStatus {
                domain: d.plan.name.clone(),
                state: match have.domains.get(&d.plan.name) {
                    None => "absent".into(),
                    Some(s) if s.active => "running".into(),
                    Some(_) => "shut off".into(),
                },
                ip: m.and_then(|m| m.ip.clone()),
                stage: m.and_then(|m| m.stage.clone()),
                last_event: m.and_then(|m| last_event_words(m, now)),
                mac,
            }
        })
        .collect();
    Ok(StatusJson {
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
    })
}

/// `bootlab status`; with `watch`, again every interval until interrupted:
/// on a terminal the screen is cleared before each block, elsewhere the
/// blocks follow one another (JSON: one document a line).
pub fn status(
    inv: &Inventory,
    c: &ConnectArgs,
    output: Output,
    watch: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let uri = uri(inv, c);
    let conn = libvirt::connect(&uri)?;
    let local = libvirt::is_local_uri(&uri);
    let desired = Desired::from_inventory(inv, VirtType::Qemu, None, None)?;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut first = true;
    loop {
        let st = status_snapshot(inv, &conn, &desired, &uri, local)?;
        let block = match (output, watch) {
            (Output::Json, None) => format!("{}\n", serde_json::to_string_pretty(&st)?),
            (Output::Json, Some(_)) => format!("{}\n", serde_json::to_string(&st)?),
            (Output::Text, None) => status_text(&st),
            (Output::Text, Some(every)) => watch_block(
                &inv.lab().name,
                every,
                &status_text(&st),
                tty,
                first,
                std::time::SystemTime::now(),
            ),
        };
        let mut out = std::io::stdout().lock();
        out.write_all(block.as_bytes())?;
        out.flush()?;
        drop(out);
        first = false;
        match watch {
            Some(every) => std::thread::sleep(every),
            None => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// One block of `status --watch` text: on a terminal the screen is cleared
/// first; elsewhere blocks are separated by a blank line. A header names
/// the lab, the time and the interval.
pub fn watch_block(
    lab: &str,
    every: Duration,
    body: &str,
    terminal: bool,
    first: bool,
    now: std::time::SystemTime,
) -> String {
    let mut s = String::new();
    if terminal {
        s.push_str(crate::terminal::CLEAR_SCREEN);
    } else if !first {
        s.push('\n');
    }
    s.push_str(&format!(
        "lab {lab} at {} (every {}{})\n",
        humantime::format_rfc3339_seconds(now),
        short_interval(every),
        if terminal { "; Ctrl-C stops" } else { "" }
    ));
    s.push_str(body);
    s
}

fn short_interval(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// The names `egress show` gives the services VM's NICs: `services.interface`
/// when set, else what the appliance's kernel calls them (no udev there:
/// `eth0` for the lab NIC, the domain's first, `eth1` for the uplink).
/// bootlabd itself finds them by MAC when it starts.
pub fn shown_services_interfaces(inv: &Inventory) -> bootlab_firewall::ServicesInterfaces {
    bootlab_firewall::ServicesInterfaces {
        lab: inv
            .services()
            .interface
            .clone()
            .unwrap_or_else(|| "eth0".into()),
        uplink: inv.services().uplink.as_ref().map(|_| "eth1".into()),
    }
}

/// `egress show`'s text for the services VM: its ruleset with comments
/// saying whose it is and where the interface names come from; `None`
/// when `services.firewall = false`.
pub fn services_ruleset_text(inv: &Inventory) -> anyhow::Result<Option<String>> {
    let ifaces = shown_services_interfaces(inv);
    let Some(rs) = bootlab_firewall::services_ruleset(inv, &ifaces)? else {
        return Ok(None);
    };
    let s = inv.services();
    let mut out = format!(
        "# services VM {} ({}): bootlabd applies this table inside it (services.firewall = true)\n",
        s.name, s.ip
    );
    let names = match &s.interface {
        Some(i) => format!("# lab NIC {i} (services.interface, MAC {})", s.mac),
        None => format!("# lab NIC eth0 (MAC {})", s.mac),
    };
    out.push_str(&names);
    if let Some(u) = &s.uplink {
        out.push_str(&format!(", uplink eth1 (MAC {})", u.mac));
    }
    out.push('\n');
    if s.interface.is_none() {
        out.push_str(
            "# eth0/eth1: the names the appliance's kernel gives its NICs (lab NIC first);\n\
             # bootlabd finds the real ones by MAC when it starts (set services.interface to pin the lab NIC)\n",
        );
    }
    out.push_str(&bootlab_firewall::render_nft(&rs));
    Ok(Some(out))
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
    let nat = inv.network().mode == NetworkMode::Nat;
    if action == EgressAction::Show {
        if nat {
            let rs = hypervisor_ruleset(inv)?;
            let table = BootlabTable::new(Nft::system());
            println!(
                "# hypervisor (this host): the host egress rule for the lab bridge {} (network.mode = \"nat\")",
                inv.network().bridge
            );
            print!("{}", bootlab_firewall::render_nft(&rs));
            match table.listing_without_state()? {
                Some(_) if table.matches(&rs)? => println!("# live: table inet bootlab matches"),
                Some(_) => {
                    println!("# live: table inet bootlab differs (run `bootlab egress apply`)")
                }
                None => println!("# live: no table inet bootlab"),
            }
        } else {
            println!(
                "# hypervisor (this host): no rule: network.mode = {:?} does not forward the lab through this host",
                inv.network().mode.as_str()
            );
        }
        match services_ruleset_text(inv)? {
            Some(text) => {
                println!();
                print!("{text}");
            }
            None if !nat => println!(
                "# services VM: services.firewall = false: no ruleset; the lab's egress is not filtered"
            ),
            None => {}
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !nat {
        bail!(
            "`bootlab egress {}` manages the host egress rule, which exists in nat mode only; network.mode is {:?}: bootlabd applies the services VM's ruleset itself (`bootlab egress show` prints it)",
            if action == EgressAction::Apply {
                "apply"
            } else {
                "remove"
            },
            inv.network().mode.as_str()
        );
    }
    let rs = hypervisor_ruleset(inv)?;
    let table = BootlabTable::new(Nft::system());
    match action {
        EgressAction::Show => {}
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
    /// Print the rules in nft syntax, each under a comment saying whose
    /// it is: the host's (nat mode, with whether the live table matches)
    /// and the services VM's (`services.firewall = true`; isolated mode too).
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

#[cfg(test)]
mod watch_tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn machine(events: &[(&str, &str, &str)]) -> MachineSummary {
        MachineSummary {
            mac: "52:54:00:00:00:10".into(),
            name: Some("bios".into()),
            ip: Some("10.0.0.10".into()),
            stage: Some("kernel".into()),
            events: events
                .iter()
                .map(|(at, service, kind)| MachineEvent {
                    at: at.to_string(),
                    service: service.to_string(),
                    kind: kind.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn last_event_says_how_long_ago() {
        let now = humantime::parse_rfc3339("2025-01-01T10:00:12Z").unwrap();
        let m = machine(&[
            ("2025-01-01T09:59:00.000Z", "dhcp", "ack"),
            ("2025-01-01T10:00:00.250Z", "http", "kernel"),
        ]);
        assert_eq!(last_event_words(&m, now).unwrap(), "11s ago: http kernel");
        assert_eq!(last_event_words(&machine(&[]), now), None);
        assert_eq!(short_duration(Duration::from_secs(192)), "3m12s");
        assert_eq!(short_duration(Duration::from_secs(7500)), "2h05m");
    }

    #[test]
    fn status_text_has_each_nodes_stage_and_last_event() {
        let st = StatusJson {
            network: "e2e".into(),
            network_state: "active".into(),
            bootlabd: "answering at http://10.0.0.254:8080".into(),
            vms: vec![VmStatus {
                domain: "e2e-bios".into(),
                state: "running".into(),
                mac: "52:54:00:00:00:10".into(),
                ip: Some("10.0.0.10".into()),
                stage: Some("kernel".into()),
                last_event: Some("11s ago: http kernel".into()),
            }],
            balancers: vec![],
            egress_refused: vec![],
            inventory: InventoryStatus {
                host: "5e1b77c0e2f4aa".into(),
                services_vm: Some("5e1b77c0e2f4aa".into()),
                source: Some(bootlab_admin::wire::InventorySource::Pushed),
                in_sync: true,
                unknown_because: None,
                machine: None,
                data_fs: None,
            },
        };
        let t = status_text(&st);
        assert!(
            t.contains("inventory: in sync, generation 5e1b77c0e2f4 (pushed on the services VM)"),
            "{t}"
        );
        assert!(
            t.contains("e2e-bios                 running   52:54:00:00:00:10  10.0.0.10        kernel   11s ago: http kernel"),
            "{t}"
        );
        assert!(t.contains("egress refused: none"), "{t}");
    }

    #[test]
    fn watch_blocks_clear_a_terminal_and_repeat_elsewhere() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let two = Duration::from_secs(2);
        let tty = watch_block("okd", two, "body\n", true, false, now);
        assert!(tty.starts_with("\x1b[H\x1b[2J"), "{tty:?}");
        assert!(tty.contains("Ctrl-C"));
        let first = watch_block("okd", two, "body\n", false, true, now);
        assert_eq!(first, "lab okd at 2023-11-14T22:13:20Z (every 2s)\nbody\n");
        let next = watch_block(
            "okd",
            Duration::from_millis(500),
            "body\n",
            false,
            false,
            now,
        );
        assert!(
            next.starts_with("\nlab okd at") && next.contains("every 0.5s"),
            "{next:?}"
        );
        assert!(!next.contains('\x1b'));
    }
}
