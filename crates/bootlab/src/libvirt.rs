//! libvirt through its API (the `virt` crate): read what exists, compare it
//! with [`Desired`], converge (`up`), remove (`down`).
//!
//! # Layout
//! - [`connect`], [`is_local_uri`]: connections; host-local steps are refused
//!   for remote URIs.
//! - [`Actual::read`]: what libvirt has now, reduced to what `plan` compares
//!   (bootlab's digest in `<metadata>`, capacities, states).
//! - [`plan`]: desired vs actual -> [`Change`]s, empty when converged.
//! - [`apply`]: carries the changes out; never destroys a network to edit it,
//!   never shrinks or deletes a disk.
//! - [`down`]: removes what `up` created, only objects that are bootlab's.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use serde::Serialize;
use virt::connect::Connect;
use virt::domain::Domain;
use virt::network::Network;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::stream::Stream;
use virt::sys;

use crate::desired::{Desired, VolumeContent, VolumeSpec};
use crate::diff::{self, FieldChange, Fields};
use crate::terminal::{Palette, StepReporter};
use crate::xml;

/// Opens a connection.
pub fn connect(uri: &str) -> anyhow::Result<Connect> {
    // libvirt prints every error to stderr by default, including the
    // expected "not found" of lookups; errors reach us as values instead.
    virt::error::clear_error_callback();
    Connect::open(Some(uri)).with_context(|| format!("connecting to libvirt at {uri}"))
}

/// True when `uri` talks to the local host (no host name, no remote
/// transport): host egress rule, host checks and the host's kernel are only
/// used then.
pub fn is_local_uri(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return true;
    };
    let transport = scheme.split_once('+').map(|(_, t)| t);
    if matches!(
        transport,
        Some("ssh" | "tcp" | "tls" | "libssh" | "libssh2")
    ) {
        return false;
    }
    rest.starts_with('/')
}

/// A domain as libvirt has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainState {
    /// bootlab's digest in the persistent definition, if the domain is ours.
    pub digest: Option<String>,
    /// Running.
    pub active: bool,
    /// The fields bootlab sets, read from the persistent definition.
    pub fields: Fields,
}

/// The network as libvirt has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkState {
    /// Digest in the persistent definition.
    pub digest: Option<String>,
    /// Digest of the running definition.
    pub live_digest: Option<String>,
    /// Running.
    pub active: bool,
    /// Starts with libvirtd.
    pub autostart: bool,
    /// The fields bootlab sets, from the persistent definition.
    pub fields: Fields,
    /// The same from the running definition.
    pub live_fields: Fields,
}

/// The pool as libvirt has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolState {
    /// Target path.
    pub path: String,
    /// Running.
    pub active: bool,
    /// Starts with libvirtd.
    pub autostart: bool,
    /// Volumes by name with their capacity.
    pub volumes: BTreeMap<String, u64>,
}

/// What exists now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Actual {
    /// The lab pool.
    pub pool: Option<PoolState>,
    /// The lab network.
    pub network: Option<NetworkState>,
    /// Domains by name (only names the inventory asks for).
    pub domains: BTreeMap<String, DomainState>,
}

fn path_of_pool_xml(x: &str) -> String {
    let mut r = quick_xml::Reader::from_str(x);
    let mut in_path = false;
    let mut depth_target = false;
    loop {
        match r.read_event() {
            Ok(quick_xml::events::Event::Start(e)) => match e.name().as_ref() {
                "target" => depth_target = true,
                "path" if depth_target => in_path = true,
                _ => {}
            },
            Ok(quick_xml::events::Event::Text(t)) if in_path => {
                return t.xml10_content().trim().to_string();
            }
            Ok(quick_xml::events::Event::End(e)) if e.name().as_ref() == "target" => {
                depth_target = false
            }
            Ok(quick_xml::events::Event::Eof) | Err(_) => return String::new(),
            _ => {}
        }
    }
}

impl Actual {
    /// Reads pool, volumes, network and the inventory's domains.
    pub fn read(conn: &Connect, want: &Desired) -> anyhow::Result<Self> {
        let mut a = Actual::default();
        if let Ok(pool) = StoragePool::lookup_by_name(conn, &want.pool) {
            let active = pool.is_active()?;
            if active {
                let _ = pool.refresh(0);
            }
            let mut volumes = BTreeMap::new();
            if active {
                for v in pool.list_all_volumes(0)? {
                    volumes.insert(v.get_name()?, v.get_info()?.capacity);
                }
            }
            a.pool = Some(PoolState {
                path: path_of_pool_xml(&pool.get_xml_desc(0)?),
                active,
                autostart: pool.get_autostart()?,
                volumes,
            });
        }
        if let Ok(net) = Network::lookup_by_name(conn, &want.network) {
            let persistent = net.get_xml_desc(sys::VIR_NETWORK_XML_INACTIVE)?;
            let live = net.get_xml_desc(0)?;
            a.network = Some(NetworkState {
                digest: xml::stored_digest(&persistent),
                live_digest: xml::stored_digest(&live),
                active: net.is_active()?,
                autostart: net.get_autostart()?,
                fields: diff::network_fields(&persistent),
                live_fields: diff::network_fields(&live),
            });
        }
        for d in &want.domains {
            if let Ok(dom) = Domain::lookup_by_name(conn, &d.plan.name) {
                let persistent = dom.get_xml_desc(sys::VIR_DOMAIN_XML_INACTIVE)?;
                a.domains.insert(
                    d.plan.name.clone(),
                    DomainState {
                        digest: xml::stored_digest(&persistent),
                        active: dom.is_active()?,
                        fields: diff::domain_fields(&persistent),
                    },
                );
            }
        }
        Ok(a)
    }
}

/// What kind of object a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Object {
    /// Storage pool.
    Pool,
    /// Storage volume.
    Volume,
    /// Network.
    Network,
    /// Domain.
    Domain,
    /// Host egress rule.
    Egress,
    /// The inventory bootlabd serves (pushed through the admin API).
    Inventory,
    /// A file under the services VM's assets root (pushed through the admin API).
    Asset,
}

/// One step `up` would take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Define/create it.
    Create,
    /// Its definition differs from the inventory.
    Update,
    /// Grow a volume.
    Grow {
        /// Current bytes.
        from: u64,
        /// Wanted bytes.
        to: u64,
    },
    /// Start it.
    Start,
    /// Power it off and start it again on its new definition (the running
    /// services VM, with `up --restart-services`).
    Restart,
    /// Turn autostart on.
    Autostart,
    /// Remove a stale appliance volume.
    Remove,
    /// Cannot be done; why and what to do.
    Refuse {
        /// The reason and the fix.
        why: String,
    },
    /// Send it to the running services VM through its admin API (no
    /// rebuild, no reboot).
    Push {
        /// Bytes sent.
        bytes: u64,
    },
    /// Not pushed: it needs a restart of the services VM first.
    Hold {
        /// Why, and the flag that does it.
        why: String,
    },
}

/// One line of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Object kind.
    pub object: Object,
    /// Object name.
    pub name: String,
    /// What happens.
    #[serde(flatten)]
    pub action: Action,
    /// Extra words for humans.
    pub note: String,
    /// What changes inside the object (updates of a domain or network, a
    /// grown volume); empty otherwise.
    pub fields: Vec<FieldChange>,
}

fn ch(object: Object, name: &str, action: Action, note: impl Into<String>) -> Change {
    Change {
        object,
        name: name.to_string(),
        action,
        note: note.into(),
        fields: Vec::new(),
    }
}

impl Change {
    fn with_fields(mut self, fields: Vec<FieldChange>) -> Self {
        self.fields = fields;
        self
    }
}

/// Options of `up` that change the plan.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Start node VMs too.
    pub start_nodes: bool,
    /// Restart the running services VM when its definition (appliance,
    /// memory, disks, address, MAC) changed.
    pub restart_services: bool,
    /// Restart the running services VM even when its definition is the
    /// same: the inventory changed fields bootlabd reads only at start
    /// (listen addresses, `data_dir`...), listed here. Only honoured with
    /// `restart_services`.
    pub services_restart_for: Vec<String>,
}

/// True for volumes bootlab's appliance step creates for these domains
/// (kernel, initramfs, install payload).
fn is_appliance_volume(want: &Desired, name: &str) -> bool {
    want.domains.iter().filter(|d| d.is_services).any(|d| {
        let (k, i) = crate::desired::appliance_volume_prefixes(&d.plan.name);
        name.starts_with(&k)
            || name.starts_with(&i)
            || name == crate::desired::payload_volume(&d.plan.name)
            || name == crate::desired::seed_volume(&d.plan.name)
            || {
                let (k, i) = crate::desired::installer_volumes(&d.plan.name);
                name == k || name == i
            }
    })
}

/// True when the plan boots the services VM (creates, starts or restarts it).
pub fn services_boots(want: &Desired, changes: &[Change]) -> bool {
    want.domains.iter().filter(|d| d.is_services).any(|d| {
        changes.iter().any(|c| {
            c.object == Object::Domain
                && c.name == d.plan.name
                && matches!(c.action, Action::Start | Action::Restart)
        })
    })
}

/// Will the services VM boot in this plan (before the domains are planned)?
fn services_will_boot(want: &Desired, have: &Actual, opts: &UpOptions) -> bool {
    want.domains
        .iter()
        .filter(|d| d.is_services)
        .any(|d| match have.domains.get(&d.plan.name) {
            None => true,
            Some(s) if s.digest.is_none() => false,
            Some(s) if !s.active => true,
            Some(s) => {
                opts.restart_services
                    && (s.digest != xml::stored_digest(&d.xml)
                        || !opts.services_restart_for.is_empty())
            }
        })
}

/// Desired vs actual. Empty when everything is as the inventory says.
pub fn plan(want: &Desired, have: &Actual, opts: &UpOptions) -> Vec<Change> {
    let mut out = Vec::new();
    let boots = services_will_boot(want, have, opts);
    let no_vols = BTreeMap::new();
    let vols = match &have.pool {
        None => {
            out.push(ch(
                Object::Pool,
                &want.pool,
                Action::Create,
                format!("dir pool at {}", want.pool_path),
            ));
            &no_vols
        }
        Some(p) => {
            if p.path.trim_end_matches('/') != want.pool_path.trim_end_matches('/') {
                out.push(ch(
                    Object::Pool,
                    &want.pool,
                    Action::Refuse {
                        why: format!(
                            "pool {} exists at {}, the inventory says {}: set libvirt.pool to another name or libvirt.pool_path to {}",
                            want.pool, p.path, want.pool_path, p.path
                        ),
                    },
                    "",
                ));
            }
            if !p.active {
                out.push(ch(Object::Pool, &want.pool, Action::Start, ""));
            }
            if !p.autostart {
                out.push(ch(Object::Pool, &want.pool, Action::Autostart, ""));
            }
            &p.volumes
        }
    };
    for v in &want.volumes {
        match (vols.get(&v.name), &v.content) {
            (None, VolumeContent::Disk) => out.push(ch(
                Object::Volume,
                &v.name,
                Action::Create,
                format!("qcow2, {}", human(v.capacity)),
            )),
            (None, VolumeContent::Upload(p)) => out.push(ch(
                Object::Volume,
                &v.name,
                Action::Create,
                format!("upload {} ({})", p.display(), human(v.capacity)),
            )),
            (None, VolumeContent::Payload(_)) => out.push(ch(
                Object::Volume,
                &v.name,
                Action::Create,
                "install payload: the inventory and the admin API's TLS material",
            )),
            (None, VolumeContent::Overlay(image)) => out.push(ch(
                Object::Volume,
                &v.name,
                Action::Create,
                format!(
                    "qcow2 overlay of {}, {}",
                    image.display(),
                    human(v.capacity)
                ),
            )),
            (None, VolumeContent::Seed(_)) => out.push(ch(
                Object::Volume,
                &v.name,
                Action::Create,
                "NoCloud seed (cidata): user-data, meta-data, network-config",
            )),
            (None, VolumeContent::Installer(p)) => out.push(ch(
                Object::Volume,
                &v.name,
                Action::Create,
                format!(
                    "kickstart installer: upload {} ({})",
                    p.display(),
                    human(v.capacity)
                ),
            )),
            (Some(_), VolumeContent::Installer(_)) if boots => out.push(ch(
                Object::Volume,
                &v.name,
                Action::Update,
                "kickstart installer refreshed: the current kickstart",
            )),
            (Some(_), VolumeContent::Seed(_)) if boots => out.push(ch(
                Object::Volume,
                &v.name,
                Action::Update,
                "NoCloud seed refreshed: the services VM boots with the current seed",
            )),
            (Some(_), VolumeContent::Payload(_)) if boots => out.push(ch(
                Object::Volume,
                &v.name,
                Action::Update,
                "install payload refreshed: the services VM boots with the current inventory",
            )),
            (Some(&cap), VolumeContent::Disk) if cap < v.capacity => out.push(
                ch(
                    Object::Volume,
                    &v.name,
                    Action::Grow {
                        from: cap,
                        to: v.capacity,
                    },
                    format!("{} -> {}", human(cap), human(v.capacity)),
                )
                .with_fields(vec![FieldChange {
                    field: "capacity".into(),
                    from: Some(human(cap)),
                    to: Some(human(v.capacity)),
                }]),
            ),
            _ => {}
        }
    }
    for name in vols.keys() {
        if is_appliance_volume(want, name) && !want.volumes.iter().any(|v| &v.name == name) {
            out.push(ch(
                Object::Volume,
                name,
                Action::Remove,
                "stale appliance file",
            ));
        }
    }
    match &have.network {
        None => {
            out.push(ch(
                Object::Network,
                &want.network,
                Action::Create,
                "define, start, autostart",
            ));
        }
        Some(n) => {
            let wanted = xml::stored_digest(&want.network_xml);
            let want_net_fields = diff::network_fields(&want.network_xml);
            if n.digest.is_none() {
                out.push(ch(
                    Object::Network,
                    &want.network,
                    Action::Refuse {
                        why: format!(
                            "network {0} exists and is not bootlab's: set network.libvirt_name to another name, or remove it (`virsh net-destroy {0}; virsh net-undefine {0}`)",
                            want.network
                        ),
                    },
                    "",
                ));
            } else if n.digest != wanted {
                out.push(
                    ch(
                        Object::Network,
                        &want.network,
                        Action::Update,
                        "definition differs",
                    )
                    .with_fields(diff::diff(&want_net_fields, &n.fields)),
                );
            }
            if !n.active {
                out.push(ch(Object::Network, &want.network, Action::Start, ""));
            } else if n.digest.is_some() && n.digest == wanted && n.live_digest != wanted {
                out.push(
                    ch(
                    Object::Network,
                    &want.network,
                    Action::Refuse {
                        why: format!(
                            "the running network still has the old definition; bootlab does not destroy a network to edit it: restart it when convenient (`virsh net-destroy {0}; virsh net-start {0}`)",
                            want.network
                        ),
                    },
                    "",
                )
                    .with_fields(diff::diff(&want_net_fields, &n.live_fields)),
                );
            }
            if !n.autostart {
                out.push(ch(Object::Network, &want.network, Action::Autostart, ""));
            }
        }
    }
    for d in &want.domains {
        let name = &d.plan.name;
        match have.domains.get(name) {
            None => {
                out.push(ch(Object::Domain, name, Action::Create, domain_note(d)));
                if d.is_services || opts.start_nodes {
                    out.push(ch(Object::Domain, name, Action::Start, ""));
                }
            }
            Some(s) => {
                if s.digest.is_none() {
                    out.push(ch(
                        Object::Domain,
                        name,
                        Action::Refuse {
                            why: format!(
                                "domain {name} exists and is not bootlab's: change libvirt.vm_prefix or remove it (`virsh undefine {name}`)"
                            ),
                        },
                        "",
                    ));
                    continue;
                }
                let forced = s.active
                    && d.is_services
                    && opts.restart_services
                    && !opts.services_restart_for.is_empty();
                if s.digest == xml::stored_digest(&d.xml) && forced {
                    out.push(ch(
                        Object::Domain,
                        name,
                        Action::Restart,
                        format!(
                            "bootlabd reads these only at start: {}",
                            opts.services_restart_for.join("; ")
                        ),
                    ));
                }
                if s.digest != xml::stored_digest(&d.xml) {
                    let restart = s.active && d.is_services && opts.restart_services;
                    let fields = diff::diff(&diff::domain_fields(&d.xml), &s.fields);
                    out.push(ch(
                        Object::Domain,
                        name,
                        Action::Update,
                        if restart {
                            "definition differs"
                        } else if s.active && d.is_services {
                            "definition differs; takes effect at its next boot (or run up with --restart-services)"
                        } else if s.active {
                            "definition differs; takes effect at its next boot"
                        } else {
                            "definition differs"
                        },
                    ).with_fields(fields));
                    if restart {
                        out.push(ch(
                            Object::Domain,
                            name,
                            Action::Restart,
                            "the services VM restarts on its new definition",
                        ));
                    }
                }
                if !s.active && (d.is_services || opts.start_nodes) {
                    out.push(ch(Object::Domain, name, Action::Start, ""));
                }
            }
        }
    }
    out
}

fn domain_note(d: &crate::desired::DomainSpec) -> String {
    let p = &d.plan;
    let nics: Vec<&str> = p.nics.iter().map(|n| n.mac.as_str()).collect();
    format!(
        "{} vCPU, {}, {}, {} disk(s), NIC {}{}",
        p.vcpus,
        human(p.memory),
        p.firmware.as_str(),
        p.disks.len(),
        nics.join(" "),
        if p.direct_boot.is_some() {
            ", appliance (direct kernel boot)"
        } else {
            ""
        }
    )
}

/// Bytes for humans.
pub fn human(b: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (u, n) in UNITS {
        if b >= n && b % n == 0 {
            return format!("{} {u}", b / n);
        }
    }
    if b >= 1 << 20 {
        return format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64);
    }
    format!("{b} B")
}

/// Bytes for humans, any size (`1.5 GiB`, `12.0 MiB`, `300 B`).
pub fn human_any(b: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (u, n) in UNITS {
        if b >= n {
            return format!("{:.1} {u}", b as f64 / n as f64);
        }
    }
    format!("{b} B")
}

/// The plan as a readable diff: one line per change (`+` create, `~`
/// update, `>` start, `-` remove, `!` refused), the fields that change
/// under it; coloured with `palette`.
pub fn plan_text(changes: &[Change], palette: Palette) -> String {
    use std::fmt::Write as _;
    if changes.is_empty() {
        return "nothing to do: libvirt matches the inventory\n".into();
    }
    let mut out = String::new();
    for c in changes {
        let (sign, verb) = match &c.action {
            Action::Create => ("+", "create".to_string()),
            Action::Update => ("~", "update".to_string()),
            Action::Grow { .. } => ("~", "grow".to_string()),
            Action::Start => (">", "start".to_string()),
            Action::Restart => (">", "restart".to_string()),
            Action::Autostart => ("~", "autostart".to_string()),
            Action::Remove => ("-", "remove".to_string()),
            Action::Refuse { why } => ("!", format!("refused: {why}")),
            Action::Push { bytes } => ("^", format!("push ({})", human_any(*bytes))),
            Action::Hold { why } => ("!", format!("held: {why}")),
        };
        let paint = |t: &str| match sign {
            "+" => palette.added(t),
            "~" => palette.changed(t),
            ">" => palette.started(t),
            "-" => palette.removed(t),
            _ => palette.refused(t),
        };
        let head = format!("{sign} {:<7} {:<28}", c.object.as_str(), c.name);
        let _ = write!(out, "{} {}", paint(&head), paint(&verb));
        if c.note.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, " {}", palette.dim(&format!("({})", c.note)));
        }
        for f in &c.fields {
            let line = match (&f.from, &f.to) {
                (Some(a), Some(b)) => format!(
                    "{}: {} -> {}",
                    f.field,
                    palette.removed(a),
                    palette.added(b)
                ),
                (None, Some(b)) => palette.added(&format!("+ {}: {b}", f.field)),
                (Some(a), None) => palette.removed(&format!("- {}: {a}", f.field)),
                (None, None) => f.field.clone(),
            };
            let _ = writeln!(out, "      {line}");
        }
    }
    out
}

/// What one step is, in words (`create volume x (qcow2, 1 GiB)`): the
/// progress bar's message and the plain step line.
pub fn step_words(c: &Change) -> String {
    let verb = match &c.action {
        Action::Create => "create",
        Action::Update => "update",
        Action::Grow { .. } => "grow",
        Action::Start => "start",
        Action::Restart => "restart",
        Action::Autostart => "autostart",
        Action::Remove => "remove",
        Action::Refuse { .. } => "skip",
        Action::Push { .. } => "push",
        Action::Hold { .. } => "hold",
    };
    let mut s = format!("{verb} {} {}", c.object.as_str(), c.name);
    if !c.note.is_empty() {
        s.push_str(&format!(" ({})", c.note));
    }
    s
}

impl Object {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Object::Pool => "pool",
            Object::Volume => "volume",
            Object::Network => "network",
            Object::Domain => "domain",
            Object::Egress => "egress",
            Object::Inventory => "inventory",
            Object::Asset => "asset",
        }
    }
}

/// Copies `src` into a libvirt stream (`send` returns how many bytes it
/// took), reporting every chunk to `progress`. Returns the bytes sent.
pub fn copy_reporting(
    src: &mut dyn std::io::Read,
    mut send: impl FnMut(&[u8]) -> anyhow::Result<usize>,
    progress: &mut dyn StepReporter,
) -> anyhow::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let mut off = 0;
        while off < n {
            let sent = send(&buf[off..n])?;
            if sent == 0 {
                bail!("the stream refused data");
            }
            off += sent;
            progress.upload_bytes(sent as u64);
        }
        total += n as u64;
    }
    Ok(total)
}

fn upload(
    conn: &Connect,
    vol: &StorageVol,
    spec: &VolumeSpec,
    path: &std::path::Path,
    progress: &mut dyn StepReporter,
) -> anyhow::Result<()> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let stream = Stream::new(conn, 0)?;
    vol.upload(&stream, 0, spec.capacity, 0)
        .with_context(|| format!("uploading into volume {}", spec.name))?;
    progress.upload_start(&spec.name, spec.capacity);
    let sent = copy_reporting(&mut file, |b| Ok(stream.send(b)?), progress)
        .with_context(|| format!("uploading into volume {}", spec.name));
    progress.upload_done();
    sent?;
    stream.finish()?;
    Ok(())
}

/// The refusal that stops a plan before anything is changed, if any (a
/// running network with an old definition is only a note).
pub fn refusal(changes: &[Change]) -> Option<String> {
    changes.iter().find_map(|c| match &c.action {
        Action::Refuse { why }
            if c.object != Object::Network || !why.contains("still has the old") =>
        {
            Some(why.clone())
        }
        _ => None,
    })
}

/// Carries out a plan, one step after the other, reporting each to
/// `progress`. Refusals stop before anything is changed.
pub fn apply(
    conn: &Connect,
    want: &Desired,
    changes: &[Change],
    progress: &mut dyn StepReporter,
) -> anyhow::Result<()> {
    if let Some(why) = refusal(changes) {
        bail!("{why}");
    }
    for (i, c) in changes.iter().enumerate() {
        progress.step(i + 1, changes.len(), &step_words(c));
        apply_one(conn, want, c, progress)?;
    }
    progress.finish();
    Ok(())
}

/// Carries out one change (egress changes are the caller's).
pub fn apply_one(
    conn: &Connect,
    want: &Desired,
    c: &Change,
    progress: &mut dyn StepReporter,
) -> anyhow::Result<()> {
    match (c.object, &c.action) {
        (Object::Pool, Action::Create) => {
            let pool = StoragePool::define_xml(conn, &want.pool_xml, 0)
                .context("defining the storage pool")?;
            pool.build(sys::VIR_STORAGE_POOL_BUILD_NO_OVERWRITE)
                .or_else(|_| pool.build(0))
                .context("building the pool directory")?;
            pool.create(0).context("starting the storage pool")?;
            pool.set_autostart(true)?;
        }
        (Object::Pool, Action::Start) => {
            let pool = StoragePool::lookup_by_name(conn, &want.pool)?;
            let _ = pool.build(sys::VIR_STORAGE_POOL_BUILD_NO_OVERWRITE);
            pool.create(0).context("starting the storage pool")?;
        }
        (Object::Pool, Action::Autostart) => {
            StoragePool::lookup_by_name(conn, &want.pool)?.set_autostart(true)?;
        }
        (Object::Volume, Action::Create) => {
            let pool = StoragePool::lookup_by_name(conn, &want.pool)?;
            let spec = want
                .volumes
                .iter()
                .find(|v| v.name == c.name)
                .context("volume not in the desired state")?;
            let vol = StorageVol::create_xml(&pool, &spec.xml(), 0)
                .with_context(|| format!("creating volume {}", spec.name))?;
            if let VolumeContent::Upload(path)
            | VolumeContent::Payload(path)
            | VolumeContent::Seed(path)
            | VolumeContent::Installer(path) = &spec.content
            {
                upload(conn, &vol, spec, path, progress)?;
            }
        }
        (Object::Volume, Action::Update) => {
            // The install payload, rewritten before the services VM boots.
            let pool = StoragePool::lookup_by_name(conn, &want.pool)?;
            let spec = want
                .volumes
                .iter()
                .find(|v| v.name == c.name)
                .context("volume not in the desired state")?;
            let (VolumeContent::Payload(path)
            | VolumeContent::Seed(path)
            | VolumeContent::Installer(path)) = &spec.content
            else {
                bail!("volume {} cannot be updated", c.name);
            };
            let mut vol = StorageVol::lookup_by_name(&pool, &c.name)?;
            if vol.get_info()?.capacity != spec.capacity {
                vol.delete(0)
                    .with_context(|| format!("replacing volume {}", c.name))?;
                vol = StorageVol::create_xml(&pool, &spec.xml(), 0)
                    .with_context(|| format!("creating volume {}", spec.name))?;
            }
            upload(conn, &vol, spec, path, progress)?;
        }
        (Object::Volume, Action::Grow { to, .. }) => {
            let pool = StoragePool::lookup_by_name(conn, &want.pool)?;
            StorageVol::lookup_by_name(&pool, &c.name)?
                .resize(*to, 0)
                .with_context(|| format!("growing volume {}", c.name))?;
        }
        (Object::Volume, Action::Remove) => {
            let pool = StoragePool::lookup_by_name(conn, &want.pool)?;
            StorageVol::lookup_by_name(&pool, &c.name)?.delete(0)?;
        }
        (Object::Network, Action::Create) => {
            let net =
                Network::define_xml(conn, &want.network_xml).context("defining the network")?;
            net.create().context("starting the network")?;
            net.set_autostart(true)?;
        }
        (Object::Network, Action::Update) => {
            // Redefining (same UUID) updates the persistent definition in
            // place; a running network is never destroyed for it.
            let uuid = Network::lookup_by_name(conn, &want.network)?.get_uuid_string()?;
            Network::define_xml(conn, &xml::with_uuid(&want.network_xml, &uuid))
                .context("updating the network")?;
        }
        (Object::Network, Action::Start) => {
            Network::lookup_by_name(conn, &want.network)?
                .create()
                .context("starting the network")?;
        }
        (Object::Network, Action::Autostart) => {
            Network::lookup_by_name(conn, &want.network)?.set_autostart(true)?;
        }
        (Object::Domain, Action::Create | Action::Update) => {
            let d = want
                .domains
                .iter()
                .find(|d| d.plan.name == c.name)
                .context("domain not in the desired state")?;
            let xml = match c.action {
                Action::Update => {
                    let uuid = Domain::lookup_by_name(conn, &c.name)?.get_uuid_string()?;
                    xml::with_uuid(&d.xml, &uuid)
                }
                // A kickstart services VM is created installing.
                _ => d.install_xml.clone().unwrap_or_else(|| d.xml.clone()),
            };
            Domain::define_xml(conn, &xml)
                .with_context(|| format!("defining domain {}", c.name))?;
        }
        (Object::Domain, Action::Start) => {
            let dom = Domain::lookup_by_name(conn, &c.name)?;
            let spec = want.domains.iter().find(|d| d.plan.name == c.name);
            if let Some(install) = spec.and_then(|d| d.install_xml.as_deref()) {
                let live = xml::stored_digest(&dom.get_xml_desc(0)?);
                if live.is_some() && live == xml::stored_digest(install) {
                    let spec = spec.context("domain not in the desired state")?;
                    run_installer(conn, &dom, spec)?;
                }
            }
            dom.create()
                .with_context(|| format!("starting domain {}", c.name))?;
        }
        (Object::Domain, Action::Restart) => {
            let dom = Domain::lookup_by_name(conn, &c.name)?;
            if dom.is_active().unwrap_or(false) {
                dom.destroy()
                    .with_context(|| format!("stopping domain {}", c.name))?;
            }
            dom.create()
                .with_context(|| format!("starting domain {}", c.name))?;
        }
        _ => {}
    }
    Ok(())
}

/// How long the kickstart installer may run before `up` gives up (a
/// bound against a hung installer; a DVD install under TCG is slow).
pub const INSTALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(4 * 3600);

/// Runs the kickstart installer: starts the install-time definition,
/// prints its serial log (`installer | ...` on stderr) as progress until
/// the domain stops (the kickstart powers off; a reboot ends it too),
/// then redefines the domain to its final definition. The serial log is
/// read on this host, so only for local URIs (the caller refuses others).
fn run_installer(
    conn: &Connect,
    dom: &Domain,
    spec: &crate::desired::DomainSpec,
) -> anyhow::Result<()> {
    use std::io::{Read as _, Seek as _};
    let name = &spec.plan.name;
    dom.create()
        .with_context(|| format!("starting the installer of {name}"))?;
    eprintln!(
        "installer | {name}: the kickstart installer runs (serial log {})",
        spec.plan.serial_log
    );
    let started = std::time::Instant::now();
    let mut offset = 0u64;
    let mut partial = String::new();
    let tail = |offset: &mut u64, partial: &mut String| {
        let Ok(mut f) = std::fs::File::open(&spec.plan.serial_log) else {
            return;
        };
        if f.seek(std::io::SeekFrom::Start(*offset)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        if let Ok(n) = f.take(1 << 20).read_to_end(&mut buf) {
            *offset += n as u64;
            partial.push_str(&String::from_utf8_lossy(&buf));
            while let Some(i) = partial.find('\n') {
                let line: String = partial.drain(..=i).collect();
                let line = line.trim_end();
                if !line.is_empty() {
                    eprintln!("installer | {line}");
                }
            }
        }
    };
    while dom.is_active().unwrap_or(false) {
        tail(&mut offset, &mut partial);
        if started.elapsed() > INSTALL_LIMIT {
            bail!(
                "the installer of {name} still runs after {}: see {} (`bootlab console`)",
                humantime::format_duration(INSTALL_LIMIT),
                spec.plan.serial_log
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    tail(&mut offset, &mut partial);
    if !partial.trim().is_empty() {
        eprintln!("installer | {}", partial.trim_end());
    }
    eprintln!("installer | {name}: the installer powered off; the domain now boots its root disk");
    let uuid = dom.get_uuid_string()?;
    Domain::define_xml(conn, &xml::with_uuid(&spec.xml, &uuid))
        .with_context(|| format!("defining the final domain {name}"))?;
    Ok(())
}

/// What `down` removed or kept.
#[derive(Debug, Default, Serialize)]
pub struct DownReport {
    /// Removed objects (`kind name`).
    pub removed: Vec<String>,
    /// Kept objects and why.
    pub kept: Vec<String>,
}

/// A disk volume `down` would delete (without `--keep-disks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskVolume {
    /// Volume name.
    pub name: String,
    /// Capacity in bytes.
    pub capacity: u64,
    /// Bytes allocated on the host.
    pub allocation: u64,
}

/// The inventory's disk volumes that exist in the lab pool: what `down`
/// deletes unless `--keep-disks` (appliance volumes are not listed: they
/// are rebuilt by every `up`). Reads only; an inactive pool is started to
/// list them, as `down` does.
pub fn disks_down_deletes(conn: &Connect, want: &Desired) -> anyhow::Result<Vec<DiskVolume>> {
    let Ok(pool) = StoragePool::lookup_by_name(conn, &want.pool) else {
        return Ok(vec![]);
    };
    if path_of_pool_xml(&pool.get_xml_desc(0)?).trim_end_matches('/')
        != want.pool_path.trim_end_matches('/')
    {
        return Ok(vec![]);
    }
    if !pool.is_active()? {
        pool.create(0)
            .context("starting the pool to list its volumes")?;
    }
    let _ = pool.refresh(0);
    let mut out = Vec::new();
    for v in pool.list_all_volumes(0)? {
        let name = v.get_name()?;
        if want
            .volumes
            .iter()
            .any(|s| s.name == name && s.content.is_disk())
        {
            let info = v.get_info()?;
            out.push(DiskVolume {
                name,
                capacity: info.capacity,
                allocation: info.allocation,
            });
        }
    }
    Ok(out)
}

/// Removes what `up` created, only objects that are bootlab's: domains and
/// network carrying bootlab's metadata, the volumes named after the
/// inventory's VMs, and the pool when nothing else is left in it.
pub fn down(conn: &Connect, want: &Desired, keep_disks: bool) -> anyhow::Result<DownReport> {
    let mut r = DownReport::default();
    for d in &want.domains {
        let Ok(dom) = Domain::lookup_by_name(conn, &d.plan.name) else {
            continue;
        };
        if xml::stored_digest(&dom.get_xml_desc(sys::VIR_DOMAIN_XML_INACTIVE)?).is_none() {
            r.kept
                .push(format!("domain {} (not bootlab's)", d.plan.name));
            continue;
        }
        // A node may power itself off between the check and the destroy.
        if dom.is_active()? && dom.destroy().is_err() && dom.is_active()? {
            bail!("cannot stop {}", d.plan.name);
        }
        dom.undefine_flags(sys::VIR_DOMAIN_UNDEFINE_NVRAM)
            .or_else(|_| dom.undefine())
            .with_context(|| format!("undefining {}", d.plan.name))?;
        r.removed.push(format!("domain {}", d.plan.name));
    }
    if let Ok(net) = Network::lookup_by_name(conn, &want.network) {
        if xml::stored_digest(&net.get_xml_desc(sys::VIR_NETWORK_XML_INACTIVE)?).is_some() {
            if net.is_active()? {
                net.destroy()?;
            }
            net.undefine()?;
            r.removed.push(format!("network {}", want.network));
        } else {
            r.kept
                .push(format!("network {} (not bootlab's)", want.network));
        }
    }
    if let Ok(pool) = StoragePool::lookup_by_name(conn, &want.pool) {
        if path_of_pool_xml(&pool.get_xml_desc(0)?).trim_end_matches('/')
            != want.pool_path.trim_end_matches('/')
        {
            r.kept.push(format!("pool {} (at another path)", want.pool));
            return Ok(r);
        }
        if !pool.is_active()? {
            pool.create(0).context("starting the pool to empty it")?;
        }
        let _ = pool.refresh(0);
        for v in pool.list_all_volumes(0)? {
            let name = v.get_name()?;
            let ours_disk = want
                .volumes
                .iter()
                .any(|s| s.name == name && s.content.is_disk());
            if is_appliance_volume(want, &name) || (ours_disk && !keep_disks) {
                v.delete(0)
                    .with_context(|| format!("deleting volume {name}"))?;
                r.removed.push(format!("volume {name}"));
            } else {
                r.kept.push(format!("volume {name}"));
            }
        }
        if pool.list_volumes()?.is_empty() {
            pool.destroy()?;
            pool.delete(sys::VIR_STORAGE_POOL_DELETE_NORMAL)
                .context("removing the pool directory")?;
            pool.undefine()?;
            r.removed.push(format!("pool {}", want.pool));
        } else {
            r.kept
                .push(format!("pool {} (volumes left in it)", want.pool));
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_remote_uris() {
        assert!(is_local_uri("qemu:///system"));
        assert!(is_local_uri("qemu:///system?socket=/tmp/x/libvirt-sock"));
        assert!(is_local_uri("qemu+unix:///system"));
        assert!(is_local_uri("test:///default"));
        assert!(!is_local_uri("qemu+ssh://root@hv/system"));
        assert!(!is_local_uri("qemu://hv/system"));
        assert!(!is_local_uri("qemu+tcp://hv/system"));
    }

    #[test]
    fn pool_path_is_read_from_xml() {
        assert_eq!(
            path_of_pool_xml(
                "<pool type='dir'><name>x</name><target><path>/a/b</path></target></pool>"
            ),
            "/a/b"
        );
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(1 << 30), "1 GiB");
        assert_eq!(human(3 << 20), "3 MiB");
        assert_eq!(human(12), "12 B");
    }
}
