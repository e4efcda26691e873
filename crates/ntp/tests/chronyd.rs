//! A real chronyd (Debian `chrony`) in a client network namespace selects
//! our server, which runs in process in the other namespace of a veth pair.
//! chronyd runs with `-x` (never touches the clock), in the foreground,
//! with its own pidfile, drift file and command sockets, polling every
//! second; the test asks `chronyc sources` until our server is the
//! selected source ('*'), within a bounded wait.
//!
//! Needs root (network namespaces), iproute2 and chrony; a missing tool is
//! a failure, never a skip (tests/apt-packages.txt lists them).

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bootlab_ntp::{NtpConfig, NtpCounters, ServeOptions, serve_with};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long chronyd gets to select the server (it needs a few samples at
/// one-second polls); a hang guard, not a performance assertion.
const SELECT_PATIENCE: Duration = Duration::from_secs(90);
const SERVER_IP: &str = "10.213.0.1";
const CLIENT_IP: &str = "10.213.0.2";
const CMD_PORT: &str = "32399";

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e} (needs root and iproute2)"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces joined by a veth pair; removed (with whatever runs in
/// them) on drop, also when the test panics.
struct Lab {
    server_ns: String,
    client_ns: String,
    chronyd: Option<Child>,
}

impl Lab {
    fn new() -> Self {
        let pid = std::process::id();
        let lab = Self {
            server_ns: format!("ntps-{pid}"),
            client_ns: format!("ntpc-{pid}"),
            chronyd: None,
        };
        let (a, b) = (format!("ntv{pid}a"), format!("ntv{pid}b"));
        run(&["ip", "netns", "add", &lab.server_ns]);
        run(&["ip", "netns", "add", &lab.client_ns]);
        run(&[
            "ip",
            "link",
            "add",
            &a,
            "netns",
            &lab.server_ns,
            "type",
            "veth",
            "peer",
            "name",
            &b,
            "netns",
            &lab.client_ns,
        ]);
        for (ns, dev, ip) in [
            (&lab.server_ns, &a, SERVER_IP),
            (&lab.client_ns, &b, CLIENT_IP),
        ] {
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                dev,
            ]);
            run(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        lab
    }

    /// A std socket bound inside the server namespace (made on a thread
    /// that entered it; the socket stays there).
    fn bind_in_server_ns(&self, addr: &str) -> std::net::UdpSocket {
        let path = format!("/var/run/netns/{}", self.server_ns);
        let addr = addr.to_owned();
        std::thread::spawn(move || {
            let fd = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let s = std::net::UdpSocket::bind(&addr).unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .join()
        .expect("netns thread")
    }

    fn chronyc(&self, what: &str) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.client_ns, "chronyc"])
            .args(["-h", "127.0.0.1", "-p", CMD_PORT, "-n", what])
            .output()
            .expect("chronyc runs (Debian chrony; tests/run-all.sh installs it)");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.chronyd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.client_ns, &self.server_ns] {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chronyd_selects_our_server_as_its_source() {
    let mut lab = Lab::new();
    let socket = lab.bind_in_server_ns(&format!("{SERVER_IP}:123"));
    let socket = tokio::net::UdpSocket::from_std(socket).unwrap();
    let (_config, rx) = watch::channel(NtpConfig::default());
    let counters = Arc::new(NtpCounters::default());
    let token = CancellationToken::new();
    let server = tokio::spawn(serve_with(
        socket,
        rx,
        token.clone(),
        ServeOptions::default(),
        counters.clone(),
    ));

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let conf = dir.path().join("chrony.conf");
    std::fs::write(
        &conf,
        format!(
            "server {SERVER_IP} iburst minpoll 0 maxpoll 0\n\
             port 0\n\
             bindcmdaddress 127.0.0.1\n\
             bindcmdaddress {d}/chronyd.sock\n\
             cmdport {CMD_PORT}\n\
             pidfile {d}/chronyd.pid\n\
             driftfile {d}/chronyd.drift\n"
        ),
    )
    .unwrap();
    let log = File::create(dir.path().join("chronyd.log")).unwrap();
    lab.chronyd = Some(
        Command::new("ip")
            .args(["netns", "exec", &lab.client_ns, "chronyd"])
            .args(["-x", "-d", "-u", "root", "-f"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("chronyd runs (Debian chrony; tests/run-all.sh installs it)"),
    );

    let deadline = Instant::now() + SELECT_PATIENCE;
    let (selected, sources) = loop {
        let sources = lab.chronyc("sources");
        if sources
            .lines()
            .any(|l| l.starts_with("^*") && l.contains(SERVER_IP))
        {
            break (true, sources);
        }
        if Instant::now() > deadline {
            break (false, sources);
        }
        if let Some(c) = lab.chronyd.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            panic!(
                "chronyd exited ({status}): {}",
                std::fs::read_to_string(dir.path().join("chronyd.log")).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let tracking = lab.chronyc("tracking");
    assert!(
        selected,
        "chronyd did not select {SERVER_IP}\nsources:\n{sources}\ntracking:\n{tracking}\nlog:\n{}",
        std::fs::read_to_string(dir.path().join("chronyd.log")).unwrap_or_default()
    );
    // chronyd sees what we answer: stratum 10 -> its own stratum 11.
    assert!(tracking.contains("Stratum         : 11"), "{tracking}");
    assert!(tracking.contains(SERVER_IP), "{tracking}");
    assert!(counters.replies.load(Ordering::Relaxed) >= 4);
    assert_eq!(counters.rate_limited.load(Ordering::Relaxed), 0);
    token.cancel();
    server.await.unwrap().unwrap();
}
