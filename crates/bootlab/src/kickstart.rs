//! The services VM's kickstart for `install = { method = "kickstart" }`
//! (Fedora, RHEL and rebuilds: the syntax is the common subset of F41 and
//! RHEL9, which `ksvalidator` checks in the tests).
//!
//! - The lab NIC by MAC with the static address from the inventory (the
//!   gateway as default route unless an uplink provides one), the uplink
//!   by DHCP, the host name `<services.name>.<zone>`.
//! - Only the first disk (the root disk) is partitioned: the data disk and
//!   the payload are left to `%post`.
//! - No password at all: root is locked, the admin user `bootlab` is locked
//!   too and logs in with `services.ssh_authorized_keys`, with
//!   passwordless sudo.
//! - `%post` is [`crate::cloudinit::install_script`]: bootlabd (the binary:
//!   Fedora and RHEL cannot take the .deb, and it needs only libc and
//!   libgcc_s), its unit, lab.toml and the admin TLS from the payload disk,
//!   the data disk under the unit's state directory, the unit enabled.
//!   firewalld is off: bootlabd manages `table inet bootlab` itself.
//! - The installer powers off at the end, so `up` can switch the domain
//!   to its final definition.
//!
//! [`inject`] puts the kickstart into the installer's initrd the way
//! `virt-install --initrd-inject` does: a second cpio archive appended to
//! the initrd, holding `/ks.cfg`, which the kernel unpacks over the first
//! (it reads concatenated archives, compressed or not, with zero padding
//! between them). The archive is `newc`, written by the appliance's
//! [`crate::appliance::Cpio`]; the installer reads it with
//! `inst.ks=file:/ks.cfg`.

use std::fmt::Write as _;

use bootlab_inventory::{Inventory, NetworkMode};

use crate::cloudinit::{ADMIN_USER, check, install_script};

/// Quotes a kickstart argument (shlex rules: double quotes, `\` and `"`
/// escaped).
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The kickstart text.
pub fn kickstart(inv: &Inventory) -> anyhow::Result<String> {
    check(inv)?;
    let s = inv.services();
    let net = inv.network();
    let root = crate::xml::disk_target(inv.libvirt().disk_bus, 0);
    let mut k = String::new();
    let _ = writeln!(
        k,
        "# bootlab: the services VM {} of lab {} (generated; review it with\n# `bootlab render LAB kickstart`).",
        s.name,
        inv.lab().name
    );
    k.push_str("text\nlang en_US.UTF-8\nkeyboard us\ntimezone UTC --utc\n");
    let mut lab = format!(
        "network --device={} --bootproto=static --ip={} --netmask={} --hostname={}.{} --activate --onboot=yes",
        s.mac,
        s.ip,
        net.cidr.netmask(),
        s.name,
        inv.zone()
    );
    if s.uplink.is_none() && net.gateway != s.ip && net.mode != NetworkMode::Isolated {
        let _ = write!(lab, " --gateway={}", net.gateway);
    }
    let mut resolvers: Vec<String> = net
        .upstream_dns
        .iter()
        .map(|a| a.ip().to_string())
        .collect();
    if resolvers.is_empty() && net.mode == NetworkMode::Nat {
        resolvers.push(net.gateway.to_string());
    }
    if !resolvers.is_empty() {
        let _ = write!(lab, " --nameserver={}", resolvers.join(","));
    }
    if s.uplink.is_some() {
        lab.push_str(" --nodefroute");
    }
    let _ = writeln!(k, "{lab}");
    if let Some(u) = &s.uplink {
        let _ = writeln!(
            k,
            "network --device={} --bootproto=dhcp --activate --onboot=yes",
            u.mac
        );
    }
    k.push_str("rootpw --lock\n");
    let _ = writeln!(
        k,
        "user --name={ADMIN_USER} --groups=wheel --gecos={} --lock",
        quote("bootlab admin")
    );
    for key in &s.ssh_authorized_keys {
        let _ = writeln!(k, "sshkey --username={ADMIN_USER} {}", quote(key));
    }
    k.push_str("firewall --disabled\nselinux --enforcing\nskipx\n");
    let _ = writeln!(k, "ignoredisk --only-use={root}");
    let _ = writeln!(k, "zerombr\nclearpart --all --initlabel --drives={root}");
    k.push_str("autopart --type=plain --nohome\n");
    let _ = writeln!(
        k,
        "bootloader --location=mbr --boot-drive={root} --append={}",
        quote("console=ttyS0,115200")
    );
    k.push_str("poweroff\n\n%packages\n@core\ntar\ne2fsprogs\nnftables\n%end\n\n");
    k.push_str("%post --log=/root/bootlab-post.log\n");
    let _ = writeln!(
        k,
        "echo '{ADMIN_USER} ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/{ADMIN_USER}\nchmod 0440 /etc/sudoers.d/{ADMIN_USER}"
    );
    // The script's own shebang and `set -eu` run in a child shell.
    k.push_str("cat > /usr/local/sbin/bootlab-install <<'BOOTLAB_INSTALL'\n");
    k.push_str(&install_script(inv));
    k.push_str("BOOTLAB_INSTALL\nchmod 0755 /usr/local/sbin/bootlab-install\n/usr/local/sbin/bootlab-install\n%end\n");
    Ok(k)
}

/// The kickstart's path in the installer's initrd.
pub const KS_NAME: &str = "ks.cfg";

/// The kernel argument that makes the installer read [`KS_NAME`].
pub const KS_ARG: &str = "inst.ks=file:/ks.cfg";

/// Appends a `newc` cpio archive holding `/ks.cfg` (0644, `kickstart`) to
/// the initrd at `initrd`, after zeros up to a 4-byte boundary (where the
/// kernel looks for the next archive's magic). The original bytes are not
/// rewritten.
pub fn inject(initrd: &std::path::Path, kickstart: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new().append(true).open(initrd)?;
    let len = f.metadata()?.len();
    let pad = usize::try_from((4 - len % 4) % 4).unwrap_or(0);
    f.write_all(&[0u8; 3][..pad])?;
    let mut cpio = crate::appliance::Cpio::new(std::io::BufWriter::new(f));
    cpio.file(KS_NAME, 0o644, kickstart.as_bytes())?;
    cpio.finish()?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn static_lab_nic_locked_accounts_and_the_install_in_post() {
        let base = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/isolated-lab.toml"),
        )
        .unwrap();
        let text = base.replacen(
            "[services]\n",
            "[services]\nssh_authorized_keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKEY me@host\"]\ninstall = { method = \"kickstart\", iso = \"/srv/Fedora-Server-dvd-x86_64-41-1.4.iso\" }\n",
            1,
        );
        let inv = bootlab_inventory::parse(&text, Path::new("lab.toml")).unwrap();
        let k = kickstart(&inv).unwrap();
        assert!(
            k.contains("network --device=52:54:00:4d:00:fe --bootproto=static --ip=10.77.0.254 --netmask=255.255.255.0"),
            "{k}"
        );
        assert!(k.contains("--nodefroute"), "{k}");
        assert!(
            k.contains("network --device=52:54:00:4d:01:fe --bootproto=dhcp"),
            "{k}"
        );
        assert!(k.contains("rootpw --lock\n"), "{k}");
        assert!(
            k.contains(
                "sshkey --username=bootlab \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKEY me@host\""
            ),
            "{k}"
        );
        assert!(
            !k.contains("--password") && !k.contains("--plaintext"),
            "{k}"
        );
        assert!(k.contains("ignoredisk --only-use=vda"), "{k}");
        assert!(
            k.contains("install -D -m 0755 \"$W/bootlabd\" /usr/sbin/bootlabd"),
            "{k}"
        );
        assert!(k.contains("systemctl enable bootlabd.service"), "{k}");
        assert!(k.ends_with("%end\n"), "{k}");
    }
}
