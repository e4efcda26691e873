//! `boot-assets/gather.sh DIR` with the real Debian packages: the first-stage
//! binaries and GRUB modules land in DIR with a manifest that verifies, and
//! the HTTP service serves them byte for byte.

mod common;

use std::process::Command;

use bootlab_testkit::repo_root;
use common::{Lab, get};

#[test]
fn gather_puts_loaders_and_grub_modules_with_a_verifying_manifest() {
    let lab = Lab::start();
    let dir = &lab.assets;
    let script = repo_root().join("boot-assets/gather.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(dir)
        .output()
        .expect("bash runs gather.sh");
    assert!(
        out.status.success(),
        "gather.sh failed (needs apt-get update and the Debian archive):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    for name in ["undionly.kpxe", "snponly.efi", "ipxe.efi", "grubnetx64.efi"] {
        let bytes = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(bytes.len() > 10_000, "{name} is {} bytes", bytes.len());
        if name.ends_with(".efi") {
            assert_eq!(&bytes[..2], b"MZ", "{name} is a PE/COFF image");
        }
    }
    for module in [
        "http.mod",
        "net.mod",
        "linux.mod",
        "efinet.mod",
        "moddep.lst",
        "command.lst",
    ] {
        assert!(
            dir.join("grub/x86_64-efi").join(module).is_file(),
            "{module}"
        );
    }

    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    assert!(
        sums.lines()
            .any(|l| l.ends_with("  grub/x86_64-efi/http.mod")),
        "{sums}"
    );
    assert!(!sums.contains("vmlinuz"), "only gathered files are listed");
    let check = Command::new("sha256sum")
        .args(["--check", "--quiet", "--strict", "SHA256SUMS"])
        .current_dir(dir)
        .output()
        .expect("sha256sum runs");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    let packages = std::fs::read_to_string(dir.join("PACKAGES")).unwrap();
    for pkg in ["ipxe ", "grub-efi-amd64-signed ", "grub-efi-amd64-bin "] {
        assert!(packages.lines().any(|l| l.starts_with(pkg)), "{packages}");
    }

    // What UEFI HTTP boot fetches: served byte for byte.
    let (code, body) = get(&[&lab.url("/assets/ipxe.efi")]);
    assert_eq!(code, 200);
    assert_eq!(body, std::fs::read(dir.join("ipxe.efi")).unwrap());
    let (code, body) = get(&[&lab.url("/assets/grub/x86_64-efi/http.mod")]);
    assert_eq!(code, 200);
    assert_eq!(
        body,
        std::fs::read(dir.join("grub/x86_64-efi/http.mod")).unwrap()
    );
}
