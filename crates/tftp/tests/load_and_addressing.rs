//! Many clients at once, answers from the address the client talked to
//! (server bound to 0.0.0.0), and blksize clamped to the path MTU (in a
//! network namespace of the test's own, whose loopback has MTU 1500).

mod common;

use std::process::Command;

use bootlab_testkit::netns::isolated;
use bootlab_testkit::tools::require;
use bootlab_tftp::TftpConfig;
use common::{Lab, Raw, ack, atftp, error_of, opcode, parse_oack, pattern, rrq};

/// 200 concurrent atftp clients fetch the same 1 MiB file: all identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_clients_byte_identical() {
    require("atftp", "atftp");
    let lab = Lab::new();
    let want = lab.asset("one-mib.bin", pattern(1 << 20, 200));
    let server = lab.serve("127.0.0.1:0", TftpConfig::default()).await;
    let mut children = Vec::new();
    for i in 0..200 {
        let out = lab.path(&format!("c{i}.out"));
        let opts: &[&str] = match i % 3 {
            0 => &[],
            1 => &["blksize 1468"],
            _ => &["blksize 1468", "windowsize 8"],
        };
        let mut cmd = atftp(server.port(), "one-mib.bin", &out, opts);
        cmd.stdout(std::process::Stdio::null());
        cmd.stderr(std::process::Stdio::piped());
        children.push((out, cmd.spawn().expect("spawn atftp")));
    }
    let results = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|(out, child)| (out, child.wait_with_output().expect("atftp")))
            .collect::<Vec<_>>()
    })
    .await
    .expect("join");
    for (out, res) in results {
        assert!(
            res.status.success(),
            "{}: {}",
            out.display(),
            String::from_utf8_lossy(&res.stderr)
        );
        assert!(
            std::fs::read(&out).expect("output") == want,
            "{} differs",
            out.display()
        );
    }
    server.stop().await;
    assert_eq!(lab.metric("bootlab_tftp_transfers_total"), 200.0);
}

/// Bound to 0.0.0.0, the server answers each client from the address the
/// client sent to (IP_PKTINFO), for data and for errors alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_come_from_the_address_the_request_was_sent_to() {
    let lab = Lab::new();
    lab.asset("f.txt", b"hello".to_vec());
    let server = lab.serve("0.0.0.0:0", TftpConfig::default()).await;
    for dst in ["127.0.0.1", "127.0.0.2", "127.0.0.77"] {
        let to = format!("{dst}:{}", server.port()).parse().unwrap();
        let raw = Raw::new().await;
        raw.send(to, &rrq("f.txt", "octet", &[])).await;
        let (pkt, from) = raw.recv().await;
        assert_eq!(opcode(&pkt), 3);
        assert_eq!(
            from.ip().to_string(),
            dst,
            "DATA came from the wrong address"
        );
        raw.send(from, &ack(1)).await;
        raw.send(to, &rrq("missing", "octet", &[])).await;
        let (pkt, from) = raw.recv().await;
        assert_eq!(error_of(&pkt).0, 1);
        assert_eq!(
            from.ip().to_string(),
            dst,
            "ERROR came from the wrong address"
        );
        let mut wrq = rrq("w", "octet", &[]);
        wrq[1] = 2;
        raw.send(to, &wrq).await;
        let (pkt, from) = raw.recv().await;
        assert_eq!(error_of(&pkt).0, 2);
        assert_eq!(
            from.ip().to_string(),
            dst,
            "ERROR came from the wrong address"
        );
    }
    server.stop().await;
}

/// In a fresh network namespace whose loopback MTU is 1500, blksize 65464
/// is clamped to 1468 (1500 - 20 IP - 8 UDP - 4 TFTP), and atftp asking for
/// 65464 still gets the file intact.
#[test]
fn blksize_clamped_to_the_path_mtu() {
    require("atftp", "atftp");
    require("ip", "iproute2");
    let lab = Lab::new();
    let want = lab.asset("f.bin", pattern(100_000, 4));
    // The namespace belongs to this thread only and dies with it: nothing to
    // clean up, also on failure.
    let out = lab.path("mtu.out");
    let (shared_lab, out_path) = (&lab, &out);
    isolated(move || {
        bootlab_testkit::tools::run(
            Command::new("ip").args(["link", "set", "lo", "mtu", "1500", "up"]),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let server = shared_lab.serve("127.0.0.1:0", TftpConfig::default()).await;
            let raw = Raw::new().await;
            raw.send(server.addr, &rrq("f.bin", "octet", &[("blksize", "65464")]))
                .await;
            let (pkt, tid) = raw.recv().await;
            assert_eq!(
                parse_oack(&pkt),
                vec![("blksize".to_owned(), "1468".to_owned())]
            );
            raw.send(tid, b"\x00\x05\x00\x08bye\x00").await;
            let (ok, text) =
                common::run(atftp(server.port(), "f.bin", out_path, &["blksize 65464"])).await;
            assert!(ok, "atftp: {text}");
            server.stop().await;
        });
    });
    assert!(std::fs::read(&out).expect("output") == want);
}

/// IPv6 works too (no IP_PKTINFO there: answers come from the bound
/// address), including a dual-stack socket serving an IPv4 client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_and_dual_stack() {
    let lab = Lab::new();
    let want = lab.asset("f.bin", pattern(3000, 9));
    let server = lab.serve("[::1]:0", TftpConfig::default()).await;
    let raw = Raw::bound("[::1]:0").await;
    let (oack, data) = raw
        .fetch(server.addr, "f.bin", &[("blksize", "1024")])
        .await;
    assert_eq!(data, want);
    assert_eq!(oack, vec![("blksize".to_owned(), "1024".to_owned())]);
    server.stop().await;

    let server = lab.serve("[::]:0", TftpConfig::default()).await;
    let v4 = format!("127.0.0.1:{}", server.port()).parse().unwrap();
    let (_, data) = Raw::new().await.fetch(v4, "f.bin", &[]).await;
    assert_eq!(data, want);
    server.stop().await;
}
