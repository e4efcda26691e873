//! Which inventory bootlabd serves: the installed one (`--config`) or the
//! last one pushed through the admin API, kept on the data disk as
//! `data_dir/admin/lab.toml` next to `lab.toml.base`, the generation of the
//! installed file it was pushed over.
//!
//! The rule, applied at start and on every SIGHUP: the pushed inventory is
//! served while the installed file is still the one it was pushed over;
//! once the installed file changes (a re-install with a new payload, an
//! edit and `systemctl reload`), the installed file is newer and wins, and
//! the stale push is removed. So a reboot keeps the last push, and a
//! re-install or a hand edit is never shadowed by an old push.
//!
//! A pushed file is parsed as if it were at the `--config` path (relative
//! `data_dir`/`assets_dir` resolve against that directory), so a push and
//! SIGHUP validate identically.

use std::path::{Path, PathBuf};

use bootlab_admin::layout;
use bootlab_admin::wire::{InventorySource, generation};
use bootlab_inventory::{Diagnostics, Inventory, LoadError};
use tracing::{info, warn};

/// An inventory loaded, with where it came from.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// The validated inventory.
    pub inv: Inventory,
    /// Its generation (SHA-256 of its bytes).
    pub generation: String,
    /// Installed or pushed.
    pub source: InventorySource,
}

/// The installed inventory and its pushed overlay.
#[derive(Debug, Clone)]
pub(crate) struct ConfigSource {
    installed: PathBuf,
}

impl ConfigSource {
    pub(crate) fn new(installed: &Path) -> Self {
        Self {
            installed: installed.to_path_buf(),
        }
    }

    /// The `--config` path.
    pub(crate) fn installed(&self) -> &Path {
        &self.installed
    }

    /// The directory relative paths in any inventory resolve against.
    fn base_dir(&self) -> PathBuf {
        let parent = self
            .installed
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf())
    }

    /// Validates `text` exactly as a file at the `--config` path would be;
    /// `name` names it in diagnostics.
    pub(crate) fn parse(&self, text: &str, name: &Path) -> Result<Inventory, Diagnostics> {
        bootlab_inventory::parse_with_base(text, name, &self.base_dir())
    }

    /// The installed file's bytes.
    fn read_installed(&self) -> Result<Vec<u8>, LoadError> {
        std::fs::read(&self.installed).map_err(|source| LoadError::Io {
            path: self.installed.clone(),
            source,
        })
    }

    /// Loads what should be served now (see the module doc). Fails only
    /// when the installed file itself is unreadable or invalid.
    pub(crate) fn load(&self) -> Result<Loaded, LoadError> {
        let installed_text = self.read_installed()?;
        let inv = bootlab_inventory::load(&self.installed)?;
        let installed_gen = generation(&installed_text);
        let dir = layout::admin_dir(&inv.services().data_dir);
        let pushed = dir.join(layout::PUSHED_INVENTORY);
        let base = dir.join(layout::PUSHED_BASE);
        let installed = Loaded {
            inv,
            generation: installed_gen.clone(),
            source: InventorySource::Installed,
        };
        let Ok(pushed_text) = std::fs::read(&pushed) else {
            return Ok(installed);
        };
        let base_gen = std::fs::read_to_string(&base).unwrap_or_default();
        if base_gen.trim() != installed_gen {
            info!(
                installed = %self.installed.display(),
                "the installed inventory changed since the last push: serving it, removing the old push"
            );
            let _ = std::fs::remove_file(&base);
            let _ = std::fs::remove_file(&pushed);
            return Ok(installed);
        }
        let text = match std::str::from_utf8(&pushed_text) {
            Ok(t) => t,
            Err(_) => {
                warn!(file = %pushed.display(), "the pushed inventory is not UTF-8; serving the installed one");
                return Ok(installed);
            }
        };
        match self.parse(text, &pushed) {
            Ok(inv) => {
                if inv.services().data_dir != installed.inv.services().data_dir {
                    warn!(
                        "the pushed inventory moves services.data_dir; serving the installed one"
                    );
                    return Ok(installed);
                }
                info!(file = %pushed.display(), "serving the inventory pushed through the admin API");
                Ok(Loaded {
                    inv,
                    generation: generation(&pushed_text),
                    source: InventorySource::Pushed,
                })
            }
            Err(diags) => {
                warn!(
                    "the pushed inventory {} no longer validates; serving the installed one:\n{diags}",
                    pushed.display()
                );
                Ok(installed)
            }
        }
    }

    /// Keeps a validated push on the data disk (atomically: temporary
    /// file, fsync, rename; then the base).
    pub(crate) fn persist_push(&self, data_dir: &Path, text: &[u8]) -> std::io::Result<()> {
        let installed_gen = generation(&self.read_installed().map_err(|e| match e {
            LoadError::Io { source, .. } => source,
            other => std::io::Error::other(other.to_string()),
        })?);
        let dir = layout::admin_dir(data_dir);
        bootlab_admin::pki::create_private_dir(&dir)?;
        bootlab_admin::pki::write_file_atomic(&dir.join(layout::PUSHED_INVENTORY), text, 0o644)?;
        bootlab_admin::pki::write_file_atomic(
            &dir.join(layout::PUSHED_BASE),
            format!("{installed_gen}\n").as_bytes(),
            0o644,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab(data: &Path, domain: &str) -> String {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/dev.toml"),
        )
        .unwrap();
        let mut v: toml::Value = toml::from_str(&text).unwrap();
        v["services"]["data_dir"] = toml::Value::String(data.display().to_string());
        v["services"]["assets_dir"] =
            toml::Value::String(data.join("assets").display().to_string());
        v["lab"]["domain"] = toml::Value::String(domain.into());
        toml::to_string(&v).unwrap()
    }

    #[test]
    fn a_push_is_served_until_the_installed_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let cfg = dir.path().join("lab.toml");
        std::fs::write(&cfg, lab(&data, "one.test")).unwrap();
        let src = ConfigSource::new(&cfg);
        let l = src.load().unwrap();
        assert_eq!(l.source, InventorySource::Installed);

        let pushed = lab(&data, "two.test");
        src.persist_push(&data, pushed.as_bytes()).unwrap();
        let l = src.load().unwrap();
        assert_eq!(l.source, InventorySource::Pushed);
        assert_eq!(l.generation, generation(pushed.as_bytes()));
        assert_eq!(l.inv.lab().domain, "two.test");

        // a re-install (new --config file): the installed one wins, the
        // stale push is gone
        std::fs::write(&cfg, lab(&data, "three.test")).unwrap();
        let l = src.load().unwrap();
        assert_eq!(l.source, InventorySource::Installed);
        assert_eq!(l.inv.lab().domain, "three.test");
        assert!(
            !layout::admin_dir(&data)
                .join(layout::PUSHED_INVENTORY)
                .exists()
        );
    }
}
