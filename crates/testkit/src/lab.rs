//! A typed lab builder: the shipped configs (or the namespace tests'
//! one-node lab, `crates/testkit/labs/netns.toml`) as wire structs that
//! tests edit field by field, then compile (or write out for a daemon to
//! load); and [`LabDir`], a temporary directory with an assets root.

use std::path::{Path, PathBuf};

use bootlab_inventory::Inventory;
pub use bootlab_inventory::wire::{self, LabFile};

/// The workspace's `config/` directory.
pub fn config_dir() -> PathBuf {
    crate::repo_root().join("config")
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
        Self::from_path(&config_dir().join(format!("{name}.toml")))
    }

    /// The lab in `path`; relative directories resolve against its folder.
    pub fn from_path(path: &Path) -> Self {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let file: LabFile =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self { file, base }
    }

    /// The namespace tests' one-node lab (`crates/testkit/labs/netns.toml`):
    /// `nt.lab.test` on 10.77.0.0/24, services 10.77.0.254
    /// (52:54:00:4d:00:fe), node `node-a` (52:54:00:4d:00:10, 10.77.0.10)
    /// of role `worker` with profile `tiny`, no pool, no nftables. Point its
    /// directories somewhere with [`LabBuilder::dirs`].
    pub fn netns() -> Self {
        Self::from_path(&Path::new(env!("CARGO_MANIFEST_DIR")).join("labs/netns.toml"))
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

    /// `services.data_dir` = `dir/data`, `services.assets_dir` = `dir/assets`.
    pub fn dirs(self, dir: &Path) -> Self {
        self.data_dir(&dir.join("data"))
            .assets_dir(&dir.join("assets"))
    }

    /// `services.assets_dir` = `dir`.
    pub fn assets_dir(self, dir: &Path) -> Self {
        let dir = dir.display().to_string();
        self.edit(|f| f.services.assets_dir = Some(dir))
    }

    /// `services.data_dir` = `dir`.
    pub fn data_dir(self, dir: &Path) -> Self {
        let dir = dir.display().to_string();
        self.edit(|f| f.services.data_dir = Some(dir))
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
    fn the_netns_lab_compiles_and_takes_its_directories() {
        let dir = Path::new("/tmp/bootlab-testkit-unit");
        let inv = LabBuilder::netns().dirs(dir).build();
        assert_eq!(inv.nodes().len(), 1);
        assert_eq!(inv.services().assets_dir, dir.join("assets"));
        assert_eq!(inv.services().ip.to_string(), "10.77.0.254");
    }

    #[test]
    fn a_lab_dir_holds_assets() {
        let d = LabDir::new();
        assert!(d.assets.is_dir());
        assert_eq!(d.asset("a/b.bin", vec![1, 2]), [1, 2]);
        assert_eq!(std::fs::read(d.assets.join("a/b.bin")).unwrap(), [1, 2]);
        assert_eq!(d.path("x"), d.dir.path().join("x"));
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

impl Listen {
    /// Free loopback ports for every service, for a daemon that binds them
    /// itself (or only checks its inventory); a running test daemon gets
    /// its sockets from [`crate::Sockets`] instead.
    pub fn free_loopback() -> Self {
        use crate::net::free_port;
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

/// A temporary directory with an (empty) `assets/` root, removed on drop.
#[derive(Debug)]
pub struct LabDir {
    /// The directory (scratch files, `data/`, `lab.toml` go here).
    pub dir: tempfile::TempDir,
    /// `dir/assets`, created.
    pub assets: PathBuf,
}

impl LabDir {
    /// A fresh one.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let assets = dir.path().join("assets");
        std::fs::create_dir_all(&assets).expect("assets dir");
        Self { dir, assets }
    }

    /// `dir/name` (not created).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `assets/name` (parents created) and returns its bytes.
    pub fn asset(&self, name: &str, bytes: Vec<u8>) -> Vec<u8> {
        let path = self.assets.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("asset parent");
        }
        std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        bytes
    }

    /// `lab` with its data and assets here ([`LabBuilder::dirs`]).
    pub fn lab(&self, lab: LabBuilder) -> LabBuilder {
        lab.dirs(self.dir.path())
    }
}

impl Default for LabDir {
    fn default() -> Self {
        Self::new()
    }
}
