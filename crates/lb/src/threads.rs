//! The balancers' own threads: accepting and relaying run on one
//! current-thread Tokio runtime per core (at most [`MAX_RELAY_THREADS`]),
//! not on the caller's runtime. Every thread runs an accept loop on its own
//! copy of each listener (one socket, a `dup` per thread registered in that
//! thread's epoll) and serves the connections it accepts from accept to
//! close, as haproxy's and nginx's threads do; health checks, reload and
//! snapshots stay on the caller's runtime.
//!
//! Why: on bootlabd's multi-thread runtime a new connection crossed threads
//! (the worker that polled the epoll woke a parked one through a futex to
//! run the accept loop, the connection task was stolen back, ...). Profiled
//! under `bench/lb.sh`'s connect workload on the shared 2-core machine, the
//! balancer spent 12% of its CPU in `schedule`, 9% in `epoll_wait` and 4% in
//! `futex` (haproxy: 1.8%, 2.5%, 0%), 94 µs of CPU per connection against
//! haproxy's 84 µs; on these threads: 1.7% `schedule`, no `futex`, 84 µs.
//! Numbers in docs/lb.md, "Performance".
//!
//! The threads stop when the balancers have finished after shutdown, or
//! when the caller's runtime shuts down first (its tasks, and the guard
//! one of them holds, are dropped): then their runtimes drop every task
//! they still run, as the caller's runtime would have.

use std::io;
#[cfg(test)]
use std::sync::Mutex;
#[cfg(test)]
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// Upper bound on the relay threads, whatever the core count.
pub(crate) const MAX_RELAY_THREADS: usize = 8;

/// The running relay threads.
pub(crate) struct RelayThreads {
    handles: Vec<Handle>,
    #[cfg(test)]
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl RelayThreads {
    /// Starts one thread per core (`lb-0`, `lb-1`, ...), at most
    /// [`MAX_RELAY_THREADS`]; they run until `stop` is cancelled.
    pub(crate) fn start(stop: &CancellationToken) -> io::Result<Self> {
        let n = std::thread::available_parallelism()
            .map_or(1, std::num::NonZero::get)
            .clamp(1, MAX_RELAY_THREADS);
        let mut handles = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let started = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|runtime| {
                    let handle = runtime.handle().clone();
                    let stop = stop.clone();
                    let thread = std::thread::Builder::new()
                        .name(format!("lb-{i}"))
                        .spawn(move || runtime.block_on(stop.cancelled()))?;
                    Ok((handle, thread))
                });
            match started {
                Ok((handle, thread)) => {
                    handles.push(handle);
                    threads.push(thread);
                }
                Err(e) => {
                    stop.cancel(); // the threads already started end
                    return Err(e);
                }
            }
        }
        #[cfg(not(test))]
        drop(threads); // detached: they end on `stop`
        Ok(Self {
            handles,
            #[cfg(test)]
            threads: Mutex::new(threads),
        })
    }

    /// One handle per thread, to spawn that thread's accept loops on.
    pub(crate) fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Whether every thread has ended.
    #[cfg(test)]
    pub(crate) fn all_finished(&self) -> bool {
        self.threads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .all(JoinHandle::is_finished)
    }
}
