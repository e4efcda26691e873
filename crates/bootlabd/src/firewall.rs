//! bootlabd's own nftables table (`services.firewall = true`): applied at
//! start (start-up fails closed when it cannot be applied), re-applied on
//! every SIGHUP (learned addresses and counters survive; a rejected ruleset
//! leaves the previous one in force), never removed on stop. Addresses the
//! DNS forwarder learns for `egress.allow_domains` go into the gateway's
//! learned set.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bootlab_firewall::{
    BootlabTable, LearnedSet, Nft, ServicesInterfaces, register_firewall_metrics, services_ruleset,
};
use bootlab_inventory::Inventory;
use bootlab_state::Shared;
use tracing::{debug, info, warn};

/// Where interface names and MACs are read (overridable for tests that run
/// the daemon outside the namespace whose NICs they describe).
fn sys_class_net() -> PathBuf {
    std::env::var_os("BOOTLAB_SYS_CLASS_NET")
        .map_or_else(|| PathBuf::from("/sys/class/net"), PathBuf::from)
}

/// The daemon's handle on its table.
#[derive(Debug, Clone)]
pub(crate) struct DaemonFirewall {
    table: BootlabTable,
    learned: Arc<LearnedSet>,
}

impl DaemonFirewall {
    pub(crate) fn system() -> Self {
        Self {
            table: BootlabTable::new(Nft::system()),
            learned: Arc::new(LearnedSet::new(Nft::system())),
        }
    }

    /// Applies the ruleset for `inv` (nothing when `services.firewall` is
    /// off) and (re-)registers its metrics.
    pub(crate) fn apply(&self, inv: &Inventory, shared: &Shared) -> anyhow::Result<()> {
        if !inv.services().firewall {
            debug!("services.firewall = false: leaving nftables alone");
            return Ok(());
        }
        let ifaces = ServicesInterfaces::discover(inv, &sys_class_net())
            .context("finding the services node's interfaces for the firewall")?;
        let Some(ruleset) =
            services_ruleset(inv, &ifaces).context("building the nftables ruleset")?
        else {
            return Ok(());
        };
        let outcome = self
            .table
            .apply(&ruleset)
            .context("applying table inet bootlab")?;
        register_firewall_metrics(
            &shared.metrics,
            &shared.reports,
            self.table.clone(),
            &ruleset,
        );
        info!(?outcome, lab = %ifaces.lab, uplink = ?ifaces.uplink, "firewall applied (table inet bootlab)");
        Ok(())
    }

    /// Removes the table (`bootlabd --firewall-remove`).
    pub(crate) fn remove(&self) -> anyhow::Result<bool> {
        self.table.remove().context("removing table inet bootlab")
    }

    /// Adds DNS-learned addresses to the gateway's set.
    pub(crate) fn learn(&self, entries: &[(std::net::IpAddr, Duration)]) {
        match self.learned.add_many(entries) {
            Ok(results) => debug!(?results, "learned egress addresses"),
            Err(e) => warn!(error = %e, "could not add learned addresses to the egress set"),
        }
    }
}

/// `bootlabd --firewall-remove`: drops bootlab's table and exits.
pub(crate) fn remove_and_report(config: &Path) -> anyhow::Result<()> {
    let removed = DaemonFirewall::system().remove()?;
    if removed {
        println!("removed table inet bootlab ({})", config.display());
    } else {
        println!("table inet bootlab was not present");
    }
    Ok(())
}
