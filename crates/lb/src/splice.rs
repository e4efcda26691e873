//! Zero-copy relaying with splice(2): a direction moves bytes socket ->
//! pipe -> socket inside the kernel, never through user space. Used by
//! [`Limits::zero_copy`](crate::Limits) once a direction is a bulk transfer
//! (see `crate::proxy`); measured in docs/lb.md, "Zero-copy".
//!
//! Readiness comes from tokio (`readable`/`writable` + `try_io`), the
//! syscalls from nix's safe wrappers. Each direction owns one non-blocking
//! pipe sized to the buffer size and always empties it before the next
//! fill, so an `EAGAIN` can only come from the socket side.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::proxy::{Activity, must_shutdown};

fn pipe(size: usize) -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    // Best effort: the default 64 KiB pipe also works, only with more calls.
    let _ = fcntl(
        &w,
        FcntlArg::F_SETPIPE_SZ(i32::try_from(size).unwrap_or(i32::MAX)),
    );
    Ok((r, w))
}

/// Moves `from` to `to` until EOF, then passes the EOF on (as the copying
/// pump does).
pub(crate) async fn pump(
    from: &TcpStream,
    to: &TcpStream,
    size: usize,
    counter: &AtomicU64,
    activity: &Activity,
    finished: &AtomicU8,
) -> io::Result<()> {
    let (pipe_r, pipe_w) = pipe(size)?;
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    loop {
        let n = loop {
            from.readable().await?;
            match from.try_io(Interest::READABLE, || {
                Ok(splice(from, None, &pipe_w, None, size, flags)?)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            if !must_shutdown(finished) {
                return Ok(());
            }
            return match socket2::SockRef::from(to).shutdown(std::net::Shutdown::Write) {
                Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
                r => r,
            };
        }
        activity.touch();
        let mut left = n;
        while left > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || {
                Ok(splice(&pipe_r, None, to, None, left, flags)?)
            }) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(m) => {
                    left -= m;
                    counter.fetch_add(m as u64, Ordering::Relaxed);
                    activity.touch();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}
