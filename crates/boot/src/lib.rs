//! What every bootlab service agrees on about booting: pure policy, no
//! runtime state (that lives in `bootlab-state`).
//!
//! # Layout
//! - [`decision`]: which loader or URL a DHCP client gets (the boot table).
//! - [`options`]: the DHCP options a reply carries, as values (the dhcp crate
//!   encodes them; `bootlab explain` prints them).
//! - [`render`]: per-node iPXE scripts, GRUB and pxelinux configs, rendered
//!   once per inventory ([`BootScripts`]), and the virtual per-MAC file
//!   names TFTP and HTTP serve.
//! - [`assets`]: confinement of requested paths to the assets root.
//! - [`stamp`]: the lab's HTTP root stamped into the GRUB image for UEFI
//!   HTTP boot as it is served.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod assets;
pub mod decision;
pub mod options;
pub mod render;
pub mod stamp;

pub use decision::{BootDecision, BootFile, ClientInfo, ClientStage, decide};
pub use render::{BootScripts, ScriptKind, VirtualFile};
