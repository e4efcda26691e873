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
