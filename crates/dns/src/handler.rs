//! The pure request handler: query bytes in, reply bytes (or a forwarding
//! request, or a drop) out. No I/O, no clocks; the socket loops in
//! [`crate::server`] call it and count what it says.
//!
//! Two paths give byte-identical answers: the fast path ([`crate::fast`])
//! copies a precomputed reply and patches ID, RD/CD and the question's case;
//! the general path parses with hickory-proto, looks the name up in the
//! [`ZoneTable`] and encodes the reply. The fast table is built by running
//! the general path once per (name, type), so both always agree.

use std::net::SocketAddr;

use bootlab_inventory::Inventory;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use crate::fast::FastAnswers;
use crate::zone::{Lookup, ZoneError, ZoneTable};

/// Largest UDP payload we ever send or advertise (the DNS flag day 2020 value).
pub const DEFAULT_MAX_UDP_PAYLOAD: u16 = 1232;
/// Classic DNS UDP limit, used when the query has no EDNS.
const CLASSIC_UDP_PAYLOAD: usize = 512;

/// How the query arrived; decides the size limit of the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: replies are limited to 512 bytes or the client's EDNS size
    /// (capped), larger ones are truncated (TC=1).
    Udp,
    /// TCP: replies up to 65535 bytes.
    Tcp,
}

/// Why a request got no reply at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than a DNS header.
    TooShort,
    /// QR=1: a response, never answered (no reflection loops).
    NotAQuery,
}

impl DropReason {
    /// Short label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooShort => "too_short",
            Self::NotAQuery => "not_a_query",
        }
    }
}

/// What was written into the output buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyInfo {
    /// The reply's response code.
    pub rcode: ResponseCode,
    /// TC=1 was set (the full answer did not fit).
    pub truncated: bool,
    /// Answered from the precomputed table.
    pub fast: bool,
    /// What was wrong with the query, if it was bad input (for the log).
    pub problem: Option<String>,
}

/// The client side of a query, kept to build its reply later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Query ID.
    pub id: u16,
    /// Opcode.
    pub op_code: OpCode,
    /// RD bit (copied into the reply).
    pub recursion_desired: bool,
    /// CD bit (copied into the reply).
    pub checking_disabled: bool,
    /// The client's EDNS, if it sent an OPT record.
    pub edns: Option<ClientEdns>,
    /// How it arrived.
    pub transport: Transport,
    /// The question name exactly as the client spelled it on the wire
    /// (case preserved, uncompressed), or `None` when it used a pointer.
    pub raw_qname: Option<Vec<u8>>,
}

/// The client's EDNS parameters that shape a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientEdns {
    /// Advertised UDP payload size.
    pub max_payload: u16,
    /// DO bit.
    pub dnssec_ok: bool,
}

/// A query for a name under `egress.allow_domains`, to be forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardRequest {
    /// The client's side.
    pub head: RequestHead,
    /// The question, name lowercased.
    pub question: Query,
    /// Where to send it.
    pub upstreams: Vec<SocketAddr>,
}

/// The handler's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A reply is in the output buffer.
    Reply(ReplyInfo),
    /// Forward upstream; build the reply with [`Handler::forwarded_reply`].
    Forward(Box<ForwardRequest>),
    /// No reply.
    Drop(DropReason),
}

/// Settings of the handler.
#[derive(Debug, Clone)]
pub struct HandlerConfig {
    /// Largest UDP reply (and the size we advertise in EDNS).
    pub max_udp_payload: u16,
    /// Forwarding targets (already filtered: never ourselves).
    pub upstreams: Vec<SocketAddr>,
}

impl Default for HandlerConfig {
    fn default() -> Self {
        Self {
            max_udp_payload: DEFAULT_MAX_UDP_PAYLOAD,
            upstreams: Vec::new(),
        }
    }
}

/// The request handler for one inventory. Rebuilt on reload.
#[derive(Debug)]
pub struct Handler {
    zones: ZoneTable,
    fast: FastAnswers,
    allow_domains: Vec<Name>,
    config: HandlerConfig,
}

const RTYPE_TKEY: u16 = 249;
const RTYPE_TSIG: u16 = 250;
const RTYPE_IXFR: u16 = 251;
const RTYPE_AXFR: u16 = 252;
const RTYPE_MAILB: u16 = 253;
const RTYPE_MAILA: u16 = 254;
const RTYPE_OPT: u16 = 41;

/// The question name as it appears at offset 12, if uncompressed.
pub(crate) fn raw_qname(query: &[u8]) -> Option<&[u8]> {
    let mut at = 12usize;
    loop {
        let len = usize::from(*query.get(at)?);
        if len == 0 {
            return query.get(12..=at);
        }
        if len > 63 {
            return None;
        }
        at += 1 + len;
        if at - 12 > 255 {
            return None;
        }
    }
}

impl Handler {
    /// Builds the zone tables and the fast-path answers for `inv`.
    pub fn new(inv: &Inventory, config: HandlerConfig) -> Result<Self, ZoneError> {
        let zones = ZoneTable::from_inventory(inv)?;
        let mut handler = Self {
            zones,
            fast: FastAnswers::default(),
            allow_domains: inv
                .egress()
                .allow_domains
                .iter()
                .filter_map(|d| Name::from_ascii(format!("{}.", d.trim_end_matches('.'))).ok())
                .collect(),
            config,
        };
        handler.fast = FastAnswers::build(&handler);
        Ok(handler)
    }

    /// The zone tables.
    pub fn zones(&self) -> &ZoneTable {
        &self.zones
    }

    /// The configured forwarding targets.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.config.upstreams
    }

    /// The largest UDP reply.
    pub fn max_udp_payload(&self) -> u16 {
        self.config.max_udp_payload
    }

    /// How many answers the fast path holds.
    pub fn fast_entries(&self) -> usize {
        self.fast.len()
    }

    /// Answers one query. `out` is cleared and receives the reply.
    pub fn handle(&self, query: &[u8], transport: Transport, out: &mut Vec<u8>) -> Outcome {
        if let Some(info) = self
            .fast
            .answer(query, transport, self.config.max_udp_payload, out)
        {
            return Outcome::Reply(info);
        }
        self.handle_general(query, transport, out)
    }

    /// The general path alone (the fast path's reference; tests and fuzzing
    /// compare the two).
    pub fn handle_general(&self, query: &[u8], transport: Transport, out: &mut Vec<u8>) -> Outcome {
        out.clear();
        if query.len() < 12 {
            return Outcome::Drop(DropReason::TooShort);
        }
        if query[2] & 0x80 != 0 {
            return Outcome::Drop(DropReason::NotAQuery);
        }
        let opcode = (query[2] >> 3) & 0x0f;
        let mut head = RequestHead {
            id: u16::from_be_bytes([query[0], query[1]]),
            op_code: OpCode::from_u8(opcode),
            recursion_desired: query[2] & 0x01 != 0,
            checking_disabled: query[3] & 0x10 != 0,
            edns: None,
            transport,
            raw_qname: None,
        };
        let parsed = Message::from_vec(query);
        if opcode != 0 {
            let problem = format!("opcode {opcode} not implemented");
            return Outcome::Reply(self.header_only(
                &head,
                ResponseCode::NotImp,
                Some(problem),
                out,
            ));
        }
        let msg = match parsed {
            Ok(m) => m,
            Err(e) => {
                let problem = format!("malformed query: {e}");
                return Outcome::Reply(self.header_only(
                    &head,
                    ResponseCode::FormErr,
                    Some(problem),
                    out,
                ));
            }
        };
        head.edns = msg.edns.as_ref().map(|e| ClientEdns {
            max_payload: e.max_payload(),
            dnssec_ok: e.flags().dnssec_ok,
        });
        if msg.queries.len() != 1 {
            let problem = format!("{} questions (want 1)", msg.queries.len());
            return Outcome::Reply(self.header_only(
                &head,
                ResponseCode::FormErr,
                Some(problem),
                out,
            ));
        }
        // An IXFR query carries the client's SOA in the authority section.
        let is_ixfr = u16::from(msg.queries[0].query_type()) == RTYPE_IXFR;
        if !msg.answers.is_empty() || (!msg.authorities.is_empty() && !is_ixfr) {
            let problem = "records in the answer or authority section of a query".to_owned();
            return Outcome::Reply(self.header_only(
                &head,
                ResponseCode::FormErr,
                Some(problem),
                out,
            ));
        }
        head.raw_qname = raw_qname(query).map(<[u8]>::to_vec);
        let query0 = &msg.queries[0];
        let mut question = Query::query(query0.name().to_lowercase(), query0.query_type());
        question.set_query_class(query0.query_class());
        let reply = |rcode, problem: Option<String>, out: &mut Vec<u8>| {
            Outcome::Reply(self.encode(
                &head,
                Some(&question),
                Sections {
                    rcode,
                    ..Sections::default()
                },
                problem,
                out,
            ))
        };
        if let Some(edns) = &msg.edns
            && edns.version() > 0
        {
            let problem = format!("EDNS version {}", edns.version());
            return reply(ResponseCode::BADVERS, Some(problem), out);
        }
        let qtype = u16::from(question.query_type());
        match qtype {
            RTYPE_OPT => {
                return reply(
                    ResponseCode::FormErr,
                    Some("OPT as question type".into()),
                    out,
                );
            }
            RTYPE_AXFR | RTYPE_IXFR => return reply(ResponseCode::Refused, None, out),
            RTYPE_TKEY | RTYPE_TSIG | RTYPE_MAILA | RTYPE_MAILB => {
                return reply(
                    ResponseCode::NotImp,
                    Some(format!("meta type {qtype}")),
                    out,
                );
            }
            _ => {}
        }
        if question.query_class() != DNSClass::IN {
            return reply(ResponseCode::Refused, None, out);
        }
        match self.zones.lookup(question.name(), question.query_type()) {
            Lookup::NotOurs => {
                if self.forwardable(question.name()) {
                    if self.config.upstreams.is_empty() {
                        return reply(
                            ResponseCode::ServFail,
                            Some("no upstream resolver".into()),
                            out,
                        );
                    }
                    return Outcome::Forward(Box::new(ForwardRequest {
                        head,
                        question,
                        upstreams: self.config.upstreams.clone(),
                    }));
                }
                reply(ResponseCode::Refused, None, out)
            }
            Lookup::Authoritative {
                zone,
                nxdomain,
                answers,
                additionals,
                negative,
            } => {
                let authorities = if negative {
                    vec![self.zones.zones()[zone].negative_soa()]
                } else {
                    Vec::new()
                };
                Outcome::Reply(self.encode(
                    &head,
                    Some(&question),
                    Sections {
                        rcode: if nxdomain {
                            ResponseCode::NXDomain
                        } else {
                            ResponseCode::NoError
                        },
                        authoritative: true,
                        answers,
                        authorities,
                        additionals,
                    },
                    None,
                    out,
                ))
            }
        }
    }

    /// True when `name` is under `egress.allow_domains` (label by label).
    fn forwardable(&self, name: &Name) -> bool {
        self.allow_domains.iter().any(|d| d.zone_of(name))
    }

    /// The client's reply for a forwarded query, from the upstream's answer
    /// (`None`: upstream failed, SERVFAIL).
    pub fn forwarded_reply(
        &self,
        req: &ForwardRequest,
        upstream: Option<&Message>,
        out: &mut Vec<u8>,
    ) -> ReplyInfo {
        let sections = match upstream {
            Some(m) => Sections {
                rcode: m.metadata.response_code,
                authoritative: false,
                answers: m.answers.clone(),
                authorities: m.authorities.clone(),
                additionals: m.additionals.clone(),
            },
            None => Sections {
                rcode: ResponseCode::ServFail,
                ..Sections::default()
            },
        };
        self.encode(&req.head, Some(&req.question), sections, None, out)
    }

    fn header_only(
        &self,
        head: &RequestHead,
        rcode: ResponseCode,
        problem: Option<String>,
        out: &mut Vec<u8>,
    ) -> ReplyInfo {
        // A header-only error carries no OPT: we could not trust the query's.
        let head = RequestHead {
            edns: None,
            raw_qname: None,
            ..head.clone()
        };
        self.encode(
            &head,
            None,
            Sections {
                rcode,
                ..Sections::default()
            },
            problem,
            out,
        )
    }

    /// Encodes a reply, truncating to the transport's limit.
    fn encode(
        &self,
        head: &RequestHead,
        question: Option<&Query>,
        sections: Sections,
        problem: Option<String>,
        out: &mut Vec<u8>,
    ) -> ReplyInfo {
        let limit = match head.transport {
            Transport::Tcp => usize::from(u16::MAX),
            Transport::Udp => match head.edns {
                None => CLASSIC_UDP_PAYLOAD,
                Some(e) => usize::from(e.max_payload).clamp(
                    CLASSIC_UDP_PAYLOAD,
                    usize::from(self.config.max_udp_payload).max(CLASSIC_UDP_PAYLOAD),
                ),
            },
        };
        let mut msg = Message::new(head.id, MessageType::Response, head.op_code);
        msg.metadata.recursion_desired = head.recursion_desired;
        msg.metadata.checking_disabled = head.checking_disabled;
        msg.metadata.authoritative = sections.authoritative;
        msg.metadata.response_code = sections.rcode;
        if let Some(q) = question {
            msg.add_query(q.clone());
        }
        if let Some(client) = head.edns {
            let mut edns = Edns::new();
            edns.set_max_payload(self.config.max_udp_payload.max(512));
            edns.set_version(0);
            edns.set_dnssec_ok(client.dnssec_ok);
            msg.set_edns(edns);
        }
        let rcode = sections.rcode;
        msg.answers = sections.answers;
        msg.authorities = sections.authorities;
        msg.additionals = sections.additionals;
        let mut truncated = false;
        if !emit(&msg, out) || out.len() > limit {
            msg.answers.clear();
            msg.authorities.clear();
            msg.additionals.clear();
            msg.metadata.truncation = true;
            truncated = true;
            if !emit(&msg, out) {
                out.clear();
            }
        }
        // Echo the question's case (0x20): we encoded it lowercased.
        if let (Some(raw), Some(_)) = (&head.raw_qname, question) {
            let end = 12 + raw.len();
            if out.len() >= end && out[12..end].eq_ignore_ascii_case(raw) {
                out[12..end].copy_from_slice(raw);
            }
        }
        ReplyInfo {
            rcode,
            truncated,
            fast: false,
            problem,
        }
    }
}

fn emit(msg: &Message, out: &mut Vec<u8>) -> bool {
    out.clear();
    let mut encoder = BinEncoder::new(out);
    msg.emit(&mut encoder).is_ok()
}

/// The sections of a reply.
struct Sections {
    rcode: ResponseCode,
    authoritative: bool,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
}

impl Default for Sections {
    fn default() -> Self {
        Self {
            rcode: ResponseCode::NoError,
            authoritative: false,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        }
    }
}

/// A query in wire form, for tests, the fast table and benchmarks.
pub fn build_query(id: u16, name: &Name, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(name.clone(), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        msg.set_edns(e);
    }
    let mut out = Vec::new();
    // A query of one valid name always encodes.
    let _ = emit(&msg, &mut out);
    out
}
