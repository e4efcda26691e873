//! Batched UDP on real loopback sockets: replies leave from the address the
//! request was sent to (IPv4 on 0.0.0.0, IPv4 clients of a dual-stack [::]
//! socket, IPv6 on [::]), checked with connected client sockets, which the
//! kernel only lets replies from that exact source reach.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use bootlab_netio::{
    BatchHandler, RecvBatch, RecvOptions, SendBatch, WorkerOptions, enable_pktinfo,
    enable_timestamps, run_worker,
};
use tokio_util::sync::CancellationToken;

/// Guard against hangs; never a performance assertion.
const PATIENCE: Duration = Duration::from_secs(10);

/// Echoes every datagram back, prefixed with the local address it saw.
struct Echo;

impl BatchHandler for Echo {
    type Tag = ();

    fn handle(&mut self, batch: &RecvBatch, out: &mut SendBatch) {
        for (d, payload) in batch.iter() {
            let mut reply = format!("{:?}|{}|", d.local, d.kernel_time.is_some()).into_bytes();
            reply.extend_from_slice(payload);
            out.push(&reply, d.peer, d.local, ());
        }
    }
}

struct Server {
    port: u16,
    token: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.token.cancel();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn serve(bind: &str) -> Server {
    let sock = UdpSocket::bind(bind).unwrap();
    let local = sock.local_addr().unwrap();
    enable_pktinfo(&sock, local).unwrap();
    enable_timestamps(&sock).unwrap();
    let token = CancellationToken::new();
    let t = token.clone();
    let thread = std::thread::spawn(move || {
        let opts = WorkerOptions {
            recv: RecvOptions {
                batch: 8,
                buf_size: 2048,
                pktinfo: true,
                timestamps: true,
            },
            send_chunk: 4,
            poll: Duration::from_millis(50),
        };
        run_worker(&sock, opts, &mut Echo, &t).unwrap();
    });
    Server {
        port: local.port(),
        token,
        thread: Some(thread),
    }
}

/// Sends from a socket connected to `to`; returns the reply text.
fn ask(client_bind: &str, to: SocketAddr, msg: &str) -> String {
    let c = UdpSocket::bind(client_bind).unwrap();
    c.connect(to).unwrap();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    c.send(msg.as_bytes()).unwrap();
    let mut buf = [0u8; 2048];
    let n = c
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no reply from {to} (one from another source is dropped): {e}"));
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn ipv4_on_any_address_replies_from_the_address_asked() {
    let s = serve("0.0.0.0:0");
    for local in ["127.0.0.2", "127.0.0.3", "127.0.0.1"] {
        let to: SocketAddr = (local.parse::<IpAddr>().unwrap(), s.port).into();
        let r = ask("127.0.0.1:0", to, "hi");
        assert_eq!(r, format!("Some({local})|true|hi"));
    }
}

#[test]
fn dual_stack_any_address_answers_ipv4_and_ipv6_from_the_address_asked() {
    let s = serve("[::]:0");
    let r = ask(
        "[::1]:0",
        (IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]), s.port).into(),
        "v6",
    );
    assert_eq!(r, "Some(::1)|true|v6");
    for local in ["127.0.0.4", "127.0.0.5"] {
        let to: SocketAddr = (local.parse::<IpAddr>().unwrap(), s.port).into();
        let r = ask("127.0.0.1:0", to, "v4");
        assert_eq!(r, format!("Some(::ffff:{local})|true|v4"));
    }
}

#[test]
fn a_burst_larger_than_a_batch_is_answered_whole() {
    let s = serve("0.0.0.0:0");
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.connect(("127.0.0.6", s.port)).unwrap();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    for i in 0..50 {
        c.send(format!("{i}").as_bytes()).unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut buf = [0u8; 2048];
    while seen.len() < 50 {
        let n = c.recv(&mut buf).expect("every datagram answered");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let i: u32 = text.rsplit('|').next().unwrap().parse().unwrap();
        seen.insert(i);
    }
}

/// A datagram the kernel refuses (a broadcast without SO_BROADCAST) is
/// reported for itself and skipped; the rest of the batch still goes, and
/// every reply's outcome comes back with its tag, in order.
#[test]
fn a_refused_datagram_is_reported_and_the_rest_of_the_batch_still_goes() {
    use std::os::fd::AsRawFd;
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver.set_read_timeout(Some(PATIENCE)).unwrap();
    let to = receiver.local_addr().unwrap();
    let mut batch = SendBatch::new(bootlab_netio::Family::V4, false, 2);
    batch.push(b"one", to, None, 1);
    batch.push(b"refused", "255.255.255.255:9".parse().unwrap(), None, 2);
    batch.push(b"three", to, None, 3);
    batch.push(b"four", to, None, 4);
    let mut outcomes = Vec::new();
    batch.flush(sender.as_raw_fd(), |tag, r| outcomes.push((tag, r.is_ok())));
    assert_eq!(outcomes, [(1, true), (2, false), (3, true), (4, true)]);
    assert!(batch.is_empty());
    let mut buf = [0u8; 64];
    for want in ["one", "three", "four"] {
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], want.as_bytes());
    }
}

/// A datagram queued before packet info was enabled carries an empty
/// control message: its local address is unknown (None), not 0.0.0.0 (a
/// TFTP server once answered such a request from a wildcard address and
/// took the client's resend for a second session).
#[tokio::test]
async fn a_datagram_queued_before_pktinfo_has_no_local_address() {
    let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.send_to(b"early", addr).unwrap();
    client.send_to(b"late", addr).unwrap();
    // Both are queued; only now is the option set.
    std::thread::sleep(Duration::from_millis(50));
    enable_pktinfo(&server, addr).unwrap();
    client.send_to(b"after", addr).unwrap();
    let mut buf = [0u8; 64];
    for (want, local) in [
        (&b"early"[..], None),
        (&b"late"[..], None),
        (&b"after"[..], Some(addr.ip())),
    ] {
        let d = tokio::time::timeout(PATIENCE, bootlab_netio::recv_from(&server, &mut buf))
            .await
            .expect("datagram")
            .unwrap();
        assert_eq!(&buf[..d.len], want);
        assert_eq!(d.local, local, "{}", String::from_utf8_lossy(want));
    }
}
