//! Neighbour entries written over rtnetlink land in the kernel's table of
//! the namespace the handle was opened in, on the named interface, as
//! `ip neigh` shows them; replacing an entry changes its MAC. Needs root
//! and iproute2.

use bootlab_netio::Neighbours;
use bootlab_testkit::{Netns, veth};

fn neigh(ns: &Netns, dev: &str) -> String {
    ns.sh(&format!("ip -4 neigh show dev {dev}"))
}

#[test]
fn an_entry_is_written_on_the_interface_and_replaced() {
    let server = Netns::new("neigh-srv");
    let client = Netns::new("neigh-cli");
    let (s_if, c_if) = (server.ifname("s"), client.ifname("c"));
    veth(&server, &s_if, &client, &c_if).up();
    server.add_addr(&s_if, "10.77.0.1/24");

    let dev = s_if.clone();
    let first = server.run_in(move || {
        let mut n = Neighbours::open(&dev).expect("open in the namespace");
        n.set(
            "10.77.0.20".parse().unwrap(),
            [0x52, 0x54, 0, 0xaa, 0, 0x20],
        )
        .expect("written");
        n
    });
    let shown = neigh(&server, &s_if);
    assert!(
        shown.contains("10.77.0.20 lladdr 52:54:00:aa:00:20 STALE"),
        "{shown}"
    );
    drop(first);

    let dev = s_if.clone();
    server.run_in(move || {
        let mut n = Neighbours::open(&dev).unwrap();
        n.set(
            "10.77.0.20".parse().unwrap(),
            [0x52, 0x54, 0, 0xaa, 0, 0x21],
        )
        .expect("replaced");
        // Several in a row on one handle: each waits for its own answer.
        for host in 30..40u8 {
            n.set([10, 77, 0, host].into(), [0x52, 0x54, 0, 0xbb, 0, host])
                .unwrap();
        }
    });
    let shown = neigh(&server, &s_if);
    assert!(
        shown.contains("10.77.0.20 lladdr 52:54:00:aa:00:21"),
        "{shown}"
    );
    assert!(!shown.contains("52:54:00:aa:00:20"), "{shown}");
    for host in 30..40 {
        assert!(
            shown.contains(&format!("10.77.0.{host} lladdr 52:54:00:bb:00:{host:02x}")),
            "{shown}"
        );
    }
    // The other namespace's table is untouched.
    assert_eq!(neigh(&client, &c_if).trim(), "");
}

#[test]
fn a_refusal_comes_back_as_the_kernels_error() {
    let server = Netns::new("neigh-ref");
    let other = Netns::new("neigh-ref-peer");
    let (s_if, o_if) = (server.ifname("s"), other.ifname("o"));
    veth(&server, &s_if, &other, &o_if).up();
    let dev = s_if.clone();
    let mut n = server.run_in(move || Neighbours::open(&dev).unwrap());
    // The interface goes away under the handle: the kernel refuses the
    // write (ENODEV) and the handle says so instead of claiming success.
    server.ip(&["link", "del", &s_if]);
    let e = n
        .set("10.78.0.5".parse().unwrap(), [2, 0, 0, 0, 0, 5])
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(nix::libc::ENODEV), "{e}");
}
