//! Network-namespace labs for the DHCP tests: a server namespace and a
//! client namespace joined by a veth pair (testkit namespaces: removed on
//! drop, also when a test fails), and the one-node lab's inventory for
//! them. Needs root and iproute2; fails loudly otherwise.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use bootlab_testkit::lab::wire::PoolSection;
use bootlab_testkit::{LabBuilder, Netns, veth};

pub use bootlab_testkit::tools::{require, run};

pub const SERVICES_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 254);
pub const SERVICES_MAC: &str = "52:54:00:4d:00:fe";
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const NODE_MAC: &str = "52:54:00:4d:00:10";
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 10);

/// Two namespaces and a veth pair. Field order is drop order: the
/// namespaces (and what runs in them) go before the directory.
pub struct Lab {
    pub server: Netns,
    pub client: Netns,
    pub server_if: String,
    pub client_if: String,
    pub dir: tempfile::TempDir,
}

impl Lab {
    /// Server side gets `SERVICES_IP/24` and `SERVICES_MAC`; the client
    /// side gets `client_mac` and, if given, an address.
    pub fn new(client_mac: &str, client_ip: Option<Ipv4Addr>) -> Self {
        let server = Netns::new("dhcps");
        let client = Netns::new("dhcpc");
        let (server_if, client_if) = (server.ifname("s"), client.ifname("c"));
        veth(&server, &server_if, &client, &client_if)
            .a_mac(SERVICES_MAC)
            .b_mac(client_mac)
            .up();
        server.add_addr(&server_if, &format!("{SERVICES_IP}/24"));
        if let Some(ip) = client_ip {
            client.add_addr(&client_if, &format!("{ip}/24"));
        }
        Self {
            server,
            client,
            server_if,
            client_if,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The one-node lab as this lab serves it: on the server's veth end,
    /// state under the temp dir, a pool of .100-.200 if `pool`.
    pub fn lab(&self, pool: bool) -> LabBuilder {
        let server_if = self.server_if.clone();
        LabBuilder::netns().dirs(self.dir.path()).edit(move |f| {
            f.services.interface = Some(server_if);
            f.network.pool = pool.then(|| PoolSection {
                start: "10.77.0.100".into(),
                end: "10.77.0.200".into(),
            });
        })
    }

    /// `lab` written to the temp dir (with an assets root); its path.
    pub fn write(&self, lab: &LabBuilder) -> PathBuf {
        std::fs::create_dir_all(self.dir.path().join("assets")).unwrap();
        lab.write(&self.dir.path().join("lab.toml"))
    }

    /// busybox `udhcpc` on the client's veth end, in the foreground: at most
    /// `tries` DISCOVERs a second apart, `script` (written here, made
    /// executable) called with the lease, exits after it.
    pub fn udhcpc(&self, tries: u32, script: &Path, text: &str) -> Command {
        require("udhcpc", "udhcpc");
        std::fs::write(script, text).unwrap();
        run(Command::new("chmod").arg("+x").arg(script));
        let mut c = self.client.command("udhcpc");
        c.args(["-i", &self.client_if, "-f", "-n", "-q"])
            .args(["-t", &tries.to_string(), "-T", "1", "-s"])
            .arg(script);
        c
    }

    /// The inventory for this lab (written to the temp dir).
    pub fn inventory(&self, pool: bool) -> PathBuf {
        self.write(&self.lab(pool))
    }
}
