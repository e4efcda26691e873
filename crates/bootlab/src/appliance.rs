//! The `appliance` install method: a kernel plus a generated initramfs that
//! holds a busybox, the kernel modules the services VM needs (with their
//! dependencies from `modules.dep`, decompressed: Fedora and RHEL ship
//! `.ko.xz`, Ubuntu `.ko.zst`, and busybox's insmod takes plain `.ko`),
//! bootlabd, nft and e2fsprogs' mke2fs/tune2fs/resize2fs/e2fsck with their
//! shared libraries (busybox's too when it is dynamically linked). No
//! download, boots in seconds.
//!
//! The initramfs holds nothing lab-specific: the inventory and the admin
//! API's TLS material come from the install payload ([`crate::payload`], a
//! small read-only disk), the assets live on the ext4 data disk and are
//! pushed through the admin API. So the initramfs, and with it the domain,
//! only change when a binary, the kernel or its modules do.
//!
//! e2fsprogs rather than formatting from the host: the data disk stays a
//! plain qcow2 volume that can live on a remote hypervisor (the host tool
//! cannot run mkfs.ext4 on a file it cannot reach, and uploading a
//! formatted image through a libvirt stream would send the whole disk),
//! and the same tools grow the file system when `up` grows the volume and
//! repair it when a mount fails. Measured: the four tools and their
//! libraries add about 1.3 MB to the initramfs, and formatting the 2 GiB
//! test disk (lazy inode tables and journal) takes well under a second of
//! the appliance's boot under TCG.
//!
//! # Layout
//! - [`ApplianceInputs`]: where kernel, modules, binaries and assets come
//!   from: given paths, else where the host's distribution keeps them
//!   ([`crate::host`]); [`InputsError`] lists what is missing with the
//!   distribution's fix.
//! - [`decompress_module`]: `.ko.xz`/`.ko.zst`/`.ko.gz` -> `.ko`.
//! - [`build`]: writes kernel + initramfs into a directory, deterministically
//!   (same inputs, same bytes: `up` can tell "unchanged").
//! - [`parse_modules_dep`], [`resolve_modules`]: module dependencies, deps first.
//! - [`parse_ldd`]: the shared libraries a binary needs.
//! - [`Cpio`]: a deterministic `newc` archive writer.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::desired::ApplianceFiles;

/// Modules the appliance loads when the kernel has them as modules (builtin
/// ones are skipped, missing ones are reported).
pub const WANTED_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "virtio_scsi",
    "virtio_console",
    "virtio_rng",
    "ahci",
    "sd_mod",
    "af_packet",
    "ext4",
    "nf_tables",
    "nft_ct",
    "nft_chain_nat",
    "nft_nat",
    "nft_masq",
    "nft_reject_inet",
    "nft_counter",
    "nf_conntrack",
    "nf_nat",
];

/// Where the appliance's parts come from.
#[derive(Debug, Clone)]
pub struct ApplianceInputs {
    /// Kernel image.
    pub kernel: PathBuf,
    /// `/lib/modules/<version>` (holding `modules.dep`).
    pub modules: PathBuf,
    /// A busybox (static, or dynamic with its libraries copied too).
    pub busybox: PathBuf,
    /// The bootlabd binary.
    pub bootlabd: PathBuf,
    /// nft, if found (needed when `services.firewall = true`).
    pub nft: Option<PathBuf>,
    /// e2fsprogs' tools ([`crate::host::E2FSPROGS_TOOLS`], in that order).
    pub e2fsprogs: Vec<PathBuf>,
}

/// One input the appliance needs that is not there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// What, and where it was looked for.
    pub what: String,
    /// How to provide it on this host.
    pub fix: String,
}

/// Why the appliance's inputs cannot be resolved.
#[derive(Debug, thiserror::Error)]
pub enum InputsError {
    /// A remote URI needs the kernel and modules given explicitly.
    #[error(
        "a remote libvirt URI: the host's own kernel says nothing about the hypervisor; \
         give the appliance kernel with --kernel PATH --modules DIR"
    )]
    Remote,
    /// Inputs missing on this host.
    #[error("the appliance cannot be built: {}", list(.0))]
    Missing(Vec<Missing>),
}

fn list(m: &[Missing]) -> String {
    m.iter()
        .map(|m| format!("{} (fix: {})", m.what, m.fix))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What the caller gave on the command line.
#[derive(Debug, Clone, Default)]
pub struct GivenInputs {
    /// `--kernel`.
    pub kernel: Option<PathBuf>,
    /// `--modules`.
    pub modules: Option<PathBuf>,
    /// `--busybox`.
    pub busybox: Option<PathBuf>,
    /// `--bootlabd`.
    pub bootlabd: Option<PathBuf>,
}

/// `given` when it is a file, else a [`Missing`] saying so.
fn given_file(
    given: PathBuf,
    what: &str,
    fix: String,
    missing: &mut Vec<Missing>,
) -> Option<PathBuf> {
    if given.is_file() {
        Some(given)
    } else {
        missing.push(Missing {
            what: format!("{what} {} does not exist", given.display()),
            fix,
        });
        None
    }
}

impl ApplianceInputs {
    /// Fills in defaults from `host`: the running kernel and its modules
    /// (local URIs only) wherever the distribution keeps them, its busybox,
    /// bootlabd next to this executable or on PATH, nft. Every missing
    /// input is reported at once, each with the fix for this distribution.
    pub fn resolve(
        given: GivenInputs,
        local: bool,
        host: &crate::host::HostPaths,
    ) -> Result<Self, InputsError> {
        use crate::host::Need;
        if !local && (given.kernel.is_none() || given.modules.is_none()) {
            return Err(InputsError::Remote);
        }
        let distro = host.distro();
        let mut missing = Vec::new();
        let running = host.kernel_release();
        let shown_release = running.clone().unwrap_or_else(|| "?".into());
        // the running kernel's, else the newest installed kernel with modules
        let release = host.appliance_release().or(running);
        let kernel = match given.kernel {
            Some(k) => given_file(
                k,
                "kernel",
                "give an existing kernel image with --kernel PATH".into(),
                &mut missing,
            ),
            None => {
                let found = release.as_deref().and_then(|r| host.kernel(r));
                if found.is_none() {
                    let tried: Vec<String> = release
                        .as_deref()
                        .map(|r| host.kernel_candidates(r))
                        .unwrap_or_default()
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect();
                    missing.push(Missing {
                        what: format!(
                            "no kernel image for the running kernel {shown_release} (looked for {}), \
                             nor another installed kernel with its modules",
                            tried.join(", ")
                        ),
                        fix: distro.fix(Need::Kernel),
                    });
                }
                found
            }
        };
        if let Some(k) = &kernel {
            if let Err(e) = std::fs::File::open(k) {
                missing.push(Missing {
                    what: format!("kernel {} is not readable: {e}", k.display()),
                    fix:
                        "run as root, or copy it readable (install -m 0644) and pass --kernel PATH"
                            .into(),
                });
            }
        }
        let modules = match given.modules {
            Some(m) => match pick_module_root(&m) {
                Ok(m) => Some(m),
                Err(e) => {
                    missing.push(Missing {
                        what: format!("{e:#}"),
                        fix: "give the module tree of the appliance kernel with --modules DIR"
                            .into(),
                    });
                    None
                }
            },
            None => {
                let found = release.as_deref().and_then(|r| host.modules(r));
                if found.is_none() {
                    missing.push(Missing {
                        what: format!(
                            "no module tree with modules.dep for {shown_release} under /lib/modules or /usr/lib/modules"
                        ),
                        fix: distro.fix(Need::Modules),
                    });
                }
                found
            }
        };
        let busybox = match given.busybox {
            Some(b) => given_file(b, "busybox", distro.fix(Need::Busybox), &mut missing),
            None => {
                let found = host.busybox();
                if found.is_none() {
                    missing.push(Missing {
                        what: format!(
                            "no busybox (looked for {})",
                            crate::host::shown(crate::host::BUSYBOX_PATHS)
                        ),
                        fix: distro.fix(Need::Busybox),
                    });
                }
                found
            }
        };
        let bootlabd = match given.bootlabd {
            Some(b) => given_file(
                b,
                "bootlabd",
                "give the bootlabd binary with --bootlabd PATH".into(),
                &mut missing,
            ),
            None => {
                let found = std::env::current_exe()
                    .ok()
                    .and_then(|e| Some(e.parent()?.join("bootlabd")))
                    .filter(|p| p.is_file())
                    .or_else(|| which("bootlabd"));
                if found.is_none() {
                    missing.push(Missing {
                        what: "bootlabd not found next to bootlab nor on PATH".into(),
                        fix: "install the bootlab package, or pass --bootlabd PATH".into(),
                    });
                }
                found
            }
        };
        let e2fsprogs = host.e2fsprogs();
        if e2fsprogs.is_none() {
            missing.push(Missing {
                what: format!(
                    "no e2fsprogs ({} under /usr/sbin or /sbin): the appliance formats its ext4 data disk with them",
                    crate::host::E2FSPROGS_TOOLS.join(", ")
                ),
                fix: distro.fix(Need::E2fsprogs),
            });
        }
        match (kernel, modules, busybox, bootlabd, e2fsprogs) {
            (Some(kernel), Some(modules), Some(busybox), Some(bootlabd), Some(e2fsprogs))
                if missing.is_empty() =>
            {
                Ok(Self {
                    kernel,
                    modules,
                    busybox,
                    bootlabd,
                    nft: which("nft")
                        .or_else(|| Some(PathBuf::from("/usr/sbin/nft")).filter(|p| p.is_file())),
                    e2fsprogs,
                })
            }
            _ => Err(InputsError::Missing(missing)),
        }
    }
}

/// Accepts `/lib/modules/<ver>` or a directory holding exactly one `<ver>`.
fn pick_module_root(p: &Path) -> anyhow::Result<PathBuf> {
    if p.join("modules.dep").is_file() {
        return Ok(p.to_path_buf());
    }
    let subs: Vec<PathBuf> = std::fs::read_dir(p)
        .with_context(|| format!("reading module dir {}", p.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|s| s.join("modules.dep").is_file())
        .collect();
    match subs.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "{} holds no modules.dep (give /lib/modules/<version>)",
            p.display()
        ),
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The module name of a path in `modules.dep` (`kernel/net/x/nf-foo.ko.xz` -> `nf_foo`).
pub fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    stem.replace('-', "_")
}

/// A module file's content as the kernel takes it: `.ko.xz`, `.ko.zst` and
/// `.ko.gz` are decompressed (busybox's insmod reads plain ELF), and the
/// name it gets in the appliance (the `.ko` path).
pub fn decompress_module(path: &str, data: &[u8]) -> anyhow::Result<(String, Vec<u8>)> {
    use std::io::Read as _;
    let mut out = Vec::with_capacity(data.len() * 3);
    if let Some(stem) = path.strip_suffix(".xz") {
        lzma_rs::xz_decompress(&mut std::io::BufReader::new(data), &mut out)
            .map_err(|e| anyhow::anyhow!("{path}: not xz: {e}"))?;
        Ok((stem.to_owned(), out))
    } else if let Some(stem) = path.strip_suffix(".zst") {
        let mut d = ruzstd::decoding::StreamingDecoder::new(data)
            .map_err(|e| anyhow::anyhow!("{path}: not zstd: {e}"))?;
        d.read_to_end(&mut out)
            .with_context(|| format!("{path}: zstd"))?;
        Ok((stem.to_owned(), out))
    } else if let Some(stem) = path.strip_suffix(".gz") {
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .with_context(|| format!("{path}: not gzip"))?;
        Ok((stem.to_owned(), out))
    } else {
        Ok((path.to_owned(), data.to_vec()))
    }
}

/// Parses `modules.dep`: module path -> dependency paths.
pub fn parse_modules_dep(text: &str) -> BTreeMap<String, Vec<String>> {
    text.lines()
        .filter_map(|l| {
            let (m, deps) = l.split_once(':')?;
            let m = m.trim();
            if m.is_empty() || !m.contains(".ko") {
                return None;
            }
            Some((
                m.to_string(),
                deps.split_whitespace().map(str::to_string).collect(),
            ))
        })
        .collect()
}

/// Module paths to load for `wanted`, dependencies before dependents.
/// Returns (load order, names not found as modules).
pub fn resolve_modules(
    dep: &BTreeMap<String, Vec<String>>,
    wanted: &[&str],
) -> (Vec<String>, Vec<String>) {
    let by_name: BTreeMap<String, &String> = dep.keys().map(|p| (module_name(p), p)).collect();
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    let mut missing = Vec::new();
    fn visit(
        p: &str,
        dep: &BTreeMap<String, Vec<String>>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
        depth: usize,
    ) {
        if depth > 64 || !seen.insert(p.to_string()) {
            return;
        }
        // modules.dep lists the full closure; visiting each keeps deps first.
        for d in dep.get(p).map(Vec::as_slice).unwrap_or_default() {
            visit(d, dep, seen, order, depth + 1);
        }
        order.push(p.to_string());
    }
    for w in wanted {
        match by_name.get(&w.replace('-', "_")) {
            Some(p) => visit(p, dep, &mut seen, &mut order, 0),
            None => missing.push((*w).to_string()),
        }
    }
    (order, missing)
}

/// Parses `ldd` output into the library files a binary needs.
pub fn parse_ldd(text: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rhs)) => rhs.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The shared libraries `bin` loads (`ldd`); none for a static binary.
pub fn shared_libs(bin: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .with_context(|| format!("running ldd {}", bin.display()))?;
    // "not a dynamic executable" exits 1: a static binary needs nothing.
    Ok(parse_ldd(&String::from_utf8_lossy(&out.stdout)))
}

/// A deterministic `newc` cpio writer: every mtime is 0, inode numbers count
/// up, entries are written in the order given (callers sort).
pub struct Cpio<W: std::io::Write> {
    out: W,
    ino: u32,
    dirs: BTreeSet<String>,
}

impl<W: std::io::Write> Cpio<W> {
    /// A new archive.
    pub fn new(out: W) -> Self {
        Self {
            out,
            ino: 1,
            dirs: BTreeSet::new(),
        }
    }

    fn header(&mut self, name: &str, mode: u32, size: u32) -> std::io::Result<()> {
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let h = format!(
            "070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
            self.ino,
            mode,
            0,
            0,
            nlink,
            0,
            size,
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        self.ino += 1;
        self.out.write_all(h.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        pad(&mut self.out, 110 + name.len() + 1)
    }

    /// A directory and its parents (once each).
    pub fn dir(&mut self, name: &str) -> std::io::Result<()> {
        let name = name.trim_matches('/');
        if name.is_empty() || self.dirs.contains(name) {
            return Ok(());
        }
        if let Some((parent, _)) = name.rsplit_once('/') {
            self.dir(parent)?;
        }
        self.dirs.insert(name.to_string());
        self.header(name, 0o040755, 0)
    }

    /// A regular file (its parents are created).
    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> std::io::Result<()> {
        let name = name.trim_start_matches('/');
        if let Some((parent, _)) = name.rsplit_once('/') {
            self.dir(parent)?;
        }
        let size = u32::try_from(data.len())
            .map_err(|_| std::io::Error::other(format!("{name}: file too large for cpio")))?;
        self.header(name, 0o100000 | mode, size)?;
        self.out.write_all(data)?;
        pad(&mut self.out, data.len())
    }

    /// A regular file copied from `path` in chunks (a large binary is never
    /// held in memory whole).
    pub fn file_from(&mut self, name: &str, mode: u32, path: &Path) -> std::io::Result<()> {
        let name = name.trim_start_matches('/');
        if let Some((parent, _)) = name.rsplit_once('/') {
            self.dir(parent)?;
        }
        let mut f = std::fs::File::open(path)?;
        let len = f.metadata()?.len();
        let size = u32::try_from(len)
            .map_err(|_| std::io::Error::other(format!("{name}: file too large for cpio")))?;
        self.header(name, 0o100000 | mode, size)?;
        let copied = std::io::copy(&mut std::io::Read::take(&mut f, len), &mut self.out)?;
        if copied != len {
            return Err(std::io::Error::other(format!(
                "{}: changed while it was read",
                path.display()
            )));
        }
        pad(&mut self.out, len as usize)
    }

    /// A symlink.
    pub fn symlink(&mut self, name: &str, target: &str) -> std::io::Result<()> {
        let name = name.trim_start_matches('/');
        if let Some((parent, _)) = name.rsplit_once('/') {
            self.dir(parent)?;
        }
        self.header(name, 0o120777, target.len() as u32)?;
        self.out.write_all(target.as_bytes())?;
        pad(&mut self.out, target.len())
    }

    /// Writes the trailer and returns the writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.header("TRAILER!!!", 0, 0)?;
        Ok(self.out)
    }
}

fn pad<W: std::io::Write>(w: &mut W, len: usize) -> std::io::Result<()> {
    let n = (4 - len % 4) % 4;
    w.write_all(&[0u8; 3][..n])
}

/// Where e2fsprogs' tools live in the appliance: off PATH, as busybox has
/// applets of the same names (a far smaller mke2fs that cannot make ext4).
pub const E2FSPROGS_DIR: &str = "usr/lib/bootlab/e2fsprogs";

/// The appliance's `/init`: mounts, loads modules, finds the lab NIC by
/// MAC, addresses it, reads the install payload (inventory, `data_dir`, the
/// admin API's TLS material), mounts the ext4 data disk at `data_dir`
/// (formatting a blank one, adding a journal to an old ext2 one, growing
/// it with its volume, repairing it when a mount fails; a disk that is
/// neither blank nor ext2/3/4 is never formatted), installs the TLS
/// material under `data_dir/admin/` and runs bootlabd.
pub const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /run /tmp /var/log /bin /sbin /usr/bin /usr/sbin
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
# what udev would create: nft -f /dev/stdin needs it
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
exec </dev/console >/dev/console 2>&1
echo "bootlab-appliance: starting"
for m in $(cat /etc/bootlab/modules.order); do insmod "/lib/modules/$m" 2>/dev/null; done
arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^$1=//p" | tail -n1; }
MAC=$(arg bootlab.mac); IP=$(arg bootlab.ip); GW=$(arg bootlab.gw)
DATA=$(arg bootlab.data); PAYLOAD=$(arg bootlab.payload); UPLINK=$(arg bootlab.uplink)
# disks by serial (virtio), else the names on the command line
for b in /sys/block/*; do
  case "$(cat "$b/serial" 2>/dev/null)" in
    bootlab-data) DATA=/dev/${b##*/} ;;
    bootlab-payload) PAYLOAD=/dev/${b##*/} ;;
  esac
done
ip link set lo up
IF=""
for i in 1 2 3 4 5 6 7 8 9 10; do
  for d in /sys/class/net/*; do
    [ "$(cat "$d/address")" = "$MAC" ] && IF=$(basename "$d")
  done
  [ -n "$IF" ] && break
  sleep 1
done
if [ -z "$IF" ]; then echo "bootlab-appliance: no NIC with MAC $MAC"; ls /sys/class/net; fi
ip link set "$IF" up
ip addr add "$IP" dev "$IF"
if [ -n "$UPLINK" ]; then
  for d in /sys/class/net/*; do
    [ "$(cat "$d/address")" = "$UPLINK" ] && UP=$(basename "$d")
  done
  [ -n "$UP" ] && ip link set "$UP" up && udhcpc -i "$UP" -q -n -s /etc/bootlab/udhcpc.sh
elif [ "$GW" != "${IP%/*}" ]; then
  ip route add default via "$GW"
fi
mkdir -p /run/payload
if [ -n "$PAYLOAD" ] && [ -b "$PAYLOAD" ] && tar -xf "$PAYLOAD" -C /run/payload; then
  cp /run/payload/lab.toml /etc/bootlab/lab.toml
else
  echo "bootlab-appliance: cannot read the install payload (${PAYLOAD:-no disk})"
fi
DATADIR=$(cat /run/payload/data_dir 2>/dev/null)
DATADIR=${DATADIR:-/var/lib/bootlab}
mkdir -p "$DATADIR"
FS=tmpfs
E2=/usr/lib/bootlab/e2fsprogs
if [ -n "$DATA" ] && [ -b "$DATA" ]; then
  if $E2/tune2fs -l "$DATA" >/tmp/sb 2>/dev/null; then
    grep -q '^Filesystem features:.*has_journal' /tmp/sb \
      || { echo "bootlab-appliance: adding a journal to $DATA"; $E2/tune2fs -j "$DATA"; }
  elif [ "$(head -c 1048576 "$DATA" | tr -d '\000' | wc -c)" = 0 ]; then
    echo "bootlab-appliance: formatting the blank data disk $DATA (ext4)"
    T0=$(cut -d' ' -f1 /proc/uptime)
    $E2/mke2fs -q -F -t ext4 -L bootlab-data -E lazy_itable_init=1,lazy_journal_init=1 "$DATA"
    echo "bootlab-appliance: formatted $DATA (uptime $T0 -> $(cut -d' ' -f1 /proc/uptime) s)"
  else
    echo "bootlab-appliance: $DATA is neither blank nor ext2/3/4: not formatting it"
  fi
  if mount -t ext4 -o noatime "$DATA" "$DATADIR" 2>/dev/null \
    || { $E2/e2fsck -p "$DATA"; mount -t ext4 -o noatime "$DATA" "$DATADIR"; }; then
    FS=ext4
    $E2/resize2fs "$DATA" >/dev/null 2>&1
  else
    echo "bootlab-appliance: cannot mount $DATA; data on tmpfs"
  fi
fi
mkdir -p "$DATADIR/admin"
chmod 700 "$DATADIR/admin"
for f in ca.crt server.crt server.key; do
  [ -f "/run/payload/admin/$f" ] || continue
  cp "/run/payload/admin/$f" "$DATADIR/admin/.$f.new"
  chmod 600 "$DATADIR/admin/.$f.new"
  mv "$DATADIR/admin/.$f.new" "$DATADIR/admin/$f"
done
rm -rf /run/payload
sync
echo "bootlab-appliance: lab NIC $IF ($MAC) $IP, data on ${DATA:-tmpfs} ($FS) at $DATADIR"
while true; do
  bootlabd --config /etc/bootlab/lab.toml
  echo "bootlab-appliance: bootlabd exited ($?), restarting"
  sleep 1
done
"#;

/// udhcpc hook for the uplink (isolated mode).
const UDHCPC: &str = r#"#!/bin/busybox sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
    : > /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    ;;
esac
"#;

/// Builds the appliance into `out_dir`: `vmlinuz` (a copy of the kernel) and
/// `initrd.img` (an uncompressed newc archive: the kernel takes it as is,
/// and identical inputs give identical bytes). Returns the files and the
/// modules that were asked for but are not modules of this kernel. Files
/// are streamed into the archive: memory stays flat whatever their size.
pub fn build(
    inputs: &ApplianceInputs,
    out_dir: &Path,
) -> anyhow::Result<(ApplianceFiles, Vec<String>)> {
    std::fs::create_dir_all(out_dir)?;
    let kernel = out_dir.join("vmlinuz");
    std::fs::copy(&inputs.kernel, &kernel)
        .with_context(|| format!("copying kernel {}", inputs.kernel.display()))?;
    let initrd = out_dir.join("initrd.img");
    let file = std::io::BufWriter::new(std::fs::File::create(&initrd)?);
    let mut cpio = Cpio::new(file);

    for d in [
        "bin",
        "sbin",
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "etc/bootlab",
        "usr/bin",
        "usr/sbin",
        "var/log",
    ] {
        cpio.dir(d)?;
    }
    cpio.file("init", 0o755, INIT.as_bytes())?;
    cpio.file_from("bin/busybox", 0o755, &inputs.busybox)?;
    cpio.file("etc/bootlab/udhcpc.sh", 0o755, UDHCPC.as_bytes())?;

    // kernel modules, deps first
    let dep_text = std::fs::read_to_string(inputs.modules.join("modules.dep"))
        .with_context(|| format!("reading {}/modules.dep", inputs.modules.display()))?;
    let builtin =
        std::fs::read_to_string(inputs.modules.join("modules.builtin")).unwrap_or_default();
    let builtin: BTreeSet<String> = builtin.lines().map(module_name).collect();
    let dep = parse_modules_dep(&dep_text);
    // Every nftables expression and netfilter helper as well: there is no
    // udev/modprobe autoloading in the appliance, and which expressions a
    // ruleset uses is bootlabd's business.
    let netfilter: Vec<String> = dep
        .keys()
        .map(|p| module_name(p))
        .filter(|n| n.starts_with("nft_") || n.starts_with("nf_") || n == "nfnetlink")
        .collect();
    let wanted: Vec<&str> = WANTED_MODULES
        .iter()
        .copied()
        .chain(netfilter.iter().map(String::as_str))
        .filter(|m| !builtin.contains(*m))
        .collect();
    let (order, missing) = resolve_modules(&dep, &wanted);
    let mut loaded = Vec::with_capacity(order.len());
    for m in &order {
        let data =
            std::fs::read(inputs.modules.join(m)).with_context(|| format!("reading module {m}"))?;
        let (name, data) = decompress_module(m, &data)?;
        cpio.file(&format!("lib/modules/{name}"), 0o644, &data)?;
        loaded.push(name);
    }
    let mut order_file = loaded.join("\n");
    order_file.push('\n');
    cpio.file("etc/bootlab/modules.order", 0o644, order_file.as_bytes())?;

    // binaries and their shared libraries
    let mut libs = BTreeSet::new();
    // Debug info is most of a debug build's size and useless in the appliance.
    let stripped = out_dir.join("bootlabd.stripped");
    let strip_ok = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&stripped)
        .arg(&inputs.bootlabd)
        .status()
        .is_ok_and(|s| s.success());
    let bootlabd = if strip_ok {
        &stripped
    } else {
        &inputs.bootlabd
    };
    cpio.file_from("usr/sbin/bootlabd", 0o755, bootlabd)?;
    libs.extend(shared_libs(&inputs.bootlabd)?);
    // Debian's and Ubuntu's `busybox` (not `-static`) is dynamically linked;
    // a static one needs nothing.
    libs.extend(shared_libs(&inputs.busybox)?);
    if let Some(nft) = &inputs.nft {
        cpio.file_from("usr/sbin/nft", 0o755, nft)?;
        libs.extend(shared_libs(nft)?);
    }
    for (tool, path) in crate::host::E2FSPROGS_TOOLS.iter().zip(&inputs.e2fsprogs) {
        cpio.file_from(&format!("{E2FSPROGS_DIR}/{tool}"), 0o755, path)
            .with_context(|| format!("reading {}", path.display()))?;
        libs.extend(shared_libs(path)?);
    }
    for lib in &libs {
        cpio.file_from(&lib.to_string_lossy(), 0o755, lib)
            .with_context(|| format!("reading {}", lib.display()))?;
    }

    // nft resolves protocol and service names through these; mke2fs reads
    // its defaults from mke2fs.conf (it has built-in ones without it)
    for f in ["/etc/protocols", "/etc/services", "/etc/mke2fs.conf"] {
        if let Ok(data) = std::fs::read(f) {
            cpio.file(f, 0o644, &data)?;
        }
    }

    cpio.finish()?.flush()?;
    Ok((ApplianceFiles { kernel, initrd }, missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_resolve_deps_first() {
        let dep = parse_modules_dep(
            "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko\n\
             kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n\
             kernel/net/core/failover.ko:\n\
             kernel/net/netfilter/nf_tables.ko.xz: kernel/net/netfilter/nfnetlink.ko.xz\n\
             kernel/net/netfilter/nfnetlink.ko.xz:\n\
             garbage line\n",
        );
        let (order, missing) = resolve_modules(&dep, &["virtio_net", "nf_tables", "nope"]);
        assert_eq!(
            order,
            [
                "kernel/net/core/failover.ko",
                "kernel/drivers/net/net_failover.ko",
                "kernel/drivers/net/virtio_net.ko",
                "kernel/net/netfilter/nfnetlink.ko.xz",
                "kernel/net/netfilter/nf_tables.ko.xz"
            ]
        );
        let pos = |n: &str| order.iter().position(|p| p.ends_with(n)).unwrap();
        assert!(pos("/failover.ko") < pos("/net_failover.ko"));
        assert!(pos("/net_failover.ko") < pos("/virtio_net.ko"));
        assert!(pos("nfnetlink.ko.xz") < pos("nf_tables.ko.xz"));
        assert_eq!(missing, vec!["nope"]);
    }

    #[test]
    fn ldd_output() {
        let t = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                 \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
                 \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                 \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n\
                 \tlibmissing.so => not found\n";
        assert_eq!(
            parse_ldd(t),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    #[test]
    fn cpio_is_deterministic_and_readable_by_cpio() {
        let build = || {
            let mut c = Cpio::new(Vec::new());
            c.file("a/b/c.txt", 0o644, b"hello").unwrap();
            c.symlink("a/l", "b/c.txt").unwrap();
            c.finish().unwrap()
        };
        let one = build();
        assert_eq!(one, build());
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-idm", "--quiet"])
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("cpio must be installed");
        child.stdin.take().unwrap().write_all(&one).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(
            std::fs::read(dir.path().join("a/b/c.txt")).unwrap(),
            b"hello"
        );
        assert_eq!(std::fs::read(dir.path().join("a/l")).unwrap(), b"hello");
    }
}
