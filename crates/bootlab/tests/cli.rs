//! Command-line behaviour that needs no libvirtd: exit 64 on a bad
//! inventory, remote URIs refused for host-local steps before any
//! connection (run in an empty network namespace, so nothing could leave
//! even if it tried), the egress rule shown in nft syntax.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bootlab() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bootlab"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

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
    // egress is for nat mode only, and says why
    let iso = repo().join("config/isolated-lab.toml");
    let o = ns.bootlab(&["egress", "show", iso.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("nat"), "{}", text(&o));
}
