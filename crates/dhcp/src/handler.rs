//! The pure DHCP handler: a datagram and the time in, an [`Outcome`] out
//! (the reply and where it goes, the lease record that must be durable
//! before the reply leaves, timeline events, and why a packet was dropped).
//! No I/O happens here; the socket loop in `server` does the rest.
//!
//! RFC 2131 paths: DISCOVER -> OFFER; REQUEST in SELECTING (server-id +
//! requested IP), INIT-REBOOT (requested IP only), RENEWING/REBINDING
//! (ciaddr) -> ACK or NAK; DECLINE (server-id + requested IP must match the
//! client's lease or offer; pool addresses are quarantined; capped per
//! client); RELEASE (only from the lease's MAC); INFORM (ACK without lease
//! times, no lease). bootlabd is authoritative on the lab network: a request
//! for an address the client may not have is NAKed, except for unknown MACs
//! in reservation-only mode, which always get silence.
//!
//! proxyDHCP (`network.dhcp = "proxy"`, PXE 2.1 and RFC 4578): another
//! server owns the addresses. On port 67 a PXE client's DISCOVER from a
//! reserved MAC gets an OFFER without an address (yiaddr 0, option 60
//! `PXEClient`, option 43 "boot the named file", the file and next-server);
//! on port 4011 ([`Listener::BootServer`]) its REQUEST or INFORM gets an
//! ACK with the same boot information. Nothing else is ever answered: no
//! address, no NAK, silence for clients that are not PXE clients and for
//! unknown MACs. REQUESTs to the other server teach the timeline which
//! address a reserved MAC took (option 50, or ciaddr on port 4011).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bootlab_boot::decision::ARM64_LOADER;
use bootlab_boot::options::{self, OptionValue, PlannedOption};
use bootlab_boot::{BootDecision, decide};
use bootlab_inventory::{DhcpMode, HostRef, Inventory, MacAddr, Pool};
use dhcproto::v4::{DhcpOption, MessageType};
use ipnet::Ipv4Net;

use crate::leases::{LeaseRecord, LeaseTable, RecordKind};
use crate::packet::{EncodedOption, Reply, Request, code};
use bootlab_netio::{PeerLimiter, Rate};

/// Tunables that are not in the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Global lease cap: pool addresses tracked (leases, expired ones
    /// included, plus outstanding offers). At the cap, only addresses whose
    /// lease expired are handed out again.
    pub max_leases: usize,
    /// Requests a MAC may send at once.
    pub per_mac_burst: u32,
    /// Requests a MAC may send per second, sustained.
    pub per_mac_per_sec: u32,
    /// MACs the rate limiter tracks at most.
    pub rate_table_size: usize,
    /// How long an offered address stays held for its client.
    pub offer_hold: Duration,
    /// How long a declined pool address is quarantined.
    pub decline_quarantine: Duration,
    /// DECLINEs accepted per client per quarantine period.
    pub max_declines_per_client: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_leases: 262_144,
            per_mac_burst: 16,
            per_mac_per_sec: 4,
            rate_table_size: 65_536,
            offer_hold: Duration::from_secs(30),
            decline_quarantine: Duration::from_secs(600),
            max_declines_per_client: 4,
        }
    }
}

/// Where a reply goes (RFC 2131 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyTo {
    /// To the relay agent at `giaddr`, server port 67.
    Relay(Ipv4Addr),
    /// Unicast to the client's `ciaddr`, port 68.
    Client(Ipv4Addr),
    /// Unicast to `yiaddr` at the client's hardware address, port 68: the
    /// client has no address yet and did not ask for a broadcast. The
    /// server writes the neighbour entry first (the client cannot answer
    /// ARP yet); where it cannot, it broadcasts.
    Hardware {
        /// The offered or acked address.
        ip: Ipv4Addr,
        /// The client's hardware address.
        mac: MacAddr,
    },
    /// Broadcast on the link, port 68 (the broadcast bit, a NAK, or no
    /// address in the reply).
    Broadcast,
    /// Broadcast on the link to the port the request came from: proxyDHCP
    /// acks on port 4011. The client has its address but may not answer
    /// ARP for it yet (iPXE applies its settings only when DHCP is done),
    /// and bootlabd sets no ARP entries.
    BroadcastToPeerPort,
}

/// A reply ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// OFFER, ACK or NAK.
    pub msg_type: MessageType,
    /// The datagram.
    pub bytes: Vec<u8>,
    /// Where to.
    pub to: ReplyTo,
    /// Options left out to fit the client's size limit.
    pub dropped_options: Vec<u8>,
}

/// Why a datagram got no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not a readable DHCP request.
    Malformed,
    /// A MAC not in the inventory, and no pool.
    UnknownMac,
    /// The MAC sent too much.
    RateLimited,
    /// The global lease cap is reached.
    LeaseCap,
    /// No free pool address.
    PoolExhausted,
    /// The client chose another server (SELECTING with its server-id).
    OtherServer,
    /// A relay from a subnet we do not serve.
    ForeignSubnet,
    /// DECLINE without matching server-id, requested IP or lease.
    DeclineRefused,
    /// More DECLINEs from this client than allowed.
    DeclineCapped,
    /// RELEASE not from the lease's MAC (or no such lease).
    ReleaseRefused,
    /// A message type a server never receives.
    UnexpectedType,
    /// Option 82 too large to echo.
    OversizedRelayInfo,
    /// A known client whose boot architecture we cannot serve (logged refusal).
    NoLoader,
    /// proxyDHCP: the client is not a PXE client (no option 60
    /// `PXEClient`/`HTTPClient`, no option 93), so the other server alone answers.
    NotPxe,
    /// proxyDHCP: a message only the address-owning server answers
    /// (REQUEST, DECLINE, RELEASE on port 67).
    NotProxied,
}

impl DropReason {
    /// Every reason (for metrics).
    pub const ALL: [Self; 15] = [
        Self::Malformed,
        Self::UnknownMac,
        Self::RateLimited,
        Self::LeaseCap,
        Self::PoolExhausted,
        Self::OtherServer,
        Self::ForeignSubnet,
        Self::DeclineRefused,
        Self::DeclineCapped,
        Self::ReleaseRefused,
        Self::UnexpectedType,
        Self::OversizedRelayInfo,
        Self::NoLoader,
        Self::NotPxe,
        Self::NotProxied,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnknownMac => "unknown_mac",
            Self::RateLimited => "rate_limited",
            Self::LeaseCap => "lease_cap",
            Self::PoolExhausted => "pool_exhausted",
            Self::OtherServer => "other_server",
            Self::ForeignSubnet => "foreign_subnet",
            Self::DeclineRefused => "decline_refused",
            Self::DeclineCapped => "decline_capped",
            Self::ReleaseRefused => "release_refused",
            Self::UnexpectedType => "unexpected_type",
            Self::OversizedRelayInfo => "oversized_option82",
            Self::NoLoader => "no_loader",
            Self::NotPxe => "not_pxe",
            Self::NotProxied => "not_proxied",
        }
    }
}

/// What the timeline should learn once the outcome is carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineEvent {
    /// A DHCP event for a MAC.
    Dhcp {
        /// The client.
        mac: MacAddr,
        /// `discover`, `offer`, `request`, `ack`, `nak`, `decline`, `release`, `inform`.
        kind: &'static str,
        /// Free text.
        detail: String,
    },
    /// `mac` now holds `ip`.
    Bind {
        /// The client.
        mac: MacAddr,
        /// Its address.
        ip: Ipv4Addr,
    },
    /// Nobody holds `ip` any more.
    Unbind {
        /// The address.
        ip: Ipv4Addr,
    },
}

/// The result of handling one datagram.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The message type received, when the datagram parsed.
    pub received: Option<MessageType>,
    /// The client, when the datagram parsed.
    pub mac: Option<MacAddr>,
    /// The transaction id, when the datagram parsed.
    pub xid: Option<u32>,
    /// The reply, if any.
    pub reply: Option<Outgoing>,
    /// A record that must be durable before `reply` is sent.
    pub commit: Option<LeaseRecord>,
    /// Timeline events, to record when the reply goes out.
    pub events: Vec<MachineEvent>,
    /// Why there is no reply (when there is none and that is not the
    /// normal end of a RELEASE or DECLINE).
    pub dropped: Option<DropReason>,
    /// Human-readable reason for logs.
    pub note: Option<String>,
    /// Malformed options the client sent (tolerated).
    pub malformed_options: Vec<u8>,
}

impl Outcome {
    fn drop(reason: DropReason, note: impl Into<String>) -> Self {
        Self {
            dropped: Some(reason),
            note: Some(note.into()),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone)]
struct Reserved {
    ip: Ipv4Addr,
    hostname: String,
    node: Option<usize>,
}

/// What the handler derives from the inventory (recomputed on reload).
#[derive(Debug, Clone)]
struct Config {
    inv: Arc<Inventory>,
    server_ip: Ipv4Addr,
    cidr: Ipv4Net,
    gateway: Ipv4Addr,
    pool: Option<Pool>,
    lease_secs: u64,
    arm64_loader: bool,
}

impl Config {
    /// The reservation of `mac`, from the inventory's index.
    fn reserved(&self, mac: MacAddr) -> Option<Reserved> {
        self.inv.host_by_mac(mac).map(|h| Reserved {
            ip: h.ip,
            hostname: h.name.clone(),
            node: match h.kind {
                HostRef::Node(i) => Some(i),
                HostRef::Services => None,
            },
        })
    }

    fn new(inv: Arc<Inventory>, arm64_loader: bool) -> Self {
        Self {
            server_ip: inv.services().ip,
            cidr: inv.network().cidr,
            gateway: inv.network().gateway,
            pool: inv.network().pool,
            lease_secs: inv.network().lease.as_secs().max(60),
            arm64_loader,
            inv,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Offer {
    ip: Ipv4Addr,
    until_ms: u64,
}

/// Which port a handler answers on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Listener {
    /// The DHCP server port, 67.
    #[default]
    Server,
    /// The PXE boot server port, 4011 (proxyDHCP requests).
    BootServer,
}

/// The PXE boot server port (PXE 2.1: proxyDHCP REQUESTs go here).
pub const BOOT_SERVER_PORT: u16 = 4011;

/// Which REQUEST state the client is in (RFC 2131 4.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestState {
    Selecting,
    InitReboot,
    Renewing,
}

/// The handler's state: inventory-derived config, leases, offers,
/// quarantine and limits.
#[derive(Debug)]
pub struct DhcpHandler {
    config: Config,
    limits: Limits,
    leases: LeaseTable,
    offers: HashMap<MacAddr, Offer>,
    offered: HashMap<Ipv4Addr, MacAddr>,
    declines: HashMap<MacAddr, (u64, u32)>,
    rate: PeerLimiter<MacAddr>,
    cursor: u32,
    exhausted_until_ms: u64,
    calls: u64,
    listener: Listener,
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl DhcpHandler {
    /// A handler for `inv`, starting from `leases` (loaded from the store).
    /// `arm64_loader` says whether `grubnetaa64.efi` is in the assets dir.
    pub fn new(
        inv: Arc<Inventory>,
        leases: LeaseTable,
        arm64_loader: bool,
        limits: Limits,
    ) -> Self {
        let rate = PeerLimiter::new(
            Rate::new(limits.per_mac_burst, f64::from(limits.per_mac_per_sec)),
            limits.rate_table_size,
        );
        Self {
            config: Config::new(inv, arm64_loader),
            limits,
            leases,
            offers: HashMap::new(),
            offered: HashMap::new(),
            declines: HashMap::new(),
            rate,
            cursor: 0,
            exhausted_until_ms: 0,
            calls: 0,
            listener: Listener::Server,
        }
    }

    /// The same handler answering on `listener`'s port.
    pub fn on(mut self, listener: Listener) -> Self {
        self.listener = listener;
        self
    }

    /// Swaps in a reloaded inventory; leases, offers and quarantine stay.
    pub fn set_inventory(&mut self, inv: Arc<Inventory>, arm64_loader: bool) {
        self.config = Config::new(inv, arm64_loader);
        self.exhausted_until_ms = 0;
    }

    /// The live lease table.
    pub fn leases(&self) -> &LeaseTable {
        &self.leases
    }

    /// Sizes of the internal tables (leases, offers, rate limiter, decline
    /// counters), for the flat-memory test.
    pub fn table_sizes(&self) -> [usize; 4] {
        [
            self.leases.len(),
            self.offers.len(),
            self.rate.len(),
            self.declines.len(),
        ]
    }

    /// Handles one datagram received at `now`.
    pub fn handle(&mut self, bytes: &[u8], now: SystemTime) -> Outcome {
        let now_ms = millis(now);
        self.calls += 1;
        if self.calls % 1024 == 0 {
            self.prune(now_ms);
        }
        let req = match Request::parse(bytes) {
            Ok(r) => r,
            Err(e) => return Outcome::drop(DropReason::Malformed, e.to_string()),
        };
        let mut out = self.dispatch(&req, now_ms);
        // RFC 3046: the relay needs its option 82 back. A reply that cannot
        // carry it (the client's size limit leaves no room) is not sent; the
        // lease state it stands for is kept, as if the reply were lost.
        if out
            .reply
            .as_ref()
            .is_some_and(|r| r.dropped_options.contains(&code::RELAY_AGENT_INFO))
        {
            out.reply = None;
            out.events.clear();
            out.dropped = Some(DropReason::OversizedRelayInfo);
            out.note = Some("option 82 does not fit the client's maximum message size".into());
        }
        out.received = Some(req.msg_type);
        out.mac = Some(req.mac);
        out.xid = Some(req.xid);
        out.malformed_options = req.malformed;
        out
    }

    fn dispatch(&mut self, req: &Request, now_ms: u64) -> Outcome {
        if !self.rate.allow(req.mac, now_ms) {
            return Outcome::drop(DropReason::RateLimited, "per-MAC rate limit");
        }
        if req.giaddr != Ipv4Addr::UNSPECIFIED && !self.config.cidr.contains(&req.giaddr) {
            return Outcome::drop(
                DropReason::ForeignSubnet,
                format!("relayed from {} outside {}", req.giaddr, self.config.cidr),
            );
        }
        if req.relay_agent_info().is_some_and(|r| r.len() > 255) {
            return Outcome::drop(
                DropReason::OversizedRelayInfo,
                "option 82 longer than 255 bytes",
            );
        }
        if self.config.inv.network().dhcp == DhcpMode::Proxy {
            return self.proxy(req);
        }
        if self.listener == Listener::BootServer {
            return Outcome::drop(
                DropReason::NotProxied,
                "port 4011 answers only in network.dhcp = \"proxy\"",
            );
        }
        match req.msg_type {
            MessageType::Discover => self.discover(req, now_ms),
            MessageType::Request => self.request(req, now_ms),
            MessageType::Decline => self.decline(req, now_ms),
            MessageType::Release => self.release(req, now_ms),
            MessageType::Inform => self.inform(req),
            other => Outcome::drop(
                DropReason::UnexpectedType,
                format!("{other:?} from a client"),
            ),
        }
    }

    fn prune(&mut self, now_ms: u64) {
        let offered = &mut self.offered;
        self.offers.retain(|_, o| {
            let keep = o.until_ms > now_ms;
            if !keep {
                offered.remove(&o.ip);
            }
            keep
        });
        let window = self.limits.decline_quarantine.as_secs();
        let now_s = now_ms / 1000;
        self.declines
            .retain(|_, (start, _)| now_s.saturating_sub(*start) < window);
    }

    fn describe(&self, req: &Request, decision: &BootDecision) -> String {
        let info = req.client_info();
        let arch = info
            .effective_arch()
            .map_or_else(|| "-".to_owned(), |a| a.to_string());
        let file = decision.file.as_ref().map_or("-", |f| f.as_str());
        // What the firmware sent, as sent (only what it sent): a
        // regression in the decision names the option it came from.
        let mut out = format!("arch={arch} ipxe={} file={file}", info.is_ipxe());
        if let Some(class) = &info.vendor_class {
            out.push_str(&format!(" opt60={class:?}"));
        }
        for c in [
            code::CLIENT_ARCH,
            code::CLIENT_MACHINE_ID,
            options::code::VENDOR_SPECIFIC,
        ] {
            if let Some(v) = req.options.get(c) {
                let hex: String = v.iter().map(|b| format!("{b:02x}")).collect();
                out.push_str(&format!(" opt{c}={hex}"));
            }
        }
        out
    }

    /// proxyDHCP: boot information only (see the module docs).
    fn proxy(&mut self, req: &Request) -> Outcome {
        let reserved = self.config.reserved(req.mac);
        let boot_server = self.listener == Listener::BootServer;
        // Learn the address a reserved MAC took from the other server.
        let learned = match (req.msg_type, boot_server) {
            (MessageType::Request, false) => req
                .requested_ip
                .or((req.ciaddr != Ipv4Addr::UNSPECIFIED).then_some(req.ciaddr)),
            (MessageType::Request | MessageType::Inform, true) => {
                (req.ciaddr != Ipv4Addr::UNSPECIFIED).then_some(req.ciaddr)
            }
            _ => None,
        }
        .filter(|ip| self.config.cidr.contains(ip));
        let mut events = Vec::new();
        if let (Some(ip), Some(_)) = (learned, &reserved) {
            events.push(MachineEvent::Dhcp {
                mac: req.mac,
                kind: "learned",
                detail: format!("ip={ip} (from the client's {:?})", req.msg_type),
            });
            events.push(MachineEvent::Bind { mac: req.mac, ip });
        }
        let silent = |reason, note: &str, events: Vec<MachineEvent>| Outcome {
            dropped: Some(reason),
            note: Some(note.to_owned()),
            events,
            ..Outcome::default()
        };
        let msg_type = match (req.msg_type, boot_server) {
            (MessageType::Discover, false) => MessageType::Offer,
            (MessageType::Request | MessageType::Inform, true) => MessageType::Ack,
            _ => {
                return silent(
                    DropReason::NotProxied,
                    "proxyDHCP: the address-owning server answers this",
                    events,
                );
            }
        };
        let Some(reserved) = reserved else {
            return silent(
                DropReason::UnknownMac,
                "proxyDHCP: not in the inventory",
                events,
            );
        };
        let info = req.client_info();
        if !info.is_netboot() {
            return silent(
                DropReason::NotPxe,
                "proxyDHCP: not a PXE client (no option 60 PXEClient/HTTPClient, no option 93)",
                events,
            );
        }
        let decision = self.decision(req, Some(&reserved));
        if decision.file.is_none() {
            let why = decision.refusal.clone().unwrap_or_default();
            return silent(DropReason::NoLoader, &why, events);
        }
        let detail = self.describe(req, &decision);
        let plan = options::proxy_plan(&self.config.inv, &decision);
        let opts: Vec<EncodedOption> = plan.options.iter().filter_map(encode_planned).collect();
        let reply = Reply {
            msg_type,
            xid: req.xid,
            flags: req.flags,
            ciaddr: req.ciaddr,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: plan.siaddr.unwrap_or(Ipv4Addr::UNSPECIFIED),
            giaddr: req.giaddr,
            chaddr: req.chaddr,
            boot_file: plan.boot_file,
            options: opts,
            mandatory: vec![
                code::SERVER_ID,
                options::code::VENDOR_CLASS,
                options::code::VENDOR_SPECIFIC,
                options::code::BOOT_FILE,
            ],
            parameter_request_list: req.parameter_request_list.clone(),
            max_message_size: req.max_message_size,
        };
        let (bytes, dropped_options) = reply.encode();
        let kind_in = if boot_server {
            "proxy-request"
        } else {
            "discover"
        };
        let kind_out = if boot_server {
            "proxy-ack"
        } else {
            "proxy-offer"
        };
        events.push(MachineEvent::Dhcp {
            mac: req.mac,
            kind: kind_in,
            detail: detail.clone(),
        });
        events.push(MachineEvent::Dhcp {
            mac: req.mac,
            kind: kind_out,
            detail,
        });
        let to = if boot_server && req.giaddr == Ipv4Addr::UNSPECIFIED {
            ReplyTo::BroadcastToPeerPort
        } else {
            destination(req, msg_type, Ipv4Addr::UNSPECIFIED)
        };
        Outcome {
            reply: Some(Outgoing {
                msg_type,
                bytes,
                to,
                dropped_options,
            }),
            events,
            note: decision.note.clone(),
            ..Outcome::default()
        }
    }

    fn decision(&self, req: &Request, reserved: Option<&Reserved>) -> BootDecision {
        let inv = &self.config.inv;
        let node = reserved
            .and_then(|r| r.node)
            .and_then(|i| inv.nodes().get(i));
        let arm64 = self.config.arm64_loader;
        decide(inv, node, &req.client_info(), &|f: &str| {
            f == ARM64_LOADER && arm64
        })
    }

    /// Builds an OFFER or ACK for `yiaddr` (or an INFORM ACK when `yiaddr`
    /// is unspecified).
    fn answer(
        &self,
        req: &Request,
        msg_type: MessageType,
        yiaddr: Ipv4Addr,
        reserved: Option<&Reserved>,
        decision: &BootDecision,
        with_lease: bool,
    ) -> Outgoing {
        let inv = &self.config.inv;
        let hostname = reserved.map(|r| r.hostname.as_str());
        let plan = options::plan(inv, hostname, decision, with_lease);
        let mut opts: Vec<EncodedOption> = plan.options.iter().filter_map(encode_planned).collect();
        if let Some(ri) = req.relay_agent_info() {
            opts.push(EncodedOption::raw(code::RELAY_AGENT_INFO, ri));
        }
        let mut mandatory = vec![code::SERVER_ID, code::RELAY_AGENT_INFO];
        if with_lease {
            mandatory.push(options::code::LEASE_TIME);
        }
        if decision.file.is_some() {
            mandatory.push(options::code::BOOT_FILE);
            mandatory.push(options::code::VENDOR_CLASS);
        }
        let reply = Reply {
            msg_type,
            xid: req.xid,
            flags: req.flags,
            ciaddr: if with_lease && msg_type == MessageType::Offer {
                Ipv4Addr::UNSPECIFIED
            } else {
                req.ciaddr
            },
            yiaddr,
            siaddr: plan.siaddr.unwrap_or(Ipv4Addr::UNSPECIFIED),
            giaddr: req.giaddr,
            chaddr: req.chaddr,
            boot_file: plan.boot_file,
            options: opts,
            mandatory,
            parameter_request_list: req.parameter_request_list.clone(),
            max_message_size: req.max_message_size,
        };
        let (bytes, dropped_options) = reply.encode();
        Outgoing {
            msg_type,
            bytes,
            to: destination(req, msg_type, yiaddr),
            dropped_options,
        }
    }

    fn nak(&self, req: &Request, why: &str) -> Outcome {
        let mut opts = vec![
            EncodedOption::typed(&DhcpOption::ServerIdentifier(self.config.server_ip)),
            EncodedOption::typed(&DhcpOption::Message(why.to_owned())),
        ];
        if let Some(ri) = req.relay_agent_info() {
            opts.push(EncodedOption::raw(code::RELAY_AGENT_INFO, ri));
        }
        let mut flags = req.flags;
        if req.giaddr != Ipv4Addr::UNSPECIFIED {
            // RFC 2131 4.3.2: the relay must broadcast a NAK.
            flags |= 0x8000;
        }
        let reply = Reply {
            msg_type: MessageType::Nak,
            xid: req.xid,
            flags,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: req.giaddr,
            chaddr: req.chaddr,
            boot_file: None,
            options: opts,
            mandatory: vec![code::SERVER_ID, code::RELAY_AGENT_INFO],
            parameter_request_list: Vec::new(),
            max_message_size: req.max_message_size,
        };
        let (bytes, dropped_options) = reply.encode();
        Outcome {
            reply: Some(Outgoing {
                msg_type: MessageType::Nak,
                bytes,
                to: destination(req, MessageType::Nak, Ipv4Addr::UNSPECIFIED),
                dropped_options,
            }),
            events: vec![MachineEvent::Dhcp {
                mac: req.mac,
                kind: "nak",
                detail: why.to_owned(),
            }],
            note: Some(why.to_owned()),
            ..Outcome::default()
        }
    }

    /// True when pool address `ip` may go to `mac` now; `fresh` says the
    /// address has no lease record at all (counts against the cap).
    fn usable(&self, ip: Ipv4Addr, mac: MacAddr, now_ms: u64) -> Option<bool> {
        let c = &self.config;
        let pool = c.pool?;
        let now_s = now_ms / 1000;
        if !pool.contains(ip)
            || !c.cidr.contains(&ip)
            || ip == c.cidr.network()
            || ip == c.cidr.broadcast()
            || ip == c.server_ip
            || ip == c.gateway
            || c.inv.host_by_ip(ip).is_some()
            || self.leases.quarantined(ip, now_s)
        {
            return None;
        }
        let lease = self.leases.by_ip(ip);
        if lease.is_some_and(|l| l.mac != mac && l.until > now_s) {
            return None;
        }
        if let Some(m) = self.offered.get(&ip) {
            if *m != mac
                && self
                    .offers
                    .get(m)
                    .is_some_and(|o| o.ip == ip && o.until_ms > now_ms)
            {
                return None;
            }
        }
        Some(lease.is_none())
    }

    fn at_cap(&self) -> bool {
        self.leases.len() + self.offers.len() >= self.limits.max_leases
    }

    /// The pool address for a DISCOVER from `mac`.
    fn pick_pool_address(&mut self, req: &Request, now_ms: u64) -> Result<Ipv4Addr, DropReason> {
        let mac = req.mac;
        let Some(pool) = self.config.pool else {
            return Err(DropReason::UnknownMac);
        };
        if let Some(l) = self.leases.by_mac(mac) {
            if self.usable(l.ip, mac, now_ms).is_some() {
                return Ok(l.ip);
            }
        }
        if let Some(o) = self.offers.get(&mac) {
            if self.usable(o.ip, mac, now_ms).is_some() {
                return Ok(o.ip);
            }
        }
        let at_cap = self.at_cap();
        if let Some(r) = req.requested_ip {
            match self.usable(r, mac, now_ms) {
                Some(false) => return Ok(r),
                Some(true) if !at_cap => return Ok(r),
                _ => {}
            }
        }
        if now_ms < self.exhausted_until_ms {
            return Err(if at_cap {
                DropReason::LeaseCap
            } else {
                DropReason::PoolExhausted
            });
        }
        let len = pool.len();
        let start = u32::from(pool.start);
        for step in 0..len {
            let idx = (self.cursor.wrapping_add(step)) % len;
            let ip = Ipv4Addr::from(start.wrapping_add(idx));
            match self.usable(ip, mac, now_ms) {
                Some(false) => {
                    self.cursor = idx.wrapping_add(1) % len;
                    return Ok(ip);
                }
                Some(true) if !at_cap => {
                    self.cursor = idx.wrapping_add(1) % len;
                    return Ok(ip);
                }
                _ => {}
            }
        }
        // Nothing free: do not rescan the whole pool for every packet of a flood.
        self.exhausted_until_ms = now_ms + 1000;
        Err(if at_cap {
            DropReason::LeaseCap
        } else {
            DropReason::PoolExhausted
        })
    }

    fn hold_offer(&mut self, mac: MacAddr, ip: Ipv4Addr, now_ms: u64) {
        let until_ms =
            now_ms + u64::try_from(self.limits.offer_hold.as_millis()).unwrap_or(u64::MAX);
        if let Some(old) = self.offers.insert(mac, Offer { ip, until_ms }) {
            if old.ip != ip && self.offered.get(&old.ip) == Some(&mac) {
                self.offered.remove(&old.ip);
            }
        }
        self.offered.insert(ip, mac);
    }

    fn forget_offer(&mut self, mac: MacAddr) {
        if let Some(o) = self.offers.remove(&mac) {
            if self.offered.get(&o.ip) == Some(&mac) {
                self.offered.remove(&o.ip);
            }
        }
    }

    fn discover(&mut self, req: &Request, now_ms: u64) -> Outcome {
        let reserved = self.config.reserved(req.mac);
        let ip = match &reserved {
            Some(r) => r.ip,
            None => match self.pick_pool_address(req, now_ms) {
                Ok(ip) => ip,
                Err(reason) => return Outcome::drop(reason, "no address to offer"),
            },
        };
        let decision = self.decision(req, reserved.as_ref());
        if reserved.is_none() {
            self.hold_offer(req.mac, ip, now_ms);
        }
        let detail = self.describe(req, &decision);
        let reply = self.answer(
            req,
            MessageType::Offer,
            ip,
            reserved.as_ref(),
            &decision,
            true,
        );
        Outcome {
            reply: Some(reply),
            events: vec![
                MachineEvent::Dhcp {
                    mac: req.mac,
                    kind: "discover",
                    detail: detail.clone(),
                },
                MachineEvent::Dhcp {
                    mac: req.mac,
                    kind: "offer",
                    detail: format!("ip={ip} {detail}"),
                },
            ],
            note: decision.refusal.clone().or_else(|| decision.note.clone()),
            ..Outcome::default()
        }
    }

    fn request(&mut self, req: &Request, now_ms: u64) -> Outcome {
        let zero = Ipv4Addr::UNSPECIFIED;
        let (state, target) = match (req.server_id, req.requested_ip, req.ciaddr) {
            (Some(sid), _, _) if sid != self.config.server_ip => {
                self.forget_offer(req.mac);
                return Outcome::drop(
                    DropReason::OtherServer,
                    format!("client chose server {sid}"),
                );
            }
            (Some(_), Some(ip), _) => (RequestState::Selecting, ip),
            (Some(_), None, ci) if ci != zero => (RequestState::Selecting, ci),
            (None, _, ci) if ci != zero => (RequestState::Renewing, ci),
            (None, Some(ip), _) => (RequestState::InitReboot, ip),
            _ => {
                return Outcome::drop(
                    DropReason::Malformed,
                    "REQUEST without requested IP or ciaddr",
                );
            }
        };
        let reserved = self.config.reserved(req.mac);
        if reserved.is_none() && self.config.pool.is_none() {
            return Outcome::drop(DropReason::UnknownMac, "not in the inventory and no pool");
        }
        let mut events = vec![MachineEvent::Dhcp {
            mac: req.mac,
            kind: "request",
            detail: format!("ip={target} state={state:?}"),
        }];
        let verdict: Result<(), String> = if !self.config.cidr.contains(&target) {
            Err(format!("{target} is not on {}", self.config.cidr))
        } else if let Some(r) = &reserved {
            if r.ip == target {
                Ok(())
            } else {
                Err(format!("reserved address is {}", r.ip))
            }
        } else {
            let mac = req.mac;
            let has_lease = self.leases.by_mac(mac).is_some_and(|l| l.ip == target);
            let has_offer = self.offers.get(&mac).is_some_and(|o| o.ip == target);
            match self.usable(target, mac, now_ms) {
                Some(_) if has_lease || has_offer => Ok(()),
                Some(false) => Ok(()),
                Some(true) if !self.at_cap() => Ok(()),
                Some(true) => {
                    return Outcome::drop(DropReason::LeaseCap, "lease cap reached");
                }
                None => Err(format!("{target} is not available to this client")),
            }
        };
        if let Err(why) = verdict {
            let mut out = self.nak(req, &why);
            events.append(&mut out.events);
            out.events = events;
            return out;
        }
        let record = LeaseRecord {
            kind: RecordKind::Lease,
            ip: target,
            mac: req.mac,
            until: now_ms / 1000 + self.config.lease_secs,
        };
        self.leases.apply(&record);
        self.forget_offer(req.mac);
        let decision = self.decision(req, reserved.as_ref());
        let detail = self.describe(req, &decision);
        let reply = self.answer(
            req,
            MessageType::Ack,
            target,
            reserved.as_ref(),
            &decision,
            true,
        );
        events.push(MachineEvent::Dhcp {
            mac: req.mac,
            kind: "ack",
            detail,
        });
        events.push(MachineEvent::Bind {
            mac: req.mac,
            ip: target,
        });
        Outcome {
            reply: Some(reply),
            commit: Some(record),
            events,
            note: decision.refusal.clone().or_else(|| decision.note.clone()),
            ..Outcome::default()
        }
    }

    fn decline(&mut self, req: &Request, now_ms: u64) -> Outcome {
        let now_s = now_ms / 1000;
        if req.server_id != Some(self.config.server_ip) {
            return Outcome::drop(DropReason::DeclineRefused, "DECLINE without our server-id");
        }
        let Some(ip) = req.requested_ip else {
            return Outcome::drop(DropReason::DeclineRefused, "DECLINE without requested IP");
        };
        let reserved = self.config.inv.host_by_mac(req.mac).map(|r| r.ip);
        let holds = self.leases.by_ip(ip).is_some_and(|l| l.mac == req.mac)
            || self.offers.get(&req.mac).is_some_and(|o| o.ip == ip)
            || reserved == Some(ip);
        if !holds {
            return Outcome::drop(
                DropReason::DeclineRefused,
                format!("{ip} is not this client's"),
            );
        }
        let window = self.limits.decline_quarantine.as_secs();
        let entry = self.declines.entry(req.mac).or_insert((now_s, 0));
        if now_s.saturating_sub(entry.0) >= window {
            *entry = (now_s, 0);
        }
        if entry.1 >= self.limits.max_declines_per_client {
            return Outcome::drop(
                DropReason::DeclineCapped,
                "too many DECLINEs from this client",
            );
        }
        entry.1 += 1;
        let mut events = vec![MachineEvent::Dhcp {
            mac: req.mac,
            kind: "decline",
            detail: format!("ip={ip}"),
        }];
        if reserved == Some(ip) {
            // The inventory's address is in conflict; it stays the node's.
            return Outcome {
                events,
                note: Some(format!(
                    "reserved address {ip} declined: address conflict on the lab network"
                )),
                ..Outcome::default()
            };
        }
        let record = LeaseRecord {
            kind: RecordKind::Decline,
            ip,
            mac: req.mac,
            until: now_s + window,
        };
        self.leases.apply(&record);
        self.forget_offer(req.mac);
        events.push(MachineEvent::Unbind { ip });
        Outcome {
            commit: Some(record),
            events,
            note: Some(format!("{ip} quarantined for {window}s")),
            ..Outcome::default()
        }
    }

    fn release(&mut self, req: &Request, now_ms: u64) -> Outcome {
        let now_s = now_ms / 1000;
        if req.server_id.is_some_and(|s| s != self.config.server_ip) {
            return Outcome::drop(DropReason::ReleaseRefused, "RELEASE for another server");
        }
        let ip = req.ciaddr;
        let ok = self
            .leases
            .by_ip(ip)
            .is_some_and(|l| l.mac == req.mac && l.until > now_s);
        if !ok {
            return Outcome::drop(
                DropReason::ReleaseRefused,
                format!("{ip} is not leased to this MAC"),
            );
        }
        let record = LeaseRecord {
            kind: RecordKind::Release,
            ip,
            mac: req.mac,
            until: now_s,
        };
        self.leases.apply(&record);
        Outcome {
            commit: Some(record),
            events: vec![
                MachineEvent::Dhcp {
                    mac: req.mac,
                    kind: "release",
                    detail: format!("ip={ip}"),
                },
                MachineEvent::Unbind { ip },
            ],
            ..Outcome::default()
        }
    }

    fn inform(&mut self, req: &Request) -> Outcome {
        let reserved = self.config.reserved(req.mac);
        if reserved.is_none() && self.config.pool.is_none() {
            return Outcome::drop(DropReason::UnknownMac, "not in the inventory and no pool");
        }
        if req.ciaddr == Ipv4Addr::UNSPECIFIED {
            return Outcome::drop(DropReason::Malformed, "INFORM without ciaddr");
        }
        if !self.config.cidr.contains(&req.ciaddr) {
            return Outcome::drop(
                DropReason::ForeignSubnet,
                format!("{} is not on our network", req.ciaddr),
            );
        }
        let decision = self.decision(req, reserved.as_ref());
        let reply = self.answer(
            req,
            MessageType::Ack,
            Ipv4Addr::UNSPECIFIED,
            reserved.as_ref(),
            &decision,
            false,
        );
        Outcome {
            reply: Some(reply),
            events: vec![MachineEvent::Dhcp {
                mac: req.mac,
                kind: "inform",
                detail: format!("ciaddr={}", req.ciaddr),
            }],
            ..Outcome::default()
        }
    }
}

/// The broadcast bit of `flags` (RFC 2131 2, figure 2).
const BROADCAST_FLAG: u16 = 0x8000;

/// RFC 2131 4.1: relay first; NAKs are broadcast; a client with ciaddr is
/// unicast there; a client that set the broadcast bit (or a reply without
/// an address) is broadcast; otherwise unicast to `yiaddr` at `chaddr`.
fn destination(req: &Request, msg_type: MessageType, yiaddr: Ipv4Addr) -> ReplyTo {
    if req.giaddr != Ipv4Addr::UNSPECIFIED {
        ReplyTo::Relay(req.giaddr)
    } else if msg_type == MessageType::Nak {
        ReplyTo::Broadcast
    } else if req.ciaddr != Ipv4Addr::UNSPECIFIED {
        ReplyTo::Client(req.ciaddr)
    } else if req.flags & BROADCAST_FLAG != 0 || yiaddr == Ipv4Addr::UNSPECIFIED {
        ReplyTo::Broadcast
    } else {
        ReplyTo::Hardware {
            ip: yiaddr,
            mac: req.mac,
        }
    }
}

/// Encodes a planned option with dhcproto's typed encoder.
fn encode_planned(p: &PlannedOption) -> Option<EncodedOption> {
    use options::code as c;
    let typed = match (&p.value, p.code) {
        (OptionValue::Ip(ip), c::SUBNET_MASK) => DhcpOption::SubnetMask(*ip),
        (OptionValue::Ip(ip), c::BROADCAST) => DhcpOption::BroadcastAddr(*ip),
        (OptionValue::Ip(ip), c::SERVER_ID) => DhcpOption::ServerIdentifier(*ip),
        (OptionValue::Ips(ips), c::ROUTER) => DhcpOption::Router(ips.clone()),
        (OptionValue::Ips(ips), c::DNS) => DhcpOption::DomainNameServer(ips.clone()),
        (OptionValue::Text(t), c::HOSTNAME) => DhcpOption::Hostname(t.clone()),
        (OptionValue::Text(t), c::DOMAIN_NAME) => DhcpOption::DomainName(t.clone()),
        (OptionValue::U32(n), c::LEASE_TIME) => DhcpOption::AddressLeaseTime(*n),
        (OptionValue::U32(n), c::RENEWAL) => DhcpOption::Renewal(*n),
        (OptionValue::U32(n), c::REBINDING) => DhcpOption::Rebinding(*n),
        (OptionValue::Text(t), c::VENDOR_CLASS) => {
            DhcpOption::ClassIdentifier(t.as_bytes().to_vec())
        }
        (OptionValue::Text(t), c::TFTP_SERVER) => DhcpOption::TFTPServerName(t.as_bytes().to_vec()),
        (OptionValue::Text(t), c::BOOT_FILE) => DhcpOption::BootfileName(t.as_bytes().to_vec()),
        (OptionValue::Domains(d), c::DOMAIN_SEARCH) => {
            let names: Result<Vec<dhcproto::Name>, _> = d
                .iter()
                .map(|n| dhcproto::Name::from_ascii(format!("{n}.")))
                .collect();
            DhcpOption::DomainSearch(names.ok()?)
        }
        // Anything else: raw bytes.
        (OptionValue::Ip(ip), code) => return Some(EncodedOption::raw(code, &ip.octets())),
        (OptionValue::Ips(ips), code) => {
            let b: Vec<u8> = ips.iter().flat_map(|i| i.octets()).collect();
            return Some(EncodedOption::raw(code, &b));
        }
        (OptionValue::U32(n), code) => return Some(EncodedOption::raw(code, &n.to_be_bytes())),
        (OptionValue::Text(t), code) => return Some(EncodedOption::raw(code, t.as_bytes())),
        (OptionValue::Bytes(b), code) => return Some(EncodedOption::raw(code, b)),
        (OptionValue::Domains(_), _) => return None,
    };
    Some(EncodedOption::typed(&typed))
}
