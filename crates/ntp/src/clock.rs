//! Whether the kernel considers the system clock synchronised.
//!
//! `adjtimex(2)` with no mode bits set only reads the kernel's clock
//! discipline state. Neither nix nor std wraps it, and the crates that do
//! (ntpd-rs's clock-steering among them) bring clock-steering APIs this
//! server must never call; so this is the one module of the crate with
//! `unsafe`: one read-only call on a zeroed, stack-owned `struct timex`.
//!
//! The clock counts as synchronised unless the call returns `TIME_ERROR`
//! or the status has `STA_UNSYNC` (what chrony/ntpd clear once they
//! discipline the clock, and set again when they lose it).

#![allow(unsafe_code)]

use std::io;

use crate::handler::ClockState;

/// The kernel's view of the system clock, read with `adjtimex(2)`.
pub fn kernel_clock_state() -> io::Result<ClockState> {
    // SAFETY: `timex` is a plain C struct for which all-zero bytes are a
    // valid value; `modes == 0` makes adjtimex read-only (it only fills
    // the struct); the pointer is to a live, exclusively borrowed local
    // of the right type for the whole call.
    let (ret, status) = unsafe {
        let mut tx: libc::timex = std::mem::zeroed();
        let ret = libc::adjtimex(&mut tx);
        (ret, tx.status)
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ClockState {
        synchronized: ret != libc::TIME_ERROR && status & libc::STA_UNSYNC == 0,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reading_the_clock_state_works_unprivileged_and_changes_nothing() {
        super::kernel_clock_state().unwrap();
    }
}
