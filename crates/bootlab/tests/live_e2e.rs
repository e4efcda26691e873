//! Live changes on the appliance, against a real libvirtd in its own
//! namespaces (`common`), TCG:
//!
//! - `up` builds the lab and pushes the assets from `libvirt.assets_source`
//!   through bootlabd's admin API; a BIOS node PXE-boots to the marker
//!   with the profile's argument and the content of a second initrd;
//! - a changed profile argument and a changed initrd: `plan` lists exactly
//!   that asset and the inventory, the second `up` pushes only them, the
//!   node's next boot gets the new argument and file, the services VM
//!   never rebooted (same boot id, uptime grown) and kept its leases;
//! - the services VM refuses a broken inventory with its diagnostics, a
//!   request without the client certificate, one with another lab's, and
//!   a path-escaping upload (curl, inside the namespace);
//! - `bootlab console` shows the services VM's console;
//! - after a reboot of the services VM, the leases and the pushed
//!   inventory are still there (the ext4 data disk).
//!
//! And a 1 GiB asset: `plan` and `up` stay under 100 MiB RSS (GNU time),
//! the 512 MiB services VM stores it on its data disk and serves it.
//!
//! And the cloud-image method: a small Debian image built from Debian
//! packages (tests/e2e/build-cloud-image.sh: mmdebstrap, syslinux, mke2fs
//! -d; cached under target/e2e-cache), `up --start` with `method =
//! "cloud-image"`: cloud-init installs bootlabd from the payload, systemd
//! runs it under the packaged unit, `up` pushes the assets and a PXE node
//! boots from it to the marker; its lease, the ext4 data disk.
//!
//! Needs root and what tests/apt-packages.txt lists (libvirt, QEMU, curl,
//! busybox-static, cpio, e2fsprogs, time, script from bsdutils; mmdebstrap,
//! syslinux, syslinux-common, mtools, fdisk for the cloud image) and
//! `target/debug/bootlabd`. Never skips.

mod common;
use common::{bootlab, repo, text};

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{LibvirtNetns, sh_ok};
use virt::connect::Connect;
use virt::domain::Domain;

fn ok(o: Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({}):\n{}",
        o.status,
        text(&o)
    );
    text(&o)
}

/// One lab under test: its libvirtd, files and state directory.
struct Live {
    env: LibvirtNetns,
    lab: PathBuf,
    assets: PathBuf,
    state: PathBuf,
    appliance: Vec<String>,
    prefix: &'static str,
    services_ip: String,
}

impl Live {
    fn new(tag: &'static str, net: u8) -> Self {
        common::require_root_and_tools(&[
            "cpio", "busybox", "apt-get", "dpkg-deb", "depmod", "nft", "curl", "mke2fs", "script",
        ]);
        let env = LibvirtNetns::start(tag);
        let root = env.root().to_path_buf();
        let daemon = env.copy_bootlabd();
        let kdir = env.kernel_with_modules();
        let assets = root.join("assets");
        std::fs::create_dir_all(&assets).unwrap();
        Live {
            lab: root.join("lab.toml"),
            state: root.join("state"),
            assets,
            appliance: vec![
                "--kernel".into(),
                format!("{}/vmlinuz", kdir.display()),
                "--modules".into(),
                format!("{}/modules", kdir.display()),
                "--bootlabd".into(),
                daemon.display().to_string(),
            ],
            prefix: tag,
            services_ip: format!("10.{net}.0.254"),
            env,
        }
    }

    fn root(&self) -> &Path {
        self.env.root()
    }

    /// Runs a command in the lab's network namespace with the test's state
    /// directory.
    fn ns(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.env.netns, "env"])
            .arg(format!("BOOTLAB_STATE_DIR={}", self.state.display()))
            .arg(program)
            .args(args);
        c
    }

    fn bootlab(&self, cmd: &str, extra: &[&str]) -> Output {
        let mut a: Vec<&str> = vec![cmd, self.lab.to_str().unwrap()];
        if matches!(cmd, "up" | "plan") {
            a.extend(self.appliance.iter().map(String::as_str));
        }
        a.extend(extra);
        self.ns(&bootlab(), &a).output().unwrap()
    }

    /// `bootlab <cmd>` under GNU time: (output, max RSS in KiB).
    fn bootlab_timed(&self, cmd: &str) -> (Output, u64) {
        let mut a: Vec<String> = vec![
            "-f".into(),
            "maxrss_kib=%M".into(),
            bootlab().display().to_string(),
            cmd.into(),
            self.lab.display().to_string(),
        ];
        a.extend(self.appliance.iter().cloned());
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = self.ns(Path::new("/usr/bin/time"), &refs).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        let kib = err
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("maxrss_kib="))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no max RSS from GNU time:\n{}", text(&o)));
        (o, kib)
    }

    fn pki_dir(&self) -> PathBuf {
        self.state.join(self.prefix)
    }

    /// curl against the admin API from the hypervisor's side; `cert`: a
    /// directory holding client.crt/client.key, or none.
    fn curl(&self, cert: Option<&Path>, args: &[&str], path: &str) -> (i32, String) {
        let ca = self.pki_dir().join("ca.crt");
        let mut a: Vec<String> = vec![
            "-sS".into(),
            "--max-time".into(),
            "60".into(),
            "--cacert".into(),
            ca.display().to_string(),
        ];
        if let Some(d) = cert {
            a.extend([
                "--cert".into(),
                d.join("client.crt").display().to_string(),
                "--key".into(),
                d.join("client.key").display().to_string(),
            ]);
        }
        a.extend(args.iter().map(|s| s.to_string()));
        a.push(format!("https://{}:8443{path}", self.services_ip));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = self.ns(Path::new("/usr/bin/curl"), &refs).output().unwrap();
        (o.status.code().unwrap_or(-1), text(&o))
    }

    fn state_json(&self) -> serde_json::Value {
        let (code, out) = self.curl(Some(&self.pki_dir()), &[], "/v1/state");
        assert_eq!(code, 0, "{out}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// Plain HTTP from the lab network (bootlabd's port 8080).
    fn http(&self, path: &str, extra: &[&str]) -> Vec<u8> {
        let mut a = vec!["-sS", "-f", "--max-time", "120"];
        a.extend(extra);
        let url = format!("http://{}:8080{path}", self.services_ip);
        a.push(&url);
        let o = self.ns(Path::new("/usr/bin/curl"), &a).output().unwrap();
        assert!(o.status.success(), "GET {path}: {}", text(&o));
        o.stdout
    }

    fn metric(&self, name: &str) -> u64 {
        let t = String::from_utf8(self.http("/metrics", &[])).unwrap();
        t.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .map(|v| v as u64)
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{t}"))
    }

    fn dump(&self, doms: &[&str]) {
        for d in doms {
            let t = std::fs::read(self.env.serial_log(d)).unwrap_or_default();
            let t = String::from_utf8_lossy(&t);
            let start = t.len().saturating_sub(5000);
            let start = (start..t.len())
                .find(|&i| t.is_char_boundary(i))
                .unwrap_or(0);
            eprintln!("--- serial log of {d} (tail)\n{}", &t[start..]);
        }
    }
}

fn lab_toml(l: &Live, net: u8, services: (&str, &str), args: &str) -> String {
    format!(
        r#"
[lab]
name = "{p}"
domain = "lab.test"

[network]
cidr = "10.{net}.0.0/24"
mode = "nat"
gateway = "10.{net}.0.1"
host_ip = "10.{net}.0.1"
bridge = "virbr-{p}"
libvirt_name = "{p}"
lease = "1h"

[libvirt]
uri = "{uri}"
pool = "{p}"
pool_path = "{root}/pool/{p}"
vm_prefix = "{p}-"
virt_type = "auto"
assets_source = "{assets}"

[services]
name = "services"
ip = "10.{net}.0.254"
mac = "52:54:00:{net:02x}:00:fe"
vcpus = 1
memory = "{mem}"
disks = ["{disk}"]
data_dir = "/var/lib/bootlab"
assets_dir = "/var/lib/bootlab/assets"
firewall = true

[profiles.marker]
loader = "ipxe"
kernel = "vmlinuz"
initrd = ["initrd.img", "marker.cpio"]
args = "console=ttyS0 bootlab.node={{{{ node.name }}}} {args}"

[[nodes]]
name = "bios"
profile = "marker"
firmware = "bios"
vcpus = 1
memory = "256MiB"
disks = ["1GiB"]
mac = "52:54:00:{net:02x}:00:10"
ip = "10.{net}.0.10"
"#,
        p = l.prefix,
        uri = l.env.uri,
        root = l.env.root().display(),
        assets = l.assets.display(),
        mem = services.0,
        disk = services.1,
    )
}

/// An initrd holding /etc/bootlab-marker (the test OS prints it).
fn marker_cpio(content: &str) -> Vec<u8> {
    let mut c = bootlab_bootlab::appliance::Cpio::new(Vec::new());
    c.file("etc/bootlab-marker", 0o644, content.as_bytes())
        .unwrap();
    c.finish().unwrap()
}

fn wait_marker(l: &Live, dom: &str, needles: &[&str]) {
    let log = l.env.serial_log(dom);
    l.env.wait_for_or(
        &format!("{dom} to print {needles:?}"),
        Duration::from_secs(600),
        || l.dump(&[&format!("{}-services", l.prefix), dom]),
        || {
            std::fs::read(&log).is_ok_and(|b| {
                let t = String::from_utf8_lossy(&b);
                needles
                    .iter()
                    .all(|n| t.lines().any(|line| line.contains(n)))
            })
        },
    );
}

fn has_lease(state: &serde_json::Value, mac: &str) -> bool {
    state["leases"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["mac"] == mac)
}

#[test]
fn live_changes_reach_the_next_boot_without_restarting_the_services_vm() {
    let l = Live::new("live", 126);
    let net = 126u8;
    // What the node boots: the test OS, the loaders, the marker initrd.
    sh_ok(&format!(
        "{}/build-test-os.sh {}",
        repo().join("tests/e2e").display(),
        l.assets.display()
    ));
    sh_ok(&format!(
        "{}/boot-assets/gather.sh {}",
        repo().display(),
        l.assets.display()
    ));
    std::fs::write(l.assets.join("marker.cpio"), marker_cpio("file-v1\n")).unwrap();
    let v1 = lab_toml(&l, net, ("512MiB", "256MiB"), "bootlab.args=args-v1");
    std::fs::write(&l.lab, &v1).unwrap();
    let n_assets = bootlab_admin::manifest::walk(&l.assets, true)
        .unwrap()
        .0
        .len();

    // up #1: the lab, then every asset pushed once the admin API answers
    let out = ok(l.bootlab("up", &["--start"]), "bootlab up");
    println!("--- bootlab up\n{out}");
    assert!(out.contains(&format!("pushed {n_assets} assets")), "{out}");
    let dom = "live-bios";
    wait_marker(&l, dom, &["bootlab.args=args-v1", "BOOTLAB-FILE file-v1"]);
    let s1 = l.state_json();
    assert_eq!(s1["source"], "installed");
    assert_eq!(
        s1["generation"],
        bootlab_admin::wire::generation(v1.as_bytes())
    );
    assert_eq!(s1["data_fs"]["fs_type"], "ext4", "{s1:#}");
    assert_eq!(s1["data_fs"]["device"], "/dev/vda", "{s1:#}");
    let mac = format!("52:54:00:{net:02x}:00:10");
    assert!(has_lease(&s1, &mac), "the node's lease: {s1:#}");
    let uploads_before = l.metric("bootlab_admin_uploads_total");
    assert_eq!(uploads_before, n_assets as u64);

    // Nothing changed: nothing to push, nothing to do.
    let out = ok(l.bootlab("plan", &[]), "plan (unchanged)");
    assert!(out.contains("nothing to do"), "{out}");

    // The change: a profile argument and one asset.
    let v2 = v1.replace("bootlab.args=args-v1", "bootlab.args=args-v2");
    std::fs::write(&l.lab, &v2).unwrap();
    std::fs::write(l.assets.join("marker.cpio"), marker_cpio("file-v2\n")).unwrap();
    let plan = ok(l.bootlab("plan", &[]), "plan after the change");
    println!("--- plan after the change\n{plan}");
    let pushes: Vec<&str> = plan.lines().filter(|x| x.starts_with("^ ")).collect();
    assert_eq!(pushes.len(), 2, "{plan}");
    assert!(pushes[0].contains("asset   marker.cpio"), "{plan}");
    assert!(pushes[1].contains("inventory"), "{plan}");
    assert!(!plan.contains("domain"), "no domain change: {plan}");
    let json: serde_json::Value = serde_json::from_str(
        &String::from_utf8(l.bootlab("plan", &["--output", "json"]).stdout).unwrap(),
    )
    .unwrap();
    let actions: Vec<String> = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {} {}", c["action"], c["object"], c["name"]))
        .collect();
    assert_eq!(actions.len(), 2, "{json:#}");
    assert!(
        actions[0].starts_with("\"push\" \"asset\" \"marker.cpio\""),
        "{actions:?}"
    );

    // up #2: only that asset and the inventory, live
    let out = ok(l.bootlab("up", &[]), "second up");
    println!("--- second up\n{out}");
    assert!(out.contains("pushed 1 asset"), "{out}");
    assert!(out.contains("and the inventory"), "{out}");
    assert_eq!(l.metric("bootlab_admin_uploads_total"), uploads_before + 1);
    let s2 = l.state_json();
    assert_eq!(
        s2["generation"],
        bootlab_admin::wire::generation(v2.as_bytes())
    );
    assert_eq!(s2["source"], "pushed");
    assert_eq!(
        s2["machine"]["boot_id"], s1["machine"]["boot_id"],
        "never rebooted"
    );
    assert!(
        s2["machine"]["uptime_s"].as_f64() > s1["machine"]["uptime_s"].as_f64(),
        "uptime grew"
    );
    assert!(has_lease(&s2, &mac), "the lease is kept: {s2:#}");
    let st = ok(l.bootlab("status", &[]), "status");
    println!("--- status\n{st}");
    assert!(st.contains("inventory: in sync"), "{st}");

    // The node's next boot: the new argument and the new file.
    Domain::lookup_by_name(&Connect::open(Some(&l.env.uri)).unwrap(), dom)
        .unwrap()
        .create()
        .unwrap();
    wait_marker(&l, dom, &["bootlab.args=args-v2", "BOOTLAB-FILE file-v2"]);

    // Refusals by the services VM itself.
    let broken = l.root().join("broken.toml");
    std::fs::write(
        &broken,
        v2.replace("ip = \"10.126.0.10\"", "ip = \"10.126.0.300\""),
    )
    .unwrap();
    let (code, out) = l.curl(
        Some(&l.pki_dir()),
        &[
            "-X",
            "PUT",
            "--data-binary",
            &format!("@{}", broken.display()),
        ],
        "/v1/inventory",
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("the inventory is invalid") && out.contains("10.126.0.300"),
        "the diagnostics: {out}"
    );
    assert_eq!(
        l.state_json()["generation"],
        bootlab_admin::wire::generation(v2.as_bytes()),
        "the old inventory keeps serving"
    );
    let (code, out) = l.curl(None, &[], "/v1/state");
    assert_ne!(code, 0, "served without a client certificate: {out}");
    let other = bootlab_admin::pki::LabPki::generate("other", "10.126.0.254".parse().unwrap(), &[])
        .unwrap();
    let other_dir = l.root().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    std::fs::write(other_dir.join("client.crt"), &other.client.cert).unwrap();
    std::fs::write(other_dir.join("client.key"), &other.client.key).unwrap();
    let (code, out) = l.curl(Some(&other_dir), &[], "/v1/state");
    assert_ne!(code, 0, "served another lab's certificate: {out}");
    let evil = l.root().join("evil");
    std::fs::write(&evil, b"evil").unwrap();
    let (code, out) = l.curl(
        Some(&l.pki_dir()),
        &[
            "--path-as-is",
            "-X",
            "PUT",
            "-w",
            "%{http_code}",
            "-H",
            &format!(
                "x-bootlab-sha256: {}",
                bootlab_admin::wire::sha256_hex(b"evil")
            ),
            "--data-binary",
            &format!("@{}", evil.display()),
        ],
        "/v1/assets/%2e%2e/%2e%2e/etc/evil",
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.trim_end().ends_with("400"), "{out}");

    // `bootlab console`: the services VM's console, where bootlabd logs
    // (a refused push shows up there).
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut console = l
        .ns(
            Path::new("/usr/bin/script"),
            &[
                "-qfc",
                &format!(
                    "{} console {} --force",
                    bootlab().display(),
                    l.lab.display()
                ),
                "/dev/null",
            ],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = console.stdout.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    let _ = l.curl(
        Some(&l.pki_dir()),
        &["-X", "PUT", "--data-binary", "[lab\nname = 1"],
        "/v1/inventory",
    );
    let start = Instant::now();
    while !String::from_utf8_lossy(&log.lock().unwrap()).contains("pushed inventory refused") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "bootlab console showed:\n{}",
            String::from_utf8_lossy(&log.lock().unwrap())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = console.stdin.as_mut().unwrap().write_all(&[0x1d]);
    let start = Instant::now();
    while console.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = console.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = console.wait();

    // A reboot of the services VM: leases and the pushed inventory are on
    // the data disk.
    let conn = Connect::open(Some(&l.env.uri)).unwrap();
    let svc = Domain::lookup_by_name(&conn, "live-services").unwrap();
    svc.destroy().unwrap();
    svc.create().unwrap();
    let start = Instant::now();
    let s3 = loop {
        let (code, out) = l.curl(Some(&l.pki_dir()), &["--connect-timeout", "2"], "/v1/state");
        if code == 0 {
            break serde_json::from_str::<serde_json::Value>(&out).unwrap();
        }
        if start.elapsed() > Duration::from_secs(400) {
            l.dump(&["live-services"]);
            panic!("the services VM's admin API did not come back: {out}");
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    assert_ne!(
        s3["machine"]["boot_id"], s1["machine"]["boot_id"],
        "rebooted"
    );
    assert_eq!(
        s3["generation"], s2["generation"],
        "the pushed inventory survived"
    );
    assert_eq!(s3["source"], "pushed");
    assert!(
        has_lease(&s3, &mac),
        "the lease survived the reboot: {s3:#}"
    );
    assert_eq!(
        s3["assets"].as_array().unwrap().len(),
        n_assets,
        "the assets survived"
    );
    let out = ok(l.bootlab("up", &[]), "up after the reboot");
    assert!(out.contains("nothing to push"), "{out}");
}

#[test]
fn a_1_gib_asset_is_pushed_in_bounded_memory_and_served_from_the_data_disk() {
    let l = Live::new("big", 127);
    let net = 127u8;
    common::require_root_and_tools(&["/usr/bin/time"]);
    // 1 GiB: sparse zeros on the host, a marker in its last 4 KiB.
    let big = l.assets.join("fcos/rootfs.img");
    std::fs::create_dir_all(big.parent().unwrap()).unwrap();
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(1 << 30).unwrap();
    drop(f);
    let tail = b"BOOTLAB-1GIB-TAIL".repeat(240);
    {
        use std::io::{Seek as _, SeekFrom};
        let mut f = std::fs::OpenOptions::new().write(true).open(&big).unwrap();
        f.seek(SeekFrom::Start((1 << 30) - tail.len() as u64))
            .unwrap();
        f.write_all(&tail).unwrap();
    }
    std::fs::write(l.assets.join("marker.cpio"), marker_cpio("x\n")).unwrap();
    std::fs::write(l.assets.join("vmlinuz"), b"stand-in").unwrap();
    std::fs::write(l.assets.join("initrd.img"), b"stand-in").unwrap();
    let lab = lab_toml(&l, net, ("512MiB", "2GiB"), "");
    std::fs::write(&l.lab, &lab).unwrap();

    let (o, plan_kib) = l.bootlab_timed("plan");
    let out = ok(o, "plan");
    println!("--- plan ({plan_kib} KiB max RSS)\n{out}");
    assert!(
        out.contains("fcos/rootfs.img") && out.contains("1.0 GiB"),
        "{out}"
    );
    let t = Instant::now();
    let (o, up_kib) = l.bootlab_timed("up");
    let out = ok(o, "up");
    println!("--- up ({up_kib} KiB max RSS, {:?})\n{out}", t.elapsed());
    assert!(out.contains("pushed 4 assets"), "{out}");
    println!(
        "bootlab max RSS with a 1 GiB asset: plan {:.1} MiB, up {:.1} MiB (limit 100 MiB)",
        plan_kib as f64 / 1024.0,
        up_kib as f64 / 1024.0
    );
    assert!(plan_kib < 100 * 1024, "plan used {plan_kib} KiB");
    assert!(up_kib < 100 * 1024, "up used {up_kib} KiB");

    let s = l.state_json();
    let entry = s["assets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"] == "fcos/rootfs.img")
        .cloned()
        .expect("the asset is listed");
    let want = bootlab_admin::manifest::hash_file(&big, &mut |_| {}).unwrap();
    assert_eq!(entry["sha256"], want.as_str());
    assert_eq!(entry["size"], 1u64 << 30);
    let mem_total = s["machine"]["mem_total"].as_u64().unwrap();
    assert!(
        mem_total < 1 << 30,
        "the services VM has less memory than the asset"
    );
    assert_eq!(s["data_fs"]["fs_type"], "ext4");
    assert_eq!(s["assets_fs"]["device"], s["data_fs"]["device"], "{s:#}");
    let used =
        s["data_fs"]["total"].as_u64().unwrap() - s["data_fs"]["available"].as_u64().unwrap();
    assert!(used > 1 << 30, "the data disk holds it: {used} bytes used");
    let rss = s["machine"]["daemon_rss"].as_u64().unwrap();
    println!(
        "services VM: MemTotal {:.0} MiB, bootlabd RSS {:.1} MiB, data disk {:.2} GiB used",
        mem_total as f64 / 1048576.0,
        rss as f64 / 1048576.0,
        used as f64 / 1073741824.0
    );
    assert!(rss < 128 << 20, "bootlabd holds no asset in memory: {rss}");
    // Served from the disk: the last bytes over HTTP.
    let got = l.http(
        "/assets/fcos/rootfs.img",
        &["-r", &format!("{}-", (1u64 << 30) - tail.len() as u64)],
    );
    assert_eq!(got, tail);
    // QEMU's own footprint on the host, for the record.
    let pid = std::fs::read_to_string(l.root().join("run/libvirt/qemu/big-services.pid"))
        .unwrap_or_default();
    if let Ok(st) = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())) {
        if let Some(hwm) = st.lines().find(|x| x.starts_with("VmHWM")) {
            println!("services VM (512 MiB) QEMU process: {hwm}");
        }
    }
    // A second up: nothing to send, nothing hashed again on either side.
    let (o, kib) = l.bootlab_timed("up");
    let out = ok(o, "second up");
    assert!(out.contains("nothing to push"), "{out}");
    println!("second up: {:.1} MiB max RSS", kib as f64 / 1024.0);
}

/// The cloud-image method end to end: a Debian image built from Debian
/// packages (tests/e2e/build-cloud-image.sh, cached), `up` with
/// `method = "cloud-image"`: cloud-init installs bootlabd from the payload,
/// systemd runs it, `up` pushes the assets through its admin API and a
/// PXE node boots from it.
#[test]
fn a_cloud_image_services_vm_installs_bootlabd_and_serves_a_pxe_node() {
    let l = Live::new("cimg", 127);
    let net = 127u8;
    let image = l.root().join("debian-cloud.qcow2");
    sh_ok(&format!(
        "{}/build-cloud-image.sh {}",
        repo().join("tests/e2e").display(),
        image.display()
    ));
    sh_ok(&format!(
        "{}/build-test-os.sh {}",
        repo().join("tests/e2e").display(),
        l.assets.display()
    ));
    sh_ok(&format!(
        "{}/boot-assets/gather.sh {}",
        repo().display(),
        l.assets.display()
    ));
    std::fs::write(l.assets.join("marker.cpio"), marker_cpio("cloud-file\n")).unwrap();
    let lab = lab_toml(&l, net, ("768MiB", "256MiB"), "bootlab.args=cloud").replace(
        "firewall = true\n",
        &format!(
            "firewall = true\ninstall = {{ method = \"cloud-image\", image = \"{}\" }}\n",
            image.display()
        ),
    );
    assert!(lab.contains("cloud-image"));
    std::fs::write(&l.lab, &lab).unwrap();
    let out = l.bootlab("up", &["--start", "--wait", "1500"]);
    if !out.status.success() {
        l.dump(&["cimg-services", "cimg-bios"]);
    }
    let out = ok(out, "bootlab up (cloud-image)");
    println!("--- bootlab up\n{out}");
    assert!(out.contains("pushed"), "{out}");
    wait_marker(
        &l,
        "cimg-bios",
        &["bootlab.args=cloud", "BOOTLAB-FILE cloud-file"],
    );
    let s = l.state_json();
    assert_eq!(s["source"], "installed");
    assert_eq!(
        s["generation"],
        bootlab_admin::wire::generation(lab.as_bytes())
    );
    assert_eq!(s["data_fs"]["fs_type"], "ext4", "{s:#}");
    assert!(has_lease(&s, &format!("52:54:00:{net:02x}:00:10")), "{s:#}");
    let console = std::fs::read(l.env.serial_log("cimg-services")).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&console).contains("bootlab: bootlabd installed and enabled"),
        "cloud-init ran the install script"
    );
}
