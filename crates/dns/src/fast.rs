//! The fast path: precomputed wire replies for the static zones.
//!
//! For every existing name and common type the general path is run once on a
//! synthetic lowercase query (with and without EDNS); the reply bytes are
//! stored (the EDNS reply only where it is not the plain one with the OPT
//! record appended, which it nearly always is). A plain query (one
//! question, class IN, no records but at most one option-less EDNS(0) OPT
//! with DO=0, opcode QUERY) is then answered by
//! copying the stored reply and patching the ID, the RD and CD bits and the
//! question's spelling (case). Names a wildcard covers use a template: the
//! reply's bytes after the question, kept only when they do not depend on
//! the question name's length (checked with two probe names at build time).
//! Everything else (and anything unusual) goes to the general path.
//!
//! NODATA (the name exists, the type has no records) is not stored per name:
//! its reply after the question is the zone's SOA, whose names point into
//! the question, so it depends only on the zone and on the length of the
//! question name's part before the zone origin. One template per (zone,
//! prefix length) serves every name; each name keeps a bit mask of the types
//! that are NODATA there. Storing every (name, type) reply made a 10,000-node
//! lab's zones take 2.1 s to build and ~120 MiB (bench/scale.sh); with the
//! templates only types with records are run through the general path.

use std::collections::{HashMap, HashSet};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::handler::{Handler, Outcome, ReplyInfo, Transport};

/// Types precomputed for every existing name.
const FAST_TYPES: [RecordType; 9] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::NS,
    RecordType::SOA,
    RecordType::PTR,
    RecordType::MX,
    RecordType::TXT,
    RecordType::SRV,
];

/// Payload size written into the synthetic EDNS queries (any value gives the
/// same reply; the client's value only sets the size limit).
const SYNTHETIC_PAYLOAD: u16 = 1232;

#[derive(Debug)]
struct Stored {
    plain: Option<Box<[u8]>>,
    edns: EdnsReply,
    rcode: ResponseCode,
}

/// The EDNS reply of a [`Stored`] name and type.
#[derive(Debug)]
enum EdnsReply {
    /// None (the general path answers).
    Missing,
    /// The plain reply with the handler's OPT record appended and ARCOUNT
    /// one higher, as nearly every reply is: not stored twice (the copy
    /// was 1.6 MB of a 10,000-node lab's tables).
    PlainWithOpt,
    /// A reply of its own.
    Own(Box<[u8]>),
}

/// True when `edns` is `plain` with `opt` appended and ARCOUNT + 1.
fn is_plain_with_opt(plain: &[u8], edns: &[u8], opt: &[u8]) -> bool {
    plain.len() >= 12
        && edns.len() == plain.len() + opt.len()
        && edns[..10] == plain[..10]
        && u16::from_be_bytes([plain[10], plain[11]]).checked_add(1)
            == Some(u16::from_be_bytes([edns[10], edns[11]]))
        && edns[12..plain.len()] == plain[12..]
        && &edns[plain.len()..] == opt
}

#[derive(Debug)]
struct Template {
    header: [u8; 12],
    tail: Box<[u8]>,
}

impl Template {
    /// Header, the query's question (`name_len` wire bytes of name) and the
    /// tail into `out`; the tail's offset in `out`, or `None` when the
    /// reply would not fit in `limit`.
    fn write(&self, q: &[u8], name_len: usize, limit: usize, out: &mut Vec<u8>) -> Option<usize> {
        let question_end = 12 + name_len + 4;
        if question_end + self.tail.len() > limit {
            return None;
        }
        out.clear();
        out.extend_from_slice(&self.header);
        out.extend_from_slice(q.get(12..question_end)?);
        let tail_start = out.len();
        out.extend_from_slice(&self.tail);
        Some(tail_start)
    }
}

#[derive(Debug)]
struct StoredTemplate {
    plain: Option<Template>,
    edns: Option<Template>,
    rcode: ResponseCode,
}

impl StoredTemplate {
    /// The reply for a query of `name_len` wire bytes of name into `out`
    /// (see [`Template::write`]); its rcode.
    fn write(
        &self,
        q: &[u8],
        name_len: usize,
        edns: bool,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Option<ResponseCode> {
        let template = if edns { &self.edns } else { &self.plain };
        template.as_ref()?.write(q, name_len, limit, out)?;
        Some(self.rcode)
    }
}

/// An NXDOMAIN reply after the question: the SOA of the zone, whose names
/// point into the question; those pointers move with the length of the
/// question name's part before the zone origin.
#[derive(Debug)]
struct NxTemplate {
    base: Template,
    /// (offset in `tail`, pointer value when the prefix is `base_prefix` bytes).
    pointers: Vec<(usize, u16)>,
    base_prefix: usize,
}

/// The zone a name being precomputed belongs to, and what of it is read
/// per name.
#[derive(Clone, Copy)]
struct NameAt<'a> {
    zone: &'a crate::zone::AuthZone,
    zone_idx: usize,
    /// [`crate::zone::AuthZone::soa_name_keys`], made once per zone.
    soa_names: &'a [String],
    origin_wire: &'a [u8],
}

/// A name that exists in one of our zones.
#[derive(Debug, Clone, Copy)]
struct Existing {
    /// Wire length of its zone's origin.
    origin_len: usize,
    /// Index of its zone (key of [`FastAnswers::nodata`]).
    zone: usize,
    /// Bit `i`: `FAST_TYPES[i]` is NODATA at this name.
    nodata: u16,
}

#[derive(Debug, Default)]
struct StoredNx {
    plain: Option<NxTemplate>,
    edns: Option<NxTemplate>,
    /// Wire forms of the SOA's names: a question name ending in one of
    /// them is compressed against by the SOA, unlike the template's probes.
    soa_names: Vec<Box<[u8]>>,
}

/// The precomputed replies of one handler.
#[derive(Debug, Default)]
pub struct FastAnswers {
    /// Key: lowercase wire name + qtype (big endian).
    exact: HashMap<Box<[u8]>, Stored>,
    /// The OPT record the handler appends to EDNS replies (the bytes after
    /// the plain reply; see [`EdnsReply::PlainWithOpt`]).
    opt: Box<[u8]>,
    /// Key: wire name of the wildcard's parent (the closest encloser) + qtype.
    wildcard: HashMap<Box<[u8]>, StoredTemplate>,
    /// Wire names (lowercase) that exist in our zones.
    existing: HashMap<Box<[u8]>, Existing>,
    /// NODATA replies after the question, by (zone index, length of the
    /// question name before the zone origin).
    nodata: HashMap<(usize, usize), StoredTemplate>,
    /// Existing names that have a wildcard child (`*.<name>`).
    wildcard_parents: HashSet<Box<[u8]>>,
    /// NXDOMAIN templates, by zone origin (wire).
    nxdomain: HashMap<Box<[u8]>, StoredNx>,
}

/// The compression pointers that differ between two tails built for
/// question prefixes of `l1` and `l2` bytes, checked against a third.
fn moving_pointers(probes: &[(Vec<u8>, usize); 3]) -> Option<Vec<(usize, u16)>> {
    let [(t1, l1), (t2, l2), _] = probes;
    if t1.len() != t2.len() {
        return None;
    }
    let mut pointers = Vec::new();
    let mut i = 0;
    while i < t1.len() {
        if t1[i] == t2[i] && (i + 1 >= t1.len() || t1[i + 1] == t2[i + 1]) {
            i += 1;
            continue;
        }
        let (Some(a), Some(b)) = (t1.get(i..i + 2), t2.get(i..i + 2)) else {
            return None;
        };
        let (v1, v2) = (
            u16::from_be_bytes([a[0], a[1]]),
            u16::from_be_bytes([b[0], b[1]]),
        );
        if v1 & 0xc000 != 0xc000
            || v2 & 0xc000 != 0xc000
            || usize::from(v2.wrapping_sub(v1)) != l2 - l1
        {
            return None;
        }
        pointers.push((i, v1));
        i += 2;
    }
    // The formula must rebuild every probe's tail exactly.
    for (t, l) in probes {
        let mut rebuilt = t1.clone();
        patch_pointers(&mut rebuilt, &pointers, *l1, *l)?;
        if rebuilt != *t {
            return None;
        }
    }
    Some(pointers)
}

fn patch_pointers(
    tail: &mut [u8],
    pointers: &[(usize, u16)],
    base_prefix: usize,
    prefix: usize,
) -> Option<()> {
    for &(at, base) in pointers {
        let value = usize::from(base) + prefix - base_prefix;
        let value = u16::try_from(value).ok().filter(|v| *v >= 0xc000)?;
        tail.get_mut(at..at + 2)?
            .copy_from_slice(&value.to_be_bytes());
    }
    Some(())
}

/// `a.b.c` -> `\x01a\x01b\x01c\x00`; `None` for names that need escaping.
fn wire(key: &str) -> Option<Vec<u8>> {
    if key.contains('\\') {
        return None;
    }
    let mut out = Vec::with_capacity(key.len() + 2);
    for label in key.split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|l| (1..=63).contains(l))?;
        out.push(len);
        out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    out.push(0);
    (out.len() <= 255).then_some(out)
}

fn synthetic_query(wire_name: &[u8], qtype: RecordType, edns: bool) -> Vec<u8> {
    let mut q = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
    q.extend_from_slice(wire_name);
    q.extend_from_slice(&u16::from(qtype).to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    if edns {
        q.extend_from_slice(&[0, 0, 41]);
        q.extend_from_slice(&SYNTHETIC_PAYLOAD.to_be_bytes());
        q.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    q
}

/// Runs the general path; the reply bytes when it is a clean, complete answer.
fn general(handler: &Handler, query: &[u8]) -> Option<(Vec<u8>, ResponseCode)> {
    let mut out = Vec::new();
    match handler.handle_general(query, Transport::Tcp, &mut out) {
        Outcome::Reply(ReplyInfo {
            rcode,
            truncated: false,
            problem: None,
            ..
        }) if matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain) => Some((out, rcode)),
        _ => None,
    }
}

/// What the fast path understood of a query.
struct PlainQuery {
    /// Lowercase wire name followed by the qtype.
    key: [u8; 257],
    /// Length of the wire name in `key` (and in the query at offset 12).
    name_len: usize,
    edns_payload: Option<u16>,
}

fn parse_plain(q: &[u8]) -> Option<PlainQuery> {
    if q.len() < 17 || q[2] & 0xf8 != 0 || q[4..10] != [0, 1, 0, 0, 0, 0] || q[10] != 0 || q[11] > 1
    {
        return None;
    }
    let mut key = [0u8; 257];
    let mut at = 12;
    loop {
        let len = usize::from(*q.get(at)?);
        if len > 63 {
            return None;
        }
        let end = at + 1 + len;
        if end - 12 > 255 {
            return None;
        }
        let label = q.get(at..end)?;
        for (dst, src) in key[at - 12..end - 12].iter_mut().zip(label) {
            *dst = src.to_ascii_lowercase();
        }
        at = end;
        if len == 0 {
            break;
        }
    }
    let name_len = at - 12;
    let rest = q.get(at..)?;
    if rest.len() < 4 || rest[2..4] != [0, 1] {
        return None;
    }
    key[name_len..name_len + 2].copy_from_slice(&rest[0..2]);
    let edns_payload = match (q[11], &rest[4..]) {
        (0, []) => None,
        // root name, type OPT, payload, ext-rcode, version 0, flags with DO=0, no rdata
        (1, [0, 0, 41, p1, p2, _, 0, flags, _, 0, 0]) if flags & 0x80 == 0 => {
            Some(u16::from_be_bytes([*p1, *p2]))
        }
        _ => return None,
    };
    Some(PlainQuery {
        key,
        name_len,
        edns_payload,
    })
}

impl FastAnswers {
    /// Precomputes every name and type of `handler`'s zones.
    pub fn build(handler: &Handler) -> Self {
        let mut fast = Self::default();
        for (zone_idx, zone) in handler.zones().zones().iter().enumerate() {
            let Some(origin_wire) = wire(&zone.origin) else {
                continue;
            };
            fast.build_nxdomain(handler, zone, &origin_wire);
            let soa_names = zone.soa_name_keys();
            for name in zone.existing_names() {
                let Some(w) = wire(name) else { continue };
                let at = NameAt {
                    zone,
                    zone_idx,
                    soa_names: &soa_names,
                    origin_wire: &origin_wire,
                };
                let nodata = fast.build_nodata(handler, &at, name, &w);
                fast.existing.insert(
                    w.clone().into_boxed_slice(),
                    Existing {
                        origin_len: origin_wire.len(),
                        zone: zone_idx,
                        nodata,
                    },
                );
                for (i, qtype) in FAST_TYPES.into_iter().enumerate() {
                    if nodata & (1 << i) != 0 {
                        continue;
                    }
                    let mut key = w.clone();
                    key.extend_from_slice(&u16::from(qtype).to_be_bytes());
                    let plain = general(handler, &synthetic_query(&w, qtype, false));
                    let edns = general(handler, &synthetic_query(&w, qtype, true));
                    let rcode = match (&plain, &edns) {
                        (Some((_, r)), _) | (None, Some((_, r))) => *r,
                        (None, None) => continue,
                    };
                    let plain = plain.map(|(b, _)| b.into_boxed_slice());
                    let edns = match (edns, &plain) {
                        (None, _) => EdnsReply::Missing,
                        (Some((e, _)), Some(p)) => {
                            if fast.opt.is_empty()
                                && e.len() > p.len()
                                && is_plain_with_opt(p, &e, &e[p.len()..])
                            {
                                fast.opt = e[p.len()..].into();
                            }
                            if is_plain_with_opt(p, &e, &fast.opt) {
                                EdnsReply::PlainWithOpt
                            } else {
                                EdnsReply::Own(e.into_boxed_slice())
                            }
                        }
                        (Some((e, _)), None) => EdnsReply::Own(e.into_boxed_slice()),
                    };
                    fast.exact
                        .insert(key.into_boxed_slice(), Stored { plain, edns, rcode });
                }
            }
            for wild in zone.wildcard_names() {
                let Some(encloser) = wild.strip_prefix("*.") else {
                    continue;
                };
                if let Some(w) = wire(encloser) {
                    fast.wildcard_parents.insert(w.into_boxed_slice());
                }
                let probes = [
                    format!("bootlab-fast-probe-a.{encloser}"),
                    format!("bootlab-fast-probe-bbbb.{encloser}"),
                ];
                if probes.iter().any(|p| zone.exists(p)) {
                    continue;
                }
                let (Some(enc_wire), Some(p1), Some(p2)) =
                    (wire(encloser), wire(&probes[0]), wire(&probes[1]))
                else {
                    continue;
                };
                for qtype in FAST_TYPES {
                    let template = |edns: bool| -> Option<(Template, ResponseCode)> {
                        let (r1, rc) = general(handler, &synthetic_query(&p1, qtype, edns))?;
                        let (r2, _) = general(handler, &synthetic_query(&p2, qtype, edns))?;
                        let t1 = r1.get(12 + p1.len() + 4..)?;
                        let t2 = r2.get(12 + p2.len() + 4..)?;
                        if r1[..12] != r2[..12] || t1 != t2 {
                            return None;
                        }
                        let mut header = [0u8; 12];
                        header.copy_from_slice(&r1[..12]);
                        Some((
                            Template {
                                header,
                                tail: t1.into(),
                            },
                            rc,
                        ))
                    };
                    let plain = template(false);
                    let edns = template(true);
                    let rcode = match (&plain, &edns) {
                        (Some((_, r)), _) | (None, Some((_, r))) => *r,
                        (None, None) => continue,
                    };
                    let mut key = enc_wire.clone();
                    key.extend_from_slice(&u16::from(qtype).to_be_bytes());
                    fast.wildcard.insert(
                        key.into_boxed_slice(),
                        StoredTemplate {
                            plain: plain.map(|(t, _)| t),
                            edns: edns.map(|(t, _)| t),
                            rcode,
                        },
                    );
                }
            }
        }
        fast
    }

    /// The mask of `FAST_TYPES` that are plain NODATA at `name` (it exists,
    /// holds no record of the type and no CNAME, and this zone answers
    /// for it), with the zone's NODATA template for the name's prefix
    /// length made (from this name's general-path reply) if it was missing.
    /// 0 when any of that does not hold: every type then goes through the
    /// general path once, as before.
    fn build_nodata(&mut self, handler: &Handler, at: &NameAt<'_>, name: &str, w: &[u8]) -> u16 {
        let NameAt {
            zone,
            zone_idx,
            soa_names,
            origin_wire,
        } = *at;
        let Some(types) = zone.owner_types(name) else {
            return 0;
        };
        if types.contains(&RecordType::CNAME) {
            return 0;
        }
        // The SOA's own names compress against a question name equal to or
        // under them: those replies differ from the zone's template.
        let under_soa_name = soa_names.iter().any(|k| {
            name == k
                || name
                    .strip_suffix(k.as_str())
                    .is_some_and(|head| head.ends_with('.'))
        });
        if under_soa_name {
            return 0;
        }
        // A name some longer zone of ours contains is answered from there.
        let answered_here = hickory_proto::rr::Name::from_ascii(format!("{name}."))
            .ok()
            .and_then(|n| handler.zones().zone_of(&n))
            == Some(zone_idx);
        if !answered_here {
            return 0;
        }
        let mut mask = 0u16;
        for (i, qtype) in FAST_TYPES.into_iter().enumerate() {
            if !types.contains(&qtype) {
                mask |= 1 << i;
            }
        }
        let Some(first) = FAST_TYPES
            .into_iter()
            .enumerate()
            .find_map(|(i, t)| (mask & (1 << i) != 0).then_some(t))
        else {
            return 0;
        };
        let bucket = (zone_idx, w.len() - origin_wire.len());
        if let std::collections::hash_map::Entry::Vacant(slot) = self.nodata.entry(bucket) {
            let template = |edns: bool| -> Option<Template> {
                let (reply, rcode) = general(handler, &synthetic_query(w, first, edns))?;
                // NOERROR, no answer: the shape every NODATA reply shares.
                if rcode != ResponseCode::NoError || reply.get(6..8)? != [0, 0] {
                    return None;
                }
                let header: [u8; 12] = reply.get(..12)?.try_into().ok()?;
                Some(Template {
                    header,
                    tail: reply.get(12 + w.len() + 4..)?.into(),
                })
            };
            let (plain, edns) = (template(false), template(true));
            if plain.is_none() || edns.is_none() {
                return 0;
            }
            slot.insert(StoredTemplate {
                plain,
                edns,
                rcode: ResponseCode::NoError,
            });
        }
        mask
    }

    /// NXDOMAIN templates of one zone, from three probe names of different
    /// lengths that do not exist (and no wildcard at the apex covers).
    fn build_nxdomain(
        &mut self,
        handler: &Handler,
        zone: &crate::zone::AuthZone,
        origin_wire: &[u8],
    ) {
        let labels = [
            "bootlab-fast-probe-a",
            "bootlab-fast-probe-bbbb",
            "bootlab-fast-probe-cccccccc",
        ];
        let mut stored = StoredNx::default();
        for edns in [false, true] {
            let mut probes: Vec<(Vec<u8>, usize)> = Vec::new();
            let mut header = None;
            for label in labels {
                let name = format!("{label}.{}", zone.origin);
                let Some(w) = wire(&name) else { return };
                if zone.exists(&name) {
                    return;
                }
                let Some((reply, ResponseCode::NXDomain)) =
                    general(handler, &synthetic_query(&w, RecordType::A, edns))
                else {
                    return;
                };
                let Some(tail) = reply.get(12 + w.len() + 4..) else {
                    return;
                };
                let h: [u8; 12] = match reply[..12].try_into() {
                    Ok(h) => h,
                    Err(_) => return,
                };
                if header.is_some_and(|prev| prev != h) {
                    return;
                }
                header = Some(h);
                probes.push((tail.to_vec(), w.len() - origin_wire.len()));
            }
            let Ok(probes) = <[(Vec<u8>, usize); 3]>::try_from(probes) else {
                return;
            };
            let (Some(pointers), Some(header)) = (moving_pointers(&probes), header) else {
                return;
            };
            let [(tail, base_prefix), _, _] = probes;
            let template = NxTemplate {
                base: Template {
                    header,
                    tail: tail.into_boxed_slice(),
                },
                pointers,
                base_prefix,
            };
            if edns {
                stored.edns = Some(template);
            } else {
                stored.plain = Some(template);
            }
        }
        stored.soa_names = zone
            .soa_name_keys()
            .iter()
            .filter_map(|k| wire(k))
            .map(Vec::into_boxed_slice)
            .collect();
        self.nxdomain.insert(origin_wire.into(), stored);
    }

    /// Number of precomputed (name, type) replies and templates.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len() + self.nxdomain.len() + self.nodata.len()
    }

    /// True when nothing is precomputed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// NXDOMAIN for a name under `origin` (of `origin_len` wire bytes) that
    /// no wildcard covers.
    fn nxdomain(
        &self,
        q: &[u8],
        p: &PlainQuery,
        origin_len: usize,
        edns: bool,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Option<ReplyInfo> {
        let name_len = p.name_len;
        let qtype = RecordType::from(u16::from_be_bytes([p.key[name_len], p.key[name_len + 1]]));
        if !FAST_TYPES.contains(&qtype) {
            return None;
        }
        let stored = self
            .nxdomain
            .get(&p.key[name_len.checked_sub(origin_len)?..name_len])?;
        if stored
            .soa_names
            .iter()
            .any(|n| p.key[..name_len].ends_with(n))
        {
            return None;
        }
        let template = if edns { &stored.edns } else { &stored.plain };
        let template = template.as_ref()?;
        let tail_start = template.base.write(q, name_len, limit, out)?;
        patch_pointers(
            &mut out[tail_start..],
            &template.pointers,
            template.base_prefix,
            name_len - origin_len,
        )?;
        out[0] = q[0];
        out[1] = q[1];
        out[2] |= q[2] & 0x01;
        out[3] |= q[3] & 0x10;
        Some(ReplyInfo {
            rcode: ResponseCode::NXDomain,
            truncated: false,
            fast: true,
            problem: None,
        })
    }

    /// Writes the reply into `out` when the query is plain and precomputed.
    pub fn answer(
        &self,
        q: &[u8],
        transport: Transport,
        max_udp: u16,
        out: &mut Vec<u8>,
    ) -> Option<ReplyInfo> {
        let p = parse_plain(q)?;
        let limit = match (transport, p.edns_payload) {
            (Transport::Tcp, _) => usize::from(u16::MAX),
            (Transport::Udp, None) => 512,
            (Transport::Udp, Some(size)) => {
                usize::from(size).clamp(512, usize::from(max_udp).max(512))
            }
        };
        let name_len = p.name_len;
        let edns = p.edns_payload.is_some();
        let rcode = if let Some(stored) = self.exact.get(&p.key[..name_len + 2]) {
            let (reply, opt) = match (edns, &stored.edns) {
                (false, _) => (stored.plain.as_deref()?, &[][..]),
                (true, EdnsReply::PlainWithOpt) => (stored.plain.as_deref()?, &self.opt[..]),
                (true, EdnsReply::Own(r)) => (&r[..], &[][..]),
                (true, EdnsReply::Missing) => return None,
            };
            if reply.len() + opt.len() > limit {
                return None;
            }
            out.clear();
            out.extend_from_slice(reply);
            if !opt.is_empty() {
                out.extend_from_slice(opt);
                let ar = u16::from_be_bytes([out[10], out[11]]).wrapping_add(1);
                out[10..12].copy_from_slice(&ar.to_be_bytes());
            }
            stored.rcode
        } else if let Some(e) = self.existing.get(&p.key[..name_len]) {
            let qtype =
                RecordType::from(u16::from_be_bytes([p.key[name_len], p.key[name_len + 1]]));
            let bit = FAST_TYPES.iter().position(|t| *t == qtype)?;
            if e.nodata & (1 << bit) == 0 {
                return None;
            }
            let stored = self.nodata.get(&(e.zone, name_len - e.origin_len))?;
            stored.write(q, name_len, edns, limit, out)?
        } else {
            // Closest encloser: the longest existing proper ancestor.
            let mut at = 0usize;
            let (encloser_start, origin_len) = loop {
                let len = usize::from(p.key[at]);
                if len == 0 {
                    return None;
                }
                at += 1 + len;
                if let Some(e) = self.existing.get(&p.key[at..name_len]) {
                    break (at, e.origin_len);
                }
            };
            if !self
                .wildcard_parents
                .contains(&p.key[encloser_start..name_len])
            {
                return self.nxdomain(q, &p, origin_len, edns, limit, out);
            }
            let mut wkey = [0u8; 257];
            let wlen = name_len + 2 - encloser_start;
            wkey[..wlen].copy_from_slice(&p.key[encloser_start..name_len + 2]);
            let stored = self.wildcard.get(&wkey[..wlen])?;
            stored.write(q, name_len, edns, limit, out)?
        };
        out[0] = q[0];
        out[1] = q[1];
        out[2] |= q[2] & 0x01;
        out[3] |= q[3] & 0x10;
        out[12..12 + name_len].copy_from_slice(&q[12..12 + name_len]);
        Some(ReplyInfo {
            rcode,
            truncated: false,
            fast: true,
            problem: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::HandlerConfig;

    /// Nearly every EDNS reply is the plain one plus the OPT record, kept
    /// once; an EDNS answer built from it is the general path's bytes
    /// (the integration tests compare every answer the same way).
    #[test]
    fn edns_replies_are_derived_from_the_plain_ones() {
        let inv = bootlab_testkit::LabBuilder::okd().build();
        let handler = Handler::new(&inv, HandlerConfig::default()).unwrap();
        let fast = FastAnswers::build(&handler);
        let derived = fast
            .exact
            .values()
            .filter(|s| matches!(s.edns, EdnsReply::PlainWithOpt))
            .count();
        assert!(!fast.opt.is_empty());
        assert!(
            derived * 10 >= fast.exact.len() * 9,
            "{derived} of {} derived",
            fast.exact.len()
        );
        let q = synthetic_query(
            &wire("master-0.okd.example.com").unwrap(),
            RecordType::A,
            true,
        );
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let info = fast.answer(&q, Transport::Udp, 1232, &mut a).unwrap();
        assert!(info.fast);
        handler.handle_general(&q, Transport::Udp, &mut b);
        assert_eq!(a, b);
    }
}
