//! The ruleset as data: what `table inet bootlab` should contain.
//!
//! These types are deliberately small: they model exactly the matches and
//! statements bootlab's policies use, so both renderers (nft syntax in
//! [`crate::render`], the JSON batch in [`crate::batch`]) stay total and the
//! golden tests can compare plain text.

use std::net::Ipv4Addr;

use bootlab_inventory::MacAddr;
use ipnet::Ipv4Net;

/// The only table bootlab touches.
pub const TABLE_NAME: &str = "bootlab";

/// Name of the set the DNS forwarder fills (isolated mode, services VM).
pub const LEARNED_SET: &str = "learned_destinations";

/// Name of the set the packet path fills with refused endpoints
/// (destination address . protocol . port), so `bootlab status` can say what
/// an install tried to reach.
pub const DENIED_SET: &str = "denied_destinations";

/// How long a refused endpoint stays listed after its last refused packet.
pub const DENIED_SET_TIMEOUT_SECS: u32 = 3600;

/// At most this many refused endpoints are remembered (the kernel stops
/// adding when full; the drop still happens and is still counted).
pub const DENIED_SET_SIZE: u32 = 4096;

/// Everything `table inet bootlab` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// Named counters (state kept across re-applies).
    pub counters: Vec<NamedCounter>,
    /// Named address sets (elements kept across re-applies).
    pub sets: Vec<AddressSet>,
    /// Chains, base chains first.
    pub chains: Vec<Chain>,
}

impl Ruleset {
    /// The chain called `name`.
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }

    /// True when the set `name` is part of this ruleset.
    pub fn has_set(&self, name: &str) -> bool {
        self.sets.iter().any(|s| s.name == name)
    }
}

/// A named counter: what one kind of denied flow adds up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedCounter {
    /// The nftables object name (also the `counter` label in /metrics).
    pub name: String,
    /// What it counts, for humans (`egress show`, metric help).
    pub description: String,
}

/// A named set of addresses (elements kept across re-applies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressSet {
    /// The set's name.
    pub name: String,
    /// What it holds.
    pub kind: SetKind,
}

/// The two kinds of set bootlab keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetKind {
    /// IPv4 addresses, each with its own timeout (filled from user space:
    /// DNS-learned destinations).
    Addresses,
    /// `ipv4_addr . inet_proto . inet_service`, filled by the packet path
    /// (`update @set`), each element expiring [`DENIED_SET_TIMEOUT_SECS`]
    /// after its last hit, at most [`DENIED_SET_SIZE`] elements.
    Endpoints,
}

impl SetKind {
    /// The key type as nft prints it.
    pub fn key_type(self) -> &'static str {
        match self {
            Self::Addresses => "ipv4_addr",
            Self::Endpoints => "ipv4_addr . inet_proto . inet_service",
        }
    }
}

/// A chain; base chains have a [`Hook`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Name.
    pub name: String,
    /// Hook, type, priority and policy; `None` for a regular (jump) chain.
    pub hook: Option<Hook>,
    /// Rules in order.
    pub rules: Vec<Rule>,
}

/// How a base chain attaches to the netfilter hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hook {
    /// filter or nat.
    pub kind: ChainKind,
    /// Which hook.
    pub point: HookPoint,
    /// Priority (lower runs first). `filter` is 0, `srcnat` is 100.
    pub priority: i32,
    /// Verdict for packets no rule decided.
    pub policy: Verdict,
}

/// The chain type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainKind {
    /// `type filter`.
    Filter,
    /// `type nat`.
    Nat,
}

/// The netfilter hook a base chain is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPoint {
    /// Packets for this machine.
    Input,
    /// Packets routed (or, with br_netfilter, bridged) through this machine.
    Forward,
    /// Packets leaving this machine (NAT).
    Postrouting,
}

/// accept or drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `accept`
    Accept,
    /// `drop`
    Drop,
}

/// One rule: all matches must hold, then the counter (if any) counts and the
/// action runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Conditions, in order.
    pub matches: Vec<Match>,
    /// Named counter to bump when the rule fires.
    pub counter: Option<String>,
    /// What happens to the packet.
    pub action: Action,
    /// Why the rule exists (shown by `nft list` and `egress show`).
    pub comment: Option<String>,
}

impl Rule {
    /// A rule with these matches and action, no counter, no comment.
    pub fn new(matches: Vec<Match>, action: Action) -> Self {
        Self {
            matches,
            counter: None,
            action,
            comment: None,
        }
    }

    /// The same rule with a comment.
    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }

    /// The same rule counting into the named counter.
    pub fn counted(mut self, counter: impl Into<String>) -> Self {
        self.counter = Some(counter.into());
        self
    }
}

/// Connection tracking states bootlab matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtState {
    /// Part of a known connection.
    Established,
    /// Related to a known connection (ICMP errors, FTP data...).
    Related,
}

impl CtState {
    /// The nft keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Established => "established",
            Self::Related => "related",
        }
    }
}

/// A packet condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// `iifname "x"` (or `!=` when `negated`).
    InInterface {
        /// Interface name.
        name: String,
        /// Match when the name differs.
        negated: bool,
    },
    /// `oifname "x"` (or `!=`).
    OutInterface {
        /// Interface name.
        name: String,
        /// Match when the name differs.
        negated: bool,
    },
    /// `ct state` is one of these.
    CtState(Vec<CtState>),
    /// `ether saddr <mac>`.
    EtherSource(MacAddr),
    /// `ip saddr <networks>` (normalised: sorted, merged).
    IpSource(Vec<Ipv4Net>),
    /// `ip daddr <networks>` (normalised: sorted, merged).
    IpDestination(Vec<Ipv4Net>),
    /// `ip daddr @<set>`.
    IpDestinationInSet(String),
    /// `udp sport <port>`.
    UdpSourcePort(u16),
    /// `udp dport <port>`.
    UdpDestinationPort(u16),
    /// `tcp dport <port>`.
    TcpDestinationPort(u16),
    /// `icmp type echo-request`.
    IcmpEchoRequest,
    /// `meta l4proto ipv6-icmp` (neighbour discovery must pass).
    Icmpv6,
    /// `meta l4proto { tcp, udp }`.
    TcpOrUdp,
}

/// What a rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Final verdict.
    Verdict(Verdict),
    /// `jump <chain>`.
    Jump(String),
    /// `masquerade` (nat chains).
    Masquerade,
    /// `update @<set> { ip daddr . meta l4proto . th dport }`: remember the
    /// endpoint and go on with the next rule.
    RecordEndpoint(String),
}

/// Sorts, de-duplicates and merges networks so nft accepts them in one
/// anonymous interval set (overlaps are an error there) and lists them in
/// the order it prints them.
pub fn normalise_networks(nets: &[Ipv4Net]) -> Vec<Ipv4Net> {
    let trunc: Vec<Ipv4Net> = nets.iter().map(|n| n.trunc()).collect();
    let mut merged = Ipv4Net::aggregate(&trunc);
    merged.sort();
    merged
}

/// A single host as a network.
pub fn host(ip: Ipv4Addr) -> Ipv4Net {
    Ipv4Net::from(ip)
}
