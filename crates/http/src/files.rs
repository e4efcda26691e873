//! Static boot assets: conditional requests, HEAD, single and multipart
//! ranges, and a file body that streams any size (> 4 GiB included) in
//! bounded memory while counting what was really sent.
//!
//! Why not tower-http's `ServeDir`: it answers multi-range requests with 416,
//! has no `ETag`, and gives no hook to learn how many bytes reached the
//! client, which the machine timeline records. What it does that we need
//! (conditional requests, `Range`) is small enough to own here, as a pure
//! [`plan`] over a file's metadata plus a streaming [`FileBody`].
//!
//! # Layout
//! - [`FileMeta`]: length, modification time and the validators derived from them.
//! - [`plan`]: request headers + metadata -> [`Plan`] (status and parts), no I/O.
//! - [`FileBody`]: the response body: reads ahead one chunk (positional
//!   reads, no shared cursor) and reports on drop.
//!
//! # Reads: on the task when cached, on the blocking pool when not
//! A chunk the page cache holds whole is read on the body's own task with
//! `preadv2(RWF_NOWAIT)`, which fails with `EAGAIN` instead of waiting for
//! the disk; only then does the read go to the blocking pool. Boot assets
//! are read by every node, so nearly every read is cached. Every read on
//! the blocking pool cost a thread hand-off, and a boot storm of 300
//! clients made the pool start hundreds of threads at once: the
//! kernel+initrd phase took 2.2x-3.5x nginx's time per client
//! (bench/storm.sh, docs/deviations.md).

use std::collections::VecDeque;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Seek, SeekFrom};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::task::JoinHandle;

use crate::range::{ByteRange, RangeError, parse_range};

/// Bytes read from disk per body frame. Large reads keep syscalls and
/// wake-ups rare; one chunk is read ahead while the previous is written.
pub const CHUNK: usize = 512 * 1024;

/// What a response needs to know about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// Length in bytes.
    pub len: u64,
    /// Modification time, whole seconds (HTTP dates have no fractions).
    pub modified: Option<SystemTime>,
    /// Strong entity tag, quoted: `"<mtime hex>-<len hex>"` (as nginx makes it).
    pub etag: String,
}

impl FileMeta {
    /// From filesystem metadata.
    pub fn from_metadata(meta: &std::fs::Metadata) -> Self {
        let modified = meta.modified().ok().and_then(|t| {
            let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs();
            Some(UNIX_EPOCH + Duration::from_secs(secs))
        });
        let nanos = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Self {
            len: meta.len(),
            modified,
            etag: format!("\"{nanos:x}-{:x}\"", meta.len()),
        }
    }

    /// The `Last-Modified` value.
    pub fn last_modified(&self) -> Option<String> {
        self.modified.map(httpdate::fmt_http_date)
    }
}

/// The answer decided from headers and metadata alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// 200 with the whole file.
    Full,
    /// 206 with one range.
    Single(ByteRange),
    /// 206 `multipart/byteranges`.
    Multi(Vec<ByteRange>),
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    PreconditionFailed,
    /// 416 Range Not Satisfiable (and why).
    NotSatisfiable(RangeError),
}

/// Whether an `If-Match`/`If-None-Match` list matches `etag`.
fn etag_list_matches(list: &str, etag: &str, weak: bool) -> bool {
    let strip = |t: &str| -> String {
        let t = t.trim();
        if weak {
            t.strip_prefix("W/").unwrap_or(t).to_owned()
        } else {
            t.to_owned()
        }
    };
    list.split(',').any(|t| {
        let t = t.trim();
        t == "*" || ((weak || !t.starts_with("W/")) && strip(t) == strip(etag))
    })
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn header_date(headers: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    header_str(headers, name).and_then(|v| httpdate::parse_http_date(v.trim()).ok())
}

/// Decides the answer to a GET or HEAD of a file (RFC 9110 §13.2.2 order:
/// If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since, then
/// Range guarded by If-Range).
pub fn plan(method: &Method, headers: &HeaderMap, meta: &FileMeta) -> Plan {
    if let Some(list) = header_str(headers, header::IF_MATCH) {
        if !etag_list_matches(list, &meta.etag, false) {
            return Plan::PreconditionFailed;
        }
    } else if let Some(since) = header_date(headers, header::IF_UNMODIFIED_SINCE) {
        if meta.modified.is_some_and(|m| m > since) {
            return Plan::PreconditionFailed;
        }
    }
    if let Some(list) = header_str(headers, header::IF_NONE_MATCH) {
        if etag_list_matches(list, &meta.etag, true) {
            return Plan::NotModified;
        }
    } else if let Some(since) = header_date(headers, header::IF_MODIFIED_SINCE) {
        if meta.modified.is_some_and(|m| m <= since) {
            return Plan::NotModified;
        }
    }
    if method != Method::GET && method != Method::HEAD {
        return Plan::Full;
    }
    let Some(range) = headers.get(header::RANGE) else {
        return Plan::Full;
    };
    if let Some(if_range) = headers.get(header::IF_RANGE) {
        let valid = match if_range.to_str().map(str::trim) {
            Ok(v) if v.starts_with('"') => v == meta.etag,
            Ok(v) => httpdate::parse_http_date(v)
                .ok()
                .is_some_and(|d| Some(d) == meta.modified),
            Err(_) => false,
        };
        if !valid {
            return Plan::Full;
        }
    }
    match parse_range(range.as_bytes(), meta.len) {
        Ok(None) => Plan::Full,
        Ok(Some(ranges)) if ranges.len() == 1 => Plan::Single(ranges[0]),
        Ok(Some(ranges)) => Plan::Multi(ranges),
        Err(e) => Plan::NotSatisfiable(e),
    }
}

/// The `Content-Type` of an asset, from its name.
pub fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    match ext.to_ascii_lowercase().as_str() {
        "ipxe" | "cfg" | "txt" | "conf" | "sh" | "ks" => "text/plain; charset=utf-8",
        "json" | "ign" => "application/json",
        "html" => "text/html; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// A multipart boundary unlikely to occur in any file.
pub fn new_boundary() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("bootlab-{:016x}", h.finish())
}

/// One piece of a response body.
#[derive(Debug, Clone)]
pub enum Piece {
    /// Literal bytes (multipart headers).
    Bytes(Bytes),
    /// `len` bytes of the file from `offset`.
    File {
        /// Start offset.
        offset: u64,
        /// Bytes left.
        len: u64,
    },
}

/// The body pieces of a `multipart/byteranges` response and its length.
pub fn multipart_pieces(
    ranges: &[ByteRange],
    file_len: u64,
    content_type: &str,
    boundary: &str,
) -> (Vec<Piece>, u64) {
    let mut pieces = Vec::with_capacity(ranges.len() * 2 + 1);
    let mut total = 0u64;
    for r in ranges {
        let head = format!(
            "\r\n--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {}-{}/{file_len}\r\n\r\n",
            r.first, r.last
        );
        total += head.len() as u64 + r.len();
        pieces.push(Piece::Bytes(Bytes::from(head)));
        pieces.push(Piece::File {
            offset: r.first,
            len: r.len(),
        });
    }
    let tail = format!("\r\n--{boundary}--\r\n");
    total += tail.len() as u64;
    pieces.push(Piece::Bytes(Bytes::from(tail)));
    (pieces, total)
}

/// Told once, when a body is finished or abandoned, how many body bytes
/// reached the connection.
pub trait SendReport: Send + 'static {
    /// `bytes` were sent; `complete` is true when the whole body was.
    fn report(self: Box<Self>, bytes: u64, complete: bool);
}

/// Bytes written to a connection so far (shared with its I/O wrapper).
pub type WrittenCounter = Arc<AtomicU64>;

/// The next chunk: read already (from the page cache), or being read.
enum Pending {
    Ready(io::Result<Bytes>),
    Reading(JoinHandle<io::Result<Bytes>>),
}

/// A streaming response body over file pieces.
pub struct FileBody {
    file: Arc<File>,
    pieces: VecDeque<Piece>,
    pending: Option<Pending>,
    remaining: u64,
    yielded: u64,
    total: u64,
    conn_written: WrittenCounter,
    written_at_start: u64,
    report: Option<Box<dyn SendReport>>,
}

impl std::fmt::Debug for FileBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileBody")
            .field("remaining", &self.remaining)
            .field("yielded", &self.yielded)
            .finish_non_exhaustive()
    }
}

impl FileBody {
    /// A body of `pieces` from `file`; `conn_written` is the connection's
    /// byte counter, used to tell how much of an abandoned body really left.
    pub fn new(
        file: File,
        pieces: Vec<Piece>,
        conn_written: WrittenCounter,
        report: Option<Box<dyn SendReport>>,
    ) -> Self {
        let total = pieces
            .iter()
            .map(|p| match p {
                Piece::Bytes(b) => b.len() as u64,
                Piece::File { len, .. } => *len,
            })
            .sum();
        let written_at_start = conn_written.load(Ordering::Relaxed);
        Self {
            file: Arc::new(file),
            pieces: pieces.into(),
            pending: None,
            remaining: total,
            yielded: 0,
            total,
            conn_written,
            written_at_start,
            report,
        }
    }

    /// Starts reading the next file chunk if the next piece is file data.
    fn read_ahead(&mut self) {
        if self.pending.is_some() {
            return;
        }
        let Some(Piece::File { offset, len }) = self.pieces.front_mut() else {
            return;
        };
        let n = (*len).min(CHUNK as u64);
        let at = *offset;
        *offset += n;
        *len -= n;
        if *len == 0 {
            self.pieces.pop_front();
        }
        self.pending = Some(match read_cached(&self.file, at, n) {
            Some(chunk) => Pending::Ready(Ok(chunk)),
            None => {
                let file = Arc::clone(&self.file);
                Pending::Reading(tokio::task::spawn_blocking(move || {
                    read_chunk(&file, at, n)
                }))
            }
        });
    }
}

/// Reads exactly `n` bytes at `at` if the page cache holds them all,
/// without waiting for the disk (`preadv2` with `RWF_NOWAIT`); `None` when
/// any part is not cached, the file system does not support the flag, or
/// the file ended early ([`read_chunk`] then reads, or reports, it).
fn read_cached(file: &File, at: u64, n: u64) -> Option<Bytes> {
    use rustix::io::{ReadWriteFlags, preadv2};
    let n = usize::try_from(n).ok()?;
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        let slice = &mut [io::IoSliceMut::new(&mut buf[got..])];
        match preadv2(file, slice, at + got as u64, ReadWriteFlags::NOWAIT) {
            Ok(0) | Err(_) => return None,
            Ok(k) => got += k,
        }
    }
    Some(Bytes::from(buf))
}

/// Reads exactly `n` bytes at `at` (the file is this body's own handle, and
/// at most one read is in flight, so seeking is safe).
fn read_chunk(file: &File, at: u64, n: u64) -> io::Result<Bytes> {
    let mut f = file;
    f.seek(SeekFrom::Start(at))?;
    let cap = usize::try_from(n).map_err(|_| io::Error::other("chunk too large"))?;
    let mut buf = Vec::with_capacity(cap);
    f.take(n).read_to_end(&mut buf)?;
    if buf.len() != cap {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file shrank while being served",
        ));
    }
    Ok(Bytes::from(buf))
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        loop {
            if let Some(pending) = this.pending.as_mut() {
                let read = match pending {
                    Pending::Reading(handle) => match ready!(Pin::new(handle).poll(cx)) {
                        Ok(read) => read,
                        Err(e) => Err(io::Error::other(e)),
                    },
                    Pending::Ready(read) => std::mem::replace(read, Ok(Bytes::new())),
                };
                this.pending = None;
                let chunk = match read {
                    Ok(chunk) => chunk,
                    Err(e) => return Poll::Ready(Some(Err(e))),
                };
                this.read_ahead();
                this.remaining -= chunk.len() as u64;
                this.yielded += chunk.len() as u64;
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            match this.pieces.front() {
                None => return Poll::Ready(None),
                Some(Piece::Bytes(_)) => {
                    let Some(Piece::Bytes(b)) = this.pieces.pop_front() else {
                        unreachable!("front was bytes")
                    };
                    this.read_ahead();
                    this.remaining -= b.len() as u64;
                    this.yielded += b.len() as u64;
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                Some(Piece::File { .. }) => this.read_ahead(),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

impl Drop for FileBody {
    fn drop(&mut self) {
        if let Some(Pending::Reading(p)) = self.pending.take() {
            p.abort();
        }
        let complete = self.yielded == self.total;
        let bytes = if complete {
            self.total
        } else {
            // What hyper took may still sit in its buffer: the connection's
            // own count (headers included) bounds what really left.
            let on_wire = self
                .conn_written
                .load(Ordering::Relaxed)
                .saturating_sub(self.written_at_start);
            self.yielded.min(on_wire)
        };
        if let Some(report) = self.report.take() {
            report.report(bytes, complete);
        }
    }
}

/// Header value from a string we built (never fails for our values).
pub fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// The status a plan answers with.
pub fn status_of(plan: &Plan) -> StatusCode {
    match plan {
        Plan::Full => StatusCode::OK,
        Plan::Single(_) | Plan::Multi(_) => StatusCode::PARTIAL_CONTENT,
        Plan::NotModified => StatusCode::NOT_MODIFIED,
        Plan::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        Plan::NotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file on disk (not tmpfs: its pages can leave the page cache).
    fn disk_file(len: usize) -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
        let dir = tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target"))
            .expect("a directory under target/");
        let path = dir.path().join("asset.bin");
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        (dir, path, data)
    }

    /// Drops the file's pages from the page cache (written back first).
    fn evict(path: &std::path::Path) {
        let f = File::open(path).unwrap();
        f.sync_all().unwrap();
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    }

    async fn body_bytes(file: File, len: u64) -> Vec<u8> {
        use http_body::Body as _;
        let mut body = FileBody::new(
            file,
            vec![Piece::File { offset: 0, len }],
            Arc::new(AtomicU64::new(0)),
            None,
        );
        let mut out = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            out.extend_from_slice(frame.unwrap().data_ref().unwrap());
        }
        out
    }

    #[test]
    fn a_cached_chunk_is_read_on_the_spot_and_an_evicted_one_is_not() {
        let (_dir, path, data) = disk_file(CHUNK + 1000);
        let f = File::open(&path).unwrap();
        // Just written: in the page cache.
        let chunk = read_cached(&f, 1000, CHUNK as u64).expect("cached");
        assert_eq!(&chunk[..], &data[1000..1000 + CHUNK]);
        evict(&path);
        assert!(
            read_cached(&f, 0, CHUNK as u64).is_none(),
            "evicted pages were reported as cached (does this file system honour RWF_NOWAIT and fadvise DONTNEED?)"
        );
        // Past the end: not a short chunk, None (read_chunk reports it).
        assert!(read_cached(&f, 1000, CHUNK as u64 + 1).is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_body_streams_the_same_bytes_from_the_cache_and_from_the_disk() {
        let (_dir, path, data) = disk_file(3 * CHUNK + 12_345);
        let len = data.len() as u64;
        assert_eq!(body_bytes(File::open(&path).unwrap(), len).await, data);
        // Now every chunk misses the cache and goes to the blocking pool.
        evict(&path);
        assert_eq!(body_bytes(File::open(&path).unwrap(), len).await, data);
    }

    fn meta() -> FileMeta {
        FileMeta {
            len: 1000,
            modified: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            etag: "\"abc-3e8\"".into(),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn conditionals() {
        let m = meta();
        let lm = m.last_modified().unwrap();
        let g = &Method::GET;
        assert_eq!(plan(g, &headers(&[]), &m), Plan::Full);
        assert_eq!(
            plan(g, &headers(&[("if-none-match", "\"abc-3e8\"")]), &m),
            Plan::NotModified
        );
        assert_eq!(
            plan(g, &headers(&[("if-none-match", "W/\"abc-3e8\"")]), &m),
            Plan::NotModified
        );
        assert_eq!(
            plan(g, &headers(&[("if-none-match", "\"x\", *")]), &m),
            Plan::NotModified
        );
        assert_eq!(
            plan(g, &headers(&[("if-none-match", "\"x\"")]), &m),
            Plan::Full
        );
        assert_eq!(
            plan(g, &headers(&[("if-modified-since", &lm)]), &m),
            Plan::NotModified
        );
        assert_eq!(
            plan(
                g,
                &headers(&[("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")]),
                &m
            ),
            Plan::Full
        );
        assert_eq!(
            plan(g, &headers(&[("if-match", "\"nope\"")]), &m),
            Plan::PreconditionFailed
        );
        assert_eq!(
            plan(g, &headers(&[("if-match", "W/\"abc-3e8\"")]), &m),
            Plan::PreconditionFailed
        );
        assert_eq!(
            plan(g, &headers(&[("if-match", "\"abc-3e8\"")]), &m),
            Plan::Full
        );
        assert_eq!(
            plan(
                g,
                &headers(&[("if-unmodified-since", "Sun, 06 Nov 1994 08:49:37 GMT")]),
                &m
            ),
            Plan::PreconditionFailed
        );
    }

    #[test]
    fn ranges_and_if_range() {
        let m = meta();
        let g = &Method::GET;
        let one = ByteRange { first: 0, last: 9 };
        assert_eq!(
            plan(g, &headers(&[("range", "bytes=0-9")]), &m),
            Plan::Single(one)
        );
        assert_eq!(
            plan(
                g,
                &headers(&[("range", "bytes=0-9"), ("if-range", "\"abc-3e8\"")]),
                &m
            ),
            Plan::Single(one)
        );
        assert_eq!(
            plan(
                g,
                &headers(&[("range", "bytes=0-9"), ("if-range", "\"old\"")]),
                &m
            ),
            Plan::Full
        );
        let lm = m.last_modified().unwrap();
        assert_eq!(
            plan(
                g,
                &headers(&[("range", "bytes=0-9"), ("if-range", &lm)]),
                &m
            ),
            Plan::Single(one)
        );
        assert_eq!(
            plan(g, &headers(&[("range", "bytes=5000-")]), &m),
            Plan::NotSatisfiable(RangeError::Unsatisfiable)
        );
        assert!(
            matches!(plan(g, &headers(&[("range", "bytes=0-1,5-6")]), &m), Plan::Multi(v) if v.len() == 2)
        );
    }

    #[test]
    fn multipart_length_is_exact() {
        let ranges = [
            ByteRange { first: 0, last: 1 },
            ByteRange { first: 5, last: 9 },
        ];
        let (pieces, total) = multipart_pieces(&ranges, 10, "text/plain", "B");
        let sum: u64 = pieces
            .iter()
            .map(|p| match p {
                Piece::Bytes(b) => b.len() as u64,
                Piece::File { len, .. } => *len,
            })
            .sum();
        assert_eq!(sum, total);
        let Piece::Bytes(first) = &pieces[0] else {
            panic!()
        };
        assert_eq!(
            first.as_ref(),
            b"\r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n"
        );
    }
}
