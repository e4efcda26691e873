//! The host tool's side: a small blocking HTTP/1.1 client over rustls
//! (one connection per request, `Connection: close`), so `bootlab` needs no
//! async runtime. Uploads are streamed from the file through a 256 KiB
//! buffer (memory stays flat for a 1 GiB asset) and announce themselves
//! with `Expect: 100-continue`: a refusal (bad path, no space) arrives
//! before any byte of the body is sent.
//!
//! The connection goes to an [`Endpoint`] (the services VM's address, or
//! the local end of an SSH tunnel) while the server's certificate is
//! checked against the services VM's address, whatever the endpoint.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

use crate::wire::{
    self, ApiError, AssetStored, HEADER_SHA256, InventoryApplied, PATH_INVENTORY, PATH_STATE, State,
};

/// Where the admin API is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Directly over the lab network.
    Tcp(SocketAddr),
    /// A local socket forwarded to it (an SSH tunnel).
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "https://{a}"),
            Self::Unix(p) => write!(f, "the tunnel {}", p.display()),
        }
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection.
    #[error("cannot connect to the admin API at {endpoint}: {source}")]
    Connect {
        /// Where.
        endpoint: String,
        /// Why.
        source: io::Error,
    },
    /// The TLS handshake failed or the server refused our certificate.
    #[error("TLS with the admin API at {endpoint} failed: {source}")]
    Tls {
        /// Where.
        endpoint: String,
        /// Why (a rustls error inside).
        source: io::Error,
    },
    /// The connection broke.
    #[error("the admin API at {endpoint}: {source}")]
    Io {
        /// Where.
        endpoint: String,
        /// Why.
        source: io::Error,
    },
    /// The server answered with an error document.
    #[error("the admin API refused ({status}): {}", .error.error)]
    Status {
        /// HTTP status.
        status: u16,
        /// Its error document.
        error: ApiError,
    },
    /// Not HTTP, or not the JSON expected.
    #[error("the admin API at {endpoint} answered something unexpected: {what}")]
    Protocol {
        /// Where.
        endpoint: String,
        /// What was wrong.
        what: String,
    },
}

impl ClientError {
    /// True when TLS itself failed (the peer refused our certificate or we
    /// refused its).
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls { .. })
    }
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// A request body.
pub enum Body<'a> {
    /// None.
    Empty,
    /// In memory.
    Bytes(&'a [u8]),
    /// Streamed: `len` bytes from `reader`; `progress` hears each chunk.
    Stream {
        /// Content-Length.
        len: u64,
        /// Source.
        reader: &'a mut dyn Read,
        /// Called with each chunk's length as it is sent.
        progress: &'a mut dyn FnMut(u64),
    },
    /// Streamed with chunked transfer encoding (no length announced).
    Chunked {
        /// Source.
        reader: &'a mut dyn Read,
    },
}

enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read(buf),
            Self::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.write(buf),
            Self::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.flush(),
            Self::Unix(s) => s.flush(),
        }
    }
}

/// True when `e` carries a TLS error (an alert from the peer, a
/// certificate we refused).
fn is_tls_error(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|i| i.downcast_ref::<rustls::Error>().is_some())
}

struct Conn {
    tls: StreamOwned<ClientConnection, Sock>,
    buf: Vec<u8>,
    endpoint: String,
}

const MAX_HEAD: usize = 64 << 10;

/// Parses an HTTP/1.1 response head at the start of `buf` (httparse):
/// `Ok(None)` when more bytes are needed, else the status, the headers
/// (names lowercase) and how many bytes the head took. A head over 64 KiB
/// or one that is not HTTP is an error.
#[allow(clippy::type_complexity)] // (status, headers, consumed) read once by the caller
pub fn parse_response_head(
    buf: &[u8],
) -> Result<Option<(u16, Vec<(String, String)>, usize)>, &'static str> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err("response head too large")
        } else {
            Ok(None)
        };
    };
    if end + 4 > MAX_HEAD {
        return Err("response head too large");
    }
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut hs);
    match r.parse(&buf[..end + 4]) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err("not an HTTP response"),
    }
    let status = r.code.ok_or("no status")?;
    let headers = r
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    Ok(Some((status, headers, end + 4)))
}
const MAX_BODY: u64 = 256 << 20;

impl Conn {
    fn io(&self, e: io::Error) -> ClientError {
        if is_tls_error(&e) {
            ClientError::Tls {
                endpoint: self.endpoint.clone(),
                source: e,
            }
        } else {
            ClientError::Io {
                endpoint: self.endpoint.clone(),
                source: e,
            }
        }
    }

    fn protocol(&self, what: impl Into<String>) -> ClientError {
        ClientError::Protocol {
            endpoint: self.endpoint.clone(),
            what: what.into(),
        }
    }

    fn fill(&mut self) -> Result<usize, ClientError> {
        let mut chunk = [0u8; 16 << 10];
        match self.tls.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            // A peer that closes without close_notify: EOF for us.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            Err(e) => Err(self.io(e)),
        }
    }

    /// Reads one response head: (status, headers).
    fn head(&mut self) -> Result<(u16, Vec<(String, String)>), ClientError> {
        loop {
            match parse_response_head(&self.buf) {
                Ok(Some((status, headers, used))) => {
                    self.buf.drain(..used);
                    return Ok((status, headers));
                }
                Ok(None) => {}
                Err(what) => return Err(self.protocol(what)),
            }
            if self.fill()? == 0 {
                return Err(self.io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the connection closed before an answer",
                )));
            }
        }
    }

    fn body(&mut self, headers: &[(String, String)]) -> Result<Vec<u8>, ClientError> {
        let len = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.trim().parse::<u64>().ok());
        match len {
            Some(n) if n > MAX_BODY => Err(self.protocol("response body too large")),
            Some(n) => {
                while (self.buf.len() as u64) < n {
                    if self.fill()? == 0 {
                        return Err(self.protocol("response body cut short"));
                    }
                }
                Ok(self.buf.drain(..n as usize).collect())
            }
            None => {
                while self.fill()? > 0 {
                    if self.buf.len() as u64 > MAX_BODY {
                        return Err(self.protocol("response body too large"));
                    }
                }
                Ok(std::mem::take(&mut self.buf))
            }
        }
    }

    /// The final answer, skipping interim (1xx) ones.
    fn response(&mut self) -> Result<Response, ClientError> {
        loop {
            let (status, headers) = self.head()?;
            if (100..200).contains(&status) {
                continue;
            }
            let body = self.body(&headers)?;
            return Ok(Response {
                status,
                headers,
                body,
            });
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.tls.write_all(bytes).map_err(|e| self.io(e))
    }
}

/// A client of one services VM's admin API.
#[derive(Clone)]
pub struct AdminClient {
    endpoint: Endpoint,
    server_name: ServerName<'static>,
    config: Arc<rustls::ClientConfig>,
    connect_timeout: Duration,
    io_timeout: Duration,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("endpoint", &self.endpoint)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// A client reaching `endpoint` and expecting a certificate for
    /// `server_ip` (the services VM's lab address).
    pub fn new(endpoint: Endpoint, server_ip: IpAddr, config: Arc<rustls::ClientConfig>) -> Self {
        Self {
            endpoint,
            server_name: ServerName::IpAddress(server_ip.into()),
            config,
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(300),
        }
    }

    /// Bounds connecting (default 5 s) and each read or write (default
    /// 300 s: the answer to a 1 GiB upload comes after its fsync).
    pub fn with_timeouts(mut self, connect: Duration, io: Duration) -> Self {
        self.connect_timeout = connect;
        self.io_timeout = io;
        self
    }

    /// Where it connects.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn connect(&self) -> Result<Conn, ClientError> {
        let endpoint = self.endpoint.to_string();
        let connect_err = |source| ClientError::Connect {
            endpoint: endpoint.clone(),
            source,
        };
        let sock = match &self.endpoint {
            Endpoint::Tcp(a) => {
                let s = TcpStream::connect_timeout(a, self.connect_timeout).map_err(connect_err)?;
                s.set_read_timeout(Some(self.io_timeout))
                    .map_err(connect_err)?;
                s.set_write_timeout(Some(self.io_timeout))
                    .map_err(connect_err)?;
                let _ = s.set_nodelay(true);
                Sock::Tcp(s)
            }
            Endpoint::Unix(p) => {
                let s = UnixStream::connect(p).map_err(connect_err)?;
                s.set_read_timeout(Some(self.io_timeout))
                    .map_err(connect_err)?;
                s.set_write_timeout(Some(self.io_timeout))
                    .map_err(connect_err)?;
                Sock::Unix(s)
            }
        };
        let conn =
            ClientConnection::new(self.config.clone(), self.server_name.clone()).map_err(|e| {
                ClientError::Tls {
                    endpoint: endpoint.clone(),
                    source: io::Error::other(e),
                }
            })?;
        let mut tls = StreamOwned::new(conn, sock);
        // Drive the handshake now: a server certificate we refuse shows as
        // a TLS error, not as a broken request.
        while tls.conn.is_handshaking() {
            if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                return Err(ClientError::Tls {
                    endpoint,
                    source: e,
                });
            }
        }
        Ok(Conn {
            tls,
            buf: Vec::new(),
            endpoint,
        })
    }

    /// One request; any status comes back as a [`Response`].
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<Response, ClientError> {
        let mut c = self.connect()?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: bootlab-admin\r\nUser-Agent: bootlab/{}\r\nConnection: close\r\n",
            env!("CARGO_PKG_VERSION")
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        match &body {
            Body::Empty => {}
            Body::Bytes(b) => head.push_str(&format!("Content-Length: {}\r\n", b.len())),
            Body::Stream { len, .. } => head.push_str(&format!(
                "Content-Length: {len}\r\nExpect: 100-continue\r\n"
            )),
            Body::Chunked { .. } => {
                head.push_str("Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n")
            }
        }
        head.push_str("\r\n");
        c.send(head.as_bytes())?;
        match body {
            Body::Empty => {}
            Body::Bytes(b) => c.send(b)?,
            Body::Stream {
                reader, progress, ..
            } => {
                if let Some(early) = wait_continue(&mut c)? {
                    return Ok(early);
                }
                let mut buf = vec![0u8; 256 << 10];
                loop {
                    let n = reader.read(&mut buf).map_err(|e| c.io(e))?;
                    if n == 0 {
                        break;
                    }
                    if let Err(e) = c.send(&buf[..n]) {
                        // The server may have answered and closed.
                        return c.response().map_err(|_| e);
                    }
                    progress(n as u64);
                }
            }
            Body::Chunked { reader } => {
                if let Some(early) = wait_continue(&mut c)? {
                    return Ok(early);
                }
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = reader.read(&mut buf).map_err(|e| c.io(e))?;
                    let mut frame = format!("{n:x}\r\n").into_bytes();
                    frame.extend_from_slice(&buf[..n]);
                    frame.extend_from_slice(b"\r\n");
                    if let Err(e) = c.send(&frame) {
                        return c.response().map_err(|_| e);
                    }
                    if n == 0 {
                        break;
                    }
                }
            }
        }
        c.tls.flush().map_err(|e| c.io(e))?;
        c.response()
    }

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        r: Response,
        ok: &[u16],
    ) -> Result<T, ClientError> {
        if ok.contains(&r.status) {
            return serde_json::from_slice(&r.body).map_err(|e| ClientError::Protocol {
                endpoint: self.endpoint.to_string(),
                what: format!("{e}"),
            });
        }
        let error = serde_json::from_slice::<ApiError>(&r.body).unwrap_or_else(|_| ApiError {
            error: String::from_utf8_lossy(&r.body).trim().to_owned(),
            diagnostics: None,
        });
        Err(ClientError::Status {
            status: r.status,
            error,
        })
    }

    /// `GET /v1/state`.
    pub fn state(&self) -> Result<State, ClientError> {
        let r = self.request("GET", PATH_STATE, &[], Body::Empty)?;
        self.json(r, &[200])
    }

    /// `PUT /v1/inventory`: validated and reloaded by bootlabd, or refused
    /// with its diagnostics ([`ClientError::Status`] 422).
    /// `name` (the host's path) names the file in the diagnostics.
    pub fn put_inventory(&self, text: &[u8], name: &str) -> Result<InventoryApplied, ClientError> {
        let name: String = name
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .take(512)
            .collect();
        let r = self.request(
            "PUT",
            PATH_INVENTORY,
            &[
                ("Content-Type", "application/toml"),
                (wire::HEADER_SOURCE_NAME, &name),
            ],
            Body::Bytes(text),
        )?;
        self.json(r, &[200])
    }

    /// `PUT /v1/assets/<rel>`: streams `file`, which must hash to `sha256`.
    pub fn put_asset(
        &self,
        rel: &str,
        file: &Path,
        sha256: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<AssetStored, ClientError> {
        let io_err = |source| ClientError::Io {
            endpoint: format!("reading {}", file.display()),
            source,
        };
        let mut f = std::fs::File::open(file).map_err(io_err)?;
        let len = f.metadata().map_err(io_err)?.len();
        let r = self.request(
            "PUT",
            &wire::asset_url_path(rel),
            &[
                (HEADER_SHA256, sha256),
                ("Content-Type", "application/octet-stream"),
            ],
            Body::Stream {
                len,
                reader: &mut f,
                progress,
            },
        )?;
        self.json(r, &[200, 201])
    }
}

/// After a request head with `Expect: 100-continue`: `None` when the
/// server says go on, `Some(answer)` when it answered at once.
fn wait_continue(c: &mut Conn) -> Result<Option<Response>, ClientError> {
    let (status, headers) = c.head()?;
    if status == 100 {
        return Ok(None);
    }
    let body = c.body(&headers)?;
    Ok(Some(Response {
        status,
        headers,
        body,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads() {
        assert_eq!(parse_response_head(b"HTTP/1.1 100 Continue\r\n"), Ok(None));
        let (s, h, n) = parse_response_head(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}")
            .unwrap()
            .unwrap();
        assert_eq!((s, n), (201, 43));
        assert_eq!(h, vec![("content-length".to_owned(), "2".to_owned())]);
        assert!(parse_response_head(b"garbage\r\n\r\n").is_err());
        assert!(parse_response_head(&vec![b'a'; 70 << 10]).is_err());
    }
}
