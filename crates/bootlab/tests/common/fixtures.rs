//! Host trees laid out as Debian, Ubuntu, Fedora and RHEL lay them out
//! (os-release, where busybox, the kernel image, its modules, QEMU and OVMF
//! live, how modules are compressed), for `BOOTLAB_HOST_ROOT` /
//! `HostPaths { root }`. Binaries are real copies (busybox from
//! busybox-static), compressed modules are made with the real xz / zstd.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bootlab_bootlab::appliance::WANTED_MODULES;
use bootlab_bootlab::host::HostPaths;

/// How one distribution lays a host out.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub name: &'static str,
    pub os_release: &'static str,
    pub release: &'static str,
    /// Where its busybox package puts the binary (None: not packaged).
    pub busybox: Option<&'static str>,
    /// The kernel image, relative to the root.
    pub kernel: &'static str,
    /// Mode of the kernel image (Ubuntu's is 0600).
    pub kernel_mode: u32,
    /// The module tree, relative to the root.
    pub modules: &'static str,
    /// Module suffix after `.ko` (`""`, `.xz`, `.zst`).
    pub compression: &'static str,
    pub qemu: &'static str,
    pub ovmf: &'static str,
}

pub const DEBIAN: Layout = Layout {
    name: "debian",
    os_release: "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
                 VERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n",
    release: "6.1.0-37-amd64",
    busybox: Some("bin/busybox"),
    kernel: "boot/vmlinuz-6.1.0-37-amd64",
    kernel_mode: 0o644,
    modules: "lib/modules/6.1.0-37-amd64",
    compression: "",
    qemu: "usr/bin/qemu-system-x86_64",
    ovmf: "usr/share/OVMF/OVMF_CODE_4M.fd",
};

pub const UBUNTU: Layout = Layout {
    name: "ubuntu",
    os_release: "PRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\n\
                 ID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n",
    release: "6.8.0-51-generic",
    busybox: Some("usr/bin/busybox"),
    kernel: "boot/vmlinuz-6.8.0-51-generic",
    kernel_mode: 0o600,
    modules: "usr/lib/modules/6.8.0-51-generic",
    compression: ".zst",
    qemu: "usr/bin/qemu-system-x86_64",
    ovmf: "usr/share/OVMF/OVMF_CODE_4M.fd",
};

pub const FEDORA: Layout = Layout {
    name: "fedora",
    os_release: "NAME=\"Fedora Linux\"\nVERSION=\"41 (Server Edition)\"\nID=fedora\n\
                 VERSION_ID=41\nPRETTY_NAME=\"Fedora Linux 41 (Server Edition)\"\n",
    release: "6.11.4-301.fc41.x86_64",
    busybox: Some("usr/sbin/busybox"),
    kernel: "lib/modules/6.11.4-301.fc41.x86_64/vmlinuz",
    kernel_mode: 0o755,
    modules: "lib/modules/6.11.4-301.fc41.x86_64",
    compression: ".xz",
    qemu: "usr/bin/qemu-system-x86_64",
    ovmf: "usr/share/edk2/ovmf/OVMF_CODE.fd",
};

pub const RHEL: Layout = Layout {
    name: "rhel",
    os_release: "NAME=\"Red Hat Enterprise Linux\"\nVERSION=\"9.4 (Plow)\"\nID=\"rhel\"\n\
                 ID_LIKE=\"fedora\"\nVERSION_ID=\"9.4\"\n\
                 PRETTY_NAME=\"Red Hat Enterprise Linux 9.4 (Plow)\"\n",
    release: "5.14.0-427.13.1.el9_4.x86_64",
    busybox: None,
    kernel: "lib/modules/5.14.0-427.13.1.el9_4.x86_64/vmlinuz",
    kernel_mode: 0o755,
    modules: "lib/modules/5.14.0-427.13.1.el9_4.x86_64",
    compression: ".xz",
    qemu: "usr/libexec/qemu-kvm",
    ovmf: "usr/share/edk2/ovmf/OVMF_CODE.fd",
};

pub const ALL: [Layout; 4] = [DEBIAN, UBUNTU, FEDORA, RHEL];

/// Which parts a fixture host has.
#[derive(Debug, Clone, Copy)]
pub struct Parts {
    pub busybox: bool,
    pub e2fsprogs: bool,
    pub kernel: bool,
    pub modules: bool,
    pub virt: bool,
}

impl Parts {
    pub const ALL: Parts = Parts {
        busybox: true,
        e2fsprogs: true,
        kernel: true,
        modules: true,
        virt: true,
    };
    pub const NONE: Parts = Parts {
        busybox: false,
        e2fsprogs: false,
        kernel: false,
        modules: false,
        virt: false,
    };
}

/// A fixture host tree, removed on drop.
pub struct FixtureHost {
    pub layout: Layout,
    pub dir: tempfile::TempDir,
}

/// Compresses `data` as the distribution's kmod build does (`xz
/// --check=crc32`, `zstd`), with the real tools.
pub fn compress(data: &[u8], suffix: &str) -> Vec<u8> {
    let (prog, args): (&str, &[&str]) = match suffix {
        "" => return data.to_vec(),
        ".xz" => ("xz", &["--check=crc32", "--lzma2=dict=1MiB", "-c"]),
        ".zst" => ("zstd", &["-q", "-c"]),
        ".gz" => ("gzip", &["-n", "-c"]),
        other => panic!("no compressor for {other}"),
    };
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{prog} must be installed (tests/apt-packages.txt): {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = data.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write as _;
        stdin.write_all(&input).unwrap();
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "{prog} failed");
    out.stdout
}

fn put(path: &Path, data: &[u8], mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl FixtureHost {
    /// `layout`'s tree with `parts`. Modules are small stand-in files
    /// (compressed for real) listed in modules.dep, the way depmod writes
    /// it; `virtio_pci` is built in (modules.builtin), as on Fedora.
    pub fn new(layout: Layout, parts: Parts) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("bootlab-host-{}-", layout.name))
            .tempdir()
            .unwrap();
        let me = FixtureHost { layout, dir };
        let root = me.root();
        put(
            &root.join("etc/os-release"),
            layout.os_release.as_bytes(),
            0o644,
        );
        put(
            &root.join("proc/sys/kernel/osrelease"),
            format!("{}\n", layout.release).as_bytes(),
            0o444,
        );
        if parts.busybox {
            if let Some(b) = layout.busybox {
                put(
                    &root.join(b),
                    &std::fs::read("/bin/busybox").expect("busybox-static is installed"),
                    0o755,
                );
            }
        }
        if parts.e2fsprogs {
            // Every distribution here installs them in /usr/sbin (Debian's
            // /sbin since the /usr merge); real copies, as the appliance
            // build runs ldd on them.
            for t in bootlab_bootlab::host::E2FSPROGS_TOOLS {
                let real = ["/usr/sbin", "/sbin"]
                    .iter()
                    .map(|d| Path::new(d).join(t))
                    .find(|p| p.is_file())
                    .expect("e2fsprogs is installed");
                put(
                    &root.join("usr/sbin").join(t),
                    &std::fs::read(real).unwrap(),
                    0o755,
                );
            }
        }
        if parts.kernel {
            put(
                &root.join(layout.kernel),
                b"stand-in kernel image",
                layout.kernel_mode,
            );
        }
        if parts.modules {
            let mut dep = String::new();
            for m in WANTED_MODULES.iter().filter(|m| **m != "virtio_pci") {
                let rel = format!("kernel/{m}.ko{}", layout.compression);
                let body = format!("stand-in module {m}\n").repeat(64);
                put(
                    &root.join(layout.modules).join(&rel),
                    &compress(body.as_bytes(), layout.compression),
                    0o644,
                );
                dep.push_str(&format!("{rel}:\n"));
            }
            put(
                &root.join(layout.modules).join("modules.dep"),
                dep.as_bytes(),
                0o644,
            );
            put(
                &root.join(layout.modules).join("modules.builtin"),
                b"kernel/drivers/virtio/virtio_pci.ko\n",
                0o644,
            );
        }
        if parts.virt {
            put(&root.join(layout.qemu), b"stand-in qemu", 0o755);
            put(&root.join(layout.ovmf), b"stand-in ovmf", 0o644);
            put(&root.join("usr/sbin/nft"), b"stand-in nft", 0o755);
        }
        me
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn paths(&self) -> HostPaths {
        HostPaths {
            root: self.root().to_path_buf(),
        }
    }

    pub fn at(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }
}
