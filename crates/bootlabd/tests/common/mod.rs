//! Test support for the tests that need bootlabd to bind its own ports
//! (readiness is only meaningful then) and for the packaging tests:
//! config/dev.toml on free loopback ports, the repository, the .deb.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[allow(unused_imports)] // not every test binary runs the daemon
pub use bootlab_testkit::Daemon;
use bootlab_testkit::LabBuilder;
#[allow(unused_imports)]
pub use bootlab_testkit::daemon::PATIENCE as READY;
use bootlab_testkit::lab::Listen;
use bootlab_testkit::net::free_port;

/// A path in the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// Free loopback ports for DHCP, DNS, TFTP and HTTP.
pub fn ports() -> [u16; 4] {
    [free_port(), free_port(), free_port(), free_port()]
}

/// config/dev.toml as a test daemon on `ports` (DHCP, DNS, TFTP, HTTP; NTP
/// on another free port), state under `dir`, with `extra_nodes` more nodes.
pub fn lab_on(dir: &Path, ports: [u16; 4], extra_nodes: usize) -> String {
    lab_builder_on(dir, ports, extra_nodes).toml()
}

/// [`lab_on`] before it is written out, for typed edits.
pub fn lab_builder_on(dir: &Path, ports: [u16; 4], extra_nodes: usize) -> LabBuilder {
    let at = |p: u16| std::net::SocketAddr::from(([127, 0, 0, 1], p));
    let listen = Listen {
        dhcp: at(ports[0]),
        dns: at(ports[1]),
        tftp: at(ports[2]),
        http: at(ports[3]),
        ntp: at(free_port()),
    };
    LabBuilder::dev().local_daemon(dir, &listen).edit(|f| {
        for i in 0..extra_nodes {
            let mut n = f.nodes[0].clone();
            n.name = format!("extra-{i}");
            n.mac = None;
            n.ip = format!("127.0.0.{}", 20 + i);
            n.firmware = None;
            n.vars.clear();
            f.nodes.push(n);
        }
    })
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
