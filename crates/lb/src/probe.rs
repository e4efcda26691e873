//! One health check against one backend: `tcp` (connect), `tls` (connect +
//! handshake), `https` (handshake + `GET path`, expected status), all within
//! one deadline. [`parse_status_line`] is the only parser (fuzzed:
//! `fuzz/fuzz_targets/lb_status_line.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::HealthCheck;
use crate::tls::check_connector;

/// Why a check failed. Its `Display` is what status and events show.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The whole check took longer than its deadline.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The TCP connect failed.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// The TLS handshake failed.
    #[error("tls handshake: {0}")]
    Tls(std::io::Error),
    /// Sending the request or reading the answer failed.
    #[error("http: {0}")]
    Io(std::io::Error),
    /// The answer was not an HTTP status line.
    #[error("http: {0}")]
    BadResponse(#[from] StatusLineError),
    /// The connection closed before a status line.
    #[error("http: connection closed before a status line")]
    NoResponse,
    /// The status was not the expected one.
    #[error("http status {got}, expected {want}")]
    Status {
        /// What the backend answered.
        got: u16,
        /// What the check expects.
        want: u16,
    },
}

/// The longest status line accepted.
pub const MAX_STATUS_LINE: usize = 1024;

/// Runs `check` against `addr`, all of it within `deadline`.
pub async fn probe(
    check: &HealthCheck,
    addr: SocketAddr,
    deadline: Duration,
) -> Result<(), ProbeError> {
    tokio::time::timeout(deadline, probe_inner(check, addr))
        .await
        .unwrap_or(Err(ProbeError::Timeout(deadline)))
}

async fn probe_inner(check: &HealthCheck, addr: SocketAddr) -> Result<(), ProbeError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(ProbeError::Connect)?;
    let (path, want) = match check {
        HealthCheck::Tcp => return Ok(()),
        HealthCheck::Tls => (None, 0),
        HealthCheck::Https { path, status } => (Some(path.as_str()), *status),
    };
    let _ = tcp.set_nodelay(true);
    // An IP address as server name: rustls sends no SNI.
    let name = ServerName::IpAddress(addr.ip().into());
    let mut tls = check_connector()
        .connect(name, tcp)
        .await
        .map_err(ProbeError::Tls)?;
    let Some(path) = path else {
        let _ = tls.shutdown().await;
        return Ok(());
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: bootlab-lb-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes())
        .await
        .map_err(ProbeError::Io)?;
    tls.flush().await.map_err(ProbeError::Io)?;
    let mut buf = Vec::with_capacity(256);
    let got = loop {
        let mut chunk = [0u8; 256];
        let n = tls.read(&mut chunk).await.map_err(ProbeError::Io)?;
        if n == 0 {
            return Err(ProbeError::NoResponse);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(status) = parse_status_line(&buf)? {
            break status;
        }
    };
    let _ = tls.shutdown().await;
    if got == want {
        Ok(())
    } else {
        Err(ProbeError::Status { got, want })
    }
}

/// Why a response did not start with a status line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusLineError {
    /// No `HTTP/1.x ` prefix.
    #[error("not an HTTP/1.x status line")]
    NotHttp,
    /// The status code is not three digits.
    #[error("bad status code")]
    BadStatus,
    /// No line end within [`MAX_STATUS_LINE`] bytes.
    #[error("status line longer than {MAX_STATUS_LINE} bytes")]
    TooLong,
}

/// Reads the status code from the start of an HTTP/1.x response:
/// `Ok(None)` means more bytes are needed, an error means the bytes can
/// never become a status line. Only the code is interpreted.
pub fn parse_status_line(buf: &[u8]) -> Result<Option<u16>, StatusLineError> {
    const PREFIX: &[u8] = b"HTTP/1.";
    let head = &buf[..buf.len().min(PREFIX.len())];
    if !PREFIX.starts_with(head) {
        return Err(StatusLineError::NotHttp);
    }
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > MAX_STATUS_LINE {
            Err(StatusLineError::TooLong)
        } else {
            Ok(None)
        };
    };
    if end > MAX_STATUS_LINE {
        return Err(StatusLineError::TooLong);
    }
    let line = &buf[..end];
    // "HTTP/1.x NNN" then end of line or a space and a reason phrase.
    if line.len() < 12 || !line[7].is_ascii_digit() || line[8] != b' ' {
        return Err(StatusLineError::NotHttp);
    }
    let code = &line[9..12];
    if !code.iter().all(u8::is_ascii_digit) || code[0] == b'0' {
        return Err(StatusLineError::BadStatus);
    }
    match line.get(12) {
        None | Some(b' ' | b'\r') => {}
        Some(_) => return Err(StatusLineError::BadStatus),
    }
    let status = code
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    Ok(Some(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Ok(Some(200)));
        assert_eq!(
            parse_status_line(b"HTTP/1.0 500 Internal Server Error\r\nX: y\r\n"),
            Ok(Some(500))
        );
        assert_eq!(parse_status_line(b"HTTP/1.1 204\r\n"), Ok(Some(204)));
        assert_eq!(parse_status_line(b"HTTP/1.1 404\n"), Ok(Some(404)));
    }

    #[test]
    fn partial_lines_need_more() {
        for partial in [
            &b""[..],
            b"H",
            b"HTTP/1.",
            b"HTTP/1.1 20",
            b"HTTP/1.1 200 OK",
        ] {
            assert_eq!(parse_status_line(partial), Ok(None), "{partial:?}");
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(
            parse_status_line(b"SSH-2.0-OpenSSH\r\n"),
            Err(StatusLineError::NotHttp)
        );
        assert_eq!(
            parse_status_line(b"\x16\x03\x01"),
            Err(StatusLineError::NotHttp)
        );
        assert_eq!(
            parse_status_line(b"HTTP/2 200\r\n"),
            Err(StatusLineError::NotHttp)
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.1 2x0 OK\r\n"),
            Err(StatusLineError::BadStatus)
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.1 099 OK\r\n"),
            Err(StatusLineError::BadStatus)
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.1 2000 OK\r\n"),
            Err(StatusLineError::BadStatus)
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.1 20\r\n"),
            Err(StatusLineError::BadStatus)
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.1 20\n"),
            Err(StatusLineError::NotHttp)
        );
        let mut long = b"HTTP/1.1 200 ".to_vec();
        long.resize(MAX_STATUS_LINE + 10, b'a');
        assert_eq!(parse_status_line(&long), Err(StatusLineError::TooLong));
    }
}
