//! The status page at `/`, served by the real bootlabd.
//!
//! - `page_escapes_every_inventory_string_and_sends_a_strict_csp`: a
//!   loopback daemon whose inventory carries markup in role, profile, var
//!   and TXT strings and whose timeline carries it in an event path; curl
//!   reads the page (escaped, no inline script or style, the CSP header),
//!   its assets and `/api/v1/summary`; `w3m -dump` reads it as a terminal
//!   browser would.
//! - `chromium_watches_a_node_pxe_boot_to_the_kernel`: Debian's Chromium,
//!   headless, driven over the DevTools protocol by puppeteer-core
//!   (`tests/e2e/status-page.test.mjs`), keeps one page open on bootlabd
//!   in a network namespace while a QEMU guest (SeaBIOS + the NIC's iPXE
//!   ROM, TCG) PXE-boots the tiny test OS, and checks on the live DOM,
//!   without a reload, that the node's row advances to the kernel stage.
//!   Screenshot: `target/status-page/status-page.png`.
//!
//! Needs root, QEMU, ipxe-qemu, busybox-static, cpio, chromium, w3m, curl,
//! node and npm (tests/apt-packages.txt; node comes with the machine).
//! What cannot run fails the test.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
use bootlab_testkit::LabBuilder;
use bootlab_testkit::lab::Listen;
use bootlab_testkit::lab::wire::{BalancerSection, RoleSection, VarValue};
use bootlab_testkit::net::free_port;
use common::{Daemon, repo, run_ok};

const BIN: &str = env!("CARGO_BIN_EXE_bootlabd");

/// The strict policy the page must be served with (issue 17).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Markup an inventory may carry where it allows free text.
const HOSTILE_VAR: &str = r#""><img src=x onerror="window.__pwned=true">"#;
const HOSTILE_KEY: &str = "<script>window.__pwned=true</script>";
const HOSTILE_ROLE: &str = "</td></tr></table><b>role</b>";
const HOSTILE_PROFILE: &str = "Tom & Jerry's \"<svg onload=alert(1)>\"";
/// TXT text: balanced quotes, as the record syntax wants.
const HOSTILE_TXT: &str = r#""<script>alert('txt')</script> & more""#;

/// Renames `worker`'s role and `tiny`'s profile to hostile strings and
/// gives every node hostile vars.
fn hostile(lab: LabBuilder) -> LabBuilder {
    lab.edit(|f| {
        let mut role: RoleSection = f
            .roles
            .remove("worker")
            .expect("dev.toml has a worker role");
        let profile = f
            .profiles
            .remove("tiny")
            .expect("dev.toml has a tiny profile");
        f.profiles.insert(HOSTILE_PROFILE.to_owned(), profile);
        role.profile = Some(HOSTILE_PROFILE.to_owned());
        f.roles.insert(HOSTILE_ROLE.to_owned(), role);
        for n in &mut f.nodes {
            n.role = Some(HOSTILE_ROLE.to_owned());
            n.vars
                .insert("note".to_owned(), VarValue::Str(HOSTILE_VAR.to_owned()));
            n.vars
                .insert(HOSTILE_KEY.to_owned(), VarValue::Str("k".to_owned()));
        }
    })
    .record("txt", "TXT", HOSTILE_TXT)
}

/// A response's status line and headers (lowercase names) and body.
struct Fetched {
    headers: Vec<(String, String)>,
    body: String,
}

impl Fetched {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn curl(args: &[&str]) -> Fetched {
    let out = run_ok(
        Command::new("curl")
            .args(["-sS", "--max-time", "10", "-D", "-", "-f"])
            .args(args),
    );
    let (head, body) = out.split_once("\r\n\r\n").expect("headers and body");
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Fetched {
        headers,
        body: body.to_owned(),
    }
}

/// Fails when `s` appears in `html` as it is (unescaped).
fn must_not_appear_raw(html: &str, s: &str) {
    assert!(!html.contains(s), "{s:?} appears unescaped in:\n{html}");
}

/// The text of every tag of `html` (data is escaped, so these are the
/// template's tags only).
fn tags(html: &str) -> Vec<&str> {
    html.split('<')
        .skip(1)
        .filter_map(|s| s.split_once('>').map(|(t, _)| t))
        .collect()
}

#[test]
fn page_escapes_every_inventory_string_and_sends_a_strict_csp() {
    let dir = tempfile::tempdir().unwrap();
    let listen = Listen::free_loopback();
    // A balancer whose backends listen nowhere: both show as down.
    let (lb_port, backend_port) = (free_port(), free_port());
    let lab = hostile(LabBuilder::dev().local_daemon(dir.path(), &listen)).edit(|f| {
        f.balancers.push(BalancerSection {
            name: "api".into(),
            port: lb_port,
            address: Some("127.0.0.1".into()),
            backends: vec!["node-bios".into(), "node-uefi".into()],
            backend_port: Some(backend_port),
            algorithm: None,
            check: None,
            interval: Some("200ms".into()),
            rise: Some(1),
            fall: Some(1),
        });
    });
    let config = lab.write(&dir.path().join("lab.toml"));
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    // An asset whose name is markup: fetched by node-bios (127.0.0.10), it
    // lands in the timeline as an event path.
    std::fs::write(assets.join("<b>x.txt"), b"x").unwrap();
    let mut daemon = Daemon::spawn({
        let mut c = Command::new(BIN);
        c.arg("--config").arg(&config);
        c
    });
    let base = format!("http://{}", listen.http);
    run_ok(Command::new("curl").args([
        "-sSf",
        "--max-time",
        "10",
        "-o",
        "/dev/null",
        "--interface",
        "127.0.0.10",
        &format!("{base}/assets/%3Cb%3Ex.txt"),
    ]));

    // The balancers' first checks fail at once; wait (bounded) for both.
    let mut page = curl(&[&format!("{base}/")]);
    for _ in 0..100 {
        if page.body.matches("<tr class=\"backend-down\">").count() == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        page = curl(&[&format!("{base}/")]);
    }
    assert_eq!(
        page.body.matches("<tr class=\"backend-down\">").count(),
        2,
        "both backends down in the Balancers section:\n{}",
        page.body
    );
    assert!(page.body.contains("<section id=\"balancers-section\""));
    assert!(
        !page.body.contains("egress-section"),
        "no firewall, no egress section"
    );
    assert_eq!(page.header("content-security-policy"), Some(CSP));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = &page.body;
    for s in [
        HOSTILE_VAR,
        HOSTILE_KEY,
        HOSTILE_ROLE,
        HOSTILE_PROFILE,
        "<script>alert('txt')",
        "<b>x",
    ] {
        must_not_appear_raw(html, s);
    }
    // Escaped, they are all there: the var's value, its key, the role and
    // profile names, the TXT record and the event path.
    for escaped in [
        "&quot;&gt;&lt;img src=x onerror=&quot;window.__pwned=true&quot;&gt;",
        "vars.&lt;script&gt;window.__pwned=true&lt;&#x2f;script&gt;",
        "&lt;&#x2f;td&gt;&lt;&#x2f;tr&gt;&lt;&#x2f;table&gt;&lt;b&gt;role&lt;&#x2f;b&gt;",
        "Tom &amp; Jerry&#x27;s &quot;&lt;svg onload=alert(1)&gt;&quot;",
        "&lt;script&gt;alert(&#x27;txt&#x27;)&lt;&#x2f;script&gt; &amp; more",
        "&#x2f;assets&#x2f;&lt;b&gt;x.txt",
    ] {
        assert!(html.contains(escaped), "{escaped:?} missing in:\n{html}");
    }
    // No inline script or style for the CSP to block: one external script,
    // no <style>, no style= or on...= attribute.
    let tags = tags(html);
    let scripts: Vec<&&str> = tags.iter().filter(|t| t.starts_with("script")).collect();
    assert_eq!(
        scripts,
        [&"script src=\"/static/status.js\" defer"],
        "{html}"
    );
    for t in &tags {
        let t = t.to_ascii_lowercase();
        assert!(!t.starts_with("style"), "<{t}>");
        assert!(
            !t.contains(" style=") && !t.contains(" onerror") && !t.contains(" onload"),
            "<{t}>"
        );
    }

    // The assets: compiled in, same headers, right types.
    for (path, ctype) in [
        ("/static/status.js", "text/javascript; charset=utf-8"),
        ("/static/status.css", "text/css; charset=utf-8"),
        ("/static/favicon.svg", "image/svg+xml"),
    ] {
        let r = curl(&[&format!("{base}{path}")]);
        assert_eq!(r.header("content-type"), Some(ctype), "{path}");
        assert_eq!(r.header("content-security-policy"), Some(CSP), "{path}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert!(!r.body.is_empty());
    }
    let js = curl(&[&format!("{base}/static/status.js")]).body;
    for forbidden in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!js.contains(forbidden), "status.js uses {forbidden}");
    }

    // The JSON the script polls carries the same strings, as data.
    let summary = curl(&[&format!("{base}/api/v1/summary")]);
    assert_eq!(summary.header("content-security-policy"), Some(CSP));
    let v: serde_json::Value = serde_json::from_str(&summary.body).unwrap();
    let rows = v["machines"].as_array().unwrap();
    let bios = rows.iter().find(|r| r["name"] == "node-bios").unwrap();
    assert_eq!(bios["role"], HOSTILE_ROLE);
    assert_eq!(bios["profile"], HOSTILE_PROFILE);
    assert!(
        bios["vars"]
            .as_array()
            .unwrap()
            .iter()
            .any(|kv| kv["key"] == "note" && kv["value"] == HOSTILE_VAR),
        "{bios}"
    );
    assert_eq!(bios["stage"], "config", "{bios}");
    let uefi = rows.iter().find(|r| r["name"] == "node-uefi").unwrap();
    assert_eq!(uefi["status"], "unseen", "{uefi}");
    assert!(v["services"].as_array().unwrap().len() >= 4, "{v}");

    // A terminal browser: the plain table, entities decoded to text.
    let page_file = dir.path().join("page.html");
    std::fs::write(&page_file, html).unwrap();
    let text = run_ok(
        Command::new("w3m")
            .args(["-dump", "-T", "text/html", "-cols", "1000", "-O", "UTF-8"])
            .arg(&page_file),
    );
    for want in [
        "node-bios",
        "52:54:00:77:00:10",
        "node-uefi",
        "not seen yet",
        "Tom & Jerry's \"<svg onload=alert(1)>\"",
        HOSTILE_VAR,
        "DHCP",
        "kernel",
        "Services",
        "Balancers",
    ] {
        assert!(text.contains(want), "w3m shows no {want:?}:\n{text}");
    }
    assert!(!text.contains("&lt;"), "entities are decoded:\n{text}");
    daemon.stop();
}

/// A network namespace (testkit's) with a bridge holding the services
/// address and a tap for the guest, and the processes started in it;
/// everything dies with it (on drop, also when an assertion fails).
struct BootNet {
    ns: bootlab_testkit::Netns,
    children: Vec<Child>,
}

const SERVICES: &str = "10.77.0.254";

impl BootNet {
    fn new() -> Self {
        let ns = bootlab_testkit::Netns::new("st");
        ns.add_bridge("br0");
        ns.add_addr("br0", &format!("{SERVICES}/24"));
        ns.add_tap("tap0", "br0");
        Self {
            ns,
            children: Vec::new(),
        }
    }

    fn command(&self, program: &str) -> Command {
        self.ns.command(program)
    }

    fn spawn(&mut self, mut cmd: Command) -> usize {
        self.children
            .push(cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}")));
        self.children.len() - 1
    }
}

impl Drop for BootNet {
    /// The processes stop first; then the namespace goes (its own drop).
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The PXE lab: dev.toml's nodes and profile moved onto the namespace's
/// bridge, with the hostile strings; node-bios boots, node-uefi never does.
fn pxe_lab(work: &Path) -> LabBuilder {
    hostile(LabBuilder::dev()).edit(|f| {
        let n = &mut f.network;
        n.cidr = "10.77.0.0/24".into();
        n.mode = "bridge".into();
        n.bridge = Some("br0".into());
        n.gateway = "10.77.0.1".into();
        n.host_ip = None;
        n.pool = None;
        let s = &mut f.services;
        s.ip = SERVICES.into();
        s.interface = Some("br0".into());
        s.listen.dhcp = Some("0.0.0.0:67".into());
        s.listen.dns = Some(format!("{SERVICES}:53"));
        s.listen.tftp = Some("0.0.0.0:69".into());
        s.listen.http = Some("0.0.0.0:8080".into());
        s.listen.ntp = None;
        s.data_dir = Some(work.join("data").display().to_string());
        s.assets_dir = Some(work.join("assets").display().to_string());
        s.firewall = false;
        f.ntp.enable = false;
        f.balancers.clear();
        for (node, ip) in f.nodes.iter_mut().zip(["10.77.0.10", "10.77.0.11"]) {
            node.ip = ip.into();
        }
        for p in f.profiles.values_mut() {
            p.args = "console=ttyS0 panic=-1 bootlab.node={{ node.name }}".into();
        }
    })
}

/// Reads `child`'s stdout lines on a channel.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn chromium_watches_a_node_pxe_boot_to_the_kernel() {
    const BIOS_MAC: &str = "52:54:00:77:00:10";
    const DEADLINE: Duration = Duration::from_secs(420);
    for tool in ["/usr/bin/chromium", "/usr/bin/qemu-system-x86_64"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is needed (tests/apt-packages.txt)"
        );
    }
    let modules = run_ok(&mut Command::new(repo("tests/e2e/browser-deps.sh")));
    let modules = modules.trim().to_owned();
    let artifacts = repo("target/status-page");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("status-page.png");
    let _ = std::fs::remove_file(&screenshot);

    let work = tempfile::tempdir().unwrap();
    let assets = work.path().join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    run_ok(Command::new(repo("tests/e2e/build-test-os.sh")).arg(&assets));
    run_ok(Command::new(repo("boot-assets/gather.sh")).arg(&assets));
    // The dev profile's names: the test OS is vmlinuz + initrd.img already.
    let config = pxe_lab(work.path()).write(&work.path().join("lab.toml"));

    let mut ns = BootNet::new();
    let log = work.path().join("bootlabd.log");
    let mut daemon = ns.command(BIN);
    daemon
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info,bootlab=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    ns.spawn(daemon);
    let url = format!("http://{SERVICES}:8080/");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ns
        .command("curl")
        .args(["-sf", "--max-time", "2", "-o", "/dev/null", &url])
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(
            Instant::now() < deadline,
            "bootlabd did not come up: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The browser opens the page and says READY; only then does the node
    // boot, so the row must advance on the open page.
    let hostile = serde_json::to_string(&[HOSTILE_VAR, HOSTILE_ROLE, HOSTILE_PROFILE]).unwrap();
    let mut browser = ns.command("node");
    browser
        .arg(repo("tests/e2e/status-page.test.mjs"))
        .args(["--url", &url, "--row", "m-525400770010"])
        .arg("--screenshot")
        .arg(&screenshot)
        .args(["--hostile", &hostile, "--deadline-s", "360"])
        .env("NODE_MODULES_DIR", &modules)
        .env("PUPPETEER_SKIP_DOWNLOAD", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(artifacts.join("browser.log")).unwrap());
    let b = ns.spawn(browser);
    let lines = lines_of(&mut ns.children[b]);
    let browser_log = || std::fs::read_to_string(artifacts.join("browser.log")).unwrap_or_default();
    let wait_line = |prefix: &str, until: Instant| -> String {
        loop {
            match lines.recv_timeout(Duration::from_millis(500)) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("the browser test ended before {prefix}:\n{}", browser_log())
                }
                Err(mpsc::RecvTimeoutError::Timeout) => assert!(
                    Instant::now() < until,
                    "no {prefix} from the browser test:\n{}",
                    browser_log()
                ),
            }
        }
    };
    wait_line("READY", Instant::now() + Duration::from_secs(120));

    let serial = work.path().join("node-bios.log");
    let mut qemu = ns.command("qemu-system-x86_64");
    qemu.args([
        "-accel",
        "tcg",
        "-m",
        "512",
        "-display",
        "none",
        "-no-reboot",
    ])
    .args(["-monitor", "none", "-serial"])
    .arg(format!("file:{}", serial.display()))
    .args([
        "-netdev",
        "tap,id=n0,ifname=tap0,script=no,downscript=no",
        "-device",
        &format!("virtio-net-pci,netdev=n0,mac={BIOS_MAC}"),
        "-boot",
        "n",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    ns.spawn(qemu);

    let pass = wait_line("PASS ", Instant::now() + DEADLINE);
    let report: serde_json::Value = serde_json::from_str(&pass["PASS ".len()..]).unwrap();
    eprintln!("browser saw: {report}");
    let stages: Vec<&str> = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    assert!(
        stages.len() >= 2
            && stages
                .iter()
                .any(|s| ["kernel", "initrd", "config"].contains(s)),
        "{stages:?}"
    );
    let status = ns.children[b].wait().unwrap();
    assert!(
        status.success(),
        "browser test: {status}\n{}",
        browser_log()
    );
    let png = std::fs::read(&screenshot).expect("the screenshot was written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");

    // The API agrees with what the browser saw.
    let body = run_ok(ns.command("curl").args([
        "-sSf",
        "--max-time",
        "10",
        &format!("http://{SERVICES}:8080/api/v1/machines/{BIOS_MAC}"),
    ]));
    assert!(body.contains("\"kind\":\"kernel\""), "{body}");
    eprintln!("screenshot: {}", screenshot.display());
}
