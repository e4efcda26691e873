//! The bootlab inventory: one `lab.toml` describes a whole network-boot lab.
//!
//! # Layout
//! - [`wire`]: serde structs mirroring the file, unknown keys rejected.
//! - [`validate`](crate::parse): wire -> [`Inventory`], reporting *every* problem
//!   with file, line, column, field path and what to do ([`Diagnostics`]).
//! - [`model`]: the validated model.
//! - [`views`]: derived views (DHCP reservations, zones, boot profiles, VM specs).
//! - [`values`]: MAC addresses, sizes, durations, DNS name checks.
//!
//! ```
//! let text = std::fs::read_to_string("../../config/okd-lab.toml").unwrap();
//! let inv = bootlab_inventory::parse(&text, "okd-lab.toml".as_ref()).unwrap();
//! assert_eq!(inv.nodes.len(), 13);
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod diag;
pub mod model;
pub mod template;
mod validate;
pub mod values;
pub mod views;
pub mod wire;

use std::path::{Path, PathBuf};

pub use diag::{Diagnostic, Diagnostics, FieldPath, Segment};
pub use model::*;
pub use validate::DEFAULT_TTL;
pub use values::MacAddr;
pub use views::{BootProfile, HostRef, NicSpec, Reservation, VmSpec, Zone, ZoneRecord, ZoneSet};

use diag::SourceMap;

/// The default inventory path of the daemon.
pub const DEFAULT_DAEMON_CONFIG: &str = "/etc/bootlab/lab.toml";

/// Why an inventory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file was read but is not a valid inventory.
    #[error("{0}")]
    Invalid(Diagnostics),
}

/// Reads and validates an inventory file. Relative directories inside it
/// (`services.data_dir`, `services.assets_dir`) are resolved against the
/// file's own directory.
pub fn load(path: &Path) -> Result<Inventory, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."));
    let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
    parse_with_base(&text, path, &base).map_err(LoadError::Invalid)
}

/// Parses and validates inventory text; `file` names it in diagnostics and
/// relative directories resolve against the current directory.
pub fn parse(text: &str, file: &Path) -> Result<Inventory, Diagnostics> {
    let base = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    parse_with_base(text, file, &base)
}

/// Parses and validates inventory text, resolving relative directories
/// against `base_dir`.
pub fn parse_with_base(text: &str, file: &Path, base_dir: &Path) -> Result<Inventory, Diagnostics> {
    let map = SourceMap::new(file, text);
    let wire: wire::LabFile = match toml::from_str(text) {
        Ok(w) => w,
        Err(e) => return Err(Diagnostics(vec![wire_error(&map, &e)])),
    };
    validate::validate(&wire, &map, base_dir).map_err(Diagnostics)
}

/// Turns a TOML syntax or shape error into a located diagnostic.
fn wire_error(map: &SourceMap<'_>, e: &toml::de::Error) -> Diagnostic {
    let span = e.span();
    let path = span
        .as_ref()
        .map_or_else(FieldPath::root, |s| map.path_at(s.start));
    let raw = e.message().trim().to_owned();
    let (message, help) = if let Some(rest) = raw.strip_prefix("unknown field ") {
        let (field, expected) = rest.split_once(", expected").unwrap_or((rest, ""));
        (
            format!("unknown key {field}"),
            if expected.is_empty() {
                "remove it; lab.example.toml lists every key".to_owned()
            } else {
                format!(
                    "remove or rename it; expected{}",
                    expected.trim_end_matches('.')
                )
            },
        )
    } else if raw.starts_with("missing field") {
        (
            raw.clone(),
            "add it; lab.example.toml shows every required key".to_owned(),
        )
    } else if raw.starts_with("invalid type") {
        (
            raw.clone(),
            "check the value's type (string, integer, array, table)".to_owned(),
        )
    } else {
        (raw.clone(), "fix the TOML at this position".to_owned())
    };
    map.at_span(span, path, message, &help)
}
