//! Test helpers: balancers on loopback port 0 with their events recorded,
//! real TLS backends (Python `ssl` + `http.server`, certificates from the
//! `openssl` CLI), in-process echo and scripted TCP backends, and a TLS
//! client that talks HTTP/1.1 through the balancer.

#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bootlab_lb::{BackendState, BalancerConfig, BalancerStatus, LbEvent, LoadBalancers};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Generous bound for anything that should happen "soon" (never a timing
/// assertion: only how long a test may wait before it fails).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Running balancers with their recorded events.
pub struct Lb {
    pub lbs: LoadBalancers,
    pub events: Arc<Mutex<Vec<LbEvent>>>,
    pub shutdown: CancellationToken,
    pub addrs: Vec<SocketAddr>,
}

impl Lb {
    /// Starts `configs` on loopback port-0 listeners (their `listen` is
    /// replaced by the address actually bound).
    pub async fn start(configs: Vec<BalancerConfig>) -> Self {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = {
            let events = Arc::clone(&events);
            Arc::new(move |e: LbEvent| events.lock().unwrap().push(e))
        };
        let mut bound = Vec::new();
        let mut addrs = Vec::new();
        for mut config in configs {
            let listener = bootlab_lb::bind("127.0.0.1:0".parse().unwrap()).expect("bind");
            config.listen = listener.local_addr().unwrap();
            addrs.push(config.listen);
            bound.push((config, listener));
        }
        let shutdown = CancellationToken::new();
        let lbs = LoadBalancers::start(bound, sink, shutdown.clone()).await;
        Self {
            lbs,
            events,
            shutdown,
            addrs,
        }
    }

    /// The first balancer's address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The first balancer's status.
    pub fn status(&self) -> BalancerStatus {
        self.lbs.snapshot().remove(0)
    }

    /// The state of the first balancer's backend `name`.
    pub fn state(&self, name: &str) -> BackendState {
        self.status()
            .backends
            .into_iter()
            .find(|b| b.name == name)
            .unwrap_or_else(|| panic!("no backend {name}"))
            .state
    }

    /// Waits (bounded) until `cond` holds for the first balancer's status.
    pub async fn wait_for(&self, what: &str, cond: impl Fn(&BalancerStatus) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let status = self.status();
            if cond(&status) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("waited {PATIENCE:?} for {what}; status: {status:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every backend named has `state` and, for `Up`, passed a
    /// check (no longer provisional).
    pub async fn wait_state(&self, names: &[&str], state: BackendState) {
        let what = format!("{names:?} to be {state}");
        self.wait_for(&what, |s| {
            names.iter().all(|n| {
                s.backends.iter().any(|b| {
                    b.name == *n
                        && b.state == state
                        && (state != BackendState::Up || b.checks_passed > 0)
                })
            })
        })
        .await;
    }

    /// Events recorded so far.
    pub fn events(&self) -> Vec<LbEvent> {
        self.events.lock().unwrap().clone()
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Runs `fut` with the [`PATIENCE`] bound.
pub async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {PATIENCE:?}"))
}

/// A self-signed certificate and key (made once under the target's temp
/// dir and reused: the balancer never verifies certificates, so expiry or
/// names do not matter).
pub fn certificate() -> (&'static Path, &'static Path) {
    static PAIR: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    let (cert, key) = PAIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let dir = root.join("lb-test-cert");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        if cert.exists() && key.exists() {
            return (cert, key);
        }
        // Made in a private directory renamed into place whole: test
        // binaries run at once, and a pair must never be mixed.
        std::fs::create_dir_all(root).expect("target tmp dir");
        let tmp = tempfile::tempdir_in(root).expect("tempdir");
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
            ])
            .args(["-subj", "/CN=api.lab.test", "-days", "3650", "-keyout"])
            .arg(tmp.path().join("key.pem"))
            .arg("-out")
            .arg(tmp.path().join("cert.pem"))
            .output()
            .expect("openssl (Debian `openssl`) must be installed");
        assert!(
            out.status.success(),
            "openssl req: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Losing the race to another test binary is fine: its pair is used.
        let _ = std::fs::rename(tmp.path(), &dir);
        assert!(
            cert.exists() && key.exists(),
            "no certificate in {}",
            dir.display()
        );
        (cert, key)
    });
    (cert, key)
}

/// A real TLS HTTP server (Python) with `/whoami` and a switchable `/readyz`.
pub struct TlsBackend {
    pub name: String,
    pub addr: SocketAddr,
    state: tempfile::TempDir,
    child: Option<Child>,
}

impl TlsBackend {
    /// Starts one on a free loopback port.
    pub fn start(name: &str) -> Self {
        let state = tempfile::tempdir().expect("tempdir");
        let (child, port) = spawn_python(name, 0, state.path());
        Self {
            name: name.to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            state,
            child: Some(child),
        }
    }

    /// Kills the server (connections to it are refused from now on).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let (child, port) = spawn_python(&self.name, self.addr.port(), self.state.path());
        assert_eq!(port, self.addr.port());
        self.child = Some(child);
    }

    /// `/readyz` answers 500 (`false`) or 200 (`true`).
    pub fn set_ready(&self, ready: bool) {
        let flag = self.state.path().join("unready");
        if ready {
            let _ = std::fs::remove_file(flag);
        } else {
            std::fs::write(flag, b"").expect("unready flag");
        }
    }
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_python(name: &str, port: u16, state: &Path) -> (Child, u16) {
    let (cert, key) = certificate();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/tls_backend.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(name)
        .arg(cert)
        .arg(key)
        .arg(port.to_string())
        .arg(state)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 (Debian `python3`) must be installed");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("backend port");
    let port: u16 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("tls_backend.py {name} did not start: {line:?}"));
    (child, port)
}

/// One HTTP/1.1 exchange over TLS through the balancer, on a connection
/// that stays open between requests.
pub struct HttpsConn {
    stream: tokio_rustls::client::TlsStream<TcpStream>,
}

impl HttpsConn {
    /// Connects to `addr` and completes a TLS handshake (any certificate).
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        let name = rustls::pki_types::ServerName::try_from("api.lab.test").unwrap();
        let stream = bootlab_lb::tls::check_connector()
            .connect(name, tcp)
            .await?;
        Ok(Self { stream })
    }

    /// `GET path`: the status and the body.
    pub async fn get(&mut self, path: &str) -> std::io::Result<(u16, String)> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: api.lab.test\r\n\r\n");
        self.stream.write_all(req.as_bytes()).await?;
        self.stream.flush().await?;
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            if self.stream.read(&mut byte).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let status: u16 = head[9..12].parse().expect("status");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .expect("Content-Length")
            .trim()
            .parse()
            .expect("length");
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).await?;
        Ok((status, String::from_utf8_lossy(&body).trim().to_owned()))
    }
}

/// Which backend answers a fresh connection's `GET /whoami`.
pub async fn whoami(addr: SocketAddr) -> String {
    let mut conn = bounded("connect", HttpsConn::connect(addr))
        .await
        .expect("tls through the balancer");
    let (status, body) = bounded("whoami", conn.get("/whoami"))
        .await
        .expect("whoami");
    assert_eq!(status, 200);
    body
}

/// An in-process TCP echo server; stops when `stop` is cancelled (its
/// port then refuses connections).
pub struct Echo {
    pub addr: SocketAddr,
    pub stop: CancellationToken,
}

impl Echo {
    pub fn start() -> Self {
        let listener = bootlab_lb::bind("127.0.0.1:0".parse().unwrap()).expect("bind echo");
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = tokio::select! {
                    () = token.cancelled() => return,
                    a = listener.accept() => a.expect("echo accept"),
                };
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });
        Self { addr, stop }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Sends `data` to `stream` and reads the same number of bytes back.
pub async fn echo_roundtrip(stream: &mut TcpStream, data: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.write_all(data).await?;
    let mut back = vec![0u8; data.len()];
    stream.read_exact(&mut back).await?;
    Ok(back)
}

/// Reads until EOF (or a reset) with the [`PATIENCE`] bound; returns what
/// arrived.
pub async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = bounded(
        "the balancer closing the client",
        stream.read_to_end(&mut got),
    )
    .await;
    got
}

/// Waits (bounded) until nothing accepts connections on `addr`.
pub async fn wait_closed(addr: SocketAddr) {
    bounded("the port to close", async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
