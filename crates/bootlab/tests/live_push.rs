//! The host's half of a live change, as `bootlab up` runs it
//! (`bootlab_bootlab::live`: [`HostSide::read`], [`compare`], [`apply`]
//! over a [`Connection`] with the lab's client certificate), against the
//! real `bootlabd` on loopback with its admin API on (no VM):
//!
//! - the first sync sends every asset; a second one with nothing changed
//!   sends nothing (bootlabd's own upload counter does not move);
//! - after one asset and a profile's variable change on the host, exactly
//!   that asset and the inventory are sent (the counter grows by one), the
//!   next boot script carries the new argument, the new file is served,
//!   the daemon never restarted (same boot id);
//! - a broken inventory is refused by bootlabd with its diagnostics
//!   (file, line, the bad value) and the old one keeps serving.
//!
//! Needs curl and `target/debug/bootlabd` (`cargo test --workspace` builds
//! it; alone: `cargo build -p bootlab-bootlabd`). Never skips.

use std::path::{Path, PathBuf};
use std::process::Command;

use bootlab_admin::pki;
use bootlab_admin::wire;
use bootlab_bootlab::hoststate::LabState;
use bootlab_bootlab::live::{self, Connection, HostSide, Route};
use bootlab_testkit::{Daemon, LabBuilder, Sockets};

fn bootlabd() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_BIN_EXE_bootlab")).with_file_name("bootlabd");
    assert!(
        p.is_file(),
        "{} is missing: `cargo build -p bootlab-bootlabd` (cargo test --workspace builds it)",
        p.display()
    );
    p
}

fn curl(url: &str) -> Option<Vec<u8>> {
    let out = Command::new("curl")
        .args(["-s", "-f", "--max-time", "20", url])
        .output()
        .expect("curl is installed");
    out.status.success().then_some(out.stdout)
}

fn metric(http: std::net::SocketAddr, name: &str) -> u64 {
    let text = String::from_utf8(curl(&format!("http://{http}/metrics")).expect("/metrics"))
        .expect("UTF-8 metrics");
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or_else(|| panic!("no metric {name} in:\n{text}"), |v| v as u64)
}

fn sync(host_lab: &Path, state: &LabState, src: &Path, conn: &Connection) -> live::Pushed {
    let inv = bootlab_inventory::load(host_lab).expect("the host's lab.toml loads");
    let host = HostSide::read(&inv, state, Some(src)).expect("hashing the assets source");
    let vm = conn.client.state().expect("GET /v1/state");
    let plan = live::compare(&host, &vm);
    assert!(plan.restart.is_empty(), "{plan:?}");
    live::apply(conn, &host, &plan).expect("the push")
}

#[test]
fn only_changed_assets_and_the_changed_inventory_are_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let mut sockets = Sockets::loopback(&[]);
    let admin = sockets.add_tcp("admin");
    let http = sockets.listen.http;
    let b = sockets
        .lab(LabBuilder::dev(), dir.path())
        .edit(|f| f.services.listen.admin = Some(admin.to_string()));
    // bootlabd's installed --config, and the host's own copy (what the
    // user edits)
    let installed = b.write(&dir.path().join("installed.toml"));
    let host_lab = b.write(&dir.path().join("lab.toml"));
    let inv = b.build();
    let state = LabState::at(&dir.path().join("state"), "dev");
    let (lab_pki, created) = state.ensure_pki(&inv).unwrap();
    assert!(created);
    let tls = inv.services().data_dir.join("admin");
    pki::create_private_dir(&tls).unwrap();
    pki::write_file_atomic(&tls.join(pki::CA_CERT), lab_pki.ca.cert.as_bytes(), 0o644).unwrap();
    let server = (&lab_pki.server.cert, &lab_pki.server.key);
    pki::write_file_atomic(&tls.join(pki::SERVER_CERT), server.0.as_bytes(), 0o644).unwrap();
    pki::write_file_atomic(&tls.join(pki::SERVER_KEY), server.1.as_bytes(), 0o600).unwrap();
    std::fs::create_dir_all(&inv.services().assets_dir).unwrap();
    let mut daemon = Daemon::on_sockets(&bootlabd(), &installed, sockets);
    daemon.wait_for_logged("listening for admin");
    let conn = Connection::open(&inv, &Route::Direct(admin), &lab_pki).unwrap();
    let boot_id = conn.client.state().unwrap().machine.boot_id;
    let uploads = || metric(http, "bootlab_admin_uploads_total");

    // the host's assets source
    let src = dir.path().join("source");
    std::fs::create_dir_all(src.join("fcos")).unwrap();
    std::fs::write(src.join("vmlinuz"), b"kernel v1\n".repeat(5000)).unwrap();
    std::fs::write(src.join("fcos/rootfs.img"), vec![7u8; 3 << 20]).unwrap();
    std::fs::write(src.join("ignition.json"), b"{\"ignition\":{}}\n").unwrap();

    // first sync: every file, no inventory (same bytes as installed)
    let p = sync(&host_lab, &state, &src, &conn);
    assert_eq!(
        p.assets,
        ["fcos/rootfs.img", "ignition.json", "vmlinuz"],
        "{}",
        live::summary(&p)
    );
    assert!(p.inventory.is_none());
    assert_eq!(uploads(), 3);
    let served = |path: &str| curl(&format!("http://{http}/assets/{path}"));
    assert_eq!(served("vmlinuz").unwrap(), b"kernel v1\n".repeat(5000));

    // nothing changed: nothing sent
    let p = sync(&host_lab, &state, &src, &conn);
    assert!(
        p.assets.is_empty() && p.inventory.is_none(),
        "{}",
        live::summary(&p)
    );
    assert!(live::summary(&p).starts_with("nothing to push"));
    assert_eq!(uploads(), 3, "no upload for unchanged files");

    // one asset and the node's profile variable change on the host
    std::fs::write(src.join("ignition.json"), b"{\"ignition\":{\"v\":2}}\n").unwrap();
    let text = std::fs::read_to_string(&host_lab).unwrap();
    let changed = text.replace("marker = \"worker\"", "marker = \"pushed\"");
    assert_ne!(changed, text);
    std::fs::write(&host_lab, &changed).unwrap();
    let script = || {
        String::from_utf8(curl(&format!("http://{http}/boot.ipxe?mac=52:54:00:77:00:10")).unwrap())
            .unwrap()
    };
    assert!(script().contains("bootlab.marker=worker"));
    let p = sync(&host_lab, &state, &src, &conn);
    assert_eq!(p.assets, ["ignition.json"], "{}", live::summary(&p));
    let applied = p.inventory.as_ref().expect("the inventory was pushed");
    assert_eq!(applied.generation, wire::generation(changed.as_bytes()));
    assert_eq!(uploads(), 4, "exactly one more upload");
    assert!(script().contains("bootlab.marker=pushed"), "{}", script());
    assert_eq!(
        served("ignition.json").unwrap(),
        b"{\"ignition\":{\"v\":2}}\n"
    );
    let st = conn.client.state().unwrap();
    assert_eq!(st.machine.boot_id, boot_id, "the daemon never restarted");
    assert_eq!(st.generation, applied.generation);

    // a broken inventory on the host: refused with diagnostics, the old
    // one keeps serving
    let broken = changed.replacen("ip = \"127.0.0.10\"", "ip = \"127.0.0.300\"", 1);
    assert_ne!(broken, changed);
    std::fs::write(&host_lab, &broken).unwrap();
    // the host's own check would stop `up` first; push the bytes as a
    // host that skipped it would
    let host = HostSide {
        path: host_lab.clone(),
        text: broken.clone().into_bytes(),
        generation: wire::generation(broken.as_bytes()),
        services: wire::ServicesView::of(&inv),
        assets: None,
    };
    let plan = live::compare(&host, &conn.client.state().unwrap());
    let e = live::apply(&conn, &host, &plan).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("refused the inventory (422)"), "{msg}");
    assert!(
        msg.contains(&format!("{}:", host_lab.display())) && msg.contains("127.0.0.300"),
        "{msg}"
    );
    assert!(script().contains("bootlab.marker=pushed"), "{}", script());
    assert_eq!(
        conn.client.state().unwrap().generation,
        wire::generation(changed.as_bytes())
    );
    daemon.stop();
}
