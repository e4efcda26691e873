//! The install payload: what a fresh services VM needs from the host and
//! nothing else — the inventory, where its data lives, and the server side
//! of the admin API's TLS (the lab CA certificate, the server certificate
//! and its key). It is a tar archive written onto a small raw volume
//! attached read-only to the services VM (serial `bootlab-payload`), so
//! any install method can read it without a file system: the appliance's
//! `/init` runs `tar -xf` on the disk, a kickstart `%post` or cloud-init
//! can do the same.
//!
//! | member | mode | what |
//! |---|---|---|
//! | `lab.toml` | 0644 | the inventory, byte for byte (its generation is the host's) |
//! | `data_dir` | 0644 | `services.data_dir`, one line |
//! | `admin/ca.crt` | 0644 | the lab CA: the only issuer of accepted client certificates |
//! | `admin/server.crt` | 0644 | the services VM's certificate |
//! | `admin/server.key` | 0600 | its key |
//!
//! The archive is deterministic (mtime 0, uid/gid 0, sorted) and padded
//! with zeros to a whole MiB, which is the volume's size: rewriting the
//! volume leaves nothing of an older payload behind.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use bootlab_admin::pki::LabPki;
use bootlab_inventory::Inventory;

/// Serial of the payload disk (what the guest finds it by).
pub const PAYLOAD_SERIAL: &str = "bootlab-payload";
/// Serial of the services VM's data disk.
pub const DATA_SERIAL: &str = "bootlab-data";
/// The payload file's name in the build directory.
pub const PAYLOAD_FILE: &str = "payload.tar";
const ALIGN: u64 = 1 << 20;

fn append<W: std::io::Write>(
    b: &mut tar::Builder<W>,
    name: &str,
    mode: u32,
    data: &[u8],
) -> std::io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, name, data)
}

fn append_dir<W: std::io::Write>(b: &mut tar::Builder<W>, name: &str) -> std::io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(0);
    h.set_mode(0o700);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Directory);
    b.append_data(&mut h, name, std::io::empty())
}

/// Counts what goes through (the payload is padded to whole MiB).
struct Counting<W> {
    inner: W,
    n: u64,
}

impl<W: std::io::Write> std::io::Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the payload for `inv` (read from its file) and `pki` into `w`,
/// zero-padded to whole MiB. With `bootlabd` (the kickstart and
/// cloud-image methods, which install it on a full distribution) the
/// binary goes in as `bootlabd` (0755, streamed from the file) with the
/// packaged unit as `bootlabd.service`.
fn emit<W: std::io::Write>(
    w: W,
    inv: &Inventory,
    pki: &LabPki,
    bootlabd: Option<&Path>,
) -> anyhow::Result<W> {
    let lab = std::fs::read(inv.source())
        .with_context(|| format!("reading {}", inv.source().display()))?;
    let mut b = tar::Builder::new(Counting { inner: w, n: 0 });
    b.mode(tar::HeaderMode::Deterministic);
    append_dir(&mut b, "admin/")?;
    append(&mut b, "admin/ca.crt", 0o644, pki.ca.cert.as_bytes())?;
    append(
        &mut b,
        "admin/server.crt",
        0o644,
        pki.server.cert.as_bytes(),
    )?;
    append(&mut b, "admin/server.key", 0o600, pki.server.key.as_bytes())?;
    if let Some(bin) = bootlabd {
        let f = std::fs::File::open(bin).with_context(|| format!("reading {}", bin.display()))?;
        let len = f.metadata()?.len();
        let mut h = tar::Header::new_ustar();
        h.set_size(len);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "bootlabd", f)?;
        append(
            &mut b,
            "bootlabd.service",
            0o644,
            crate::cloudinit::UNIT.as_bytes(),
        )?;
    }
    append(
        &mut b,
        "data_dir",
        0o644,
        format!("{}\n", inv.services().data_dir.display()).as_bytes(),
    )?;
    append(&mut b, "lab.toml", 0o644, &lab)?;
    let mut out = b.into_inner()?;
    let pad = out.n.div_ceil(ALIGN).max(1) * ALIGN - out.n;
    std::io::copy(&mut std::io::repeat(0).take(pad), &mut out)?;
    out.flush()?;
    Ok(out.inner)
}

/// The payload's bytes for `inv` (read from its file) and `pki`, with the
/// daemon when `bootlabd` is given.
pub fn render(inv: &Inventory, pki: &LabPki, bootlabd: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    emit(Vec::new(), inv, pki, bootlabd)
}

/// Writes the payload into `dir` (mode 0600: it holds a key) and returns
/// its path; streamed, so a large `bootlabd` is never held in memory.
pub fn write(
    inv: &Inventory,
    pki: &LabPki,
    bootlabd: Option<&Path>,
    dir: &Path,
) -> anyhow::Result<PathBuf> {
    let path = dir.join(PAYLOAD_FILE);
    let _ = std::fs::remove_file(&path);
    let f = {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?
    };
    emit(std::io::BufWriter::new(f), inv, pki, bootlabd)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// config/dev.toml copied into `dir`, loaded, and a PKI for it.
    fn dev_lab(dir: &Path) -> (std::path::PathBuf, bootlab_inventory::Inventory, LabPki) {
        let lab = dir.join("lab.toml");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/dev.toml"),
            &lab,
        )
        .unwrap();
        let inv = bootlab_inventory::load(&lab).unwrap();
        let pki = LabPki::generate("dev", inv.services().ip.into(), &[]).unwrap();
        (lab, inv, pki)
    }

    #[test]
    fn deterministic_padded_and_readable_by_tar() {
        let dir = tempfile::tempdir().unwrap();
        let (lab, inv, pki) = dev_lab(dir.path());
        let one = render(&inv, &pki, None).unwrap();
        assert_eq!(one, render(&inv, &pki, None).unwrap());
        assert_eq!(one.len() % (1 << 20), 0);
        let p = write(&inv, &pki, None, dir.path()).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), one);
        let x = dir.path().join("x");
        std::fs::create_dir_all(&x).unwrap();
        let st = std::process::Command::new("tar")
            .arg("-xpf")
            .arg(&p)
            .arg("-C")
            .arg(&x)
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(
            std::fs::read(x.join("lab.toml")).unwrap(),
            std::fs::read(&lab).unwrap()
        );
        assert_eq!(
            std::fs::read_to_string(x.join("admin/server.key")).unwrap(),
            pki.server.key
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(x.join("admin/server.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // busybox reads it too, as the appliance's /init does
        let y = dir.path().join("y");
        std::fs::create_dir_all(&y).unwrap();
        let st = std::process::Command::new("busybox")
            .args(["tar", "-xf"])
            .arg(&p)
            .arg("-C")
            .arg(&y)
            .status()
            .unwrap();
        assert!(st.success());
        assert!(y.join("data_dir").is_file());
    }

    #[test]
    fn with_the_daemon_for_full_distributions() {
        let dir = tempfile::tempdir().unwrap();
        let (_, inv, pki) = dev_lab(dir.path());
        let bin = dir.path().join("bootlabd");
        std::fs::write(&bin, vec![0x7fu8; (1 << 20) + 3]).unwrap();
        let p = write(&inv, &pki, Some(&bin), dir.path()).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len() % (1 << 20), 0);
        assert_eq!(
            std::fs::read(&p).unwrap(),
            render(&inv, &pki, Some(&bin)).unwrap()
        );
        let list = std::process::Command::new("tar")
            .arg("-tvf")
            .arg(&p)
            .output()
            .unwrap();
        let list = String::from_utf8(list.stdout).unwrap();
        let line = |name: &str| {
            list.lines()
                .find(|l| l.ends_with(&format!(" {name}")))
                .unwrap_or_else(|| panic!("{name} in\n{list}"))
                .to_owned()
        };
        assert!(line("bootlabd").starts_with("-rwxr-xr-x"), "{list}");
        assert!(
            line("bootlabd").contains(&((1u64 << 20) + 3).to_string()),
            "{list}"
        );
        assert!(line("bootlabd.service").starts_with("-rw-r--r--"), "{list}");
        let x = dir.path().join("x");
        std::fs::create_dir_all(&x).unwrap();
        assert!(
            std::process::Command::new("tar")
                .arg("-xf")
                .arg(&p)
                .arg("-C")
                .arg(&x)
                .status()
                .unwrap()
                .success()
        );
        assert_eq!(
            std::fs::read_to_string(x.join("bootlabd.service")).unwrap(),
            crate::cloudinit::UNIT
        );
        assert_eq!(
            std::fs::read(x.join("bootlabd")).unwrap(),
            std::fs::read(&bin).unwrap()
        );
    }
}
