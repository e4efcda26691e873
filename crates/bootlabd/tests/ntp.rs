//! The real bootlabd answering NTP from the inventory's `[ntp]`: a client
//! request gets the configured stratum, a reload changes it live, and the
//! counters show in `/metrics`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use bootlab_testkit::{Daemon, LabBuilder, Sockets};

const BIN: &str = env!("CARGO_BIN_EXE_bootlabd");

/// An NTPv4 client request (mode 3), as chrony sends one.
fn request() -> [u8; 48] {
    let mut p = [0u8; 48];
    p[0] = (4 << 3) | 3;
    p[2] = 6; // poll
    p[40..48].copy_from_slice(&0x1234_5678_9abc_def0u64.to_be_bytes()); // transmit
    p
}

/// Asks `server` once; the reply's (leap indicator, mode, stratum) and
/// whether it echoes our transmit time as its origin.
fn ask(server: SocketAddr) -> (u8, u8, u8, bool) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = request();
    s.send_to(&req, server).unwrap();
    let mut buf = [0u8; 512];
    let (n, from) = s.recv_from(&mut buf).expect("an NTP reply");
    assert_eq!(from, server, "the reply comes from the address asked");
    assert_eq!(n, 48, "a reply is never larger than the request");
    (buf[0] >> 6, buf[0] & 7, buf[1], buf[24..32] == req[40..48])
}

fn metrics(http: SocketAddr) -> String {
    let mut s = TcpStream::connect(http).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

fn lab(base: &LabBuilder, stratum: u8) -> String {
    base.clone()
        .edit(|f| {
            f.ntp.enable = true;
            f.ntp.local_stratum = stratum;
        })
        .toml()
}

#[test]
fn answers_with_the_inventorys_stratum_and_follows_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let sockets = Sockets::loopback(&[]);
    let listen = sockets.listen;
    let base = sockets.lab(LabBuilder::dev(), dir.path());
    let config = dir.path().join("lab.toml");
    std::fs::write(&config, lab(&base, 10)).unwrap();
    let mut d = Daemon::on_sockets(std::path::Path::new(BIN), &config, sockets);

    let (li, mode, stratum, origin) = ask(listen.ntp);
    assert_eq!(
        (mode, stratum),
        (4, 10),
        "a server reply at local stratum 10"
    );
    assert_eq!(li, 0, "require_sync is off: never the alarm");
    assert!(origin, "the origin timestamp is the client's transmit time");

    // A mode 6 (control) query gets silence.
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut control = [0u8; 48];
    control[0] = (2 << 3) | 6;
    s.send_to(&control, listen.ntp).unwrap();
    assert!(s.recv_from(&mut [0u8; 512]).is_err(), "no answer to mode 6");

    std::fs::write(&config, lab(&base, 7)).unwrap();
    d.signal("HUP");
    d.wait_for("reloaded inventory");
    let (_, _, stratum, _) = ask(listen.ntp);
    assert_eq!(stratum, 7, "the reloaded [ntp] applies live");

    let m = metrics(listen.http);
    assert!(m.contains("bootlab_ntp_replies_total 2"), "{m}");
    assert!(
        m.contains(r#"bootlab_ntp_dropped_total{reason="control_mode"} 1"#),
        "{m}"
    );
    d.stop();
}
