//! The real bootlabd running the inventory's `[[balancers]]`: connections
//! spread over the nodes; `drain = true` + SIGHUP takes a node out for new
//! connections while an open one through it completes; the state shows in
//! `/api/v1/balancers`, the node's timeline and `/metrics`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use bootlab_testkit::lab::wire;
use bootlab_testkit::net::tcp_on_one_port;
use bootlab_testkit::{Daemon, LabBuilder, Sockets};

const BIN: &str = env!("CARGO_BIN_EXE_bootlabd");

/// A backend on `l` that greets each connection with `name\n`, then
/// echoes lines.
fn backend(name: &'static str, l: TcpListener) {
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                if s.write_all(format!("{name}\n").as_bytes()).is_err() {
                    return;
                }
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if s.write_all(line.as_bytes()).is_err() {
                        return;
                    }
                    line.clear();
                }
            });
        }
    });
}

/// Connects through the balancer and returns the greeting and the stream.
fn through(lb: SocketAddr) -> (String, BufReader<TcpStream>) {
    let s = TcpStream::connect(lb).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s);
    let mut who = String::new();
    r.read_line(&mut who).unwrap();
    (who.trim().to_owned(), r)
}

/// GET `path` from bootlabd's HTTP port; the body.
fn get(http: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

fn backend_states(http: SocketAddr) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(&get(http, "/api/v1/balancers")).unwrap();
    v[0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_owned(),
                b["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Polls `check` up to ~20 s; a hang guard, not a timing assertion.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..400 {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("never happened: {what}");
}

/// dev.toml on `sockets` with one balancer "api" over the worker role.
fn lab(dir: &Path, sockets: &Sockets, backend_port: u16) -> LabBuilder {
    let lab = LabBuilder::dev().edit(|f| {
        f.balancers = vec![wire::BalancerSection {
            name: "api".into(),
            port: 1, // the bound socket's port replaces it
            address: None,
            backends: vec!["worker".into()],
            backend_port: Some(backend_port),
            algorithm: None,
            check: None,
            interval: Some("200ms".into()),
            rise: Some(1),
            fall: Some(1),
        }];
    });
    sockets.lab(lab, dir)
}

#[test]
fn drained_node_leaves_on_sighup_while_its_open_connection_completes() {
    let dir = tempfile::tempdir().unwrap();
    let sockets = Sockets::loopback(&["api"]);
    let (listen, lb) = (sockets.listen, sockets.balancer("api"));
    // The nodes' addresses on one port, bound before bootlabd checks them.
    let (backend_port, mut listeners) =
        tcp_on_one_port(&[[127, 0, 0, 10].into(), [127, 0, 0, 11].into()]);
    backend("node-uefi", listeners.pop().unwrap());
    backend("node-bios", listeners.pop().unwrap());
    let config = dir.path().join("lab.toml");
    let base = lab(dir.path(), &sockets, backend_port);
    std::fs::write(&config, base.toml()).unwrap();
    let mut d = Daemon::on_sockets(Path::new(BIN), &config, sockets);

    eventually("both backends up", || {
        backend_states(listen.http).iter().all(|(_, s)| s == "up")
    });
    // Round robin: consecutive connections reach both nodes.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        seen.insert(through(lb).0);
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["node-bios", "node-uefi"]
    );

    // An open connection through node-bios.
    let mut open = loop {
        let (who, r) = through(lb);
        if who == "node-bios" {
            break r;
        }
    };

    // Drain node-bios: new connections avoid it, the open one carries on.
    let drained = base.edit(|f| f.nodes[0].drain = Some(true));
    std::fs::write(&config, drained.toml()).unwrap();
    d.signal("HUP");
    d.wait_for("reloaded inventory");
    eventually("node-bios drained", || {
        backend_states(listen.http).contains(&("node-bios".into(), "drained".into()))
    });
    for _ in 0..6 {
        assert_eq!(
            through(lb).0,
            "node-uefi",
            "a drained node took a new connection"
        );
    }
    open.get_mut().write_all(b"still here\n").unwrap();
    let mut echo = String::new();
    open.read_line(&mut echo).unwrap();
    assert_eq!(echo, "still here\n", "the open connection completes");

    // The node's timeline and the metrics say so.
    let m: serde_json::Value =
        serde_json::from_str(&get(listen.http, "/api/v1/machines/52:54:00:77:00:10")).unwrap();
    let lb_events: Vec<String> = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["service"] == "lb")
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert!(lb_events.contains(&"drained".to_owned()), "{m}");
    let metrics = get(listen.http, "/metrics");
    assert!(
        metrics.contains(r#"bootlab_lb_backend_up{balancer="api",backend="node-bios"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"bootlab_lb_backend_up{balancer="api",backend="node-uefi"} 1"#),
        "{metrics}"
    );
    d.stop();
}
