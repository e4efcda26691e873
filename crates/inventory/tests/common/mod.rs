//! Helpers shared by the validation tests: a base inventory text edited
//! in one place, its errors, and assertions on one located error.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;

use bootlab_inventory::{Diagnostic, parse};

/// `base` with `from` replaced by `to` (which must occur exactly once).
pub fn edit_of(base: &str, from: &str, to: &str) -> String {
    assert_eq!(
        base.matches(from).count(),
        1,
        "{from:?} must occur once in the base inventory"
    );
    base.replacen(from, to, 1)
}

/// The errors of an inventory that must not load.
pub fn errors(text: &str) -> Vec<Diagnostic> {
    match parse(text, Path::new("lab.toml")) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(d) => d.0,
    }
}

/// 1-based line of the first line of `text` containing `needle`.
pub fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in text"));
    text[..at].matches('\n').count() + 1
}

/// Every diagnostic, one per line (for assertion messages).
pub fn list(errs: &[Diagnostic]) -> String {
    errs.iter().map(|e| format!("{e}\n")).collect()
}

/// Asserts exactly one error, at `path`, whose message contains `msg` and
/// that says what to do. Returns it.
#[track_caller]
pub fn the_error(text: &str, path: &str, msg: &str) -> Diagnostic {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "expected one error, got:\n{}", list(&errs));
    let e = errs.into_iter().next().unwrap();
    assert_eq!(e.path.to_string(), path, "{e}");
    assert!(
        e.message.contains(msg),
        "message {:?} lacks {msg:?}",
        e.message
    );
    assert!(!e.help.is_empty(), "every diagnostic says what to do: {e}");
    assert_eq!(e.file, Path::new("lab.toml"));
    e
}
