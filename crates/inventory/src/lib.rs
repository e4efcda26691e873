//! The bootlab inventory: one `lab.toml` describes a whole network-boot lab.
//!
//! This crate owns the inventory: parsing, validation with located
//! diagnostics, and the compiled [`Inventory`] every service and the host
//! tool read. It imports no other crate of ours.
//!
//! # Layout
//! - [`wire`]: serde structs mirroring the file, unknown keys rejected.
//! - `validate`: wire -> [`Inventory`], one module per section, reporting
//!   *every* problem with file, line, column, field path, the source line
//!   and what to do ([`Diagnostics`]); warnings for OKD pitfalls.
//! - [`defaults`]: every default value, in one table.
//! - [`Inventory`] (`compiled`): immutable, built once: hosts with FQDNs,
//!   MAC and address indexes, each node's rendered boot profile, the HTTP
//!   base and assets URLs, the zones.
//! - [`model`]: the parts of the validated model.
//! - [`views`]: zones, VM specs, the egress host list.
//! - [`values`]: MAC addresses, sizes, durations, DNS name checks.
//!
//! ```
//! let text = std::fs::read_to_string("../../config/okd-lab.toml").unwrap();
//! let inv = bootlab_inventory::parse(&text, "okd-lab.toml".as_ref()).unwrap();
//! assert_eq!(inv.nodes().len(), 13);
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod assets;
mod compiled;
pub mod defaults;
mod diag;
pub mod model;
pub mod template;
mod validate;
pub mod values;
pub mod views;
pub mod wire;

use std::path::{Path, PathBuf};

pub use assets::MissingAsset;
pub use compiled::Inventory;
pub use diag::{Diagnostic, Diagnostics, FieldPath, Segment, Severity, SourceLine, did_you_mean};
pub use model::*;
pub use values::MacAddr;
pub use views::{NicSpec, VmSpec, Zone, ZoneRecord, ZoneSet};

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

/// Turns a TOML syntax or shape error into a located diagnostic, in the
/// user's words: "did you mean" for unknown keys, types named as TOML
/// writes them, the parser's own position.
fn wire_error(map: &SourceMap<'_>, e: &toml::de::Error) -> Diagnostic {
    let span = e.span();
    let path = span
        .as_ref()
        .map_or_else(FieldPath::root, |s| map.path_at(s.start));
    let raw = e.message().trim().to_owned();
    let reference = defaults::REFERENCE;
    let (message, help) = if let Some(rest) = raw.strip_prefix("unknown field ") {
        let (field, expected) = rest.split_once(", expected").unwrap_or((rest, ""));
        let field = field.trim_matches('`');
        let known: Vec<&str> = expected
            .split(['`', ',', ' '])
            .filter(|w| !w.is_empty() && *w != "one" && *w != "of" && *w != "or")
            .collect();
        let help = match did_you_mean(field, known.iter().copied()) {
            Some(m) => format!("did you mean `{m}`?"),
            None if known.is_empty() => format!("remove it; {reference} list every key"),
            None => format!("remove or rename it; expected one of: {}", known.join(", ")),
        };
        (format!("unknown key `{field}`"), help)
    } else if let Some(rest) = raw.strip_prefix("missing field ") {
        (
            format!("missing key {rest}"),
            format!("add it; {reference} show every required key"),
        )
    } else if let Some(rest) = raw.strip_prefix("invalid type: ") {
        let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
        (
            format!(
                "expected {}, found {}",
                user_words(expected),
                found_words(found)
            ),
            "write the value as TOML does: \"text\" in quotes, 42, true, [\"a\", \"b\"], { key = \"v\" }".to_owned(),
        )
    } else if let Some(rest) = raw.strip_prefix("invalid value: ") {
        let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
        (
            format!(
                "expected {}, found {}",
                user_words(expected),
                found_words(found)
            ),
            "write a value in the range shown".to_owned(),
        )
    } else if raw.contains("did not match any variant of untagged enum VarValue") {
        (
            "expected a string, number or boolean".to_owned(),
            "template vars are plain values: \"text\", 42 or true".to_owned(),
        )
    } else {
        (raw.clone(), "fix the TOML at this position".to_owned())
    };
    map.at_span(span, path, message, &help)
}

/// serde's name for an expected type, as a lab.toml author would say it.
fn user_words(expected: &str) -> String {
    let e = expected.trim().trim_end_matches('.');
    match e {
        "u8" => "a whole number from 0 to 255".into(),
        "u16" => "a whole number from 0 to 65535".into(),
        "u32" => "a whole number from 0 to 4294967295".into(),
        "u64" | "usize" => "a whole number".into(),
        "i64" | "i32" => "a number".into(),
        "a boolean" | "bool" => "true or false".into(),
        "a string" => "a string in quotes".into(),
        "a sequence" => "an array such as [\"a\", \"b\"]".into(),
        "a map" => "a table".into(),
        other if other.starts_with("struct ") => "a table".into(),
        other => other.to_owned(),
    }
}

/// serde's description of what it found, in TOML's words.
fn found_words(found: &str) -> String {
    let f = found.trim();
    if let Some(v) = f.strip_prefix("string ") {
        format!("the string {v}")
    } else if let Some(v) = f.strip_prefix("integer ") {
        format!("the number {}", v.trim_matches('`'))
    } else if let Some(v) = f.strip_prefix("floating point ") {
        format!("the number {}", v.trim_matches('`'))
    } else if let Some(v) = f.strip_prefix("boolean ") {
        v.trim_matches('`').to_owned()
    } else if f == "sequence" {
        "an array".into()
    } else if f == "map" {
        "a table".into()
    } else {
        f.trim_matches('`').to_owned()
    }
}
