//! Request paths under `/assets/`: percent-decoding, then the confinement
//! shared with TFTP ([`bootlab_boot::assets::resolve`]).
//!
//! Decoding happens exactly once. A path that still holds a percent-encoded
//! byte after decoding (`%252e` -> `%2e`) is refused rather than served as a
//! literal name: no legitimate boot asset is named like that, and refusing
//! it leaves no doubt about what a double-encoded `..` means. Bad `%`
//! escapes and non-UTF-8 results are malformed.

use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use bootlab_boot::assets::{self, Refusal};

/// Why an asset path was refused before or during resolution.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A bad `%` escape, or the decoded bytes are not UTF-8.
    #[error("malformed percent-encoding")]
    BadEncoding,
    /// Still percent-encoded after one decoding (double encoding).
    #[error("double percent-encoding")]
    DoubleEncoded,
    /// The shared resolver refused it.
    #[error("{0}")]
    Refused(#[from] Refusal),
}

impl PathError {
    /// A short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadEncoding => "bad_encoding",
            Self::DoubleEncoded => "double_encoding",
            Self::Refused(Refusal::Malformed) => "malformed_path",
            Self::Refused(Refusal::Traversal) => "traversal",
            Self::Refused(Refusal::Escape) => "escape",
            Self::Refused(Refusal::NotFound) => "not_found",
            Self::Refused(Refusal::NotAFile) => "not_a_file",
        }
    }

    /// The status it is answered with: 403 for leaving the root, 400 for
    /// malformed or smuggled paths, 404 for misses.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Refused(Refusal::Traversal | Refusal::Escape) => StatusCode::FORBIDDEN,
            Self::Refused(Refusal::NotFound | Refusal::NotAFile) => StatusCode::NOT_FOUND,
            Self::BadEncoding | Self::DoubleEncoded | Self::Refused(Refusal::Malformed) => {
                StatusCode::BAD_REQUEST
            }
        }
    }

    /// Whether this is an attempt to leave the root or to smuggle a path
    /// (as opposed to a plain miss).
    pub fn is_hostile(&self) -> bool {
        !matches!(
            self,
            Self::Refused(Refusal::NotFound) | Self::Refused(Refusal::NotAFile)
        )
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether `bytes` holds a `%` followed by two hex digits.
fn has_escape(bytes: &[u8]) -> bool {
    bytes
        .windows(3)
        .any(|w| w[0] == b'%' && hex_value(w[1]).is_some() && hex_value(w[2]).is_some())
}

/// Decodes the raw (still percent-encoded) path below `/assets/` once.
pub fn decode(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::BadEncoding);
            };
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    if has_escape(&out) {
        return Err(PathError::DoubleEncoded);
    }
    String::from_utf8(out).map_err(|_| PathError::BadEncoding)
}

/// Decodes `raw` and resolves it to a regular file inside `root`. Blocking
/// (it touches the filesystem).
pub fn resolve_asset(root: &Path, raw: &str) -> Result<(String, PathBuf), PathError> {
    let decoded = decode(raw)?;
    let path = assets::resolve(root, &decoded)?;
    Ok((decoded, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(decode("a/b.img").unwrap(), "a/b.img");
        assert_eq!(decode("a%20b").unwrap(), "a b");
        assert_eq!(decode("%2e%2e/etc").unwrap(), "../etc");
        assert_eq!(decode("%2E%2E%2Fetc").unwrap(), "../etc");
        assert_eq!(decode("%252e%252e"), Err(PathError::DoubleEncoded));
        assert_eq!(decode("%25%32%65"), Err(PathError::DoubleEncoded));
        assert_eq!(decode("%2"), Err(PathError::BadEncoding));
        assert_eq!(decode("%zz"), Err(PathError::BadEncoding));
        assert_eq!(decode("%ff%fe"), Err(PathError::BadEncoding));
        assert_eq!(decode("100%25").unwrap(), "100%");
    }

    #[test]
    fn confinement() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.txt"), b"a").unwrap();
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("out")).unwrap();
        let refused = |raw: &str| resolve_asset(&root, raw).unwrap_err();
        assert!(resolve_asset(&root, "sub/a.txt").is_ok());
        assert!(resolve_asset(&root, "sub%2Fa.txt").is_ok());
        assert_eq!(refused("../secret"), PathError::Refused(Refusal::Traversal));
        assert_eq!(
            refused("%2e%2e/secret"),
            PathError::Refused(Refusal::Traversal)
        );
        assert_eq!(
            refused("sub/%2e%2e%2f%2e%2e/secret"),
            PathError::Refused(Refusal::Traversal)
        );
        assert_eq!(refused("%252e%252e/secret"), PathError::DoubleEncoded);
        assert_eq!(refused("out"), PathError::Refused(Refusal::Escape));
        assert_eq!(
            refused("sub%5ca.txt"),
            PathError::Refused(Refusal::Malformed)
        );
        assert_eq!(
            refused("sub/a.txt%00"),
            PathError::Refused(Refusal::Malformed)
        );
        assert_eq!(refused("sub"), PathError::Refused(Refusal::NotAFile));
        assert!(refused("../secret").is_hostile());
        assert!(!refused("nothing").is_hostile());
    }
}
