//! Moving bytes between a client and its backend: two one-way pumps,
//! half-close propagated (EOF on one side becomes `shutdown(Write)` on the
//! other, the opposite direction keeps flowing), an idle timeout over both
//! directions, live byte counters. Bytes are never interpreted.
//!
//! Each pump reads into spare capacity of a `Vec` (no zeroing) of
//! [`Limits::buffer_size`](crate::Limits) and writes it all before the next
//! read, so at most one buffer per direction is in flight.
//! With [`Limits::zero_copy`](crate::Limits) a direction that fills a whole
//! buffer in one read (a bulk transfer) continues with splice(2) through a
//! pipe (`crate::splice`), as haproxy's `option splice-auto` does; request
//! and response exchanges stay on the copy path and never create pipes.

use std::io;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Limits;

/// How a relayed connection ended.
#[derive(Debug)]
pub enum RelayEnd {
    /// Both directions reached EOF and were passed on.
    Closed,
    /// One side failed (reset, broken pipe...); both were closed.
    Error(io::Error),
    /// Nothing moved for the idle timeout.
    IdleTimeout,
    /// The balancers are shutting down and the drain time is over.
    Shutdown,
}

/// Last time a byte moved, as milliseconds since the relay started.
#[derive(Debug)]
pub(crate) struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    pub(crate) fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Returns when nothing has moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// Relays between `client` and `server` until both directions are done,
/// either side fails, nothing moves for the idle timeout, or `stop` is
/// cancelled.
/// `to_server`/`to_client` count the bytes as they are written.
pub async fn relay(
    client: TcpStream,
    server: TcpStream,
    limits: &Limits,
    to_server: &AtomicU64,
    to_client: &AtomicU64,
    stop: &CancellationToken,
) -> RelayEnd {
    let (buffer_size, idle, zero_copy) = (
        limits.buffer_size.max(4096),
        limits.idle_timeout,
        limits.zero_copy,
    );
    let activity = Activity::new();
    let moving = async {
        // Borrowed halves: tokio's owned write half would shutdown(Write)
        // again when dropped (a syscall per side per connection).
        let (mut client, mut server) = (client, server);
        let (mut cr, mut cw) = client.split();
        let (mut sr, mut sw) = server.split();
        let finished = AtomicU8::new(0);
        let up = Pump {
            buffer_size,
            zero_copy,
            counter: to_server,
            activity: &activity,
            finished: &finished,
        };
        let down = Pump {
            counter: to_client,
            ..up
        };
        tokio::try_join!(up.run(&mut cr, &mut sw), down.run(&mut sr, &mut cw)).map(|_| ())
    };
    tokio::select! {
        r = moving => match r {
            Ok(()) => RelayEnd::Closed,
            Err(e) => RelayEnd::Error(e),
        },
        () = activity.idle_for(idle) => RelayEnd::IdleTimeout,
        () = stop.cancelled() => RelayEnd::Shutdown,
    }
}

/// Whether a direction that reached EOF must pass it on with
/// `shutdown(Write)`: only while the other direction still runs. The last
/// direction to finish skips it, because both sockets are closed right
/// after and close() sends the FIN (one syscall less per connection: the
/// connection-rate bench makes 19 per connection instead of 20).
pub(crate) fn must_shutdown(finished: &AtomicU8) -> bool {
    finished.fetch_add(1, Ordering::AcqRel) == 0
}

/// One direction of a relay.
struct Pump<'a> {
    buffer_size: usize,
    zero_copy: bool,
    counter: &'a AtomicU64,
    activity: &'a Activity,
    finished: &'a AtomicU8,
}

impl Pump<'_> {
    /// Copies `from` to `to` until EOF, then passes the EOF on. With
    /// zero-copy, a direction whose read fills the whole buffer (a bulk
    /// transfer, not a request/response exchange) continues with splice(2),
    /// as haproxy's `option splice-auto` does: short connections never pay
    /// for the pipes.
    async fn run(&self, from: &mut ReadHalf<'_>, to: &mut WriteHalf<'_>) -> io::Result<()> {
        // Small connections (API calls, health probes) never need the big buffer.
        let mut buf = Vec::with_capacity(self.buffer_size.min(16 * 1024));
        loop {
            buf.clear();
            let n = from.read_buf(&mut buf).await?;
            if n == 0 {
                if !must_shutdown(self.finished) {
                    return Ok(());
                }
                // Half-close: the peer sent FIN; pass it on, keep the other way.
                return match to.shutdown().await {
                    // The other side may already be gone; that is not this pump's failure.
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
                    r => r,
                };
            }
            self.activity.touch();
            to.write_all(&buf).await?;
            self.counter.fetch_add(n as u64, Ordering::Relaxed);
            self.activity.touch();
            if n == buf.capacity() {
                if buf.capacity() < self.buffer_size {
                    buf.reserve_exact(self.buffer_size - buf.len());
                } else if self.zero_copy {
                    drop(buf);
                    let (from, to): (&TcpStream, &TcpStream) = (from.as_ref(), to.as_ref());
                    return crate::splice::pump(
                        from,
                        to,
                        self.buffer_size,
                        self.counter,
                        self.activity,
                        self.finished,
                    )
                    .await;
                }
            }
        }
    }
}
