//! Measures what `SO_TIMESTAMPNS` buys: the delay between the kernel
//! receiving a datagram and the serving task reading the clock after it
//! wakes (the error a userspace receive timestamp would carry), on an idle
//! runtime and on one shared with busy tasks (as in bootlabd, where DNS,
//! HTTP and TFTP share the runtime).
//!
//! `cargo run --release -p bootlab-ntp --example rx_delay`

use std::time::{Duration, SystemTime};

async fn measure(busy_tasks: usize) -> Vec<Duration> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    bootlab_netio::enable_timestamps(&sock).unwrap();
    let addr = sock.local_addr().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for _ in 0..busy_tasks {
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // A slice of work between awaits, like a request handler.
                let t = std::time::Instant::now();
                while t.elapsed() < Duration::from_micros(200) {}
                tokio::task::yield_now().await;
            }
        });
    }
    let sender = std::thread::spawn(move || {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..2000 {
            s.send_to(&[0x23; 48], addr).unwrap();
            std::thread::sleep(Duration::from_micros(500));
        }
    });
    let mut buf = [0u8; 64];
    let mut delays = Vec::new();
    while delays.len() < 2000 {
        let Ok(Ok(d)) = tokio::time::timeout(
            Duration::from_secs(2),
            bootlab_netio::recv_from(&sock, &mut buf),
        )
        .await
        else {
            break;
        };
        let woke = SystemTime::now();
        if let Some(k) = d.kernel_time {
            delays.push(woke.duration_since(k).unwrap_or_default());
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sender.join().unwrap();
    delays.sort();
    delays
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for busy in [0, 4] {
        let d = rt.block_on(measure(busy));
        let q = |p: f64| d[((d.len() as f64 - 1.0) * p) as usize];
        println!(
            "{busy} busy tasks, {} datagrams: kernel -> task wake-up p50 {:?}, p99 {:?}, max {:?}",
            d.len(),
            q(0.5),
            q(0.99),
            d[d.len() - 1]
        );
    }
}
