//! `[dns]`: extra records in the lab zone, zone-file style.

use std::collections::HashMap;

use super::{Checker, HELP_IP, Taken};
use crate::defaults;
use crate::diag::FieldPath;
use crate::model::*;
use crate::values;
use crate::wire;

/// `dns.records`
pub(crate) fn records(
    c: &mut Checker<'_>,
    w: &wire::DnsSection,
    zone: &str,
    taken: &Taken,
) -> Vec<DnsRecord> {
    let mut dns_records = Vec::new();
    let mut cname_owners: HashMap<String, FieldPath> = HashMap::new();
    let mut other_owners: HashMap<String, FieldPath> = taken
        .names
        .iter()
        .map(|(n, p)| (n.clone(), p.clone()))
        .collect();
    for (i, r) in w.records.iter().enumerate() {
        let rp = FieldPath::of("dns.records").idx(i);
        let owner = match zone_relative(&r.name, zone) {
            Ok(o) => o,
            Err(e) => {
                c.err(
                    &rp.key("name"),
                    format!("record name {:?}: {e}", r.name),
                    "write a name relative to the lab zone (\"api\", \"*.apps\", \"@\") or absolute with a trailing dot",
                );
                continue;
            }
        };
        let data = match parse_record(&r.rtype, &r.value, zone) {
            Ok(d) => d,
            Err((msg, help)) => {
                let field = if msg.starts_with("unknown record type") {
                    "type"
                } else {
                    "value"
                };
                c.err(&rp.key(field), msg, &help);
                continue;
            }
        };
        if matches!(data, RecordData::Cname(_)) {
            if owner.is_empty() {
                c.err(
                    &rp.key("name"),
                    "a CNAME cannot sit at the zone apex (it holds SOA and NS)",
                    "give the alias its own name",
                );
                continue;
            }
            if let Some(other) = other_owners
                .get(&owner)
                .or_else(|| cname_owners.get(&owner))
            {
                c.err(
                    &rp.key("name"),
                    format!(
                        "{owner:?} already has records ({other}); a CNAME must be alone at its name"
                    ),
                    "remove the CNAME or the other records",
                );
                continue;
            }
            cname_owners.insert(owner.clone(), rp.key("name"));
        } else {
            if let Some(other) = cname_owners.get(&owner) {
                c.err(
                    &rp.key("name"),
                    format!("{owner:?} is a CNAME ({other}); a CNAME must be alone at its name"),
                    "remove the CNAME or this record",
                );
                continue;
            }
            other_owners
                .entry(owner.clone())
                .or_insert_with(|| rp.key("name"));
        }
        dns_records.push(DnsRecord {
            name: owner,
            data,
            ttl: r.ttl.unwrap_or(defaults::TTL),
        });
    }
    dns_records
}

/// A name relative to the lab zone, as written in zone files: `@`, `api`,
/// `*.apps`, or absolute with a trailing dot (which must be inside the zone).
/// Returns the owner relative to the zone ("" for the apex), lowercase.
fn zone_relative(name: &str, zone: &str) -> Result<String, String> {
    let lower = name.trim().to_ascii_lowercase();
    let rel = if lower == "@" {
        String::new()
    } else if let Some(abs) = lower.strip_suffix('.') {
        if abs == zone {
            String::new()
        } else if let Some(r) = abs.strip_suffix(&format!(".{zone}")) {
            r.to_owned()
        } else {
            return Err(format!("{name:?} is outside the lab zone {zone}"));
        }
    } else {
        lower
    };
    if !rel.is_empty() {
        for (i, label) in rel.split('.').enumerate() {
            if label == "*" && i == 0 {
                continue;
            }
            values::check_label(label)?;
        }
    }
    if rel.len() + zone.len() + 1 > 253 {
        return Err(format!("{name:?} makes a name longer than 253 bytes"));
    }
    Ok(rel)
}

/// A target name in a record value: relative names are completed with the zone.
fn target_name(value: &str, zone: &str) -> Result<String, String> {
    let v = value.trim().to_ascii_lowercase();
    let abs = if v == "@" {
        zone.to_owned()
    } else if let Some(a) = v.strip_suffix('.') {
        a.to_owned()
    } else {
        format!("{v}.{zone}")
    };
    values::check_domain(&abs)?;
    Ok(abs)
}

/// Parses a TXT value: `"one" "two"` (quoted, with `\"` and `\\` escapes) or bare text.
fn parse_txt(value: &str) -> Result<Vec<String>, String> {
    let t = value.trim();
    let mut out = Vec::new();
    if !t.starts_with('"') {
        out.push(t.to_owned());
    } else {
        let mut chars = t.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            match chars.next() {
                None => break,
                Some('"') => {}
                Some(c) => return Err(format!("unexpected {c:?} between quoted strings")),
            }
            let mut s = String::new();
            loop {
                match chars.next() {
                    None => return Err("unterminated quoted string".into()),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => s.push(c),
                        None => return Err("unterminated quoted string".into()),
                    },
                    Some(c) => s.push(c),
                }
            }
            out.push(s);
        }
    }
    for s in &out {
        if s.len() > 255 {
            return Err(format!(
                "a TXT string is {} bytes; split it into quoted strings of at most 255",
                s.len()
            ));
        }
    }
    Ok(out)
}

fn parse_record(rtype: &str, value: &str, zone: &str) -> Result<RecordData, (String, String)> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    let num = |s: &str, what: &str| -> Result<u16, (String, String)> {
        s.parse::<u16>().map_err(|_| {
            (
                format!("{what} {s:?} is not a number from 0 to 65535"),
                String::new(),
            )
        })
    };
    let t = rtype.to_ascii_uppercase();
    let help = |h: &str| h.to_owned();
    match t.as_str() {
        "A" => value
            .trim()
            .parse()
            .map(RecordData::A)
            .map_err(|_| (format!("{value:?} is not an IPv4 address"), help(HELP_IP))),
        "AAAA" => value.trim().parse().map(RecordData::Aaaa).map_err(|_| {
            (
                format!("{value:?} is not an IPv6 address"),
                help("write an IPv6 address such as fd00::10"),
            )
        }),
        "CNAME" => target_name(value, zone)
            .map(RecordData::Cname)
            .map_err(|e| {
                (
                    format!("CNAME target {value:?}: {e}"),
                    help("write a name relative to the lab zone, or absolute with a trailing dot"),
                )
            }),
        "TXT" => parse_txt(value)
            .map(RecordData::Txt)
            .map_err(|e| (e, help("write text, or quoted strings: \"v=1\" \"k=2\""))),
        "SRV" => {
            let h = "write \"<priority> <weight> <port> <target>\", e.g. \"0 5 6443 api\"";
            if fields.len() != 4 {
                return Err((format!("SRV value {value:?} needs 4 fields"), help(h)));
            }
            let target = target_name(fields[3], zone)
                .map_err(|e| (format!("SRV target {:?}: {e}", fields[3]), help(h)))?;
            Ok(RecordData::Srv {
                priority: num(fields[0], "priority").map_err(|(m, _)| (m, help(h)))?,
                weight: num(fields[1], "weight").map_err(|(m, _)| (m, help(h)))?,
                port: num(fields[2], "port").map_err(|(m, _)| (m, help(h)))?,
                target,
            })
        }
        "MX" => {
            let h = "write \"<preference> <exchange>\", e.g. \"10 mail\"";
            if fields.len() != 2 {
                return Err((format!("MX value {value:?} needs 2 fields"), help(h)));
            }
            let exchange = target_name(fields[1], zone)
                .map_err(|e| (format!("MX exchange {:?}: {e}", fields[1]), help(h)))?;
            Ok(RecordData::Mx {
                preference: num(fields[0], "preference").map_err(|(m, _)| (m, help(h)))?,
                exchange,
            })
        }
        _ => Err((
            format!("unknown record type {rtype:?}"),
            help("use one of: A, AAAA, CNAME, TXT, SRV, MX (PTR records are derived from nodes)"),
        )),
    }
}
