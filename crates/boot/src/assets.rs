//! Confinement of requested paths to the assets root, shared by TFTP and
//! HTTP: resolution, not string prefixes. `..`, backslashes, NULs and
//! symlinks that lead outside the root are refused. A leading `/` means the
//! root (as tftpd-hpa's `--secure` and dnsmasq do), never the filesystem root.

use std::path::{Component, Path, PathBuf};

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Empty, NUL, backslash, or over-long.
    #[error("malformed path")]
    Malformed,
    /// A `..` component.
    #[error("path traversal ('..')")]
    Traversal,
    /// Resolves (through a symlink) outside the root.
    #[error("resolves outside the assets root")]
    Escape,
    /// Nothing there.
    #[error("not found")]
    NotFound,
    /// A directory or other non-file.
    #[error("not a regular file")]
    NotAFile,
}

/// Longest request path accepted.
pub const MAX_PATH: usize = 1024;

/// Resolves `requested` (relative to `root`; leading slashes ignored) to a
/// regular file inside the canonical `root`.
pub fn resolve(root: &Path, requested: &str) -> Result<PathBuf, Refusal> {
    if requested.is_empty()
        || requested.len() > MAX_PATH
        || requested.contains('\0')
        || requested.contains('\\')
    {
        return Err(Refusal::Malformed);
    }
    let rel = requested.trim_start_matches('/');
    if rel.is_empty() {
        return Err(Refusal::NotAFile);
    }
    let rel_path = Path::new(rel);
    for c in rel_path.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(Refusal::Traversal),
            Component::RootDir | Component::Prefix(_) => return Err(Refusal::Malformed),
        }
    }
    let root = root.canonicalize().map_err(|_| Refusal::NotFound)?;
    let full = root.join(rel_path);
    let real = full.canonicalize().map_err(|_| Refusal::NotFound)?;
    if !real.starts_with(&root) {
        return Err(Refusal::Escape);
    }
    let meta = std::fs::metadata(&real).map_err(|_| Refusal::NotFound)?;
    if !meta.is_file() {
        return Err(Refusal::NotAFile);
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confinement() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.txt"), b"a").unwrap();
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("out")).unwrap();
        std::os::unix::fs::symlink("sub/a.txt", root.join("in")).unwrap();
        assert!(resolve(&root, "sub/a.txt").is_ok());
        assert!(resolve(&root, "/sub/a.txt").is_ok());
        assert!(resolve(&root, "in").is_ok());
        assert_eq!(resolve(&root, "../secret"), Err(Refusal::Traversal));
        assert_eq!(resolve(&root, "sub/../../secret"), Err(Refusal::Traversal));
        assert_eq!(resolve(&root, "out"), Err(Refusal::Escape));
        assert_eq!(resolve(&root, "sub\\a.txt"), Err(Refusal::Malformed));
        assert_eq!(resolve(&root, "sub/a.txt\0"), Err(Refusal::Malformed));
        assert_eq!(resolve(&root, "sub"), Err(Refusal::NotAFile));
        assert_eq!(resolve(&root, "/etc/passwd"), Err(Refusal::NotFound));
        assert_eq!(resolve(&root, &"a/".repeat(600)), Err(Refusal::Malformed));
    }
}
