//! What every bootlab service agrees on about booting.
//!
//! # Layout
//! - [`decision`]: which loader or URL a DHCP client gets (the boot table).
//! - [`options`]: the DHCP options a reply carries, as values (the dhcp crate
//!   encodes them; `bootlab explain` prints them).
//! - [`render`]: per-node iPXE scripts, GRUB and pxelinux configs, and the
//!   virtual per-MAC file names TFTP and HTTP serve.
//! - [`assets`]: confinement of requested paths to the assets root.
//! - [`timeline`]: each MAC's boot events, from every service.
//! - [`metrics`]: the Prometheus registry.
//! - [`shared`]: the live inventory, timeline and metrics bootlabd hands each service.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod assets;
pub mod decision;
pub mod metrics;
pub mod options;
pub mod render;
pub mod shared;
pub mod timeline;

pub use decision::{BootDecision, BootFile, ClientInfo, ClientStage, decide};
pub use metrics::{Counter, Metrics};
pub use render::{ScriptKind, VirtualFile};
pub use shared::{InventoryPublisher, Shared};
pub use timeline::{Service, Stage, Timeline};
