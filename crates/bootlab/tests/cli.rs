//! Command-line behaviour that needs no libvirtd: exit 64 on a bad
//! inventory, remote URIs refused for host-local steps before any
//! connection (run in an empty network namespace, so nothing could leave
//! even if it tried), the egress rules shown in nft syntax (nat and
//! isolated mode), `explain` by node name (text, JSON, on a terminal),
//! `doctor --connect` naming its URI. The commands that need libvirtd are
//! in `cli_libvirt.rs`.

mod common;
use common::{bootlab, repo, text};

use std::process::{Command, Output};

/// An empty network namespace (only `lo`), deleted on drop.
struct EmptyNetns(String);

impl EmptyNetns {
    fn new(tag: &str) -> Self {
        common::require_root_and_tools(&["ip", "nft"]);
        let name = format!("blhost-{tag}-{}", std::process::id());
        common::sh_ok(&format!(
            "ip netns add {name} && ip -n {name} link set lo up"
        ));
        EmptyNetns(name)
    }

    fn bootlab(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .arg(bootlab())
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for EmptyNetns {
    fn drop(&mut self) {
        let _ = common::sh(&format!("ip netns del {}", self.0));
    }
}

#[test]
fn invalid_inventory_exits_64_for_every_libvirt_command() {
    let dir = tempfile::tempdir().unwrap();
    let lab = dir.path().join("lab.toml");
    std::fs::write(&lab, "[lab]\nname = 1\n").unwrap();
    for cmd in ["doctor", "plan", "up", "status", "down"] {
        let o = Command::new(bootlab())
            .args([cmd, lab.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(64), "{cmd}: {}", text(&o));
    }
}

#[test]
fn remote_uri_without_kernel_is_refused_before_connecting() {
    let ns = EmptyNetns::new("remote");
    let lab = repo().join("config/okd-lab.toml");
    let o = ns.bootlab(&[
        "plan",
        lab.to_str().unwrap(),
        "--connect",
        "qemu+ssh://root@hypervisor.invalid/system",
    ]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("--kernel PATH --modules DIR"), "{t}");
    assert!(
        !t.contains("connecting to libvirt"),
        "refused before connecting: {t}"
    );
}

#[test]
fn egress_show_prints_the_rule_and_the_live_state() {
    let ns = EmptyNetns::new("egress");
    let lab = repo().join("config/okd-lab.toml");
    let o = ns.bootlab(&["egress", "show", lab.to_str().unwrap()]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("table inet bootlab"), "{t}");
    assert!(t.contains("virbr-okd"), "{t}");
    assert!(t.contains("# live: no table inet bootlab"), "{t}");
    let o = ns.bootlab(&["egress", "apply", lab.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&ns.bootlab(&["egress", "show", lab.to_str().unwrap()]));
    assert!(t.contains("# live: table inet bootlab matches"), "{t}");
    let o = ns.bootlab(&["egress", "remove", lab.to_str().unwrap()]);
    assert!(text(&o).contains("removed"), "{}", text(&o));
    // nat mode with services.firewall: both rulesets, each named
    assert!(t.contains("# hypervisor (this host)"), "{t}");
    assert!(
        t.contains("# services VM services (192.168.200.254)"),
        "{t}"
    );
}

/// Regression (issue 17): `egress show` failed in isolated mode; it prints
/// the services VM's ruleset (with the interface names it assumes), says
/// the hypervisor has none, and the output is valid `nft -f` input.
#[test]
fn egress_show_in_isolated_mode_prints_the_services_ruleset() {
    let ns = EmptyNetns::new("egiso");
    let iso = repo().join("config/isolated-lab.toml");
    let o = ns.bootlab(&["egress", "show", iso.to_str().unwrap()]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("# hypervisor (this host): no rule"), "{t}");
    assert!(t.contains("# services VM services (10.77.0.254)"), "{t}");
    assert!(
        t.contains("lab NIC eth0 (MAC 52:54:00:4d:00:fe), uplink eth1 (MAC 52:54:00:4d:01:fe)"),
        "{t}"
    );
    assert!(t.contains("table inet bootlab"), "{t}");
    assert!(t.contains("\"eth1\"") || t.contains("eth1"), "{t}");
    // what it prints loads into nft as it is (checked in the empty namespace)
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("services.nft");
    std::fs::write(&f, String::from_utf8_lossy(&o.stdout).as_bytes()).unwrap();
    let c = Command::new("ip")
        .args(["netns", "exec", &ns.0, "nft", "-c", "-f"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(c.status.success(), "nft -c: {}", text(&c));
    // apply/remove are the host rule's, nat mode only, and say so
    let o = ns.bootlab(&["egress", "apply", iso.to_str().unwrap()]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("nat mode only") && t.contains("bootlab egress show"),
        "{t}"
    );
}

#[test]
fn explain_takes_a_node_name_and_prints_plain_words() {
    let lab = repo().join("config/okd-lab.toml");
    let lab = lab.to_str().unwrap();
    let run = |args: &[&str]| Command::new(bootlab()).args(args).output().unwrap();
    let o = run(&["explain", lab, "master-0", "--arch", "uefi"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("UEFI firmware gets snponly.efi over TFTP from 192.168.200.254, then iPXE fetches http://192.168.200.254:8080/boot.ipxe, which boots okd/kernel/"),
        "{t}"
    );
    assert!(!t.contains("UefiPxe") && !t.contains("Tftp("), "{t}");
    // --node and --mac say the same; the node's firmware is the default arch
    let by_node = text(&run(&[
        "explain", lab, "--node", "master-0", "--arch", "uefi",
    ]));
    let by_mac = text(&run(&[
        "explain",
        lab,
        "--mac",
        "f8:75:a4:ac:03:00",
        "--arch",
        "uefi",
    ]));
    assert_eq!(by_node, t);
    assert_eq!(by_mac, t);
    let bios = text(&run(&["explain", lab, "master-0"]));
    assert!(bios.contains("BIOS firmware gets undionly.kpxe"), "{bios}");
    // JSON for scripts
    let o = run(&[
        "explain", lab, "master-0", "--arch", "uefi", "--output", "json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["decision"]["stage"], "uefi-pxe");
    assert_eq!(j["decision"]["file"], "snponly.efi");
    assert_eq!(j["client"]["mac"], "f8:75:a4:ac:03:00");
    let stages: Vec<&str> = j["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["dhcp", "loader", "script", "kernel", "initrd"]);
    assert!(
        j["options"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["code"] == 67)
    );
    // an unknown name: exit 2 with the closest names
    let o = run(&["explain", lab, "master0"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("did you mean master-0"), "{}", text(&o));
    // nothing named: which client?
    let o = run(&["explain", lab]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// On a terminal the words are the same (explain has no colour or bar).
#[test]
fn explain_on_a_terminal() {
    let lab = repo().join("config/okd-lab.toml");
    let mut cmd = Command::new(bootlab());
    cmd.args([
        "explain",
        lab.to_str().unwrap(),
        "master-0",
        "--arch",
        "uefi",
    ]);
    let (status, out) = common::pty::Pty::spawn(cmd).finish(std::time::Duration::from_secs(60));
    assert!(status.success(), "{out}");
    assert!(
        out.contains("then iPXE fetches http://192.168.200.254:8080/boot.ipxe"),
        "{out}"
    );
    assert!(!out.contains('\x1b'), "{out:?}");
}

/// Regression (issue 17): `doctor --connect URI` reported the inventory's URI.
#[test]
fn doctor_reports_the_uri_it_used() {
    let lab = repo().join("config/okd-lab.toml");
    let uri = "qemu:///system?socket=/nonexistent/bootlab-test/libvirt-sock";
    let o = Command::new(bootlab())
        .args([
            "doctor",
            lab.to_str().unwrap(),
            "--connect",
            uri,
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    let j: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    let libvirtd = j
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "libvirtd")
        .unwrap();
    assert_eq!(libvirtd["level"], "fail");
    let msg = libvirtd["message"].as_str().unwrap();
    assert!(msg.contains(uri), "{msg}");
    assert!(!msg.contains("cannot connect to qemu:///system:"), "{msg}");
}
