//! A typed lab builder: the shipped configs as wire structs that tests edit
//! field by field, then compile (or write out for a daemon to load).

use std::path::{Path, PathBuf};

use bootlab_inventory::Inventory;
pub use bootlab_inventory::wire::{self, LabFile};

/// The workspace's `config/` directory.
pub fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

/// A lab being built: the wire form of an inventory, and the directory its
/// relative paths resolve against.
#[derive(Debug, Clone)]
pub struct LabBuilder {
    /// The inventory as the file has it; edit freely.
    pub file: LabFile,
    base: PathBuf,
}

impl LabBuilder {
    /// `config/<name>.toml` of the workspace (`dev`, `okd-lab`...).
    pub fn config(name: &str) -> Self {
        let path = config_dir().join(format!("{name}.toml"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let file: LabFile =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self {
            file,
            base: config_dir(),
        }
    }

    /// `config/dev.toml`: loopback, high ports, two nodes, a pool.
    pub fn dev() -> Self {
        Self::config("dev")
    }

    /// `config/okd-lab.toml`: the 13-node OKD reference lab.
    pub fn okd() -> Self {
        Self::config("okd-lab")
    }

    /// Applies `f` to the wire structs.
    pub fn edit(mut self, f: impl FnOnce(&mut LabFile)) -> Self {
        f(&mut self.file);
        self
    }

    /// Relative directories in the file resolve against `dir`.
    pub fn base(mut self, dir: &Path) -> Self {
        self.base = dir.to_path_buf();
        self
    }

    /// The lab as `lab.toml` text.
    pub fn toml(&self) -> String {
        toml::to_string(&self.file).expect("wire structs serialize")
    }

    /// The compiled inventory; panics with every diagnostic when invalid.
    pub fn build(&self) -> Inventory {
        self.try_build().unwrap_or_else(|d| panic!("{d}"))
    }

    /// The compiled inventory, or its diagnostics.
    pub fn try_build(&self) -> Result<Inventory, bootlab_inventory::Diagnostics> {
        bootlab_inventory::parse_with_base(&self.toml(), Path::new("lab.toml"), &self.base)
    }

    /// Writes the lab to `path` (which then is its base) and returns the path.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.toml()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_configs_round_trip_through_the_wire_structs() {
        for name in ["dev", "okd-lab", "isolated-lab"] {
            let direct =
                bootlab_inventory::load(&config_dir().join(format!("{name}.toml"))).unwrap();
            let built = LabBuilder::config(name).build();
            assert_eq!(direct.nodes(), built.nodes(), "{name}");
            assert_eq!(direct.zones(), built.zones(), "{name}");
            assert_eq!(direct.services(), built.services(), "{name}");
        }
    }

    #[test]
    fn edits_are_typed() {
        let inv = LabBuilder::dev()
            .edit(|f| f.network.pool = None)
            .edit(|f| {
                for p in f.profiles.values_mut() {
                    p.loader = "grub".into();
                }
            })
            .build();
        assert!(inv.network().pool.is_none());
        assert!(
            inv.profiles()
                .values()
                .all(|p| p.loader == bootlab_inventory::Loader::Grub)
        );
    }
}

/// Where a test daemon listens: loopback, one port per service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    /// DHCP (UDP).
    pub dhcp: std::net::SocketAddr,
    /// DNS (UDP and TCP).
    pub dns: std::net::SocketAddr,
    /// TFTP (UDP).
    pub tftp: std::net::SocketAddr,
    /// HTTP (TCP).
    pub http: std::net::SocketAddr,
    /// NTP (UDP).
    pub ntp: std::net::SocketAddr,
}

/// A loopback port free for both TCP and UDP a moment ago.
pub fn free_port() -> u16 {
    loop {
        let t = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = t.local_addr().expect("local addr").port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Listen {
    /// Fresh free loopback ports for every service.
    pub fn free_loopback() -> Self {
        let at = |p: u16| std::net::SocketAddr::from(([127, 0, 0, 1], p));
        Self {
            dhcp: at(free_port()),
            dns: at(free_port()),
            tftp: at(free_port()),
            http: at(free_port()),
            ntp: at(free_port()),
        }
    }
}

impl LabBuilder {
    /// The lab as a test daemon runs it: every service on `listen`, data
    /// and assets under `dir`, no nftables, no NIC lookup, NTP off and no
    /// balancers (tests that want them add them back).
    pub fn local_daemon(self, dir: &Path, listen: &Listen) -> Self {
        let dir = dir.to_path_buf();
        let l = *listen;
        self.edit(move |f| {
            let s = &mut f.services;
            s.listen.dhcp = Some(l.dhcp.to_string());
            s.listen.dns = Some(l.dns.to_string());
            s.listen.tftp = Some(l.tftp.to_string());
            s.listen.http = Some(l.http.to_string());
            s.listen.ntp = Some(l.ntp.to_string());
            s.data_dir = Some(dir.join("data").display().to_string());
            s.assets_dir = Some(dir.join("assets").display().to_string());
            s.firewall = false;
            s.interface = None;
            f.ntp.enable = false;
            f.balancers.clear();
        })
    }

    /// Adds a `[dns].records` entry.
    pub fn record(self, name: &str, rtype: &str, value: &str) -> Self {
        let r = wire::RecordSection {
            name: name.to_owned(),
            rtype: rtype.to_owned(),
            value: value.to_owned(),
            ttl: None,
        };
        self.edit(move |f| f.dns.records.push(r))
    }
}
