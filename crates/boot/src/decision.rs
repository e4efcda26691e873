//! The boot decision: which file or URL a DHCP client gets, from what it says
//! about itself (options 60, 77, 93, 175) and the inventory.
//!
//! | stage | recognised by | answer |
//! |---|---|---|
//! | iPXE | 77 = `iPXE` or 175 present | `http://<services>:<port>/boot.ipxe` (never the binary again) |
//! | UEFI HTTP boot | 93 = 16 (or 60 starts `HTTPClient`) | `.../assets/ipxe.efi` (`.../assets/grubx64-http.efi` for `loader = "grub"`), 60 `HTTPClient` echoed; refused for `shim-grub` (the signed GRUB has no HTTP) |
//! | BIOS PXE | 93 = 0 | TFTP `undionly.kpxe` (also for `shim-grub` profiles, noted) |
//! | UEFI x64 PXE | 93 = 7 or 9 | TFTP `snponly.efi` (`grubnetx64.efi` for `loader = "grub"`, `shimx64.efi` for `shim-grub`) |
//! | UEFI arm64 PXE | 93 = 11 | TFTP `grubnetaa64.efi` (Debian ships no arm64 iPXE) when present, else refused |

use std::fmt;

use bootlab_inventory::{Inventory, Loader, MacAddr, Node};

/// The iPXE first stage for BIOS.
pub const BIOS_LOADER: &str = "undionly.kpxe";
/// The iPXE first stage for UEFI x86-64.
pub const UEFI_LOADER: &str = "snponly.efi";
/// The full iPXE EFI binary (UEFI HTTP boot).
pub const UEFI_HTTP_LOADER: &str = "ipxe.efi";
/// The GRUB network image for UEFI x86-64.
pub const GRUB_LOADER: &str = "grubnetx64.efi";
/// A GRUB EFI image with the `http` module built in, for UEFI HTTP boot
/// (`boot-assets/gather.sh` builds it with `grub-mkimage`; Debian's signed
/// netboot image has no HTTP).
pub const GRUB_HTTP_LOADER: &str = "grubx64-http.efi";
/// shim (signed by Microsoft's UEFI CA), the first stage of the Secure Boot
/// chain.
pub const SHIM_LOADER: &str = "shimx64.efi";
/// The name shim loads its second stage by, from its own directory: the
/// signed GRUB netboot image.
pub const SHIM_SECOND_STAGE: &str = "grubx64.efi";
/// The GRUB netboot image for UEFI arm64 (Debian's `grubnetaa64.efi`).
pub const ARM64_LOADER: &str = "grubnetaa64.efi";

/// What a DHCP client says about its boot firmware.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// Option 93 (client system architecture), first entry; `None` when
    /// absent or malformed.
    pub arch: Option<u16>,
    /// Option 60 (vendor class identifier), lossy UTF-8.
    pub vendor_class: Option<String>,
    /// Option 77 (user class), raw bytes.
    pub user_class: Option<Vec<u8>>,
    /// Option 175 (iPXE encapsulated options) is present.
    pub ipxe_options: bool,
}

impl ClientInfo {
    /// True when the client is iPXE: option 77 is `iPXE` (raw, as iPXE sends
    /// it, or as one RFC 3004 user class), or option 175 is present.
    pub fn is_ipxe(&self) -> bool {
        self.ipxe_options || self.user_class.as_deref().is_some_and(user_class_has_ipxe)
    }

    /// True when option 60 says `PXEClient` or `HTTPClient`, or option 93 is present.
    pub fn is_netboot(&self) -> bool {
        self.arch.is_some()
            || self.is_ipxe()
            || self
                .vendor_class
                .as_deref()
                .is_some_and(|v| v.starts_with("PXEClient") || v.starts_with("HTTPClient"))
    }

    /// True when option 60 starts with `HTTPClient`.
    pub fn is_http_client(&self) -> bool {
        self.vendor_class
            .as_deref()
            .is_some_and(|v| v.starts_with("HTTPClient"))
    }

    /// The architecture: option 93, or the `Arch:NNNNN` field of option 60.
    pub fn effective_arch(&self) -> Option<u16> {
        self.arch.or_else(|| {
            let v = self.vendor_class.as_deref()?;
            let rest = v.split(":Arch:").nth(1)?;
            rest.get(..5)?.parse().ok()
        })
    }

    /// Parses option 93's payload (a list of 16-bit codes); `None` when
    /// malformed (empty or odd length).
    pub fn parse_arch(payload: &[u8]) -> Option<u16> {
        if payload.len() < 2 || payload.len() % 2 != 0 {
            return None;
        }
        Some(u16::from_be_bytes([payload[0], payload[1]]))
    }
}

fn user_class_has_ipxe(raw: &[u8]) -> bool {
    if raw == b"iPXE" {
        return true;
    }
    // RFC 3004: a list of length-prefixed class names.
    let mut rest = raw;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len);
        if len == 0 || tail.len() < len {
            return false;
        }
        if &tail[..len] == b"iPXE" {
            return true;
        }
        rest = &tail[len..];
    }
    false
}

/// The firmware stage a client is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientStage {
    /// An OS DHCP client (no netboot marks).
    Os,
    /// iPXE, chainloaded or a NIC ROM.
    Ipxe,
    /// BIOS PXE ROM.
    BiosPxe,
    /// UEFI x86-64 PXE.
    UefiPxe,
    /// UEFI x86-64 HTTP boot.
    UefiHttp,
    /// UEFI arm64 PXE.
    Arm64Pxe,
    /// An architecture we have no loader for.
    Unsupported(u16),
}

/// Where the boot file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootFile {
    /// A path under the TFTP root (sent as option 67 / `file`, with siaddr).
    Tftp(String),
    /// A full URL (sent as option 67 / `file`).
    Http(String),
}

impl BootFile {
    /// The string that goes into the boot file name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Tftp(s) | Self::Http(s) => s,
        }
    }
}

/// The decision for one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootDecision {
    /// The stage recognised.
    pub stage: ClientStage,
    /// The boot file, if the client gets one.
    pub file: Option<BootFile>,
    /// Echo option 60 = `HTTPClient` (UEFI HTTP boot requires it).
    pub echo_http_client: bool,
    /// Why no file, when there is none and the client asked to netboot.
    pub refusal: Option<String>,
    /// Worth logging: the profile asked for something this firmware cannot
    /// run, and what it gets instead.
    pub note: Option<String>,
}

impl fmt::Display for BootDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, &self.refusal) {
            (Some(BootFile::Tftp(p)), _) => write!(f, "{:?}: TFTP {p}", self.stage),
            (Some(BootFile::Http(u)), _) => write!(f, "{:?}: HTTP {u}", self.stage),
            (None, Some(r)) => write!(f, "{:?}: no boot file ({r})", self.stage),
            (None, None) => write!(f, "{:?}: no boot file", self.stage),
        }
    }
}

/// Decides what `client` boots. `node` is the reservation's node (None for
/// pool clients and the services VM); `has_asset` says whether a file exists
/// under the assets dir (used for optional loaders such as arm64).
pub fn decide(
    inv: &Inventory,
    node: Option<&Node>,
    client: &ClientInfo,
    has_asset: &dyn Fn(&str) -> bool,
) -> BootDecision {
    let plain = |stage, file: Option<BootFile>| BootDecision {
        stage,
        file,
        echo_http_client: false,
        refusal: None,
        note: None,
    };
    let refuse = |stage, why: String| BootDecision {
        stage,
        file: None,
        echo_http_client: false,
        refusal: Some(why),
        note: None,
    };
    let loader = node.map(|n| n.boot.loader);
    if !client.is_netboot() {
        return plain(ClientStage::Os, None);
    }
    if client.is_ipxe() {
        return plain(
            ClientStage::Ipxe,
            Some(BootFile::Http(crate::render::ipxe_script_url(inv))),
        );
    }
    let arch = client.effective_arch();
    let http_boot = client.is_http_client() || matches!(arch, Some(15 | 16 | 19));
    if http_boot {
        return match (arch, loader) {
            (Some(16) | None, Some(Loader::ShimGrub)) => refuse(
                ClientStage::UefiHttp,
                "loader \"shim-grub\" boots over PXE only: Debian's signed GRUB has no HTTP \
                 (turn the firmware's PXE boot on for this machine)"
                    .into(),
            ),
            (Some(16) | None, _) => {
                let file = if loader == Some(Loader::Grub) {
                    GRUB_HTTP_LOADER
                } else {
                    UEFI_HTTP_LOADER
                };
                BootDecision {
                    stage: ClientStage::UefiHttp,
                    file: Some(BootFile::Http(format!("{}/{file}", inv.assets_url()))),
                    echo_http_client: true,
                    refusal: None,
                    note: None,
                }
            }
            (Some(a), _) => refuse(
                ClientStage::Unsupported(a),
                format!("no HTTP boot loader for architecture {a}"),
            ),
        };
    }
    match arch {
        Some(0) | None => {
            let mut d = plain(
                ClientStage::BiosPxe,
                Some(BootFile::Tftp(BIOS_LOADER.into())),
            );
            if loader == Some(Loader::ShimGrub) {
                d.note = Some(
                    "profile loader \"shim-grub\" on a BIOS client (no Secure Boot there): \
                     booting it through iPXE"
                        .into(),
                );
            }
            d
        }
        Some(7 | 9) => {
            let file = match loader {
                Some(Loader::Grub) => GRUB_LOADER,
                Some(Loader::ShimGrub) => SHIM_LOADER,
                Some(Loader::Ipxe) | None => UEFI_LOADER,
            };
            plain(ClientStage::UefiPxe, Some(BootFile::Tftp(file.into())))
        }
        Some(11) if has_asset(ARM64_LOADER) => plain(
            ClientStage::Arm64Pxe,
            Some(BootFile::Tftp(ARM64_LOADER.into())),
        ),
        Some(11) => refuse(
            ClientStage::Arm64Pxe,
            format!(
                "{ARM64_LOADER} is not in the assets dir (boot-assets/gather.sh --arm64 puts it there)"
            ),
        ),
        Some(a) => refuse(
            ClientStage::Unsupported(a),
            format!("no loader for client architecture {a}"),
        ),
    }
}

/// Parses a MAC as written in URLs and API paths (any separator, any case).
pub fn parse_mac(s: &str) -> Option<MacAddr> {
    s.parse().ok()
}
