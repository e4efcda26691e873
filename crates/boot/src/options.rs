//! The DHCP options a reply carries, as values. The dhcp crate encodes them
//! (honouring option 55's order and 57's size); `bootlab explain` prints them.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use bootlab_inventory::Inventory;

use crate::decision::{BootDecision, BootFile};

/// An option's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionValue {
    /// One address.
    Ip(Ipv4Addr),
    /// Several addresses.
    Ips(Vec<Ipv4Addr>),
    /// A 32-bit number (seconds).
    U32(u32),
    /// Text.
    Text(String),
    /// Domain names (RFC 3397 encoding for option 119).
    Domains(Vec<String>),
    /// Raw bytes (encapsulated options such as PXE's option 43).
    Bytes(Vec<u8>),
}

impl fmt::Display for OptionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Ips(v) => {
                let s: Vec<String> = v.iter().map(ToString::to_string).collect();
                f.write_str(&s.join(", "))
            }
            Self::U32(n) => write!(f, "{n}"),
            Self::Text(t) => write!(f, "{t:?}"),
            Self::Domains(d) => f.write_str(&d.join(", ")),
            Self::Bytes(b) => {
                let hex: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
                f.write_str(&hex.join(" "))
            }
        }
    }
}

/// One option of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedOption {
    /// Option code.
    pub code: u8,
    /// Its name.
    pub name: &'static str,
    /// Its value.
    pub value: OptionValue,
}

/// What a reply to one client says, besides the message type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyPlan {
    /// `siaddr` (next server): the services node when a TFTP file is named.
    pub siaddr: Option<Ipv4Addr>,
    /// The boot file name (`file` field / option 67).
    pub boot_file: Option<String>,
    /// Options, in the server's preferred order (the encoder reorders them
    /// per option 55).
    pub options: Vec<PlannedOption>,
}

/// Option codes the plan uses.
pub mod code {
    /// Subnet mask.
    pub const SUBNET_MASK: u8 = 1;
    /// Router.
    pub const ROUTER: u8 = 3;
    /// Domain name servers.
    pub const DNS: u8 = 6;
    /// Host name.
    pub const HOSTNAME: u8 = 12;
    /// Domain name.
    pub const DOMAIN_NAME: u8 = 15;
    /// Broadcast address.
    pub const BROADCAST: u8 = 28;
    /// NTP servers (RFC 2132 8.3).
    pub const NTP_SERVERS: u8 = 42;
    /// Lease time.
    pub const LEASE_TIME: u8 = 51;
    /// Server identifier.
    pub const SERVER_ID: u8 = 54;
    /// Renewal time (T1).
    pub const RENEWAL: u8 = 58;
    /// Rebinding time (T2).
    pub const REBINDING: u8 = 59;
    /// Vendor-specific information (PXE: encapsulated PXE options).
    pub const VENDOR_SPECIFIC: u8 = 43;
    /// Vendor class identifier.
    pub const VENDOR_CLASS: u8 = 60;
    /// TFTP server name.
    pub const TFTP_SERVER: u8 = 66;
    /// Boot file name.
    pub const BOOT_FILE: u8 = 67;
    /// Domain search list.
    pub const DOMAIN_SEARCH: u8 = 119;
}

/// Option 43 of a proxyDHCP answer: PXE sub-option 6 (PXE_DISCOVERY_CONTROL)
/// = 8, "boot the file named in this packet; no boot server discovery, no
/// menu" (PXE 2.1, table 2-1), then the end tag.
pub const PXE_DISCOVERY_CONTROL_BOOTFILE: [u8; 4] = [6, 1, 8, 255];

/// The plan for a proxyDHCP answer (PXE 2.1 "ProxyDHCP"; RFC 4578): an
/// offer on port 67 or an ack on port 4011 that carries the boot
/// information only. No address, no lease, no router or DNS: another DHCP
/// server owns those. Option 60 says `PXEClient` (`HTTPClient` for UEFI HTTP
/// boot), which is what makes firmware take it as a proxy answer.
pub fn proxy_plan(inv: &Inventory, decision: &BootDecision) -> ReplyPlan {
    let mut options = vec![PlannedOption {
        code: code::SERVER_ID,
        name: "server-identifier",
        value: OptionValue::Ip(inv.services().ip),
    }];
    let class = if decision.echo_http_client {
        "HTTPClient"
    } else {
        "PXEClient"
    };
    options.push(PlannedOption {
        code: code::VENDOR_CLASS,
        name: "vendor-class-identifier",
        value: OptionValue::Text(class.into()),
    });
    if !decision.echo_http_client {
        options.push(PlannedOption {
            code: code::VENDOR_SPECIFIC,
            name: "vendor-encapsulated-options",
            value: OptionValue::Bytes(PXE_DISCOVERY_CONTROL_BOOTFILE.to_vec()),
        });
    }
    let boot_file = decision.file.as_ref().map(|f| f.as_str().to_owned());
    if let Some(f) = &decision.file {
        options.push(PlannedOption {
            code: code::BOOT_FILE,
            name: "bootfile-name",
            value: OptionValue::Text(f.as_str().to_owned()),
        });
    }
    ReplyPlan {
        // Always the next server, also with an HTTP URL: iPXE takes a
        // proxyDHCP answer only when it names both a next-server and a
        // boot file (measured: with siaddr 0 the iPXE ROM ignored every
        // ack to its ProxyDHCPREQUEST).
        siaddr: Some(inv.services().ip),
        boot_file,
        options,
    }
}

/// T1 and T2 for a lease: 50% and 87.5%.
pub fn renewal_times(lease: Duration) -> (u32, u32) {
    let secs = u32::try_from(lease.as_secs()).unwrap_or(u32::MAX);
    (secs / 2, (u64::from(secs) * 7 / 8) as u32)
}

/// The plan for a reply to a client that gets `hostname` (None for pool
/// clients). `with_lease` is false for INFORM (no lease times).
pub fn plan(
    inv: &Inventory,
    hostname: Option<&str>,
    decision: &BootDecision,
    with_lease: bool,
) -> ReplyPlan {
    let net = inv.network().cidr;
    let zone = inv.zone();
    let mut options = vec![
        PlannedOption {
            code: code::SERVER_ID,
            name: "server-identifier",
            value: OptionValue::Ip(inv.services().ip),
        },
        PlannedOption {
            code: code::SUBNET_MASK,
            name: "subnet-mask",
            value: OptionValue::Ip(net.netmask()),
        },
        PlannedOption {
            code: code::ROUTER,
            name: "router",
            value: OptionValue::Ips(vec![inv.network().gateway]),
        },
        PlannedOption {
            code: code::DNS,
            name: "domain-name-servers",
            value: OptionValue::Ips(vec![inv.services().ip]),
        },
        PlannedOption {
            code: code::BROADCAST,
            name: "broadcast-address",
            value: OptionValue::Ip(net.broadcast()),
        },
        PlannedOption {
            code: code::DOMAIN_NAME,
            name: "domain-name",
            value: OptionValue::Text(zone.to_owned()),
        },
        PlannedOption {
            code: code::DOMAIN_SEARCH,
            name: "domain-search",
            value: OptionValue::Domains(vec![zone.to_owned()]),
        },
    ];
    if inv.ntp().enable {
        options.push(PlannedOption {
            code: code::NTP_SERVERS,
            name: "ntp-servers",
            value: OptionValue::Ips(vec![inv.services().ip]),
        });
    }
    if let Some(h) = hostname {
        options.push(PlannedOption {
            code: code::HOSTNAME,
            name: "host-name",
            value: OptionValue::Text(h.to_owned()),
        });
    }
    if with_lease {
        let (t1, t2) = renewal_times(inv.network().lease);
        let lease = u32::try_from(inv.network().lease.as_secs()).unwrap_or(u32::MAX);
        options.push(PlannedOption {
            code: code::LEASE_TIME,
            name: "lease-time",
            value: OptionValue::U32(lease),
        });
        options.push(PlannedOption {
            code: code::RENEWAL,
            name: "renewal-time",
            value: OptionValue::U32(t1),
        });
        options.push(PlannedOption {
            code: code::REBINDING,
            name: "rebinding-time",
            value: OptionValue::U32(t2),
        });
    }
    let mut siaddr = None;
    let boot_file = decision.file.as_ref().map(|f| f.as_str().to_owned());
    if let Some(f) = &decision.file {
        if matches!(f, BootFile::Tftp(_)) {
            siaddr = Some(inv.services().ip);
            options.push(PlannedOption {
                code: code::TFTP_SERVER,
                name: "tftp-server-name",
                value: OptionValue::Text(inv.services().ip.to_string()),
            });
        }
        options.push(PlannedOption {
            code: code::BOOT_FILE,
            name: "bootfile-name",
            value: OptionValue::Text(f.as_str().to_owned()),
        });
    }
    if decision.echo_http_client {
        options.push(PlannedOption {
            code: code::VENDOR_CLASS,
            name: "vendor-class-identifier",
            value: OptionValue::Text("HTTPClient".into()),
        });
    }
    ReplyPlan {
        siaddr,
        boot_file,
        options,
    }
}
