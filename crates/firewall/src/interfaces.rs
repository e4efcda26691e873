//! Finding the services VM's interfaces by MAC (the inventory names NICs by
//! MAC; nftables matches them by name).

use std::path::Path;

use bootlab_inventory::{Inventory, MacAddr};

use crate::policy::ServicesInterfaces;

/// Why the interfaces could not be found.
#[derive(Debug, thiserror::Error)]
pub enum InterfaceError {
    /// `/sys/class/net` could not be read.
    #[error("cannot list network interfaces in {dir}: {source}")]
    Read {
        /// The directory.
        dir: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// No interface has the lab MAC and `services.interface` is not set.
    #[error("no network interface has the services MAC {0}; set services.interface")]
    NoLabInterface(MacAddr),
}

/// The interface whose MAC is `mac`, looked up under `sys_class_net`
/// (normally `/sys/class/net`).
pub fn interface_by_mac(
    sys_class_net: &Path,
    mac: MacAddr,
) -> Result<Option<String>, InterfaceError> {
    let read_err = |source| InterfaceError::Read {
        dir: sys_class_net.display().to_string(),
        source,
    };
    let mut names: Vec<String> = std::fs::read_dir(sys_class_net)
        .map_err(read_err)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let Ok(text) = std::fs::read_to_string(sys_class_net.join(&name).join("address")) else {
            continue;
        };
        if text.trim().parse::<MacAddr>().ok() == Some(mac) {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

impl ServicesInterfaces {
    /// The lab interface (`services.interface`, else the NIC with
    /// `services.mac`) and the uplink (the NIC with `services.uplink.mac`;
    /// `None` when absent, which [`crate::services_ruleset`] rejects when the
    /// services VM is the gateway).
    pub fn discover(inv: &Inventory, sys_class_net: &Path) -> Result<Self, InterfaceError> {
        let lab = match &inv.services().interface {
            Some(name) => name.clone(),
            None => interface_by_mac(sys_class_net, inv.services().mac)?
                .ok_or(InterfaceError::NoLabInterface(inv.services().mac))?,
        };
        let uplink = match &inv.services().uplink {
            Some(u) => interface_by_mac(sys_class_net, u.mac)?,
            None => None,
        };
        Ok(Self { lab, uplink })
    }
}
