//! The service on real loopback sockets, in process: malformed datagrams
//! get no reply and do not stop it, replies are never larger than their
//! request and leave from the address asked, and a flooding client gets
//! kiss-o'-death RATE (itself limited) while another client is answered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bootlab_ntp::packet::{HEADER_LEN, Header, NtpTimestamp, mode};
use bootlab_ntp::{DropReason, NtpConfig, NtpCounters, ServeOptions, serve_with};
use bootlab_testkit::Service;
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// Guard against hangs; never a performance assertion.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long to listen before concluding "no reply".
const QUIET: Duration = Duration::from_millis(300);

struct Running {
    addr: SocketAddr,
    counters: Arc<NtpCounters>,
    config: watch::Sender<NtpConfig>,
    service: Service,
}

impl Running {
    async fn stop(self) {
        self.service.stop().await;
    }
}

async fn start(bind: &str, options: ServeOptions) -> Running {
    let socket = UdpSocket::bind(bind).await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (config, rx) = watch::channel(NtpConfig::default());
    let counters = Arc::new(NtpCounters::default());
    let service = {
        let counters = counters.clone();
        Service::spawn(|token| serve_with(socket, rx, token, options, counters))
    };
    Running {
        addr,
        counters,
        config,
        service,
    }
}

fn request(nonce: u64) -> [u8; HEADER_LEN] {
    Header {
        version: 4,
        mode: mode::CLIENT,
        poll: 6,
        transmit: NtpTimestamp(nonce),
        ..Header::default()
    }
    .encode()
}

/// A client socket on `local` connected to the server (replies from any
/// other source are dropped by the kernel).
async fn client(local: &str, server: SocketAddr) -> UdpSocket {
    let c = UdpSocket::bind((local, 0)).await.unwrap();
    c.connect(server).await.unwrap();
    c
}

/// The next reply within `wait`, if any.
async fn reply_within(c: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 2048];
    match tokio::time::timeout(wait, c.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

#[tokio::test]
async fn malformed_datagrams_get_no_reply_and_the_server_keeps_answering() {
    let s = start("127.0.0.1:0", ServeOptions::default()).await;
    let c = client("127.0.0.1", s.addr).await;
    let good = request(42);
    let mut mode6 = good;
    mode6[0] = 4 << 3 | 6;
    let mut mode7 = good;
    mode7[0] = 2 << 3 | 7;
    let mut ext = good.to_vec();
    ext.extend_from_slice(&[0x01, 0x04, 0x00, 0x10]);
    ext.extend_from_slice(&[0u8; 12]);
    let mut garbage = good.to_vec();
    garbage.extend_from_slice(&[0xee; 200]);
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("1 byte", vec![0x23]),
        ("short", good[..47].to_vec()),
        ("mode 6", mode6.to_vec()),
        ("mode 7 (monlist)", mode7.to_vec()),
        ("extension field", ext),
        ("garbage after the header", garbage),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in &bad {
        c.send(bytes).await.unwrap();
        assert_eq!(reply_within(&c, QUIET).await, None, "{what}: no reply");
    }
    // Still alive and answering, with a reply no larger than the request.
    c.send(&good).await.unwrap();
    let r = reply_within(&c, PATIENCE)
        .await
        .expect("a good request is answered");
    assert_eq!(r.len(), HEADER_LEN);
    let h = Header::parse(&r).unwrap();
    assert_eq!(
        (h.mode, h.stratum, h.origin),
        (mode::SERVER, 10, NtpTimestamp(42))
    );
    let k = &s.counters;
    assert_eq!(k.dropped(DropReason::TooShort), 3);
    assert_eq!(k.dropped(DropReason::ControlMode), 2);
    assert_eq!(k.dropped(DropReason::TooLong), 2);
    assert_eq!(k.replies.load(Ordering::Relaxed), 1);
    assert_eq!(k.requests.load(Ordering::Relaxed), bad.len() as u64 + 1);
    s.stop().await;
}

#[tokio::test]
async fn a_flooding_client_gets_kiss_o_death_while_another_is_answered() {
    let options = ServeOptions {
        per_client: bootlab_netio::Rate::new(4, 0.0),
        kiss: bootlab_netio::Rate::new(2, 0.0),
        ..ServeOptions::default()
    };
    let s = start("0.0.0.0:0", options).await;
    let port = s.addr.port();
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    let flood = client("127.0.0.1", server).await;
    let mut answers = 0;
    let mut kisses = 0;
    for i in 0..40u64 {
        flood.send(&request(i)).await.unwrap();
    }
    while let Some(r) = reply_within(&flood, QUIET).await {
        assert_eq!(r.len(), HEADER_LEN);
        let h = Header::parse(&r).unwrap();
        if h.stratum == 0 {
            assert_eq!(&h.reference_id, b"RATE");
            assert_eq!(h.leap, 3);
            kisses += 1;
        } else {
            answers += 1;
        }
    }
    assert_eq!(answers, 4, "the burst is answered");
    assert_eq!(kisses, 2, "then two kisses, then silence");
    assert_eq!(s.counters.kiss_sent.load(Ordering::Relaxed), 2);
    assert_eq!(s.counters.rate_limited.load(Ordering::Relaxed), 36);
    assert_eq!(s.counters.kiss_suppressed.load(Ordering::Relaxed), 34);
    // Another client (its own address) is still answered, from the
    // address it asked (the server is bound to 0.0.0.0).
    let other = client("127.0.0.2", ([127, 0, 0, 3], port).into()).await;
    other.send(&request(7)).await.unwrap();
    let r = reply_within(&other, PATIENCE)
        .await
        .expect("another client is answered");
    let h = Header::parse(&r).unwrap();
    assert_eq!((h.stratum, h.origin), (10, NtpTimestamp(7)));
    // A configuration change applies to the next answer.
    s.config
        .send(NtpConfig {
            local_stratum: 5,
            require_sync: false,
        })
        .unwrap();
    other.send(&request(8)).await.unwrap();
    let r = reply_within(&other, PATIENCE).await.unwrap();
    assert_eq!(Header::parse(&r).unwrap().stratum, 5);
    s.stop().await;
}
