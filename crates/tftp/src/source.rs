//! What a requested file name means: a virtual per-machine file rendered
//! from the inventory, or a regular file under `services.assets_dir`
//! (confined by [`bootlab_boot::assets::resolve`]), or a refusal.
//!
//! Virtual names (DESIGN.md wire contract) win over files of the same name:
//! `pxelinux.cfg/01-<mac>` and `grub.cfg-01-<mac>` are rendered for that
//! MAC's node; `grub/grub.cfg` and `boot.ipxe` for the node behind the
//! client's source address (lease or reservation).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bootlab_boot::VirtualFile;
use bootlab_boot::assets::{self, Refusal};
use bootlab_inventory::MacAddr;
use bootlab_state::{Generation, Resolved, Shared};

use crate::packet::{ErrorCode, Mode};

/// Largest file served in netascii mode (converted in memory).
pub const MAX_NETASCII_FILE: u64 = 8 * 1024 * 1024;

/// Where a transfer's bytes come from.
#[derive(Debug, Clone)]
pub enum Content {
    /// Rendered (or converted) bytes.
    Memory(Arc<[u8]>),
    /// A regular file inside the assets root, opened and sized.
    File {
        /// Canonical path.
        path: PathBuf,
        /// Open handle (positioned reads).
        file: Arc<std::fs::File>,
        /// Size in bytes at open time.
        size: u64,
    },
}

impl Content {
    /// Bytes to send.
    pub fn len(&self) -> u64 {
        match self {
            Self::Memory(b) => b.len() as u64,
            Self::File { size, .. } => *size,
        }
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A file ready to send.
#[derive(Debug, Clone)]
pub struct Served {
    /// The bytes.
    pub content: Content,
    /// The machine it was rendered for (virtual files).
    pub mac: Option<MacAddr>,
    /// Whether it is a boot script or per-machine config (timeline stage).
    pub is_script: bool,
}

/// Why a request gets an ERROR packet instead of data.
#[derive(Debug, thiserror::Error)]
pub enum Denial {
    /// The resolver refused the path (traversal, escape, malformed...).
    #[error("{0}")]
    Path(#[from] Refusal),
    /// A per-MAC file for a MAC that is not in the inventory.
    #[error("unknown machine {0}")]
    UnknownMac(MacAddr),
    /// A by-source file for a client whose address maps to no machine.
    #[error("no machine known at {0}")]
    UnknownSource(IpAddr),
    /// Opening or reading the file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Netascii asked for a file too large to convert in memory.
    #[error("netascii transfer of a file over {MAX_NETASCII_FILE} bytes")]
    NetasciiTooLarge,
}

impl Denial {
    /// The ERROR packet's code and message. Messages name the cause without
    /// echoing server paths.
    pub fn reply(&self) -> (ErrorCode, &'static str) {
        match self {
            Self::Path(Refusal::NotFound | Refusal::NotAFile)
            | Self::UnknownMac(_)
            | Self::UnknownSource(_) => (ErrorCode::FileNotFound, "file not found"),
            Self::Path(Refusal::Traversal | Refusal::Escape) => {
                (ErrorCode::AccessViolation, "access violation")
            }
            Self::Path(Refusal::Malformed) => (ErrorCode::AccessViolation, "malformed file name"),
            Self::Io(_) => (ErrorCode::AccessViolation, "cannot read file"),
            Self::NetasciiTooLarge => (ErrorCode::Undefined, "netascii: file too large, use octet"),
        }
    }

    /// A short stable name, used as the metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Path(Refusal::NotFound | Refusal::NotAFile) => "not_found",
            Self::Path(Refusal::Traversal | Refusal::Escape) => "access",
            Self::Path(Refusal::Malformed) => "bad_path",
            Self::UnknownMac(_) | Self::UnknownSource(_) => "unknown_machine",
            Self::Io(_) => "io",
            Self::NetasciiTooLarge => "netascii_too_large",
        }
    }
}

/// Resolves `filename` requested by `peer` to the bytes to send, from
/// the generation (inventory and rendered scripts) current at the request.
pub fn resolve(
    shared: &Shared,
    generation: &Generation,
    root: &Path,
    filename: &str,
    mode: Mode,
    peer: IpAddr,
) -> Result<Served, Denial> {
    let served = match VirtualFile::parse(filename) {
        Some(vf) => match shared.resolve_virtual(generation, vf, None, peer) {
            Resolved::Script { mac, text, .. } => Served {
                content: Content::Memory(Arc::from(text.as_bytes())),
                mac: Some(mac),
                is_script: true,
            },
            // iPXE that fetched boot.ipxe over TFTP from an unknown
            // address: ask again over HTTP with its MAC, as HTTP does.
            Resolved::ChainByMac(script) => Served {
                content: Content::Memory(script.into_bytes().into()),
                mac: None,
                is_script: true,
            },
            Resolved::UnknownMac(mac) => return Err(Denial::UnknownMac(mac)),
            Resolved::UnknownSource(ip) => return Err(Denial::UnknownSource(ip)),
        },
        None => {
            let path = assets::resolve(root, filename)?;
            let file = std::fs::File::open(&path)?;
            let size = file.metadata()?.len();
            Served {
                content: Content::File {
                    path,
                    file: Arc::new(file),
                    size,
                },
                mac: None,
                is_script: false,
            }
        }
    };
    match mode {
        Mode::Octet => Ok(served),
        Mode::Netascii => Ok(Served {
            content: Content::Memory(to_netascii(&read_all(&served.content)?).into()),
            ..served
        }),
    }
}

fn read_all(content: &Content) -> Result<Vec<u8>, Denial> {
    match content {
        Content::Memory(b) => Ok(b.to_vec()),
        Content::File { size, .. } if *size > MAX_NETASCII_FILE => Err(Denial::NetasciiTooLarge),
        Content::File { path, .. } => Ok(std::fs::read(path)?),
    }
}

/// Converts to netascii (RFC 764): LF becomes CR LF, a lone CR becomes CR NUL.
/// Existing CR LF pairs are kept as they are.
pub fn to_netascii(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 16);
    let mut prev = 0u8;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\n' if prev != b'\r' => out.extend_from_slice(b"\r\n"),
            b'\r' if bytes.get(i + 1) != Some(&b'\n') => out.extend_from_slice(b"\r\0"),
            _ => out.push(b),
        }
        prev = b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn inventory(assets: &Path) -> Shared {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/dev.toml"
        ))
        .unwrap()
        .replace("../target/dev-lab/assets", &assets.display().to_string());
        let inv = bootlab_inventory::parse(&text, Path::new("dev.toml")).unwrap();
        Shared::new(inv).unwrap().0
    }

    fn resolve(
        shared: &Shared,
        root: &Path,
        name: &str,
        mode: Mode,
        peer: IpAddr,
    ) -> Result<Served, Denial> {
        super::resolve(shared, &shared.generation(), root, name, mode, peer)
    }

    fn bytes(s: &Served) -> Vec<u8> {
        read_all(&s.content).unwrap()
    }

    #[test]
    fn virtual_and_real_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("undionly.kpxe"), b"loader").unwrap();
        let inv = inventory(dir.path());
        let root = dir.path();
        let peer: IpAddr = Ipv4Addr::new(127, 0, 0, 10).into();

        let s = resolve(&inv, root, "undionly.kpxe", Mode::Octet, peer).unwrap();
        assert_eq!(bytes(&s), b"loader");
        assert!(!s.is_script);

        let s = resolve(
            &inv,
            root,
            "pxelinux.cfg/01-52-54-00-77-00-10",
            Mode::Octet,
            peer,
        )
        .unwrap();
        assert_eq!(s.mac, Some("52:54:00:77:00:10".parse().unwrap()));
        assert!(String::from_utf8(bytes(&s)).unwrap().contains("vmlinuz"));

        let s = resolve(
            &inv,
            root,
            "/grub.cfg-01-52-54-00-77-00-11",
            Mode::Octet,
            peer,
        )
        .unwrap();
        assert_eq!(s.mac, Some("52:54:00:77:00:11".parse().unwrap()));

        // grub/grub.cfg by source address: the reservation at 127.0.0.10.
        let s = resolve(&inv, root, "grub/grub.cfg", Mode::Octet, peer).unwrap();
        assert_eq!(s.mac, Some("52:54:00:77:00:10".parse().unwrap()));
        // ... or a lease.
        let other: IpAddr = Ipv4Addr::new(127, 0, 0, 120).into();
        let e = resolve(&inv, root, "grub/grub.cfg", Mode::Octet, other).unwrap_err();
        assert!(matches!(e, Denial::UnknownSource(_)));
        assert_eq!(e.reply().0, ErrorCode::FileNotFound);
        inv.leases.bind(
            "52:54:00:77:00:11".parse().unwrap(),
            Ipv4Addr::new(127, 0, 0, 120),
        );
        let s = resolve(&inv, root, "grub/grub.cfg", Mode::Octet, other).unwrap();
        assert_eq!(s.mac, Some("52:54:00:77:00:11".parse().unwrap()));

        let s = resolve(&inv, root, "boot.ipxe", Mode::Octet, peer).unwrap();
        assert!(String::from_utf8(bytes(&s)).unwrap().starts_with("#!ipxe"));
        let s = resolve(&inv, root, "boot.ipxe", Mode::Octet, other).unwrap();
        assert!(
            String::from_utf8(bytes(&s))
                .unwrap()
                .contains("boot.ipxe?mac=")
        );
    }

    #[test]
    fn unknown_mac_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let inv = inventory(dir.path());
        let peer: IpAddr = Ipv4Addr::LOCALHOST.into();
        let e = resolve(
            &inv,
            dir.path(),
            "pxelinux.cfg/01-02-00-00-00-00-99",
            Mode::Octet,
            peer,
        )
        .unwrap_err();
        assert!(matches!(e, Denial::UnknownMac(_)));
        assert_eq!(e.reply().0, ErrorCode::FileNotFound);
        assert_eq!(e.kind(), "unknown_machine");
    }

    #[test]
    fn refusals() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("escape")).unwrap();
        let inv = inventory(&root);
        let peer: IpAddr = Ipv4Addr::LOCALHOST.into();
        let code = |name: &str| {
            resolve(&inv, &root, name, Mode::Octet, peer)
                .unwrap_err()
                .reply()
                .0
        };
        assert_eq!(code("../secret"), ErrorCode::AccessViolation);
        assert_eq!(code("a/../../secret"), ErrorCode::AccessViolation);
        assert_eq!(code("escape"), ErrorCode::AccessViolation);
        assert_eq!(code("..\\secret"), ErrorCode::AccessViolation);
        assert_eq!(code("/etc/passwd"), ErrorCode::FileNotFound);
        assert_eq!(code("%2e%2e/secret"), ErrorCode::FileNotFound);
        assert_eq!(code("missing"), ErrorCode::FileNotFound);
    }

    #[test]
    fn netascii() {
        assert_eq!(to_netascii(b"a\nb\r\nc\rd"), b"a\r\nb\r\nc\r\0d".to_vec());
        assert_eq!(to_netascii(b"\r"), b"\r\0".to_vec());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.txt"), b"x\ny\n").unwrap();
        let inv = inventory(dir.path());
        let s = resolve(
            &inv,
            dir.path(),
            "t.txt",
            Mode::Netascii,
            Ipv4Addr::LOCALHOST.into(),
        )
        .unwrap();
        assert_eq!(bytes(&s), b"x\r\ny\r\n");
    }
}
