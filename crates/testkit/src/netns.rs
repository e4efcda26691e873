//! Network namespaces with guaranteed cleanup.
//!
//! A [`Netns`] is a named namespace (`ip netns add`) owned by one test: its
//! name carries the test process's pid and a per-process sequence number,
//! so tests running at the same time (in this process or in others) never
//! meet. Dropping it (also while a failed assertion unwinds) kills the
//! processes it started and whatever else still runs inside, then deletes
//! the namespace, which takes its links (veths, bridges, taps) with it.
//!
//! Links are only ever created inside a test's namespaces (a veth pair is
//! made with both ends placed at once), so names like `eth0` are fine;
//! [`Netns::ifname`] gives names unique to the instance (<= 15 bytes, the
//! kernel's limit) where a test wants them anyway.
//!
//! Commands run with `ip netns exec`; sockets are made inside with
//! [`Netns::run_in`] (a thread that entered the namespace; a socket stays in
//! the namespace it was made in). [`Gateway`] wires the node ── services ──
//! internet topology of gateway mode. [`isolated`] runs a closure in a
//! fresh anonymous namespace that dies with its thread.
//!
//! Needs root and iproute2; a test that cannot create its namespace fails
//! loudly, it never skips.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::tools::{require, require_root, run};
use crate::wait_until;

/// Longest interface name the kernel takes (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// `n` in base 36, at least `width` digits.
fn base36(mut n: u64, width: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    while n > 0 || out.len() < width {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).expect("ascii digits")
}

/// A network namespace deleted on drop, with the processes started in it.
#[derive(Debug)]
pub struct Netns {
    name: String,
    tag: String,
    children: Vec<Child>,
}

impl Netns {
    /// Creates `bltk-<pid>-<seq>-<role>` with loopback up.
    pub fn new(role: &str) -> Self {
        require_root();
        require("ip", "iproute2");
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("bltk-{pid}-{seq}-{role}");
        // pid_max is at most 2^22: five base-36 digits hold every pid.
        let tag = format!("k{}{}", base36(pid.into(), 5), base36(seq.into(), 1));
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("run `ip netns add`");
        assert!(
            out.status.success(),
            "cannot create network namespace {name} (root needed): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // From here on, Drop removes it.
        let ns = Self {
            name,
            tag,
            children: Vec::new(),
        };
        ns.link_up("lo");
        ns
    }

    /// The namespace's name (for `ip netns exec`, `nft` wrappers...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An interface name unique to this instance: a short tag (pid and
    /// sequence number) followed by `suffix`; panics beyond 15 bytes.
    pub fn ifname(&self, suffix: &str) -> String {
        let name = format!("{}{suffix}", self.tag);
        assert!(
            name.len() <= IFNAME_MAX,
            "interface name {name:?} is longer than {IFNAME_MAX} bytes"
        );
        name
    }

    /// `program` run inside the namespace (not started yet).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `program args` inside; panics with its output unless it
    /// succeeds. Returns the output.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        run(self.command(program).args(args))
    }

    /// `ip -n <ns> args`; panics with its output unless it succeeds.
    pub fn ip(&self, args: &[&str]) {
        run(Command::new("ip").args(["-n", &self.name]).args(args));
    }

    /// `sh -c script` inside; its stdout. Panics when it fails.
    pub fn sh(&self, script: &str) -> String {
        self.try_sh(script)
            .unwrap_or_else(|e| panic!("in {}: `{script}` failed: {e}", self.name))
    }

    /// `sh -c script` inside: its stdout, or the exit status and output.
    pub fn try_sh(&self, script: &str) -> Result<String, String> {
        let out = self
            .command("sh")
            .args(["-c", script])
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

    /// Starts `cmd` (usually from [`Netns::command`]) in the background; it
    /// is killed when the namespace is dropped. Returns its pid.
    pub fn spawn(&mut self, mut cmd: Command) -> u32 {
        let child = cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// The background process with `pid` has exited (its status), if so.
    pub fn exited(&mut self, pid: u32) -> Option<std::process::ExitStatus> {
        self.children
            .iter_mut()
            .find(|c| c.id() == pid)
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Runs `f` on a thread that entered this namespace and returns what it
    /// returns (sockets made there stay in this namespace).
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = Path::new("/var/run/netns").join(&self.name);
        std::thread::spawn(move || {
            let fd = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// A UDP socket bound to `addr` inside this namespace.
    pub fn bind_udp(&self, addr: SocketAddr) -> UdpSocket {
        self.run_in(move || UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}")))
    }

    /// A TCP listener bound to `addr` inside this namespace.
    pub fn bind_tcp(&self, addr: SocketAddr) -> TcpListener {
        self.run_in(move || TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}")))
    }

    /// Brings `dev` up.
    pub fn link_up(&self, dev: &str) {
        self.ip(&["link", "set", dev, "up"]);
    }

    /// Adds `cidr` (`10.77.0.254/24`) to `dev`.
    pub fn add_addr(&self, dev: &str, cidr: &str) {
        self.ip(&["addr", "add", cidr, "dev", dev]);
    }

    /// A default route via `gateway`.
    pub fn default_route(&self, gateway: &str) {
        self.ip(&["route", "add", "default", "via", gateway]);
    }

    /// Turns IPv4 forwarding on (inside this namespace only).
    pub fn forward_ipv4(&self) {
        self.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
    }

    /// A bridge `name`, up.
    pub fn add_bridge(&self, name: &str) {
        self.ip(&["link", "add", name, "type", "bridge"]);
        self.link_up(name);
    }

    /// Enslaves `dev` to `bridge`.
    pub fn set_master(&self, dev: &str, bridge: &str) {
        self.ip(&["link", "set", dev, "master", bridge]);
    }

    /// A tap device `name` on `bridge`, up (QEMU guests attach to it).
    pub fn add_tap(&self, name: &str, bridge: &str) {
        self.ip(&["tuntap", "add", "dev", name, "mode", "tap"]);
        self.set_master(name, bridge);
        self.link_up(name);
    }

    /// Starts `python3 -m http.server` on `addr:port` serving `dir` and waits
    /// (bounded) until it answers.
    pub fn http_server(&mut self, addr: &str, port: u16, dir: &Path) {
        require("python3", "python3");
        require("curl", "curl");
        let mut c = self.command("python3");
        c.args(["-m", "http.server", "--bind", addr, &port.to_string()])
            .arg("--directory")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.spawn(c);
        let url = format!("http://{addr}:{port}/");
        wait_until(&format!("HTTP server {url} in {}", self.name), || {
            self.try_sh(&format!(
                "curl -s -o /dev/null --connect-timeout 1 --max-time 5 {url}"
            ))
            .is_ok()
        });
    }

    /// An HTTP GET from here to `addr:port` gets an answer (generous limits:
    /// a lost first SYN is retransmitted within the connect timeout, and a
    /// busy machine must not fail it).
    pub fn http_reachable(&self, addr: &str, port: u16) -> bool {
        require("curl", "curl");
        self.try_sh(&format!(
            "curl -s -o /dev/null --connect-timeout 15 --max-time 30 http://{addr}:{port}/"
        ))
        .is_ok()
    }

    /// The connection attempt to `addr:port` goes unanswered (curl's "timed
    /// out", exit 28): the SYN was dropped. A refusal or an answer is
    /// `false`. Pair it with a drop counter that must have grown, so a slow
    /// answer cannot pass as a drop.
    pub fn http_dropped(&self, addr: &str, port: u16) -> bool {
        require("curl", "curl");
        let status = self
            .command("curl")
            .args(["-s", "-o", "/dev/null", "--connect-timeout", "2"])
            .arg(format!("http://{addr}:{port}/"))
            .status()
            .expect("run curl");
        status.code() == Some(28)
    }

    /// Whether the namespace still exists (`ip netns list`).
    pub fn exists(name: &str) -> bool {
        Path::new("/var/run/netns").join(name).exists()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Whatever else still runs inside (a daemon's children, a client
        // that forked into the background) would keep the namespace alive.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let deleted = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !deleted {
            eprintln!("testkit: could not delete network namespace {}", self.name);
        }
    }
}

/// One end of a [`Veth`] pair.
#[derive(Debug)]
struct End<'a> {
    ns: &'a Netns,
    name: String,
    mac: Option<String>,
}

/// A veth pair between two namespaces, both ends created in place (never
/// in the machine's own namespace) and brought up by [`Veth::up`].
#[derive(Debug)]
pub struct Veth<'a> {
    a: End<'a>,
    b: End<'a>,
}

/// A veth pair: `a_if` in `a`, `b_if` in `b`; finish with [`Veth::up`].
pub fn veth<'a>(a: &'a Netns, a_if: &str, b: &'a Netns, b_if: &str) -> Veth<'a> {
    for n in [a_if, b_if] {
        assert!(n.len() <= IFNAME_MAX, "interface name {n:?} too long");
    }
    let end = |ns, name: &str| End {
        ns,
        name: name.to_owned(),
        mac: None,
    };
    Veth {
        a: end(a, a_if),
        b: end(b, b_if),
    }
}

impl Veth<'_> {
    /// The MAC of the end in the first namespace.
    pub fn a_mac(mut self, mac: &str) -> Self {
        self.a.mac = Some(mac.to_owned());
        self
    }

    /// The MAC of the end in the second namespace.
    pub fn b_mac(mut self, mac: &str) -> Self {
        self.b.mac = Some(mac.to_owned());
        self
    }

    /// Creates the pair and brings both ends up.
    pub fn up(self) {
        let mut args: Vec<&str> = vec!["link", "add", &self.a.name];
        if let Some(m) = &self.a.mac {
            args.extend(["address", m]);
        }
        args.extend(["type", "veth", "peer", "name", &self.b.name]);
        if let Some(m) = &self.b.mac {
            args.extend(["address", m]);
        }
        args.extend(["netns", self.b.ns.name()]);
        self.a.ns.ip(&args);
        self.a.ns.link_up(&self.a.name);
        self.b.ns.link_up(&self.b.name);
    }
}

/// Three namespaces wired as an isolated lab whose services node is the
/// gateway (the topology bootlab's gateway mode runs in):
///
/// ```text
///  node 10.77.0.10 ── eth0 [services 10.77.0.254 | uplink eth1 192.0.2.2] ── in0 internet 192.0.2.1
/// ```
///
/// The node's default route is the services node, which forwards and
/// routes everything else to the internet namespace; the internet holds
/// extra host addresses (documentation ranges) on its loopback. Nothing
/// filters yet. Every address exists only inside these namespaces.
#[derive(Debug)]
pub struct Gateway {
    /// The services node (lab side `eth0`, uplink `eth1`).
    pub services: Netns,
    /// A lab node (`eth0`).
    pub node: Netns,
    /// The outside world (`in0`, extra hosts on `lo`).
    pub internet: Netns,
}

impl Gateway {
    /// The node's address.
    pub const NODE: &str = "10.77.0.10";
    /// The services node's lab address.
    pub const SERVICES: &str = "10.77.0.254";
    /// The services node's uplink address.
    pub const UPLINK: &str = "192.0.2.2";
    /// The internet's address on the uplink link.
    pub const INTERNET: &str = "192.0.2.1";

    /// Wires the three; the services node's lab NIC gets `lab_mac` and its
    /// uplink `uplink_mac` (bootlabd finds its NICs by MAC); `hosts` are
    /// added to the internet's loopback as /32s.
    pub fn new(lab_mac: &str, uplink_mac: &str, hosts: &[&str]) -> Self {
        let internet = Netns::new("inet");
        let services = Netns::new("svc");
        let node = Netns::new("node");
        veth(&node, "eth0", &services, "eth0").b_mac(lab_mac).up();
        veth(&internet, "in0", &services, "eth1")
            .b_mac(uplink_mac)
            .up();
        node.add_addr("eth0", &format!("{}/24", Self::NODE));
        node.default_route(Self::SERVICES);
        services.forward_ipv4();
        services.add_addr("eth0", &format!("{}/24", Self::SERVICES));
        services.add_addr("eth1", &format!("{}/24", Self::UPLINK));
        services.default_route(Self::INTERNET);
        internet.add_addr("in0", &format!("{}/24", Self::INTERNET));
        for host in hosts {
            internet.add_addr("lo", &format!("{host}/32"));
        }
        Self {
            services,
            node,
            internet,
        }
    }
}

/// Runs `f` on a new thread inside a fresh, anonymous network namespace
/// (only `lo`, down): nothing to name or clean up, it goes when the thread
/// and the sockets made in it are gone. Commands spawned from `f` run in
/// it too.
pub fn isolated<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    require_root();
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                    .expect("unshare(CLONE_NEWNET): run the tests as root");
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_interface_names_fit() {
        let (a, b) = (Netns::new("unit"), Netns::new("unit"));
        assert_ne!(a.name(), b.name());
        assert!(a.name().contains(&std::process::id().to_string()));
        let (x, y) = (a.ifname("srv"), b.ifname("srv"));
        assert_ne!(x, y);
        assert!(x.len() <= IFNAME_MAX, "{x}");
        assert_eq!(base36(4_194_304, 5).len(), 5, "the largest pid fits");
    }

    #[test]
    fn a_namespace_is_gone_after_drop_with_its_processes() {
        let mut ns = Netns::new("drop");
        let name = ns.name().to_owned();
        assert!(Netns::exists(&name));
        let mut sleeper = ns.command("sleep");
        sleeper.arg("600");
        let pid = ns.spawn(sleeper);
        // A process that left the test's hands (double fork) dies too.
        ns.sh("setsid sleep 600 >/dev/null 2>&1 &");
        drop(ns);
        assert!(!Netns::exists(&name), "{name} still exists");
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn a_namespace_is_gone_after_a_panic_in_its_scope() {
        let name = std::sync::Mutex::new(String::new());
        let result = std::panic::catch_unwind(|| {
            let ns = Netns::new("panic");
            *name.lock().unwrap() = ns.name().to_owned();
            assert!(Netns::exists(ns.name()));
            panic!("a failed assertion");
        });
        assert!(result.is_err());
        let name = name.into_inner().unwrap();
        assert!(!name.is_empty());
        assert!(!Netns::exists(&name), "{name} survived the panic");
    }

    #[test]
    fn veth_pairs_carry_traffic_and_go_with_their_namespaces() {
        let a = Netns::new("va");
        let b = Netns::new("vb");
        let (ai, bi) = (a.ifname("a"), b.ifname("b"));
        veth(&a, &ai, &b, &bi)
            .a_mac("02:00:00:00:00:0a")
            .b_mac("02:00:00:00:00:0b")
            .up();
        a.add_addr(&ai, "10.213.9.1/24");
        b.add_addr(&bi, "10.213.9.2/24");
        assert!(
            a.sh(&format!("ip link show {ai}"))
                .contains("02:00:00:00:00:0a")
        );
        // Not in the machine's own namespace.
        assert!(!Path::new("/sys/class/net").join(&ai).exists());
        let server = b.bind_udp("10.213.9.2:0".parse().unwrap());
        let to = server.local_addr().unwrap();
        let client = a.bind_udp("10.213.9.1:0".parse().unwrap());
        client.send_to(b"hi", to).unwrap();
        server
            .set_read_timeout(Some(crate::PATIENCE))
            .expect("timeout");
        let mut buf = [0u8; 8];
        let (n, from) = server.recv_from(&mut buf).expect("datagram over the veth");
        assert_eq!(&buf[..n], b"hi");
        assert_eq!(from, client.local_addr().unwrap());
    }

    #[test]
    fn the_gateway_topology_routes_the_node_to_the_internet() {
        let g = Gateway::new("02:00:00:00:01:fe", "02:00:00:00:02:fe", &["198.51.100.7"]);
        assert!(
            g.services
                .sh("ip link show eth0")
                .contains("02:00:00:00:01:fe")
        );
        assert!(
            g.services
                .sh("ip link show eth1")
                .contains("02:00:00:00:02:fe")
        );
        // The services node reaches the internet's hosts over the uplink and
        // the node reaches the services node. (The internet has no route back
        // to the lab: only masquerading, the firewall's job, lets the node
        // through.)
        let datagram = |from: &Netns, src: &str, to: &Netns, dst: &str| {
            let rx = to.bind_udp(format!("{dst}:0").parse().unwrap());
            rx.set_read_timeout(Some(crate::PATIENCE)).unwrap();
            let tx = from.bind_udp(format!("{src}:0").parse().unwrap());
            tx.send_to(b"x", rx.local_addr().unwrap()).unwrap();
            let mut buf = [0u8; 4];
            rx.recv_from(&mut buf)
                .expect("a datagram across the topology");
        };
        datagram(&g.services, Gateway::UPLINK, &g.internet, "198.51.100.7");
        datagram(&g.node, Gateway::NODE, &g.services, Gateway::SERVICES);
    }

    #[test]
    fn bridges_and_taps() {
        let ns = Netns::new("br");
        ns.add_bridge("br0");
        ns.add_addr("br0", "10.213.8.1/24");
        ns.add_tap("tap0", "br0");
        let links = ns.sh("ip -o link show master br0");
        assert!(links.contains("tap0"), "{links}");
    }

    #[test]
    fn isolated_threads_have_their_own_loopback() {
        let lo = || {
            String::from_utf8(run(Command::new("ip").args(["-o", "link", "show", "lo"])).stdout)
                .unwrap()
        };
        let inside = isolated(|| {
            run(Command::new("ip").args(["link", "set", "lo", "mtu", "1400", "up"]));
            lo()
        });
        assert!(inside.contains("mtu 1400"), "{inside}");
        assert!(!lo().contains("mtu 1400"), "the machine's loopback changed");
    }
}
