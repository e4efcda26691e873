//! The assets manifest: every file under a root with its size and SHA-256,
//! kept up to date cheaply. A file is hashed once; after that its cached
//! hash is reused while its size, mtime, ctime, inode and device stay the
//! same (what `git`'s index and `rsync` rely on), so listing a root holding
//! a 1 GiB rootfs costs one `stat` per file, not a 1 GiB read. Uploads
//! record the hash they computed while writing ([`Manifest::record`]).
//!
//! Both sides use it: bootlabd for `GET /v1/state` (cache in
//! `data_dir/admin/manifest.json`), the host tool for
//! `libvirt.assets_source` (cache in its state directory, symlinks
//! followed there: users link files into their assets directory).
//!
//! The cache file is only a cache: a missing or unreadable one means
//! "hash everything again".

use std::collections::{BTreeMap, BTreeSet};
use std::fs::Metadata;
use std::io::{self, Read as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::TEMP_PREFIX;
use crate::wire::{AssetEntry, hex};

/// What identifies an unchanged file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Cached {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
    dev: u64,
    sha256: String,
}

impl Cached {
    fn of(meta: &Metadata, sha256: String) -> Self {
        Self {
            size: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
            ino: meta.ino(),
            dev: meta.dev(),
            sha256,
        }
    }

    fn matches(&self, meta: &Metadata) -> bool {
        let now = Cached::of(meta, String::new());
        self.size == now.size
            && self.mtime_ns == now.mtime_ns
            && self.ctime_ns == now.ctime_ns
            && self.ino == now.ino
            && self.dev == now.dev
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    files: BTreeMap<String, Cached>,
}

const CACHE_VERSION: u32 = 1;

/// One listing of a root.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Every regular file, by path.
    pub entries: Vec<AssetEntry>,
    /// Files hashed in this scan (new or changed).
    pub hashed_files: usize,
    /// Bytes read to hash them.
    pub hashed_bytes: u64,
    /// Names skipped: not UTF-8, or symlinks when they are not followed.
    pub skipped: Vec<String>,
}

/// The manifest of one root, with its hash cache.
#[derive(Debug, Default)]
pub struct Manifest {
    cache_path: Option<PathBuf>,
    files: BTreeMap<String, Cached>,
    dirty: bool,
}

/// SHA-256 of a file, streamed through a 1 MiB buffer; `progress` hears
/// every chunk's length.
pub fn hash_file(path: &Path, progress: &mut dyn FnMut(u64)) -> io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        progress(n as u64);
    }
    Ok(hex(ctx.finish().as_ref()))
}

/// What [`walk`] found: each regular file (relative path, full path,
/// metadata), and the entries it skipped.
pub type Walked = (Vec<(String, PathBuf, Metadata)>, Vec<String>);

/// Every regular file under `root` (sorted, `/`-separated relative paths),
/// with its metadata. Symlinks are followed when `follow` (loops are cut by
/// remembering directories), else skipped. Upload temporaries are left out.
pub fn walk(root: &Path, follow: bool) -> io::Result<Walked> {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let mut seen_dirs = BTreeSet::new();
    let meta_of = |p: &Path| {
        if follow {
            std::fs::metadata(p)
        } else {
            std::fs::symlink_metadata(p)
        }
    };
    let root_meta = meta_of(root)?;
    seen_dirs.insert((root_meta.dev(), root_meta.ino()));
    let mut stack = vec![(root.to_path_buf(), String::new(), 0usize)];
    while let Some((dir, prefix, depth)) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)?.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                skipped.push(format!("{prefix}{}", e.file_name().to_string_lossy()));
                continue;
            };
            if name.starts_with(TEMP_PREFIX) {
                continue;
            }
            let path = e.path();
            let rel = format!("{prefix}{name}");
            let meta = match meta_of(&path) {
                Ok(m) => m,
                Err(_) => {
                    skipped.push(rel);
                    continue;
                }
            };
            if meta.file_type().is_symlink() {
                skipped.push(rel);
            } else if meta.is_dir() {
                if depth < 64 && seen_dirs.insert((meta.dev(), meta.ino())) {
                    stack.push((path, format!("{rel}/"), depth + 1));
                }
            } else if meta.is_file() {
                out.push((rel, path, meta));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((out, skipped))
}

impl Manifest {
    /// A manifest whose cache lives in `cache_path` (read now; a missing or
    /// unreadable file is an empty cache).
    pub fn load(cache_path: &Path) -> Self {
        let files = std::fs::read(cache_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<CacheFile>(&b).ok())
            .filter(|c| c.version == CACHE_VERSION)
            .map(|c| c.files)
            .unwrap_or_default();
        Self {
            cache_path: Some(cache_path.to_path_buf()),
            files,
            dirty: false,
        }
    }

    /// A manifest with no cache file.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Lists `root`, hashing only new or changed files; `progress` hears
    /// (path, bytes) while hashing.
    pub fn scan(
        &mut self,
        root: &Path,
        follow: bool,
        progress: &mut dyn FnMut(&str, u64),
    ) -> io::Result<Scan> {
        let (files, skipped) = walk(root, follow)?;
        let mut scan = Scan {
            skipped,
            ..Scan::default()
        };
        let mut live = BTreeSet::new();
        for (rel, path, meta) in files {
            let sha256 = match self.files.get(&rel) {
                Some(c) if c.matches(&meta) => c.sha256.clone(),
                _ => {
                    let h = hash_file(&path, &mut |n| progress(&rel, n))?;
                    // The file may have changed while it was read: cache
                    // only what the metadata after the read still vouches for.
                    let after = if follow {
                        std::fs::metadata(&path)?
                    } else {
                        std::fs::symlink_metadata(&path)?
                    };
                    scan.hashed_files += 1;
                    scan.hashed_bytes += meta.len();
                    self.files
                        .insert(rel.clone(), Cached::of(&after, h.clone()));
                    self.dirty = true;
                    h
                }
            };
            scan.entries.push(AssetEntry {
                path: rel.clone(),
                size: meta.len(),
                sha256,
            });
            live.insert(rel);
        }
        let before = self.files.len();
        self.files.retain(|k, _| live.contains(k));
        self.dirty |= self.files.len() != before;
        Ok(scan)
    }

    /// Records a file whose hash is known (an upload just stored).
    pub fn record(&mut self, rel: &str, meta: &Metadata, sha256: &str) {
        self.files
            .insert(rel.to_owned(), Cached::of(meta, sha256.to_owned()));
        self.dirty = true;
    }

    /// Writes the cache when it changed (temporary file + rename; it is a
    /// cache, so no fsync).
    pub fn save(&mut self) -> io::Result<()> {
        let Some(path) = &self.cache_path else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let body = serde_json::to_vec(&CacheFile {
            version: CACHE_VERSION,
            files: self.files.clone(),
        })
        .map_err(io::Error::other)?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, path)?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::sha256_hex;

    #[test]
    fn second_scan_hashes_nothing_and_changes_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a"), b"aaa").unwrap();
        std::fs::write(root.join("sub/b"), b"bb").unwrap();
        std::fs::write(root.join("sub/.bootlab-upload-1-2"), b"temp").unwrap();
        let cache = dir.path().join("cache.json");
        let mut m = Manifest::load(&cache);
        let s = m.scan(&root, false, &mut |_, _| {}).unwrap();
        assert_eq!(s.hashed_files, 2);
        let paths: Vec<&str> = s.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a", "sub/b"]);
        assert_eq!(s.entries[0].sha256, sha256_hex(b"aaa"));
        m.save().unwrap();

        let mut m = Manifest::load(&cache);
        let s = m.scan(&root, false, &mut |_, _| {}).unwrap();
        assert_eq!((s.hashed_files, s.hashed_bytes), (0, 0), "cached");
        std::fs::write(root.join("a"), b"changed").unwrap();
        std::fs::remove_file(root.join("sub/b")).unwrap();
        let s = m.scan(&root, false, &mut |_, _| {}).unwrap();
        assert_eq!(s.hashed_files, 1);
        assert_eq!(s.entries.len(), 1);
        assert_eq!(s.entries[0].sha256, sha256_hex(b"changed"));
    }

    #[test]
    fn symlinks_followed_or_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(dir.path().join("target"), b"t").unwrap();
        std::os::unix::fs::symlink(dir.path().join("target"), root.join("l")).unwrap();
        std::os::unix::fs::symlink(&root, root.join("loop")).unwrap();
        let s = Manifest::in_memory()
            .scan(&root, true, &mut |_, _| {})
            .unwrap();
        assert_eq!(s.entries.len(), 1, "{s:?}");
        assert_eq!(s.entries[0].path, "l");
        let s = Manifest::in_memory()
            .scan(&root, false, &mut |_, _| {})
            .unwrap();
        assert!(s.entries.is_empty());
        assert_eq!(s.skipped.len(), 2);
    }
}
