//! The rendered haproxy configuration is accepted by the real haproxy
//! (`haproxy -c`), for every check kind, both algorithms, drained backends
//! and zero-copy; and haproxy run with it balances real connections.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use bootlab_lb::{Algorithm, BackendConfig, BalancerConfig, HealthCheck, haproxy_cfg};
use bootlab_testkit::net::free_addr;
use common::{Echo, bounded, echo_roundtrip};
use tokio::net::TcpStream;

fn balancers() -> Vec<BalancerConfig> {
    let b =
        |n: &str, port: u16| BackendConfig::new(n, format!("192.0.2.{port}:6443").parse().unwrap());
    let mut api = BalancerConfig::new(
        "api",
        "127.0.0.1:6443".parse().unwrap(),
        vec![b("bootstrap", 5), b("master0", 10)],
    );
    api.check = HealthCheck::Https {
        path: "/readyz".into(),
        status: 200,
    };
    api.backends[0].drained = true;
    let mut mcs = BalancerConfig::new(
        "machine-config",
        "127.0.0.1:22623".parse().unwrap(),
        vec![b("master0", 10)],
    );
    mcs.check = HealthCheck::Tls;
    mcs.algorithm = Algorithm::LeastConn;
    mcs.interval = Duration::from_millis(2500);
    let mut ingress = BalancerConfig::new(
        "ingress https",
        "127.0.0.1:443".parse().unwrap(),
        vec![b("worker0", 20), b("worker0", 21)],
    );
    ingress.limits.zero_copy = true;
    vec![api, mcs, ingress]
}

fn haproxy_check(text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, text).unwrap();
    let out = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .expect("haproxy (Debian `haproxy`) must be installed");
    assert!(
        out.status.success(),
        "haproxy -c refused:\n{}\n{}{}",
        text,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn haproxy_accepts_the_rendered_configuration() {
    let text = haproxy_cfg(&balancers());
    haproxy_check(&text);
    assert!(text.contains("frontend ingress_https\n"), "{text}");
    assert!(
        text.contains("    server worker0-2 192.0.2.21:6443\n"),
        "{text}"
    );
    assert!(text.contains("    option splice-auto\n"), "{text}");
    assert!(
        text.contains("    server bootstrap 192.0.2.5:6443 disabled # drained\n"),
        "{text}"
    );
}

#[test]
fn an_empty_set_renders_a_valid_configuration() {
    // haproxy refuses to *start* without a listener (exit 2), but says the
    // file itself has no error.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, haproxy_cfg(&[])).unwrap();
    let out = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .expect("haproxy");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Configuration file has no error"), "{text}");
}

/// haproxy, run by hand (foreground, own pid file) with the rendered
/// configuration, balances over live backends: the rendering is not only
/// syntactically valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_runs_the_rendered_configuration() {
    let (a, b) = (Echo::start(), Echo::start());
    let listen = free_addr();
    let config = BalancerConfig::new(
        "echo",
        listen,
        vec![
            BackendConfig::new("a", a.addr),
            BackendConfig::new("b", b.addr),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, haproxy_cfg(&[config])).unwrap();
    let mut child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .arg("-p")
        .arg(dir.path().join("haproxy.pid"))
        .stdout(Stdio::null())
        .spawn()
        .expect("haproxy (Debian `haproxy`) must be installed");
    let result = tokio::spawn(async move {
        let mut s = bounded("haproxy to listen", async {
            loop {
                match TcpStream::connect(listen).await {
                    Ok(s) => break s,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
        .await;
        assert_eq!(
            bounded("echo", echo_roundtrip(&mut s, b"through haproxy"))
                .await
                .unwrap(),
            b"through haproxy"
        );
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result.expect("a connection through haproxy");
}
