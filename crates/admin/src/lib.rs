//! bootlab's admin API: how the host tool brings a running services VM to
//! the inventory without rebuilding or rebooting it. This crate owns the
//! protocol, the lab's certificates, the assets manifest, safe uploads, the
//! mutual-TLS server bootlabd runs and the blocking client `bootlab` uses.
//! It imports only `inventory` (for the services view) and `netio` (the
//! log gate), so both programs can link it.
//!
//! # Layout
//! - [`wire`]: paths, headers and the JSON documents (`GET /v1/state`,
//!   `PUT /v1/inventory`, `PUT /v1/assets/<path>`), the generation hash.
//! - [`pki`]: the lab CA, server and client certificates (rcgen), the
//!   rustls configurations (client certificates required), key files 0600.
//! - [`manifest`]: path -> size + SHA-256 of a root, hashing each file
//!   once (a stat per file after that).
//! - [`store`]: an upload into a temporary file in the target directory,
//!   hashed while written, fsynced, renamed into place only when complete
//!   and matching.
//! - [`server`]: the HTTPS server over a [`server::Backend`] (bootlabd's
//!   validate-persist-reload), with connection, handshake and body limits.
//! - [`client`]: the host's blocking client (TCP or a Unix socket at the
//!   end of an SSH tunnel).
//! - [`facts`]: boot id, uptime, memory and file systems for the state.
//! - [`layout`]: where the services VM keeps the admin files.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod client;
pub mod facts;
pub mod manifest;
pub mod pki;
pub mod server;
pub mod store;
pub mod wire;

/// Where the services VM keeps the admin API's files: `data_dir/admin/`.
pub mod layout {
    use std::path::{Path, PathBuf};

    /// The directory under `services.data_dir`.
    pub const ADMIN_SUBDIR: &str = "admin";
    /// The last inventory pushed (served instead of `--config` while
    /// [`PUSHED_BASE`] names the `--config` file's generation).
    pub const PUSHED_INVENTORY: &str = "lab.toml";
    /// The generation of the `--config` file a push replaced.
    pub const PUSHED_BASE: &str = "lab.toml.base";
    /// The assets manifest's hash cache.
    pub const MANIFEST_CACHE: &str = "manifest.json";

    /// `data_dir/admin`.
    pub fn admin_dir(data_dir: &Path) -> PathBuf {
        data_dir.join(ADMIN_SUBDIR)
    }
}
