//! The hypervisor's distribution: which one it is (`/etc/os-release`), where
//! it keeps what `plan`/`up` need (busybox, the kernel image and its module
//! tree, QEMU, OVMF, nft), and the command that installs what is missing
//! there.
//!
//! | | Debian | Ubuntu | Fedora | RHEL family |
//! |---|---|---|---|---|
//! | busybox | `busybox-static`: /bin/busybox | `busybox-static`: /bin/busybox | `busybox` (static): /usr/sbin/busybox | none packaged: a static build from elsewhere, `--busybox PATH` |
//! | kernel | /boot/vmlinuz-R | /boot/vmlinuz-R (mode 0600) | /lib/modules/R/vmlinuz, /boot/vmlinuz-R | as Fedora |
//! | modules | /lib/modules/R (`.ko`; `.ko.xz` from trixie) | /lib/modules/R (`.ko.zst` from 23.10) | /lib/modules/R (`.ko.xz`) | as Fedora |
//! | QEMU | /usr/bin/qemu-system-x86_64 | as Debian | as Debian | /usr/libexec/qemu-kvm |
//! | OVMF | /usr/share/OVMF/OVMF_CODE_4M.fd | as Debian | /usr/share/edk2/ovmf/OVMF_CODE.fd | as Fedora |
//! | QEMU user | libvirt-qemu | libvirt-qemu | qemu | qemu |
//!
//! Every path is looked up under a root (`/`, or `BOOTLAB_HOST_ROOT` for a
//! chroot or a test's fixture tree), so the logic is tested with fixture
//! trees laid out as each distribution does. os-release(5) is read by hand:
//! `KEY=value` lines with optional quotes, nothing a crate would add; the
//! `host_probes` fuzz target feeds it arbitrary bytes.

use std::path::{Path, PathBuf};

/// Distribution families that differ in paths and package names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Debian and derivatives other than Ubuntu.
    Debian,
    /// Ubuntu and derivatives.
    Ubuntu,
    /// Fedora.
    Fedora,
    /// RHEL, CentOS Stream, Rocky, AlmaLinux, Oracle Linux.
    Rhel,
    /// Anything else.
    Other,
}

/// The host's distribution, from os-release(5).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Distro {
    /// `ID` (`debian`, `ubuntu`, `fedora`, `rhel`, `rocky`...).
    pub id: String,
    /// `PRETTY_NAME`, else `NAME`, else the id.
    pub name: String,
    /// What its paths and package names follow.
    pub family: Family,
}

/// Something `plan`/`up` need from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A busybox for the appliance.
    Busybox,
    /// A kernel image for the appliance.
    Kernel,
    /// The kernel's module tree.
    Modules,
    /// libvirtd (or virtqemud) and its client library.
    Libvirt,
    /// QEMU for x86_64.
    Qemu,
    /// OVMF (UEFI guests).
    Ovmf,
    /// nft (the host egress rule, the appliance's firewall).
    Nft,
    /// e2fsprogs (the appliance formats, checks and grows its ext4 data disk).
    E2fsprogs,
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
        .unwrap_or(v)
        .replace("\\\"", "\"")
}

impl Distro {
    /// Parses os-release(5) text.
    pub fn parse(text: &str) -> Self {
        let get = |key: &str| {
            text.lines().find_map(|l| {
                let (k, v) = l.trim().split_once('=')?;
                (k == key).then(|| unquote(v))
            })
        };
        let id = get("ID").unwrap_or_else(|| "linux".into()).to_lowercase();
        let like = get("ID_LIKE").unwrap_or_default().to_lowercase();
        let ids: Vec<&str> = std::iter::once(id.as_str())
            .chain(like.split_whitespace())
            .collect();
        let family = if ids[0] == "fedora" {
            Family::Fedora
        } else if ids[0] == "ubuntu" || ids.contains(&"ubuntu") {
            Family::Ubuntu
        } else if ids.contains(&"debian") {
            Family::Debian
        } else if ids
            .iter()
            .any(|i| matches!(*i, "rhel" | "centos" | "rocky" | "almalinux" | "ol"))
            || (ids.contains(&"fedora") && ids[0] != "fedora")
        {
            Family::Rhel
        } else {
            Family::Other
        };
        let name = get("PRETTY_NAME")
            .or_else(|| get("NAME"))
            .unwrap_or_else(|| id.clone());
        Self { id, name, family }
    }

    /// Reads `<root>/etc/os-release`, else `<root>/usr/lib/os-release`.
    pub fn detect(root: &Path) -> Self {
        ["etc/os-release", "usr/lib/os-release"]
            .iter()
            .find_map(|p| std::fs::read_to_string(root.join(p)).ok())
            .map_or_else(|| Self::parse(""), |t| Self::parse(&t))
    }

    /// The user libvirt runs QEMU as by default here.
    pub fn qemu_user(&self) -> &'static str {
        match self.family {
            Family::Fedora | Family::Rhel => "qemu",
            _ => "libvirt-qemu",
        }
    }

    /// The command (or step) that provides `need` here.
    pub fn fix(&self, need: Need) -> String {
        use Family::*;
        let apt = matches!(self.family, Debian | Ubuntu);
        let s = match (need, self.family) {
            (Need::Busybox, Debian | Ubuntu) => "apt-get install busybox-static",
            (Need::Busybox, Fedora) => "dnf install busybox (Fedora's is statically linked)",
            (Need::Busybox, Rhel) => {
                "RHEL and its rebuilds ship no busybox: take a statically linked one \
                 (Fedora's busybox RPM or Debian's busybox-static .deb: rpm2cpio | cpio -id, \
                 or dpkg-deb -x) and pass --busybox PATH"
            }
            (Need::Kernel | Need::Modules, Debian) => {
                "apt-get install linux-image-amd64, or pass --kernel PATH --modules DIR"
            }
            (Need::Kernel | Need::Modules, Ubuntu) => {
                "apt-get install linux-image-generic (the modules come with linux-modules-*), \
                 or pass --kernel PATH --modules DIR"
            }
            (Need::Kernel | Need::Modules, Fedora | Rhel) => {
                "dnf install kernel-core kernel-modules-core kernel-modules, \
                 or pass --kernel PATH --modules DIR"
            }
            (Need::Libvirt, Debian | Ubuntu) => {
                "apt-get install libvirt-daemon-system && systemctl enable --now libvirtd"
            }
            (Need::Libvirt, Fedora | Rhel) => {
                "dnf install libvirt-daemon-kvm && systemctl enable --now virtqemud.socket"
            }
            (Need::Qemu, Debian | Ubuntu) => "apt-get install qemu-system-x86",
            (Need::Qemu, Fedora) => "dnf install qemu-system-x86",
            (Need::Qemu, Rhel) => "dnf install qemu-kvm (it installs /usr/libexec/qemu-kvm)",
            (Need::Ovmf, Debian | Ubuntu) => "apt-get install ovmf",
            (Need::Ovmf, Fedora | Rhel) => "dnf install edk2-ovmf",
            (Need::E2fsprogs, Debian | Ubuntu) => "apt-get install e2fsprogs",
            (Need::E2fsprogs, Fedora | Rhel) => "dnf install e2fsprogs",
            (Need::E2fsprogs, Other) => "install e2fsprogs (mke2fs, tune2fs, resize2fs, e2fsck)",
            (Need::Nft, _) if apt => "apt-get install nftables",
            (Need::Nft, Fedora | Rhel) => "dnf install nftables",
            (Need::Busybox, Other) => "install a statically linked busybox and pass --busybox PATH",
            (Need::Kernel | Need::Modules, Other) => {
                "install a kernel with its modules, or pass --kernel PATH --modules DIR"
            }
            (Need::Libvirt, Other) => "install and start libvirtd (or virtqemud)",
            (Need::Qemu, Other) => "install qemu-system-x86_64",
            (Need::Ovmf, Other) => "install OVMF (edk2 for x86_64)",
            (Need::Nft, _) => "install nftables",
        };
        s.to_owned()
    }
}

/// Where the host keeps things: every lookup is under `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    /// `/`, or a chroot / fixture tree.
    pub root: PathBuf,
}

/// Where distributions put busybox, most specific first.
pub const BUSYBOX_PATHS: &[&str] = &[
    "usr/bin/busybox",
    "bin/busybox",
    "usr/sbin/busybox",
    "sbin/busybox",
];

/// Where distributions put the x86_64 QEMU system emulator (RHEL's
/// `qemu-kvm` is not on PATH).
pub const QEMU_PATHS: &[&str] = &[
    "usr/bin/qemu-system-x86_64",
    "usr/local/bin/qemu-system-x86_64",
    "usr/libexec/qemu-kvm",
    "usr/bin/qemu-kvm",
];

/// Where distributions put the OVMF code image (UEFI guests).
pub const OVMF_PATHS: &[&str] = &[
    "usr/share/OVMF/OVMF_CODE_4M.fd",
    "usr/share/OVMF/OVMF_CODE.fd",
    "usr/share/edk2/ovmf/OVMF_CODE.fd",
    "usr/share/edk2/ovmf/OVMF_CODE_4M.qcow2",
    "usr/share/edk2/x64/OVMF_CODE.4m.fd",
];

/// Where distributions put nft.
pub const NFT_PATHS: &[&str] = &["usr/sbin/nft", "sbin/nft", "usr/bin/nft"];

/// The e2fsprogs tools the appliance carries for its ext4 data disk:
/// format once, add a journal to an old ext2 disk, grow with the volume,
/// repair when a mount fails.
pub const E2FSPROGS_TOOLS: &[&str] = &["mke2fs", "tune2fs", "resize2fs", "e2fsck"];

/// Where distributions put e2fsprogs' tools (Debian's /sbin is /usr/sbin
/// since the /usr merge; Fedora and RHEL use /usr/sbin).
pub const E2FSPROGS_DIRS: &[&str] = &["usr/sbin", "sbin"];

/// `paths` as the absolute paths a user would look at (`/usr/bin, /bin`).
pub fn shown(paths: &[&str]) -> String {
    paths
        .iter()
        .map(|p| format!("/{p}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl HostPaths {
    /// The real host: `/`, or `BOOTLAB_HOST_ROOT` when set (a chroot, or a
    /// test's fixture tree).
    pub fn system() -> Self {
        Self {
            root: std::env::var_os("BOOTLAB_HOST_ROOT")
                .map_or_else(|| PathBuf::from("/"), PathBuf::from),
        }
    }

    /// The host's distribution.
    pub fn distro(&self) -> Distro {
        Distro::detect(&self.root)
    }

    fn at(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// The running kernel's release (`uname -r`), from
    /// `<root>/proc/sys/kernel/osrelease`.
    pub fn kernel_release(&self) -> Option<String> {
        std::fs::read_to_string(self.at("proc/sys/kernel/osrelease"))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }

    fn first_file(&self, candidates: &[&str]) -> Option<PathBuf> {
        candidates.iter().map(|p| self.at(p)).find(|p| p.is_file())
    }

    /// A busybox binary, wherever this distribution puts it.
    pub fn busybox(&self) -> Option<PathBuf> {
        self.first_file(BUSYBOX_PATHS)
    }

    /// The x86_64 QEMU system emulator.
    pub fn qemu(&self) -> Option<PathBuf> {
        self.first_file(QEMU_PATHS)
    }

    /// The OVMF code image.
    pub fn ovmf(&self) -> Option<PathBuf> {
        self.first_file(OVMF_PATHS)
    }

    /// nft.
    pub fn nft(&self) -> Option<PathBuf> {
        self.first_file(NFT_PATHS)
    }

    /// Every tool of [`E2FSPROGS_TOOLS`], or `None` when one is missing.
    pub fn e2fsprogs(&self) -> Option<Vec<PathBuf>> {
        E2FSPROGS_TOOLS
            .iter()
            .map(|t| {
                let candidates: Vec<String> =
                    E2FSPROGS_DIRS.iter().map(|d| format!("{d}/{t}")).collect();
                let refs: Vec<&str> = candidates.iter().map(String::as_str).collect();
                self.first_file(&refs)
            })
            .collect()
    }

    /// The user QEMU runs as under `qemu:///system`: `user = ` in
    /// `/etc/libvirt/qemu.conf`, else the distribution's default.
    pub fn qemu_user(&self) -> String {
        std::fs::read_to_string(self.at("etc/libvirt/qemu.conf"))
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    let v = l
                        .trim()
                        .strip_prefix("user")?
                        .trim_start()
                        .strip_prefix('=')?;
                    Some(v.trim().trim_matches('"').to_owned())
                })
            })
            .unwrap_or_else(|| self.distro().qemu_user().to_owned())
    }

    /// Kernel image candidates for `release`, in the order tried.
    pub fn kernel_candidates(&self, release: &str) -> Vec<PathBuf> {
        vec![
            self.at(&format!("boot/vmlinuz-{release}")),
            self.at(&format!("lib/modules/{release}/vmlinuz")),
            self.at(&format!("usr/lib/modules/{release}/vmlinuz")),
        ]
    }

    /// The first existing kernel image for `release`.
    pub fn kernel(&self, release: &str) -> Option<PathBuf> {
        self.kernel_candidates(release)
            .into_iter()
            .find(|p| p.is_file())
    }

    /// The kernel release the appliance is built from by default: the
    /// running kernel when its image and module tree are both here (Debian,
    /// Ubuntu, Fedora and RHEL hosts booted from their own kernel), else the
    /// newest installed release that has both (a host running a kernel it
    /// did not install, as in containers and some clouds, after
    /// `apt-get install linux-image-amd64` / `dnf install kernel-core`).
    pub fn appliance_release(&self) -> Option<String> {
        let complete = |r: &str| self.kernel(r).is_some() && self.modules(r).is_some();
        if let Some(r) = self.kernel_release().filter(|r| complete(r)) {
            return Some(r);
        }
        let mut installed: Vec<String> = ["lib/modules", "usr/lib/modules"]
            .iter()
            .filter_map(|d| std::fs::read_dir(self.at(d)).ok())
            .flat_map(|d| d.flatten())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|r| complete(r))
            .collect();
        installed.sort_by(|a, b| version_cmp(a, b));
        installed.pop()
    }

    /// The module tree (holding `modules.dep`) for `release`.
    pub fn modules(&self, release: &str) -> Option<PathBuf> {
        [
            format!("lib/modules/{release}"),
            format!("usr/lib/modules/{release}"),
        ]
        .iter()
        .map(|p| self.at(p))
        .find(|p| p.join("modules.dep").is_file())
    }
}

/// Orders kernel releases as versions: digit runs by value, the rest as
/// text (`6.1.0-9-amd64` < `6.1.0-37-amd64` < `6.10.2-1-amd64`).
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn runs(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ra, rb) = (runs(a), runs(b));
    for (x, y) in ra.iter().zip(&rb) {
        let o = match (x, y) {
            ((true, x), (true, y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if o.is_ne() {
            return o;
        }
    }
    ra.len().cmp(&rb.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_families() {
        let cases = [
            (
                "ID=debian\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
                Family::Debian,
            ),
            ("ID=ubuntu\nID_LIKE=debian\n", Family::Ubuntu),
            ("ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n", Family::Ubuntu),
            ("ID=fedora\nVERSION_ID=41\n", Family::Fedora),
            ("ID=\"rhel\"\nID_LIKE=\"fedora\"\n", Family::Rhel),
            ("ID=\"centos\"\nID_LIKE=\"rhel fedora\"\n", Family::Rhel),
            (
                "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n",
                Family::Rhel,
            ),
            (
                "ID=\"almalinux\"\nID_LIKE=\"rhel centos fedora\"\n",
                Family::Rhel,
            ),
            ("ID=arch\n", Family::Other),
            ("", Family::Other),
        ];
        for (text, family) in cases {
            assert_eq!(Distro::parse(text).family, family, "{text}");
        }
        let d = Distro::parse("ID=debian\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n");
        assert_eq!(d.name, "Debian GNU/Linux 12 (bookworm)");
    }

    #[test]
    fn kernel_releases_order_as_versions() {
        let mut v = vec![
            "6.10.2-1-amd64",
            "6.1.0-37-amd64",
            "6.1.0-9-amd64",
            "5.14.0-427.13.1.el9_4.x86_64",
            "6.1.0-37-cloud-amd64",
        ];
        v.sort_by(|a, b| version_cmp(a, b));
        assert_eq!(
            v,
            [
                "5.14.0-427.13.1.el9_4.x86_64",
                "6.1.0-9-amd64",
                "6.1.0-37-amd64",
                "6.1.0-37-cloud-amd64",
                "6.10.2-1-amd64"
            ]
        );
        assert!(version_cmp("", "1").is_lt());
        assert!(version_cmp("007", "7").is_eq());
    }

    #[test]
    fn fixes_name_each_family_s_package() {
        let fix = |id: &str, need| Distro::parse(&format!("ID={id}\n")).fix(need);
        assert_eq!(
            fix("debian", Need::Busybox),
            "apt-get install busybox-static"
        );
        assert!(fix("fedora", Need::Busybox).starts_with("dnf install busybox"));
        assert!(fix("rhel", Need::Busybox).contains("--busybox PATH"));
        assert!(fix("ubuntu", Need::Modules).contains("linux-modules"));
        assert!(fix("fedora", Need::Kernel).contains("kernel-core"));
        assert!(fix("rocky", Need::Libvirt).contains("virtqemud"));
        assert!(fix("rhel", Need::Qemu).contains("qemu-kvm"));
        assert_eq!(fix("fedora", Need::Ovmf), "dnf install edk2-ovmf");
    }
}
