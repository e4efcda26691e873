//! Uploads into the assets root, safely: a pushed file is streamed into a
//! temporary file in its own directory, hashed while it is written, fsynced,
//! and renamed over the old file only when it is complete and hashes to what
//! the sender announced; the directory is fsynced after the rename. Anything
//! else (a path leaving the root, a short or long body, a hash mismatch, a
//! full disk) removes the temporary file and leaves the old one serving.
//!
//! Paths are checked by components (no `..`, `.`, empty segments, NUL,
//! backslash, leading `/`), and every directory on the way is checked with
//! `lstat`: a symlink there is refused as an escape, a missing directory is
//! created. Temporary files are named `.bootlab-upload-*`; that prefix is
//! reserved (refused as an upload path, left out of the manifest, removed
//! at start by [`AssetStore::clean_stale_temps`]).

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::wire::hex;

/// Prefix of the temporary files uploads write.
pub const TEMP_PREFIX: &str = ".bootlab-upload-";
/// Longest asset path accepted.
pub const MAX_PATH: usize = 1024;
/// Longest path segment accepted (the usual `NAME_MAX`).
pub const MAX_SEGMENT: usize = 255;

/// Why an upload was refused or failed. The old file keeps serving in
/// every case.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Empty, absolute, `..`, NUL, backslash, too long, reserved name.
    #[error("bad asset path {path:?}: {why}")]
    BadPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A directory on the way is a symlink (or not a directory).
    #[error("asset path {0:?} leads outside the assets root")]
    Escape(String),
    /// The body ended early.
    #[error("the upload ended after {got} of {expected} bytes")]
    Incomplete {
        /// Announced length.
        expected: u64,
        /// Bytes received.
        got: u64,
    },
    /// The body is longer than announced.
    #[error("the upload is longer than the {expected} bytes announced")]
    TooLong {
        /// Announced length.
        expected: u64,
    },
    /// The content does not hash to what was announced.
    #[error("the content hashes to {got}, not the announced {expected}")]
    HashMismatch {
        /// Announced SHA-256.
        expected: String,
        /// What arrived hashes to this.
        got: String,
    },
    /// The file system is full.
    #[error("no space left on the assets file system ({needed} needed, {available} available)")]
    NoSpace {
        /// Bytes the upload needs (`unknown` without a length).
        needed: String,
        /// Bytes available when it was refused.
        available: u64,
    },
    /// Any other I/O error.
    #[error("{0}")]
    Io(#[from] io::Error),
}

fn bad(path: &str, why: &'static str) -> StoreError {
    StoreError::BadPath {
        path: path.to_owned(),
        why,
    }
}

/// The segments of a relative asset path, or why it is refused.
pub fn check_path(rel: &str) -> Result<Vec<&str>, StoreError> {
    if rel.is_empty() {
        return Err(bad(rel, "empty"));
    }
    if rel.len() > MAX_PATH {
        return Err(bad(rel, "longer than 1024 bytes"));
    }
    if rel.contains('\0') || rel.contains('\\') {
        return Err(bad(rel, "NUL or backslash"));
    }
    if rel.starts_with('/') {
        return Err(bad(rel, "absolute"));
    }
    let segs: Vec<&str> = rel.split('/').collect();
    for s in &segs {
        match *s {
            "" => return Err(bad(rel, "empty segment")),
            "." => return Err(bad(rel, "a '.' segment")),
            ".." => return Err(bad(rel, "a '..' segment")),
            s if s.len() > MAX_SEGMENT => return Err(bad(rel, "a segment over 255 bytes")),
            s if s.starts_with(TEMP_PREFIX) => return Err(bad(rel, "a reserved name")),
            _ => {}
        }
    }
    Ok(segs)
}

/// Bytes available to an unprivileged writer on the file system of `dir`.
pub fn available_bytes(dir: &Path) -> io::Result<u64> {
    let s = nix::sys::statvfs::statvfs(dir).map_err(io::Error::from)?;
    Ok(s.blocks_available().saturating_mul(s.fragment_size()))
}

/// Total bytes of the file system of `dir`.
pub fn total_bytes(dir: &Path) -> io::Result<u64> {
    let s = nix::sys::statvfs::statvfs(dir).map_err(io::Error::from)?;
    Ok(s.blocks().saturating_mul(s.fragment_size()))
}

fn is_no_space(e: &io::Error) -> bool {
    let code = e.raw_os_error();
    code == Some(nix::errno::Errno::ENOSPC as i32) || code == Some(nix::errno::Errno::EDQUOT as i32)
}

/// The assets root uploads go into.
#[derive(Debug, Clone)]
pub struct AssetStore {
    root: PathBuf,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl AssetStore {
    /// The store at `root` (created when missing).
    pub fn new(root: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(root)?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes temporary files a crash or power cut left behind. Returns
    /// how many.
    pub fn clean_stale_temps(&self) -> io::Result<usize> {
        let mut n = 0;
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir)?.flatten() {
                let ft = e.file_type()?;
                if ft.is_dir() {
                    stack.push(e.path());
                } else if e.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                    std::fs::remove_file(e.path())?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// The directory an upload of `rel` lands in, created as needed;
    /// refuses symlinks and non-directories on the way.
    fn parent_dir(&self, rel: &str, segs: &[&str]) -> Result<PathBuf, StoreError> {
        let mut cur = self.root.clone();
        for s in &segs[..segs.len() - 1] {
            cur.push(s);
            match std::fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(StoreError::Escape(rel.to_owned()));
                }
                Ok(_) => return Err(bad(rel, "a parent is not a directory")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => match std::fs::create_dir(&cur) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        let m = std::fs::symlink_metadata(&cur)?;
                        if !m.file_type().is_dir() {
                            return Err(StoreError::Escape(rel.to_owned()));
                        }
                    }
                    Err(e) if is_no_space(&e) => {
                        return Err(StoreError::NoSpace {
                            needed: "a directory".into(),
                            available: available_bytes(&self.root).unwrap_or(0),
                        });
                    }
                    Err(e) => return Err(e.into()),
                },
                Err(e) => return Err(e.into()),
            }
        }
        Ok(cur)
    }

    /// Starts an upload of `rel` that must hash to `sha256` (and be `size`
    /// bytes, when the sender said). Checks the path and, with a size, the
    /// free space before any byte is written.
    pub fn begin(&self, rel: &str, size: Option<u64>, sha256: &str) -> Result<Upload, StoreError> {
        let segs = check_path(rel)?;
        let dir = self.parent_dir(rel, &segs)?;
        let dest = dir.join(segs[segs.len() - 1]);
        if let Ok(m) = std::fs::symlink_metadata(&dest) {
            if m.file_type().is_dir() {
                return Err(bad(rel, "a directory is there"));
            }
        }
        if let Some(n) = size {
            let available = available_bytes(&dir)?;
            if n > available {
                return Err(StoreError::NoSpace {
                    needed: n.to_string(),
                    available,
                });
            }
        }
        let temp = dir.join(format!(
            "{TEMP_PREFIX}{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temp)
            .map_err(|e| {
                if is_no_space(&e) {
                    StoreError::NoSpace {
                        needed: size.map_or_else(|| "unknown".into(), |n| n.to_string()),
                        available: available_bytes(&dir).unwrap_or(0),
                    }
                } else {
                    e.into()
                }
            })?;
        Ok(Upload {
            rel: rel.to_owned(),
            file: Some(file),
            temp,
            dest,
            dir,
            hasher: ring::digest::Context::new(&ring::digest::SHA256),
            written: 0,
            size,
            sha256: sha256.to_owned(),
            done: false,
        })
    }
}

/// A file stored by [`Upload::commit`].
#[derive(Debug)]
pub struct Stored {
    /// Path under the root.
    pub rel: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// The new file's metadata (for the manifest cache).
    pub metadata: Metadata,
}

/// An upload in progress. Dropping it without [`Upload::commit`] removes
/// the temporary file.
pub struct Upload {
    rel: String,
    file: Option<File>,
    temp: PathBuf,
    dest: PathBuf,
    dir: PathBuf,
    hasher: ring::digest::Context,
    written: u64,
    size: Option<u64>,
    sha256: String,
    done: bool,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("rel", &self.rel)
            .field("temp", &self.temp)
            .field("written", &self.written)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Upload {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn no_space(&self) -> StoreError {
        StoreError::NoSpace {
            needed: self
                .size
                .map_or_else(|| "unknown".into(), |n| n.to_string()),
            available: available_bytes(&self.dir).unwrap_or(0),
        }
    }

    /// Appends `chunk`.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        let after = self.written + chunk.len() as u64;
        if let Some(expected) = self.size {
            if after > expected {
                return Err(StoreError::TooLong { expected });
            }
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("closed"))?;
        if let Err(e) = file.write_all(chunk) {
            return Err(if is_no_space(&e) {
                self.no_space()
            } else {
                e.into()
            });
        }
        self.hasher.update(chunk);
        self.written = after;
        Ok(())
    }

    /// Checks length and hash, makes the file durable and renames it into
    /// place (then fsyncs the directory).
    pub fn commit(mut self) -> Result<Stored, StoreError> {
        if let Some(expected) = self.size {
            if self.written != expected {
                return Err(StoreError::Incomplete {
                    expected,
                    got: self.written,
                });
            }
        }
        let got = hex(self.hasher.clone().finish().as_ref());
        if got != self.sha256 {
            return Err(StoreError::HashMismatch {
                expected: self.sha256.clone(),
                got,
            });
        }
        let file = self.file.take().ok_or_else(|| io::Error::other("closed"))?;
        if let Err(e) = file.sync_all() {
            return Err(if is_no_space(&e) {
                self.no_space()
            } else {
                e.into()
            });
        }
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        drop(file);
        std::fs::rename(&self.temp, &self.dest)?;
        self.done = true;
        File::open(&self.dir)?.sync_all()?;
        let metadata = std::fs::symlink_metadata(&self.dest)?;
        Ok(Stored {
            rel: self.rel.clone(),
            size: self.written,
            sha256: got,
            metadata,
        })
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.done {
            self.file.take();
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::sha256_hex;

    #[test]
    fn paths() {
        for ok in ["a", "a/b.img", ".treeinfo", "fcos/x-1.2_3~4"] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for no in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "a/./b",
            "a\\b",
            "a\0b",
            ".bootlab-upload-1",
            "d/.bootlab-upload-x",
        ] {
            assert!(check_path(no).is_err(), "{no:?}");
        }
        assert!(check_path(&"a/".repeat(600)).is_err());
        assert!(check_path(&"x".repeat(256)).is_err());
    }

    #[test]
    fn upload_replaces_only_when_complete_and_matching() {
        let dir = tempfile::tempdir().unwrap();
        let store = AssetStore::new(&dir.path().join("root")).unwrap();
        let root = store.root().to_path_buf();
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("d/f"), b"old").unwrap();
        let new = b"new content";
        let h = sha256_hex(new);

        // wrong hash
        let mut u = store
            .begin("d/f", Some(new.len() as u64), &"0".repeat(64))
            .unwrap();
        u.write(new).unwrap();
        assert!(matches!(u.commit(), Err(StoreError::HashMismatch { .. })));
        // short
        let mut u = store.begin("d/f", Some(new.len() as u64 + 1), &h).unwrap();
        u.write(new).unwrap();
        assert!(matches!(u.commit(), Err(StoreError::Incomplete { .. })));
        // long
        let mut u = store.begin("d/f", Some(3), &h).unwrap();
        assert!(matches!(u.write(new), Err(StoreError::TooLong { .. })));
        drop(u);
        // abandoned half-way
        let mut u = store.begin("d/f", Some(new.len() as u64), &h).unwrap();
        u.write(&new[..4]).unwrap();
        drop(u);
        assert_eq!(std::fs::read(root.join("d/f")).unwrap(), b"old");
        assert_eq!(
            std::fs::read_dir(root.join("d")).unwrap().count(),
            1,
            "no temp left"
        );

        let mut u = store.begin("d/f", Some(new.len() as u64), &h).unwrap();
        u.write(&new[..4]).unwrap();
        u.write(&new[4..]).unwrap();
        let s = u.commit().unwrap();
        assert_eq!(s.sha256, h);
        assert_eq!(std::fs::read(root.join("d/f")).unwrap(), new);
        // nested directories are created
        let mut u = store.begin("x/y/z", None, &sha256_hex(b"")).unwrap();
        u.write(b"").unwrap();
        u.commit().unwrap();
        assert!(root.join("x/y/z").is_file());
    }

    #[test]
    fn symlinked_directories_are_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let store = AssetStore::new(&dir.path().join("root")).unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, store.root().join("link")).unwrap();
        let e = store
            .begin("link/f", Some(1), &sha256_hex(b"x"))
            .unwrap_err();
        assert!(matches!(e, StoreError::Escape(_)), "{e}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn stale_temps_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = AssetStore::new(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/.bootlab-upload-9-9"), b"x").unwrap();
        std::fs::write(dir.path().join("a/keep"), b"x").unwrap();
        assert_eq!(store.clean_stale_temps().unwrap(), 1);
        assert!(dir.path().join("a/keep").exists());
    }
}
