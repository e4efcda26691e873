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
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bootlab_ntp::{NtpConfig, NtpCounters, ServeOptions, serve_with};
use bootlab_testkit::tools::require;
use bootlab_testkit::{Netns, Service, veth};
use tokio::sync::watch;

/// How long chronyd gets to select the server (it needs a few samples at
/// one-second polls); a hang guard, not a performance assertion.
const SELECT_PATIENCE: Duration = Duration::from_secs(90);
const SERVER_IP: &str = "10.213.0.1";
const CLIENT_IP: &str = "10.213.0.2";
const CMD_PORT: &str = "32399";

/// Two namespaces joined by a veth pair (testkit: removed, with whatever
/// runs in them, on drop, also when the test panics).
struct Lab {
    server: Netns,
    client: Netns,
}

impl Lab {
    fn new() -> Self {
        let server = Netns::new("ntps");
        let client = Netns::new("ntpc");
        veth(&server, "ntv0", &client, "ntv1").up();
        server.add_addr("ntv0", &format!("{SERVER_IP}/24"));
        client.add_addr("ntv1", &format!("{CLIENT_IP}/24"));
        Self { server, client }
    }

    fn chronyc(&self, what: &str) -> String {
        let out = self
            .client
            .command("chronyc")
            .args(["-h", "127.0.0.1", "-p", CMD_PORT, "-n", what])
            .output()
            .expect("chronyc runs (Debian chrony; tests/run-all.sh installs it)");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chronyd_selects_our_server_as_its_source() {
    require("chronyd", "chrony");
    let mut lab = Lab::new();
    let socket = lab
        .server
        .bind_udp(format!("{SERVER_IP}:123").parse().unwrap());
    socket.set_nonblocking(true).unwrap();
    let socket = tokio::net::UdpSocket::from_std(socket).unwrap();
    let (_config, rx) = watch::channel(NtpConfig::default());
    let counters = Arc::new(NtpCounters::default());
    let server = {
        let counters = counters.clone();
        Service::spawn(|token| serve_with(socket, rx, token, ServeOptions::default(), counters))
    };

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
    let mut chronyd = lab.client.command("chronyd");
    chronyd
        .args(["-x", "-d", "-u", "root", "-f"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(log);
    let chronyd = lab.client.spawn(chronyd);

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
        if let Some(status) = lab.client.exited(chronyd) {
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
    server.stop().await;
}
