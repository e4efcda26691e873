//! The machine timeline over HTTP: a DHCP exchange (recorded as the DHCP
//! service records it), then the node's script and kernel fetched from its
//! leased address, show up in order in `/api/v1/machines/<mac>`.

mod common;

use common::{Lab, get, get_text};

#[test]
fn dhcp_then_script_then_kernel_in_order() {
    let lab = Lab::start();
    let mac: bootlab_inventory::MacAddr = "52:54:00:77:00:10".parse().unwrap();
    // What the DHCP service records for an exchange; the lease is an address
    // other than the reservation so only the binding can attribute fetches.
    let leased = std::net::Ipv4Addr::new(127, 0, 0, 120);
    lab.shared
        .timeline
        .dhcp(mac, "discover", "arch=0 ipxe=true");
    lab.shared.timeline.dhcp(
        mac,
        "ack",
        format!("ip={leased} file=http://{}/boot.ipxe", lab.addr),
    );
    lab.shared.leases.bind(mac, leased);

    let (code, script) = get_text(&["--interface", "127.0.0.120", &lab.url("/boot.ipxe")]);
    assert_eq!(code, 200);
    assert!(script.contains("bootlab.node=node-bios"), "{script}");
    let (code, kernel) = get(&["--interface", "127.0.0.120", &lab.url("/assets/vmlinuz")]);
    assert_eq!((code, kernel.len()), (200, 300_000));
    // A partial initrd fetch records the bytes actually sent.
    let (code, part) = get(&[
        "--interface",
        "127.0.0.120",
        "-r",
        "0-999",
        &lab.url("/assets/initrd.img"),
    ]);
    assert_eq!((code, part.len()), (206, 1000));

    let (code, json) = get_text(&[&lab.url("/api/v1/machines/52-54-00-77-00-10")]);
    assert_eq!(code, 200, "{json}");
    let m: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(m["mac"], "52:54:00:77:00:10");
    assert_eq!(m["name"], "node-bios");
    assert_eq!(m["ip"], "127.0.0.120");
    assert_eq!(m["stage"], "initrd");
    let events = m["events"].as_array().unwrap();
    let summary: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["service"].as_str().unwrap().to_owned(),
                e["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("dhcp", "discover"),
        ("dhcp", "ack"),
        ("http", "script"),
        ("http", "kernel"),
        ("http", "initrd"),
    ];
    assert_eq!(
        summary,
        expected.map(|(s, k)| (s.to_owned(), k.to_owned())).to_vec(),
        "{json}"
    );
    assert_eq!(events[2]["path"], "/boot.ipxe");
    assert_eq!(events[2]["bytes"], script.len());
    assert_eq!(events[3]["path"], "/assets/vmlinuz");
    assert_eq!(events[3]["bytes"], 300_000);
    assert_eq!(events[4]["bytes"], 1000);
    for e in events {
        let at = e["at"].as_str().unwrap();
        assert!(
            at.ends_with('Z') && at.contains('T') && at.contains('.'),
            "RFC 3339 millis: {at}"
        );
    }
    let stamps: Vec<&str> = events.iter().map(|e| e["at"].as_str().unwrap()).collect();
    let mut sorted = stamps.clone();
    sorted.sort();
    assert_eq!(stamps, sorted, "events in time order");
}

#[test]
fn an_aborted_download_records_the_bytes_that_left() {
    let lab = Lab::start();
    let len = 64 * 1024 * 1024u64;
    std::fs::File::create(lab.assets.join("vmlinuz"))
        .unwrap()
        .set_len(len)
        .unwrap();
    // node-uefi's reservation is 127.0.0.11: curl from there, and stop
    // reading after 1 MiB (head exits, curl dies on the broken pipe).
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "curl -s --interface 127.0.0.11 {} | head -c 1048576 | wc -c",
            lab.url("/assets/vmlinuz")
        ))
        .output()
        .expect("sh runs");
    assert_eq!(String::from_utf8_lossy(&status.stdout).trim(), "1048576");
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let bytes = loop {
        let (code, json) = get_text(&[&lab.url("/api/v1/machines/52:54:00:77:00:11")]);
        if code == 200 {
            let m: serde_json::Value = serde_json::from_str(&json).unwrap();
            let e = &m["events"][0];
            assert_eq!(e["kind"], "kernel", "{json}");
            break e["bytes"].as_u64().unwrap();
        }
        assert!(std::time::Instant::now() < give_up, "no event: {json}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        bytes < len,
        "an aborted transfer is not recorded as complete ({bytes})"
    );
    assert!(
        bytes + 1024 >= 1024 * 1024,
        "at least what the client read was sent ({bytes})"
    );
    assert!(
        common::metric(
            &lab,
            r#"bootlab_http_errors_total{kind="aborted_transfer"}"#
        ) >= 1
    );
}
