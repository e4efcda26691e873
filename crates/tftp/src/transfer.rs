//! The read transfer loop: OACK, then DATA in windows of `windowsize`
//! blocks (1 = RFC 1350 lock-step), each window answered by one ACK.
//!
//! - Blocks are numbered internally with a `u64`; on the wire the number is
//!   its low 16 bits, so block 65535 is followed by block 0 (rollover, as
//!   tftpd-hpa, atftp, curl and iPXE expect).
//! - Only a timeout resends. A duplicate or stale ACK is ignored, never
//!   answered with data (the Sorcerer's Apprentice bug of RFC 1350); an ACK
//!   inside the window moves the window to the block after it and the next
//!   window goes out at once (RFC 7440).
//! - Timeouts back off exponentially ([`Retransmit`]); after
//!   [`Retransmit::max_retries`] resends of the same window the transfer is
//!   abandoned.
//! - File bytes are read with positioned reads (`pread`) straight into the
//!   packet buffer; boot assets live in the page cache, and a window of
//!   reads is at most [`crate::options::Limits::max_window_bytes`].

use std::io;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::options::Negotiated;
use crate::packet::{self, ClientPacket, DATA_HEADER};
use crate::source::Content;

/// Retransmission policy: wait `initial` (or the client's `timeout` option),
/// double on every timeout up to `max_delay`, give up after `max_retries`
/// resends of the same packet(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retransmit {
    /// First wait when the client set no `timeout` option.
    pub initial: Duration,
    /// Longest wait between resends (also caps the client's `timeout`).
    pub max_delay: Duration,
    /// Resends of one window before giving up.
    pub max_retries: u32,
}

impl Default for Retransmit {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
            max_retries: 5,
        }
    }
}

impl Retransmit {
    /// The policy for a transfer whose client asked for `timeout_secs`.
    pub fn for_client(self, timeout_secs: Option<u8>) -> Self {
        match timeout_secs {
            Some(t) => Self {
                initial: Duration::from_secs(u64::from(t)).min(self.max_delay),
                ..self
            },
            None => self,
        }
    }

    /// How long to wait for an ACK after the `attempt`-th send (0 = first).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
        self.initial
            .saturating_mul(factor)
            .min(self.max_delay.max(self.initial))
    }

    /// The longest a transfer can wait on one unanswered window.
    pub fn give_up_after(&self) -> Duration {
        (0..=self.max_retries).map(|a| self.delay(a)).sum()
    }
}

/// Why a transfer ended early.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// No ACK after every resend.
    #[error("no ACK for block {block} after {retries} resends")]
    TimedOut {
        /// Wire block number waited for.
        block: u16,
        /// Resends made.
        retries: u32,
    },
    /// The client sent an ERROR packet.
    #[error("client error {code}: {message}")]
    ClientError {
        /// Its code.
        code: u16,
        /// Its message.
        message: String,
    },
    /// The client's port is closed (ICMP port unreachable).
    #[error("client went away")]
    ClientGone,
    /// Socket or file error.
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl TransferError {
    /// A short stable name, used as the metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TimedOut { .. } => "timeout",
            Self::ClientError { code: 8, .. } => "option_refused",
            Self::ClientError { .. } => "client_error",
            Self::ClientGone => "client_gone",
            Self::Io(_) => "io",
        }
    }
}

/// Per-transfer tallies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// DATA/OACK packets sent again after a timeout.
    pub retransmits: u64,
    /// ACKs ignored as duplicates or stale.
    pub duplicate_acks: u64,
}

enum AckWait {
    /// The client acknowledged blocks up to this index.
    Acked(u64),
    TimedOut,
}

/// A window of DATA packets laid out back to back, one per `slot`
/// (`DATA_HEADER + blksize` bytes); only the file's last block is short.
struct Window {
    buf: Vec<u8>,
    lens: Vec<usize>,
    /// Index of the first block (1-based, not wrapped).
    first: u64,
    /// Blocks held.
    count: u64,
}

impl Window {
    fn new(slot: usize, window: u64) -> Self {
        let n = usize::try_from(window).unwrap_or(1);
        Self {
            buf: vec![0u8; slot * n],
            lens: vec![0; n],
            first: 0,
            count: 0,
        }
    }

    fn last(&self) -> u64 {
        self.first + self.count - 1
    }

    /// Loads blocks `[first, first + count)` of `content`.
    fn fill(
        &mut self,
        content: &Content,
        blksize: usize,
        first: u64,
        count: u64,
    ) -> io::Result<()> {
        let slot = DATA_HEADER + blksize;
        let size = content.len();
        let n = usize::try_from(count).unwrap_or(0);
        for i in 0..n {
            let block = first + i as u64;
            packet::put_data_header(&mut self.buf[i * slot..], block as u16);
            let offset = (block - 1) * blksize as u64;
            let want = size.saturating_sub(offset).min(blksize as u64);
            self.lens[i] = DATA_HEADER + usize::try_from(want).unwrap_or(0);
        }
        let offset = (first - 1) * blksize as u64;
        let expected: usize = self.lens[..n].iter().map(|l| l - DATA_HEADER).sum();
        let done = match content {
            // One positioned, scattered read for the whole window.
            Content::File { file, .. } if n > 1 => {
                let mut iov: Vec<io::IoSliceMut<'_>> = self
                    .buf
                    .chunks_mut(slot)
                    .zip(&self.lens[..n])
                    .map(|(chunk, len)| io::IoSliceMut::new(&mut chunk[DATA_HEADER..*len]))
                    .collect();
                let at = i64::try_from(offset).unwrap_or(i64::MAX);
                nix::sys::uio::preadv(file.as_ref(), &mut iov, at).ok() == Some(expected)
            }
            _ => false,
        };
        if !done {
            for i in 0..n {
                let block_offset = offset + (i * blksize) as u64;
                let pkt = &mut self.buf[i * slot + DATA_HEADER..i * slot + self.lens[i]];
                if read_at(content, block_offset, pkt)? != pkt.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank during the transfer",
                    ));
                }
            }
        }
        self.first = first;
        self.count = count;
        Ok(())
    }
}

/// Sends `content` over the connected `sock` with the negotiated
/// parameters. Returns the payload bytes delivered.
///
/// While the client works through a window, the next one is read
/// (double buffering), so file reads stay off the round trip.
pub async fn send_file(
    sock: &UdpSocket,
    content: &Content,
    neg: &Negotiated,
    retransmit: Retransmit,
    tally: &mut Tally,
) -> Result<u64, TransferError> {
    let policy = retransmit.for_client(neg.timeout_secs);
    let mut rbuf = [0u8; 516];
    // One timer for the whole transfer, re-armed lazily (see `wait_ack`).
    let timer = tokio::time::sleep(policy.max_delay.max(policy.initial));
    tokio::pin!(timer);

    if !neg.oack.is_empty() {
        let oack = packet::encode_oack(&neg.oack);
        let mut attempt = 0;
        loop {
            send(sock, &oack).await?;
            match wait_ack(
                sock,
                &mut rbuf,
                (0, 1),
                policy.delay(attempt),
                timer.as_mut(),
                tally,
            )
            .await?
            {
                AckWait::Acked(_) => break,
                AckWait::TimedOut if attempt >= policy.max_retries => {
                    return Err(TransferError::TimedOut {
                        block: 0,
                        retries: attempt,
                    });
                }
                AckWait::TimedOut => {
                    attempt += 1;
                    tally.retransmits += 1;
                }
            }
        }
    }

    let blksize = usize::from(neg.blksize);
    let slot = DATA_HEADER + blksize;
    let window = u64::from(neg.windowsize.max(1));
    let size = content.len();
    // The last block is shorter than blksize, possibly empty.
    let last_block = size / blksize as u64 + 1;
    let span = |first: u64| window.min(last_block - first + 1);
    let mut cur = Window::new(slot, window);
    let mut next = Window::new(slot, window);
    cur.fill(content, blksize, 1, span(1))?;
    let mut attempt = 0;
    let mut gso = true;
    loop {
        send_window(
            sock,
            &cur.buf,
            slot,
            &cur.lens[..cur.count as usize],
            &mut gso,
        )
        .await?;
        let following = cur.last() + 1;
        if following <= last_block && next.first != following {
            next.fill(content, blksize, following, span(following))?;
        }
        match wait_ack(
            sock,
            &mut rbuf,
            (cur.first, cur.count),
            policy.delay(attempt),
            timer.as_mut(),
            tally,
        )
        .await?
        {
            AckWait::Acked(upto) => {
                attempt = 0;
                if upto == last_block {
                    return Ok(size);
                }
                if upto == cur.last() {
                    std::mem::swap(&mut cur, &mut next);
                } else {
                    // RFC 7440: the client lost a block; the next window
                    // starts after the last block it has.
                    cur.fill(content, blksize, upto + 1, span(upto + 1))?;
                }
            }
            AckWait::TimedOut if attempt >= policy.max_retries => {
                return Err(TransferError::TimedOut {
                    block: cur.first as u16,
                    retries: attempt,
                });
            }
            AckWait::TimedOut => {
                attempt += 1;
                tally.retransmits += cur.count;
            }
        }
    }
}

fn read_at(content: &Content, offset: u64, out: &mut [u8]) -> io::Result<usize> {
    match content {
        Content::Memory(bytes) => {
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let n = out.len().min(bytes.len() - start);
            out[..n].copy_from_slice(&bytes[start..start + n]);
            Ok(n)
        }
        Content::File { file, size, .. } => {
            let want = u64::try_from(out.len())
                .unwrap_or(u64::MAX)
                .min(size.saturating_sub(offset));
            let want = usize::try_from(want).unwrap_or(0);
            let mut got = 0;
            while got < want {
                match file.read_at(&mut out[got..want], offset + got as u64) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "file shrank during the transfer",
                        ));
                    }
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(got)
        }
    }
}

/// Largest UDP payload handed to one segmentation-offload send.
const GSO_MAX_BYTES: usize = 65000;
/// Segments per segmentation-offload send at most (the kernel's limit).
const GSO_MAX_SEGMENTS: usize = 64;

/// Sends the DATA packets laid out in `buf` (one per `slot`, `lens[i]`
/// bytes each; only the last may be short). With more than one packet the
/// window goes out in as few syscalls as UDP segmentation offload allows
/// (`UDP_SEGMENT`: one buffer, split by the kernel into `slot`-sized
/// datagrams); if the kernel refuses, this transfer falls back to one send
/// per packet.
async fn send_window(
    sock: &UdpSocket,
    buf: &[u8],
    slot: usize,
    lens: &[usize],
    gso: &mut bool,
) -> Result<(), TransferError> {
    let mut i = 0;
    let per_send = (GSO_MAX_BYTES / slot).min(GSO_MAX_SEGMENTS);
    while i < lens.len() {
        let n = per_send.min(lens.len() - i);
        if *gso && n > 1 {
            let end = (i + n - 1) * slot + lens[i + n - 1];
            let seg = u16::try_from(slot).unwrap_or(u16::MAX);
            match send_segmented(sock, &buf[i * slot..end], seg).await {
                Ok(()) => {
                    i += n;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    return Err(TransferError::ClientGone);
                }
                // EINVAL (segment larger than the path MTU), EIO (device
                // cannot segment), ENOPROTOOPT (old kernel): plain sends.
                Err(_) => *gso = false,
            }
        }
        send(sock, &buf[i * slot..i * slot + lens[i]]).await?;
        i += 1;
    }
    Ok(())
}

async fn send_segmented(sock: &UdpSocket, bytes: &[u8], seg: u16) -> io::Result<()> {
    use nix::sys::socket::{self, ControlMessage, MsgFlags, SockaddrIn};
    use std::os::fd::AsRawFd;
    sock.async_io(tokio::io::Interest::WRITABLE, || {
        let iov = [io::IoSlice::new(bytes)];
        let cmsg = [ControlMessage::UdpGsoSegments(&seg)];
        socket::sendmsg::<SockaddrIn>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_DONTWAIT, None)
            .map(|_| ())
            .map_err(io::Error::from)
    })
    .await
}

async fn send(sock: &UdpSocket, pkt: &[u8]) -> Result<(), TransferError> {
    match sock.send(pkt).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Err(TransferError::ClientGone),
        Err(e) => Err(e.into()),
    }
}

/// Waits up to `wait` for an ACK of a block in `[base, base + count)`.
/// Duplicate and stale ACKs (and anything else) are ignored without
/// extending the wait.
///
/// `timer` is the transfer's one timer. It is re-armed only when it must
/// fire earlier than it is set to; when it fires before this wait's
/// deadline (progress moved the deadline on) it is re-armed then. So a
/// lock-step transfer touches the timer wheel about once per `wait`, not
/// once per block.
async fn wait_ack(
    sock: &UdpSocket,
    rbuf: &mut [u8],
    (base, count): (u64, u64),
    wait: Duration,
    mut timer: std::pin::Pin<&mut tokio::time::Sleep>,
    tally: &mut Tally,
) -> Result<AckWait, TransferError> {
    let deadline = Instant::now() + wait;
    if timer.deadline() > deadline || timer.is_elapsed() {
        timer.as_mut().reset(deadline);
    }
    loop {
        let n = tokio::select! {
            biased;
            received = sock.recv(rbuf) => match received {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    return Err(TransferError::ClientGone);
                }
                Err(e) => return Err(e.into()),
            },
            () = timer.as_mut() => {
                if Instant::now() >= deadline {
                    return Ok(AckWait::TimedOut);
                }
                timer.as_mut().reset(deadline);
                continue;
            }
        };
        match packet::parse_client_packet(&rbuf[..n]) {
            ClientPacket::Ack(wire) => {
                let offset = u64::from(wire.wrapping_sub(base as u16));
                if offset < count {
                    return Ok(AckWait::Acked(base + offset));
                }
                tally.duplicate_acks += 1;
            }
            ClientPacket::Error(code, msg) => {
                return Err(TransferError::ClientError {
                    code,
                    message: String::from_utf8_lossy(&msg[..msg.len().min(128)]).into_owned(),
                });
            }
            ClientPacket::Other => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_is_bounded() {
        let r = Retransmit::default();
        let d: Vec<u64> = (0..7).map(|a| r.delay(a).as_secs()).collect();
        assert_eq!(d, vec![1, 2, 4, 8, 10, 10, 10]);
        assert_eq!(
            r.give_up_after(),
            Duration::from_secs(1 + 2 + 4 + 8 + 10 + 10)
        );
        // A client's timeout option sets the first wait, within the cap.
        assert_eq!(r.for_client(Some(3)).delay(0), Duration::from_secs(3));
        assert_eq!(r.for_client(Some(255)).delay(0), Duration::from_secs(10));
        assert_eq!(r.delay(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn memory_reads() {
        let c = Content::Memory(b"hello world".to_vec().into());
        let mut out = [0u8; 4];
        assert_eq!(read_at(&c, 0, &mut out).unwrap(), 4);
        assert_eq!(&out, b"hell");
        assert_eq!(read_at(&c, 8, &mut out).unwrap(), 3);
        assert_eq!(read_at(&c, 11, &mut out).unwrap(), 0);
        assert_eq!(read_at(&c, 99, &mut out).unwrap(), 0);
    }
}
