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
/// (normally `/sys/class/net`) with [`bootlab_netio::iface`]'s rule (a
/// bridge rather than its port, the one carrying an IPv4 address first,
/// names sorted), the same lookup the DHCP service uses.
pub fn interface_by_mac(
    sys_class_net: &Path,
    mac: MacAddr,
) -> Result<Option<String>, InterfaceError> {
    let read_err = |source| InterfaceError::Read {
        dir: sys_class_net.display().to_string(),
        source,
    };
    // The addresses only matter for the real /sys/class/net; another
    // directory (a test's) describes interfaces this system does not have.
    let ipv4 = if sys_class_net == Path::new("/sys/class/net") {
        bootlab_netio::iface::ipv4_interface_names().map_err(read_err)?
    } else {
        Default::default()
    };
    bootlab_netio::interface_by_mac_in(sys_class_net, &ipv4, mac.octets()).map_err(read_err)
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
