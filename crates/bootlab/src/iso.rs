//! Reading the installer ISO of the kickstart method: its kernel and
//! initrd (`images/pxeboot/vmlinuz`, `images/pxeboot/initrd.img`), copied
//! out in chunks through a fixed buffer, so a multi-GiB DVD image is never
//! held in memory.
//!
//! The ISO 9660 parsing is `hadris-iso`'s (its allocation-free
//! `IsoReader`): among the crates that read ISO 9660 it is the one kept up
//! (2.x releases through 2025, a stability promise for 2.x), it reads the
//! Joliet tree Fedora's and RHEL's images carry (and plain ISO 9660), and it
//! streams a file's extents into a caller's buffer. `cdfs` reads Rock Ridge
//! too but depends on FUSE, clap and a logger for its own binary;
//! `iso9660` calls itself incomplete. The lookup prefers the Joliet tree
//! and falls back to the primary one (compared without case and `;1`, a
//! name without an extension also as `NAME.`, how ISO 9660 stores it; a
//! Rock-Ridge-only image is read through that primary tree).

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use hadris_iso::read::IsoReader;
use thiserror::Error;

/// The installer's kernel inside the ISO (Fedora, RHEL and rebuilds).
pub const KERNEL: &str = "images/pxeboot/vmlinuz";
/// The installer's initrd inside the ISO.
pub const INITRD: &str = "images/pxeboot/initrd.img";

/// Why a file could not be read from an ISO.
#[derive(Debug, Error)]
pub enum IsoError {
    /// The ISO file itself could not be opened.
    #[error("cannot open the installer ISO {iso}: {source}")]
    Open {
        /// The ISO.
        iso: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not an ISO 9660 image (no volume descriptors where they belong).
    #[error("{iso} is not an ISO 9660 image: {reason}")]
    NotIso {
        /// The ISO.
        iso: PathBuf,
        /// What the reader said.
        reason: String,
    },
    /// The file is not in the image.
    #[error("{iso} has no {inner} (an installer ISO of Fedora, RHEL or a rebuild has it)")]
    Missing {
        /// The ISO.
        iso: PathBuf,
        /// The path inside the image.
        inner: String,
    },
    /// Reading the image or writing the copy failed.
    #[error("reading {inner} from {iso}: {reason}")]
    Read {
        /// The ISO.
        iso: PathBuf,
        /// The path inside the image.
        inner: String,
        /// The cause.
        reason: String,
    },
}

/// An opened ISO image.
pub struct Iso<R> {
    path: PathBuf,
    reader: IsoReader<R>,
}

impl Iso<BufReader<File>> {
    /// Opens the image at `path` (reads only its volume descriptors).
    pub fn open(path: &Path) -> Result<Self, IsoError> {
        let file = File::open(path).map_err(|source| IsoError::Open {
            iso: path.to_owned(),
            source,
        })?;
        Self::from_reader(path, BufReader::with_capacity(64 * 1024, file))
    }
}

impl<R: std::io::Read + std::io::Seek> Iso<R> {
    /// Opens an image from any seekable reader; `path` names it in errors.
    pub fn from_reader(path: &Path, reader: R) -> Result<Self, IsoError> {
        let reader = IsoReader::open(reader).map_err(|e| IsoError::NotIso {
            iso: path.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            path: path.to_owned(),
            reader,
        })
    }

    /// Copies the file `inner` (slash-separated, relative to the root) to
    /// `out`, returning its length.
    pub fn copy_to(&mut self, inner: &str, out: &mut impl Write) -> Result<u64, IsoError> {
        let err = |reason: String| IsoError::Read {
            iso: self.path.clone(),
            inner: inner.to_owned(),
            reason,
        };
        // The Joliet tree (when there is one) by name, then the primary
        // tree, where a name without an extension is stored as `NAME.;1`.
        let mut dotted = inner.to_owned();
        if !inner.rsplit('/').next().unwrap_or(inner).contains('.') {
            dotted.push('.');
        }
        let candidates = [
            (self.reader.preferred_root(), inner),
            (self.reader.primary_root(), inner),
            (self.reader.primary_root(), dotted.as_str()),
        ];
        let mut entry = None;
        for (root, name) in candidates {
            match self.reader.find_path_in(root, name) {
                Ok(Some(e)) if e.is_file() => {
                    entry = Some(e);
                    break;
                }
                Ok(_) => {}
                Err(e) => return Err(err(e.to_string())),
            }
        }
        let Some(entry) = entry else {
            return Err(IsoError::Missing {
                iso: self.path.clone(),
                inner: inner.to_owned(),
            });
        };
        let path = self.path.clone();
        let mut file = self.reader.open_file(&entry).map_err(|e| IsoError::Read {
            iso: path.clone(),
            inner: inner.to_owned(),
            reason: e.to_string(),
        })?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = file.read_chunk(&mut buf).map_err(|e| IsoError::Read {
                iso: path.clone(),
                inner: inner.to_owned(),
                reason: e.to_string(),
            })?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(|e| IsoError::Read {
                iso: path.clone(),
                inner: inner.to_owned(),
                reason: format!("writing the copy: {e}"),
            })?;
            total += n as u64;
        }
        Ok(total)
    }
}

/// Copies the installer's kernel and initrd out of `iso` into `dir`
/// (`vmlinuz`, `initrd.img`), returning their paths.
pub fn installer_boot_files(iso: &Path, dir: &Path) -> Result<(PathBuf, PathBuf), IsoError> {
    let mut image = Iso::open(iso)?;
    let mut out = Vec::new();
    for (inner, name) in [(KERNEL, "vmlinuz"), (INITRD, "initrd.img")] {
        let dest = dir.join(name);
        let write_err = |e: std::io::Error| IsoError::Read {
            iso: iso.to_owned(),
            inner: inner.to_owned(),
            reason: format!("writing {}: {e}", dest.display()),
        };
        let mut f = std::io::BufWriter::new(File::create(&dest).map_err(write_err)?);
        image.copy_to(inner, &mut f)?;
        f.flush().map_err(write_err)?;
        out.push(dest);
    }
    let initrd = out.pop().unwrap_or_default();
    let kernel = out.pop().unwrap_or_default();
    Ok((kernel, initrd))
}
