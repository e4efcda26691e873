//! The admin API of the real `bootlabd` (on a port-0 socket passed as
//! `admin`), with the host's client (`bootlab-admin`) and curl as peers:
//!
//! - a client without a certificate, with one from another lab's CA or
//!   with an expired one fails the TLS handshake (counted by reason; no
//!   request of theirs is ever read);
//! - uploads land whole or not at all: a path leaving the root, a hash
//!   mismatch, a connection cut half-way, a full file system (a 1 MiB
//!   tmpfs in the daemon's own mount namespace) leave the old file
//!   serving and no temporary file behind;
//! - a broken inventory is refused with its diagnostics and the old one
//!   keeps serving; a restart-only change is refused (409); a good one is
//!   reloaded in place, survives a restart and a SIGHUP, and yields to a
//!   changed `--config` file.
//!
//! Needs curl, unshare, nsenter and mount (root for the tmpfs test).

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bootlab_admin::client::{AdminClient, Body, ClientError, Endpoint};
use bootlab_admin::pki::{self, CertKey, LabPki, Leaf, Validity};
use bootlab_admin::wire::{self, InventorySource};
use bootlab_testkit::{Daemon, LabBuilder, Sockets};

const BIN: &str = env!("CARGO_BIN_EXE_bootlabd");

struct Lab {
    dir: tempfile::TempDir,
    config: PathBuf,
    pki: LabPki,
    admin: SocketAddr,
    http: SocketAddr,
    daemon: Daemon,
}

fn builder(dir: &Path, sockets: &Sockets, admin: SocketAddr) -> LabBuilder {
    sockets
        .lab(LabBuilder::dev(), dir)
        .edit(|f| f.services.listen.admin = Some(admin.to_string()))
}

/// The TLS material where bootlabd looks for it.
fn install_tls(data_dir: &Path, pki: &LabPki) {
    let d = data_dir.join("admin");
    pki::create_private_dir(&d).unwrap();
    pki::write_file_atomic(&d.join(pki::CA_CERT), pki.ca.cert.as_bytes(), 0o644).unwrap();
    pki::write_file_atomic(&d.join(pki::SERVER_CERT), pki.server.cert.as_bytes(), 0o644).unwrap();
    pki::write_file_atomic(&d.join(pki::SERVER_KEY), pki.server.key.as_bytes(), 0o600).unwrap();
}

/// Makes a wrapper script for the daemon from (temp dir, bootlabd).
type Wrapper<'a> = &'a dyn Fn(&Path, &Path) -> PathBuf;

/// A daemon with the admin API on; `wrap` runs it through a wrapper
/// script (for the tmpfs test).
fn start(wrap: Option<Wrapper<'_>>) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let mut sockets = Sockets::loopback(&[]);
    let admin = sockets.add_tcp("admin");
    let http = sockets.listen.http;
    let b = builder(dir.path(), &sockets, admin);
    let config = b.write(&dir.path().join("lab.toml"));
    let inv = b.build();
    let pki = LabPki::generate(
        "dev",
        inv.services().ip.into(),
        &["services.dev.lab.test".into()],
    )
    .unwrap();
    install_tls(&inv.services().data_dir, &pki);
    std::fs::create_dir_all(&inv.services().assets_dir).unwrap();
    let bin = match wrap {
        Some(w) => w(dir.path(), &inv.services().assets_dir),
        None => PathBuf::from(BIN),
    };
    let mut daemon = Daemon::on_sockets(&bin, &config, sockets);
    daemon.wait_for_logged("listening for admin");
    Lab {
        dir,
        config,
        pki,
        admin,
        http,
        daemon,
    }
}

impl Lab {
    fn client_as(&self, ca: &str, cert: Option<&CertKey>) -> AdminClient {
        let cfg = pki::client_config(ca, cert).unwrap();
        AdminClient::new(
            Endpoint::Tcp(self.admin),
            "127.0.0.1".parse().unwrap(),
            Arc::new(cfg),
        )
        .with_timeouts(Duration::from_secs(5), Duration::from_secs(30))
    }

    fn client(&self) -> AdminClient {
        self.client_as(&self.pki.ca.cert, Some(&self.pki.client))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn assets(&self) -> PathBuf {
        self.dir.path().join("assets")
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A file served over bootlabd's plain HTTP (curl), or None on 404.
    fn http_get(&self, path: &str) -> Option<Vec<u8>> {
        let out = Command::new("curl")
            .args(["-s", "-f", "--max-time", "20"])
            .arg(format!("http://{}{path}", self.http))
            .output()
            .expect("curl is installed");
        out.status.success().then_some(out.stdout)
    }

    fn metric(&self, line_start: &str) -> u64 {
        let text = String::from_utf8(self.http_get("/metrics").expect("/metrics")).unwrap();
        text.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .map(|v| v as u64)
            .unwrap_or_else(|| panic!("no metric {line_start} in:\n{text}"))
    }

    /// curl against the admin API; (exit code, stdout+stderr).
    fn curl(&self, extra: &[&str]) -> (i32, String) {
        let ca = self.path("curl-ca.crt");
        std::fs::write(&ca, &self.pki.ca.cert).unwrap();
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "20", "--cacert"])
            .arg(&ca)
            .args(extra)
            .arg(format!("https://127.0.0.1:{}/v1/state", self.admin.port()))
            .output()
            .expect("curl is installed");
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

fn put_bytes(c: &AdminClient, rel: &str, data: &[u8], sha: &str) -> Result<u16, ClientError> {
    let mut r = data;
    let r = c.request(
        "PUT",
        &wire::asset_url_path(rel),
        &[(wire::HEADER_SHA256, sha)],
        Body::Stream {
            len: data.len() as u64,
            reader: &mut r,
            progress: &mut |_| {},
        },
    )?;
    Ok(r.status)
}

fn temps_in(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in walk(dir) {
        let n = e.file_name().unwrap().to_string_lossy().into_owned();
        if n.starts_with(".bootlab-upload-") {
            out.push(e.display().to_string());
        }
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn clients_without_the_lab_s_valid_certificate_fail_the_handshake() {
    let lab = start(None);
    // the lab's own client, and curl with its certificate: answered
    let state = lab.client().state().expect("the lab's client is served");
    assert_eq!(state.lab, "dev");
    assert_eq!(state.source, InventorySource::Installed);
    assert_eq!(
        state.generation,
        wire::generation(&std::fs::read(&lab.config).unwrap())
    );
    let (cert, key) = (lab.path("client.crt"), lab.path("client.key"));
    std::fs::write(&cert, &lab.pki.client.cert).unwrap();
    std::fs::write(&key, &lab.pki.client.key).unwrap();
    let (code, out) = lab.curl(&[
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"generation\""), "{out}");
    let served = lab.metric("bootlab_admin_requests_total");

    // no certificate: our client and curl
    let e = lab.client_as(&lab.pki.ca.cert, None).state().unwrap_err();
    assert!(e.is_tls(), "{e}");
    let (code, out) = lab.curl(&[]);
    assert_ne!(
        code, 0,
        "curl without a client certificate was served: {out}"
    );
    assert!(!out.contains("generation"), "{out}");
    // another lab's CA
    let other = LabPki::generate("other", "127.0.0.1".parse().unwrap(), &[]).unwrap();
    let e = lab
        .client_as(&lab.pki.ca.cert, Some(&other.client))
        .state()
        .unwrap_err();
    assert!(e.is_tls(), "{e}");
    // expired, from the right CA
    let expired = lab.pki.issue(&Leaf::Client, Validity::expired(2)).unwrap();
    let e = lab
        .client_as(&lab.pki.ca.cert, Some(&expired))
        .state()
        .unwrap_err();
    assert!(e.is_tls(), "{e}");
    // an upload without a certificate: nothing lands
    let e = put_bytes(
        &lab.client_as(&lab.pki.ca.cert, None),
        "x",
        b"x",
        &wire::sha256_hex(b"x"),
    )
    .unwrap_err();
    assert!(e.is_tls(), "{e}");
    assert!(!lab.assets().join("x").exists());

    let refused = |reason: &str| {
        lab.metric(&format!(
            "bootlab_admin_handshakes_refused_total{{reason=\"{reason}\"}}"
        ))
    };
    assert_eq!(refused("no_certificate"), 3, "ours twice and curl");
    assert_eq!(refused("unknown_ca"), 1);
    assert_eq!(refused("expired"), 1);
    assert_eq!(
        lab.metric("bootlab_admin_requests_total"),
        served,
        "no request of a refused client was read"
    );
}

#[test]
fn uploads_land_whole_and_matching_or_not_at_all() {
    let lab = start(None);
    let c = lab.client();
    let v1 = b"kernel v1\n".repeat(1000);
    let src = lab.path("vmlinuz");
    std::fs::write(&src, &v1).unwrap();
    let stored = c
        .put_asset("boot/vmlinuz", &src, &wire::sha256_hex(&v1), &mut |_| {})
        .unwrap();
    assert_eq!(stored.size, v1.len() as u64);
    assert_eq!(lab.http_get("/assets/boot/vmlinuz").unwrap(), v1);
    let st = c.state().unwrap();
    let entry = &st.assets_by_path()["boot/vmlinuz"].clone();
    assert_eq!(entry.sha256, wire::sha256_hex(&v1));

    // escapes: encoded `..`, an absolute path, a symlinked directory
    let outside = lab.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, lab.assets().join("link")).unwrap();
    for (raw, want) in [
        ("/v1/assets/%2e%2e/%2e%2e/escaped", 400),
        ("/v1/assets/boot/..%2F..%2Fescaped", 400),
        ("/v1/assets//etc/escaped", 400),
        ("/v1/assets/link/escaped", 403),
        ("/v1/assets/.bootlab-upload-1-1", 400),
    ] {
        let mut r: &[u8] = b"evil";
        let resp = c
            .request(
                "PUT",
                raw,
                &[(wire::HEADER_SHA256, &wire::sha256_hex(b"evil"))],
                Body::Stream {
                    len: 4,
                    reader: &mut r,
                    progress: &mut |_| {},
                },
            )
            .unwrap();
        assert_eq!(
            resp.status,
            want,
            "{raw}: {}",
            String::from_utf8_lossy(&resp.body)
        );
    }
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    assert!(!lab.dir.path().join("escaped").exists());

    // a hash mismatch
    let v2 = b"kernel v2\n".repeat(1000);
    let status = put_bytes(&c, "boot/vmlinuz", &v2, &wire::sha256_hex(b"not this")).unwrap();
    assert_eq!(status, 422);
    assert_eq!(lab.http_get("/assets/boot/vmlinuz").unwrap(), v1);

    // a connection cut half-way through a 1 MiB upload
    struct HalfThenFail(usize);
    impl Read for HalfThenFail {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 >= 512 << 10 {
                return Err(std::io::Error::other("the host went away"));
            }
            let n = buf.len().min((512 << 10) - self.0);
            buf[..n].fill(b'z');
            self.0 += n;
            Ok(n)
        }
    }
    let refused_before = lab.metric("bootlab_admin_uploads_refused_total");
    let mut half = HalfThenFail(0);
    let r = c.request(
        "PUT",
        &wire::asset_url_path("boot/vmlinuz"),
        &[(wire::HEADER_SHA256, &wire::sha256_hex(&[b'z'; 1 << 20]))],
        Body::Stream {
            len: 1 << 20,
            reader: &mut half,
            progress: &mut |_| {},
        },
    );
    assert!(r.is_err(), "the cut upload got an answer: {r:?}");
    let start = Instant::now();
    while lab.metric("bootlab_admin_uploads_refused_total") == refused_before {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the cut upload was never given up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(lab.http_get("/assets/boot/vmlinuz").unwrap(), v1);
    assert!(
        temps_in(&lab.assets()).is_empty(),
        "{:?}",
        temps_in(&lab.assets())
    );

    // and a good replacement goes live at once
    let status = put_bytes(&c, "boot/vmlinuz", &v2, &wire::sha256_hex(&v2)).unwrap();
    assert_eq!(status, 201);
    assert_eq!(lab.http_get("/assets/boot/vmlinuz").unwrap(), v2);
    assert_eq!(lab.metric("bootlab_admin_uploads_total"), 2);
}

#[test]
fn a_full_disk_leaves_the_old_file_serving() {
    common_require_root();
    // bootlabd in its own mount namespace, its assets_dir a 1 MiB tmpfs.
    let wrap = |dir: &Path, assets: &Path| {
        let w = dir.join("in-small-fs.sh");
        std::fs::write(
            &w,
            format!(
                "#!/bin/sh\nexec unshare -m --propagation private sh -c 'mount -t tmpfs -o size=1m tmpfs \"$0\" && exec \"$1\" \"$2\" \"$3\"' {} {} \"$@\"\n",
                assets.display(),
                BIN
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&w, std::fs::Permissions::from_mode(0o755)).unwrap();
        w
    };
    let lab = start(Some(&wrap));
    let c = lab.client();
    let pid = lab.daemon.child.id();
    let in_ns = |cmd: &str| {
        let out = Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-m", "sh", "-c", cmd])
            .output()
            .expect("nsenter (util-linux)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        in_ns(&format!(
            "grep ' {} tmpfs' /proc/mounts",
            lab.assets().display()
        ))
        .contains("tmpfs"),
        "the daemon's assets_dir is the small tmpfs"
    );
    let old = vec![b'o'; 600 << 10];
    assert_eq!(
        put_bytes(&c, "rootfs.img", &old, &wire::sha256_hex(&old)).unwrap(),
        201
    );
    let new = vec![b'n'; 900 << 10];
    // With its length announced: refused before the body is sent.
    let status = put_bytes(&c, "rootfs.img", &new, &wire::sha256_hex(&new)).unwrap();
    assert_eq!(status, 507);
    // Chunked (no length): the disk fills up while it is written.
    let mut r: &[u8] = &new;
    let resp = c
        .request(
            "PUT",
            &wire::asset_url_path("rootfs.img"),
            &[(wire::HEADER_SHA256, &wire::sha256_hex(&new))],
            Body::Chunked { reader: &mut r },
        )
        .unwrap();
    assert_eq!(resp.status, 507, "{}", String::from_utf8_lossy(&resp.body));
    assert!(
        String::from_utf8_lossy(&resp.body).contains("no space"),
        "{}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(lab.http_get("/assets/rootfs.img").unwrap(), old);
    let listing = in_ns(&format!("ls -a {}", lab.assets().display()));
    assert!(!listing.contains(".bootlab-upload-"), "{listing}");
    assert_eq!(lab.metric("bootlab_admin_uploads_refused_total"), 2);
}

fn common_require_root() {
    let uid = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
    assert_eq!(
        uid.trim(),
        "0",
        "this test mounts a tmpfs in a private mount namespace: it needs root; it never skips"
    );
}

#[test]
fn pushed_inventories_are_validated_reloaded_in_place_and_kept() {
    let mut lab = start(None);
    let c = lab.client();
    let before = c.state().unwrap();
    let script = |lab: &Lab| {
        String::from_utf8(lab.http_get("/boot.ipxe?mac=52:54:00:77:00:10").unwrap()).unwrap()
    };
    assert!(script(&lab).contains("bootlab.marker=worker"));
    let installed = std::fs::read_to_string(&lab.config).unwrap();

    // broken: a bad address, located in the diagnostics
    let broken = installed.replacen("ip = \"127.0.0.10\"", "ip = \"127.0.0.300\"", 1);
    assert_ne!(broken, installed);
    let e = c
        .put_inventory(broken.as_bytes(), "/home/me/lab.toml")
        .unwrap_err();
    let ClientError::Status { status, error } = e else {
        panic!("{e}")
    };
    assert_eq!(status, 422);
    let d = error.diagnostics.expect("diagnostics");
    assert!(
        d.contains("/home/me/lab.toml:") && d.contains("127.0.0.300"),
        "{d}"
    );
    // not TOML at all
    let e = c.put_inventory(b"[lab\nname = 1", "lab.toml").unwrap_err();
    assert!(matches!(e, ClientError::Status { status: 422, .. }), "{e}");
    assert_eq!(c.state().unwrap().generation, before.generation);
    assert!(script(&lab).contains("bootlab.marker=worker"));

    // a field bootlabd reads only at start
    let moved = installed.replace(
        &format!("http = \"{}\"", lab.http),
        "http = \"127.0.0.1:1\"",
    );
    assert_ne!(moved, installed);
    let e = c.put_inventory(moved.as_bytes(), "lab.toml").unwrap_err();
    let ClientError::Status { status, error } = e else {
        panic!("{e}")
    };
    assert_eq!(status, 409);
    assert!(
        error.error.contains("services.listen.http"),
        "{}",
        error.error
    );

    // good: new args for the node, reloaded in place
    let good = installed.replace("marker = \"worker\"", "marker = \"pushed\"");
    assert_ne!(good, installed);
    let applied = c.put_inventory(good.as_bytes(), "lab.toml").unwrap();
    assert_eq!(applied.generation, wire::generation(good.as_bytes()));
    assert!(script(&lab).contains("bootlab.marker=pushed"));
    let st = c.state().unwrap();
    assert_eq!(st.generation, applied.generation);
    assert_eq!(st.source, InventorySource::Pushed);
    assert_eq!(st.machine.boot_id, before.machine.boot_id);
    let kept = lab.data().join("admin/lab.toml");
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), good);

    // SIGHUP keeps serving the push (the installed file is unchanged)
    lab.daemon.signal("HUP");
    lab.daemon.wait_for("reloaded inventory");
    assert!(script(&lab).contains("bootlab.marker=pushed"));

    // a restart too
    lab.daemon.stop();
    let mut sockets = Sockets::loopback(&[]);
    let admin = sockets.add_tcp("admin");
    lab.admin = admin;
    lab.http = sockets.listen.http;
    lab.daemon = Daemon::on_sockets(Path::new(BIN), &lab.config, sockets);
    lab.daemon.wait_for_logged("listening for admin");
    let st = lab.client().state().unwrap();
    assert_eq!(st.generation, applied.generation);
    assert_eq!(st.source, InventorySource::Pushed);
    assert!(script(&lab).contains("bootlab.marker=pushed"));

    // the installed file changes (a re-install): it wins on SIGHUP
    let reinstalled = installed.replace("marker = \"worker\"", "marker = \"reinstalled\"");
    std::fs::write(&lab.config, &reinstalled).unwrap();
    lab.daemon.signal("HUP");
    lab.daemon.wait_for("reloaded inventory");
    let st = lab.client().state().unwrap();
    assert_eq!(st.source, InventorySource::Installed);
    assert_eq!(st.generation, wire::generation(reinstalled.as_bytes()));
    assert!(script(&lab).contains("bootlab.marker=reinstalled"));
    assert!(!kept.exists(), "the stale push is gone");
}

#[test]
fn without_tls_material_the_admin_api_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut sockets = Sockets::loopback(&[]);
    let admin = sockets.add_tcp("admin");
    let b = builder(dir.path(), &sockets, admin);
    let config = b.write(&dir.path().join("lab.toml"));
    let mut d = Daemon::on_sockets(Path::new(BIN), &config, sockets);
    let seen = d.seen.join("\n");
    assert!(seen.contains("admin API off"), "{seen}");
    assert!(!seen.contains("listening for admin"), "{seen}");
    d.stop();
}
