//! The zones bootlabd is authoritative for, as lookup tables built from
//! [`Inventory::zones`]: exact names, empty non-terminals, wildcards (RFC 4592)
//! and CNAME chasing inside our zones.

use std::collections::{HashMap, HashSet};

use bootlab_inventory::{Inventory, RecordData, Zone};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// SOA timers of every zone: refresh, retry, expire (seconds).
const SOA_REFRESH: i32 = 3600;
const SOA_RETRY: i32 = 600;
const SOA_EXPIRE: i32 = 604_800;
/// Negative-caching TTL (SOA minimum): short, a lab changes often.
const SOA_MINIMUM: u32 = 60;
/// TTL of the SOA and NS records.
const APEX_TTL: u32 = 300;
/// How many CNAMEs are followed inside our zones before giving up.
const MAX_CNAME_CHAIN: usize = 8;

/// Errors building the zone tables.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    /// A name in the inventory is not a valid DNS name.
    #[error("invalid DNS name {name:?}: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
}

/// Lowercase, absolute (`a.b.c.`) name from inventory text.
fn name(text: &str) -> Result<Name, ZoneError> {
    let fqdn = if text.ends_with('.') {
        text.to_owned()
    } else {
        format!("{text}.")
    };
    Name::from_ascii(&fqdn)
        .map(|n| n.to_lowercase())
        .map_err(|e| ZoneError::BadName {
            name: text.to_owned(),
            reason: e.to_string(),
        })
}

/// Lookup key of a name: lowercase text without the trailing dot.
pub(crate) fn key_of(name: &Name) -> String {
    let mut s = name.to_lowercase().to_ascii();
    if s.ends_with('.') && s.len() > 1 {
        s.pop();
    }
    s
}

/// The parent of a key (`a.b.c` -> `b.c`), `None` at a single label.
fn parent_key(key: &str) -> Option<&str> {
    key.split_once('.').map(|(_, rest)| rest)
}

/// One authoritative zone.
#[derive(Debug)]
pub struct AuthZone {
    /// Origin key (`okd.example.com`).
    pub origin: String,
    /// Origin as a name (lowercase, absolute): zone membership is decided
    /// label by label, never on text (a label may hold a `.` byte).
    origin_name: Name,
    /// The apex SOA record.
    pub soa: Record,
    /// Records by owner key, including the apex SOA and NS.
    records: HashMap<String, Vec<Record>>,
    /// The empty non-terminals: ancestors up to the origin that own no
    /// record. An owner key exists when it is in `records` or here (the
    /// owners are not copied into a second set: 20,000 keys at 10,000
    /// nodes).
    empty_non_terminals: HashSet<String>,
}

impl AuthZone {
    fn build(zone: &Zone) -> Result<Self, ZoneError> {
        let origin = name(&zone.origin)?;
        let origin_key = key_of(&origin);
        let ns_name = name(&zone.primary_ns)?;
        let soa = Record::from_rdata(
            origin.clone(),
            APEX_TTL,
            RData::SOA(SOA::new(
                ns_name.clone(),
                name(&zone.hostmaster)?,
                zone.serial,
                SOA_REFRESH,
                SOA_RETRY,
                SOA_EXPIRE,
                SOA_MINIMUM,
            )),
        );
        let ns = Record::from_rdata(origin.clone(), APEX_TTL, RData::NS(NS(ns_name)));
        let mut records: HashMap<String, Vec<Record>> = HashMap::new();
        records
            .entry(origin_key.clone())
            .or_default()
            .extend([soa.clone(), ns]);
        for r in &zone.records {
            let owner = name(&r.name)?;
            let data = match &r.data {
                RecordData::A(ip) => RData::A(A(*ip)),
                RecordData::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
                RecordData::Cname(t) => RData::CNAME(CNAME(name(t)?)),
                RecordData::Txt(parts) => RData::TXT(TXT::new(parts.clone())),
                RecordData::Srv {
                    priority,
                    weight,
                    port,
                    target,
                } => RData::SRV(SRV::new(*priority, *weight, *port, name(target)?)),
                RecordData::Mx {
                    preference,
                    exchange,
                } => RData::MX(MX::new(*preference, name(exchange)?)),
                RecordData::Ptr(t) => RData::PTR(PTR(name(t)?)),
            };
            let key = key_of(&owner);
            records
                .entry(key)
                .or_default()
                .push(Record::from_rdata(owner, r.ttl, data));
        }
        // Most owners hold one record: without this every Vec keeps the
        // capacity of 4 its first push gave it (~1 KiB per owner, 21 MiB of
        // a 10,000-node lab's zones; bench/scale.sh).
        for owned in records.values_mut() {
            owned.shrink_to_fit();
        }
        records.shrink_to_fit();
        let mut empty_non_terminals = HashSet::new();
        for key in records.keys() {
            let mut at = parent_key(key);
            while let Some(k) = at {
                if records.contains_key(k)
                    || k.len() < origin_key.len()
                    || !empty_non_terminals.insert(k.to_owned())
                {
                    break;
                }
                at = parent_key(k);
            }
        }
        empty_non_terminals.shrink_to_fit();
        Ok(Self {
            origin: origin_key,
            origin_name: origin,
            soa,
            records,
            empty_non_terminals,
        })
    }

    /// True when `name` is the origin or under it.
    fn contains(&self, name: &Name) -> bool {
        self.origin_name.zone_of(name)
    }

    /// The SOA as it goes into the authority section of a negative answer:
    /// TTL = min(SOA TTL, SOA minimum) (RFC 2308).
    pub fn negative_soa(&self) -> Record {
        let mut soa = self.soa.clone();
        soa.ttl = soa.ttl.min(SOA_MINIMUM);
        soa
    }

    /// Every owner key that exists (records or empty non-terminal).
    pub fn existing_names(&self) -> impl Iterator<Item = &str> {
        self.records
            .keys()
            .chain(self.empty_non_terminals.iter())
            .map(String::as_str)
    }

    /// The record types held at an existing owner key (empty for an empty
    /// non-terminal); `None` when the key does not exist.
    pub fn owner_types(&self, key: &str) -> Option<Vec<RecordType>> {
        if !self.exists(key) {
            return None;
        }
        Some(
            self.records
                .get(key)
                .map(|rs| rs.iter().map(Record::record_type).collect())
                .unwrap_or_default(),
        )
    }

    /// The keys of the names inside the SOA record (primary server and
    /// hostmaster mailbox): a reply carrying the SOA compresses them against
    /// a question name equal to or under one of them.
    pub fn soa_name_keys(&self) -> Vec<String> {
        match &self.soa.data {
            RData::SOA(soa) => vec![key_of(&soa.mname), key_of(&soa.rname)],
            _ => Vec::new(),
        }
    }

    /// Wildcard owners (`*.apps.okd.example.com`).
    pub fn wildcard_names(&self) -> impl Iterator<Item = &str> {
        self.records
            .keys()
            .filter(|k| k.starts_with("*."))
            .map(String::as_str)
    }

    /// The zone in master-file form (SOA first), e.g. to serve the same
    /// data from another server in benchmarks.
    pub fn zone_file(&self) -> String {
        let mut owners: Vec<&String> = self.records.keys().collect();
        owners.sort();
        let mut out = format!("$ORIGIN {}.\n{}\n", self.origin, self.soa);
        for owner in owners {
            for r in &self.records[owner] {
                if r.record_type() != RecordType::SOA {
                    out.push_str(&format!("{r}\n"));
                }
            }
        }
        out
    }

    /// True when the key exists (has records or is an empty non-terminal).
    pub fn exists(&self, key: &str) -> bool {
        self.records.contains_key(key) || self.empty_non_terminals.contains(key)
    }

    /// The records at `qname` (lowercase), with wildcard synthesis.
    /// `None`: the name does not exist.
    fn node(&self, qname: &Name) -> Option<Vec<Record>> {
        let key = key_of(qname);
        if self.exists(&key) {
            return Some(self.records.get(&key).cloned().unwrap_or_default());
        }
        // Closest encloser: the longest existing ancestor (RFC 4592 3.3.1).
        // Walk by labels: a label's text may contain an escaped dot.
        let mut at = qname.base_name();
        while at.num_labels() >= self.origin_name.num_labels() {
            let k = key_of(&at);
            if self.exists(&k) {
                let wildcard = format!("*.{k}");
                let records = self.records.get(&wildcard)?;
                return Some(
                    records
                        .iter()
                        .map(|r| {
                            let mut r = r.clone();
                            r.name = qname.clone();
                            r
                        })
                        .collect(),
                );
            }
            if at.num_labels() == 0 {
                break;
            }
            at = at.base_name();
        }
        None
    }
}

/// The result of looking a question up in our zones.
#[derive(Debug)]
pub enum Lookup {
    /// No zone of ours contains the name.
    NotOurs,
    /// The name is ours.
    Authoritative {
        /// Index of the zone that contains the question name.
        zone: usize,
        /// NXDOMAIN (the last name of the CNAME chain does not exist).
        nxdomain: bool,
        /// The answer section (CNAMEs first, then the data).
        answers: Vec<Record>,
        /// The additional section (addresses of NS/MX/SRV targets in our zones).
        additionals: Vec<Record>,
        /// True when the answer section holds no data of the asked type
        /// (NODATA or NXDOMAIN): the zone's SOA goes into the authority section.
        negative: bool,
    },
}

/// All zones bootlabd serves.
#[derive(Debug)]
pub struct ZoneTable {
    zones: Vec<AuthZone>,
}

impl ZoneTable {
    /// Builds the tables from the inventory's zone set.
    pub fn from_inventory(inv: &Inventory) -> Result<Self, ZoneError> {
        let set = inv.zones();
        let mut zones = vec![AuthZone::build(&set.forward)?];
        for z in &set.reverse {
            zones.push(AuthZone::build(z)?);
        }
        Ok(Self { zones })
    }

    /// The zones.
    pub fn zones(&self) -> &[AuthZone] {
        &self.zones
    }

    /// The zone (index) with the longest origin containing `name`.
    pub fn zone_of(&self, name: &Name) -> Option<usize> {
        self.zones
            .iter()
            .enumerate()
            .filter(|(_, z)| z.contains(name))
            .max_by_key(|(_, z)| z.origin_name.num_labels())
            .map(|(i, _)| i)
    }

    /// Looks up `qname`/`qtype`. `qname` must be lowercase; answer owners are
    /// the stored (lowercase) names, synthesized wildcard owners are `qname`.
    pub fn lookup(&self, qname: &Name, qtype: RecordType) -> Lookup {
        let Some(zone_idx) = self.zone_of(qname) else {
            return Lookup::NotOurs;
        };
        let mut answers = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        let mut current = qname.clone();
        let mut current_key = key_of(qname);
        let mut current_zone = zone_idx;
        let mut nxdomain = false;
        let mut negative = false;
        loop {
            let zone = &self.zones[current_zone];
            let Some(node) = zone.node(&current) else {
                nxdomain = true;
                negative = true;
                break;
            };
            let matching: Vec<Record> = node
                .iter()
                .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
                .cloned()
                .collect();
            if !matching.is_empty() {
                answers.extend(matching);
                break;
            }
            let cname = node.iter().find(|r| r.record_type() == RecordType::CNAME);
            let Some(cname) = cname else {
                negative = true;
                break;
            };
            answers.push(cname.clone());
            let RData::CNAME(CNAME(target)) = &cname.data else {
                break;
            };
            seen.push(current_key.clone());
            let target_key = key_of(target);
            if seen.len() >= MAX_CNAME_CHAIN || seen.contains(&target_key) {
                break;
            }
            let Some(z) = self.zone_of(target) else {
                // Out of our zones: the resolver follows it.
                break;
            };
            current = target.to_lowercase();
            current_key = target_key;
            current_zone = z;
        }
        let additionals = self.additionals_for(&answers);
        Lookup::Authoritative {
            zone: if answers.is_empty() {
                zone_idx
            } else {
                current_zone
            },
            nxdomain,
            answers,
            additionals,
            negative,
        }
    }

    /// Addresses of NS/MX/SRV targets that live in our zones.
    fn additionals_for(&self, answers: &[Record]) -> Vec<Record> {
        let mut out: Vec<Record> = Vec::new();
        for r in answers {
            let target = match &r.data {
                RData::NS(NS(t)) => t,
                RData::MX(mx) => &mx.exchange,
                RData::SRV(srv) => &srv.target,
                _ => continue,
            };
            let key = key_of(target);
            let Some(z) = self.zone_of(target) else {
                continue;
            };
            if let Some(records) = self.zones[z].records.get(&key) {
                for a in records {
                    if matches!(a.record_type(), RecordType::A | RecordType::AAAA)
                        && !out.contains(a)
                    {
                        out.push(a.clone());
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(extra: &str) -> ZoneTable {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/okd-lab.toml"
        ))
        .unwrap();
        let text = text.replace(
            "  { name = \"*.apps\",",
            &format!("{extra}\n  {{ name = \"*.apps\","),
        );
        let inv = bootlab_inventory::parse(&text, std::path::Path::new("okd-lab.toml")).unwrap();
        ZoneTable::from_inventory(&inv).unwrap()
    }

    fn q(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn empty_non_terminal_and_wildcard() {
        let t = table("");
        let Lookup::Authoritative {
            answers, negative, ..
        } = t.lookup(&q("apps.okd.example.com."), RecordType::A)
        else {
            panic!()
        };
        assert!(answers.is_empty() && negative, "ENT is NODATA");
        let Lookup::Authoritative { answers, .. } =
            t.lookup(&q("a.b.apps.okd.example.com."), RecordType::A)
        else {
            panic!()
        };
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].name, q("a.b.apps.okd.example.com."));
        assert!(matches!(
            t.lookup(&q("example.org."), RecordType::A),
            Lookup::NotOurs
        ));
    }

    #[test]
    fn cname_chain_and_loop() {
        let t = table(
            "  { name = \"www\", type = \"CNAME\", value = \"web\" },\n  { name = \"web\", type = \"CNAME\", value = \"api\" },\n  { name = \"l1\", type = \"CNAME\", value = \"l2\" },\n  { name = \"l2\", type = \"CNAME\", value = \"l1\" },",
        );
        let Lookup::Authoritative {
            answers, negative, ..
        } = t.lookup(&q("www.okd.example.com."), RecordType::A)
        else {
            panic!()
        };
        assert_eq!(answers.len(), 3, "{answers:?}");
        assert!(!negative);
        let Lookup::Authoritative { answers, .. } =
            t.lookup(&q("l1.okd.example.com."), RecordType::A)
        else {
            panic!()
        };
        assert_eq!(answers.len(), 2, "loop stops: {answers:?}");
    }
}
