//! The TFTP wire format (RFC 1350, RFC 2347 options): parsing what clients
//! send and encoding what the server sends. Pure: bytes in, values out.
//!
//! Parsing is strict where a wrong guess would serve the wrong thing (the
//! file name and mode must be NUL-terminated, the file name must be UTF-8)
//! and lenient where clients are known to differ (option names in any case,
//! trailing padding after the last option, duplicate options: first wins).

use std::fmt;

/// Opcodes (RFC 1350, RFC 2347).
pub mod opcode {
    /// Read request.
    pub const RRQ: u16 = 1;
    /// Write request.
    pub const WRQ: u16 = 2;
    /// Data block.
    pub const DATA: u16 = 3;
    /// Acknowledgement.
    pub const ACK: u16 = 4;
    /// Error.
    pub const ERROR: u16 = 5;
    /// Option acknowledgement.
    pub const OACK: u16 = 6;
}

/// Longest file name accepted in a request (the assets resolver's limit).
pub const MAX_FILENAME: usize = bootlab_boot::assets::MAX_PATH;

/// TFTP error codes (RFC 1350, RFC 2347).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    /// 0: not defined, see the message.
    Undefined = 0,
    /// 1: file not found.
    FileNotFound = 1,
    /// 2: access violation.
    AccessViolation = 2,
    /// 3: disk full or allocation exceeded.
    DiskFull = 3,
    /// 4: illegal TFTP operation.
    IllegalOperation = 4,
    /// 5: unknown transfer ID.
    UnknownTransferId = 5,
    /// 6: file already exists.
    FileExists = 6,
    /// 7: no such user.
    NoSuchUser = 7,
    /// 8: option negotiation refused (RFC 2347).
    OptionRefused = 8,
}

/// Transfer mode of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `octet`: bytes as they are.
    Octet,
    /// `netascii`: text with CR LF line ends.
    Netascii,
}

/// Read or write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// RRQ.
    Read,
    /// WRQ.
    Write,
}

/// A parsed read or write request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// RRQ or WRQ.
    pub kind: RequestKind,
    /// The requested file name, as sent.
    pub filename: String,
    /// Transfer mode.
    pub mode: Mode,
    /// Options as sent (name lowercased, first occurrence of each name kept),
    /// in request order. Negotiation is [`crate::options`]'s job.
    pub options: Vec<(String, String)>,
}

/// Why a datagram on the listening port is not a usable request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Fewer than two bytes.
    #[error("datagram too short")]
    TooShort,
    /// DATA, ACK, ERROR or OACK sent to the listening port: not ours to answer.
    #[error("opcode {0} is not a request")]
    NotARequest(u16),
    /// An opcode TFTP does not have.
    #[error("unknown opcode {0}")]
    UnknownOpcode(u16),
    /// The file name has no NUL terminator.
    #[error("file name not NUL-terminated")]
    UnterminatedFilename,
    /// The mode has no NUL terminator.
    #[error("mode not NUL-terminated")]
    UnterminatedMode,
    /// Empty file name.
    #[error("empty file name")]
    EmptyFilename,
    /// File name longer than [`MAX_FILENAME`].
    #[error("file name longer than {MAX_FILENAME} bytes")]
    FilenameTooLong,
    /// File name or option not UTF-8.
    #[error("not UTF-8")]
    NotUtf8,
    /// `mail` or something else.
    #[error("unsupported transfer mode {0:?}")]
    UnsupportedMode(String),
}

impl RequestError {
    /// A short stable name, used as the metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TooShort => "too_short",
            Self::NotARequest(_) => "not_a_request",
            Self::UnknownOpcode(_) => "unknown_opcode",
            Self::UnterminatedFilename | Self::UnterminatedMode => "unterminated",
            Self::EmptyFilename => "empty_filename",
            Self::FilenameTooLong => "filename_too_long",
            Self::NotUtf8 => "not_utf8",
            Self::UnsupportedMode(_) => "unsupported_mode",
        }
    }

    /// The ERROR packet the client gets, or `None` for silence. Packets
    /// that are not requests (a stray ACK, an ERROR) are dropped: answering
    /// an ERROR with an ERROR invites loops. Unknown opcodes are dropped
    /// too: a 2-byte datagram must not buy a 20-byte reply to a forged
    /// source address.
    pub fn reply(&self) -> Option<(ErrorCode, &'static str)> {
        match self {
            Self::TooShort | Self::NotARequest(_) | Self::UnknownOpcode(_) => None,
            Self::UnterminatedFilename
            | Self::UnterminatedMode
            | Self::EmptyFilename
            | Self::NotUtf8 => Some((ErrorCode::IllegalOperation, "malformed request")),
            Self::FilenameTooLong => Some((ErrorCode::IllegalOperation, "file name too long")),
            Self::UnsupportedMode(_) => {
                Some((ErrorCode::IllegalOperation, "unsupported transfer mode"))
            }
        }
    }
}

fn split_nul(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let pos = input.iter().position(|&b| b == 0)?;
    Some((&input[..pos], &input[pos + 1..]))
}

/// Longest option name or value kept; longer ones are ignored.
const MAX_OPTION_FIELD: usize = 64;
/// Options kept at most; more are ignored.
const MAX_OPTIONS: usize = 16;

/// Parses a datagram received on the listening port.
pub fn parse_request(datagram: &[u8]) -> Result<Request, RequestError> {
    let (op, rest) = match datagram {
        [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]), rest),
        _ => return Err(RequestError::TooShort),
    };
    let kind = match op {
        opcode::RRQ => RequestKind::Read,
        opcode::WRQ => RequestKind::Write,
        opcode::DATA | opcode::ACK | opcode::ERROR | opcode::OACK => {
            return Err(RequestError::NotARequest(op));
        }
        other => return Err(RequestError::UnknownOpcode(other)),
    };
    let (name, rest) = split_nul(rest).ok_or(RequestError::UnterminatedFilename)?;
    if name.is_empty() {
        return Err(RequestError::EmptyFilename);
    }
    if name.len() > MAX_FILENAME {
        return Err(RequestError::FilenameTooLong);
    }
    let filename = std::str::from_utf8(name).map_err(|_| RequestError::NotUtf8)?;
    let (mode, mut rest) = split_nul(rest).ok_or(RequestError::UnterminatedMode)?;
    let mode = match std::str::from_utf8(mode) {
        Ok(m) if m.eq_ignore_ascii_case("octet") => Mode::Octet,
        Ok(m) if m.eq_ignore_ascii_case("netascii") => Mode::Netascii,
        Ok(m) => {
            let shown: String = m.chars().take(16).collect();
            return Err(RequestError::UnsupportedMode(shown));
        }
        Err(_) => return Err(RequestError::NotUtf8),
    };
    let mut options: Vec<(String, String)> = Vec::new();
    // Pairs of NUL-terminated strings; an incomplete tail (padding some
    // clients add, or a truncated pair) is ignored.
    while let Some((name, after_name)) = split_nul(rest) {
        let Some((value, after_value)) = split_nul(after_name) else {
            break;
        };
        rest = after_value;
        if name.is_empty()
            || name.len() > MAX_OPTION_FIELD
            || value.len() > MAX_OPTION_FIELD
            || options.len() >= MAX_OPTIONS
        {
            continue;
        }
        let (Ok(name), Ok(value)) = (std::str::from_utf8(name), std::str::from_utf8(value)) else {
            continue;
        };
        let name = name.to_ascii_lowercase();
        if options.iter().any(|(n, _)| *n == name) {
            continue;
        }
        options.push((name, value.to_owned()));
    }
    Ok(Request {
        kind,
        filename: filename.to_owned(),
        mode,
        options,
    })
}

/// What a client sends during a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientPacket<'a> {
    /// ACK of a block number.
    Ack(u16),
    /// The client gave up (code, message bytes without NUL).
    Error(u16, &'a [u8]),
    /// Anything else (a stray request, garbage).
    Other,
}

/// Parses a datagram received on a transfer socket.
pub fn parse_client_packet(datagram: &[u8]) -> ClientPacket<'_> {
    match datagram {
        // Some clients pad ACKs; the block number is what counts.
        [0, 4, a, b, ..] => ClientPacket::Ack(u16::from_be_bytes([*a, *b])),
        [0, 5, a, b, msg @ ..] => {
            let msg = split_nul(msg).map_or(msg, |(m, _)| m);
            ClientPacket::Error(u16::from_be_bytes([*a, *b]), msg)
        }
        _ => ClientPacket::Other,
    }
}

/// Encodes an ERROR packet. The message is cut at 255 bytes.
pub fn encode_error(code: ErrorCode, message: &str) -> Vec<u8> {
    let msg = message.as_bytes();
    let msg = &msg[..msg.len().min(255)];
    let mut out = Vec::with_capacity(5 + msg.len());
    out.extend_from_slice(&opcode::ERROR.to_be_bytes());
    out.extend_from_slice(&(code as u16).to_be_bytes());
    out.extend(msg.iter().map(|&b| if b == 0 { b'?' } else { b }));
    out.push(0);
    out
}

/// Encodes an OACK with the given options, in order.
pub fn encode_oack(options: &[(&str, String)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&opcode::OACK.to_be_bytes());
    for (name, value) in options {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

/// Writes a DATA header for `block` into the first four bytes of `buf`.
pub fn put_data_header(buf: &mut [u8], block: u16) {
    buf[..2].copy_from_slice(&opcode::DATA.to_be_bytes());
    buf[2..4].copy_from_slice(&block.to_be_bytes());
}

/// Length of a DATA header.
pub const DATA_HEADER: usize = 4;

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Octet => "octet",
            Self::Netascii => "netascii",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rrq(parts: &[&[u8]]) -> Vec<u8> {
        let mut v = vec![0, 1];
        for p in parts {
            v.extend_from_slice(p);
        }
        v
    }

    #[test]
    fn plain_read_request() {
        let r = parse_request(&rrq(&[b"undionly.kpxe\0octet\0"])).unwrap();
        assert_eq!(r.kind, RequestKind::Read);
        assert_eq!(r.filename, "undionly.kpxe");
        assert_eq!(r.mode, Mode::Octet);
        assert!(r.options.is_empty());
    }

    #[test]
    fn options_lowercased_first_wins_padding_ignored() {
        let r = parse_request(&rrq(&[
            b"f\0OCTET\0BLKSIZE\x001468\0tsize\x000\0blksize\x00512\0windowsize\0",
        ]))
        .unwrap();
        assert_eq!(
            r.options,
            vec![
                ("blksize".to_owned(), "1468".to_owned()),
                ("tsize".to_owned(), "0".to_owned())
            ]
        );
        let r = parse_request(&rrq(&[b"f\0netascii\0timeout\x003\0\0\0\0"])).unwrap();
        assert_eq!(r.mode, Mode::Netascii);
        assert_eq!(r.options, vec![("timeout".to_owned(), "3".to_owned())]);
    }

    #[test]
    fn write_request_parses_as_write() {
        let mut v = vec![0, 2];
        v.extend_from_slice(b"x\0octet\0");
        assert_eq!(parse_request(&v).unwrap().kind, RequestKind::Write);
    }

    #[test]
    fn malformed_requests() {
        assert_eq!(parse_request(b""), Err(RequestError::TooShort));
        assert_eq!(parse_request(b"\0"), Err(RequestError::TooShort));
        assert_eq!(
            parse_request(&rrq(&[b"no-terminator"])),
            Err(RequestError::UnterminatedFilename)
        );
        assert_eq!(
            parse_request(&rrq(&[b"file\0octet"])),
            Err(RequestError::UnterminatedMode)
        );
        assert_eq!(
            parse_request(&rrq(&[b"\0octet\0"])),
            Err(RequestError::EmptyFilename)
        );
        assert_eq!(
            parse_request(&rrq(&[b"\xff\0octet\0"])),
            Err(RequestError::NotUtf8)
        );
        assert_eq!(
            parse_request(&rrq(&[b"f\0mail\0"])),
            Err(RequestError::UnsupportedMode("mail".into()))
        );
        let long = [vec![b'a'; MAX_FILENAME + 1], b"\0octet\0".to_vec()].concat();
        assert_eq!(
            parse_request(&rrq(&[&long])),
            Err(RequestError::FilenameTooLong)
        );
        // A 3-byte ERROR packet and a stray ACK are not requests: no reply.
        let e = parse_request(&[0, 5, 0]).unwrap_err();
        assert_eq!(e, RequestError::NotARequest(5));
        assert_eq!(e.reply(), None);
        assert_eq!(parse_request(&[0, 4, 0, 1]).unwrap_err().reply(), None);
        assert_eq!(parse_request(&[0, 9, 1, 2]).unwrap_err().reply(), None);
        assert_eq!(
            parse_request(&rrq(&[b"f"]))
                .unwrap_err()
                .reply()
                .map(|r| r.0),
            Some(ErrorCode::IllegalOperation)
        );
    }

    #[test]
    fn client_packets() {
        assert_eq!(
            parse_client_packet(&[0, 4, 1, 2]),
            ClientPacket::Ack(0x0102)
        );
        assert_eq!(
            parse_client_packet(&[0, 4, 0, 1, 0, 0]),
            ClientPacket::Ack(1)
        );
        assert_eq!(
            parse_client_packet(b"\0\x05\0\x08no\0"),
            ClientPacket::Error(8, b"no")
        );
        assert_eq!(parse_client_packet(&[0, 5, 0]), ClientPacket::Other);
        assert_eq!(parse_client_packet(&[0, 4, 1]), ClientPacket::Other);
    }

    #[test]
    fn encoding() {
        assert_eq!(
            encode_error(ErrorCode::FileNotFound, "nope"),
            b"\0\x05\0\x01nope\0".to_vec()
        );
        assert_eq!(
            encode_oack(&[("blksize", "1468".into()), ("tsize", "10".into())]),
            b"\0\x06blksize\x001468\0tsize\x0010\0".to_vec()
        );
        let mut buf = [0u8; 6];
        put_data_header(&mut buf, 0xfffe);
        assert_eq!(&buf[..4], &[0, 3, 0xff, 0xfe]);
    }
}
