//! Facts about the machine for `GET /v1/state`: boot id and uptime (the
//! host tool tells "restarted" from "reloaded" by them), memory, bootlabd's
//! own RSS, and the file systems holding the data and the assets (size,
//! free space, type and device from /proc/self/mounts).

use std::path::Path;

use crate::wire::{FsFacts, MachineFacts};

fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let kib: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kib * 1024)
    })
}

/// The machine's facts, from /proc. The packaged systemd unit hides
/// /proc's global files (`ProcSubset=pid`): then uptime and memory come
/// from sysinfo(2) (free memory standing in for available), and the boot
/// id is empty (the host tells a reboot by the uptime then).
pub fn machine() -> MachineFacts {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let meminfo = read("/proc/meminfo");
    let status = read("/proc/self/status");
    let si = nix::sys::sysinfo::sysinfo().ok();
    MachineFacts {
        boot_id: read("/proc/sys/kernel/random/boot_id").trim().to_owned(),
        uptime_s: read("/proc/uptime")
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .or_else(|| si.as_ref().map(|s| s.uptime().as_secs_f64()))
            .unwrap_or(0.0),
        mem_total: kib_field(&meminfo, "MemTotal")
            .or_else(|| si.as_ref().map(|s| s.ram_total()))
            .unwrap_or(0),
        mem_available: kib_field(&meminfo, "MemAvailable")
            .or_else(|| si.as_ref().map(|s| s.ram_unused()))
            .unwrap_or(0),
        daemon_rss: kib_field(&status, "VmRSS").unwrap_or(0),
    }
}

/// Unescapes /proc/mounts' octal escapes (`\040` for a space).
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        // Exactly three octal digits (bytes, so never a slice inside a
        // multi-byte character; found by the admin_wire fuzz target).
        if b[i] == b'\\' && i + 3 < b.len() {
            let d = &b[i + 1..i + 4];
            if d.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount (device, type) whose mount point is the longest prefix of
/// `path`, from /proc/mounts text.
pub fn mount_of(mounts: &str, path: &Path) -> Option<(String, String)> {
    let mut best: Option<(usize, String, String)> = None;
    for l in mounts.lines() {
        let mut f = l.split_whitespace();
        let (Some(dev), Some(mp), Some(ty)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let mp = unescape_mount(mp);
        if path.starts_with(&mp) && best.as_ref().is_none_or(|(n, _, _)| mp.len() >= *n) {
            best = Some((mp.len(), dev.to_owned(), ty.to_owned()));
        }
    }
    best.map(|(_, d, t)| (d, t))
}

/// Size, free space, type and device of the file system holding `dir`.
pub fn fs(dir: &Path) -> Option<FsFacts> {
    let total = crate::store::total_bytes(dir).ok()?;
    let available = crate::store::available_bytes(dir).ok()?;
    let real = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    // /proc/self/mounts: /proc/mounts is hidden under ProcSubset=pid.
    let mount = std::fs::read_to_string("/proc/self/mounts")
        .or_else(|_| std::fs::read_to_string("/proc/mounts"))
        .ok()
        .and_then(|m| mount_of(&m, &real));
    Some(FsFacts {
        path: dir.display().to_string(),
        total,
        available,
        fs_type: mount.as_ref().map(|(_, t)| t.clone()),
        device: mount.map(|(d, _)| d),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_mount_wins() {
        let m = "rootfs / rootfs rw 0 0\n/dev/vda /var/lib/bootlab ext4 rw 0 0\ntmpfs /var/lib/bootlab/x\\040y tmpfs rw 0 0\n";
        assert_eq!(
            mount_of(m, Path::new("/var/lib/bootlab/assets")),
            Some(("/dev/vda".into(), "ext4".into()))
        );
        assert_eq!(
            mount_of(m, Path::new("/var/lib/bootlab/x y/z")),
            Some(("tmpfs".into(), "tmpfs".into()))
        );
        assert_eq!(
            mount_of(m, Path::new("/etc")),
            Some(("rootfs".into(), "rootfs".into()))
        );
    }

    #[test]
    fn escapes_are_three_octal_digits_and_never_split_a_character() {
        assert_eq!(unescape_mount("/a\\040b"), "/a b");
        assert_eq!(unescape_mount("/a\\+12b"), "/a\\+12b");
        assert_eq!(unescape_mount("/a\\777"), "/a\\777");
        // the admin_wire fuzz target's crash: a backslash before a
        // multi-byte character
        assert_eq!(unescape_mount("/x\\0\u{fffd}e"), "/x\\0\u{fffd}e");
        let crash = "/dev/vda /var/libmpfsootlab/x\\0\u{fffd}e.ssh/idh tmpfs 2 0rw";
        assert_eq!(mount_of(crash, Path::new("/var/lib/bootlab/assets")), None);
    }

    #[test]
    fn own_facts() {
        let f = machine();
        assert!(f.mem_total > 0 && f.daemon_rss > 0 && f.uptime_s > 0.0);
        assert_eq!(f.boot_id.len(), 36);
    }
}
