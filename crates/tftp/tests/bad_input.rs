//! RELIABILITY.md's TFTP list, packet by packet, with a raw UDP client on
//! loopback against the real server: refusals get the right ERROR packet,
//! garbage gets dropped (and counted), transfers survive duplicate ACKs,
//! retransmit with backoff, give up, and respect the session cap.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bootlab_tftp::{Retransmit, TftpConfig};
use common::{Lab, Raw, ack, error_of, opcode, parse_oack, pattern, rrq};

const NOT_FOUND: u16 = 1;
const ACCESS: u16 = 2;
const ILLEGAL: u16 = 4;

/// Sends `bad`, then a valid request for `probe`; the first packet back must
/// be the answer to the probe (DATA 1), proving `bad` got no reply.
async fn assert_dropped(server: SocketAddr, bad: &[u8]) {
    let raw = Raw::new().await;
    raw.send(server, bad).await;
    raw.send(server, &rrq("probe.txt", "octet", &[])).await;
    let (pkt, tid) = raw.recv().await;
    assert_eq!(opcode(&pkt), 3, "{bad:?} got a reply: {pkt:?}");
    assert_eq!(&pkt[4..], b"probe");
    raw.send(tid, &ack(1)).await;
}

/// What a client sends to end a transfer (option refused).
fn client_error() -> Vec<u8> {
    b"\x00\x05\x00\x08no thanks\x00".to_vec()
}

async fn error_for(raw: &Raw, server: SocketAddr, request: &[u8]) -> (u16, String) {
    raw.send(server, request).await;
    error_of(&raw.recv().await.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_malformed_requests() {
    let lab = Lab::new();
    lab.asset("probe.txt", b"probe".to_vec());
    lab.asset("sub/ok.txt", b"ok".to_vec());
    std::fs::write(lab.dir.path().join("secret"), b"secret").unwrap();
    std::os::unix::fs::symlink(lab.dir.path().join("secret"), lab.assets.join("escape")).unwrap();
    std::os::unix::fs::symlink("/etc", lab.assets.join("etc-link")).unwrap();
    let server = lab.serve("127.0.0.1:0", TftpConfig::default()).await;
    let s = server.addr;

    // Write requests: refused, read-only.
    let mut wrq = rrq("new.bin", "octet", &[]);
    wrq[1] = 2;
    assert_eq!(error_for(&Raw::new().await, s, &wrq).await.0, ACCESS);
    assert!(!lab.assets.join("new.bin").exists());

    // Traversal, symlink escape, backslashes, %-tricks, absolute paths.
    for (name, code) in [
        ("../secret", ACCESS),
        ("sub/../../secret", ACCESS),
        ("./../secret", ACCESS),
        ("escape", ACCESS),
        ("etc-link/passwd", ACCESS),
        ("..\\secret", ACCESS),
        ("sub\\ok.txt", ACCESS),
        ("%2e%2e/secret", NOT_FOUND),
        ("..%2fsecret", NOT_FOUND),
        ("/etc/passwd", NOT_FOUND),
        ("sub", NOT_FOUND),
        ("missing.bin", NOT_FOUND),
    ] {
        let (got, msg) = error_for(&Raw::new().await, s, &rrq(name, "octet", &[])).await;
        assert_eq!(got, code, "{name}: {msg}");
        assert!(!msg.contains("secret") && !msg.contains(&lab.dir.path().display().to_string()));
    }
    // The leading slash means the root, as in tftpd-hpa --secure.
    let (_, data) = Raw::new().await.fetch(s, "/sub/ok.txt", &[]).await;
    assert_eq!(data, b"ok");

    // No NUL after the file name / the mode; empty name; bad modes.
    let raw = Raw::new().await;
    assert_eq!(error_for(&raw, s, b"\x00\x01probe.txt").await.0, ILLEGAL);
    assert_eq!(
        error_for(&raw, s, b"\x00\x01probe.txt\x00octet").await.0,
        ILLEGAL
    );
    assert_eq!(
        error_for(&raw, s, b"\x00\x01\x00octet\x00").await.0,
        ILLEGAL
    );
    assert_eq!(
        error_for(&raw, s, &rrq("probe.txt", "mail", &[])).await.0,
        ILLEGAL
    );
    assert_eq!(
        error_for(&raw, s, &rrq("probe.txt", "binary", &[])).await.0,
        ILLEGAL
    );
    assert_eq!(
        error_for(&raw, s, b"\x00\x01\xff\xfe\x00octet\x00").await.0,
        ILLEGAL
    );
    assert_dropped(s, b"\x00\x09junk").await;

    // Very long file names: over the resolver's limit -> ERROR; a datagram
    // larger than any request -> dropped.
    let long = "a/".repeat(1000);
    let (code, msg) = error_for(&raw, s, &rrq(&long, "octet", &[])).await;
    assert_eq!(code, ILLEGAL, "{msg}");
    assert_dropped(s, &rrq(&"b".repeat(4000), "octet", &[])).await;
    // 3-byte ERROR packets, stray ACK/DATA/OACK, runts: no reply.
    for bad in [
        &b"\x00\x05\x00"[..],
        b"\x00\x04\x00\x01",
        b"\x00\x03\x00\x01hi",
        b"\x00\x06",
        b"\x00",
        b"",
    ] {
        assert_dropped(s, bad).await;
    }
    server.stop().await;
    assert!(lab.metric("bootlab_tftp_errors_total{kind=\"write_refused\"}") >= 1.0);
    assert!(lab.metric("bootlab_tftp_errors_total{kind=\"access\"}") >= 5.0);
    assert!(lab.metric("bootlab_tftp_errors_total{kind=\"not_a_request\"}") >= 4.0);
    assert!(lab.metric("bootlab_tftp_errors_total{kind=\"oversized\"}") >= 1.0);
    assert!(lab.metric("bootlab_tftp_errors_total{kind=\"unterminated\"}") >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_negotiated_within_bounds() {
    let lab = Lab::new();
    let want = lab.asset("f.bin", pattern(5000, 3));
    let server = lab.serve("127.0.0.1:0", TftpConfig::default()).await;
    let s = server.addr;

    // blksize 8 with other options: honoured, file intact.
    let (oack, data) = Raw::new()
        .await
        .fetch(
            s,
            "f.bin",
            &[
                ("blksize", "8"),
                ("tsize", "0"),
                ("windowsize", "4"),
                ("timeout", "2"),
            ],
        )
        .await;
    assert_eq!(data, want);
    let oack_has = |oack: &[(String, String)], k: &str, v: &str| {
        oack.iter().any(|(n, val)| n == k && val == v)
    };
    assert!(
        oack_has(&oack, "blksize", "8") && oack_has(&oack, "tsize", "5000"),
        "{oack:?}"
    );
    assert!(
        oack_has(&oack, "windowsize", "4") && oack_has(&oack, "timeout", "2"),
        "{oack:?}"
    );

    // Huge timeout values, blksize below 8, windowsize 0 and unknown options
    // are ignored: no OACK at all, data starts at block 1.
    let raw = Raw::new().await;
    raw.send(
        s,
        &rrq(
            "f.bin",
            "octet",
            &[
                ("timeout", "99999999999999999999"),
                ("blksize", "7"),
                ("windowsize", "0"),
                ("x-frobnicate", "1"),
            ],
        ),
    )
    .await;
    let (pkt, tid) = raw.recv().await;
    assert_eq!(&pkt[..4], &[0, 3, 0, 1], "expected DATA 1, got {pkt:?}");
    raw.send(tid, &client_error()).await;

    // windowsize clamped to 64; blksize above 65464 clamped (loopback MTU
    // 65536 allows the maximum).
    let raw = Raw::new().await;
    raw.send(
        s,
        &rrq(
            "f.bin",
            "OcTeT",
            &[("windowsize", "1000"), ("BLKSIZE", "70000")],
        ),
    )
    .await;
    let (pkt, tid) = raw.recv().await;
    let oack = parse_oack(&pkt);
    raw.send(tid, &client_error()).await;
    assert!(oack_has(&oack, "blksize", "65464"), "{oack:?}");
    // 65464-byte blocks: the byte budget allows two per window.
    assert!(oack_has(&oack, "windowsize", "2"), "{oack:?}");
    let raw = Raw::new().await;
    raw.send(s, &rrq("f.bin", "octet", &[("windowsize", "1000")]))
        .await;
    let (pkt, tid) = raw.recv().await;
    let oack = parse_oack(&pkt);
    raw.send(tid, &client_error()).await;
    assert!(oack_has(&oack, "windowsize", "64"), "{oack:?}");

    // tsize only in octet mode; netascii converts LF to CR LF.
    lab.asset("t.txt", b"a\nb\n".to_vec());
    let raw = Raw::new().await;
    raw.send(s, &rrq("t.txt", "netascii", &[("tsize", "0")]))
        .await;
    let (pkt, from) = raw.recv().await;
    assert_eq!(pkt, b"\x00\x03\x00\x01a\r\nb\r\n");
    raw.send(from, &ack(1)).await;
    server.stop().await;
}

/// A duplicate ACK never triggers a resend (Sorcerer's Apprentice): after
/// ACK 1 twice, DATA 2 comes once and the next packet is DATA 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_ack_never_resends() {
    let lab = Lab::new();
    let want = lab.asset("three.bin", pattern(512 * 2 + 100, 8));
    let config = TftpConfig {
        // Long enough that no timeout resend can happen during the test.
        retransmit: Retransmit {
            initial: Duration::from_secs(60),
            max_delay: Duration::from_secs(60),
            max_retries: 1,
        },
        ..TftpConfig::default()
    };
    let server = lab.serve("127.0.0.1:0", config).await;
    let raw = Raw::new().await;
    raw.send(server.addr, &rrq("three.bin", "octet", &[])).await;
    let (d1, tid) = raw.recv().await;
    assert_eq!(&d1[..4], &[0, 3, 0, 1]);
    raw.send(tid, &ack(1)).await;
    raw.send(tid, &ack(1)).await;
    raw.send(tid, &ack(0)).await;
    let (d2, _) = raw.recv().await;
    assert_eq!(&d2[..4], &[0, 3, 0, 2]);
    raw.send(tid, &ack(2)).await;
    let (d3, _) = raw.recv().await;
    assert_eq!(&d3[..4], &[0, 3, 0, 3], "a duplicate ACK caused a resend");
    raw.send(tid, &ack(3)).await;
    let got = [&d1[4..], &d2[4..], &d3[4..]].concat();
    assert_eq!(got, want);
    // A packet from another port to the transfer's port is not the client.
    server.stop().await;
    assert_eq!(lab.metric("bootlab_tftp_duplicate_acks_total"), 2.0);
    assert_eq!(lab.metric("bootlab_tftp_retransmits_total"), 0.0);
    assert_eq!(lab.metric("bootlab_tftp_transfers_total"), 1.0);
}

/// No ACK: the block is resent max_retries times with growing waits, then
/// the transfer is abandoned with an ERROR and the session freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmits_then_gives_up() {
    let lab = Lab::new();
    lab.asset("f.bin", pattern(2000, 1));
    let config = TftpConfig {
        retransmit: Retransmit {
            initial: Duration::from_millis(20),
            max_delay: Duration::from_millis(80),
            max_retries: 3,
        },
        ..TftpConfig::default()
    };
    let server = lab.serve("127.0.0.1:0", config).await;
    let raw = Raw::new().await;
    raw.send(server.addr, &rrq("f.bin", "octet", &[])).await;
    let mut copies = 0;
    loop {
        let (pkt, _) = raw.recv().await;
        match opcode(&pkt) {
            3 => {
                assert_eq!(&pkt[..4], &[0, 3, 0, 1]);
                copies += 1;
            }
            5 => {
                assert!(error_of(&pkt).1.contains("timed out"));
                break;
            }
            other => panic!("opcode {other}"),
        }
    }
    assert_eq!(copies, 1 + 3, "first send plus max_retries resends");
    // The OACK phase gives up the same way.
    raw.send(server.addr, &rrq("f.bin", "octet", &[("blksize", "1024")]))
        .await;
    let mut oacks = 0;
    loop {
        let (pkt, _) = raw.recv().await;
        match opcode(&pkt) {
            6 => oacks += 1,
            5 => break,
            other => panic!("opcode {other}"),
        }
    }
    assert_eq!(oacks, 4);
    server.stop().await;
    assert_eq!(
        lab.metric("bootlab_tftp_errors_total{kind=\"timeout\"}"),
        2.0
    );
    assert_eq!(lab.metric("bootlab_tftp_retransmits_total"), 6.0);
    assert_eq!(lab.metric("bootlab_tftp_active_sessions"), 0.0);
}

/// The session cap: beyond it, "server busy"; one session per client port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cap_and_one_session_per_client() {
    let lab = Lab::new();
    lab.asset("f.bin", pattern(2000, 1));
    let config = TftpConfig {
        max_sessions: 2,
        retransmit: Retransmit {
            initial: Duration::from_secs(60),
            max_delay: Duration::from_secs(60),
            max_retries: 0,
        },
        ..TftpConfig::default()
    };
    let server = lab.serve("127.0.0.1:0", config).await;
    let (a, b, c) = (Raw::new().await, Raw::new().await, Raw::new().await);
    a.send(server.addr, &rrq("f.bin", "octet", &[])).await;
    let (pkt, a_tid) = a.recv().await;
    assert_eq!(opcode(&pkt), 3);
    // A resent request from the same client port joins nothing new.
    a.send(server.addr, &rrq("f.bin", "octet", &[])).await;
    b.send(server.addr, &rrq("f.bin", "octet", &[])).await;
    assert_eq!(opcode(&b.recv().await.0), 3);
    let (code, msg) = error_for(&c, server.addr, &rrq("f.bin", "octet", &[])).await;
    assert_eq!(code, 0);
    assert!(msg.contains("busy"), "{msg}");
    assert_eq!(lab.metric("bootlab_tftp_active_sessions"), 2.0);
    assert_eq!(
        lab.metric("bootlab_tftp_errors_total{kind=\"duplicate_request\"}"),
        1.0
    );
    assert_eq!(lab.metric("bootlab_tftp_errors_total{kind=\"busy\"}"), 1.0);
    // A client that gives up (ERROR) frees its session for the next one.
    a.send(a_tid, b"\x00\x05\x00\x00bye\x00").await;
    let deadline = tokio::time::Instant::now() + common::PATIENCE;
    loop {
        c.send(server.addr, &rrq("f.bin", "octet", &[])).await;
        let (pkt, _) = c.recv().await;
        if opcode(&pkt) == 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "session never freed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        lab.metric("bootlab_tftp_errors_total{kind=\"client_error\"}"),
        1.0
    );
    drop(server);
}

/// A reload (new inventory published) in the middle of a transfer does not
/// disturb it; the next request uses the new inventory's assets root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_in_flight_transfers() {
    let lab = Lab::new();
    let want = lab.asset("f.bin", pattern(512 * 3 + 1, 6));
    let server = lab.serve("127.0.0.1:0", TftpConfig::default()).await;
    let raw = Raw::new().await;
    raw.send(server.addr, &rrq("f.bin", "octet", &[])).await;
    let (d1, tid) = raw.recv().await;
    assert_eq!(&d1[..4], &[0, 3, 0, 1]);

    // Reload: same lab, assets moved to a new, empty root.
    let new_root = lab.dir.path().join("assets2");
    std::fs::create_dir_all(&new_root).unwrap();
    let inv = common::dev_inventory(&new_root);
    assert_eq!(inv.services().assets_dir, new_root);
    lab.publisher.publish(inv).expect("boot scripts render");

    let mut got = d1[4..].to_vec();
    raw.send(tid, &ack(1)).await;
    for block in 2u16..=4 {
        let (pkt, _) = raw.recv().await;
        assert_eq!(&pkt[..4], &[0, 3, 0, block as u8]);
        got.extend_from_slice(&pkt[4..]);
        raw.send(tid, &ack(block)).await;
    }
    assert_eq!(
        got, want,
        "the in-flight transfer survived the reload intact"
    );
    // New requests see the new root.
    let (code, _) = error_for(&Raw::new().await, server.addr, &rrq("f.bin", "octet", &[])).await;
    assert_eq!(code, NOT_FOUND);
    std::fs::write(new_root.join("g.bin"), b"new").unwrap();
    let (_, data) = Raw::new().await.fetch(server.addr, "g.bin", &[]).await;
    assert_eq!(data, b"new");
    server.stop().await;
}
