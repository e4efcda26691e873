//! Boot scripts and per-MAC configs fetched with curl from a running service.

mod common;

use bootlab_testkit::lab::wire::VarValue;
use common::{Lab, get_text, metric};

const BIOS: &str = "52:54:00:77:00:10";
const UEFI: &str = "52:54:00:77:00:11";

#[test]
fn ipxe_script_per_mac_for_bios_and_uefi_nodes() {
    let lab = Lab::start();
    let base = format!("http://{}", lab.addr);

    let (code, bios) = get_text(&[&lab.url(&format!("/boot.ipxe?mac={BIOS}"))]);
    assert_eq!(code, 200);
    assert!(bios.starts_with("#!ipxe\n"), "{bios}");
    assert!(
        bios.contains(&format!(
            "\nkernel {base}/assets/vmlinuz initrd=initrd.img console=ttyS0 bootlab.node=node-bios bootlab.marker=worker || goto failed\n"
        )),
        "{bios}"
    );
    assert!(
        bios.contains(&format!(
            "\ninitrd {base}/assets/initrd.img || goto failed\n"
        )),
        "{bios}"
    );
    assert!(bios.contains("\nboot || goto failed\n"), "{bios}");

    // Any MAC spelling the wire contract allows.
    let (code, uefi) = get_text(&[&lab.url("/boot.ipxe?mac=52-54-00-77-00-11")]);
    assert_eq!(code, 200);
    assert!(
        uefi.contains(&format!(
            "\nkernel {base}/assets/vmlinuz initrd=initrd.img console=ttyS0 bootlab.node=node-uefi bootlab.marker=uefi-worker || goto failed\n"
        )),
        "{uefi}"
    );
    let (_, same) = get_text(&[&lab.url("/boot.ipxe?mac=525400770011")]);
    assert_eq!(same, uefi);
    let (_, upper) = get_text(&[&lab.url("/boot.ipxe?mac=52%3A54%3A00%3A77%3A00%3A11")]);
    assert_eq!(upper, uefi);
}

#[test]
fn ipxe_script_by_source_address() {
    let lab = Lab::start();
    // 127.0.0.10 is node-bios's reservation; loopback answers for all of 127/8.
    let (code, script) = get_text(&["--interface", "127.0.0.10", &lab.url("/boot.ipxe")]);
    assert_eq!(code, 200);
    assert!(script.contains("bootlab.node=node-bios"), "{script}");
    let (_, script) = get_text(&["--interface", "127.0.0.11", &lab.url("/boot.ipxe")]);
    assert!(script.contains("bootlab.node=node-uefi"), "{script}");

    // An address nobody holds: chain back with the MAC.
    let (code, chain) = get_text(&["--interface", "127.0.0.77", &lab.url("/boot.ipxe")]);
    assert_eq!(code, 200);
    assert_eq!(
        chain,
        format!(
            "#!ipxe\nchain http://{}/boot.ipxe?mac=${{net0/mac}}\n",
            lab.addr
        )
    );
}

#[test]
fn unknown_mac_gets_a_script_that_says_so_and_an_event() {
    let lab = Lab::start();
    let (code, script) = get_text(&[&lab.url("/boot.ipxe?mac=52:54:00:AA:BB:99")]);
    assert_eq!(code, 200);
    assert_eq!(
        script,
        "#!ipxe\necho bootlab: unknown machine 52:54:00:aa:bb:99\nexit\n"
    );

    let (code, json) = get_text(&[&lab.url("/api/v1/machines/52-54-00-aa-bb-99")]);
    assert_eq!(code, 200, "{json}");
    let m: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(m["mac"], "52:54:00:aa:bb:99");
    assert_eq!(m["events"][0]["service"], "http");
    assert_eq!(m["events"][0]["kind"], "unknown");

    // Garbage in `mac`: still a protocol-correct script, sanitised.
    let (code, script) = get_text(&[&lab.url("/boot.ipxe?mac=%3Cscript%3Exx")]);
    assert_eq!(code, 200);
    assert!(
        script.starts_with("#!ipxe\necho bootlab: unknown machine "),
        "{script}"
    );
    assert!(!script.contains('<'), "{script}");

    assert!(metric(&lab, r#"bootlab_http_errors_total{kind="unknown_machine"}"#) >= 2);
    assert!(metric(&lab, r#"bootlab_http_errors_total{kind="bad_mac"}"#) >= 1);
}

#[test]
fn grub_and_pxelinux_configs() {
    let lab = Lab::start();
    let hostport = format!("127.0.0.1:{}", lab.addr.port());

    let (code, grub) = get_text(&[&lab.url("/grub.cfg-01-52-54-00-77-00-11")]);
    assert_eq!(code, 200);
    assert!(
        grub.contains(&format!(
            "linux (http,{hostport})/assets/vmlinuz console=ttyS0 bootlab.node=node-uefi bootlab.marker=uefi-worker"
        )),
        "{grub}"
    );
    assert!(
        grub.contains(&format!("initrd (http,{hostport})/assets/initrd.img")),
        "{grub}"
    );

    let (code, by_source) = get_text(&["--interface", "127.0.0.11", &lab.url("/grub/grub.cfg")]);
    assert_eq!(code, 200);
    assert_eq!(by_source, grub);
    let (code, _) = get_text(&["--interface", "127.0.0.77", &lab.url("/grub/grub.cfg")]);
    assert_eq!(code, 404);

    let (code, pxe) = get_text(&[&lab.url("/pxelinux.cfg/01-52-54-00-77-00-10")]);
    assert_eq!(code, 200);
    assert!(pxe.contains("KERNEL vmlinuz"), "{pxe}");
    assert!(
        pxe.contains("APPEND initrd=initrd.img console=ttyS0 bootlab.node=node-bios"),
        "{pxe}"
    );

    let (code, _) = get_text(&[&lab.url("/pxelinux.cfg/01-52-54-00-00-00-01")]);
    assert_eq!(code, 404);
    let (code, _) = get_text(&[&lab.url("/grub.cfg-01-zz")]);
    assert_eq!(code, 404);
}

#[test]
fn machine_api_and_metrics() {
    let lab = Lab::start();
    let (code, body) = get_text(&[&lab.url(&format!("/api/v1/machines/{BIOS}"))]);
    assert_eq!(code, 404, "never seen: {body}");
    // A HEAD of a script fetches nothing: still never seen.
    let (code, _) = get_text(&["--head", &lab.url(&format!("/boot.ipxe?mac={BIOS}"))]);
    assert_eq!(code, 200);
    let (code, _) = get_text(&[&lab.url(&format!("/api/v1/machines/{BIOS}"))]);
    assert_eq!(code, 404);
    let (code, _) = get_text(&[&lab.url("/api/v1/machines/not-a-mac")]);
    assert_eq!(code, 400);
    let (code, body) = get_text(&[&lab.url("/api/v1/machines")]);
    assert_eq!(code, 200);
    assert_eq!(body, "[]");

    get_text(&[&lab.url(&format!("/boot.ipxe?mac={UEFI}"))]);
    let (_, body) = get_text(&[&lab.url("/api/v1/machines")]);
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list[0]["mac"], UEFI);
    assert_eq!(list[0]["name"], "node-uefi");
    assert_eq!(list[0]["stage"], "script");

    let (code, text) = get_text(&["-D", "-", &lab.url("/metrics")]);
    assert_eq!(code, 200);
    assert!(
        text.contains("Content-Type: text/plain; version=0.0.4"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE bootlab_http_requests_total counter"),
        "{text}"
    );
    assert!(
        text.contains(r#"bootlab_http_requests_total{kind="script"} 2"#),
        "{text}"
    );
    assert!(text.contains("bootlab_http_open_connections 1"), "{text}");
}

#[test]
fn a_reloaded_inventory_changes_scripts_at_once() {
    let lab = Lab::start();
    let (_, before) = get_text(&[&lab.url(&format!("/boot.ipxe?mac={BIOS}"))]);
    assert!(before.contains("bootlab.marker=worker "), "{before}");
    let inv = lab
        .lab
        .clone()
        .edit(|f| {
            let worker = f
                .roles
                .get_mut("worker")
                .expect("dev.toml has a worker role");
            let old = worker
                .vars
                .insert("marker".into(), VarValue::Str("reloaded".into()));
            assert!(old.is_some(), "the test's edit applies");
        })
        .build();
    lab.publisher.publish(inv).expect("boot scripts render");
    let (_, after) = get_text(&[&lab.url(&format!("/boot.ipxe?mac={BIOS}"))]);
    assert!(after.contains("bootlab.marker=reloaded"), "{after}");
}
