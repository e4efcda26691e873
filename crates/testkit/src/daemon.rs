//! The real `bootlabd` as a child process, on sockets the test bound
//! itself (port 0, so no free-port races): they are handed over with
//! systemd's socket-activation protocol (`LISTEN_FDS`, `LISTEN_FDNAMES`),
//! which bootlabd reads at start. Or a command of the test's own making
//! (bootlabd under `ip netns exec`, [`crate::Netns::command`]). Its log
//! lines can be waited for; it is killed on drop.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};

pub use crate::PATIENCE;
use crate::lab::{LabBuilder, Listen};
use crate::net::udp_and_tcp;

/// The `bootlabd` binary built next to the running test binary (for tests
/// outside the bootlabd package, which cannot name it with
/// `CARGO_BIN_EXE_bootlabd`); panics with the build command when missing.
pub fn bootlabd() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/bootlabd
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary under target/<profile>/deps");
    let p = profile_dir.join("bootlabd");
    assert!(
        p.is_file(),
        "{} is missing: cargo build -p bootlab-bootlabd",
        p.display()
    );
    p
}

/// Loopback sockets for every service (and named balancers), bound now.
#[derive(Debug)]
pub struct Sockets {
    /// Where each service listens.
    pub listen: Listen,
    /// Balancer name -> its listen address.
    pub balancers: Vec<(String, SocketAddr)>,
    fds: Vec<(String, OwnedFd)>,
}

impl Sockets {
    /// Binds DHCP, DNS (UDP + TCP), TFTP, HTTP and NTP on 127.0.0.1 port 0,
    /// and one listener per name in `balancers`.
    pub fn loopback(balancers: &[&str]) -> Self {
        let bind_udp = || UdpSocket::bind("127.0.0.1:0").expect("bind udp 127.0.0.1:0");
        let bind_tcp = || TcpListener::bind("127.0.0.1:0").expect("bind tcp 127.0.0.1:0");
        let (dhcp, tftp, ntp) = (bind_udp(), bind_udp(), bind_udp());
        let (dns_udp, dns_tcp) = udp_and_tcp();
        let http = bind_tcp();
        let addr_u = |s: &UdpSocket| s.local_addr().expect("local addr");
        let addr_t = |s: &TcpListener| s.local_addr().expect("local addr");
        let listen = Listen {
            dhcp: addr_u(&dhcp),
            dns: addr_u(&dns_udp),
            tftp: addr_u(&tftp),
            http: addr_t(&http),
            ntp: addr_u(&ntp),
        };
        let mut fds: Vec<(String, OwnedFd)> = vec![
            ("dhcp".into(), dhcp.into()),
            ("dns".into(), dns_udp.into()),
            ("dns".into(), dns_tcp.into()),
            ("tftp".into(), tftp.into()),
            ("http".into(), http.into()),
            ("ntp".into(), ntp.into()),
        ];
        let mut bound = Vec::new();
        for name in balancers {
            let l = bind_tcp();
            bound.push(((*name).to_owned(), addr_t(&l)));
            fds.push((format!("lb-{name}"), l.into()));
        }
        Self {
            listen,
            balancers: bound,
            fds,
        }
    }

    /// The listen address of balancer `name`.
    pub fn balancer(&self, name: &str) -> SocketAddr {
        self.balancers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no socket bound for balancer {name}"))
    }

    /// `lab` as a test daemon on these sockets, state under `dir`
    /// ([`LabBuilder::local_daemon`]): the balancers bound here keep their
    /// settings and listen on their bound address; the others are left out.
    pub fn lab(&self, lab: LabBuilder, dir: &Path) -> LabBuilder {
        let bound = self.balancers.clone();
        let kept: Vec<_> = lab
            .file
            .balancers
            .iter()
            .filter(|b| bound.iter().any(|(n, _)| *n == b.name))
            .cloned()
            .collect();
        lab.local_daemon(dir, &self.listen).edit(move |f| {
            f.balancers = kept;
            for b in &mut f.balancers {
                if let Some((_, a)) = bound.iter().find(|(n, _)| *n == b.name) {
                    b.address = Some(a.ip().to_string());
                    b.port = a.port();
                }
            }
        })
    }
}

/// A running `bootlabd` whose stderr lines arrive on a channel; killed on
/// drop.
pub struct Daemon {
    /// The process.
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl Daemon {
    /// Spawns `cmd` (bootlabd with its arguments, possibly wrapped in
    /// `ip netns exec`) and waits for "bootlabd ready". `RUST_LOG` is
    /// `info` unless `cmd` sets it.
    pub fn spawn(cmd: Command) -> Self {
        let mut d = Self::launch(cmd, None);
        d.wait_for("bootlabd ready");
        d
    }

    /// Spawns `cmd` without waiting for anything.
    pub fn start(cmd: Command) -> Self {
        Self::launch(cmd, None)
    }

    /// Spawns `bin --config config` on `sockets` and waits for "bootlabd
    /// ready".
    pub fn on_sockets(bin: &Path, config: &Path, sockets: Sockets) -> Self {
        let mut cmd = Command::new(bin);
        cmd.arg("--config").arg(config);
        let mut d = Self::launch(cmd, Some(sockets));
        d.wait_for("bootlabd ready");
        d
    }

    fn launch(mut cmd: Command, sockets: Option<Sockets>) -> Self {
        if let Some(s) = sockets {
            let names: Vec<String> = s.fds.iter().map(|(n, _)| n.clone()).collect();
            cmd.env("LISTEN_FDS", names.len().to_string())
                .env("LISTEN_FDNAMES", names.join(":"))
                .env_remove("LISTEN_PID");
            let mappings = s
                .fds
                .into_iter()
                .enumerate()
                .map(|(i, (_, fd))| FdMapping {
                    parent_fd: fd,
                    child_fd: 3 + i as i32,
                })
                .collect();
            cmd.fd_mappings(mappings).expect("distinct child fds");
        }
        if !cmd.get_envs().any(|(k, _)| k == "RUST_LOG") {
            cmd.env("RUST_LOG", "info");
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        // The parent's copies of the passed sockets close with `cmd`.
        drop(cmd);
        let stderr = child.stderr.take().expect("piped stderr");
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

    /// Waits (bounded by [`PATIENCE`]) for a new log line containing `needle`.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
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

    /// Every line logged so far (those not waited for included), one per
    /// line.
    pub fn log(&mut self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }

    /// SIGKILL (no chance to clean up) and reap it.
    pub fn kill(&mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }

    /// Sends a signal (`HUP`, `TERM`...).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success(), "kill -s {sig}");
    }

    /// SIGTERM and wait (bounded by [`PATIENCE`]) for exit 0; the lines it
    /// logged on the way out are added to [`Daemon::seen`].
    pub fn stop(&mut self) {
        self.signal("TERM");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Everything it logged on the way out.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
                    self.seen.push(line);
                }
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
