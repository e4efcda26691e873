//! Slow and greedy clients: the header-read deadline, the idle timeout for a
//! client that stops reading, the connection cap, and a graceful stop.
//! Waits here are bounded safety nets, never the thing asserted.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bootlab_http::Limits;
use common::{Lab, get, metric};

fn limits() -> Limits {
    Limits {
        header_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(2),
        max_connections: 64,
        drain_timeout: Duration::from_secs(5),
    }
}

/// Polls `f` until it holds; panics after a generous bound.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < give_up, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn slowloris_is_cut_off_by_the_header_deadline() {
    let lab = Lab::start_with(limits());
    let mut s = TcpStream::connect(lab.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(b"GET /assets/small.txt HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    // The server closes the connection (possibly after a 408); reading ends.
    let mut rest = Vec::new();
    let r = s.read_to_end(&mut rest);
    assert!(
        r.is_ok()
            || r.as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "{r:?}"
    );
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    eventually("header timeout counted", || {
        metric(&lab, r#"bootlab_http_errors_total{kind="header_timeout"}"#) >= 1
    });
}

#[test]
fn a_client_that_stops_reading_is_dropped_after_the_idle_timeout() {
    let lab = Lab::start_with(limits());
    let big = lab.assets.join("big.img");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(256 * 1024 * 1024)
        .unwrap();
    let mut s = TcpStream::connect(lab.addr).unwrap();
    s.write_all(b"GET /assets/big.img HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // Never read: the socket buffers fill and nothing moves.
    eventually("idle timeout counted", || {
        metric(&lab, r#"bootlab_http_errors_total{kind="idle_timeout"}"#) >= 1
    });
    eventually("connection released", || {
        metric(&lab, "bootlab_http_open_connections") <= 1
    });
    drop(s);
}

#[test]
fn connections_over_the_cap_get_503() {
    let lab = Lab::start_with(Limits {
        header_read_timeout: Duration::from_secs(60),
        max_connections: 2,
        ..limits()
    });
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(lab.addr).unwrap())
        .collect();
    // Both are accepted (the gauge says so) before the third arrives.
    let mut third = None;
    eventually("third connection refused", || {
        let mut s = TcpStream::connect(lab.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        if text.starts_with("HTTP/1.1 503") {
            third = Some(text);
            true
        } else {
            false
        }
    });
    let text = third.unwrap();
    assert!(text.contains("\r\nContent-Length: 12\r\n"), "{text}");
    drop(held);
    // Once they are gone, service resumes.
    eventually("service resumes", || {
        get(&[&lab.url("/assets/small.txt")]).0 == 200
    });
    assert!(metric(&lab, r#"bootlab_http_errors_total{kind="connection_cap"}"#) >= 1);
}

#[test]
fn stop_lets_an_in_flight_download_finish() {
    let mut lab = Lab::start_with(limits());
    let big = lab.assets.join("big.img");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(8 * 1024 * 1024)
        .unwrap();
    let mut s = TcpStream::connect(lab.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(b"GET /assets/big.img HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 16];
    s.read_exact(&mut first).unwrap();
    let reader = std::thread::spawn(move || {
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).map(|_| rest.len())
    });
    lab.stop();
    let got = reader.join().unwrap().unwrap();
    // Everything arrived: head + 8 MiB, minus the 16 bytes read first.
    assert!(got + 16 > 8 * 1024 * 1024, "only {got} bytes after stop");
}

/// Sends `request` raw and returns everything the server answers before it
/// closes (or the first response, for a kept-alive connection).
fn raw_exchange(lab: &Lab, request: &[u8]) -> String {
    let mut s = TcpStream::connect(lab.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if got.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn malformed_requests_get_protocol_errors_not_silence() {
    let lab = Lab::start_with(limits());
    let bad_line = raw_exchange(&lab, b"GARBAGE\r\n\r\n");
    assert!(bad_line.starts_with("HTTP/1.1 400"), "{bad_line:?}");
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let too_large = raw_exchange(&lab, huge.as_bytes());
    assert!(too_large.starts_with("HTTP/1.1 431"), "{too_large:?}");
    let bad_header = raw_exchange(&lab, b"GET /assets/small.txt HTTP/1.1\r\nHost x\r\n\r\n");
    assert!(bad_header.starts_with("HTTP/1.1 400"), "{bad_header:?}");
    // The service is still there.
    assert_eq!(get(&[&lab.url("/assets/small.txt")]).0, 200);
    assert!(metric(&lab, r#"bootlab_http_errors_total{kind="bad_request"}"#) >= 3);
}
