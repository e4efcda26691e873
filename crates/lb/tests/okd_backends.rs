//! Acceptance with real TLS backends: three "master" and two "worker"
//! HTTPS servers (Python `ssl` + `http.server`) behind one balancer with
//! `https` checks of `/readyz`, as the OKD API balancer runs. Short check
//! intervals; every wait is bounded, never a timing assertion.

mod common;

use std::time::Duration;

use bootlab_lb::{BackendConfig, BackendState, BalancerConfig, HealthCheck};
use common::{HttpsConn, Lb, TlsBackend, bounded, read_to_close, whoami};
use tokio::net::TcpStream;

const NAMES: [&str; 5] = ["master0", "master1", "master2", "worker0", "worker1"];

fn cluster() -> Vec<TlsBackend> {
    NAMES.iter().map(|n| TlsBackend::start(n)).collect()
}

fn api_config(backends: &[TlsBackend]) -> BalancerConfig {
    let mut config = BalancerConfig::new(
        "api",
        "127.0.0.1:0".parse().unwrap(),
        backends
            .iter()
            .map(|b| BackendConfig::new(&b.name, b.addr))
            .collect(),
    );
    config.check = HealthCheck::Https {
        path: "/readyz".into(),
        status: 200,
    };
    config.interval = Duration::from_millis(200);
    config
}

/// Who answers `n` consecutive fresh connections.
async fn answers(lb: &Lb, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(whoami(lb.addr()).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_connections_spread_over_healthy_backends() {
    let backends = cluster();
    let lb = Lb::start(vec![api_config(&backends)]).await;
    lb.wait_state(&NAMES, BackendState::Up).await;

    let got = answers(&lb, 10).await;
    for name in NAMES {
        assert_eq!(
            got.iter().filter(|g| *g == name).count(),
            2,
            "round robin: {got:?}"
        );
    }
    for pair in got.windows(2) {
        assert_ne!(
            pair[0], pair[1],
            "consecutive connections on one backend: {got:?}"
        );
    }
    let status = lb.status();
    assert_eq!(status.total_connections, 10);
    for b in &status.backends {
        assert_eq!(b.total_connections, 2, "{b:?}");
        assert!(b.bytes_in > 0 && b.bytes_out > 0, "{b:?}");
        assert_eq!(b.connect_failures, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_unready_backends_leave_and_come_back() {
    let mut backends = cluster();
    let config = api_config(&backends);
    let window = config.interval * config.fall;
    let lb = Lb::start(vec![config]).await;
    lb.wait_state(&NAMES, BackendState::Up).await;

    // master1 dies, worker0's /readyz answers 500.
    backends[1].kill();
    backends[3].set_ready(false);
    let t0 = tokio::time::Instant::now();
    lb.wait_state(&["master1", "worker0"], BackendState::Down)
        .await;
    eprintln!(
        "out after {:?} (fall x interval = {window:?})",
        t0.elapsed()
    );

    let got = answers(&lb, 9).await;
    assert!(
        !got.iter().any(|g| g == "master1" || g == "worker0"),
        "a backend that is out got a connection: {got:?}"
    );
    for name in ["master0", "master2", "worker1"] {
        assert_eq!(got.iter().filter(|g| *g == name).count(), 3, "{got:?}");
    }
    let status = lb.status();
    let m1 = status
        .backends
        .iter()
        .find(|b| b.name == "master1")
        .unwrap();
    assert!(
        m1.last_check_error
            .as_deref()
            .unwrap_or("")
            .contains("connect"),
        "{m1:?}"
    );
    let w0 = status
        .backends
        .iter()
        .find(|b| b.name == "worker0")
        .unwrap();
    assert_eq!(
        w0.last_check_error.as_deref(),
        Some("http status 500, expected 200")
    );
    assert!(w0.checks_failed_streak >= 3);

    // Both recover: rise passes bring them back.
    backends[1].restart();
    backends[3].set_ready(true);
    lb.wait_state(&["master1", "worker0"], BackendState::Up)
        .await;
    let got = answers(&lb, 10).await;
    for name in NAMES {
        assert_eq!(got.iter().filter(|g| *g == name).count(), 2, "{got:?}");
    }

    let events = lb.events();
    for name in ["master1", "worker0"] {
        let mine: Vec<_> = events.iter().filter(|e| e.backend == name).collect();
        assert_eq!(
            mine.len(),
            2,
            "one down, one up event for {name}: {events:#?}"
        );
        assert_eq!(mine[0].state, BackendState::Down);
        assert!(
            mine[0].reason.starts_with("3 consecutive checks failed"),
            "{:?}",
            mine[0]
        );
        assert_eq!(mine[1].state, BackendState::Up);
        assert_eq!(mine[1].reason, "2 consecutive checks passed");
    }
    assert!(
        events
            .iter()
            .all(|e| e.backend == "master1" || e.backend == "worker0"),
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_backend_leaves_on_reload_while_its_open_connection_completes() {
    let backends = cluster();
    let mut config = api_config(&backends);
    let lb = Lb::start(vec![{
        let mut c = config.clone();
        c.listen = "127.0.0.1:0".parse().unwrap();
        c
    }])
    .await;
    config.listen = lb.addr();
    lb.wait_state(&NAMES, BackendState::Up).await;

    // An open keep-alive connection, through some backend.
    let mut open = bounded("connect", HttpsConn::connect(lb.addr()))
        .await
        .unwrap();
    let (_, drained) = bounded("first request", open.get("/whoami")).await.unwrap();

    for b in &mut config.backends {
        b.drained = b.name == drained;
    }
    let report = lb.lbs.reconfigure(vec![config]);
    assert!(
        report.is_ok() && report.added.is_empty() && report.rebound.is_empty(),
        "{report:?}"
    );
    assert_eq!(lb.state(&drained), BackendState::Drained);

    let got = answers(&lb, 12).await;
    assert!(
        !got.contains(&drained),
        "{drained} is drained but got {got:?}"
    );
    assert_eq!(got.iter().filter(|g| **g != drained).count(), 12);

    // The connection opened before the reload still works and finishes.
    let (status, again) = bounded("request on the open connection", open.get("/whoami"))
        .await
        .unwrap();
    assert_eq!((status, again.as_str()), (200, drained.as_str()));
    drop(open);
    lb.wait_for("the drained backend's connection to close", |s| {
        s.backends
            .iter()
            .any(|b| b.name == drained && b.active_connections == 0)
    })
    .await;

    let events = lb.events();
    assert!(
        events.iter().any(|e| e.backend == drained
            && e.state == BackendState::Drained
            && e.reason.starts_with("drained by reload")),
        "{events:#?}"
    );
    // Its counters survived the reload.
    let status = lb.status();
    let d = status.backends.iter().find(|b| b.name == drained).unwrap();
    assert_eq!(d.total_connections, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_healthy_backend_closes_the_client_at_once_without_a_byte() {
    let backends = cluster();
    let lb = Lb::start(vec![api_config(&backends)]).await;
    lb.wait_state(&NAMES, BackendState::Up).await;
    for b in &backends {
        b.set_ready(false);
    }
    lb.wait_state(&NAMES, BackendState::Down).await;

    for _ in 0..3 {
        let mut client = TcpStream::connect(lb.addr())
            .await
            .expect("the listener still accepts");
        let got = read_to_close(&mut client).await;
        assert!(
            got.is_empty(),
            "bytes from a balancer without backends: {got:?}"
        );
    }
    let status = lb.status();
    assert_eq!(status.refused_no_backend, 3);
    assert!(status.backends.iter().all(|b| b.total_connections == 0));
}
