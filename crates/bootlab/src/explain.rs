//! `bootlab explain` and `bootlab render`: what bootlabd would answer, from
//! the inventory alone (the same `bootlab_boot` code the daemon runs).
//!
//! `explain` follows one client through its boot in plain words (firmware
//! -> loader over TFTP or HTTP -> iPXE script or GRUB config -> kernel and
//! initrd), as text or as JSON ([`Explanation`]); the client is a node by
//! name or any MAC ([`explain_target`]).

use std::fmt::Write as _;

use bootlab_boot::decision::{BootFile, ClientStage};
use bootlab_boot::render::{self, VirtualFile};
use bootlab_boot::{ClientInfo, decide};
use bootlab_inventory::{Inventory, MacAddr};
use serde::Serialize;

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

/// The firmware an option-93 code stands for, in words.
pub(crate) fn arch_words(arch: u16) -> String {
    match arch {
        0 => "BIOS".into(),
        6 => "UEFI x86".into(),
        7 | 9 => "UEFI".into(),
        10 => "UEFI arm32".into(),
        11 => "UEFI arm64".into(),
        15 => "UEFI x86 HTTP boot".into(),
        16 => "UEFI HTTP boot".into(),
        19 => "UEFI arm64 HTTP boot".into(),
        n => format!("firmware of architecture {n}"),
    }
}

/// Which client `explain` is about: positional `[LAB] [NODE]`, `--node`
/// or `--mac`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Who {
    /// A node by name.
    Node(String),
    /// A MAC (a node's, the services VM's or an unknown one).
    Mac(String),
}

/// Splits `explain`'s positionals: two are `LAB NODE`; one is the lab when
/// it ends in `.toml` or is an existing file, else a node name (lab
/// `./lab.toml`). Errors are the words for the user.
pub(crate) fn explain_target(
    positionals: &[String],
    node: Option<String>,
    mac: Option<String>,
    is_file: impl Fn(&str) -> bool,
) -> Result<(std::path::PathBuf, Who), String> {
    let default = || std::path::PathBuf::from(crate::DEFAULT_LAB);
    let (lab, positional_node) = match positionals {
        [] => (default(), None),
        [one] if one.ends_with(".toml") || is_file(one) => (one.into(), None),
        [one] => (default(), Some(one.clone())),
        [lab, node] => (lab.into(), Some(node.clone())),
        _ => return Err("too many arguments: bootlab explain [LAB.toml] [NODE]".into()),
    };
    let who = match (positional_node, node, mac) {
        (Some(a), Some(b), _) if a != b => {
            return Err(format!("two node names ({a} and --node {b}): give one"));
        }
        (Some(n), _, None) | (None, Some(n), None) => Who::Node(n),
        (None, None, Some(m)) => Who::Mac(m),
        (Some(_), _, Some(_)) | (None, Some(_), Some(_)) => {
            return Err(
                "a node name and --mac: give one (a node's MAC comes from the inventory)".into(),
            );
        }
        (None, None, None) => {
            return Err("which client? name a node (bootlab explain LAB NODE, or --node NAME) or give --mac".into());
        }
    };
    Ok((lab, who))
}

/// The error for a node name the inventory does not have, with the
/// closest names.
pub(crate) fn unknown_node(inv: &Inventory, name: &str) -> String {
    let mut names: Vec<(f64, &str)> = inv
        .nodes()
        .iter()
        .map(|n| (strsim::jaro_winkler(name, &n.name), n.name.as_str()))
        .collect();
    names.sort_by(|a, b| b.0.total_cmp(&a.0));
    let close: Vec<&str> = names
        .iter()
        .filter(|(score, _)| *score > 0.8)
        .map(|(_, n)| *n)
        .take(3)
        .collect();
    let help = if close.is_empty() {
        let all: Vec<&str> = inv.nodes().iter().map(|n| n.name.as_str()).collect();
        format!("the nodes are: {}", all.join(", "))
    } else {
        format!("did you mean {}?", close.join(" or "))
    };
    format!(
        "error: lab {} has no node {name:?}\n  help: {help}; or give a MAC with --mac",
        inv.lab().name
    )
}

/// The client `explain` is about.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ClientJson {
    mac: String,
    arch: u16,
    firmware: String,
    ipxe: bool,
}

/// Where its address comes from.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(crate) enum AddressJson {
    /// A reservation (a node or the services VM).
    Reservation {
        /// Host name.
        name: String,
        /// Address.
        ip: String,
        /// FQDN.
        fqdn: String,
    },
    /// The dynamic pool.
    Pool {
        /// First address.
        start: String,
        /// Last address.
        end: String,
    },
    /// proxyDHCP: the network's other DHCP server gives the address.
    Other {
        /// The reservation's name (which node this is).
        name: String,
    },
    /// No reservation, no pool (or proxyDHCP and no reservation): bootlabd
    /// stays silent.
    None,
}

/// The boot decision, in data and words.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DecisionJson {
    /// The firmware stage bootlabd recognised (kebab-case: `bios-pxe`,
    /// `uefi-pxe`, `uefi-http`, `arm64-pxe`, `ipxe`, `unsupported`).
    stage: &'static str,
    /// How the boot file is fetched: `tftp`, `http`, or null when none.
    protocol: Option<&'static str>,
    /// The boot file (a TFTP path or a URL).
    file: Option<String>,
    /// Why there is none.
    refusal: Option<String>,
    /// The decision in words.
    words: String,
}

/// One DHCP option of the reply.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OptionJson {
    code: u8,
    name: &'static str,
    value: String,
}

/// One stage of the boot, in words.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StageJson {
    /// `dhcp`, `loader`, `script`, `kernel`, `initrd` (the stages
    /// `bootlab status` and bootlabd's timeline use).
    stage: &'static str,
    /// What happens, in words.
    words: String,
}

/// Everything `explain` says about one client.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Explanation {
    client: ClientJson,
    /// The node with this MAC, if any.
    node: Option<String>,
    /// Its profile and loader, when a node.
    profile: Option<String>,
    loader: Option<&'static str>,
    address: AddressJson,
    decision: DecisionJson,
    /// Next-server (siaddr), when the boot file is on TFTP.
    siaddr: Option<String>,
    /// The boot file name of the reply.
    boot_file: Option<String>,
    options: Vec<OptionJson>,
    stages: Vec<StageJson>,
    /// The stages in one sentence.
    summary: String,
    /// What bootlabd logs about this client: the profile asked for
    /// something this firmware cannot run, and what it gets instead.
    note: Option<String>,
    /// The rendered boot.ipxe (with `--ipxe`, for a node).
    #[serde(skip_serializing_if = "Option::is_none")]
    boot_ipxe: Option<String>,
}

fn stage_name(stage: ClientStage) -> &'static str {
    match stage {
        ClientStage::Os => "os",
        ClientStage::Ipxe => "ipxe",
        ClientStage::BiosPxe => "bios-pxe",
        ClientStage::UefiPxe => "uefi-pxe",
        ClientStage::UefiHttp => "uefi-http",
        ClientStage::Arm64Pxe => "arm64-pxe",
        ClientStage::Unsupported(_) => "unsupported",
    }
}

/// "`a`, `b` and `c`" for file lists.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The explanation for one client.
pub(crate) fn explain(inv: &Inventory, mac: MacAddr, arch: u16, ipxe: bool) -> Explanation {
    let node = inv.node_by_mac(mac);
    let reservation = inv.host_by_mac(mac);
    let firmware = if ipxe {
        "iPXE".to_string()
    } else {
        format!("{} firmware", arch_words(arch))
    };
    let client_json = ClientJson {
        mac: mac.to_string(),
        arch,
        firmware: firmware.clone(),
        ipxe,
    };
    let services = inv.services().ip;
    let mut stages = Vec::new();
    let mut stage = |stage: &'static str, words: String| {
        stages.push(StageJson { stage, words });
    };
    let proxy = inv.network().dhcp == bootlab_inventory::DhcpMode::Proxy;
    let (address, hostname) = match (&reservation, &inv.network().pool) {
        (Some(r), _) if proxy => {
            stage(
                "dhcp",
                format!(
                    "{firmware} gets its address from the network's other DHCP server; bootlabd \
                     (proxyDHCP) adds only the boot information below, without an address: an \
                     offer on port 67 and the answer to the firmware's request on port 4011 \
                     (the machine is {} by its reservation)",
                    r.name
                ),
            );
            (
                AddressJson::Other {
                    name: r.name.clone(),
                },
                Some(r.name.clone()),
            )
        }
        (None, _) if proxy => (AddressJson::None, None),
        (Some(r), _) => {
            stage(
                "dhcp",
                format!(
                    "{firmware} asks for an address and gets {} ({}) from the reservation {}",
                    r.ip, r.fqdn, r.name
                ),
            );
            (
                AddressJson::Reservation {
                    name: r.name.clone(),
                    ip: r.ip.to_string(),
                    fqdn: r.fqdn.clone(),
                },
                Some(r.name.clone()),
            )
        }
        (None, Some(p)) => {
            stage(
                "dhcp",
                format!(
                    "{firmware} asks for an address and gets one from the pool {}-{}",
                    p.start, p.end
                ),
            );
            (
                AddressJson::Pool {
                    start: p.start.to_string(),
                    end: p.end.to_string(),
                },
                None,
            )
        }
        (None, None) => (AddressJson::None, None),
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
    let plan = if proxy {
        bootlab_boot::options::proxy_plan(inv, &decision)
    } else {
        bootlab_boot::options::plan(inv, hostname.as_deref(), &decision, true)
    };
    let (protocol, file) = match &decision.file {
        Some(BootFile::Tftp(p)) => (Some("tftp"), Some(p.clone())),
        Some(BootFile::Http(u)) => (Some("http"), Some(u.clone())),
        None => (None, None),
    };
    let silent = matches!(address, AddressJson::None);
    // The chain, stage by stage; `sentence` collects the one-line summary.
    let mut sentence: Vec<String> = Vec::new();
    let script_url = bootlab_boot::render::ipxe_script_url(inv);
    let mut reaches_ipxe_script = false;
    let mut grub_config = None;
    // Where GRUB fetches kernel and initrd: the signed GRUB of the Secure
    // Boot chain has no HTTP, so TFTP.
    let mut kernel_over_tftp = false;
    // Debian's GRUB netboot images (prefix /grub) read grub/grub.cfg
    // (measured in e2e_firmware: the timeline's fetches); bootlabd renders
    // it for the node holding the client's address.
    let grub_cfg = "grub/grub.cfg";
    let ipxe_again = format!(
        "iPXE asks for an address again (user class \"iPXE\"), gets {script_url} and fetches it"
    );
    if silent && proxy {
        sentence.push(format!(
            "{mac} has no reservation: in proxyDHCP mode bootlabd stays silent (the network's other DHCP server alone answers)"
        ));
    } else if silent {
        sentence.push(format!(
            "{mac} has no reservation and the lab has no pool: bootlabd stays silent (reservation-only mode)"
        ));
    } else {
        match (&decision.file, decision.stage) {
            (_, ClientStage::Ipxe) => {
                stage(
                    "script",
                    format!("iPXE (DHCP user class \"iPXE\") fetches {script_url}"),
                );
                sentence.push(format!("iPXE fetches {script_url}"));
                reaches_ipxe_script = true;
            }
            (Some(BootFile::Tftp(f)), _) => {
                use bootlab_boot::decision::{
                    ARM64_LOADER, GRUB_LOADER, SHIM_LOADER, SHIM_SECOND_STAGE,
                };
                let what = match f.as_str() {
                    SHIM_LOADER => {
                        " (shim, signed by Microsoft: a Secure Boot firmware checks that signature)"
                    }
                    GRUB_LOADER | ARM64_LOADER => " (GRUB's network image)",
                    _ => " (iPXE)",
                };
                stage(
                    "loader",
                    format!("{firmware} gets {f}{what} over TFTP from {services}"),
                );
                sentence.push(format!("{firmware} gets {f} over TFTP from {services}"));
                if f == SHIM_LOADER {
                    stage(
                        "loader",
                        format!(
                            "shim loads {SHIM_SECOND_STAGE} (Debian's signed GRUB netboot image) over TFTP from its own directory and checks its signature"
                        ),
                    );
                    sentence.push(format!("shim loads {SHIM_SECOND_STAGE} (signed GRUB)"));
                    kernel_over_tftp = true;
                }
                if matches!(f.as_str(), GRUB_LOADER | ARM64_LOADER | SHIM_LOADER) {
                    stage(
                        "script",
                        format!(
                            "GRUB reads {grub_cfg} over TFTP from {services} (bootlabd renders it for the node holding the client's address)"
                        ),
                    );
                    sentence.push(format!("GRUB reads {grub_cfg} over TFTP"));
                    grub_config = Some(grub_cfg.to_string());
                } else {
                    stage("script", ipxe_again.clone());
                    sentence.push(format!("iPXE fetches {script_url}"));
                    reaches_ipxe_script = true;
                }
            }
            (Some(BootFile::Http(u)), _) => {
                stage(
                    "loader",
                    format!(
                        "{firmware} downloads {u} over HTTP (the answer carries the whole URL and vendor class \"HTTPClient\", as UEFI HTTP boot requires; no TFTP at all)"
                    ),
                );
                sentence.push(format!("{firmware} downloads {u}"));
                if u.ends_with(bootlab_boot::decision::GRUB_HTTP_LOADER) {
                    let cfg = format!(
                        "http://{}:{}/grub/grub.cfg",
                        services,
                        inv.services().listen.http.port()
                    );
                    stage(
                        "script",
                        format!(
                            "GRUB (bootlabd writes the lab's HTTP address into the image as it serves it) reads {cfg}, chosen by its address"
                        ),
                    );
                    sentence.push(format!("GRUB reads {cfg}"));
                    grub_config = Some(cfg);
                } else {
                    stage("script", ipxe_again.clone());
                    sentence.push(format!("iPXE fetches {script_url}"));
                    reaches_ipxe_script = true;
                }
            }
            (None, _) => {
                let why = decision.refusal.clone().unwrap_or_default();
                stage("loader", format!("{firmware} gets no boot file: {why}"));
                sentence.push(format!("{firmware} gets no boot file ({why})"));
            }
        }
    }
    let profile = node.and_then(|n| inv.profiles().get(&n.profile));
    if reaches_ipxe_script || grub_config.is_some() {
        match node {
            Some(n) => {
                let base = if kernel_over_tftp {
                    format!("tftp://{services}")
                } else if grub_config.is_some() {
                    format!(
                        "http://{}:{}/assets",
                        services,
                        inv.services().listen.http.port()
                    )
                } else {
                    inv.assets_url().to_string()
                };
                let own = profile
                    .and_then(|p| p.template.as_deref())
                    .map(|t| {
                        format!(" (the profile's own template {t}: `bootlab render` shows it)")
                    })
                    .unwrap_or_default();
                let args = if n.boot.args.is_empty() {
                    String::new()
                } else {
                    format!(" with arguments {}", n.boot.args)
                };
                stage(
                    "kernel",
                    format!("which loads {base}/{}{args}{own}", n.boot.kernel),
                );
                let initrds: Vec<String> = n
                    .boot
                    .initrd
                    .iter()
                    .map(|i| format!("{base}/{i}"))
                    .collect();
                if !initrds.is_empty() {
                    stage("initrd", format!("and the initrd {}", and_list(&initrds)));
                }
                let last = if initrds.is_empty() {
                    format!("which boots {}", n.boot.kernel)
                } else {
                    format!(
                        "which boots {} with initrd {}",
                        n.boot.kernel,
                        and_list(&n.boot.initrd)
                    )
                };
                sentence.push(last);
            }
            None if grub_config.is_some() => {
                stage(
                    "kernel",
                    format!(
                        "no node has MAC {mac}: there is no GRUB config for it and GRUB stops at its prompt"
                    ),
                );
                sentence.push("which finds no config for an unknown machine".into());
            }
            None => {
                stage(
                    "kernel",
                    format!(
                        "no node has MAC {mac}: the script only says \"bootlab: unknown machine\" and iPXE exits"
                    ),
                );
                sentence.push("which says the machine is unknown and exits".into());
            }
        }
    }
    let summary = {
        let mut s = sentence.join(", then ");
        if let Some(i) = s.find(", then which") {
            s.replace_range(i..i + ", then which".len(), ", which");
        }
        s.push('.');
        s
    };
    let words = match (&decision.file, &decision.refusal) {
        (_, _) if silent && proxy => {
            "no answer (proxyDHCP answers reserved machines only)".to_string()
        }
        (_, _) if silent => "no answer (no reservation, no pool)".to_string(),
        (Some(BootFile::Tftp(p)), _) => format!("{p} over TFTP from {services}"),
        (Some(BootFile::Http(u)), _) => format!("{u} over HTTP"),
        (None, Some(r)) => format!("no boot file: {r}"),
        (None, None) => "no boot file".to_string(),
    };
    let boot_ipxe = match (node, ipxe) {
        (Some(n), true) => render::render(inv, n, render::ScriptKind::Ipxe).ok(),
        _ => None,
    };
    Explanation {
        client: client_json,
        node: node.map(|n| n.name.clone()),
        profile: node.map(|n| n.profile.clone()),
        loader: profile.map(|p| p.loader.as_str()),
        address,
        decision: DecisionJson {
            stage: stage_name(decision.stage),
            protocol: if silent { None } else { protocol },
            file: if silent { None } else { file },
            refusal: decision.refusal.clone(),
            words,
        },
        siaddr: if silent {
            None
        } else {
            plan.siaddr.map(|i| i.to_string())
        },
        boot_file: if silent { None } else { plan.boot_file.clone() },
        options: if silent {
            vec![]
        } else {
            plan.options
                .iter()
                .map(|o| OptionJson {
                    code: o.code,
                    name: o.name,
                    value: o.value.to_string(),
                })
                .collect()
        },
        stages,
        summary,
        note: decision.note.clone(),
        boot_ipxe,
    }
}

impl Explanation {
    /// The text `bootlab explain` prints.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        let who = match &self.node {
            Some(n) => format!("{n} ({})", self.client.mac),
            None => self.client.mac.clone(),
        };
        let _ = writeln!(
            out,
            "{who}, {} (option 93 = {})",
            self.client.firmware, self.client.arch
        );
        let _ = writeln!(out, "  {}", self.summary);
        if let (Some(p), Some(l)) = (&self.profile, self.loader) {
            let _ = writeln!(out, "  profile {p}, loader {l}");
        }
        if let Some(note) = &self.note {
            let _ = writeln!(out, "  note: {note}");
        }
        if !self.stages.is_empty() {
            let _ = writeln!(out, "stages:");
            for s in &self.stages {
                let _ = writeln!(out, "  {:<7} {}", format!("{}:", s.stage), s.words);
            }
        }
        if let Some(si) = &self.siaddr {
            let _ = writeln!(
                out,
                "reply: next-server {si}, file {}",
                self.boot_file.as_deref().unwrap_or("-")
            );
        } else if let Some(f) = &self.boot_file {
            let _ = writeln!(out, "reply: file {f}");
        }
        if !self.options.is_empty() {
            let _ = writeln!(out, "DHCP options:");
            for o in &self.options {
                let _ = writeln!(out, "  {:>3} {:<24} {}", o.code, o.name, o.value);
            }
        }
        if let Some(script) = &self.boot_ipxe {
            let _ = writeln!(out, "boot.ipxe:");
            for line in script.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        out
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn okd() -> Inventory {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/okd-lab.toml");
        bootlab_inventory::load(&p).unwrap()
    }

    fn node_mac(inv: &Inventory, name: &str) -> MacAddr {
        inv.nodes().iter().find(|n| n.name == name).unwrap().mac
    }

    #[test]
    fn uefi_node_in_plain_words() {
        let inv = okd();
        let e = explain(&inv, node_mac(&inv, "master-0"), 7, false);
        let t = e.text();
        assert!(
            t.contains("UEFI firmware gets snponly.efi over TFTP from 192.168.200.254, then iPXE fetches http://192.168.200.254:8080/boot.ipxe, which boots okd/kernel/fedora-coreos-live-kernel-x86_64 with initrd okd/initramfs/fedora-coreos-live-initramfs.x86_64.img."),
            "{t}"
        );
        // no internal enum names
        for internal in ["UefiPxe", "BiosPxe", "Tftp(", "Some("] {
            assert!(!t.contains(internal), "{internal} in {t}");
        }
        let stages: Vec<&str> = e.stages.iter().map(|s| s.stage).collect();
        assert_eq!(stages, ["dhcp", "loader", "script", "kernel", "initrd"]);
        let j = serde_json::to_value(&e).unwrap();
        assert_eq!(j["decision"]["stage"], "uefi-pxe");
        assert_eq!(j["decision"]["protocol"], "tftp");
        assert_eq!(j["decision"]["file"], "snponly.efi");
        assert_eq!(j["node"], "master-0");
        assert_eq!(j["address"]["kind"], "reservation");
        assert!(
            j["options"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o["code"] == 67)
        );
    }

    #[test]
    fn bios_ipxe_and_http_boot() {
        let inv = okd();
        let mac = node_mac(&inv, "bootstrap");
        let t = explain(&inv, mac, 0, false).text();
        assert!(
            t.contains("BIOS firmware gets undionly.kpxe over TFTP"),
            "{t}"
        );
        let e = explain(&inv, mac, 0, true);
        assert!(
            e.summary
                .starts_with("iPXE fetches http://192.168.200.254:8080/boot.ipxe, which boots"),
            "{}",
            e.summary
        );
        assert!(e.boot_ipxe.as_deref().unwrap().starts_with("#!ipxe"));
        let t = explain(&inv, mac, 16, false).text();
        assert!(
            t.contains(
                "UEFI HTTP boot firmware downloads http://192.168.200.254:8080/assets/ipxe.efi"
            ),
            "{t}"
        );
    }

    #[test]
    fn unknown_macs_and_refusals() {
        let inv = okd();
        let unknown: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        let e = explain(&inv, unknown, 0, false);
        if inv.network().pool.is_none() {
            assert!(e.summary.contains("stays silent"), "{}", e.summary);
            assert!(e.options.is_empty());
        } else {
            assert!(e.summary.contains("unknown"), "{}", e.summary);
        }
        let e = explain(&inv, node_mac(&inv, "master-0"), 42, false);
        assert_eq!(e.decision.stage, "unsupported");
        assert!(e.summary.contains("gets no boot file"), "{}", e.summary);
    }

    #[test]
    fn grub_profile_reads_its_config_over_tftp() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/okd-lab.toml"),
        )
        .unwrap()
        .replace(
            "[profiles.fcos]\nloader = \"ipxe\"",
            "[profiles.fcos]\nloader = \"grub\"",
        );
        let inv = bootlab_inventory::parse(&text, Path::new("config/okd-lab.toml")).unwrap();
        let mac = node_mac(&inv, "master-0");
        let e = explain(&inv, mac, 7, false);
        assert!(
            e.summary.starts_with(
                "UEFI firmware gets grubnetx64.efi over TFTP from 192.168.200.254, then GRUB reads grub/grub.cfg over TFTP, which boots"
            ),
            "{}",
            e.summary
        );
        assert!(e.stages.iter().any(|s| {
            s.stage == "kernel"
                && s.words
                    .contains("http://192.168.200.254:8080/assets/okd/kernel")
        }));
    }

    /// okd-lab.toml with `edit` applied to its text.
    fn okd_with(edit: impl Fn(String) -> String) -> Inventory {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/okd-lab.toml"),
        )
        .unwrap();
        bootlab_inventory::parse(&edit(text), Path::new("config/okd-lab.toml")).unwrap()
    }

    fn with_loader(loader: &str) -> Inventory {
        okd_with(|t| {
            t.replace(
                "[profiles.fcos]\nloader = \"ipxe\"",
                &format!("[profiles.fcos]\nloader = \"{loader}\""),
            )
        })
    }

    #[test]
    fn uefi_http_boot_of_grub_in_words() {
        let inv = with_loader("grub");
        let e = explain(&inv, node_mac(&inv, "master-0"), 16, false);
        assert!(
            e.summary.starts_with(
                "UEFI HTTP boot firmware downloads http://192.168.200.254:8080/assets/grubx64-http.efi, \
                 then GRUB reads http://192.168.200.254:8080/grub/grub.cfg, which boots"
            ),
            "{}",
            e.summary
        );
        let t = e.text();
        assert!(t.contains("\"HTTPClient\""), "{t}");
        assert!(t.contains("no TFTP at all"), "{t}");
        assert!(e.stages.iter().any(|s| {
            s.stage == "kernel"
                && s.words
                    .contains("http://192.168.200.254:8080/assets/okd/kernel")
        }));
        assert!(
            e.options
                .iter()
                .any(|o| o.code == 60 && o.value == "\"HTTPClient\"")
        );
    }

    #[test]
    fn secure_boot_chain_in_words() {
        let inv = with_loader("shim-grub");
        let mac = node_mac(&inv, "master-0");
        let e = explain(&inv, mac, 7, false);
        let cfg = "grub/grub.cfg";
        assert_eq!(
            e.summary,
            format!(
                "UEFI firmware gets shimx64.efi over TFTP from 192.168.200.254, then shim loads grubx64.efi (signed GRUB), \
                 then GRUB reads {cfg} over TFTP, which boots okd/kernel/fedora-coreos-live-kernel-x86_64 \
                 with initrd okd/initramfs/fedora-coreos-live-initramfs.x86_64.img."
            )
        );
        let t = e.text();
        assert!(t.contains("signed by Microsoft"), "{t}");
        assert!(t.contains("loader shim-grub"), "{t}");
        // The signed GRUB has no HTTP: kernel and initrd over TFTP.
        for s in e
            .stages
            .iter()
            .filter(|s| s.stage == "kernel" || s.stage == "initrd")
        {
            assert!(
                s.words.contains("tftp://192.168.200.254/okd/"),
                "{}",
                s.words
            );
        }
        // BIOS has no Secure Boot: the iPXE path, with a note.
        let e = explain(&inv, mac, 0, false);
        assert_eq!(e.decision.file.as_deref(), Some("undionly.kpxe"));
        assert!(
            e.text()
                .contains("note: profile loader \"shim-grub\" on a BIOS client")
        );
        // UEFI HTTP boot cannot run the chain.
        let e = explain(&inv, mac, 16, false);
        assert!(e.summary.contains("gets no boot file"), "{}", e.summary);
        assert!(e.summary.contains("PXE"), "{}", e.summary);
    }

    #[test]
    fn arm64_boots_through_grub() {
        let assets = tempfile::tempdir().unwrap();
        let dir = assets.path().display().to_string();
        let edit = |t: String| t.replace("\"/var/lib/bootlab/assets\"", &format!("{dir:?}"));
        let inv = okd_with(edit);
        let mac = node_mac(&inv, "compute-0");
        // Without the arm64 GRUB in the assets dir: refused, with the fix.
        let e = explain(&inv, mac, 11, false);
        assert!(e.summary.contains("gather.sh --arm64"), "{}", e.summary);
        std::fs::write(assets.path().join("grubnetaa64.efi"), b"MZ").unwrap();
        let e = explain(&inv, mac, 11, false);
        assert!(
            e.summary.starts_with(
                "UEFI arm64 firmware gets grubnetaa64.efi over TFTP from 192.168.200.254, then GRUB reads"
            ),
            "{}",
            e.summary
        );
        assert_eq!(e.decision.stage, "arm64-pxe");
    }

    #[test]
    fn proxy_dhcp_in_words() {
        let inv = okd_with(|t| t.replace("lease = \"12h\"", "lease = \"12h\"\ndhcp = \"proxy\""));
        let e = explain(&inv, node_mac(&inv, "master-0"), 0, false);
        let t = e.text();
        assert!(t.contains("other DHCP server"), "{t}");
        assert!(t.contains("port 4011"), "{t}");
        let j = serde_json::to_value(&e).unwrap();
        assert_eq!(j["address"]["kind"], "other");
        let codes: Vec<u8> = e.options.iter().map(|o| o.code).collect();
        assert!(codes.contains(&43) && codes.contains(&60), "{codes:?}");
        // No address options: another server owns those.
        for c in [1, 3, 6, 51] {
            assert!(
                !codes.contains(&c),
                "option {c} in a proxy answer: {codes:?}"
            );
        }
        let unknown: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        let e = explain(&inv, unknown, 0, false);
        assert!(
            e.summary.contains("proxyDHCP mode bootlabd stays silent"),
            "{}",
            e.summary
        );
        assert!(e.options.is_empty());
    }

    #[test]
    fn positionals_name_the_lab_and_the_node() {
        let none = |_: &str| false;
        let t = |args: &[&str], node: Option<&str>, mac: Option<&str>| {
            explain_target(
                &args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                node.map(String::from),
                mac.map(String::from),
                none,
            )
        };
        assert_eq!(
            t(&["lab.toml", "master-0"], None, None).unwrap(),
            (PathBuf::from("lab.toml"), Who::Node("master-0".into()))
        );
        assert_eq!(
            t(&["master-0"], None, None).unwrap(),
            (PathBuf::from("lab.toml"), Who::Node("master-0".into()))
        );
        assert_eq!(
            t(&["x.toml"], Some("m"), None).unwrap(),
            (PathBuf::from("x.toml"), Who::Node("m".into()))
        );
        assert_eq!(
            t(&["x.toml"], None, Some("52:54:00:00:00:01")).unwrap(),
            (
                PathBuf::from("x.toml"),
                Who::Mac("52:54:00:00:00:01".into())
            )
        );
        // an existing file without .toml is the lab
        let is_file = |p: &str| p == "mylab";
        let r = explain_target(&["mylab".into()], Some("n".into()), None, is_file).unwrap();
        assert_eq!(r, (PathBuf::from("mylab"), Who::Node("n".into())));
        assert!(
            t(&["x.toml"], None, None)
                .unwrap_err()
                .contains("which client")
        );
        assert!(t(&["x.toml", "a"], None, Some("m")).is_err());
        assert!(t(&["x.toml", "a"], Some("b"), None).is_err());
        assert!(t(&["a", "b", "c"], None, None).is_err());
    }

    #[test]
    fn unknown_node_suggests_close_names() {
        let inv = okd();
        let e = unknown_node(&inv, "master0");
        assert!(e.contains("did you mean master-0"), "{e}");
        let e = unknown_node(&inv, "zzz");
        assert!(e.contains("the nodes are: bootstrap"), "{e}");
    }
}
