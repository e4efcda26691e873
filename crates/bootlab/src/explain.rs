//! `bootlab explain` and `bootlab render`: what bootlabd would answer, from
//! the inventory alone (the same `bootlab_boot` code the daemon runs).

use std::fmt::Write as _;

use bootlab_boot::render::{self, VirtualFile};
use bootlab_boot::{ClientInfo, decide};
use bootlab_inventory::{Inventory, MacAddr};

/// Parses `--arch`: a number or a name.
pub(crate) fn parse_arch(s: &str) -> Option<u16> {
    match s.to_ascii_lowercase().as_str() {
        "bios" | "pc" => Some(0),
        "uefi" | "efi64" | "x64" | "uefi-x64" => Some(7),
        "arm64" | "aa64" => Some(11),
        "http" | "uefi-http" => Some(16),
        n => n.parse().ok(),
    }
}

/// The explanation for one client.
pub(crate) fn explain(inv: &Inventory, mac: MacAddr, arch: u16, ipxe: bool) -> String {
    let mut out = String::new();
    let node = inv.node_by_mac(mac);
    let reservation = inv.host_by_mac(mac);
    let _ = writeln!(
        out,
        "client {mac} arch {arch}{}",
        if ipxe { " (iPXE)" } else { "" }
    );
    let proxy = inv.network().dhcp == bootlab_inventory::DhcpMode::Proxy;
    if proxy && reservation.is_none() {
        let _ = writeln!(
            out,
            "  no reservation: in proxyDHCP mode bootlabd stays silent (the other DHCP server alone answers)"
        );
        return out;
    }
    let hostname = match (&reservation, &inv.network().pool) {
        (Some(r), _) => {
            let _ = writeln!(out, "  reservation: {} -> {} ({})", r.name, r.ip, r.fqdn);
            Some(r.name.clone())
        }
        (None, Some(p)) => {
            let _ = writeln!(
                out,
                "  no reservation: an address from the pool {}-{}",
                p.start, p.end
            );
            None
        }
        (None, None) => {
            let _ = writeln!(
                out,
                "  no reservation and no pool: bootlabd stays silent (reservation-only mode)"
            );
            return out;
        }
    };
    let client = ClientInfo {
        arch: Some(arch),
        vendor_class: Some(if arch == 16 {
            format!("HTTPClient:Arch:{arch:05}:UNDI:003001")
        } else {
            format!("PXEClient:Arch:{arch:05}:UNDI:002001")
        }),
        user_class: ipxe.then(|| b"iPXE".to_vec()),
        ipxe_options: false,
    };
    let assets = inv.services().assets_dir.clone();
    let has_asset = move |f: &str| assets.join(f).is_file();
    let decision = decide(inv, node, &client, &has_asset);
    let _ = writeln!(out, "  decision: {decision}");
    if let Some(note) = &decision.note {
        let _ = writeln!(out, "  note: {note}");
    }
    if let Some(n) = node {
        let _ = writeln!(
            out,
            "  profile: {} (loader {})",
            n.profile,
            inv.profiles()
                .get(&n.profile)
                .map_or("?", |p| p.loader.as_str())
        );
    }
    let plan = if proxy {
        let _ = writeln!(
            out,
            "  proxyDHCP (network.dhcp = \"proxy\"): the other DHCP server gives the address; \
             bootlabd offers this boot information without one on port 67 and acks it on port 4011"
        );
        bootlab_boot::options::proxy_plan(inv, &decision)
    } else {
        bootlab_boot::options::plan(inv, hostname.as_deref(), &decision, true)
    };
    if let Some(si) = plan.siaddr {
        let _ = writeln!(out, "  siaddr (next-server): {si}");
    }
    if let Some(f) = &plan.boot_file {
        let _ = writeln!(out, "  file: {f}");
    }
    let _ = writeln!(out, "  options:");
    for o in &plan.options {
        let _ = writeln!(out, "    {:>3} {:<24} {}", o.code, o.name, o.value);
    }
    if let (Some(n), true) = (node, ipxe) {
        if let Ok(script) = render::render(inv, n, render::ScriptKind::Ipxe) {
            let _ = writeln!(out, "  boot.ipxe:");
            for line in script.lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    // GRUB loaders (grub, shim-grub, and every arm64 client) read the
    // node's grub.cfg next.
    let grub_next = decision.file.as_ref().is_some_and(|f| {
        let f = f.as_str();
        f.ends_with(bootlab_boot::decision::GRUB_LOADER)
            || f.ends_with(bootlab_boot::decision::GRUB_HTTP_LOADER)
            || f.ends_with(bootlab_boot::decision::SHIM_LOADER)
            || f.ends_with(bootlab_boot::decision::ARM64_LOADER)
    });
    if let (Some(n), true, false) = (node, grub_next, ipxe) {
        if let Ok(cfg) = render::render(inv, n, render::ScriptKind::Grub) {
            if decision
                .file
                .as_ref()
                .is_some_and(|f| f.as_str() == bootlab_boot::decision::SHIM_LOADER)
            {
                let _ = writeln!(
                    out,
                    "  then: shim loads {} (the signed GRUB) over TFTP from its own directory; \
                     GRUB loads the signed kernel and the initrd over TFTP",
                    bootlab_boot::decision::SHIM_SECOND_STAGE
                );
            }
            let _ = writeln!(out, "  grub/grub.cfg (GRUB's config for this node):");
            for line in cfg.lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    out
}

/// Renders a virtual file by name (`boot.ipxe?mac=M` for the script).
/// The templates `render` uses: the profiles' own from
/// `libvirt.assets_source` when any names one, else the built-ins.
fn templates(inv: &Inventory) -> anyhow::Result<render::ScriptTemplates> {
    let own = inv.profiles().values().find(|p| p.template.is_some());
    match (own, &inv.libvirt().assets_source) {
        (None, _) => Ok(render::ScriptTemplates::builtin()),
        (Some(_), Some(src)) => Ok(render::ScriptTemplates::load(inv, src)?),
        (Some(p), None) => anyhow::bail!(
            "profile {:?} has its own template; set libvirt.assets_source to the directory holding it",
            p.name
        ),
    }
}

pub(crate) fn render_file(inv: &Inventory, file: &str) -> anyhow::Result<String> {
    if file == "haproxy.cfg" {
        if inv.balancers().is_empty() {
            anyhow::bail!("the inventory has no [[balancers]]; add them to render haproxy.cfg");
        }
        let configs: Vec<bootlab_lb::BalancerConfig> = inv
            .balancers()
            .iter()
            .map(bootlab_lb::BalancerConfig::from)
            .collect();
        return Ok(bootlab_lb::haproxy_cfg(&configs));
    }
    let (path, query) = file.split_once('?').unwrap_or((file, ""));
    let vf = VirtualFile::parse(path).ok_or_else(|| {
        anyhow::anyhow!(
            "{path:?} is not a file bootlab renders; use boot.ipxe?mac=M, grub.cfg-01-<mac>, pxelinux.cfg/01-<mac> (MAC with dashes) or haproxy.cfg"
        )
    })?;
    let mac = match vf.mac() {
        Some(m) => m,
        None => query
            .split('&')
            .find_map(|kv| kv.strip_prefix("mac="))
            .and_then(bootlab_boot::decision::parse_mac)
            .ok_or_else(|| {
                anyhow::anyhow!("{path} is chosen by the client's address; add ?mac=<mac>")
            })?,
    };
    match inv.node_by_mac(mac) {
        Some(node) => Ok(templates(inv)?.render(inv, node, vf.kind())?),
        None if vf.kind() == render::ScriptKind::Ipxe => {
            Ok(render::unknown_machine_ipxe(&mac.to_string()))
        }
        None => anyhow::bail!("no node has MAC {mac}"),
    }
}
