//! What the kernel holds now: `nft -j list table inet bootlab`, parsed.
//!
//! Parsed with `serde_json::Value` rather than the `nftables` crate's typed
//! schema on purpose: counter values there are `u32`, and a busy lab passes
//! 4 GiB of denied bytes. Unknown objects and fields are ignored, so newer
//! nft versions that add fields keep working.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::Value;

/// Why a listing could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected `nft -j list` output: {0}")]
pub struct ListingError(pub String);

/// A chain as the kernel has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveChain {
    /// Name.
    pub name: String,
    /// `(type, hook, prio, policy)` for base chains, as nft names them.
    pub hook: Option<LiveHook>,
}

/// A base chain's attachment as nft reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveHook {
    /// `filter`, `nat`, ...
    pub kind: String,
    /// `input`, `forward`, ...
    pub point: String,
    /// Numeric priority.
    pub priority: i64,
    /// `accept` or `drop`.
    pub policy: String,
}

/// A named set as the kernel has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSet {
    /// Name.
    pub name: String,
    /// Key type (`ipv4_addr`; concatenations joined with ` . `).
    pub key_type: String,
    /// Flags, sorted.
    pub flags: Vec<String>,
    /// IPv4 address elements (of an address set).
    pub elements: Vec<LearnedElement>,
    /// `address . protocol . port` elements (of the refused-endpoints set).
    pub endpoints: Vec<DeniedEndpoint>,
}

/// An endpoint the policy refused recently.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeniedEndpoint {
    /// Destination address.
    pub addr: Ipv4Addr,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Destination port.
    pub port: u16,
    /// Time left before it is forgotten (restarts with every refused packet).
    pub expires: Option<Duration>,
}

/// One element of an address set with its timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LearnedElement {
    /// The address.
    pub addr: Ipv4Addr,
    /// The element's timeout, when it has one.
    pub timeout: Option<Duration>,
    /// Time left before it expires, when it has a timeout.
    pub expires: Option<Duration>,
}

/// A named counter's current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterValue {
    /// Counter name.
    pub name: String,
    /// Packets counted.
    pub packets: u64,
    /// Bytes counted.
    pub bytes: u64,
}

/// The objects of `table inet bootlab` that apply and the readers care about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableState {
    /// Chains in listing order.
    pub chains: Vec<LiveChain>,
    /// Named sets.
    pub sets: Vec<LiveSet>,
    /// Named counters.
    pub counters: Vec<CounterValue>,
    /// Number of rules over all chains.
    pub rule_count: usize,
}

impl TableState {
    /// The set called `name`.
    pub fn set(&self, name: &str) -> Option<&LiveSet> {
        self.sets.iter().find(|s| s.name == name)
    }

    /// The counter called `name`.
    pub fn counter(&self, name: &str) -> Option<&CounterValue> {
        self.counters.iter().find(|c| c.name == name)
    }
}

fn str_field<'v>(obj: &'v Value, key: &str) -> Option<&'v str> {
    obj.get(key).and_then(Value::as_str)
}

fn u64_field(obj: &Value, key: &str) -> u64 {
    obj.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn type_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" . "),
        _ => String::new(),
    }
}

/// Parses one set element: a bare address string, or `{"elem": {"val": ..,
/// "timeout": s, "expires": s}}`. Anything else is `None`.
fn parse_element(v: &Value) -> Option<LearnedElement> {
    match v {
        Value::String(s) => s.parse().ok().map(|addr| LearnedElement {
            addr,
            timeout: None,
            expires: None,
        }),
        Value::Object(o) => {
            let e = o.get("elem")?;
            let addr = e.get("val")?.as_str()?.parse().ok()?;
            let secs = |k: &str| e.get(k).and_then(Value::as_u64).map(Duration::from_secs);
            Some(LearnedElement {
                addr,
                timeout: secs("timeout"),
                expires: secs("expires"),
            })
        }
        _ => None,
    }
}

/// Parses one `{"elem": {"val": {"concat": [addr, proto, port]}, ...}}` (or
/// the bare `{"concat": [...]}`).
fn parse_endpoint(v: &Value) -> Option<DeniedEndpoint> {
    let (val, meta) = match v.get("elem") {
        Some(e) => (e.get("val")?, Some(e)),
        None => (v, None),
    };
    let parts = val.get("concat")?.as_array()?;
    let [addr, proto, port] = parts.as_slice() else {
        return None;
    };
    Some(DeniedEndpoint {
        addr: addr.as_str()?.parse().ok()?,
        protocol: match proto {
            Value::String(p) => p.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        },
        port: u16::try_from(port.as_u64()?).ok()?,
        expires: meta
            .and_then(|e| e.get("expires"))
            .and_then(Value::as_u64)
            .map(Duration::from_secs),
    })
}

/// Parses the JSON printed by `nft -j list table inet bootlab`, keeping only
/// objects of that table.
pub fn parse_table_listing(json: &str) -> Result<TableState, ListingError> {
    let doc: Value =
        serde_json::from_str(json).map_err(|e| ListingError(format!("not JSON: {e}")))?;
    let objects = doc
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| ListingError("no \"nftables\" array".to_owned()))?;
    let mut state = TableState::default();
    for obj in objects {
        let Some((kind, body)) = obj.as_object().and_then(|o| o.iter().next()) else {
            continue;
        };
        let ours = str_field(body, "family") == Some("inet")
            && str_field(body, "table") == Some(crate::ruleset::TABLE_NAME);
        if !ours {
            continue;
        }
        let Some(name) = str_field(body, "name").map(str::to_owned) else {
            if kind == "rule" {
                state.rule_count += 1;
            }
            continue;
        };
        match kind.as_str() {
            "chain" => {
                let hook = str_field(body, "hook").map(|point| LiveHook {
                    kind: str_field(body, "type").unwrap_or_default().to_owned(),
                    point: point.to_owned(),
                    priority: body.get("prio").and_then(Value::as_i64).unwrap_or(0),
                    policy: str_field(body, "policy").unwrap_or("accept").to_owned(),
                });
                state.chains.push(LiveChain { name, hook });
            }
            "set" => {
                let mut flags: Vec<String> = match body.get("flags") {
                    Some(Value::Array(f)) => f
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect(),
                    Some(Value::String(f)) => vec![f.clone()],
                    _ => vec![],
                };
                flags.sort();
                let raw = body.get("elem").and_then(Value::as_array);
                let elements = raw
                    .map(|els| els.iter().filter_map(parse_element).collect())
                    .unwrap_or_default();
                let mut endpoints: Vec<DeniedEndpoint> = raw
                    .map(|els| els.iter().filter_map(parse_endpoint).collect())
                    .unwrap_or_default();
                endpoints.sort();
                state.sets.push(LiveSet {
                    name,
                    key_type: type_string(body.get("type")),
                    flags,
                    elements,
                    endpoints,
                });
            }
            "counter" => state.counters.push(CounterValue {
                name,
                packets: u64_field(body, "packets"),
                bytes: u64_field(body, "bytes"),
            }),
            "rule" => state.rule_count += 1,
            _ => {}
        }
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters_beyond_u32_sets_and_chains() {
        let json = r#"{"nftables":[{"metainfo":{"version":"1.0.6"}},
          {"table":{"family":"inet","name":"bootlab","handle":1}},
          {"counter":{"family":"inet","name":"lab_egress_denied","table":"bootlab","handle":4,"packets":5,"bytes":8589934592}},
          {"set":{"family":"inet","name":"learned_destinations","table":"bootlab","type":"ipv4_addr","handle":5,"flags":["timeout"],
             "elem":[{"elem":{"val":"203.0.113.7","timeout":30,"expires":29}},"198.51.100.1"]}},
          {"chain":{"family":"inet","table":"bootlab","name":"forward","handle":1,"type":"filter","hook":"forward","prio":-10,"policy":"accept"}},
          {"chain":{"family":"inet","table":"bootlab","name":"lab_egress","handle":2}},
          {"chain":{"family":"ip","table":"other","name":"x","handle":2}},
          {"rule":{"family":"inet","table":"bootlab","chain":"forward","handle":6,"expr":[]}}]}"#;
        let s = parse_table_listing(json).unwrap();
        assert_eq!(s.counter("lab_egress_denied").unwrap().bytes, 8_589_934_592);
        assert_eq!(s.chains.len(), 2);
        assert_eq!(s.chains[0].hook.as_ref().unwrap().priority, -10);
        assert_eq!(s.chains[1].hook, None);
        assert_eq!(s.rule_count, 1);
        let set = s.set("learned_destinations").unwrap();
        assert_eq!(set.flags, vec!["timeout"]);
        assert_eq!(set.elements.len(), 2);
        assert_eq!(set.elements[0].timeout, Some(Duration::from_secs(30)));
    }

    #[test]
    fn parses_refused_endpoints() {
        let json = r#"{"nftables":[{"set":{"family":"inet","name":"denied_destinations","table":"bootlab",
          "type":["ipv4_addr","inet_proto","inet_service"],"flags":["timeout"],"timeout":3600,
          "elem":[{"elem":{"val":{"concat":["198.51.100.200","tcp",80]},"expires":3599}},
                  {"elem":{"val":{"concat":["198.51.100.201",17,53]}}},
                  {"elem":{"val":{"concat":["x","tcp",80]}}},
                  {"elem":{"val":{"concat":["198.51.100.200","tcp",70000]}}}]}}]}"#;
        let s = parse_table_listing(json).unwrap();
        let set = s.set("denied_destinations").unwrap();
        assert_eq!(set.key_type, "ipv4_addr . inet_proto . inet_service");
        assert_eq!(set.endpoints.len(), 2);
        assert_eq!(set.endpoints[0].port, 80);
        assert_eq!(set.endpoints[0].expires, Some(Duration::from_secs(3599)));
        assert_eq!(set.endpoints[1].protocol, "17");
        assert!(set.elements.is_empty());
    }

    #[test]
    fn rejects_non_listing() {
        assert!(parse_table_listing("[]").is_err());
        assert!(parse_table_listing("{").is_err());
        assert_eq!(
            parse_table_listing(r#"{"nftables":[1,"x",{},{"set":7}]}"#).unwrap(),
            TableState::default()
        );
    }
}
