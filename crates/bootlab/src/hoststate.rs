//! What the host tool keeps between runs, per lab: the lab's certificates
//! (the CA and the client key never leave the host) and the hash cache of
//! `libvirt.assets_source`.
//!
//! The directory: `$BOOTLAB_STATE_DIR/<lab>` when set; as root
//! `/var/lib/bootlab/host/<lab>`; otherwise `$XDG_STATE_HOME/bootlab/<lab>`
//! (`~/.local/state/bootlab/<lab>`). It is created 0700, keys are 0600.
//! The certificates are made on the first `up` (rcgen) and reused after;
//! the server certificate is reissued (same CA) when `services.ip` or the
//! services VM's name changes.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use bootlab_admin::manifest::Manifest;
use bootlab_admin::pki::{self, LabPki, Leaf, Validity};
use bootlab_inventory::Inventory;

/// The file recording which address and names the server certificate is for.
const SERVER_FOR: &str = "server.for";
/// The assets hash cache.
const ASSETS_CACHE: &str = "assets-manifest.json";

/// The state directory of one lab.
#[derive(Debug, Clone)]
pub struct LabState {
    dir: PathBuf,
    lab: String,
}

/// The base directory of every lab's state.
pub fn base_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BOOTLAB_STATE_DIR") {
        return PathBuf::from(d);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/bootlab/host");
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("bootlab");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/state/bootlab")
}

/// The names the server certificate carries besides `services.ip`.
fn server_names(inv: &Inventory) -> Vec<String> {
    vec![format!("{}.{}", inv.services().name, inv.zone())]
}

fn server_for(inv: &Inventory) -> String {
    format!("{} {}\n", inv.services().ip, server_names(inv).join(" "))
}

impl LabState {
    /// The state of `inv`'s lab (nothing is created yet).
    pub fn of(inv: &Inventory) -> Self {
        Self {
            dir: base_dir().join(&inv.lab().name),
            lab: inv.lab().name.clone(),
        }
    }

    /// The state of the lab named `lab` kept in `dir` (tests, and tools
    /// that keep it elsewhere; nothing is created yet).
    pub fn at(dir: &Path, lab: &str) -> Self {
        Self {
            dir: dir.to_path_buf(),
            lab: lab.to_owned(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lab's certificates when they exist.
    pub fn pki(&self) -> Option<LabPki> {
        LabPki::load(&self.dir, &self.lab).ok()
    }

    /// The lab's certificates, made on first use; the server certificate is
    /// reissued when the services VM's address or name changed. Returns
    /// them and whether anything was written.
    pub fn ensure_pki(&self, inv: &Inventory) -> anyhow::Result<(LabPki, bool)> {
        let want_for = server_for(inv);
        match self.pki() {
            Some(mut p) => {
                let have_for =
                    std::fs::read_to_string(self.dir.join(SERVER_FOR)).unwrap_or_default();
                if have_for == want_for {
                    return Ok((p, false));
                }
                p.server = p.issue(
                    &Leaf::Server {
                        ip: inv.services().ip.into(),
                        names: server_names(inv),
                    },
                    Validity::standard(),
                )?;
                p.save(&self.dir)?;
                pki::write_file_atomic(&self.dir.join(SERVER_FOR), want_for.as_bytes(), 0o644)?;
                Ok((p, true))
            }
            None => {
                let p = LabPki::generate(&self.lab, inv.services().ip.into(), &server_names(inv))?;
                p.save(&self.dir).with_context(|| {
                    format!("saving the lab's certificates in {}", self.dir.display())
                })?;
                pki::write_file_atomic(&self.dir.join(SERVER_FOR), want_for.as_bytes(), 0o644)?;
                Ok((p, true))
            }
        }
    }

    /// The hash cache of the assets source.
    pub fn assets_manifest(&self) -> Manifest {
        Manifest::load(&self.dir.join(ASSETS_CACHE))
    }
}
