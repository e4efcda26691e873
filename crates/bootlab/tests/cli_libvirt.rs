//! The host CLI on a terminal and off it, against a real libvirtd (started
//! by the test in its own network and mount namespaces, see `common`):
//!
//! - `up` on a pseudo-terminal draws a progress bar naming each step and
//!   the appliance upload; off a terminal it prints one plain line per
//!   step (no control characters); `--quiet` prints nothing.
//! - `plan` after a changed inventory names the fields that change (memory,
//!   disk capacity, the network's domain), coloured on a terminal, plain
//!   with `NO_COLOR` or off a terminal, coloured with `--color always`;
//!   `--output json` carries the same field changes.
//! - `status --watch` clears the screen on a terminal and repeats plain
//!   blocks otherwise.
//! - `down` without a terminal and without `--yes` refuses (exit 2) and
//!   deletes nothing; on a terminal it asks, "n" keeps everything, "y"
//!   deletes.
//!
//! Needs root, libvirt-daemon-system, qemu-system-x86, busybox-static, cpio
//! and `target/debug/bootlabd` (cargo test --workspace builds it; alone:
//! `cargo build -p bootlab-bootlabd`). Never skips.

mod common;
use common::{bootlab, ok, text};

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::LibvirtNetns;
use common::pty::{Pty, has_control_chars};
use virt::connect::Connect;
use virt::domain::Domain;

/// The text without ANSI escape sequences and carriage returns (what a
/// person reads on the terminal, line by line).
fn plain(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        if c != '\r' {
            out.push(c);
        }
    }
    out
}

fn lab_toml(env: &LibvirtNetns) -> String {
    common::one_node_lab(
        env,
        "cli",
        124,
        "256MiB",
        "data_dir = \"/var/lib/bootlab\"\nassets_dir = \"/var/lib/bootlab/assets\"",
    )
}

/// `ip netns exec NS bootlab ARGS` as a command (for a pty or pipes).
fn in_netns(env: &LibvirtNetns, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &env.netns])
        .arg(bootlab())
        .args(args);
    c
}

/// Reads a child's stdout until `needle` occurs `n` times (bounded), then
/// kills it and returns what it wrote.
fn read_until_count(mut cmd: Command, needle: &str, n: usize, limit: Duration) -> String {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(k) = out.read(&mut buf) {
            if k == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..k]);
        }
    });
    let start = Instant::now();
    let done = loop {
        let s = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
        if s.matches(needle).count() >= n {
            break true;
        }
        if start.elapsed() > limit {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    let s = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(done, "gave up waiting for {n} x {needle:?}; output:\n{s}");
    s
}

#[test]
fn up_plan_status_and_down_on_a_terminal_and_off_it() {
    common::require_root_and_tools(&["cpio", "busybox", "apt-get", "dpkg-deb", "depmod"]);
    let env = LibvirtNetns::start("cli");
    let root = env.root().to_path_buf();
    let daemon = env.copy_bootlabd();
    let kdir = env.kernel_with_modules();
    let lab = root.join("lab.toml");
    let base = lab_toml(&env);
    std::fs::write(&lab, &base).unwrap();
    let lab_s = lab.to_str().unwrap().to_string();
    let kernel = format!("{}/vmlinuz", kdir.display());
    let modules = format!("{}/modules", kdir.display());
    let args = |c: &str, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [c, &lab_s, "--kernel", &kernel, "--modules", &modules]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(["--bootlabd".into(), daemon.display().to_string()]);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |c: &str, extra: &[&str]| {
        let a = args(c, extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        env.exec(&bootlab(), &a)
    };
    let on_pty = |c: &str, extra: &[&str], envs: &[(&str, &str)]| {
        let a = args(c, extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let mut cmd = in_netns(&env, &a);
        cmd.env_remove("NO_COLOR");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Pty::spawn(cmd)
    };
    let conn = Connect::open(Some(&env.uri)).unwrap();

    // --- up on a terminal: a bar with each step's name and the upload
    let (status, out) = on_pty("up", &[], &[]).finish(Duration::from_secs(600));
    println!("--- up on a pty (raw)\n{out:?}");
    assert!(status.success(), "{}", plain(&out));
    assert!(
        out.contains("\x1b["),
        "a terminal gets a drawn bar: {out:?}"
    );
    let seen = plain(&out);
    assert!(seen.contains("create pool cli"), "{seen}");
    assert!(seen.contains("upload cli-services-initrd-"), "{seen}");
    assert!(seen.contains("done:"), "{seen}");
    assert!(seen.contains("+ domain  cli-bios"), "{seen}");
    assert_eq!(conn.list_all_domains(0).unwrap().len(), 2);

    // --- a changed inventory: more memory, a bigger disk, another zone
    let changed = base
        .replace(
            "memory = \"256MiB\"\ndisks = [\"1GiB\"]",
            "memory = \"384MiB\"\ndisks = [\"2GiB\"]",
        )
        .replace("domain = \"lab.test\"", "domain = \"lab2.test\"");
    assert_ne!(changed, base);
    std::fs::write(&lab, &changed).unwrap();

    // plan off a terminal: plain words, no escapes
    let p = ok(run("plan", &[]), "plan");
    println!("--- plan\n{p}");
    assert!(!has_control_chars(&p), "{p:?}");
    for want in [
        "~ domain  cli-bios",
        "memory: 256 MiB -> 384 MiB",
        "~ volume  cli-bios-disk0.qcow2",
        "capacity: 1 GiB -> 2 GiB",
        "~ network cli",
        "domain: cli.lab.test -> cli.lab2.test",
    ] {
        assert!(p.contains(want), "{want:?} in\n{p}");
    }
    // on a terminal: coloured, the same words
    let (status, out) = on_pty("plan", &[], &[]).finish(Duration::from_secs(300));
    assert!(status.success(), "{out}");
    assert!(
        out.contains("\x1b[31m256 MiB\x1b[0m -> \x1b[32m384 MiB\x1b[0m"),
        "{out:?}"
    );
    assert!(
        plain(&out).contains("memory: 256 MiB -> 384 MiB"),
        "{out:?}"
    );
    // NO_COLOR on a terminal: no colour
    let (_, out) = on_pty("plan", &[], &[("NO_COLOR", "1")]).finish(Duration::from_secs(300));
    assert!(!out.contains("\x1b["), "{out:?}");
    assert!(out.contains("memory: 256 MiB -> 384 MiB"), "{out:?}");
    // --color always into a pipe
    let p = ok(run("plan", &["--color", "always"]), "plan --color always");
    assert!(p.contains("\x1b[32m384 MiB"), "{p:?}");
    // JSON carries the same field changes
    let j: serde_json::Value =
        serde_json::from_str(&ok(run("plan", &["--output", "json"]), "plan json")).unwrap();
    let changes = j["changes"].as_array().unwrap();
    let bios = changes
        .iter()
        .find(|c| c["object"] == "domain" && c["name"] == "cli-bios" && c["action"] == "update")
        .unwrap_or_else(|| panic!("{j:#}"));
    assert!(
        bios["fields"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!({"field": "memory", "from": "256 MiB", "to": "384 MiB"})),
        "{bios:#}"
    );
    let grow = changes
        .iter()
        .find(|c| c["action"] == "grow")
        .unwrap_or_else(|| panic!("{j:#}"));
    assert_eq!(grow["from"], 1u64 << 30);
    assert_eq!(grow["fields"][0]["to"], "2 GiB");

    // --- up off a terminal: one plain line per step
    let out = ok(run("up", &[]), "up (pipe)");
    println!("--- up (pipe)\n{out}");
    assert!(!has_control_chars(&out), "{out:?}");
    let steps: Vec<&str> = out.lines().filter(|l| l.starts_with('[')).collect();
    assert!(steps.len() >= 3, "{out}");
    assert!(steps[0].starts_with("[1/"), "{out}");
    assert!(
        steps.iter().any(|l| l.contains("update domain cli-bios")),
        "{out}"
    );
    assert!(
        out.contains(&format!("done: {} steps", steps.len())),
        "{out}"
    );
    let mem = |d: &str| {
        Domain::lookup_by_name(&conn, d)
            .unwrap()
            .get_xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE)
            .unwrap()
    };
    assert!(mem("cli-bios").contains("<memory unit='KiB'>393216</memory>"));

    // --- up --quiet: nothing on stdout, the change is made
    std::fs::write(
        &lab,
        changed.replace("memory = \"384MiB\"", "memory = \"512MiB\""),
    )
    .unwrap();
    let o = run("up", &["--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        o.stdout.is_empty(),
        "--quiet: {:?}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(mem("cli-bios").contains("<memory unit='KiB'>524288</memory>"));

    // --- status --watch: plain repeated blocks off a terminal ...
    let out = read_until_count(
        in_netns(&env, &["status", &lab_s, "--watch", "--interval", "0.2"]),
        "lab cli at ",
        2,
        Duration::from_secs(120),
    );
    println!("--- status --watch (pipe)\n{out}");
    assert!(!has_control_chars(&out), "{out:?}");
    assert!(out.matches("cli-bios").count() >= 2, "{out}");
    assert!(out.contains("\n\nlab cli at "), "blocks separated: {out}");
    // ... and a redrawn screen on a terminal
    let pty = Pty::spawn(in_netns(
        &env,
        &["status", &lab_s, "--watch", "--interval", "0.2"],
    ));
    let start = Instant::now();
    while pty.output().matches("\x1b[H\x1b[2J").count() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no second screen: {:?}",
            pty.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = pty.stop();
    assert!(plain(&out).contains("Ctrl-C stops"), "{out:?}");

    // --- down: refused without a terminal and without --yes
    let vols = || {
        virt::storage_pool::StoragePool::lookup_by_name(&conn, "cli")
            .map(|p| {
                let _ = p.refresh(0);
                p.list_volumes().unwrap().len()
            })
            .unwrap_or(0)
    };
    let before = vols();
    assert!(before >= 2, "disks exist");
    let o = env.exec(&bootlab(), &["down", &lab_s]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("stdin is not a terminal") && t.contains("--yes") && t.contains("--keep-disks"),
        "{t}"
    );
    assert_eq!(
        conn.list_all_domains(0).unwrap().len(),
        2,
        "nothing removed"
    );
    assert_eq!(vols(), before, "nothing removed");

    // on a terminal it asks; "n" keeps everything
    let mut pty = Pty::spawn(in_netns(&env, &["down", &lab_s]));
    pty.wait_for("[y/N]", Duration::from_secs(60));
    let q = plain(&pty.output());
    // the node's 2 GiB disk and the services VM's 64 MiB one
    assert!(
        q.contains("delete 2 volumes (2.1 GiB) of lab cli? [y/N]"),
        "{q}"
    );
    assert!(q.contains("cli-bios-disk0.qcow2"), "{q}");
    pty.type_text("n\n");
    let (status, out) = pty.finish(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("nothing was deleted"), "{out}");
    assert_eq!(conn.list_all_domains(0).unwrap().len(), 2);
    assert_eq!(vols(), before);

    // "y" deletes
    let mut pty = Pty::spawn(in_netns(&env, &["down", &lab_s]));
    pty.wait_for("[y/N]", Duration::from_secs(60));
    pty.type_text("y\n");
    let (status, out) = pty.finish(Duration::from_secs(120));
    println!("--- down on a pty, answered y\n{}", plain(&out));
    assert!(status.success(), "{out}");
    assert!(conn.list_all_domains(0).unwrap().is_empty());
    assert!(conn.list_all_storage_pools(0).unwrap().is_empty());
}
