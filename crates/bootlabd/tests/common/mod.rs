//! Test support shared by bootlabd's integration tests: the real daemon as
//! a child process whose log lines can be waited for, and config/dev.toml
//! moved to free loopback ports.

#![allow(dead_code)] // each test binary uses its own subset

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a test waits for a log line, a readiness probe or an exit.
pub const READY: Duration = Duration::from_secs(60);

/// A running `bootlabd` whose stderr lines arrive on a channel; killed on drop.
pub struct Daemon {
    /// The process.
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl Daemon {
    /// Spawns `cmd` (bootlabd with its arguments, possibly wrapped in
    /// `ip netns exec`) and waits for "bootlabd ready".
    pub fn spawn(cmd: Command) -> Self {
        let mut d = Self::start(cmd);
        d.wait_for("bootlabd ready");
        d
    }

    /// Spawns `cmd` without waiting for anything.
    pub fn start(mut cmd: Command) -> Self {
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded by [`READY`]) for a new log line containing `needle`.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + READY;
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        panic!(
                            "bootlabd exited ({status}) before {needle:?}:\n{}",
                            self.seen.join("\n")
                        );
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!(
            "no log line with {needle:?}; saw:\n{}",
            self.seen.join("\n")
        );
    }

    /// Sends a signal (`HUP`, `TERM`...).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill -s {sig}");
    }

    /// SIGTERM and wait (bounded by [`READY`]) for exit 0.
    pub fn stop(&mut self) {
        self.signal("TERM");
        let deadline = Instant::now() + READY;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert_eq!(status.code(), Some(0), "{}", self.seen.join("\n"));
                return;
            }
            assert!(Instant::now() < deadline, "bootlabd ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A path in the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// A loopback port that was free a moment ago (TCP and UDP).
pub fn free_port() -> u16 {
    loop {
        let t = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Free loopback ports for DHCP, DNS, TFTP and HTTP.
pub fn ports() -> [u16; 4] {
    [free_port(), free_port(), free_port(), free_port()]
}

/// config/dev.toml moved to `dir` and `ports`, with `extra_nodes` more nodes.
pub fn lab_on(dir: &Path, ports: [u16; 4], extra_nodes: usize) -> String {
    let mut text = std::fs::read_to_string(repo("config/dev.toml")).unwrap();
    for (old, new) in [
        ("127.0.0.1:6767", format!("127.0.0.1:{}", ports[0])),
        ("127.0.0.1:5353", format!("127.0.0.1:{}", ports[1])),
        ("127.0.0.1:6969", format!("127.0.0.1:{}", ports[2])),
        ("127.0.0.1:8080", format!("127.0.0.1:{}", ports[3])),
        (
            "../target/dev-lab/data",
            dir.join("data").display().to_string(),
        ),
        (
            "../target/dev-lab/assets",
            dir.join("assets").display().to_string(),
        ),
    ] {
        assert!(text.contains(old), "{old}");
        text = text.replace(old, &new);
    }
    for i in 0..extra_nodes {
        text.push_str(&format!(
            "\n[[nodes]]\nname = \"extra-{i}\"\nrole = \"worker\"\nip = \"127.0.0.{}\"\n",
            20 + i
        ));
    }
    text
}

/// Builds the Debian package with tests/build-deb.sh (once per test
/// binary: release builds, man pages, cargo-deb) and returns its path.
pub fn build_deb() -> PathBuf {
    static DEB: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DEB.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo("tests/build-deb.sh"))
            .stdin(Stdio::null())
            .output()
            .expect("bash runs tests/build-deb.sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "tests/build-deb.sh failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let deb = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
        assert!(
            deb.extension().is_some_and(|e| e == "deb") && deb.is_file(),
            "build-deb.sh named no .deb: {stdout}"
        );
        deb
    })
    .clone()
}

/// Runs `cmd`, failing loudly (with its output) unless it succeeds; stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (see tests/apt-packages.txt)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
