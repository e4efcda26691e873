//! Real TFTP clients (atftp, the tftp-hpa client, curl) against the server
//! on loopback: byte-identical files with and without blksize, tsize and
//! windowsize; block-number rollover; virtual per-MAC files; timeline and
//! metrics.

mod common;

use std::process::Command;

use bootlab_boot::ScriptKind;
use bootlab_testkit::tools::require;
use bootlab_tftp::TftpConfig;
use common::{Lab, atftp, pattern, run};

fn sizes() -> Vec<(&'static str, usize)> {
    vec![
        ("empty.bin", 0),
        ("small.bin", 700),
        ("exact512.bin", 2048),
        ("exact1468.bin", 1468 * 3),
        ("one-mib.bin", 1 << 20),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atftp_fetches_byte_identical_with_and_without_options() {
    require("atftp", "atftp");
    let lab = Lab::new();
    let server = lab.serve("127.0.0.1:0", TftpConfig::default()).await;
    let option_sets: &[&[&str]] = &[
        &[],
        &["tsize 0"],
        &["blksize 1468"],
        &["blksize 8", "tsize 0"],
        &["blksize 65464"],
        &["blksize 1468", "windowsize 16"],
        &["blksize 512", "windowsize 64", "tsize 0"],
        &["windowsize 4", "timeout 2"],
    ];
    for (i, (name, len)) in sizes().into_iter().enumerate() {
        let want = lab.asset(name, pattern(len, i as u32 + 1));
        for opts in option_sets {
            // blksize 8 over 1 MiB is 131k round trips: keep it to small files.
            if opts.contains(&"blksize 8") && len > 4096 {
                continue;
            }
            let out = lab.path("atftp.out");
            let _ = std::fs::remove_file(&out);
            let (ok, text) = run(atftp(server.port(), name, &out, opts)).await;
            assert!(ok, "atftp {name} {opts:?} failed: {text}");
            let got = std::fs::read(&out).expect("atftp output");
            assert!(
                got == want,
                "atftp {name} {opts:?}: {} bytes, want {}",
                got.len(),
                want.len()
            );
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tftp_hpa_client_fetches_byte_identical() {
    require("tftp", "tftp-hpa");
    let lab = Lab::new();
    let server = lab.serve("127.0.0.1:0", TftpConfig::default()).await;
    for (i, (name, len)) in sizes().into_iter().enumerate() {
        let want = lab.asset(name, pattern(len, i as u32 + 11));
        let out = lab.path("hpa.out");
        let _ = std::fs::remove_file(&out);
        let mut cmd = Command::new("tftp");
        cmd.args([
            "-m",
            "binary",
            "127.0.0.1",
            &server.port().to_string(),
            "-c",
            "get",
            name,
        ])
        .arg(&out);
        let (ok, text) = run(cmd).await;
        assert!(ok && !text.contains("Error"), "tftp-hpa {name}: {text}");
        let got = std::fs::read(&out).expect("tftp output");
        assert!(
            got == want,
            "tftp-hpa {name}: {} bytes, want {}",
            got.len(),
            want.len()
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_fetches_byte_identical() {
    require("curl", "curl");
    let lab = Lab::new();
    let server = lab.serve("127.0.0.1:0", TftpConfig::default()).await;
    let flag_sets: &[&[&str]] = &[
        &[],
        &["--tftp-no-options"],
        &["--tftp-blksize", "1468"],
        &["--tftp-blksize", "8"],
        &["--tftp-blksize", "65464"],
    ];
    for (i, (name, len)) in sizes().into_iter().enumerate() {
        let want = lab.asset(name, pattern(len, i as u32 + 21));
        for flags in flag_sets {
            if flags.contains(&"8") && len > 4096 {
                continue;
            }
            let out = lab.path("curl.out");
            let _ = std::fs::remove_file(&out);
            let mut cmd = Command::new("curl");
            cmd.args(["-sS", "--max-time", "120"])
                .args(*flags)
                .arg(format!("tftp://127.0.0.1:{}/{name}", server.port()))
                .arg("-o")
                .arg(&out);
            let (ok, text) = run(cmd).await;
            assert!(ok, "curl {name} {flags:?}: {text}");
            // curl writes nothing for an empty transfer.
            let got = std::fs::read(&out).unwrap_or_default();
            assert!(
                got == want,
                "curl {name} {flags:?}: {} bytes, want {}",
                got.len(),
                want.len()
            );
        }
    }
    server.stop().await;
}

/// 64 MiB at 512-byte blocks is 131073 blocks: the block number wraps twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollover_64_mib_at_512_byte_blocks() {
    require("atftp", "atftp");
    require("curl", "curl");
    let lab = Lab::new();
    let want = lab.asset("big.bin", pattern(64 << 20, 99));
    let server = lab.serve("127.0.0.1:0", TftpConfig::default()).await;
    let out = lab.path("big.atftp");
    let (ok, text) = run(atftp(server.port(), "big.bin", &out, &[])).await;
    assert!(ok, "atftp: {text}");
    assert!(
        std::fs::read(&out).expect("output") == want,
        "atftp: 64 MiB differs"
    );
    // And windowed across the wrap.
    let out = lab.path("big.windowed");
    let (ok, text) = run(atftp(server.port(), "big.bin", &out, &["windowsize 16"])).await;
    assert!(ok, "atftp windowed: {text}");
    assert!(
        std::fs::read(&out).expect("output") == want,
        "atftp windowed: 64 MiB differs"
    );
    server.stop().await;
    assert_eq!(
        lab.metric("bootlab_tftp_sent_bytes_total"),
        2.0 * f64::from(64u32 << 20)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_per_mac_files_and_timeline() {
    require("curl", "curl");
    let lab = Lab::new();
    let server = lab.serve("127.0.0.1:0", TftpConfig::default()).await;
    let inv = lab.shared.inventory();
    let bios = inv
        .node_by_mac("52:54:00:77:00:10".parse().unwrap())
        .unwrap()
        .clone();
    let uefi = inv
        .node_by_mac("52:54:00:77:00:11".parse().unwrap())
        .unwrap()
        .clone();
    let render = |node, kind| {
        bootlab_boot::render::render(&inv, node, kind)
            .unwrap()
            .into_bytes()
    };
    let fetch = |path: String, from: Option<&'static str>| {
        let out = lab.path("virtual.out");
        let _ = std::fs::remove_file(&out);
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "60"]);
        if let Some(ip) = from {
            cmd.args(["--interface", ip]);
        }
        cmd.arg(format!("tftp://127.0.0.1:{}/{path}", server.port()))
            .arg("-o")
            .arg(&out);
        async move {
            let (ok, text) = run(cmd).await;
            (ok, text, std::fs::read(&out).unwrap_or_default())
        }
    };
    let (ok, text, got) = fetch("pxelinux.cfg/01-52-54-00-77-00-10".into(), None).await;
    assert!(ok, "{text}");
    assert_eq!(got, render(&bios, ScriptKind::Pxelinux));
    let (ok, text, got) = fetch("grub.cfg-01-52-54-00-77-00-11".into(), None).await;
    assert!(ok, "{text}");
    assert_eq!(got, render(&uefi, ScriptKind::Grub));
    // By source address: node-bios is reserved at 127.0.0.10, node-uefi at .11.
    let (ok, text, got) = fetch("grub/grub.cfg".into(), Some("127.0.0.10")).await;
    assert!(ok, "{text}");
    assert_eq!(got, render(&bios, ScriptKind::Grub));
    let (ok, text, got) = fetch("boot.ipxe".into(), Some("127.0.0.11")).await;
    assert!(ok, "{text}");
    assert_eq!(got, render(&uefi, ScriptKind::Ipxe));
    // Unknown MAC: file not found (curl exit 68), counted.
    let (ok, text, _) = fetch("pxelinux.cfg/01-02-00-00-00-00-99".into(), None).await;
    assert!(
        !ok && text.contains("(68)"),
        "curl exit 68 is TFTP file not found: {text}"
    );
    assert_eq!(
        lab.metric("bootlab_tftp_errors_total{kind=\"unknown_machine\"}"),
        1.0
    );

    // Each served file is an event in the machine's timeline (recorded when
    // the session ends; stopping waits for every session).
    server.stop().await;
    let machine = lab
        .shared
        .machine(bios.mac)
        .expect("node-bios in the timeline");
    let paths: Vec<_> = machine
        .events
        .iter()
        .filter(|e| e.service == bootlab_state::Service::Tftp)
        .filter_map(|e| e.path.clone())
        .collect();
    assert_eq!(
        paths,
        vec!["pxelinux.cfg/01-52-54-00-77-00-10", "grub/grub.cfg"]
    );
    assert_eq!(machine.stage, Some(bootlab_state::Stage::Script));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loader_fetch_is_a_timeline_event_and_metrics_count() {
    require("curl", "curl");
    let lab = Lab::new();
    let want = lab.asset("undionly.kpxe", pattern(70_000, 5));
    let server = lab.serve("127.0.0.1:0", TftpConfig::default()).await;
    let out = lab.path("loader.out");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--interface", "127.0.0.10"])
        .arg(format!("tftp://127.0.0.1:{}/undionly.kpxe", server.port()))
        .arg("-o")
        .arg(&out);
    let (ok, text) = run(cmd).await;
    assert!(ok, "{text}");
    assert_eq!(std::fs::read(&out).unwrap(), want);
    // curl exits on the last DATA block; the session records its event
    // after the final ACK. Stopping waits for every session to finish.
    server.stop().await;
    let machine = lab
        .shared
        .machine("52:54:00:77:00:10".parse().unwrap())
        .expect("timeline");
    let ev = machine.events.back().expect("event");
    assert_eq!((ev.kind.as_str(), ev.bytes), ("loader", Some(70_000)));
    assert_eq!(machine.stage, Some(bootlab_state::Stage::Tftp));
    assert_eq!(lab.metric("bootlab_tftp_requests_total{op=\"read\"}"), 1.0);
    assert_eq!(lab.metric("bootlab_tftp_transfers_total"), 1.0);
    assert_eq!(lab.metric("bootlab_tftp_sent_bytes_total"), 70_000.0);
    assert_eq!(lab.metric("bootlab_tftp_active_sessions"), 0.0);
}
