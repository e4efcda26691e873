//! The service on real loopback sockets, in process: UDP and TCP, TCP cap
//! and idle timeout, reload, and forwarding against a fake upstream resolver
//! the test runs on a loopback port (random port and ID, matching on
//! address+port+ID+question, de-duplication, learned addresses).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bootlab_dns::{LearnedAddress, LearnedBatch, ServeOptions, serve_with};
use bootlab_inventory::Inventory;
use bootlab_state::{InventoryPublisher, Shared};
use bootlab_testkit::Service;
use common::*;
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

/// Guard against hangs; never a performance assertion.
const PATIENCE: Duration = Duration::from_secs(20);

struct Running {
    udp: SocketAddr,
    tcp: SocketAddr,
    shared: Shared,
    publisher: InventoryPublisher,
    learned: mpsc::Receiver<LearnedBatch>,
    service: Service,
}

impl Running {
    async fn stop(self) {
        self.service.stop().await;
    }

    fn metric(&self, line_prefix: &str) -> u64 {
        let text = self.shared.metrics.render();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(line_prefix)
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0)
    }
}

async fn start(inv: Inventory, options: ServeOptions) -> Running {
    start_on("127.0.0.1:0", inv, options).await
}

/// `start` with the UDP socket bound to `udp_bind`.
async fn start_on(udp_bind: &str, inv: Inventory, options: ServeOptions) -> Running {
    let udp = UdpSocket::bind(udp_bind).await.unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (udp_addr, tcp_addr) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
    let (shared, publisher) = Shared::new(inv).expect("boot scripts render");
    let (tx, learned) = mpsc::channel(64);
    let service = {
        let shared = shared.clone();
        Service::spawn(move |token| serve_with(udp, tcp, shared, Some(tx), token, options))
    };
    Running {
        udp: udp_addr,
        tcp: tcp_addr,
        shared,
        publisher,
        learned,
        service,
    }
}

async fn udp_ask_from(socket: &UdpSocket, server: SocketAddr, q: &[u8]) -> Message {
    socket.send_to(q, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(PATIENCE, socket.recv_from(&mut buf))
        .await
        .expect("a reply")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

async fn udp_ask(server: SocketAddr, q: &[u8]) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp_ask_from(&socket, server, q).await
}

async fn tcp_ask_on(stream: &mut TcpStream, q: &[u8]) -> Message {
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(q);
    stream.write_all(&framed).await.unwrap();
    let len = tokio::time::timeout(PATIENCE, stream.read_u16())
        .await
        .unwrap()
        .unwrap();
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

async fn tcp_ask(server: SocketAddr, q: &[u8]) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    tcp_ask_on(&mut stream, q).await
}

/// Reads until EOF; true when the server closed the connection.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_and_tcp_give_the_same_answers() {
    let inv = okd();
    let s = start(inv.clone(), ServeOptions::default()).await;
    for r in inv.hosts() {
        let q = query(&format!("{}.", r.fqdn), RecordType::A, Some(1232));
        let u = udp_ask(s.udp, &q).await;
        let t = tcp_ask(s.tcp, &q).await;
        assert_eq!(u.answers, t.answers);
        assert_eq!(u.answers.len(), 1);
        assert_eq!(u.answers[0].data, RData::A(A(r.ip)));
    }
    assert!(s.metric("bootlab_dns_queries_total{transport=\"udp\"}") >= 14);
    assert!(s.metric("bootlab_dns_queries_total{transport=\"tcp\"}") >= 14);
    assert!(s.metric("bootlab_dns_fast_path_total") >= 28);
    // Every UDP answer's latency is in the histogram.
    assert!(
        s.metric("bootlab_dns_reply_duration_seconds_count{transport=\"udp\"}") >= 14,
        "{}",
        s.shared.metrics.render()
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_answered_counted_and_never_kills_the_server() {
    let s = start(okd(), ServeOptions::default()).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // FORMERR for a pointer loop, then a good answer on the same socket
    let mut bad = vec![0, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    bad.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    let m = udp_ask_from(&socket, s.udp, &bad).await;
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // a 3-byte datagram is dropped; the next query still works
    socket.send_to(&[1, 2, 3], s.udp).await.unwrap();
    let m = udp_ask_from(
        &socket,
        s.udp,
        &query("api.okd.example.com.", RecordType::A, None),
    )
    .await;
    assert_eq!(m.answers.len(), 1);
    assert_eq!(s.metric("bootlab_dns_bad_queries_total"), 1);
    assert_eq!(
        s.metric("bootlab_dns_dropped_total{reason=\"too_short\"}"),
        1
    );
    assert_eq!(
        s.metric("bootlab_dns_responses_total{rcode=\"FORMERR\"}"),
        1
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_idle_connections_are_closed() {
    let options = ServeOptions {
        tcp_idle_timeout: Duration::from_millis(300),
        ..ServeOptions::default()
    };
    let s = start(okd(), options).await;
    let mut stream = TcpStream::connect(s.tcp).await.unwrap();
    let m = tcp_ask_on(
        &mut stream,
        &query("api.okd.example.com.", RecordType::A, None),
    )
    .await;
    assert_eq!(m.answers.len(), 1);
    assert!(
        closed_by_server(&mut stream).await,
        "idle connection closed"
    );
    // a half-sent query (length only) is cut off as well
    let mut stream = TcpStream::connect(s.tcp).await.unwrap();
    stream.write_all(&[0, 40, 0, 1]).await.unwrap();
    assert!(closed_by_server(&mut stream).await);
    assert_eq!(s.metric("bootlab_dns_tcp_idle_closed_total"), 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connection_cap() {
    let options = ServeOptions {
        tcp_max_connections: 2,
        ..ServeOptions::default()
    };
    let s = start(okd(), options).await;
    let q = query("api.okd.example.com.", RecordType::A, None);
    let mut a = TcpStream::connect(s.tcp).await.unwrap();
    let mut b = TcpStream::connect(s.tcp).await.unwrap();
    tcp_ask_on(&mut a, &q).await;
    tcp_ask_on(&mut b, &q).await;
    let mut c = TcpStream::connect(s.tcp).await.unwrap();
    assert!(
        closed_by_server(&mut c).await,
        "third connection closed at once"
    );
    assert_eq!(s.metric("bootlab_dns_tcp_rejected_total"), 1);
    // the first two still work; closing one frees a slot
    tcp_ask_on(&mut a, &q).await;
    drop(b);
    let mut served = false;
    for _ in 0..100 {
        let mut d = TcpStream::connect(s.tcp).await.unwrap();
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        if d.write_all(&framed).await.is_ok()
            && let Ok(Ok(_)) = tokio::time::timeout(PATIENCE, d.read_u16()).await
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "a slot is freed when a connection ends");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_the_zones() {
    let s = start(okd(), ServeOptions::default()).await;
    let q = query("added.okd.example.com.", RecordType::A, None);
    assert_eq!(
        udp_ask(s.udp, &q).await.metadata.response_code,
        ResponseCode::NXDomain
    );
    let serial = |m: &Message| match &m.answers[0].data {
        RData::SOA(soa) => soa.serial,
        _ => panic!(),
    };
    let soa_q = query("okd.example.com.", RecordType::SOA, None);
    let before = serial(&udp_ask(s.udp, &soa_q).await);
    s.publisher
        .publish(okd_with_records([("added", "A", "192.168.200.99")]))
        .expect("boot scripts render");
    let mut ok = false;
    for _ in 0..200 {
        let m = udp_ask(s.udp, &q).await;
        if m.metadata.response_code == ResponseCode::NoError {
            assert_eq!(
                m.answers[0].data,
                RData::A(A("192.168.200.99".parse().unwrap()))
            );
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(ok, "new zone served after reload");
    assert_ne!(
        serial(&udp_ask(s.udp, &soa_q).await),
        before,
        "serial changed"
    );
    assert_eq!(tcp_ask(s.tcp, &q).await.answers.len(), 1, "TCP sees it too");
    s.stop().await;
}

// ---- forwarding ----

fn isolated(upstream: SocketAddr) -> Inventory {
    isolated_inventory(&["allowed.test"], &[&upstream.to_string()])
}

fn encode(m: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    m.emit(&mut BinEncoder::new(&mut out)).unwrap();
    out
}

/// The upstream's answer to `q`, with the given ID and address.
fn upstream_reply(q: &Message, id: u16, addr: &str, ttl: u32) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Response, q.metadata.op_code);
    m.metadata.recursion_available = true;
    m.metadata.recursion_desired = true;
    m.add_query(q.queries[0].clone());
    m.add_answer(Record::from_rdata(
        q.queries[0].name().clone(),
        ttl,
        RData::A(A(addr.parse().unwrap())),
    ));
    encode(&m)
}

async fn upstream_recv(upstream: &UdpSocket) -> (Message, SocketAddr) {
    let mut buf = vec![0u8; 4096];
    let (n, from) = tokio::time::timeout(PATIENCE, upstream.recv_from(&mut buf))
        .await
        .expect("the server forwards")
        .unwrap();
    (Message::from_vec(&buf[..n]).unwrap(), from)
}

/// The upstream takes one forwarded query and answers it truthfully.
async fn upstream_answers(upstream: &UdpSocket, addr: &str, ttl: u32) {
    let (fq, from) = upstream_recv(upstream).await;
    upstream
        .send_to(&upstream_reply(&fq, fq.metadata.id, addr, ttl), from)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_matches_address_port_id_and_question_and_learns_addresses() {
    let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut s = start(
        isolated(upstream.local_addr().unwrap()),
        ServeOptions::default(),
    )
    .await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut q = query("www.allowed.test.", RecordType::A, Some(1232));
    q[0] = 0x42;
    q[1] = 0x43;
    client.send_to(&q, s.udp).await.unwrap();
    let (fq, from) = upstream_recv(&upstream).await;
    assert!(fq.metadata.recursion_desired);
    assert_eq!(fq.queries[0].name().to_ascii(), "www.allowed.test.");
    assert_ne!(fq.metadata.id, 0x4243, "a fresh ID, not the client's");
    // spoofs: another port, a wrong ID, a wrong question
    let spoofer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    spoofer
        .send_to(&upstream_reply(&fq, fq.metadata.id, "6.6.6.6", 999), from)
        .await
        .unwrap();
    upstream
        .send_to(
            &upstream_reply(&fq, fq.metadata.id.wrapping_add(1), "6.6.6.6", 999),
            from,
        )
        .await
        .unwrap();
    let mut other = fq.clone();
    other.queries[0].set_name(Name::from_ascii("evil.allowed.test.").unwrap());
    upstream
        .send_to(
            &upstream_reply(&other, fq.metadata.id, "6.6.6.6", 999),
            from,
        )
        .await
        .unwrap();
    // the real answer
    upstream
        .send_to(
            &upstream_reply(&fq, fq.metadata.id, "203.0.113.7", 120),
            from,
        )
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(PATIENCE, client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.id, 0x4243);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(!m.metadata.authoritative && !m.metadata.recursion_available);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(
        m.answers[0].data,
        RData::A(A("203.0.113.7".parse().unwrap()))
    );
    let batch = tokio::time::timeout(PATIENCE, s.learned.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(batch.addresses.len(), 1);
    assert_eq!(
        batch.addresses[0],
        LearnedAddress {
            name: "www.allowed.test".into(),
            address: "203.0.113.7".parse().unwrap(),
            ttl: Duration::from_secs(120),
        }
    );
    assert!(
        s.learned.try_recv().is_err(),
        "spoofed addresses are never learned"
    );
    assert_eq!(
        s.metric("bootlab_dns_upstream_mismatched_total"),
        3,
        "wrong port, wrong ID, wrong question"
    );
    // not allow-listed: refused, nothing forwarded
    let m = udp_ask(s.udp, &query("www.example.org.", RecordType::A, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_pending_questions_share_one_upstream_query() {
    let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let s = start(
        isolated(upstream.local_addr().unwrap()),
        ServeOptions::default(),
    )
    .await;
    let c1 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let c2 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut q1 = query("dup.allowed.test.", RecordType::A, None);
    let mut q2 = query("DUP.allowed.test.", RecordType::A, Some(1232));
    q1[..2].copy_from_slice(&[0, 1]);
    q2[..2].copy_from_slice(&[0, 2]);
    c1.send_to(&q1, s.udp).await.unwrap();
    let (fq, from) = upstream_recv(&upstream).await;
    c2.send_to(&q2, s.udp).await.unwrap();
    // wait until the second question joined the pending one
    let mut joined = false;
    for _ in 0..400 {
        if s.metric("bootlab_dns_forward_deduplicated_total") == 1 {
            joined = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(joined, "second identical question merged");
    upstream
        .send_to(
            &upstream_reply(&fq, fq.metadata.id, "198.51.100.1", 60),
            from,
        )
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    for (client, id, name) in [
        (&c1, 1u16, "dup.allowed.test."),
        (&c2, 2, "DUP.allowed.test."),
    ] {
        let (n, _) = tokio::time::timeout(PATIENCE, client.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let m = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(m.metadata.id, id);
        assert_eq!(
            m.queries[0].name().to_ascii(),
            name,
            "each client's own spelling"
        );
        assert_eq!(m.answers.len(), 1);
    }
    assert_eq!(s.metric("bootlab_dns_upstream_queries_total"), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_queries_use_random_ports_and_ids_and_time_out_to_servfail() {
    let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let options = ServeOptions {
        forward_timeout: Duration::from_millis(200),
        ..ServeOptions::default()
    };
    let s = start(isolated(upstream.local_addr().unwrap()), options).await;
    let mut ports = std::collections::HashSet::new();
    let mut ids = std::collections::HashSet::new();
    let mut clients = Vec::new();
    for i in 0..6 {
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.send_to(
            &query(&format!("n{i}.allowed.test."), RecordType::A, None),
            s.udp,
        )
        .await
        .unwrap();
        let (fq, from) = upstream_recv(&upstream).await;
        ports.insert(from.port());
        ids.insert(fq.metadata.id);
        clients.push(c);
    }
    assert!(ports.len() >= 5, "source ports vary: {ports:?}");
    assert!(ids.len() >= 5, "IDs vary: {ids:?}");
    // nobody answers: SERVFAIL
    let mut buf = vec![0u8; 4096];
    for c in &clients {
        let (n, _) = tokio::time::timeout(PATIENCE, c.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let m = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_pipelined_queries_are_answered_in_order() {
    let s = start(okd(), ServeOptions::default()).await;
    let mut stream = TcpStream::connect(s.tcp).await.unwrap();
    let names = [
        "master-0.okd.example.com.",
        "nope.okd.example.com.",
        "example.org.",
    ];
    let mut burst = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let mut q = query(name, RecordType::A, None);
        q[..2].copy_from_slice(&(i as u16).to_be_bytes());
        burst.extend_from_slice(&(q.len() as u16).to_be_bytes());
        burst.extend_from_slice(&q);
    }
    stream.write_all(&burst).await.unwrap();
    let expected = [
        ResponseCode::NoError,
        ResponseCode::NXDomain,
        ResponseCode::Refused,
    ];
    for (i, rcode) in expected.iter().enumerate() {
        let len = tokio::time::timeout(PATIENCE, stream.read_u16())
            .await
            .unwrap()
            .unwrap();
        let mut buf = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buf).await.unwrap();
        let m = Message::from_vec(&buf).unwrap();
        assert_eq!(m.metadata.id, i as u16);
        assert_eq!(m.metadata.response_code, *rcode);
    }
    // garbage on TCP (a response) closes the connection
    let mut q = query("okd.example.com.", RecordType::SOA, None);
    q[2] |= 0x80;
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    stream.write_all(&framed).await.unwrap();
    assert!(closed_by_server(&mut stream).await);
    s.stop().await;
}

#[tokio::test]
async fn an_answer_leaves_only_after_its_learned_addresses_are_applied() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut s = start(
        isolated(upstream.local_addr().unwrap()),
        ServeOptions::default(),
    )
    .await;
    // The consumer (bootlabd's firewall feeder in production) marks the
    // batch applied, then releases the answer.
    let applied = Arc::new(AtomicBool::new(false));
    let mut learned = std::mem::replace(&mut s.learned, mpsc::channel(1).1);
    let flag = applied.clone();
    let consumer = tokio::spawn(async move {
        let batch = learned.recv().await.unwrap();
        flag.store(true, Ordering::SeqCst);
        batch.applied.send(()).unwrap();
        batch.addresses
    });
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let q = query("www.allowed.test.", RecordType::A, Some(1232));
    client.send_to(&q, s.udp).await.unwrap();
    upstream_answers(&upstream, "203.0.113.9", 60).await;
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(PATIENCE, client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        applied.load(Ordering::SeqCst),
        "the client got its answer before the learned address was applied"
    );
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.answers.len(), 1);
    let addresses = consumer.await.unwrap();
    assert_eq!(
        addresses[0].address,
        "203.0.113.9".parse::<std::net::IpAddr>().unwrap()
    );
    s.stop().await;
}

/// A reply on a connected socket: the kernel delivers only datagrams from
/// the address and port the socket is connected to.
async fn connected_ask(local: &str, port: u16, q: &[u8]) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect((local, port)).await.unwrap();
    socket.send(q).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, socket.recv(&mut buf))
        .await
        .unwrap_or_else(|_| {
            panic!("no reply from {local}:{port} (a reply from another source is dropped)")
        })
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

/// Bound to 0.0.0.0 (the spec's default listen address), every reply
/// leaves from the address its query was sent to, for answers and
/// forwarded answers alike (IP_PKTINFO), so clients with connected sockets
/// (kdig, resolvers) accept it; without it the kernel picks 127.0.0.1 here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_to_any_address_replies_come_from_the_address_asked() {
    let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let s = start_on(
        "0.0.0.0:0",
        isolated(upstream_addr),
        ServeOptions::default(),
    )
    .await;
    let port = s.udp.port();
    // A TCP answer means the service is past setting up its UDP socket
    // (IP_PKTINFO is set before the TCP loop starts).
    let m = tcp_ask(s.tcp, &query("api.okd.example.com.", RecordType::A, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    for local in ["127.0.0.2", "127.0.0.3", "127.0.0.1"] {
        let m = connected_ask(
            local,
            port,
            &query("api.okd.example.com.", RecordType::A, None),
        )
        .await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{local}");
        assert_eq!(m.answers.len(), 1, "{local}");
    }
    // A forwarded answer goes back from the address asked too.
    let answered =
        tokio::spawn(async move { upstream_answers(&upstream, "203.0.113.9", 60).await });
    let m = connected_ask(
        "127.0.0.4",
        port,
        &query("www.allowed.test.", RecordType::A, None),
    )
    .await;
    answered.await.unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        m.answers[0].data,
        RData::A(A("203.0.113.9".parse().unwrap()))
    );
    // And a real client: kdig checks the reply's source itself.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("kdig")
            .args([
                "@127.0.0.5",
                "-p",
                &port.to_string(),
                "+retry=0",
                "+time=5",
                "+short",
            ])
            .arg("api.okd.example.com")
            .output()
            .expect("kdig runs (Debian knot-dnsutils; tests/run-all.sh installs it)")
    })
    .await
    .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !text.contains("unexpected reply source"),
        "{text}"
    );
    s.stop().await;
}

/// Regression: one client holding the 128 idle TCP connections blocked
/// every other client's TCP DNS until the idle timeout, and a client that
/// kept reconnecting could hold them indefinitely. Now a client over its
/// per-client cap is closed at once while others keep being served (a real
/// kdig over TCP from another address answers within a bounded wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_holding_idle_tcp_connections_does_not_block_others() {
    let defaults = ServeOptions::default();
    let per_client = defaults.tcp_max_connections_per_client;
    let total = defaults.tcp_max_connections;
    let s = start(okd(), defaults).await;
    // The hog (127.0.0.1) opens more idle connections than the whole cap.
    let mut hog = Vec::new();
    for _ in 0..total + 20 {
        hog.push(TcpStream::connect(s.tcp).await.unwrap());
    }
    // Those over its cap are closed at once (EOF, no answer); the rest stay
    // open until the idle timeout. (Wait, bounded, until the server has
    // taken every connection off its accept queue.)
    let refused = (hog.len() - per_client) as u64;
    let deadline = std::time::Instant::now() + PATIENCE;
    while s.metric("bootlab_dns_tcp_client_cap_total") < refused
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut closed = 0;
    for stream in &mut hog {
        let mut buf = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await
        {
            closed += 1;
        }
    }
    assert_eq!(
        closed,
        hog.len() - per_client,
        "all but {per_client} closed"
    );
    assert_eq!(s.metric("bootlab_dns_tcp_client_cap_total"), refused);
    // Reconnecting does not help the hog: still refused at once.
    let mut again = TcpStream::connect(s.tcp).await.unwrap();
    assert!(closed_by_server(&mut again).await);
    // Another client (127.0.0.2) is answered over TCP while the hog still
    // holds its connections, by a real kdig.
    let port = s.tcp.port();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("kdig")
            .args([
                "@127.0.0.1",
                "-p",
                &port.to_string(),
                "-b",
                "127.0.0.2",
                "+tcp",
                "+retry=0",
                "+time=5",
                "+short",
                "api.okd.example.com",
            ])
            .output()
            .expect("kdig runs (Debian knot-dnsutils; tests/run-all.sh installs it)")
    })
    .await
    .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.lines()
            .any(|l| l.parse::<std::net::Ipv4Addr>().is_ok()),
        "an address for api: {text}"
    );
    // The hog's held connections still work (it is capped, not banned).
    let q = query("api.okd.example.com.", RecordType::A, None);
    let mut open = Vec::new();
    for mut stream in hog {
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        if stream.write_all(&framed).await.is_ok()
            && let Ok(Ok(_)) = tokio::time::timeout(PATIENCE, stream.read_u16()).await
        {
            open.push(stream);
        }
    }
    assert_eq!(open.len(), per_client);
    s.stop().await;
}
