//! The DHCPv4 wire format: requests in, replies out.
//!
//! The fixed BOOTP header is decoded and encoded with `dhcproto`. Options are
//! walked raw (RFC 3396 concatenation, RFC 2131 overload of `file`/`sname`)
//! so that option 82 can be echoed verbatim and malformed 60/77/93/97 can be
//! tolerated instead of ending the parse. Reply options are encoded one by
//! one with `dhcproto`, laid out in option 55's order within the client's
//! option 57 size, overloading `sname`/`file` when the options area is full.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use bootlab_inventory::MacAddr;
use dhcproto::v4::{self, DhcpOption, MessageType};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

/// The magic cookie that starts the options area.
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Size of the BOOTP header including the cookie.
pub const HEADER_LEN: usize = 240;
/// Replies are padded to at least this size (the BOOTP minimum some PXE ROMs insist on).
pub const MIN_REPLY_LEN: usize = 300;
/// The smallest maximum message size a client may announce (RFC 2132 9.10).
pub const MIN_MAX_MESSAGE_SIZE: usize = 576;
/// IPv4 + UDP header bytes counted in option 57.
const IP_UDP_HEADERS: usize = 28;
/// Largest reply we build (one Ethernet frame).
pub const MAX_REPLY_LEN: usize = 1500 - IP_UDP_HEADERS;

const SNAME: std::ops::Range<usize> = 44..108;
const FILE: std::ops::Range<usize> = 108..236;

/// Option codes the server reads or writes.
pub mod code {
    /// Pad.
    pub const PAD: u8 = 0;
    /// Host name.
    pub const HOSTNAME: u8 = 12;
    /// Requested IP address.
    pub const REQUESTED_IP: u8 = 50;
    /// Option overload.
    pub const OVERLOAD: u8 = 52;
    /// Message type.
    pub const MESSAGE_TYPE: u8 = 53;
    /// Server identifier.
    pub const SERVER_ID: u8 = 54;
    /// Parameter request list.
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    /// Maximum message size.
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    /// Vendor class identifier.
    pub const VENDOR_CLASS: u8 = 60;
    /// Client identifier.
    pub const CLIENT_ID: u8 = 61;
    /// User class.
    pub const USER_CLASS: u8 = 77;
    /// Client FQDN.
    pub const CLIENT_FQDN: u8 = 81;
    /// Relay agent information.
    pub const RELAY_AGENT_INFO: u8 = 82;
    /// Client system architecture.
    pub const CLIENT_ARCH: u8 = 93;
    /// Client machine identifier (UUID/GUID).
    pub const CLIENT_MACHINE_ID: u8 = 97;
    /// iPXE encapsulated options.
    pub const IPXE_ENCAP: u8 = 175;
    /// End.
    pub const END: u8 = 255;
}

/// Why a datagram is not a DHCP request we can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Shorter than the BOOTP header and cookie.
    #[error("datagram of {0} bytes is shorter than the 240-byte header")]
    TooShort(usize),
    /// The BOOTP header did not decode.
    #[error("header: {0}")]
    Header(String),
    /// `op` is not BOOTREQUEST.
    #[error("op {0} is not BOOTREQUEST")]
    NotRequest(u8),
    /// The magic cookie is wrong (plain BOOTP or garbage).
    #[error("bad magic cookie")]
    BadCookie,
    /// An option runs past the end of its area.
    #[error("option {code} is truncated")]
    Truncated {
        /// The option code.
        code: u8,
    },
    /// No option 53, or an unknown message type.
    #[error("no usable message type (option 53)")]
    NoMessageType,
    /// Not Ethernet (htype 1, hlen 6).
    #[error("hardware type {htype}/length {hlen} is not Ethernet")]
    NotEthernet {
        /// htype.
        htype: u8,
        /// hlen.
        hlen: u8,
    },
}

/// Options as sent: code -> concatenated data (RFC 3396), from the options
/// area and, when option 52 says so, from `file` and `sname`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawOptions(BTreeMap<u8, Vec<u8>>);

impl RawOptions {
    /// The data of option `code`.
    pub fn get(&self, code: u8) -> Option<&[u8]> {
        self.0.get(&code).map(Vec::as_slice)
    }

    /// True when option `code` is present (possibly empty).
    pub fn contains(&self, code: u8) -> bool {
        self.0.contains_key(&code)
    }

    /// Option codes present, ascending.
    pub fn codes(&self) -> impl Iterator<Item = u8> + '_ {
        self.0.keys().copied()
    }

    fn walk(&mut self, area: &[u8]) -> Result<(), ParseError> {
        let mut i = 0;
        while i < area.len() {
            let c = area[i];
            match c {
                code::PAD => i += 1,
                code::END => break,
                _ => {
                    let Some(&len) = area.get(i + 1) else {
                        return Err(ParseError::Truncated { code: c });
                    };
                    let start = i + 2;
                    let end = start + usize::from(len);
                    let Some(data) = area.get(start..end) else {
                        return Err(ParseError::Truncated { code: c });
                    };
                    self.0.entry(c).or_default().extend_from_slice(data);
                    i = end;
                }
            }
        }
        Ok(())
    }

    /// [`Self::walk`] that keeps the options before one that runs past the
    /// end of the area (real firmware sends such packets; lenient servers
    /// answer from what parsed) and returns that option's code.
    fn walk_lenient(&mut self, area: &[u8]) -> Option<u8> {
        match self.walk(area) {
            Ok(()) => None,
            Err(ParseError::Truncated { code }) => Some(code),
            Err(_) => None,
        }
    }

    /// Decodes option `code` with dhcproto's typed decoder (`None` when
    /// absent, `Err` when malformed). Only for options of at most 255 bytes.
    fn typed(&self, c: u8) -> Option<Result<DhcpOption, ()>> {
        let data = self.get(c)?;
        let len = u8::try_from(data.len()).ok()?;
        let mut tlv = Vec::with_capacity(data.len() + 2);
        tlv.push(c);
        tlv.push(len);
        tlv.extend_from_slice(data);
        Some(DhcpOption::decode(&mut Decoder::new(&tlv)).map_err(|_| ()))
    }

    /// An option that must be exactly one IPv4 address.
    fn ip(&self, c: u8) -> Option<Result<Ipv4Addr, ()>> {
        let data = self.get(c)?;
        Some(
            <[u8; 4]>::try_from(data)
                .map(Ipv4Addr::from)
                .map_err(|_| ()),
        )
    }
}

/// A decoded DHCP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The message type (option 53).
    pub msg_type: MessageType,
    /// Transaction id.
    pub xid: u32,
    /// Relay hops.
    pub hops: u8,
    /// Seconds since the client started.
    pub secs: u16,
    /// Raw flags (bit 15: broadcast).
    pub flags: u16,
    /// Client address (RENEWING/REBINDING/INFORM).
    pub ciaddr: Ipv4Addr,
    /// Relay address.
    pub giaddr: Ipv4Addr,
    /// Client hardware address.
    pub mac: MacAddr,
    /// Raw `chaddr` (16 bytes, echoed).
    pub chaddr: [u8; 16],
    /// Every option.
    pub options: RawOptions,
    /// Option 50, when well-formed.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54, when well-formed.
    pub server_id: Option<Ipv4Addr>,
    /// Option 57, when well-formed.
    pub max_message_size: Option<u16>,
    /// Option 55 (order kept).
    pub parameter_request_list: Vec<u8>,
    /// Options that were present but malformed (codes), for logs and counters.
    pub malformed: Vec<u8>,
}

impl Request {
    /// True when the broadcast flag is set.
    pub fn broadcast(&self) -> bool {
        self.flags & 0x8000 != 0
    }

    /// Option 82 verbatim, if present.
    pub fn relay_agent_info(&self) -> Option<&[u8]> {
        self.options.get(code::RELAY_AGENT_INFO)
    }

    /// What the client says about its firmware (60, 77, 93, 175). Malformed
    /// values are left out (and listed in [`Request::malformed`]).
    pub fn client_info(&self) -> bootlab_boot::ClientInfo {
        bootlab_boot::ClientInfo {
            arch: self
                .options
                .get(code::CLIENT_ARCH)
                .and_then(bootlab_boot::decision::ClientInfo::parse_arch),
            vendor_class: self
                .options
                .get(code::VENDOR_CLASS)
                .filter(|v| !v.is_empty())
                .map(|v| String::from_utf8_lossy(v).into_owned()),
            user_class: self
                .options
                .get(code::USER_CLASS)
                .filter(|v| !v.is_empty())
                .map(<[u8]>::to_vec),
            ipxe_options: self.options.contains(code::IPXE_ENCAP),
        }
    }

    /// Option 12 as text, when present and printable.
    pub fn hostname(&self) -> Option<&str> {
        let h = std::str::from_utf8(self.options.get(code::HOSTNAME)?).ok()?;
        (!h.is_empty() && h.len() <= 63).then_some(h)
    }

    /// Parses a datagram.
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        if bytes.len() < HEADER_LEN {
            return Err(ParseError::TooShort(bytes.len()));
        }
        let header = v4::Message::decode(&mut Decoder::new(&bytes[..HEADER_LEN]))
            .map_err(|e| ParseError::Header(e.to_string()))?;
        if bytes[0] != 1 {
            return Err(ParseError::NotRequest(bytes[0]));
        }
        if bytes[236..240] != MAGIC_COOKIE {
            return Err(ParseError::BadCookie);
        }
        let (htype, hlen) = (bytes[1], bytes[2]);
        if htype != 1 || hlen != 6 {
            return Err(ParseError::NotEthernet { htype, hlen });
        }
        let mut options = RawOptions::default();
        // An option cut off at the end of its area is left out (and
        // reported as malformed); the rest is used.
        let mut cut = Vec::new();
        cut.extend(options.walk_lenient(&bytes[HEADER_LEN..]));
        // RFC 2131 4.1: option 52 moves more options into file and/or sname.
        if let Some(&[overload]) = options.get(code::OVERLOAD) {
            if overload & 1 != 0 {
                cut.extend(options.walk_lenient(&bytes[FILE]));
            }
            if overload & 2 != 0 {
                cut.extend(options.walk_lenient(&bytes[SNAME]));
            }
        }
        // A message whose type itself is cut off is not answered.
        let msg_type = match options.get(code::MESSAGE_TYPE) {
            Some(&[t @ 1..=8]) => MessageType::from(t),
            _ if cut.contains(&code::MESSAGE_TYPE) => {
                return Err(ParseError::Truncated {
                    code: code::MESSAGE_TYPE,
                });
            }
            _ => return Err(ParseError::NoMessageType),
        };
        let mut malformed = cut;
        let mut ip = |c: u8| match options.ip(c) {
            Some(Ok(ip)) => Some(ip),
            Some(Err(())) => {
                malformed.push(c);
                None
            }
            None => None,
        };
        let requested_ip = ip(code::REQUESTED_IP);
        let server_id = ip(code::SERVER_ID);
        let max_message_size = match options.get(code::MAX_MESSAGE_SIZE) {
            Some(&[a, b]) => Some(u16::from_be_bytes([a, b])),
            Some(_) => {
                malformed.push(code::MAX_MESSAGE_SIZE);
                None
            }
            None => None,
        };
        let parameter_request_list = options
            .get(code::PARAMETER_REQUEST_LIST)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        // Tolerated but reported: firmware identification and names.
        if let Some(a) = options.get(code::CLIENT_ARCH) {
            if bootlab_boot::ClientInfo::parse_arch(a).is_none() {
                malformed.push(code::CLIENT_ARCH);
            }
        }
        if let Some(v) = options.get(code::VENDOR_CLASS) {
            if v.is_empty() || std::str::from_utf8(v).is_err() {
                malformed.push(code::VENDOR_CLASS);
            }
        }
        if options.get(code::USER_CLASS).is_some_and(<[u8]>::is_empty) {
            malformed.push(code::USER_CLASS);
        }
        if let Some(m) = options.get(code::CLIENT_MACHINE_ID) {
            // RFC 4578: type 0 followed by a 16-byte GUID.
            if m.len() != 17 || m[0] != 0 {
                malformed.push(code::CLIENT_MACHINE_ID);
            }
        }
        if let Some(h) = options.get(code::HOSTNAME) {
            if h.is_empty() || h.len() > 63 || std::str::from_utf8(h).is_err() {
                malformed.push(code::HOSTNAME);
            }
        }
        if let Some(f) = options.get(code::CLIENT_FQDN) {
            // Length first: dhcproto's decoder asserts at least 3 bytes.
            if f.len() < 3
                || !fqdn_labels_ok(&f[3..])
                || matches!(options.typed(code::CLIENT_FQDN), Some(Err(())))
            {
                malformed.push(code::CLIENT_FQDN);
            }
        }
        if options.get(code::CLIENT_ID).is_some_and(|c| c.len() < 2) {
            malformed.push(code::CLIENT_ID);
        }
        let mut mac_bytes = [0u8; 6];
        mac_bytes.copy_from_slice(&bytes[28..34]);
        let mut chaddr = [0u8; 16];
        chaddr.copy_from_slice(header.chaddr().get(..16).unwrap_or(&bytes[28..44]));
        Ok(Self {
            msg_type,
            xid: header.xid(),
            hops: header.hops(),
            secs: header.secs(),
            flags: u16::from(header.flags()),
            ciaddr: header.ciaddr(),
            giaddr: header.giaddr(),
            mac: MacAddr(mac_bytes),
            chaddr,
            options,
            requested_ip,
            server_id,
            max_message_size,
            parameter_request_list,
            malformed,
        })
    }
}

/// Checks the domain part of option 81: canonical wire labels of at most 63
/// bytes, or ASCII dotted labels of at most 63 bytes each.
fn fqdn_labels_ok(name: &[u8]) -> bool {
    if name.is_empty() {
        return true;
    }
    if name.len() > 255 {
        return false;
    }
    if name[0] < 64 && name.iter().all(|b| !b.is_ascii_graphic() || *b < 64) {
        // Looks like wire format: walk the labels.
        let mut i = 0;
        while i < name.len() {
            let l = usize::from(name[i]);
            if l == 0 {
                return true;
            }
            if l > 63 {
                return false;
            }
            i += 1 + l;
        }
        return i == name.len();
    }
    name.split(|b| *b == b'.').all(|l| l.len() <= 63)
}

/// One encoded option (code, and its TLV bytes, possibly several chunks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedOption {
    /// Option code.
    pub code: u8,
    /// The bytes that go on the wire, code and length included.
    pub tlv: Vec<u8>,
}

impl EncodedOption {
    /// Encodes a typed option with dhcproto.
    pub fn typed(opt: &DhcpOption) -> Self {
        let code = u8::from(v4::OptionCode::from(opt));
        let mut tlv = Vec::new();
        // Encoding into a Vec cannot run out of room; a failure would be a
        // dhcproto bug, and an empty option is dropped by the layout.
        if opt.encode(&mut Encoder::new(&mut tlv)).is_err() {
            tlv.clear();
        }
        Self { code, tlv }
    }

    /// An option from raw data (chunked per RFC 3396 when over 255 bytes).
    pub fn raw(code: u8, data: &[u8]) -> Self {
        let mut tlv = Vec::with_capacity(data.len() + 2);
        if data.is_empty() {
            tlv.extend_from_slice(&[code, 0]);
        }
        for chunk in data.chunks(255) {
            tlv.push(code);
            tlv.push(chunk.len() as u8);
            tlv.extend_from_slice(chunk);
        }
        Self { code, tlv }
    }
}

/// A reply, before layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// OFFER, ACK or NAK.
    pub msg_type: MessageType,
    /// Echoed.
    pub xid: u32,
    /// Echoed (the broadcast bit matters to relays).
    pub flags: u16,
    /// Client address (INFORM, RENEWING).
    pub ciaddr: Ipv4Addr,
    /// Your address.
    pub yiaddr: Ipv4Addr,
    /// Next server.
    pub siaddr: Ipv4Addr,
    /// Relay address, echoed.
    pub giaddr: Ipv4Addr,
    /// Echoed.
    pub chaddr: [u8; 16],
    /// Boot file name for the `file` header field.
    pub boot_file: Option<String>,
    /// Options in the server's preferred order. Option 53 is added by
    /// [`Reply::encode`]; 82 is placed last.
    pub options: Vec<EncodedOption>,
    /// Option codes that must be sent whatever the size (53 is implied).
    pub mandatory: Vec<u8>,
    /// The client's option 55, for ordering.
    pub parameter_request_list: Vec<u8>,
    /// The client's option 57.
    pub max_message_size: Option<u16>,
}

/// Which area of the message an option went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Area {
    Options,
    File,
    Sname,
}

impl Reply {
    /// The largest message this reply may be (option 57 less IP/UDP headers,
    /// at least 576 - 28, at most one Ethernet frame).
    pub fn size_limit(&self) -> usize {
        let announced = self
            .max_message_size
            .map_or(MIN_MAX_MESSAGE_SIZE, usize::from);
        (announced.max(MIN_MAX_MESSAGE_SIZE) - IP_UDP_HEADERS).min(MAX_REPLY_LEN)
    }

    /// Options in send order: 53, 54, then the client's option 55 order,
    /// then the rest in server order; 82 last.
    fn ordered(&self) -> Vec<&EncodedOption> {
        let rank = |o: &EncodedOption| -> (u8, usize) {
            match o.code {
                code::MESSAGE_TYPE => (0, 0),
                code::SERVER_ID => (1, 0),
                code::RELAY_AGENT_INFO => (4, 0),
                c => match self.parameter_request_list.iter().position(|p| *p == c) {
                    Some(i) => (2, i),
                    None => (3, 0),
                },
            }
        };
        let mut v: Vec<&EncodedOption> =
            self.options.iter().filter(|o| !o.tlv.is_empty()).collect();
        // Stable: the server order is kept within each rank.
        v.sort_by_key(|o| rank(o));
        v
    }

    /// Encodes the reply within [`Reply::size_limit`]. Options that fit
    /// nowhere are left out, least wanted first; returns the bytes and the
    /// codes left out.
    pub fn encode(&self) -> (Vec<u8>, Vec<u8>) {
        let limit = self.size_limit();
        let msg_type = EncodedOption::raw(code::MESSAGE_TYPE, &[u8::from(self.msg_type)]);
        let mut ordered = vec![&msg_type];
        ordered.extend(self.ordered());
        let file_in_header = self.boot_file.as_deref().filter(|f| f.len() < FILE.len());
        // Room in the options area: the limit less header and End.
        let main_room = limit.saturating_sub(HEADER_LEN + 1);
        let is_mandatory =
            |o: &EncodedOption| o.code == code::MESSAGE_TYPE || self.mandatory.contains(&o.code);
        let file_room = if file_in_header.is_some() {
            0
        } else {
            FILE.len() - 1
        };
        let sname_room = SNAME.len() - 1;
        // First without overload; when something does not fit, again with
        // 3 bytes kept for option 52 and the file/sname areas open.
        let mut layout = place(&ordered, &is_mandatory, main_room, 0, 0);
        if layout.placement.iter().any(Option::is_none) {
            layout = place(
                &ordered,
                &is_mandatory,
                main_room.saturating_sub(3),
                file_room,
                sname_room,
            );
        }
        let Layout {
            placement,
            used_file,
            used_sname,
        } = layout;
        let dropped: Vec<u8> = ordered
            .iter()
            .zip(&placement)
            .filter(|(_, p)| p.is_none())
            .map(|(o, _)| o.code)
            .collect();
        let overload = u8::from(used_file > 0) | (u8::from(used_sname > 0) << 1);
        let area_bytes = |area: Area, size: usize| -> Vec<u8> {
            let mut b = Vec::with_capacity(size);
            for (o, p) in ordered.iter().zip(&placement) {
                if *p == Some(area) {
                    b.extend_from_slice(&o.tlv);
                }
            }
            b.push(code::END);
            b.resize(size, 0);
            b
        };
        let mut header = v4::Message::new_with_id(
            self.xid,
            self.ciaddr,
            self.yiaddr,
            self.siaddr,
            self.giaddr,
            &self.chaddr[..6],
        );
        header.set_opcode(v4::Opcode::BootReply);
        header.set_flags(v4::Flags::new(self.flags));
        if overload & 1 != 0 {
            header.set_fname(&area_bytes(Area::File, FILE.len()));
        } else if let Some(f) = file_in_header {
            header.set_fname(f.as_bytes());
        }
        if overload & 2 != 0 {
            header.set_sname(&area_bytes(Area::Sname, SNAME.len()));
        }
        let mut out = Vec::with_capacity(limit.max(MIN_REPLY_LEN));
        if header.encode(&mut Encoder::new(&mut out)).is_err() {
            // Only fails on impossible field sizes; send nothing rather than garbage.
            return (Vec::new(), ordered.iter().map(|o| o.code).collect());
        }
        // The full chaddr (hlen stays 6).
        out[28..44].copy_from_slice(&self.chaddr);
        let mut first = true;
        for (o, p) in ordered.iter().zip(&placement) {
            if *p == Some(Area::Options) {
                out.extend_from_slice(&o.tlv);
                if first && overload != 0 {
                    out.extend_from_slice(&[code::OVERLOAD, 1, overload]);
                }
                first = false;
            }
        }
        out.push(code::END);
        if out.len() < MIN_REPLY_LEN {
            out.resize(MIN_REPLY_LEN, 0);
        }
        (out, dropped)
    }
}

struct Layout {
    placement: Vec<Option<Area>>,
    used_file: usize,
    used_sname: usize,
}

/// Places options into areas: mandatory ones first, then the rest in order.
fn place(
    ordered: &[&EncodedOption],
    is_mandatory: &dyn Fn(&EncodedOption) -> bool,
    main_room: usize,
    file_room: usize,
    sname_room: usize,
) -> Layout {
    let mut placement: Vec<Option<Area>> = vec![None; ordered.len()];
    let (mut used_main, mut used_file, mut used_sname) = (0usize, 0usize, 0usize);
    for mandatory_pass in [true, false] {
        for (i, o) in ordered.iter().enumerate() {
            if is_mandatory(o) != mandatory_pass {
                continue;
            }
            let n = o.tlv.len();
            if used_main + n <= main_room {
                used_main += n;
                placement[i] = Some(Area::Options);
            } else if used_file + n <= file_room {
                used_file += n;
                placement[i] = Some(Area::File);
            } else if used_sname + n <= sname_room {
                used_sname += n;
                placement[i] = Some(Area::Sname);
            }
        }
    }
    Layout {
        placement,
        used_file,
        used_sname,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(options: Vec<EncodedOption>, prl: Vec<u8>, max: Option<u16>) -> Reply {
        Reply {
            msg_type: MessageType::Offer,
            xid: 7,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::new(10, 0, 0, 5),
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr: [1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            boot_file: None,
            options,
            mandatory: vec![code::SERVER_ID],
            parameter_request_list: prl,
            max_message_size: max,
        }
    }

    #[test]
    fn option_order_follows_55() {
        let opts = vec![
            EncodedOption::raw(code::SERVER_ID, &[10, 0, 0, 1]),
            EncodedOption::raw(1, &[255, 255, 255, 0]),
            EncodedOption::raw(3, &[10, 0, 0, 1]),
            EncodedOption::raw(6, &[10, 0, 0, 1]),
        ];
        let (bytes, dropped) = reply(opts, vec![6, 3, 1], None).encode();
        assert!(dropped.is_empty());
        let codes: Vec<u8> = walk_codes(&bytes[HEADER_LEN..]);
        assert_eq!(codes, vec![53, 54, 6, 3, 1]);
        assert!(bytes.len() >= MIN_REPLY_LEN);
    }

    fn walk_codes(area: &[u8]) -> Vec<u8> {
        let mut raw = RawOptions::default();
        let mut codes = Vec::new();
        let mut i = 0;
        while i < area.len() && area[i] != 255 {
            if area[i] == 0 {
                i += 1;
                continue;
            }
            codes.push(area[i]);
            i += 2 + usize::from(area[i + 1]);
        }
        raw.walk(area).unwrap();
        codes
    }

    #[test]
    fn overload_when_the_options_area_is_full() {
        let mut opts = vec![EncodedOption::raw(code::SERVER_ID, &[10, 0, 0, 1])];
        for c in 200..210u8 {
            opts.push(EncodedOption::raw(c, &[c; 28]));
        }
        let r = reply(opts, vec![], None);
        let (bytes, dropped) = r.encode();
        assert!(bytes.len() <= r.size_limit(), "{}", bytes.len());
        // Parse it back as if it were a request, to read the overloaded areas.
        let mut req = bytes.clone();
        req[0] = 1;
        let mut raw = RawOptions::default();
        raw.walk(&req[HEADER_LEN..]).unwrap();
        let ov = raw.get(code::OVERLOAD).unwrap()[0];
        assert_ne!(ov, 0);
        if ov & 1 != 0 {
            raw.walk(&req[FILE]).unwrap();
        }
        if ov & 2 != 0 {
            raw.walk(&req[SNAME]).unwrap();
        }
        let placed: Vec<u8> = (200..210u8).filter(|c| raw.contains(*c)).collect();
        assert_eq!(placed.len() + dropped.len(), 10);
        assert!(placed.len() > 8, "overload should fit more: {placed:?}");
    }

    #[test]
    fn bigger_57_means_no_drop() {
        let mut opts = vec![EncodedOption::raw(code::SERVER_ID, &[10, 0, 0, 1])];
        for c in 200..220u8 {
            opts.push(EncodedOption::raw(c, &[c; 40]));
        }
        let (small, dropped_small) = reply(opts.clone(), vec![], None).encode();
        let (big, dropped_big) = reply(opts, vec![], Some(1500)).encode();
        assert!(!dropped_small.is_empty());
        assert!(dropped_big.is_empty());
        assert!(small.len() <= 548);
        assert!(big.len() > 548 && big.len() <= 1472);
    }

    #[test]
    fn truncated_option_is_an_error() {
        let mut raw = RawOptions::default();
        assert_eq!(raw.walk(&[53, 1]), Err(ParseError::Truncated { code: 53 }));
        assert_eq!(raw.walk(&[61]), Err(ParseError::Truncated { code: 61 }));
    }

    #[test]
    fn concatenation() {
        let mut raw = RawOptions::default();
        raw.walk(&[82, 2, 1, 2, 0, 82, 1, 3, 255]).unwrap();
        assert_eq!(raw.get(82), Some(&[1u8, 2, 3][..]));
    }

    #[test]
    fn fqdn_labels() {
        assert!(fqdn_labels_ok(b"host.example.com"));
        assert!(fqdn_labels_ok(&[4, b'h', b'o', b's', b't', 0]));
        let long = vec![b'a'; 64];
        assert!(!fqdn_labels_ok(&long));
        let mut wire = vec![64u8];
        wire.extend(vec![b'a'; 64]);
        wire.push(0);
        assert!(!fqdn_labels_ok(&wire));
    }
}
