//! The two policies, as pure functions from the inventory to a [`Ruleset`].
//!
//! * [`hypervisor_ruleset`]: `network.mode = "nat"`, applied on the hypervisor
//!   by the host tool. Packets forwarded from the lab bridge to any other
//!   interface are dropped unless they belong to a known connection, come from
//!   an `allow_hosts` machine (its MAC and address together) or go to an
//!   `allow_cidrs` network. Traffic that stays on the bridge is never matched
//!   (`oifname != bridge`), so `br_netfilter` cannot make us break the lab.
//!   The chain runs at priority `filter - 10`, before libvirt's own chains; a
//!   drop in any base chain is final.
//! * [`services_ruleset`]: applied by bootlabd on the services VM when
//!   `services.firewall = true`: an input filter always (DHCP by interface,
//!   DNS/TFTP/HTTP/SSH from the lab subnet, the rest dropped), and when the
//!   services VM is the lab's gateway (uplink set, `gateway = services.ip`)
//!   forward rules (lab -> uplink only to `allow_cidrs`, to addresses in the
//!   DNS-learned set and from `allow_hosts`), plus masquerade on the uplink.
//!
//! Every denial ends in a named counter so `/metrics` and `bootlab status`
//! can show what was refused.

use bootlab_inventory::{Inventory, MacAddr, NetworkMode};

use crate::ruleset::{
    Action, AddressSet, Chain, ChainKind, CtState, DENIED_SET, Hook, HookPoint, LEARNED_SET, Match,
    NamedCounter, Rule, Ruleset, SetKind, Verdict, host, normalise_networks,
};

/// Counter: lab packets to the outside that the policy refused.
pub const COUNTER_LAB_EGRESS_DENIED: &str = "lab_egress_denied";
/// Counter: packets to the services VM itself that the input filter refused.
pub const COUNTER_SERVICES_INPUT_DENIED: &str = "services_input_denied";
/// Counter: other forwarded packets (not lab -> uplink) the gateway refused.
pub const COUNTER_FORWARD_DENIED: &str = "forward_denied";

/// The hypervisor's forward chain runs this much before `filter` (0), i.e.
/// before libvirt's chains.
pub const HYPERVISOR_FORWARD_PRIORITY: i32 = -10;

/// SSH, always open from the lab on the services VM.
pub const SSH_PORT: u16 = 22;

/// Why a policy cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The hypervisor rule only exists in nat mode.
    #[error(
        "the hypervisor egress rule is for network.mode = \"nat\"; this lab is in {0} mode, where the services VM enforces egress (bootlabd with services.firewall = true)"
    )]
    NotNatMode(&'static str),
    /// The services VM is the gateway but no uplink interface was given.
    #[error(
        "the services VM is the lab's gateway but its uplink interface (MAC {0}) was not found"
    )]
    MissingUplinkInterface(MacAddr),
    /// An interface name nft would not accept (or that could not be a Linux one).
    #[error(
        "{0:?} is not a usable interface name (1-15 printable ASCII bytes, no '/', ':', '\"', '\\\\' or spaces)"
    )]
    BadInterfaceName(String),
    /// The uplink and the lab interface are the same device.
    #[error("the uplink interface {0:?} is also the lab interface")]
    UplinkIsLab(String),
}

/// The services VM's interface names, resolved at run time (the inventory
/// names them by MAC). See [`crate::interfaces`] for discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicesInterfaces {
    /// The NIC on the lab network (`services.interface`, or the one with
    /// `services.mac`).
    pub lab: String,
    /// The NIC with `services.uplink.mac`, when there is an uplink.
    pub uplink: Option<String>,
}

/// True when the services VM is the lab's gateway: it has an uplink and
/// `network.gateway = services.ip` (isolated mode always; bridge mode may).
pub fn services_is_gateway(inv: &Inventory) -> bool {
    inv.services().uplink.is_some() && inv.network().gateway == inv.services().ip
}

fn check_ifname(name: &str) -> Result<(), PolicyError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b':' | b'"' | b'\\'));
    if ok {
        Ok(())
    } else {
        Err(PolicyError::BadInterfaceName(name.to_owned()))
    }
}

/// (name, MAC, address) of every `allow_hosts` entry.
fn allowed_hosts(inv: &Inventory) -> Vec<(String, MacAddr, std::net::Ipv4Addr)> {
    inv.egress()
        .allow_hosts
        .iter()
        .filter_map(|h| {
            if *h == inv.services().name {
                Some((h.clone(), inv.services().mac, inv.services().ip))
            } else {
                inv.nodes()
                    .iter()
                    .find(|n| n.name == *h)
                    .map(|n| (h.clone(), n.mac, n.ip))
            }
        })
        .collect()
}

fn iif(name: &str) -> Match {
    Match::InInterface {
        name: name.to_owned(),
        negated: false,
    }
}

fn oif(name: &str) -> Match {
    Match::OutInterface {
        name: name.to_owned(),
        negated: false,
    }
}

fn established() -> Match {
    Match::CtState(vec![CtState::Established, CtState::Related])
}

const ACCEPT: Action = Action::Verdict(Verdict::Accept);
const DROP: Action = Action::Verdict(Verdict::Drop);

/// The rules shared by both egress chains after the connection-state check:
/// allow_hosts (MAC and address), allow_cidrs, the learned set (gateway only),
/// then the counted drop.
fn egress_allow_rules(inv: &Inventory, skip_services: bool, learned: bool) -> Vec<Rule> {
    let mut rules = Vec::new();
    for (name, mac, ip) in allowed_hosts(inv) {
        if skip_services && ip == inv.services().ip {
            continue;
        }
        rules.push(
            Rule::new(
                vec![Match::EtherSource(mac), Match::IpSource(vec![host(ip)])],
                ACCEPT,
            )
            .comment(format!("allow_hosts: {name}")),
        );
    }
    let cidrs = normalise_networks(&inv.egress().allow_cidrs);
    if !cidrs.is_empty() {
        rules.push(Rule::new(vec![Match::IpDestination(cidrs)], ACCEPT).comment("allow_cidrs"));
    }
    if learned {
        rules.push(
            Rule::new(
                vec![Match::IpDestinationInSet(LEARNED_SET.to_owned())],
                ACCEPT,
            )
            .comment("allow_domains: addresses learned from DNS answers"),
        );
    }
    rules.push(
        Rule::new(
            vec![Match::TcpOrUdp],
            Action::RecordEndpoint(DENIED_SET.to_owned()),
        )
        .comment("remember what was refused"),
    );
    rules.push(
        Rule::new(vec![], DROP)
            .counted(COUNTER_LAB_EGRESS_DENIED)
            .comment("everything else leaving the lab"),
    );
    rules
}

fn denied_set() -> AddressSet {
    AddressSet {
        name: DENIED_SET.to_owned(),
        kind: SetKind::Endpoints,
    }
}

/// The hypervisor's ruleset for a nat-mode lab.
pub fn hypervisor_ruleset(inv: &Inventory) -> Result<Ruleset, PolicyError> {
    if inv.network().mode != NetworkMode::Nat {
        return Err(PolicyError::NotNatMode(inv.network().mode.as_str()));
    }
    let bridge = &inv.network().bridge;
    check_ifname(bridge)?;
    let mut egress = vec![Rule::new(vec![established()], ACCEPT)];
    egress.extend(egress_allow_rules(inv, false, false));
    Ok(Ruleset {
        counters: vec![NamedCounter {
            name: COUNTER_LAB_EGRESS_DENIED.to_owned(),
            description: format!(
                "packets from the lab bridge {bridge} to the outside that the egress policy dropped"
            ),
        }],
        sets: vec![denied_set()],
        chains: vec![
            Chain {
                name: "forward".to_owned(),
                hook: Some(Hook {
                    kind: ChainKind::Filter,
                    point: HookPoint::Forward,
                    priority: HYPERVISOR_FORWARD_PRIORITY,
                    policy: Verdict::Accept,
                }),
                rules: vec![
                    Rule::new(
                        vec![
                            iif(bridge),
                            Match::OutInterface {
                                name: bridge.clone(),
                                negated: true,
                            },
                        ],
                        Action::Jump("lab_egress".to_owned()),
                    )
                    .comment("leaving the lab; bridged lab traffic is never matched"),
                ],
            },
            Chain {
                name: "lab_egress".to_owned(),
                hook: None,
                rules: egress,
            },
        ],
    })
}

/// The one address the services VM's admin API is open to: the
/// hypervisor's on the lab network (`network.host_ip`; in nat mode the
/// gateway when it is not set, as the libvirt network gives the host the
/// gateway address then). `None`: no host address, the admin port stays
/// closed.
pub fn admin_source(inv: &Inventory) -> Option<std::net::Ipv4Addr> {
    match inv.network().mode {
        NetworkMode::Nat => Some(inv.network().host_ip.unwrap_or(inv.network().gateway)),
        _ => inv.network().host_ip,
    }
}

/// The services VM's ruleset, or `None` when `services.firewall = false`.
pub fn services_ruleset(
    inv: &Inventory,
    ifaces: &ServicesInterfaces,
) -> Result<Option<Ruleset>, PolicyError> {
    if !inv.services().firewall {
        return Ok(None);
    }
    let lab = ifaces.lab.as_str();
    check_ifname(lab)?;
    let gateway = services_is_gateway(inv);
    let uplink = match (&inv.services().uplink, &ifaces.uplink) {
        (Some(_), Some(name)) => {
            check_ifname(name)?;
            if name == lab {
                return Err(PolicyError::UplinkIsLab(name.clone()));
            }
            Some(name.as_str())
        }
        (Some(u), None) if gateway => return Err(PolicyError::MissingUplinkInterface(u.mac)),
        _ => None,
    };
    let lab_net = vec![inv.network().cidr.trunc()];
    let from_lab = |proto_port: Match| vec![iif(lab), Match::IpSource(lab_net.clone()), proto_port];
    let listen = &inv.services().listen;
    let mut input = vec![
        Rule::new(vec![iif("lo")], ACCEPT),
        Rule::new(vec![established()], ACCEPT),
        Rule::new(
            vec![iif(lab), Match::UdpDestinationPort(listen.dhcp.port())],
            ACCEPT,
        )
        .comment("DHCP, also from 0.0.0.0: matched by interface"),
        Rule::new(
            from_lab(Match::UdpDestinationPort(listen.dns.port())),
            ACCEPT,
        )
        .comment("DNS"),
        Rule::new(
            from_lab(Match::TcpDestinationPort(listen.dns.port())),
            ACCEPT,
        )
        .comment("DNS over TCP"),
        Rule::new(
            from_lab(Match::UdpDestinationPort(listen.tftp.port())),
            ACCEPT,
        )
        .comment("TFTP"),
        Rule::new(
            from_lab(Match::TcpDestinationPort(listen.http.port())),
            ACCEPT,
        )
        .comment("HTTP"),
    ];
    if inv.ntp().enable {
        input.push(
            Rule::new(
                from_lab(Match::UdpDestinationPort(listen.ntp.port())),
                ACCEPT,
            )
            .comment("NTP"),
        );
    }
    for b in inv.balancers() {
        input.push(
            Rule::new(from_lab(Match::TcpDestinationPort(b.listen.port())), ACCEPT)
                .comment(format!("balancer {}", b.name)),
        );
        if let (true, Some(up)) = (gateway, uplink) {
            input.push(
                Rule::new(
                    vec![iif(up), Match::TcpDestinationPort(b.listen.port())],
                    ACCEPT,
                )
                .comment(format!("balancer {} from the uplink", b.name)),
            );
        }
    }
    if let Some(host_ip) = admin_source(inv) {
        input.push(
            Rule::new(
                vec![
                    iif(lab),
                    Match::IpSource(vec![host(host_ip)]),
                    Match::TcpDestinationPort(listen.admin.port()),
                ],
                ACCEPT,
            )
            .comment("admin API, from the hypervisor only"),
        );
    }
    input.extend([
        Rule::new(from_lab(Match::TcpDestinationPort(SSH_PORT)), ACCEPT).comment("SSH"),
        Rule::new(vec![iif(lab), Match::IcmpEchoRequest], ACCEPT).comment("ping"),
        Rule::new(vec![Match::Icmpv6], ACCEPT).comment("IPv6 neighbour discovery"),
    ]);
    if let Some(up) = uplink {
        input.push(
            Rule::new(
                vec![
                    iif(up),
                    Match::UdpSourcePort(67),
                    Match::UdpDestinationPort(68),
                ],
                ACCEPT,
            )
            .comment("the uplink's own DHCP client"),
        );
    }
    input.push(
        Rule::new(vec![], DROP)
            .counted(COUNTER_SERVICES_INPUT_DENIED)
            .comment("everything else"),
    );

    let mut counters = vec![NamedCounter {
        name: COUNTER_SERVICES_INPUT_DENIED.to_owned(),
        description: "packets to the services VM that its input filter dropped".to_owned(),
    }];
    let mut chains = vec![Chain {
        name: "input".to_owned(),
        hook: Some(Hook {
            kind: ChainKind::Filter,
            point: HookPoint::Input,
            priority: 0,
            policy: Verdict::Drop,
        }),
        rules: input,
    }];
    let mut sets = vec![];

    if let (true, Some(up)) = (gateway, uplink) {
        counters.push(NamedCounter {
            name: COUNTER_LAB_EGRESS_DENIED.to_owned(),
            description: format!(
                "packets from the lab ({lab}) to the uplink ({up}) that the egress policy dropped"
            ),
        });
        counters.push(NamedCounter {
            name: COUNTER_FORWARD_DENIED.to_owned(),
            description: "other forwarded packets the services VM dropped".to_owned(),
        });
        sets.push(AddressSet {
            name: LEARNED_SET.to_owned(),
            kind: SetKind::Addresses,
        });
        sets.push(denied_set());
        chains.push(Chain {
            name: "forward".to_owned(),
            hook: Some(Hook {
                kind: ChainKind::Filter,
                point: HookPoint::Forward,
                priority: 0,
                policy: Verdict::Drop,
            }),
            rules: vec![
                Rule::new(vec![established()], ACCEPT),
                Rule::new(
                    vec![iif(lab), oif(up)],
                    Action::Jump("lab_egress".to_owned()),
                )
                .comment("leaving the lab"),
                Rule::new(vec![], DROP)
                    .counted(COUNTER_FORWARD_DENIED)
                    .comment("everything else"),
            ],
        });
        chains.push(Chain {
            name: "lab_egress".to_owned(),
            hook: None,
            rules: egress_allow_rules(inv, true, true),
        });
        chains.push(Chain {
            name: "postrouting".to_owned(),
            hook: Some(Hook {
                kind: ChainKind::Nat,
                point: HookPoint::Postrouting,
                priority: 100,
                policy: Verdict::Accept,
            }),
            rules: vec![
                Rule::new(
                    vec![oif(up), Match::IpSource(lab_net.clone())],
                    Action::Masquerade,
                )
                .comment("the lab leaves with the uplink's address"),
            ],
        });
    }
    Ok(Some(Ruleset {
        counters,
        sets,
        chains,
    }))
}
