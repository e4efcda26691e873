//! `kdig` (Debian `knot-dnsutils`) against the running DNS service on
//! loopback: every record of `config/okd-lab.toml` over UDP and TCP, PTRs,
//! SOA/NS, NXDOMAIN with SOA, REFUSED, AXFR refused, and TC=1 with kdig's
//! own retry over TCP. Fails loudly when kdig is missing.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use bootlab_dns::{ServeOptions, serve_with};
use bootlab_inventory::Inventory;
use bootlab_state::Shared;
use bootlab_testkit::Service;
use bootlab_testkit::net::udp_and_tcp;
use common::*;
use tokio::net::{TcpListener, UdpSocket};

struct Server {
    addr: SocketAddr,
    service: Service,
}

impl Server {
    async fn stop(self) {
        self.service.stop().await;
    }
}

/// Binds UDP and TCP on the same loopback port (kdig takes one port).
async fn start(inv: Inventory) -> Server {
    let (udp, tcp) = udp_and_tcp();
    let addr = udp.local_addr().unwrap();
    udp.set_nonblocking(true).unwrap();
    tcp.set_nonblocking(true).unwrap();
    let (udp, tcp) = (
        UdpSocket::from_std(udp).unwrap(),
        TcpListener::from_std(tcp).unwrap(),
    );
    let (shared, _publisher) = Shared::new(inv).expect("boot scripts render");
    let service =
        Service::spawn(|token| serve_with(udp, tcp, shared, None, token, ServeOptions::default()));
    Server { addr, service }
}

struct Dig {
    stdout: String,
    stderr: String,
}

impl Dig {
    fn status(&self) -> &str {
        self.stdout
            .split("status: ")
            .nth(1)
            .and_then(|s| s.split(';').next())
            .unwrap_or_else(|| {
                panic!(
                    "no status in kdig output:\n{}\n{}",
                    self.stdout, self.stderr
                )
            })
    }

    fn flags(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(";; Flags: "))
            .map(|f| {
                f.split(';')
                    .next()
                    .unwrap_or("")
                    .split_whitespace()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `(owner, ttl, type, data)` of one section.
    fn section(&self, name: &str) -> Vec<(String, u32, String, String)> {
        let header = format!(";; {name} SECTION:");
        let mut out = Vec::new();
        let mut inside = false;
        for line in self.stdout.lines() {
            if line == header {
                inside = true;
                continue;
            }
            if inside {
                if line.trim().is_empty() || line.starts_with(";;") {
                    break;
                }
                let f: Vec<&str> = line.split_whitespace().collect();
                out.push((
                    f[0].to_owned(),
                    f[1].parse().unwrap(),
                    f[3].to_owned(),
                    f[4..].join(" "),
                ));
            }
        }
        out
    }

    fn answers(&self) -> Vec<(String, u32, String, String)> {
        self.section("ANSWER")
    }
}

fn kdig(server: SocketAddr, args: &[&str]) -> Dig {
    let out = Command::new("kdig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+retry=0", "+timeout=5"])
        .args(args)
        .output()
        .expect("kdig is missing: apt-get install knot-dnsutils (tests/apt-packages.txt)");
    Dig {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A random-looking label so the wildcard is really exercised.
fn random_label() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("x{nanos:x}{}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kdig_sees_every_record_of_the_okd_lab_over_udp_and_tcp() {
    let inv = okd();
    let s = start(inv.clone()).await;
    let addr = s.addr;
    let wildcard = format!("{}.apps.okd.example.com.", random_label());
    tokio::task::spawn_blocking(move || {
        let mut expected: Vec<(String, String)> = inv
            .hosts()
            .iter()
            .map(|r| (format!("{}.", r.fqdn), r.ip.to_string()))
            .collect();
        assert_eq!(expected.len(), 14, "13 nodes + services");
        for name in [
            "api.okd.example.com.",
            "api-int.okd.example.com.",
            wildcard.as_str(),
        ] {
            expected.push((name.to_owned(), "192.168.200.254".to_owned()));
        }
        for transport in ["+notcp", "+tcp"] {
            for (name, ip) in &expected {
                let d = kdig(addr, &[name, "A", transport]);
                assert_eq!(d.status(), "NOERROR", "{name} {transport}\n{}", d.stdout);
                assert!(d.flags().contains(&"aa"), "{:?}", d.flags());
                assert!(!d.flags().contains(&"ra"), "RA=0");
                let a = d.answers();
                assert_eq!(a.len(), 1, "{name}: {}", d.stdout);
                assert_eq!(
                    (a[0].0.as_str(), a[0].2.as_str(), a[0].3.as_str()),
                    (name.as_str(), "A", ip.as_str())
                );
            }
            for r in inv.hosts() {
                let d = kdig(addr, &["-x", &r.ip.to_string(), transport]);
                assert_eq!(d.status(), "NOERROR");
                let a = d.answers();
                assert_eq!(a.len(), 1, "{}", d.stdout);
                assert_eq!(
                    (a[0].2.as_str(), a[0].3.clone()),
                    ("PTR", format!("{}.", r.fqdn))
                );
            }
            let d = kdig(addr, &["okd.example.com.", "SOA", transport]);
            let a = d.answers();
            assert_eq!(a[0].2, "SOA");
            assert!(
                a[0].3
                    .starts_with("services.okd.example.com. hostmaster.okd.example.com. "),
                "{}",
                a[0].3
            );
            let d = kdig(addr, &["okd.example.com.", "NS", transport]);
            assert_eq!(d.answers()[0].3, "services.okd.example.com.");
            let d = kdig(addr, &["200.168.192.in-addr.arpa.", "SOA", transport]);
            assert_eq!(d.answers()[0].2, "SOA");
            let d = kdig(addr, &["nope.okd.example.com.", "A", transport]);
            assert_eq!(d.status(), "NXDOMAIN");
            let auth = d.section("AUTHORITY");
            assert_eq!(
                (auth[0].0.as_str(), auth[0].2.as_str()),
                ("okd.example.com.", "SOA")
            );
            let d = kdig(addr, &["example.org.", "A", transport]);
            assert_eq!(d.status(), "REFUSED");
            assert!(d.answers().is_empty());
            let d = kdig(addr, &["master-0.okd.example.com.", "AAAA", transport]);
            assert_eq!(d.status(), "NOERROR", "NODATA");
            assert!(d.answers().is_empty());
        }
        // the same answer sections over UDP and TCP, record for record
        for name in [
            "master-0.okd.example.com.",
            "okd.example.com.",
            "nope.okd.example.com.",
        ] {
            for qtype in ["A", "SOA", "NS", "ANY"] {
                let u = kdig(addr, &[name, qtype, "+notcp"]);
                let t = kdig(addr, &[name, qtype, "+tcp"]);
                assert_eq!(u.answers(), t.answers(), "{name} {qtype}");
                assert_eq!(u.section("AUTHORITY"), t.section("AUTHORITY"));
            }
        }
        let d = kdig(addr, &["okd.example.com.", "AXFR"]);
        assert!(
            d.stderr.contains("REFUSED") || d.stdout.contains("REFUSED"),
            "AXFR refused:\n{}\n{}",
            d.stdout,
            d.stderr
        );
        let d = kdig(addr, &["okd.example.com.", "IXFR=1"]);
        assert!(
            d.stderr.contains("REFUSED") || d.stdout.contains("REFUSED"),
            "IXFR refused:\n{}\n{}",
            d.stdout,
            d.stderr
        );
        // kdig's EDNS variants: version 1 gets BADVERS
        let d = kdig(addr, &["okd.example.com.", "SOA", "+edns=1", "+noidn"]);
        assert!(d.stdout.contains("BADVERS"), "{}\n{}", d.stdout, d.stderr);
    })
    .await
    .unwrap();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kdig_gets_tc_and_retries_over_tcp_for_an_oversized_answer() {
    let values: Vec<String> = (0..40)
        .map(|i| format!("record number {i} of a deliberately oversized answer"))
        .collect();
    let s = start(okd_with_records(
        values.iter().map(|v| ("big", "TXT", v.as_str())),
    ))
    .await;
    let addr = s.addr;
    tokio::task::spawn_blocking(move || {
        // +ignore: show the truncated UDP reply as is
        let d = kdig(addr, &["big.okd.example.com.", "TXT", "+ignore"]);
        assert!(d.flags().contains(&"tc"), "TC=1: {}", d.stdout);
        assert!(d.answers().is_empty());
        let d = kdig(
            addr,
            &["big.okd.example.com.", "TXT", "+ignore", "+bufsize=1232"],
        );
        assert!(
            d.flags().contains(&"tc"),
            "TC=1 with EDNS 1232 too: {}",
            d.stdout
        );
        // default: kdig retries over TCP and gets everything
        let d = kdig(addr, &["big.okd.example.com.", "TXT"]);
        assert!(
            d.stderr.contains("truncated") || d.stdout.contains("truncated"),
            "{}\n{}",
            d.stdout,
            d.stderr
        );
        assert!(d.stdout.contains("(TCP)"), "{}", d.stdout);
        assert_eq!(d.answers().len(), 40, "{}", d.stdout);
    })
    .await
    .unwrap();
    s.stop().await;
}
