//! Network-namespace helpers for the firewall tests.
//!
//! Every namespace gets a name unique to the test process and test, and is
//! deleted on drop (also when the test panics); background servers are
//! killed on drop. Nothing is configured outside the namespaces the tests
//! create: all `ip`/`nft` commands run under `ip netns exec`, and "internet"
//! addresses (198.51.100.0/24, 203.0.113.0/24, 192.0.2.0/24) exist only
//! inside them.
//!
//! A missing tool or privilege fails the test loudly; nothing skips.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use bootlab_firewall::Nft;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Panics with a clear message unless `ip`, `nft`, `curl`, `python3` and
/// `busybox` run
/// and we may create network namespaces.
pub fn require_tools() {
    for (tool, arg) in [
        ("ip", "-V"),
        ("nft", "--version"),
        ("curl", "--version"),
        ("python3", "--version"),
        ("busybox", "true"),
    ] {
        let ok = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "`{tool}` is required by the namespace tests (apt-get install -y $(grep -v '^#' tests/apt-packages.txt))"
        );
    }
}

/// A network namespace that is deleted on drop.
pub struct Netns {
    pub name: String,
    children: Vec<Child>,
}

impl Netns {
    /// Creates `blfw-<pid>-<seq>-<role>` with loopback up.
    pub fn new(role: &str) -> Self {
        let name = format!(
            "blfw-{}-{}-{role}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("run ip netns add");
        assert!(
            out.status.success(),
            "cannot create network namespace {name} (root and CAP_SYS_ADMIN needed): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ns = Self {
            name,
            children: vec![],
        };
        ns.sh("ip link set lo up");
        ns
    }

    /// Runs `sh -c script` inside the namespace; panics on failure.
    pub fn sh(&self, script: &str) -> String {
        let out = self.try_sh(script);
        match out {
            Ok(stdout) => stdout,
            Err(e) => panic!("in {}: `{script}` failed: {e}", self.name),
        }
    }

    /// Runs `sh -c script` inside the namespace.
    pub fn try_sh(&self, script: &str) -> Result<String, String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c", script])
            .output()
            .expect("run ip netns exec");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "exit {:?}: {}{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// `nft` inside this namespace.
    pub fn nft(&self) -> Nft {
        Nft::in_netns(&self.name)
    }

    /// Starts `python3 -m http.server` on `addr:port` (serving the golden files) and waits until it accepts connections.
    pub fn http_server(&mut self, addr: &str, port: u16) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args([
                "python3",
                "-m",
                "http.server",
                "--bind",
                addr,
                &port.to_string(),
            ])
            .args([
                "--directory",
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 http.server");
        self.children.push(child);
        // Wait for the listener: poll with a connect from inside (no deadline
        // assertion; a server that never comes up hangs the test visibly).
        loop {
            if self
                .try_sh(&format!(
                    "curl -s -o /dev/null --connect-timeout 1 http://{addr}:{port}/"
                ))
                .is_ok()
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// True when an HTTP GET to `addr:port` from this namespace gets an
    /// HTTP answer (generous limits: a busy machine must not fail it).
    pub fn http_reachable(&self, addr: &str, port: u16) -> bool {
        self.try_sh(&format!(
            "curl -s -o /dev/null --connect-timeout 15 --max-time 30 http://{addr}:{port}/"
        ))
        .is_ok()
    }

    /// True when the connection attempt to `addr:port` goes unanswered
    /// (curl's "timed out", exit 28): the SYN was dropped. A refusal (RST,
    /// ICMP unreachable) or an answer is `false`. The tests pair this with a
    /// drop counter that must have grown, so a slow answer cannot pass as a
    /// drop.
    pub fn http_dropped(&self, addr: &str, port: u16) -> bool {
        let status = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(["curl", "-s", "-o", "/dev/null", "--connect-timeout", "2"])
            .arg(format!("http://{addr}:{port}/"))
            .status()
            .expect("run curl");
        status.code() == Some(28)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A veth pair: `a_if` in `a`, `b_if` in `b`.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    a.sh(&format!(
        "ip link add {a_if} type veth peer name {b_if} netns {} && ip link set {a_if} up",
        b.name
    ));
    b.sh(&format!("ip link set {b_if} up"));
}
