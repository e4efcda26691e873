//! The lab's HTTP root stamped into the GRUB image for UEFI HTTP boot.
//!
//! Loaded by the firmware's HTTP boot client, Debian's GRUB 2.06 learns
//! nothing about where it came from: no address, no `$root`, no `$prefix`
//! (measured: `net_ls_addr` empty, `$prefix` and `$cmdpath` unset; its
//! efinet takes its network from PXE's cached DHCP ack, which HTTP boot
//! does not leave). So the image that `boot-assets/gather.sh` builds carries
//! an embedded config (`net_bootp`, then `set prefix=<placeholder>`), and
//! bootlabd writes its own HTTP root over the placeholder as it serves the
//! image: same length, padded with spaces, no change to the PE layout (the
//! image is unsigned; the signed chain does not use it). GRUB then reads
//! `$prefix/grub.cfg`, i.e. `/grub/grub.cfg` on bootlabd: the node's config.
//! The embedded config runs under GRUB's rescue parser: no comments, no
//! variables, one command per line.

/// The placeholder's first bytes; it runs to the end of its line.
pub const MARKER: &[u8] = b"@BOOTLAB_GRUB_PREFIX@";

/// `image` with the placeholder replaced by `<root>/grub` (`root` e.g.
/// `(http,10.77.0.254:8080)`), padded with spaces to the same length.
/// `None` when the image has no placeholder or the value does not fit.
pub fn grub_root(image: &[u8], root: &str) -> Option<Vec<u8>> {
    let start = find(image, MARKER)?;
    let len = image[start..].iter().position(|&b| b == b'\n')?;
    let prefix = format!("{root}/grub");
    if prefix.len() > len || prefix.bytes().any(|b| b.is_ascii_whitespace()) {
        return None;
    }
    let mut out = image.to_vec();
    let region = &mut out[start..start + len];
    region[..prefix.len()].copy_from_slice(prefix.as_bytes());
    region[prefix.len()..].fill(b' ');
    Some(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_in_place_and_keeps_the_length() {
        let mut image = b"MZ....net_bootp\nset prefix=".to_vec();
        image.extend_from_slice(MARKER);
        image.extend_from_slice(&[b'_'; 60]);
        image.extend_from_slice(b"\n\0\0tail");
        let out = grub_root(&image, "(http,10.77.0.254:8080)").unwrap();
        assert_eq!(out.len(), image.len());
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("\nset prefix=(http,10.77.0.254:8080)/grub      "),
            "{text}"
        );
        assert!(text.ends_with("    \n\0\0tail"), "{text}");
        assert!(!text.contains("BOOTLAB_GRUB"));
    }

    #[test]
    fn refuses_what_does_not_fit_or_has_no_placeholder() {
        assert_eq!(grub_root(b"MZ no placeholder", "(http,1.2.3.4:80)"), None);
        let mut image = MARKER.to_vec();
        image.push(b'\n');
        assert_eq!(grub_root(&image, "(http,255.255.255.255:65535)"), None);
    }
}
