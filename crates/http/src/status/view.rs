//! What the status page shows, as data: built once per request from a
//! [`Snapshot`] of the live state and a clock, then either rendered to
//! HTML ([`super::page`]) or sent as JSON (`/api/v1/summary`) for the
//! page's script. Both come from this one view, so the table the server
//! renders and the one the script keeps up to date cannot disagree.
//!
//! Pure: no I/O and no clock of its own ([`StatusView::build`] takes
//! `now`), so the tests pin every number.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use bootlab_inventory::{Inventory, MacAddr, RecordData};
use bootlab_state::timeline::Event;
use bootlab_state::{Machine, Metrics, Service, Stage};
use serde::{Deserialize, Serialize};

use super::boot::{self, Attempt, STAGES, Usual};

/// Recent events listed per machine.
pub const RECENT_EVENTS: usize = 6;

/// Rows for machines that are not inventory nodes (unknown MACs, the
/// services host), at most: the most recently active.
pub const MAX_OTHER_ROWS: usize = 100;

/// The live state the page is built from.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Every machine's timeline (name and address filled in).
    pub machines: Vec<Machine>,
    /// Service counters ([`ServiceView::from_metrics`]).
    pub services: Vec<ServiceView>,
    /// The `balancers` report, when the daemon runs balancers.
    pub balancers: Option<serde_json::Value>,
    /// The `egress` report, when the daemon manages the firewall.
    pub egress: Option<serde_json::Value>,
}

/// The whole page.
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    /// The lab.
    pub lab: LabView,
    /// bootlabd's version.
    pub version: &'static str,
    /// When this view was built, RFC 3339 (UTC, seconds).
    pub generated_at: String,
    /// The same as `HH:MM:SS`, UTC.
    pub clock: String,
    /// One line: nodes seen, booting, stalled...
    pub headline: String,
    /// The counts behind the headline.
    pub counts: Counts,
    /// One row per machine: inventory nodes in inventory order, then other
    /// machines bootlabd heard from, by MAC.
    pub machines: Vec<Row>,
    /// DHCP, DNS, TFTP, HTTP counters.
    pub services: Vec<ServiceView>,
    /// The inventory's extra DNS records.
    pub records: Vec<RecordView>,
    /// Balancer backends (absent when the lab has no balancers).
    pub balancers: Option<Vec<BalancerView>>,
    /// Refused egress destinations (absent when bootlabd does not manage
    /// the firewall).
    pub egress: Option<EgressView>,
    /// The stall rule, in words.
    pub stall_rule: String,
}

/// The lab's name and domain.
#[derive(Debug, Clone, Serialize)]
pub struct LabView {
    /// `lab.name`.
    pub name: String,
    /// The lab's zone.
    pub domain: String,
}

/// How many machines are in which state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Inventory nodes.
    pub nodes: usize,
    /// Inventory nodes bootlabd has heard from.
    pub seen: usize,
    /// Nodes between DHCP and their initrd, not stalled.
    pub booting: usize,
    /// Stalled nodes.
    pub stalled: usize,
    /// Nodes that got their kernel and initrd.
    pub loaded: usize,
    /// Machines not in the inventory.
    pub unknown: usize,
}

/// Where a machine stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// An inventory node bootlabd has not heard from.
    Unseen,
    /// Got an address without a boot file (booted from disk, renewing).
    Online,
    /// Between DHCP and its initrd.
    Booting,
    /// At a stage longer than usual.
    Stalled,
    /// Got its kernel and initrd (the OS runs).
    Loaded,
    /// A MAC the inventory does not know.
    Unknown,
}

/// One machine's row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The row's element id (`m-` and the MAC's hex digits).
    pub id: String,
    /// MAC, lowercase with colons.
    pub mac: String,
    /// Host name, for inventory hosts.
    pub name: Option<String>,
    /// In the inventory.
    pub known: bool,
    /// Address (lease, else reservation).
    pub ip: Option<String>,
    /// Fully qualified name.
    pub fqdn: Option<String>,
    /// Role.
    pub role: Option<String>,
    /// Boot profile.
    pub profile: Option<String>,
    /// Firmware.
    pub firmware: Option<String>,
    /// Template variables.
    pub vars: Vec<KeyValue>,
    /// Current stage (`dhcp`, `tftp`, `script`, `kernel`, `initrd`,
    /// `config`), none before the first stage event.
    pub stage: Option<Stage>,
    /// The current stage in words.
    pub stage_label: String,
    /// Each stage of the current boot attempt.
    pub stages: Vec<StageCell>,
    /// The latest event.
    pub last: Option<EventView>,
    /// Where it stands.
    pub status: Status,
    /// The same, in words.
    pub status_text: String,
    /// Set when stalled.
    pub stall: Option<StallView>,
    /// The latest events, newest first.
    pub recent: Vec<EventView>,
}

/// A key and its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

/// How far a stage is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StageState {
    /// Reached, and a later stage too.
    Done,
    /// The furthest stage reached.
    Current,
    /// Not reached, but a later one was (a BIOS NIC's iPXE ROM needs no
    /// loader over TFTP).
    Skipped,
    /// Not reached yet.
    Pending,
}

/// One stage of a machine's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct StageCell {
    /// Which stage.
    pub stage: Stage,
    /// Its name on the page.
    pub label: &'static str,
    /// How far.
    pub state: StageState,
    /// A one-character mark for text browsers (✓ ▶ – ·).
    pub mark: &'static str,
    /// When it was reached, RFC 3339.
    pub at: Option<String>,
    /// When it was reached, counted from the attempt's first event
    /// (`+2.5 s`).
    pub offset: Option<String>,
}

/// One event, for reading.
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    /// When, RFC 3339 with milliseconds.
    pub at: String,
    /// Seconds before the view was built.
    pub age_s: u64,
    /// The same, in words (`12 s ago`).
    pub age: String,
    /// What happened.
    pub text: String,
}

/// A stall, for reading.
#[derive(Debug, Clone, Serialize)]
pub struct StallView {
    /// The stage the machine sits at.
    pub stage: Stage,
    /// Seconds there.
    pub for_s: u64,
    /// The stage's usual time, seconds.
    pub usual_s: u64,
}

/// One service's counters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceView {
    /// `DHCP`, `DNS`, `TFTP`, `HTTP`.
    pub name: &'static str,
    /// Its counters, in a fixed order.
    pub counters: Vec<CounterView>,
}

/// One counter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CounterView {
    /// What it counts.
    pub label: &'static str,
    /// Its value.
    pub value: f64,
    /// The value for reading (`1.2 MiB`, `42`).
    pub text: String,
}

/// One `[dns].records` entry.
#[derive(Debug, Clone, Serialize)]
pub struct RecordView {
    /// Owner, relative to the lab zone (`@` for the apex).
    pub name: String,
    /// Type.
    pub rtype: &'static str,
    /// Data.
    pub value: String,
    /// TTL in seconds.
    pub ttl: u32,
}

/// One balancer backend (one row per backend).
#[derive(Debug, Clone, Serialize)]
pub struct BalancerView {
    /// The balancer.
    pub balancer: String,
    /// Where it listens.
    pub listen: String,
    /// The backend node.
    pub backend: String,
    /// Where its connections go.
    pub addr: String,
    /// up, down or drained.
    pub state: String,
    /// Connections open now.
    pub active: u64,
    /// Connections made since it appeared.
    pub total: u64,
    /// Bytes from clients, for reading.
    pub bytes_in: String,
    /// Bytes to clients, for reading.
    pub bytes_out: String,
    /// Failed connects.
    pub failures: u64,
    /// The latest failed check's error.
    pub last_error: Option<String>,
}

/// The egress report.
#[derive(Debug, Clone, Serialize)]
pub struct EgressView {
    /// Set when the report could not be read.
    pub error: Option<String>,
    /// Destinations refused in the last hour.
    pub denied: Vec<DeniedView>,
    /// Named drop counters.
    pub counters: Vec<NamedCounter>,
    /// Addresses learned from DNS answers for allowed domains.
    pub learned: usize,
}

/// One refused destination.
#[derive(Debug, Clone, Serialize)]
pub struct DeniedView {
    /// Address.
    pub addr: String,
    /// Protocol.
    pub protocol: String,
    /// Port.
    pub port: String,
    /// Time left in the set, for reading.
    pub expires: String,
}

/// A named counter with packets and bytes.
#[derive(Debug, Clone, Serialize)]
pub struct NamedCounter {
    /// Its name.
    pub name: String,
    /// Packets.
    pub packets: u64,
    /// Bytes, for reading.
    pub bytes: String,
}

/// A stage's name on the page.
pub fn stage_label(stage: Stage) -> &'static str {
    match stage {
        Stage::Dhcp => "DHCP",
        Stage::Tftp => "loader",
        Stage::Script => "script",
        Stage::Kernel => "kernel",
        Stage::Initrd => "initrd",
        Stage::Config => "config",
    }
}

/// `d` for reading: `4 s`, `2 min 5 s`, `1 h 3 min`, `2 d 4 h`.
pub fn duration_text(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// An offset from an attempt's start: `+0.0 s` ... `+59.9 s`, then
/// [`duration_text`].
fn offset_text(d: Duration) -> String {
    if d < Duration::from_secs(60) {
        format!("+{:.1} s", d.as_secs_f64())
    } else {
        format!("+{}", duration_text(d))
    }
}

/// `n` bytes for reading (binary units).
pub fn bytes_text(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn age(now: SystemTime, t: SystemTime) -> Duration {
    now.duration_since(t).unwrap_or_default()
}

/// One event in words: `http kernel /assets/vmlinuz (11.2 MiB)`,
/// `dhcp ack ip=10.0.0.5 ...`.
pub fn event_text(e: &Event) -> String {
    let mut s = format!("{} {}", e.service.as_str(), e.kind);
    if let Some(p) = &e.path {
        s.push(' ');
        s.push_str(p);
    }
    if let Some(b) = e.bytes {
        s.push_str(&format!(" ({})", bytes_text(b)));
    }
    if let Some(d) = &e.detail {
        s.push_str(": ");
        s.push_str(d);
    }
    s
}

fn event_view(e: &Event, now: SystemTime) -> EventView {
    let a = age(now, e.at);
    EventView {
        at: rfc3339(e.at),
        age_s: a.as_secs(),
        age: format!("{} ago", duration_text(a)),
        text: event_text(e),
    }
}

/// The row's element id: `m-` and the MAC's twelve hex digits.
pub fn row_id(mac: MacAddr) -> String {
    let mut s = String::from("m-");
    for b in mac.0 {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn stage_cells(attempt: &Attempt) -> Vec<StageCell> {
    let start = attempt.started;
    STAGES
        .iter()
        .map(|&stage| {
            let reached = attempt.reached[boot::index(stage)];
            let state = match (reached, attempt.current) {
                (Some(_), Some(c)) if c == stage => StageState::Current,
                (Some(_), _) => StageState::Done,
                (None, Some(c)) if c > stage => StageState::Skipped,
                (None, _) => StageState::Pending,
            };
            let mark = match state {
                StageState::Done => "✓",
                StageState::Current => "▶",
                StageState::Skipped => "–",
                StageState::Pending => "·",
            };
            StageCell {
                stage,
                label: stage_label(stage),
                state,
                mark,
                at: reached.map(rfc3339),
                offset: reached
                    .zip(start)
                    .map(|(r, s)| offset_text(r.duration_since(s).unwrap_or_default())),
            }
        })
        .collect()
}

/// What the row of a machine is built from.
struct Subject<'a> {
    mac: MacAddr,
    node: Option<&'a bootlab_inventory::Node>,
    host_name: Option<String>,
    ip: Option<String>,
    machine: Option<&'a Machine>,
    attempt: Attempt,
}

impl Subject<'_> {
    /// The machine itself sent bootlabd a request (any event but a
    /// balancer's note about it).
    fn heard(&self) -> bool {
        self.machine
            .is_some_and(|m| m.events.iter().any(|e| e.service != Service::Lb))
    }
}

fn build_row(s: &Subject<'_>, usual: &Usual, now: SystemTime) -> Row {
    let known = s.host_name.is_some();
    let a = &s.attempt;
    let stall = if s.node.is_some() {
        boot::stall(a, usual, now)
    } else {
        None
    };
    // Balancer health checks write to a node's timeline too, but only the
    // machine's own requests (DHCP, TFTP, HTTP, DNS) mean it was seen.
    let heard = s.heard().then_some(());
    let (status, status_text) = match (&stall, heard, a.current) {
        (_, _, _) if !known => (Status::Unknown, "not in the inventory".to_owned()),
        (Some(st), _, _) => (
            Status::Stalled,
            format!(
                "stalled at {} for {} (usual: up to {})",
                stage_label(st.stage),
                duration_text(st.for_),
                duration_text(st.usual)
            ),
        ),
        (None, None, _) => (Status::Unseen, "not seen yet".to_owned()),
        (None, Some(_), Some(c)) if c >= Stage::Initrd => {
            (Status::Loaded, "kernel and initrd delivered".to_owned())
        }
        (None, Some(_), Some(Stage::Dhcp)) if !a.boot_file_offered => (
            Status::Online,
            "has an address (no network boot)".to_owned(),
        ),
        (None, Some(_), Some(_)) => (Status::Booting, "booting".to_owned()),
        (None, Some(_), None) => (Status::Booting, "seen, no boot step yet".to_owned()),
    };
    let all: Vec<&Event> = s
        .machine
        .map(|m| m.events.iter().collect())
        .unwrap_or_default();
    let node = s.node;
    Row {
        id: row_id(s.mac),
        mac: s.mac.to_string(),
        name: s.host_name.clone(),
        known,
        ip: s.ip.clone(),
        fqdn: node.map(|n| n.fqdn.clone()),
        role: node.and_then(|n| n.role.clone()),
        profile: node.map(|n| n.profile.clone()),
        firmware: node.map(|n| n.firmware.as_str().to_owned()),
        vars: node
            .map(|n| {
                n.vars
                    .iter()
                    .map(|(k, v)| KeyValue {
                        key: k.clone(),
                        value: v.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        stage: a.current,
        stage_label: a
            .current
            .map_or_else(|| "—".to_owned(), |c| stage_label(c).to_owned()),
        stages: stage_cells(a),
        last: all.last().map(|e| event_view(e, now)),
        status,
        status_text,
        stall: stall.map(|st| StallView {
            stage: st.stage,
            for_s: st.for_.as_secs(),
            usual_s: st.usual.as_secs(),
        }),
        recent: all
            .iter()
            .rev()
            .take(RECENT_EVENTS)
            .map(|e| event_view(e, now))
            .collect(),
    }
}

impl StatusView {
    /// The page for `inv` and `snap` at `now`.
    pub fn build(inv: &Inventory, snap: &Snapshot, now: SystemTime) -> Self {
        let by_mac: BTreeMap<MacAddr, &Machine> =
            snap.machines.iter().map(|m| (m.mac, m)).collect();
        let attempt_of = |m: Option<&Machine>| {
            m.map(|m| boot::current_attempt(&m.events))
                .unwrap_or_default()
        };
        let mut subjects: Vec<Subject<'_>> = Vec::new();
        for node in inv.nodes() {
            let machine = by_mac.get(&node.mac).copied();
            subjects.push(Subject {
                mac: node.mac,
                node: Some(node),
                host_name: Some(node.name.clone()),
                ip: Some(machine.and_then(|m| m.ip).unwrap_or(node.ip).to_string()),
                machine,
                attempt: attempt_of(machine),
            });
        }
        // Machines that are no node: the most recently active ones, shown
        // in MAC order, so a flood of made-up MACs cannot bury the nodes or
        // make the page huge.
        let mut others: Vec<&Machine> = snap
            .machines
            .iter()
            .filter(|m| inv.node_by_mac(m.mac).is_none())
            .collect();
        let others_total = others.len();
        others.sort_by_key(|m| std::cmp::Reverse(m.events.back().map(|e| e.at)));
        others.truncate(MAX_OTHER_ROWS);
        others.sort_by_key(|m| m.mac);
        for m in others {
            subjects.push(Subject {
                mac: m.mac,
                node: None,
                host_name: inv.host_by_mac(m.mac).map(|h| h.name.clone()),
                ip: m.ip.map(|ip| ip.to_string()),
                machine: Some(m),
                attempt: attempt_of(Some(m)),
            });
        }
        let usual = Usual::measure(
            subjects
                .iter()
                .filter(|s| s.node.is_some())
                .map(|s| &s.attempt),
        );
        let machines: Vec<Row> = subjects.iter().map(|s| build_row(s, &usual, now)).collect();
        let mut counts = Counts {
            nodes: inv.nodes().len(),
            ..Counts::default()
        };
        for (row, s) in machines.iter().zip(&subjects) {
            if s.node.is_some() && s.heard() {
                counts.seen += 1;
            }
            match row.status {
                Status::Booting => counts.booting += 1,
                Status::Stalled => counts.stalled += 1,
                Status::Loaded => counts.loaded += 1,
                Status::Unknown => counts.unknown += 1,
                Status::Unseen | Status::Online => {}
            }
        }
        let mut headline = format!(
            "{} of {} nodes seen: {} booting, {} loaded, {} stalled",
            counts.seen, counts.nodes, counts.booting, counts.loaded, counts.stalled
        );
        let hidden = others_total.saturating_sub(MAX_OTHER_ROWS);
        counts.unknown += hidden;
        if counts.unknown > 0 {
            headline.push_str(&format!("; {} unknown machines", counts.unknown));
        }
        if hidden > 0 {
            headline.push_str(&format!(
                " ({hidden} least recently active not listed; see /api/v1/machines)"
            ));
        }
        let generated = humantime::format_rfc3339_seconds(now).to_string();
        let clock = generated
            .get(11..19)
            .map_or_else(String::new, |c| format!("{c} UTC"));
        Self {
            lab: LabView {
                name: inv.lab().name.clone(),
                domain: inv.zone().to_owned(),
            },
            version: env!("CARGO_PKG_VERSION"),
            generated_at: generated,
            clock,
            headline,
            counts,
            machines,
            services: snap.services.clone(),
            records: inv.dns_records().iter().map(record_view).collect(),
            balancers: snap.balancers.as_ref().map(balancer_views),
            egress: snap.egress.as_ref().map(egress_view),
            stall_rule: stall_rule_text(&usual),
        }
    }
}

fn stall_rule_text(usual: &Usual) -> String {
    let parts: Vec<String> = STAGES
        .iter()
        .filter_map(|&s| {
            usual
                .of(s)
                .map(|d| format!("{} {}", stage_label(s), duration_text(d)))
        })
        .collect();
    format!(
        "A node is stalled when it stays at a stage longer than usual: {} times the median \
         other nodes took (once {} have left that stage), never less than the defaults. \
         Now: {}. Initrd and config are the OS's business and never stall.",
        boot::FACTOR,
        boot::MIN_SAMPLES,
        parts.join(", ")
    )
}

fn record_view(r: &bootlab_inventory::DnsRecord) -> RecordView {
    let value = match &r.data {
        RecordData::A(ip) => ip.to_string(),
        RecordData::Aaaa(ip) => ip.to_string(),
        RecordData::Cname(t) | RecordData::Ptr(t) => t.clone(),
        RecordData::Txt(strings) => strings
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(" "),
        RecordData::Srv {
            priority,
            weight,
            port,
            target,
        } => format!("{priority} {weight} {port} {target}"),
        RecordData::Mx {
            preference,
            exchange,
        } => format!("{preference} {exchange}"),
    };
    RecordView {
        name: if r.name.is_empty() {
            "@".to_owned()
        } else {
            r.name.clone()
        },
        rtype: r.data.type_name(),
        value,
        ttl: r.ttl,
    }
}

/// The parts of the `balancers` report the page shows (the report is
/// bootlab-lb's `BalancerStatus` list; unknown fields are ignored).
#[derive(Debug, Deserialize)]
struct BalancerReport {
    name: String,
    #[serde(default)]
    listen: String,
    #[serde(default)]
    backends: Vec<BackendReport>,
}

#[derive(Debug, Deserialize)]
struct BackendReport {
    name: String,
    #[serde(default)]
    addr: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    active_connections: u64,
    #[serde(default)]
    total_connections: u64,
    #[serde(default)]
    bytes_in: u64,
    #[serde(default)]
    bytes_out: u64,
    #[serde(default)]
    connect_failures: u64,
    #[serde(default)]
    last_check_error: Option<String>,
}

fn balancer_views(v: &serde_json::Value) -> Vec<BalancerView> {
    let reports: Vec<BalancerReport> = serde_json::from_value(v.clone()).unwrap_or_default();
    reports
        .into_iter()
        .flat_map(|b| {
            let (name, listen) = (b.name, b.listen);
            b.backends.into_iter().map(move |be| BalancerView {
                balancer: name.clone(),
                listen: listen.clone(),
                backend: be.name,
                addr: be.addr,
                state: match be.state.as_str() {
                    s @ ("up" | "down" | "drained") => s.to_owned(),
                    _ => "unknown".to_owned(),
                },
                active: be.active_connections,
                total: be.total_connections,
                bytes_in: bytes_text(be.bytes_in),
                bytes_out: bytes_text(be.bytes_out),
                failures: be.connect_failures,
                last_error: be.last_check_error,
            })
        })
        .collect()
}

/// The parts of the `egress` report the page shows (bootlab-firewall's).
#[derive(Debug, Default, Deserialize)]
struct EgressReport {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    denied: Vec<DeniedReport>,
    #[serde(default)]
    counters: Vec<CounterReport>,
    #[serde(default)]
    learned: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct DeniedReport {
    addr: String,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    expires_s: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct CounterReport {
    name: String,
    #[serde(default)]
    packets: u64,
    #[serde(default)]
    bytes: u64,
}

fn egress_view(v: &serde_json::Value) -> EgressView {
    let r: EgressReport = match serde_json::from_value(v.clone()) {
        Ok(r) => r,
        Err(e) => EgressReport {
            error: Some(format!("report not understood: {e}")),
            ..EgressReport::default()
        },
    };
    EgressView {
        error: r.error,
        denied: r
            .denied
            .into_iter()
            .map(|d| DeniedView {
                addr: d.addr,
                protocol: d.protocol.unwrap_or_else(|| "-".to_owned()),
                port: d.port.map_or_else(|| "-".to_owned(), |p| p.to_string()),
                expires: d
                    .expires_s
                    .map_or_else(|| "-".to_owned(), |s| duration_text(Duration::from_secs(s))),
            })
            .collect(),
        counters: r
            .counters
            .into_iter()
            .map(|c| NamedCounter {
                name: c.name,
                packets: c.packets,
                bytes: bytes_text(c.bytes),
            })
            .collect(),
        learned: r.learned.len(),
    }
}

/// How a counter's value reads.
#[derive(Debug, Clone, Copy)]
enum Unit {
    Count,
    Bytes,
}

/// Which samples a counter sums: a metric, optionally one label value.
struct Source {
    label: &'static str,
    metric: &'static str,
    only: Option<(&'static str, &'static str)>,
    unit: Unit,
}

const fn src(label: &'static str, metric: &'static str) -> Source {
    Source {
        label,
        metric,
        only: None,
        unit: Unit::Count,
    }
}

const fn only(
    label: &'static str,
    metric: &'static str,
    key: &'static str,
    value: &'static str,
) -> Source {
    Source {
        label,
        metric,
        only: Some((key, value)),
        unit: Unit::Count,
    }
}

const fn bytes(label: &'static str, metric: &'static str) -> Source {
    Source {
        label,
        metric,
        only: None,
        unit: Unit::Bytes,
    }
}

/// The counters the page shows, by service, from `/metrics`' families.
const SERVICES: &[(&str, &[Source])] = &[
    (
        "DHCP",
        &[
            src("leases", "bootlab_dhcp_lease_addresses"),
            only(
                "discovers",
                "bootlab_dhcp_received_total",
                "type",
                "discover",
            ),
            only("requests", "bootlab_dhcp_received_total", "type", "request"),
            only("offers", "bootlab_dhcp_sent_total", "type", "offer"),
            only("acks", "bootlab_dhcp_sent_total", "type", "ack"),
            only("naks", "bootlab_dhcp_sent_total", "type", "nak"),
            src("dropped", "bootlab_dhcp_dropped_total"),
        ],
    ),
    (
        "DNS",
        &[
            src("queries", "bootlab_dns_queries_total"),
            only("NOERROR", "bootlab_dns_responses_total", "rcode", "NOERROR"),
            only(
                "NXDOMAIN",
                "bootlab_dns_responses_total",
                "rcode",
                "NXDOMAIN",
            ),
            only("REFUSED", "bootlab_dns_responses_total", "rcode", "REFUSED"),
            src("forwarded", "bootlab_dns_forwarded_total"),
            src("dropped", "bootlab_dns_dropped_total"),
        ],
    ),
    (
        "TFTP",
        &[
            src("requests", "bootlab_tftp_requests_total"),
            src("transfers", "bootlab_tftp_transfers_total"),
            bytes("sent", "bootlab_tftp_sent_bytes_total"),
            src("active", "bootlab_tftp_active_sessions"),
            src("errors", "bootlab_tftp_errors_total"),
        ],
    ),
    (
        "HTTP",
        &[
            src("requests", "bootlab_http_requests_total"),
            bytes("sent", "bootlab_http_sent_bytes_total"),
            src("open", "bootlab_http_open_connections"),
            src("errors", "bootlab_http_errors_total"),
        ],
    ),
];

impl ServiceView {
    /// Every service's counters, read from `metrics`. A service whose
    /// families are not registered (not running) is left out.
    pub fn from_metrics(metrics: &Metrics) -> Vec<Self> {
        SERVICES
            .iter()
            .filter_map(|(name, sources)| {
                let mut any = false;
                let counters = sources
                    .iter()
                    .map(|s| {
                        let samples = metrics.samples(s.metric);
                        any |= !samples.is_empty();
                        // A fold from +0.0: an empty f64 sum() is -0.0.
                        let value = samples
                            .iter()
                            .filter(|(labels, _)| {
                                s.only.is_none_or(|(k, v)| {
                                    labels.iter().any(|(lk, lv)| lk == k && lv == v)
                                })
                            })
                            .fold(0.0, |acc, (_, v)| acc + v);
                        CounterView {
                            label: s.label,
                            value,
                            text: match s.unit {
                                Unit::Count => format!("{value}"),
                                Unit::Bytes => bytes_text(value as u64),
                            },
                        }
                    })
                    .collect();
                any.then_some(Self { name, counters })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bootlab_state::Timeline;
    use std::path::Path;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    fn inv() -> Inventory {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/dev.toml"),
        )
        .unwrap();
        bootlab_inventory::parse(&text, "dev.toml".as_ref()).unwrap()
    }

    fn event(s: u64, service: Service, kind: &str, stage: Option<Stage>) -> Event {
        Event {
            at: at(s),
            service,
            kind: kind.to_owned(),
            detail: Some("file=undionly.kpxe".to_owned()),
            path: None,
            bytes: None,
            stage,
        }
    }

    #[test]
    fn balancer_notes_alone_do_not_make_a_node_seen() {
        let inv = inv();
        let t = Timeline::default();
        let bios = inv.nodes()[0].mac;
        let uefi = inv.nodes()[1].mac;
        t.record(uefi, event(0, Service::Lb, "down", None));
        t.record(bios, event(0, Service::Dhcp, "offer", Some(Stage::Dhcp)));
        let snap = Snapshot {
            machines: t.machines(),
            ..Snapshot::default()
        };
        let v = StatusView::build(&inv, &snap, at(10));
        assert_eq!(v.counts.seen, 1);
        assert_eq!(v.counts.booting, 1);
        assert_eq!(v.machines[1].status, Status::Unseen);
        // Its last event (the balancer's) is still shown.
        assert_eq!(
            v.machines[1].last.as_ref().map(|e| e.text.as_str()),
            Some("lb down: file=undionly.kpxe")
        );
        assert_eq!(
            v.headline,
            "1 of 2 nodes seen: 1 booting, 0 loaded, 0 stalled"
        );
        // 61 s after a PXE offer with no loader fetch: stalled at DHCP.
        let v = StatusView::build(&inv, &snap, at(61));
        assert_eq!(v.machines[0].status, Status::Stalled);
        assert_eq!(v.counts.stalled, 1);
        assert_eq!(
            v.machines[0].status_text,
            "stalled at DHCP for 1 min 1 s (usual: up to 1 min 0 s)"
        );
        assert!(v.balancers.is_none() && v.egress.is_none());
    }

    #[test]
    fn a_flood_of_unknown_macs_is_capped() {
        let inv = inv();
        let t = Timeline::default();
        for n in 0..(MAX_OTHER_ROWS as u64 + 50) {
            let b = n.to_be_bytes();
            let mac = MacAddr([2, 0, 0, 0, b[6], b[7]]);
            t.record(mac, event(n, Service::Dhcp, "discover", Some(Stage::Dhcp)));
        }
        let snap = Snapshot {
            machines: t.machines(),
            ..Snapshot::default()
        };
        let v = StatusView::build(&inv, &snap, at(1000));
        assert_eq!(v.machines.len(), 2 + MAX_OTHER_ROWS);
        assert_eq!(v.counts.unknown, MAX_OTHER_ROWS + 50);
        // The nodes first, then the most recent unknown MACs in MAC order.
        assert_eq!(v.machines[0].name.as_deref(), Some("node-bios"));
        assert_eq!(v.machines[2].mac, "02:00:00:00:00:32");
        assert!(
            v.headline
                .ends_with("(50 least recently active not listed; see /api/v1/machines)"),
            "{}",
            v.headline
        );
    }

    #[test]
    fn services_come_from_the_registry() {
        let m = Metrics::new();
        m.counter("bootlab_dhcp_received_total", "r", &[("type", "discover")])
            .add(3);
        m.counter("bootlab_dhcp_received_total", "r", &[("type", "request")])
            .add(2);
        m.gauge("bootlab_dhcp_lease_addresses", "l", &[], || 2.0);
        m.counter("bootlab_http_sent_bytes_total", "b", &[])
            .add(3 << 20);
        let v = ServiceView::from_metrics(&m);
        let names: Vec<&str> = v.iter().map(|s| s.name).collect();
        assert_eq!(names, ["DHCP", "HTTP"], "services not running are left out");
        let get = |svc: usize, label: &str| {
            v[svc]
                .counters
                .iter()
                .find(|c| c.label == label)
                .map(|c| c.text.clone())
                .unwrap()
        };
        assert_eq!(get(0, "leases"), "2");
        assert_eq!(get(0, "discovers"), "3");
        assert_eq!(get(0, "requests"), "2");
        assert_eq!(get(0, "dropped"), "0", "an empty sum is 0, not -0");
        assert_eq!(get(1, "sent"), "3.0 MiB");
    }

    #[test]
    fn reports_are_read_leniently() {
        let e = egress_view(&serde_json::json!({ "error": "nftables table not readable" }));
        assert_eq!(e.error.as_deref(), Some("nftables table not readable"));
        let e = egress_view(&serde_json::json!({
            "denied": [{ "addr": "192.0.2.7", "protocol": "tcp", "port": 443, "expires_s": 3599 }],
            "learned": [{ "addr": "198.51.100.1" }],
            "counters": [{ "name": "egress_denied", "packets": 4, "bytes": 2048 }],
        }));
        assert_eq!(e.error, None);
        assert_eq!(e.denied[0].expires, "59 min 59 s");
        assert_eq!(e.denied[0].port, "443");
        assert_eq!(e.learned, 1);
        assert_eq!(e.counters[0].bytes, "2.0 KiB");
        let e = egress_view(&serde_json::json!({ "denied": "nonsense" }));
        assert!(e.error.unwrap().starts_with("report not understood"));
        let b = balancer_views(&serde_json::json!([{
            "name": "api", "listen": "10.0.0.1:6443",
            "backends": [{ "name": "m0", "addr": "10.0.0.10:6443", "state": "up", "bytes_in": 5 },
                         { "name": "m1", "addr": "10.0.0.11:6443", "state": "weird" }]
        }]));
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].state.as_str(), b[0].bytes_in.as_str()), ("up", "5 B"));
        assert_eq!(b[1].state, "unknown");
    }

    #[test]
    fn words_for_numbers() {
        let s = Duration::from_secs;
        assert_eq!(duration_text(s(0)), "0 s");
        assert_eq!(duration_text(s(125)), "2 min 5 s");
        assert_eq!(duration_text(s(3 * 3600 + 120)), "3 h 2 min");
        assert_eq!(duration_text(s(2 * 86_400 + 3600)), "2 d 1 h");
        assert_eq!(offset_text(Duration::from_millis(2500)), "+2.5 s");
        assert_eq!(offset_text(s(61)), "+1 min 1 s");
        assert_eq!(bytes_text(1023), "1023 B");
        assert_eq!(bytes_text(1536), "1.5 KiB");
        assert_eq!(
            row_id("52:54:00:77:00:10".parse().unwrap()),
            "m-525400770010"
        );
    }
}
