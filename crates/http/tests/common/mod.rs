//! Test helpers: a real HTTP service on a loopback port over a temporary
//! assets directory (testkit's `LabDir`, the dev inventory with typed
//! edits), and curl (a real peer) to talk to it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::thread::JoinHandle;

use bootlab_http::{Limits, Readiness};
use bootlab_state::{InventoryPublisher, Shared};
use bootlab_testkit::{LabBuilder, LabDir};
use tokio_util::sync::CancellationToken;

/// A running HTTP service with its own assets directory (the [`LabDir`]
/// it derefs to: `assets`, and scratch space next to, outside, it).
pub struct Lab {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The assets root and scratch space.
    pub files: LabDir,
    /// The state it serves (timeline, metrics).
    pub shared: Shared,
    /// Swaps in a new inventory, as bootlabd's reload does.
    pub publisher: InventoryPublisher,
    /// The inventory served (dev.toml with this lab's port and paths).
    pub lab: LabBuilder,
    shutdown: CancellationToken,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl std::ops::Deref for Lab {
    type Target = LabDir;

    fn deref(&self) -> &LabDir {
        &self.files
    }
}

impl Lab {
    /// Starts with the default limits.
    pub fn start() -> Self {
        Self::start_with(Limits::default())
    }

    /// Starts with `limits`, serving `config/dev.toml` (assets in a temp dir,
    /// HTTP on the port actually bound).
    pub fn start_with(limits: Limits) -> Self {
        Self::start_custom(limits, |lab| lab)
    }

    /// Like [`Lab::start_with`], with the inventory passed through `edit`
    /// after the port and assets directory are filled in.
    pub fn start_custom(limits: Limits, edit: impl FnOnce(LabBuilder) -> LabBuilder) -> Self {
        Self::start_full(limits, edit, Readiness::new(true))
    }

    /// Like [`Lab::start_custom`], with `/readyz` following `ready`.
    pub fn start_full(
        limits: Limits,
        edit: impl FnOnce(LabBuilder) -> LabBuilder,
        ready: Readiness,
    ) -> Self {
        let files = LabDir::new();
        files.asset("vmlinuz", pattern(300_000));
        files.asset("initrd.img", pattern(200_003));
        files.asset("small.txt", b"hello, bootlab\n".to_vec());

        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr");

        let lab = LabBuilder::dev()
            .edit(|f| f.services.listen.http = Some(addr.to_string()))
            .assets_dir(&files.assets);
        let lab = edit(lab);
        let inv = lab.build();
        assert_eq!(
            inv.services().assets_dir,
            files.assets,
            "assets_dir override applied"
        );
        let (shared, publisher) = Shared::new(inv).expect("boot scripts render");
        let shutdown = CancellationToken::new();
        let thread = {
            let shared = shared.clone();
            let shutdown = shutdown.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(std_listener)?;
                    bootlab_http::serve_with_readiness(listener, shared, shutdown, limits, ready)
                        .await
                })
            })
        };
        Self {
            addr,
            files,
            shared,
            publisher,
            lab,
            shutdown,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the service and waits for it.
    pub fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            t.join()
                .expect("server thread")
                .expect("serve returned an error");
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Deterministic, position-dependent content.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Runs curl with `args`; fails loudly when curl is missing.
pub fn curl(args: &[&str]) -> Output {
    bootlab_testkit::tools::require("curl", "curl");
    Command::new("curl")
        .args(["--silent", "--show-error"])
        .args(args)
        .output()
        .expect("run curl")
}

/// curl's body and the status code (`-w %{http_code}` written to stderr).
pub fn get(args: &[&str]) -> (u16, Vec<u8>) {
    let mut all = vec!["--write-out", "%{stderr}%{http_code}"];
    all.extend_from_slice(args);
    let out = curl(&all);
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let code = err.trim().rsplit('\n').next().unwrap_or("").trim();
    let code = code
        .parse()
        .unwrap_or_else(|_| panic!("no status from curl: {err}"));
    (code, out.stdout)
}

/// Body as text.
pub fn get_text(args: &[&str]) -> (u16, String) {
    let (code, body) = get(args);
    (code, String::from_utf8(body).expect("utf-8 body"))
}

/// The value of metric line `series` (exact name with labels) in `/metrics`.
pub fn metric(lab: &Lab, series: &str) -> u64 {
    let (_, text) = get_text(&[&lab.url("/metrics")]);
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .map_or(0, |v| v as u64)
}
