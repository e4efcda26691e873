//! `bootlab render [LAB] NAME` for the files of the services VM's install
//! and the libvirt definitions, to review before `up`:
//!
//! | name | what |
//! |---|---|
//! | `kickstart` | the kickstart ([`crate::kickstart`]; `kickstart` method) |
//! | `user-data`, `meta-data`, `network-config` | the NoCloud seed ([`crate::cloudinit`]; `cloud-image` method) |
//! | `unit` | the systemd unit the payload carries |
//! | `network-xml` | the lab network's libvirt definition |
//! | `domain-xml` | the services VM's final definition |
//! | `install-domain-xml` | its install-time definition: the kickstart installer's kernel and initrd booted directly with `inst.ks=file:/ks.cfg`, the ISO as a cdrom (a cloud image installs on the first boot of the final one, with the seed attached: the same) |
//! | `domain-xml:<node>` | a node's definition (node or domain name) |
//!
//! Domains are rendered for `libvirt.virt_type` (`auto` renders `kvm`).
//! The appliance's definition names its kernel and initramfs volumes by
//! their content, known once they are built: `bootlab plan` shows it.

use anyhow::{Context as _, bail};
use bootlab_inventory::{InstallMethod, Inventory, VirtType};

use crate::desired::Desired;

/// The names [`render`] knows (besides `domain-xml:<node>`).
pub const NAMES: [&str; 8] = [
    "kickstart",
    "user-data",
    "meta-data",
    "network-config",
    "unit",
    "domain-xml",
    "install-domain-xml",
    "network-xml",
];

fn method_name(m: &InstallMethod) -> &'static str {
    match m {
        InstallMethod::Appliance => "appliance",
        InstallMethod::Kickstart { .. } => "kickstart",
        InstallMethod::CloudImage { .. } => "cloud-image",
    }
}

fn desired(inv: &Inventory) -> anyhow::Result<Desired> {
    let vt = match inv.libvirt().virt_type {
        VirtType::Auto => VirtType::Kvm,
        v => v,
    };
    Desired::from_inventory(inv, vt, None, None).context("deriving the libvirt definitions")
}

fn services_domain(inv: &Inventory, install: bool) -> anyhow::Result<String> {
    let method = &inv.services().install;
    if *method == InstallMethod::Appliance {
        bail!(
            "the appliance's definition names its kernel and initramfs volumes by their content, known once they are built: `bootlab plan` shows the change; domain-xml renders the kickstart and cloud-image methods"
        );
    }
    let d = desired(inv)?;
    let services = d
        .domains
        .iter()
        .find(|d| d.is_services)
        .context("the inventory has no services VM")?;
    if install {
        if let Some(plan) = crate::desired::install_plan(inv, &services.plan) {
            return Ok(crate::xml::domain_xml(&plan));
        }
    }
    Ok(services.xml.clone())
}

/// Renders `name` when it is one of these files; `None` when the name is
/// not one of them (a boot script name, for the caller).
pub fn render(inv: &Inventory, name: &str) -> Option<anyhow::Result<String>> {
    let cloud_only = |what: &str| -> anyhow::Result<()> {
        match &inv.services().install {
            InstallMethod::CloudImage { .. } => Ok(()),
            m => bail!(
                "{what} is the cloud-image method's seed; this lab installs its services VM with method = \"{}\"",
                method_name(m)
            ),
        }
    };
    let out = match name {
        "user-data" => cloud_only(name).and_then(|()| crate::cloudinit::user_data(inv)),
        "meta-data" => cloud_only(name).and_then(|()| crate::cloudinit::meta_data(inv)),
        "network-config" => cloud_only(name).and_then(|()| {
            crate::cloudinit::check(inv)?;
            Ok(crate::cloudinit::network_config(inv))
        }),
        "unit" => Ok(crate::cloudinit::UNIT.to_owned()),
        "network-xml" => Ok(crate::xml::network_xml(inv)),
        "domain-xml" => services_domain(inv, false),
        "install-domain-xml" => services_domain(inv, true),
        "kickstart" => match &inv.services().install {
            InstallMethod::Kickstart { .. } => crate::kickstart::kickstart(inv),
            m => Err(anyhow::anyhow!(
                "the kickstart is the kickstart method's; this lab installs its services VM with method = \"{}\"",
                method_name(m)
            )),
        },
        _ => {
            let node = name.strip_prefix("domain-xml:")?;
            let want = format!("{}{node}", inv.libvirt().vm_prefix);
            desired(inv).and_then(|d| {
                d.domains
                    .iter()
                    .find(|d| !d.is_services && (d.plan.name == node || d.plan.name == want))
                    .map(|d| d.xml.clone())
                    .with_context(|| format!("no node VM named {node:?} (or domain {want:?})"))
            })
        }
    };
    Some(out)
}
