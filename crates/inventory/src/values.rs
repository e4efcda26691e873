//! Value types of the inventory: MAC addresses, sizes, durations, DNS names.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::Duration;

/// An Ethernet MAC address. Parses `aa:bb:cc:dd:ee:ff`, `aa-bb-cc-dd-ee-ff`
/// and `aabbccddeeff` in any case; displays lowercase with colons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

/// Why a MAC address did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address")]
pub struct MacParseError(pub String);

impl MacAddr {
    /// The MAC the lab convention derives from an IPv4 address:
    /// `52:54:<the four octets>`.
    pub fn derived_from(ip: Ipv4Addr) -> Self {
        let o = ip.octets();
        Self([0x52, 0x54, o[0], o[1], o[2], o[3]])
    }

    /// The six bytes.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Lowercase with dashes: `aa-bb-cc-dd-ee-ff`.
    pub fn dashed(&self) -> String {
        self.to_string().replace(':', "-")
    }

    /// The PXE per-MAC file name stem: `01-aa-bb-cc-dd-ee-ff` (ARP type 1).
    pub fn pxe_name(&self) -> String {
        format!("01-{}", self.dashed())
    }

    /// True for group (multicast/broadcast) addresses, which no NIC owns.
    pub fn is_group(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_owned());
        let t = s.trim();
        let hex: Vec<&str> = if t.len() == 12 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..6).map(|i| &t[i * 2..i * 2 + 2]).collect()
        } else {
            let sep = if t.contains(':') { ':' } else { '-' };
            t.split(sep).collect()
        };
        if hex.len() != 6 {
            return Err(err());
        }
        let mut out = [0u8; 6];
        for (slot, part) in out.iter_mut().zip(hex) {
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        Ok(Self(out))
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Parses a size such as `16GiB`, `512MiB`, `1TiB`, `10GB` or `4096` (bytes).
/// A bare `K`, `M`, `G` or `T` (any case, as virt-install and qemu-img take
/// them) is binary: `8G` is 8 GiB; `KB`/`MB`/`GB`/`TB` are decimal.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("{s:?} is not a size"));
    }
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "{s:?} has an unknown size unit {:?} (known: K, M, G, T and KiB..TiB (binary), KB..TB (decimal))",
                unit.trim()
            ));
        }
    };
    n.checked_mul(mult)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("{s:?} is out of range"))
}

/// Formats a byte count the way sizes are written in lab.toml (`16GiB`).
pub fn format_size(bytes: u64) -> String {
    for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

/// Parses a duration such as `12h`, `30m`, `1h30m`, `7d` or `3600s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{s:?} is not a duration ({e})"))
}

/// Checks one DNS label (RFC 1035 / RFC 1123 host name syntax).
pub fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("empty label".into());
    }
    if label.len() > 63 {
        return Err(format!("label {label:?} is longer than 63 bytes"));
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "label {label:?} has characters other than letters, digits, '-' and '_'"
        ));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!("label {label:?} starts or ends with '-'"));
    }
    Ok(())
}

/// Checks a host name: a single label, letters, digits and inner hyphens.
pub fn check_hostname(name: &str) -> Result<(), String> {
    check_label(name)?;
    if name.contains('_') {
        return Err(format!("{name:?} has '_', which host names may not"));
    }
    Ok(())
}

/// Checks a domain name of one or more labels (no trailing dot needed).
pub fn check_domain(name: &str) -> Result<(), String> {
    let n = name.strip_suffix('.').unwrap_or(name);
    if n.is_empty() {
        return Err("empty domain name".into());
    }
    if n.len() > 253 {
        return Err(format!("{name:?} is longer than 253 bytes"));
    }
    for label in n.split('.') {
        check_label(label)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_forms() {
        let want = MacAddr([0xf8, 0x75, 0xa4, 0xac, 0x01, 0x00]);
        for s in ["f8:75:a4:ac:01:00", "F8-75-A4-AC-01-00", "f875a4ac0100"] {
            assert_eq!(s.parse::<MacAddr>().unwrap(), want, "{s}");
        }
        assert_eq!(want.to_string(), "f8:75:a4:ac:01:00");
        assert_eq!(want.pxe_name(), "01-f8-75-a4-ac-01-00");
        for bad in [
            "",
            "f8:75:a4:ac:01",
            "f8:75:a4:ac:01:0g",
            "f8:75:a4:ac:01:000",
            "f8:75-a4:ac:01:00",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn derived_mac() {
        assert_eq!(
            MacAddr::derived_from("192.168.200.30".parse().unwrap()).to_string(),
            "52:54:c0:a8:c8:1e"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16GiB").unwrap(), 16 << 30);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1TB").unwrap(), 1_000_000_000_000);
        assert!(parse_size("16 gigs").is_err());
        assert!(parse_size("GiB").is_err());
        assert!(parse_size("0GiB").is_err());
        assert!(parse_size("99999999999TiB").is_err());
        assert_eq!(format_size(16 << 30), "16GiB");
        // As virt-install and qemu-img users write them: binary.
        assert_eq!(parse_size("8G").unwrap(), 8 << 30);
        assert_eq!(parse_size("8g").unwrap(), 8 << 30);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("1T").unwrap(), 1 << 40);
        assert_eq!(parse_size("64 K").unwrap(), 64 << 10);
        assert_eq!(parse_size("2gib").unwrap(), 2 << 30);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("12h").unwrap(), Duration::from_secs(43_200));
        assert!(parse_duration("12 parsecs").is_err());
    }
}
