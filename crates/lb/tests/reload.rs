//! Reload (`reconfigure`) and shutdown with real TCP peers: state kept
//! across reloads, removed backends finish their connections, rebinding,
//! added and removed balancers, undrain, a failed bind, the drain on
//! shutdown, and the snapshot's JSON shape.

mod common;

use std::time::Duration;

use bootlab_lb::{Algorithm, BackendConfig, BackendState, BalancerConfig, HealthCheck};
use bootlab_testkit::net::free_addr;
use common::{Echo, Lb, bounded, echo_roundtrip, read_to_close, wait_closed};
use tokio::net::TcpStream;

fn config(listen: std::net::SocketAddr, backends: Vec<BackendConfig>) -> BalancerConfig {
    let mut c = BalancerConfig::new("test", listen, backends);
    c.interval = Duration::from_millis(100);
    c
}

async fn roundtrip(addr: std::net::SocketAddr) {
    let mut s = bounded("connect", TcpStream::connect(addr))
        .await
        .expect("connect");
    assert_eq!(
        bounded("echo", echo_roundtrip(&mut s, b"ping"))
            .await
            .unwrap(),
        b"ping"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_state_and_removed_backends_finish_their_connections() {
    let (a, b, c) = (Echo::start(), Echo::start(), Echo::start());
    let lb = Lb::start(vec![config(
        "127.0.0.1:0".parse().unwrap(),
        vec![
            BackendConfig::new("a", a.addr),
            BackendConfig::new("b", b.addr),
        ],
    )])
    .await;
    lb.wait_state(&["a", "b"], BackendState::Up).await;
    for _ in 0..4 {
        roundtrip(lb.addr()).await;
    }
    // A connection through b stays open across the reload that removes b.
    let mut on_a = TcpStream::connect(lb.addr()).await.unwrap(); // 5th: a
    let _ = echo_roundtrip(&mut on_a, b"1").await.unwrap();
    let mut on_b = TcpStream::connect(lb.addr()).await.unwrap(); // 6th: b
    let _ = echo_roundtrip(&mut on_b, b"2").await.unwrap();
    let before = lb.status();
    assert_eq!(before.backends[1].active_connections, 1);
    let a_checks = before.backends[0].checks_passed;

    let mut next = config(
        lb.addr(),
        vec![
            BackendConfig::new("a", a.addr),
            BackendConfig::new("c", c.addr),
        ],
    );
    next.algorithm = Algorithm::LeastConn;
    let report = lb.lbs.reconfigure(vec![next]);
    assert!(report.is_ok(), "{report:?}");
    assert!(report.added.is_empty() && report.removed.is_empty() && report.rebound.is_empty());

    let status = lb.status();
    assert_eq!(status.algorithm, Algorithm::LeastConn);
    let names: Vec<_> = status.backends.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["a", "c"]);
    assert_eq!(
        status.backends[0].total_connections, 3,
        "a's counters survive"
    );
    assert!(
        status.backends[0].checks_passed >= a_checks,
        "a's health survives"
    );
    assert_eq!(status.backends[1].total_connections, 0);
    assert_eq!(status.total_connections, 6);

    // b's open connection still works; new ones never reach b.
    assert_eq!(
        bounded("echo on b", echo_roundtrip(&mut on_b, b"still"))
            .await
            .unwrap(),
        b"still"
    );
    lb.wait_state(&["c"], BackendState::Up).await;
    for _ in 0..4 {
        roundtrip(lb.addr()).await;
    }
    let status = lb.status();
    assert_eq!(
        status.backends[0].total_connections + status.backends[1].total_connections,
        7
    );
    drop((on_a, on_b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_listen_address_is_bound_and_the_old_one_released() {
    let echo = Echo::start();
    let backends = vec![BackendConfig::new("echo", echo.addr)];
    let lb = Lb::start(vec![config(
        "127.0.0.1:0".parse().unwrap(),
        backends.clone(),
    )])
    .await;
    let old = lb.addr();
    let mut open = TcpStream::connect(old).await.unwrap();
    let _ = echo_roundtrip(&mut open, b"a").await.unwrap();

    let new = free_addr();
    let report = lb.lbs.reconfigure(vec![config(new, backends.clone())]);
    assert_eq!(report.rebound, ["test"], "{report:?}");
    assert_eq!(lb.status().listen, new);
    roundtrip(new).await;
    wait_closed(old).await;
    assert_eq!(
        bounded("echo", echo_roundtrip(&mut open, b"b"))
            .await
            .unwrap(),
        b"b",
        "open connection kept"
    );

    // A busy address: the error is reported and the balancer stays where it is.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = squatter.local_addr().unwrap();
    let report = lb.lbs.reconfigure(vec![config(busy, backends)]);
    assert!(
        !report.is_ok() && report.errors[0].contains(&busy.to_string()),
        "{report:?}"
    );
    assert_eq!(lb.status().listen, new);
    roundtrip(new).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balancers_are_added_and_removed_by_reload() {
    let echo = Echo::start();
    let backends = vec![BackendConfig::new("echo", echo.addr)];
    let lb = Lb::start(vec![config(
        "127.0.0.1:0".parse().unwrap(),
        backends.clone(),
    )])
    .await;
    let first = config(lb.addr(), backends.clone());
    let mut second = config(free_addr(), backends.clone());
    second.name = "second".into();
    let report = lb.lbs.reconfigure(vec![first.clone(), second.clone()]);
    assert_eq!(report.added, ["second"], "{report:?}");
    roundtrip(second.listen).await;
    assert_eq!(lb.lbs.snapshot().len(), 2);

    let report = lb.lbs.reconfigure(vec![first]);
    assert_eq!(report.removed, ["second"], "{report:?}");
    wait_closed(second.listen).await;
    assert_eq!(lb.lbs.snapshot().len(), 1);
    roundtrip(lb.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undrained_backend_comes_back() {
    let (a, b) = (Echo::start(), Echo::start());
    let mut c = config(
        "127.0.0.1:0".parse().unwrap(),
        vec![
            BackendConfig::new("a", a.addr),
            BackendConfig::new("b", b.addr),
        ],
    );
    c.backends[1].drained = true;
    let lb = Lb::start(vec![c.clone()]).await;
    c.listen = lb.addr();
    lb.wait_state(&["a"], BackendState::Up).await;
    assert_eq!(lb.state("b"), BackendState::Drained);
    assert_eq!(
        lb.status().backends[1].checks_passed,
        0,
        "a drained backend is not checked"
    );
    for _ in 0..3 {
        roundtrip(lb.addr()).await;
    }
    assert_eq!(lb.status().backends[1].total_connections, 0);

    c.backends[1].drained = false;
    assert!(lb.lbs.reconfigure(vec![c]).is_ok());
    lb.wait_state(&["b"], BackendState::Up).await;
    for _ in 0..4 {
        roundtrip(lb.addr()).await;
    }
    assert_eq!(lb.status().backends[1].total_connections, 2);
    let events = lb.events();
    assert!(
        events.iter().any(|e| e.backend == "b"
            && e.state == BackendState::Up
            && e.reason.starts_with("undrained")),
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_listening_and_closes_open_connections_after_the_drain_time() {
    let echo = Echo::start();
    let mut c = config(
        "127.0.0.1:0".parse().unwrap(),
        vec![BackendConfig::new("echo", echo.addr)],
    );
    c.limits.drain_timeout = Duration::from_millis(200);
    let lb = Lb::start(vec![c]).await;
    let mut open = TcpStream::connect(lb.addr()).await.unwrap();
    let _ = echo_roundtrip(&mut open, b"a").await.unwrap();
    lb.shutdown.cancel();
    bounded("the balancers to stop", lb.lbs.stopped()).await;
    assert!(read_to_close(&mut open).await.is_empty());
    wait_closed(lb.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_serializes_as_the_api_shows_it() {
    let echo = Echo::start();
    let mut c = config(
        "127.0.0.1:0".parse().unwrap(),
        vec![BackendConfig::new("m0", echo.addr)],
    );
    c.name = "api".into();
    c.check = HealthCheck::Https {
        path: "/readyz".into(),
        status: 200,
    };
    let lb = Lb::start(vec![c]).await;
    lb.wait_state(&["m0"], BackendState::Down).await; // echo does not speak TLS
    let json = serde_json::to_value(lb.lbs.snapshot()).unwrap();
    let b = &json[0];
    assert_eq!(b["name"], "api");
    assert_eq!(b["algorithm"], "roundrobin");
    assert_eq!(
        b["check"],
        serde_json::json!({"kind": "https", "path": "/readyz", "status": 200})
    );
    assert_eq!(b["listen"], lb.addr().to_string());
    for key in [
        "active_connections",
        "total_connections",
        "max_connections",
        "refused_over_cap",
        "refused_no_backend",
        "idle_timeouts",
    ] {
        assert!(b[key].is_number(), "{key} in {b}");
    }
    let be = &b["backends"][0];
    assert_eq!(be["name"], "m0");
    assert_eq!(be["addr"], echo.addr.to_string());
    assert_eq!(be["state"], "down");
    assert!(
        be["last_check_error"]
            .as_str()
            .unwrap()
            .starts_with("tls handshake"),
        "{be}"
    );
    for key in [
        "checks_passed_streak",
        "checks_failed_streak",
        "checks_passed",
        "checks_failed",
        "active_connections",
        "total_connections",
        "bytes_in",
        "bytes_out",
        "connect_failures",
    ] {
        assert!(be[key].is_number(), "{key} in {be}");
    }
}
