//! The data path with real TCP peers on loopback: connect failure moves on
//! to the next backend, half-close both ways, idle timeout, connection cap,
//! and 1,000 concurrent connections each echoing 1 MiB byte-identical.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bootlab_lb::{Algorithm, BackendConfig, BackendState, BalancerConfig};
use bootlab_testkit::net::refused_addr;
use common::{Echo, Lb, bounded, echo_roundtrip, read_to_close, wait_closed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(backends: Vec<BackendConfig>) -> BalancerConfig {
    let mut c = BalancerConfig::new("test", "127.0.0.1:0".parse().unwrap(), backends);
    // One check at start, then none for the test's length: what the test
    // does to a backend after that is invisible to the checks.
    c.interval = Duration::from_secs(3600);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_failure_moves_on_to_the_next_backend() {
    let (a, b, c) = (Echo::start(), Echo::start(), Echo::start());
    let lb = Lb::start(vec![config(vec![
        BackendConfig::new("a", a.addr),
        BackendConfig::new("b", b.addr),
        BackendConfig::new("c", c.addr),
    ])])
    .await;
    lb.wait_state(&["a", "b", "c"], BackendState::Up).await;
    // b dies after its check passed: still "up" for the balancer.
    b.stop.cancel();
    wait_closed(b.addr).await;

    for i in 0..9u8 {
        let mut s = TcpStream::connect(lb.addr()).await.unwrap();
        let data = vec![i; 1000];
        let back = bounded("echo", echo_roundtrip(&mut s, &data))
            .await
            .expect("no client loses anything");
        assert_eq!(back, data);
    }
    let status = lb.status();
    let by = |n: &str| {
        status
            .backends
            .iter()
            .find(|x| x.name == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by("b").total_connections, 0);
    assert_eq!(by("b").connect_failures, 3, "every third pick was b");
    assert_eq!(by("a").total_connections + by("c").total_connections, 9);
    assert_eq!(status.refused_no_backend, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_attempts_are_bounded_then_the_client_is_closed() {
    let backends: Vec<Echo> = (0..4).map(|_| Echo::start()).collect();
    let mut c = config(
        backends
            .iter()
            .enumerate()
            .map(|(i, e)| BackendConfig::new(format!("b{i}"), e.addr))
            .collect(),
    );
    c.limits.max_connect_attempts = 3;
    let lb = Lb::start(vec![c]).await;
    lb.wait_state(&["b0", "b1", "b2", "b3"], BackendState::Up)
        .await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    drop(backends);
    for addr in addrs {
        wait_closed(addr).await;
    }

    let mut s = TcpStream::connect(lb.addr()).await.unwrap();
    assert!(read_to_close(&mut s).await.is_empty());
    let status = lb.status();
    let failures: u64 = status.backends.iter().map(|b| b.connect_failures).sum();
    assert_eq!(failures, 3, "{status:#?}");
    assert_eq!(status.refused_no_backend, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_with_nothing_listening_never_takes_a_client() {
    let live = Echo::start();
    // Refuses connections for the whole test (the port stays reserved).
    let dead = refused_addr();
    let mut c = config(vec![
        BackendConfig::new("dead", dead.addr()),
        BackendConfig::new("live", live.addr),
    ]);
    c.interval = Duration::from_millis(100);
    let lb = Lb::start(vec![c]).await;
    lb.wait_state(&["dead"], BackendState::Down).await;
    for _ in 0..4 {
        let mut s = TcpStream::connect(lb.addr()).await.unwrap();
        assert_eq!(
            bounded("echo", echo_roundtrip(&mut s, b"ping"))
                .await
                .unwrap(),
            b"ping"
        );
    }
    let status = lb.status();
    assert_eq!(status.backends[0].total_connections, 0);
    assert_eq!(status.backends[1].total_connections, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_from_the_client_reaches_the_backend() {
    // The backend reads to EOF, then answers with what it counted.
    let listener = bootlab_lb::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        // Every connection, the health check's included.
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut all = Vec::new();
                let _ = s.read_to_end(&mut all).await;
                let _ = s.write_all(format!("got {}\n", all.len()).as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    // 3 MB: the upward direction goes bulk (spliced with zero-copy).
    for zero_copy in [false, true] {
        let mut c = config(vec![BackendConfig::new("counter", addr)]);
        c.limits.zero_copy = zero_copy;
        let lb = Lb::start(vec![c]).await;
        let mut s = TcpStream::connect(lb.addr()).await.unwrap();
        s.write_all(&vec![7u8; 3_000_000]).await.unwrap();
        s.shutdown().await.unwrap();
        let answer = read_to_close(&mut s).await;
        assert_eq!(
            String::from_utf8_lossy(&answer),
            "got 3000000\n",
            "zero_copy {zero_copy}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_from_the_backend_reaches_the_client() {
    // The backend says hello, closes its side, then keeps reading.
    let listener = bootlab_lb::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        // Every connection, the health check's included.
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = s.write_all(b"hello\n").await;
                let _ = s.shutdown().await;
                let mut all = Vec::new();
                let _ = s.read_to_end(&mut all).await;
                let _ = tx.send(all.len());
            });
        }
    });
    for zero_copy in [false, true] {
        let mut c = config(vec![BackendConfig::new("greeter", addr)]);
        c.limits.zero_copy = zero_copy;
        let lb = Lb::start(vec![c]).await;
        let mut s = TcpStream::connect(lb.addr()).await.unwrap();
        let mut hello = Vec::new();
        bounded("the backend's EOF", s.read_to_end(&mut hello))
            .await
            .unwrap();
        assert_eq!(hello, b"hello\n");
        // Our direction still flows after the backend's FIN (3 MB: bulk).
        s.write_all(&vec![1u8; 3_000_000]).await.unwrap();
        s.shutdown().await.unwrap();
        let counted = bounded("the backend's count", async {
            loop {
                match rx.recv().await.unwrap() {
                    0 => continue, // a health check's connection
                    n => break n,
                }
            }
        })
        .await;
        assert_eq!(counted, 3_000_000, "zero_copy {zero_copy}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_client_is_closed_and_frees_its_slot() {
    let echo = Echo::start();
    let mut c = config(vec![BackendConfig::new("echo", echo.addr)]);
    c.limits.idle_timeout = Duration::from_millis(300);
    c.limits.max_connections = 1;
    let lb = Lb::start(vec![c]).await;

    // Sends nothing: closed by the idle timeout, no bytes.
    let mut silent = TcpStream::connect(lb.addr()).await.unwrap();
    assert!(read_to_close(&mut silent).await.is_empty());
    lb.wait_for("the slot to be free", |s| s.active_connections == 0)
        .await;
    assert_eq!(lb.status().idle_timeouts, 1);

    // The slot is free again.
    let mut next = TcpStream::connect(lb.addr()).await.unwrap();
    assert_eq!(
        bounded("echo", echo_roundtrip(&mut next, b"x"))
            .await
            .unwrap(),
        b"x"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_connection_outlives_the_idle_timeout() {
    let echo = Echo::start();
    let mut c = config(vec![BackendConfig::new("echo", echo.addr)]);
    c.limits.idle_timeout = Duration::from_secs(3);
    let lb = Lb::start(vec![c]).await;
    let mut s = TcpStream::connect(lb.addr()).await.unwrap();
    // Three idle timeouts' worth of small exchanges, 100 ms apart.
    for i in 0..90u8 {
        assert_eq!(
            bounded("echo", echo_roundtrip(&mut s, &[i])).await.unwrap(),
            [i]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lb.status().idle_timeouts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_closes_new_clients_at_once() {
    let echo = Echo::start();
    let mut c = config(vec![BackendConfig::new("echo", echo.addr)]);
    c.limits.max_connections = 2;
    let lb = Lb::start(vec![c]).await;

    let mut first = TcpStream::connect(lb.addr()).await.unwrap();
    let mut second = TcpStream::connect(lb.addr()).await.unwrap();
    for s in [&mut first, &mut second] {
        assert_eq!(
            bounded("echo", echo_roundtrip(s, b"hi")).await.unwrap(),
            b"hi"
        );
    }
    let mut third = TcpStream::connect(lb.addr()).await.unwrap();
    let _ = third.write_all(b"anyone?").await;
    assert!(
        read_to_close(&mut third).await.is_empty(),
        "over the cap: no bytes"
    );
    assert_eq!(lb.status().refused_over_cap, 1);

    drop(first);
    lb.wait_for("a slot to free", |s| s.active_connections == 1)
        .await;
    let mut fourth = TcpStream::connect(lb.addr()).await.unwrap();
    assert_eq!(
        bounded("echo", echo_roundtrip(&mut fourth, b"in"))
            .await
            .unwrap(),
        b"in"
    );
    assert_eq!(
        bounded("echo", echo_roundtrip(&mut second, b"still"))
            .await
            .unwrap(),
        b"still"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leastconn_sends_new_connections_to_the_least_loaded_backend() {
    let (a, b) = (Echo::start(), Echo::start());
    let mut c = config(vec![
        BackendConfig::new("a", a.addr),
        BackendConfig::new("b", b.addr),
    ]);
    c.algorithm = Algorithm::LeastConn;
    let lb = Lb::start(vec![c]).await;
    lb.wait_state(&["a", "b"], BackendState::Up).await;
    let mut held = Vec::new();
    // Alternates on ties; with one held on each, the next two also split.
    for _ in 0..4 {
        let mut s = TcpStream::connect(lb.addr()).await.unwrap();
        assert_eq!(
            bounded("echo", echo_roundtrip(&mut s, b"x")).await.unwrap(),
            b"x"
        );
        held.push(s);
    }
    let status = lb.status();
    assert_eq!(
        status
            .backends
            .iter()
            .map(|b| b.active_connections)
            .collect::<Vec<_>>(),
        [2, 2]
    );
    // Close both on a: the next two both go to a.
    let s = lb.status();
    assert_eq!(s.backends[0].total_connections, 2);
    held.remove(2);
    held.remove(0);
    lb.wait_for("a to have no connection", |s| {
        s.backends[0].active_connections == 0
    })
    .await;
    for _ in 0..2 {
        let mut s = TcpStream::connect(lb.addr()).await.unwrap();
        assert_eq!(
            bounded("echo", echo_roundtrip(&mut s, b"y")).await.unwrap(),
            b"y"
        );
        held.push(s);
    }
    let status = lb.status();
    assert_eq!(status.backends[0].total_connections, 4, "{status:#?}");
    assert_eq!(status.backends[1].total_connections, 2);
}

/// 1 MiB plus a window of offsets: connection `i` sends a distinct slice.
fn pattern() -> Arc<Vec<u8>> {
    let mut x: u32 = 0x1234_5678;
    Arc::new(
        (0..(1 << 20) + 4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_connections_each_echo_one_mib() {
    thousand_echoes(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_connections_each_echo_one_mib_zero_copy() {
    thousand_echoes(true).await;
}

async fn thousand_echoes(zero_copy: bool) {
    const CONNS: usize = 1000;
    const SIZE: usize = 1 << 20;
    // Clients, balancer (two sockets each) and echo servers share this process.
    let limit = bootlab_lb::raise_nofile(8 * CONNS as u64).expect("RLIMIT_NOFILE");
    assert!(
        !limit.short,
        "RLIMIT_NOFILE hard limit too low for this test: {limit:?}"
    );
    let echoes: Vec<Echo> = (0..3).map(|_| Echo::start()).collect();
    let mut c = config(
        echoes
            .iter()
            .enumerate()
            .map(|(i, e)| BackendConfig::new(format!("echo{i}"), e.addr))
            .collect(),
    );
    c.limits.zero_copy = zero_copy;
    let lb = Lb::start(vec![c]).await;
    lb.wait_state(&["echo0", "echo1", "echo2"], BackendState::Up)
        .await;
    let addr = lb.addr();
    let data = pattern();
    let all_connected = Arc::new(tokio::sync::Barrier::new(CONNS));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..CONNS {
        let (data, all_connected) = (Arc::clone(&data), Arc::clone(&all_connected));
        tasks.spawn(async move {
            let stream = TcpStream::connect(addr).await.expect("connect");
            // Every connection is open before any sends: they run at once.
            all_connected.wait().await;
            let offset = (i * 4099) % 4096;
            let mine = &data[offset..offset + SIZE];
            let (mut r, mut w) = stream.into_split();
            let send = {
                let data = Arc::clone(&data);
                tokio::spawn(async move {
                    w.write_all(&data[offset..offset + SIZE])
                        .await
                        .expect("send");
                    w.shutdown().await.expect("half-close");
                })
            };
            let mut back = Vec::with_capacity(SIZE);
            r.read_to_end(&mut back).await.expect("receive");
            send.await.unwrap();
            assert!(
                back.len() == SIZE && back == mine,
                "connection {i}: {} bytes back, not identical",
                back.len()
            );
        });
    }
    bounded("1,000 x 1 MiB echoes", async {
        while let Some(r) = tasks.join_next().await {
            r.expect("a connection failed");
        }
    })
    .await;
    let status = lb.status();
    assert_eq!(status.total_connections, CONNS as u64);
    let bytes_in: u64 = status.backends.iter().map(|b| b.bytes_in).sum();
    let bytes_out: u64 = status.backends.iter().map(|b| b.bytes_out).sum();
    assert_eq!(
        (bytes_in, bytes_out),
        ((CONNS * SIZE) as u64, (CONNS * SIZE) as u64)
    );
    for b in &status.backends {
        assert!(b.total_connections >= 300, "round robin spread: {b:?}");
    }
}
