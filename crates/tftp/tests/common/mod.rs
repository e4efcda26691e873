//! Test helpers: a lab (testkit's temp assets dir + the dev inventory
//! pointing at it, typed),
//! an in-process server on a loopback port, real client tools, and a raw
//! UDP client for packet-level tests.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bootlab_state::{InventoryPublisher, Shared};
use bootlab_testkit::{LabBuilder, LabDir, Service};
use bootlab_tftp::TftpConfig;
use tokio::net::UdpSocket;

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 7) as u8
        })
        .collect()
}

/// config/dev.toml with its assets root at `assets`.
pub fn dev_inventory(assets: &Path) -> bootlab_inventory::Inventory {
    LabBuilder::dev().assets_dir(assets).build()
}

/// A temp dir with `assets/` (the [`LabDir`] it derefs to) and the
/// inventory pointing at it.
pub struct Lab {
    pub files: LabDir,
    pub shared: Shared,
    pub publisher: InventoryPublisher,
}

impl std::ops::Deref for Lab {
    type Target = LabDir;

    fn deref(&self) -> &LabDir {
        &self.files
    }
}

impl Lab {
    pub fn new() -> Self {
        let files = LabDir::new();
        let inv = dev_inventory(&files.assets);
        let (shared, publisher) = Shared::new(inv).expect("boot scripts render");
        Self {
            files,
            shared,
            publisher,
        }
    }

    /// Starts a server on `bind` (port 0 = any) with `config`.
    pub async fn serve(&self, bind: &str, config: TftpConfig) -> Server {
        let socket = UdpSocket::bind(bind).await.expect("bind tftp");
        let addr = socket.local_addr().expect("local addr");
        let shared = self.shared.clone();
        let service =
            Service::spawn(|shutdown| bootlab_tftp::serve_with(socket, shared, config, shutdown));
        Server { addr, service }
    }

    /// The value of a metric line (`name{labels}`), 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.shared.metrics.render();
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .map_or(0.0, |v| v.trim().parse().expect("metric value"))
    }
}

pub struct Server {
    pub addr: SocketAddr,
    service: Service,
}

impl Server {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stops the server and waits for it.
    pub async fn stop(self) {
        self.service.stop().await;
    }
}

/// Runs a command to completion off the runtime; returns (success, stderr+stdout).
pub async fn run(mut cmd: Command) -> (bool, String) {
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("spawn client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// atftp get with extra `--option` values.
pub fn atftp(port: u16, remote: &str, local: &Path, options: &[&str]) -> Command {
    let mut c = Command::new("atftp");
    for o in options {
        c.args(["--option", o]);
    }
    c.args(["-g", "-r", remote, "-l"])
        .arg(local)
        .args(["127.0.0.1", &port.to_string()]);
    c
}

/// A UDP socket speaking raw TFTP.
pub struct Raw {
    pub sock: UdpSocket,
}

/// Longest a test waits for one packet before failing.
pub const PATIENCE: Duration = Duration::from_secs(30);

impl Raw {
    pub async fn new() -> Self {
        Self::bound("127.0.0.1:0").await
    }

    pub async fn bound(addr: &str) -> Self {
        Self {
            sock: UdpSocket::bind(addr).await.expect("bind raw client"),
        }
    }

    pub async fn send(&self, to: SocketAddr, bytes: &[u8]) {
        self.sock.send_to(bytes, to).await.expect("send");
    }

    pub async fn recv(&self) -> (Vec<u8>, SocketAddr) {
        let mut buf = vec![0u8; 70000];
        let (n, from) = tokio::time::timeout(PATIENCE, self.sock.recv_from(&mut buf))
            .await
            .expect("no packet from the server")
            .expect("recv");
        buf.truncate(n);
        (buf, from)
    }

    /// Fetches `name` with `options` in lock-step/windows by the book;
    /// returns (OACK options, file bytes).
    pub async fn fetch(
        &self,
        server: SocketAddr,
        name: &str,
        options: &[(&str, &str)],
    ) -> (Vec<(String, String)>, Vec<u8>) {
        self.send(server, &rrq(name, "octet", options)).await;
        let mut oack = Vec::new();
        let mut data = Vec::new();
        let mut blksize = 512usize;
        let mut expect: u16 = 1;
        loop {
            let (pkt, from) = self.recv().await;
            match opcode(&pkt) {
                6 => {
                    oack = parse_oack(&pkt);
                    if let Some((_, v)) = oack.iter().find(|(n, _)| n == "blksize") {
                        blksize = v.parse().expect("blksize");
                    }
                    self.send(from, &ack(0)).await;
                }
                3 => {
                    let block = u16::from_be_bytes([pkt[2], pkt[3]]);
                    if block == expect {
                        data.extend_from_slice(&pkt[4..]);
                        expect = expect.wrapping_add(1);
                        let last = pkt.len() - 4 < blksize;
                        // Windowed or not: ACK each in-order block (allowed by RFC 7440).
                        self.send(from, &ack(block)).await;
                        if last {
                            return (oack, data);
                        }
                    }
                }
                5 => panic!("server error: {:?}", String::from_utf8_lossy(&pkt[4..])),
                other => panic!("unexpected opcode {other}"),
            }
        }
    }
}

pub fn rrq(name: &str, mode: &str, options: &[(&str, &str)]) -> Vec<u8> {
    let mut v = vec![0, 1];
    v.extend_from_slice(name.as_bytes());
    v.push(0);
    v.extend_from_slice(mode.as_bytes());
    v.push(0);
    for (n, val) in options {
        v.extend_from_slice(n.as_bytes());
        v.push(0);
        v.extend_from_slice(val.as_bytes());
        v.push(0);
    }
    v
}

pub fn ack(block: u16) -> Vec<u8> {
    let b = block.to_be_bytes();
    vec![0, 4, b[0], b[1]]
}

pub fn opcode(pkt: &[u8]) -> u16 {
    u16::from_be_bytes([pkt[0], pkt[1]])
}

/// (code, message) of an ERROR packet; panics on anything else.
pub fn error_of(pkt: &[u8]) -> (u16, String) {
    assert_eq!(opcode(pkt), 5, "expected an ERROR packet, got {pkt:?}");
    let code = u16::from_be_bytes([pkt[2], pkt[3]]);
    let msg = &pkt[4..pkt.len() - 1];
    (code, String::from_utf8_lossy(msg).into_owned())
}

pub fn parse_oack(pkt: &[u8]) -> Vec<(String, String)> {
    assert_eq!(opcode(pkt), 6);
    let parts: Vec<String> = pkt[2..]
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    parts
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect()
}
