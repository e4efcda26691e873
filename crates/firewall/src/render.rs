//! nft syntax for a [`Ruleset`] (`bootlab egress show`).
//!
//! The output is valid `nft -f` input and is written the way `nft list table
//! inet bootlab` prints the applied table, minus state (counter values, set
//! elements): [`strip_state`] turns a live listing into the same text, which
//! is how the tests prove that what we show is what the kernel holds.

use std::fmt::Write as _;

use ipnet::Ipv4Net;

use crate::ruleset::{
    Action, Chain, ChainKind, DENIED_SET_SIZE, DENIED_SET_TIMEOUT_SECS, HookPoint, Match, Rule,
    Ruleset, SetKind, TABLE_NAME, Verdict,
};

/// The ruleset as `table inet bootlab { ... }`.
pub fn render_nft(ruleset: &Ruleset) -> String {
    let mut blocks: Vec<String> = Vec::new();
    for c in &ruleset.counters {
        blocks.push(format!("\tcounter {} {{\n\t}}\n", c.name));
    }
    for s in &ruleset.sets {
        blocks.push(match s.kind {
            SetKind::Addresses => format!(
                "\tset {} {{\n\t\ttype {}\n\t\tflags timeout\n\t}}\n",
                s.name,
                s.kind.key_type()
            ),
            SetKind::Endpoints => format!(
                "\tset {} {{\n\t\ttype {}\n\t\tsize {DENIED_SET_SIZE}\n\t\tflags dynamic,timeout\n\t\ttimeout {}\n\t}}\n",
                s.name,
                s.kind.key_type(),
                nft_duration(DENIED_SET_TIMEOUT_SECS)
            ),
        });
    }
    for chain in &ruleset.chains {
        blocks.push(render_chain(chain));
    }
    format!("table inet {TABLE_NAME} {{\n{}}}\n", blocks.join("\n"))
}

fn render_chain(chain: &Chain) -> String {
    let mut out = format!("\tchain {} {{\n", chain.name);
    if let Some(h) = &chain.hook {
        let (kind, point, base_name, base) = match (h.kind, h.point) {
            (ChainKind::Filter, p) => ("filter", p, "filter", 0),
            (ChainKind::Nat, p @ HookPoint::Postrouting) => ("nat", p, "srcnat", 100),
            (ChainKind::Nat, p) => ("nat", p, "dstnat", -100),
        };
        let point = match point {
            HookPoint::Input => "input",
            HookPoint::Forward => "forward",
            HookPoint::Postrouting => "postrouting",
        };
        let delta = h.priority - base;
        let priority = match delta {
            0 => base_name.to_owned(),
            d if d < 0 => format!("{base_name} - {}", -d),
            d => format!("{base_name} + {d}"),
        };
        let _ = writeln!(
            out,
            "\t\ttype {kind} hook {point} priority {priority}; policy {};",
            verdict(h.policy)
        );
    }
    for rule in &chain.rules {
        let _ = writeln!(out, "\t\t{}", render_rule(rule));
    }
    out.push_str("\t}\n");
    out
}

/// Seconds the way nft prints them: `1h`, `10m`, `1h30m`, `45s`.
fn nft_duration(secs: u32) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (v, unit) in [(d, "d"), (h, "h"), (m, "m"), (s, "s")] {
        if v > 0 {
            let _ = write!(out, "{v}{unit}");
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Accept => "accept",
        Verdict::Drop => "drop",
    }
}

/// Quotes a string the way nft prints it; bootlab never puts quotes in names
/// or comments, but a stray one must not break the syntax.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace(['"', '\\'], "'"))
}

fn networks(nets: &[Ipv4Net]) -> String {
    let one = |n: &Ipv4Net| {
        if n.prefix_len() == 32 {
            n.addr().to_string()
        } else {
            n.to_string()
        }
    };
    match nets {
        [n] => one(n),
        _ => format!(
            "{{ {} }}",
            nets.iter().map(one).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// One match in nft syntax.
pub fn render_match(m: &Match) -> String {
    let op = |negated: bool| if negated { "!= " } else { "" };
    match m {
        Match::InInterface { name, negated } => format!("iifname {}{}", op(*negated), quoted(name)),
        Match::OutInterface { name, negated } => {
            format!("oifname {}{}", op(*negated), quoted(name))
        }
        Match::CtState(states) => format!(
            "ct state {}",
            states
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ),
        Match::EtherSource(mac) => format!("ether saddr {mac}"),
        Match::IpSource(nets) => format!("ip saddr {}", networks(nets)),
        Match::IpDestination(nets) => format!("ip daddr {}", networks(nets)),
        Match::IpDestinationInSet(set) => format!("ip daddr @{set}"),
        Match::UdpSourcePort(p) => format!("udp sport {p}"),
        Match::UdpDestinationPort(p) => format!("udp dport {p}"),
        Match::TcpDestinationPort(p) => format!("tcp dport {p}"),
        Match::IcmpEchoRequest => "icmp type echo-request".to_owned(),
        Match::Icmpv6 => "meta l4proto ipv6-icmp".to_owned(),
        Match::TcpOrUdp => "meta l4proto { tcp, udp }".to_owned(),
    }
}

/// One rule in nft syntax (without indentation).
pub fn render_rule(rule: &Rule) -> String {
    let mut parts: Vec<String> = rule.matches.iter().map(render_match).collect();
    if let Some(c) = &rule.counter {
        parts.push(format!("counter name {}", quoted(c)));
    }
    parts.push(match &rule.action {
        Action::Verdict(v) => verdict(*v).to_owned(),
        Action::Jump(target) => format!("jump {target}"),
        Action::Masquerade => "masquerade".to_owned(),
        Action::RecordEndpoint(set) => {
            format!("update @{set} {{ ip daddr . meta l4proto . th dport }}")
        }
    });
    if let Some(c) = &rule.comment {
        parts.push(format!("comment {}", quoted(c)));
    }
    parts.join(" ")
}

/// A live `nft list table` listing without its state: counter values (named
/// and inline) and set elements removed, so two listings of the same policy
/// compare equal.
pub fn strip_state(listing: &str) -> String {
    let mut out = String::new();
    let mut in_elements = false;
    for line in listing.lines() {
        let t = line.trim();
        if in_elements {
            if t.ends_with('}') {
                in_elements = false;
            }
            continue;
        }
        if t.starts_with("elements = {") {
            in_elements = !t.ends_with('}');
            continue;
        }
        if t.starts_with("packets ") && t.contains(" bytes ") {
            continue;
        }
        out.push_str(&without_inline_counter_values(line));
        out.push('\n');
    }
    out
}

/// True when two state-free listings hold the same objects, whatever order
/// the kernel lists them in (a counter created by a later apply is listed
/// after older ones).
pub fn same_objects(a: &str, b: &str) -> bool {
    fn blocks(s: &str) -> Vec<String> {
        let lines: Vec<&str> = s.trim_end().lines().collect();
        let (header, footer) = (lines.first().copied(), lines.last().copied());
        let body = lines
            .get(1..lines.len().saturating_sub(1))
            .unwrap_or_default();
        let mut v: Vec<String> = body
            .join("\n")
            .split("\n\n")
            .map(|b| b.trim().to_owned())
            .collect();
        v.sort();
        v.push(format!("{header:?}{footer:?}"));
        v
    }
    blocks(a) == blocks(b)
}

/// `counter packets 3 bytes 180 accept` -> `counter accept`.
fn without_inline_counter_values(line: &str) -> String {
    let words: Vec<&str> = line.split(' ').collect();
    let mut kept = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        let is_value = |k: usize, key: &str| {
            words.get(k) == Some(&key)
                && words
                    .get(k + 1)
                    .is_some_and(|v| v.bytes().all(|b| b.is_ascii_digit()))
        };
        if words[i].ends_with("counter") && is_value(i + 1, "packets") && is_value(i + 3, "bytes") {
            kept.push(words[i]);
            i += 5;
        } else {
            kept.push(words[i]);
            i += 1;
        }
    }
    kept.join(" ")
}

#[cfg(test)]
mod tests {
    use super::strip_state;

    #[test]
    fn strip_state_removes_values_and_elements() {
        let live = "table inet bootlab {\n\tcounter c {\n\t\tpackets 3 bytes 180\n\t}\n\n\tset s {\n\t\ttype ipv4_addr\n\t\tflags timeout\n\t\telements = { 1.2.3.4 timeout 1h expires 59m,\n\t\t\t     5.6.7.8 }\n\t}\n\tchain x {\n\t\tcounter packets 1 bytes 60 accept\n\t\tip daddr 1.2.3.4 counter name \"c\" drop\n\t}\n}\n";
        let want = "table inet bootlab {\n\tcounter c {\n\t}\n\n\tset s {\n\t\ttype ipv4_addr\n\t\tflags timeout\n\t}\n\tchain x {\n\t\tcounter accept\n\t\tip daddr 1.2.3.4 counter name \"c\" drop\n\t}\n}\n";
        assert_eq!(strip_state(live), want);
    }

    #[test]
    fn same_objects_ignores_block_order_only() {
        let a = "table inet bootlab {\n\tcounter a {\n\t}\n\n\tcounter b {\n\t}\n\n\tchain x {\n\t}\n}\n";
        let b = "table inet bootlab {\n\tcounter b {\n\t}\n\n\tcounter a {\n\t}\n\n\tchain x {\n\t}\n}\n";
        let c = "table inet bootlab {\n\tcounter b {\n\t}\n\n\tchain x {\n\t}\n}\n";
        assert!(super::same_objects(a, b));
        assert!(!super::same_objects(a, c));
        assert!(!super::same_objects(a, &a.replace("inet", "ip")));
    }
}
