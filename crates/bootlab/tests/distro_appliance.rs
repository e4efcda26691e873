//! `plan` and `up` on hosts that are not Debian, against a real libvirtd
//! (started by the test in its own namespaces, see `common`), with the host
//! read from a tree laid out as that distribution does
//! (`BOOTLAB_HOST_ROOT`, `common::fixtures`):
//! - a bare Fedora host: `plan` shows the lab and lists what the appliance
//!   lacks with dnf fixes (it does not fail on /lib/modules/...); `up`
//!   refuses with the same list and creates nothing;
//! - a Fedora-layout host whose kernel is the Debian cloud kernel with every
//!   module recompressed as Fedora ships them (`.ko.xz`, `xz --check=crc32`,
//!   `depmod`), busybox in /usr/sbin: `up` with no `--kernel/--modules/
//!   --busybox` builds the appliance from it (modules decompressed byte for
//!   byte), and the services VM boots under TCG to bootlabd's firewall
//!   (nf_tables loaded from those modules).
//!
//! Needs root, libvirt-daemon-system, qemu-system-x86, busybox-static, cpio,
//! kmod, xz-utils and `target/debug/bootlabd` (cargo test --workspace builds
//! it). Never skips.

mod common;
use common::{bootlab, text};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::fixtures::{FEDORA, FixtureHost, Parts};
use common::{LibvirtNetns, sh_ok};
use virt::connect::Connect;

/// `bootlab ARGS` inside the test's network namespace, reading the host
/// from `host_root`.
fn run(env: &LibvirtNetns, host_root: &Path, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", &env.netns])
        .arg(bootlab())
        .args(args)
        .env("BOOTLAB_HOST_ROOT", host_root)
        .output()
        .unwrap()
}

fn lab_toml(env: &LibvirtNetns, name: &str, net: u8) -> String {
    format!(
        r#"
[lab]
name = "{name}"
domain = "lab.test"

[network]
cidr = "10.{net}.0.0/24"
mode = "nat"
gateway = "10.{net}.0.1"
host_ip = "10.{net}.0.1"
bridge = "virbr-{name}"
libvirt_name = "{name}"

[libvirt]
uri = "{uri}"
pool = "{name}"
pool_path = "{root}/pool/{name}"
vm_prefix = "{name}-"
virt_type = "qemu"

[services]
name = "services"
ip = "10.{net}.0.254"
mac = "52:54:00:{net:02x}:00:fe"
vcpus = 1
memory = "512MiB"
disks = ["64MiB"]
data_dir = "/var/lib/bootlab"
assets_dir = "/var/lib/bootlab/assets"
firewall = true

[services.install]
method = "appliance"

[profiles.p]
kernel = "vmlinuz"
initrd = ["initrd.img"]
args = "console=ttyS0"

[[nodes]]
name = "n1"
profile = "p"
firmware = "bios"
mac = "52:54:00:{net:02x}:00:10"
ip = "10.{net}.0.10"
vcpus = 1
memory = "256MiB"
disks = ["1GiB"]
"#,
        uri = env.uri,
        root = env.root().display()
    )
}

#[test]
fn plan_on_a_bare_fedora_host_lists_what_is_missing_and_up_creates_nothing() {
    common::require_root_and_tools(&["nft"]);
    let env = LibvirtNetns::start("bare");
    let host = FixtureHost::new(FEDORA, Parts::NONE);
    let lab = env.root().join("lab.toml");
    std::fs::write(&lab, lab_toml(&env, "bare", 124)).unwrap();
    let lab = lab.to_str().unwrap();

    let o = run(&env, host.root(), &["plan", lab]);
    let t = text(&o);
    println!("--- bootlab plan on a bare Fedora host\n{t}");
    assert!(
        o.status.success(),
        "plan must work without the appliance inputs: {t}"
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("bare-services"),
        "the plan shows the services VM: {t}"
    );
    assert!(stdout.contains("bare-n1"), "and the node: {t}");
    assert!(
        !t.contains("/lib/modules/6.11.4-301.fc41.x86_64: No such file"),
        "{t}"
    );
    for needle in [
        "missing: no kernel image for the running kernel 6.11.4-301.fc41.x86_64",
        "fix: dnf install kernel-core",
        "missing: no busybox",
        "fix: dnf install busybox",
    ] {
        assert!(t.contains(needle), "{needle:?} in {t}");
    }
    let o = run(&env, host.root(), &["plan", lab, "--output", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("plan --output json: {e}: {}", text(&o)));
    assert!(
        json["changes"].as_array().is_some_and(|c| !c.is_empty()),
        "{json}"
    );

    let o = run(&env, host.root(), &["up", lab]);
    let t = text(&o);
    println!("--- bootlab up on a bare Fedora host\n{t}");
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("dnf install busybox") && t.contains("kernel-core"),
        "{t}"
    );
    let conn = Connect::open(Some(&env.uri)).unwrap();
    assert!(
        conn.list_all_domains(0).unwrap().is_empty(),
        "up created a domain"
    );
    assert!(
        conn.list_all_storage_pools(0).unwrap().is_empty(),
        "up created a pool"
    );
    assert!(
        conn.list_all_networks(0).unwrap().is_empty(),
        "up created a network"
    );
}

/// Files of `tree` whose name ends in `.ko`, relative to it.
fn modules_in(tree: &Path) -> Vec<PathBuf> {
    let out = sh_ok(&format!(
        "cd {} && find . -name '*.ko' -type f",
        tree.display()
    ));
    out.lines()
        .map(|l| PathBuf::from(l.trim_start_matches("./")))
        .collect()
}

#[test]
fn a_fedora_layout_host_s_own_kernel_and_xz_modules_make_a_booting_appliance() {
    common::require_root_and_tools(&[
        "cpio", "busybox", "apt-get", "dpkg-deb", "depmod", "xz", "nft",
    ]);
    let env = LibvirtNetns::start("fed");
    let root = env.root().to_path_buf();
    let daemon = env.copy_bootlabd();

    // The Debian cloud kernel, laid out as Fedora lays out its own.
    let kdir = env.kernel_with_modules();
    let release = std::fs::read_dir(kdir.join("modules"))
        .unwrap()
        .flatten()
        .next()
        .expect("a module tree")
        .file_name()
        .to_string_lossy()
        .into_owned();
    let host = FixtureHost::new(FEDORA, Parts::NONE);
    std::fs::write(host.at("proc/sys/kernel/osrelease"), format!("{release}\n")).unwrap();
    let mods = host.at(&format!("lib/modules/{release}"));
    std::fs::create_dir_all(host.at("lib/modules")).unwrap();
    sh_ok(&format!(
        "cp -a {}/modules/{release} {}",
        kdir.display(),
        mods.display()
    ));
    std::fs::copy(kdir.join("vmlinuz"), mods.join("vmlinuz")).unwrap();
    let originals = modules_in(&mods);
    assert!(originals.len() > 50, "{} modules", originals.len());
    // what Fedora's kernel build does (CONFIG_MODULE_COMPRESS_XZ), then depmod
    sh_ok(&format!(
        "cd {} && find . -name '*.ko' -type f -print0 | xargs -0 -P2 -n16 xz --check=crc32 --lzma2=dict=1MiB",
        mods.display()
    ));
    sh_ok(&format!("depmod -b {} {release}", host.root().display()));
    let dep = std::fs::read_to_string(mods.join("modules.dep")).unwrap();
    assert!(dep.contains("nf_tables.ko.xz:"), "depmod lists .ko.xz");
    std::fs::create_dir_all(host.at("usr/sbin")).unwrap();
    std::fs::copy("/bin/busybox", host.at("usr/sbin/busybox")).unwrap();
    // Fedora's e2fsprogs lives in /usr/sbin too (Debian's binaries here).
    for t in bootlab_bootlab::host::E2FSPROGS_TOOLS {
        let real = ["/usr/sbin", "/sbin"]
            .iter()
            .map(|d| Path::new(d).join(t))
            .find(|p| p.is_file())
            .expect("e2fsprogs is installed");
        std::fs::copy(real, host.at(&format!("usr/sbin/{t}"))).unwrap();
    }

    let lab = root.join("lab.toml");
    std::fs::write(&lab, lab_toml(&env, "fed", 125)).unwrap();
    let lab = lab.to_str().unwrap();
    let appliance = root.join("appliance");
    let o = run(
        &env,
        host.root(),
        &[
            "up",
            lab,
            "--bootlabd",
            daemon.to_str().unwrap(),
            "--appliance-dir",
            appliance.to_str().unwrap(),
        ],
    );
    let t = text(&o);
    println!("--- bootlab up on a Fedora-layout host\n{t}");
    assert!(o.status.success(), "{t}");

    // The initrd holds the modules decompressed, byte for byte.
    let x = root.join("initrd-x");
    std::fs::create_dir_all(&x).unwrap();
    sh_ok(&format!(
        "cd {} && cpio -idm --quiet < {}",
        x.display(),
        appliance.join("initrd.img").display()
    ));
    let order = std::fs::read_to_string(x.join("etc/bootlab/modules.order")).unwrap();
    assert!(
        order.lines().any(|l| l.ends_with("/nf_tables.ko")),
        "{order}"
    );
    assert!(!order.contains(".xz"), "{order}");
    let mut compared = 0;
    for m in order.lines() {
        let inside = std::fs::read(x.join("lib/modules").join(m)).unwrap();
        let original = std::fs::read(kdir.join("modules").join(&release).join(m)).unwrap();
        assert!(inside == original, "{m} differs from the original");
        compared += 1;
    }
    assert!(compared > 10, "{compared} modules");
    assert!(
        std::fs::read(x.join("bin/busybox")).unwrap() == std::fs::read("/bin/busybox").unwrap(),
        "busybox from /usr/sbin"
    );

    // And it boots: bootlabd applies its firewall (nf_tables from .ko.xz).
    let log = env.serial_log("fed-services");
    let has = |needle: &str| {
        std::fs::read(&log).is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle))
    };
    let dump = || {
        let t = std::fs::read(&log).unwrap_or_default();
        let t = String::from_utf8_lossy(&t);
        let start = t.len().saturating_sub(6000);
        let start = (start..t.len())
            .find(|&i| t.is_char_boundary(i))
            .unwrap_or(0);
        eprintln!("--- serial log of fed-services (tail)\n{}", &t[start..]);
    };
    let took = env.wait_for_or(
        "bootlabd's firewall and DHCP listener in the appliance",
        Duration::from_secs(300),
        dump,
        || has("firewall applied") && has("listening for dhcp"),
    );
    println!("services VM from the Fedora-layout host: bootlabd serving {took:?} after `up`");
    let o = run(&env, host.root(), &["down", lab, "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
}
