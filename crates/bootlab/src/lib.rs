//! bootlab, the host tool: checks a lab inventory, explains boot decisions,
//! renders boot scripts, checks the host, and defines the libvirt network,
//! storage, services VM (appliance) and PXE node VMs.
//!
//! # Layout
//! - [`Cli`] / [`run`]: the command line (`bootlab <command> [LAB.toml] [flags]`).
//! - `explain`: what bootlabd would answer a given client, from the inventory alone.
//! - [`doctor`]: host checks behind a probe trait; [`procnet`]: /proc parsers.
//! - [`host`]: the hypervisor's distribution (os-release) and where it keeps
//!   busybox, kernels and modules, QEMU, OVMF, nft, with its fixes.
//! - [`xml`]: libvirt XML; [`desired`]: the objects the inventory asks for;
//!   [`diff`]: which fields of a domain or network differ from libvirt's.
//! - [`libvirt`]: read / plan / apply / down through the `virt` crate.
//! - [`appliance`]: kernel + generated initramfs holding bootlabd.
//! - [`payload`]: the services VM's install payload (inventory, `data_dir`,
//!   the admin API's server certificate and key) on a small raw disk.
//! - [`hoststate`]: the lab's state on the host (its CA, client key and the
//!   assets hash cache).
//! - [`live`]: live changes: pushing the inventory and the changed assets
//!   to the running services VM through bootlabd's admin API.
//! - [`commands`]: doctor, plan, up, status, down, console, egress.
//! - [`cloudinit`]: the cloud-image method's NoCloud seed and the install
//!   script that puts bootlabd on a full distribution from the payload.
//! - [`kickstart`]: the kickstart method's kickstart.
//! - [`iso`]: the installer ISO's kernel and initrd, streamed out.
//! - [`review`]: `render`'s install files and libvirt definitions.
//! - [`terminal`]: colours, the progress bar or plain lines, `down`'s
//!   question: what changes when a stream is a terminal.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod appliance;
pub mod cloudinit;
pub mod commands;
pub mod desired;
pub mod diff;
pub mod doctor;
mod explain;
pub mod host;
pub mod hoststate;
pub mod iso;
pub mod kickstart;
pub mod libvirt;
pub mod live;
pub mod payload;
pub mod procnet;
pub mod review;
pub mod terminal;
pub mod xml;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use bootlab_inventory::{Inventory, LoadError};
use clap::{Parser, Subcommand};

/// Exit code for an invalid inventory (EX_USAGE).
pub const EXIT_INVALID_CONFIG: u8 = 64;

/// The inventory path used when none is given.
pub const DEFAULT_LAB: &str = "lab.toml";

/// bootlab: one inventory file for a whole network-boot lab.
#[derive(Debug, Parser)]
#[command(
    name = "bootlab",
    version,
    about = "check, plan and run a network-boot lab on libvirt from one lab.toml",
    propagate_version = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate inventories; print every problem with file, line and field (exit 64 on errors).
    ///
    /// Warnings (OKD pitfalls, drained balancers, boot files missing from
    /// `libvirt.assets_source`) are printed too; `--strict` makes them errors.
    Check {
        /// The inventories.
        #[arg(default_value = DEFAULT_LAB, num_args = 1..)]
        labs: Vec<PathBuf>,
        /// Treat warnings as errors (exit 64).
        #[arg(long)]
        strict: bool,
    },
    /// Show what bootlabd answers a client, stage by stage in plain words:
    /// firmware, loader, iPXE script or GRUB config, kernel and initrd; the
    /// DHCP options of the reply.
    ///
    /// The client is a node by name (`bootlab explain LAB master-0`, or
    /// `--node master-0`) or any MAC (`--mac`).
    Explain {
        /// `[LAB.toml] [NODE]`: the inventory (default ./lab.toml) and a
        /// node's name. A single argument is the inventory when it ends in
        /// `.toml` or is a file, else the node.
        #[arg(num_args = 0..=2, value_name = "[LAB] [NODE]")]
        args: Vec<String>,
        /// The node, by name (instead of the positional NODE).
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
        /// The client's MAC (any of aa:bb:.., aa-bb-.., aabb..).
        #[arg(long, conflicts_with = "node")]
        mac: Option<String>,
        /// Client architecture (option 93): a number (0 BIOS, 7/9 UEFI x64, 11 arm64, 16 UEFI HTTP) or bios | uefi | efi64 | arm64 | http.
        /// Default: the node's firmware (bios or uefi), else bios.
        #[arg(long)]
        arch: Option<String>,
        /// The client is iPXE (option 77 "iPXE"): also print the rendered boot.ipxe.
        #[arg(long)]
        ipxe: bool,
        /// Output format (json: client, decision, options, stages).
        #[arg(long, value_enum, default_value_t)]
        output: commands::Output,
    },
    /// Check the host: KVM, libvirtd, QEMU/OVMF, CIDR/bridge/port clashes, pool directory.
    Doctor {
        /// The inventory.
        #[arg(default_value = DEFAULT_LAB)]
        lab: PathBuf,
        /// libvirt connection.
        #[command(flatten)]
        connect: commands::ConnectArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: commands::Output,
    },
    /// Show what `up` would change (desired vs actual).
    Plan {
        /// The inventory.
        #[arg(default_value = DEFAULT_LAB)]
        lab: PathBuf,
        /// libvirt connection.
        #[command(flatten)]
        connect: commands::ConnectArgs,
        /// Appliance inputs.
        #[command(flatten)]
        appliance: commands::ApplianceArgs,
        /// Plan as if `up --start` (node VMs started too).
        #[arg(long)]
        start: bool,
        /// Plan as if `up --restart-services`.
        #[arg(long)]
        restart_services: bool,
        /// Output format (json: every change with the fields that change).
        #[arg(long, value_enum, default_value_t)]
        output: commands::Output,
        /// Colour: auto (a terminal, unless NO_COLOR is set), always, never.
        #[arg(long, value_enum, default_value_t, value_name = "WHEN")]
        color: terminal::ColorChoice,
    },
    /// Converge the lab to the inventory (idempotent): pool, volumes,
    /// network, services VM, node VMs, host egress rule; then push the
    /// inventory and the new or changed assets to the running services VM
    /// (no rebuild, no reboot).
    Up {
        /// The inventory.
        #[arg(default_value = DEFAULT_LAB)]
        lab: PathBuf,
        /// libvirt connection.
        #[command(flatten)]
        connect: commands::ConnectArgs,
        /// Appliance inputs.
        #[command(flatten)]
        appliance: commands::ApplianceArgs,
        /// Start the node VMs too (the services VM always starts).
        #[arg(long)]
        start: bool,
        /// Restart the running services VM for changes that cannot apply
        /// live: its definition (appliance, memory, disks, address, MAC) or
        /// what bootlabd reads only at start (listen addresses, data_dir,
        /// assets_dir, interface). Without it those wait (exit 3 when the
        /// inventory push is held for them).
        #[arg(long)]
        restart_services: bool,
        /// Print nothing but errors and notes (no progress, no summary).
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Network, VMs, each node's boot stage (from bootlabd when reachable),
    /// and the inventory generation the services VM serves vs the host's.
    Status {
        /// The inventory.
        #[arg(default_value = DEFAULT_LAB)]
        lab: PathBuf,
        /// libvirt connection.
        #[command(flatten)]
        connect: commands::ConnectArgs,
        /// Output format (with --watch: one JSON document a line).
        #[arg(long, value_enum, default_value_t)]
        output: commands::Output,
        /// Refresh until interrupted: the screen is redrawn on a terminal,
        /// blocks are repeated otherwise.
        #[arg(long, short = 'w')]
        watch: bool,
        /// Seconds between refreshes with --watch.
        #[arg(
            long,
            value_name = "SECONDS",
            default_value_t = 2.0,
            requires = "watch"
        )]
        interval: f64,
    },
    /// Remove what `up` created, and only that.
    Down {
        /// The inventory.
        #[arg(default_value = DEFAULT_LAB)]
        lab: PathBuf,
        /// libvirt connection.
        #[command(flatten)]
        connect: commands::ConnectArgs,
        /// Keep the VMs' disk volumes (and so the pool); nothing is asked.
        #[arg(long)]
        keep_disks: bool,
        /// Delete the disk volumes without asking (for scripts: without a
        /// terminal on stdin, `down` refuses to delete disks unless given
        /// `--yes` or `--keep-disks`).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Attach to the services VM's serial console (`virsh console` on the
    /// lab's URI; Ctrl+] leaves). The appliance has no sshd.
    Console {
        /// The inventory.
        #[arg(default_value = DEFAULT_LAB)]
        lab: PathBuf,
        /// libvirt connection.
        #[command(flatten)]
        connect: commands::ConnectArgs,
        /// Take the console over from another session.
        #[arg(long)]
        force: bool,
    },
    /// The host egress rule (nat mode): `apply`, `show`, `remove`.
    /// The egress rules: `show` prints the host's (nat mode) and the
    /// services VM's (`services.firewall`, isolated mode too); `apply` and
    /// `remove` manage the host's (nat mode).
    Egress {
        /// What to do.
        #[command(subcommand)]
        action: commands::EgressAction,
        /// The inventory.
        #[arg(default_value = DEFAULT_LAB, global = true)]
        lab: PathBuf,
    },
    /// Print a rendered boot script or per-MAC config (`boot.ipxe?mac=M`,
    /// `grub.cfg-01-<mac>`, `pxelinux.cfg/01-<mac>`), `haproxy.cfg` (the
    /// haproxy configuration equivalent to the inventory's balancers), or a
    /// file of the services VM's install: `kickstart`, `user-data`, `meta-data`,
    /// `network-config` (cloud-image seed), `unit`, `domain-xml` (the
    /// services VM), `install-domain-xml`, `domain-xml:<node>`,
    /// `network-xml`.
    Render {
        /// `[LAB.toml] FILE`: the inventory (default ./lab.toml) and the file.
        #[arg(num_args = 1..=2, value_name = "[LAB] FILE")]
        args: Vec<String>,
    },
}

/// True when stderr is a terminal (diagnostics in colour).
fn stderr_is_tty() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
}

/// `bootlab check` of one file: errors, warnings, missing boot files under
/// `libvirt.assets_source`, then a summary. False when it fails (errors,
/// or warnings with `strict`).
fn check_one(lab: &Path, strict: bool) -> bool {
    let Ok(inv) = load_or_report(lab) else {
        return false;
    };
    let color = stderr_is_tty();
    let mut warnings: Vec<String> = inv.warnings().iter().map(|w| w.render(color)).collect();
    if let Some(src) = &inv.libvirt().assets_source {
        if !src.is_dir() {
            warnings.push(format!(
                "warning: libvirt.assets_source {} does not exist\n  help: create it and put the profiles' kernels and initrds there (boot-assets/gather.sh fetches the loaders)",
                src.display()
            ));
        } else {
            // A missing template is listed with the missing assets below.
            use bootlab_boot::render::FilterMissing as _;
            let templates = bootlab_boot::render::ScriptTemplates::load(&inv, src);
            if let Err(e) = templates.filter_missing() {
                eprintln!(
                    "error: {e}\n  help: fix the template under libvirt.assets_source; bootlabd refuses an inventory whose templates do not render"
                );
                return false;
            }
            for m in inv.missing_assets(src) {
                warnings.push(format!(
                    "warning: {m} under libvirt.assets_source {}\n  help: nodes of this profile would fail to boot; add the file or fix the profile",
                    src.display()
                ));
            }
        }
    }
    for w in &warnings {
        eprintln!("{w}\n");
    }
    if strict && !warnings.is_empty() {
        eprintln!(
            "{}: {} warning{} (--strict: failing)",
            lab.display(),
            warnings.len(),
            if warnings.len() == 1 { "" } else { "s" }
        );
        return false;
    }
    let zones = inv.zones();
    println!(
        "{}: ok{}",
        lab.display(),
        if warnings.is_empty() {
            String::new()
        } else {
            format!(
                " ({} warning{})",
                warnings.len(),
                if warnings.len() == 1 { "" } else { "s" }
            )
        }
    );
    println!(
        "  lab {} (zone {}), network {} in {} mode",
        inv.lab().name,
        inv.zone(),
        inv.network().cidr,
        inv.network().mode.as_str()
    );
    println!(
        "  {} nodes, {} DHCP reservations, {} forward records, {} PTR records",
        inv.nodes().len(),
        inv.hosts().len(),
        zones.forward.records.len(),
        zones.reverse.iter().map(|z| z.records.len()).sum::<usize>()
    );
    println!(
        "  services VM {} at {} ({}), boot scripts from {}",
        inv.services().name,
        inv.services().ip,
        inv.services().mac,
        inv.http_base()
    );
    if !inv.balancers().is_empty() {
        println!(
            "  {} balancers: {}",
            inv.balancers().len(),
            inv.balancers()
                .iter()
                .map(|b| format!(
                    "{} :{} ({} backends)",
                    b.name,
                    b.listen.port(),
                    b.backends.len()
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    true
}

/// Loads an inventory, printing every problem when it is invalid.
pub fn load_or_report(path: &Path) -> Result<Inventory, ExitCode> {
    match bootlab_inventory::load(path) {
        Ok(inv) => Ok(inv),
        Err(LoadError::Invalid(diags)) => {
            eprintln!("{}", diags.render(stderr_is_tty()));
            Err(ExitCode::from(EXIT_INVALID_CONFIG))
        }
        Err(e @ LoadError::Io { .. }) => {
            eprintln!(
                "error: {e}\n  help: name the inventory as the first argument, e.g. `bootlab check config/okd-lab.toml`"
            );
            Err(ExitCode::from(EXIT_INVALID_CONFIG))
        }
    }
}

fn with_inventory(
    lab: &Path,
    f: impl FnOnce(&Inventory) -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    match load_or_report(lab) {
        Ok(inv) => f(&inv),
        Err(code) => Ok(code),
    }
}

/// Runs one command. Returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { labs, strict } => {
            let mut failed = false;
            for lab in &labs {
                failed |= !check_one(lab, strict);
            }
            Ok(if failed {
                ExitCode::from(EXIT_INVALID_CONFIG)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Explain {
            args,
            node,
            mac,
            arch,
            ipxe,
            output,
        } => {
            let (lab, who) =
                match explain::explain_target(&args, node, mac, |p| Path::new(p).is_file()) {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return Ok(ExitCode::from(2));
                    }
                };
            let inv = match load_or_report(&lab) {
                Ok(inv) => inv,
                Err(code) => return Ok(code),
            };
            let (mac, firmware) = match &who {
                explain::Who::Node(name) => match inv.nodes().iter().find(|n| &n.name == name) {
                    Some(n) => (n.mac, Some(n.firmware)),
                    None => {
                        eprintln!("{}", explain::unknown_node(&inv, name));
                        return Ok(ExitCode::from(2));
                    }
                },
                explain::Who::Mac(m) => match bootlab_boot::decision::parse_mac(m) {
                    Some(mac) => (mac, inv.node_by_mac(mac).map(|n| n.firmware)),
                    None => {
                        eprintln!(
                            "error: {m:?} is not a MAC address\n  help: write e.g. --mac 52:54:00:12:34:56"
                        );
                        return Ok(ExitCode::from(2));
                    }
                },
            };
            let arch = match arch.as_deref().map(explain::parse_arch) {
                Some(Some(a)) => a,
                Some(None) => {
                    eprintln!(
                        "error: unknown architecture {:?}\n  help: use a number (0, 7, 9, 11, 16) or bios, uefi, efi64, arm64, http",
                        arch.unwrap_or_default()
                    );
                    return Ok(ExitCode::from(2));
                }
                None => match firmware {
                    Some(bootlab_inventory::Firmware::Uefi) => 7,
                    _ => 0,
                },
            };
            let e = explain::explain(&inv, mac, arch, ipxe);
            match output {
                commands::Output::Text => print!("{}", e.text()),
                commands::Output::Json => println!("{}", serde_json::to_string_pretty(&e)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor {
            lab,
            connect,
            output,
        } => with_inventory(&lab, |inv| commands::doctor(inv, &connect, output)),
        Command::Plan {
            lab,
            connect,
            appliance,
            start,
            restart_services,
            output,
            color,
        } => with_inventory(&lab, |inv| {
            let opts = libvirt::UpOptions {
                start_nodes: start,
                restart_services,
                services_restart_for: vec![],
            };
            commands::plan(inv, &connect, &appliance, opts, output, color)
        }),
        Command::Up {
            lab,
            connect,
            appliance,
            start,
            restart_services,
            quiet,
        } => with_inventory(&lab, |inv| {
            let opts = libvirt::UpOptions {
                start_nodes: start,
                restart_services,
                services_restart_for: vec![],
            };
            commands::up(inv, &connect, &appliance, opts, quiet)
        }),
        Command::Status {
            lab,
            connect,
            output,
            watch,
            interval,
        } => {
            let every = match std::time::Duration::try_from_secs_f64(interval) {
                Ok(d) if d >= std::time::Duration::from_millis(100) => d,
                _ => {
                    eprintln!(
                        "error: --interval {interval} is not a number of seconds of at least 0.1"
                    );
                    return Ok(ExitCode::from(2));
                }
            };
            with_inventory(&lab, |inv| {
                commands::status(inv, &connect, output, watch.then_some(every))
            })
        }
        Command::Down {
            lab,
            connect,
            keep_disks,
            yes,
        } => with_inventory(&lab, |inv| commands::down(inv, &connect, keep_disks, yes)),
        Command::Console {
            lab,
            connect,
            force,
        } => with_inventory(&lab, |inv| commands::console(inv, &connect, force)),
        Command::Egress { action, lab } => {
            with_inventory(&lab, |inv| commands::egress(inv, action))
        }
        Command::Render { args } => {
            let (lab, file) = match args.as_slice() {
                [file] => (PathBuf::from(DEFAULT_LAB), file.clone()),
                [lab, file] => (PathBuf::from(lab), file.clone()),
                _ => anyhow::bail!("usage: bootlab render [LAB.toml] FILE"),
            };
            let inv = match load_or_report(&lab) {
                Ok(inv) => inv,
                Err(code) => return Ok(code),
            };
            let text = match review::render(&inv, &file) {
                Some(r) => r.with_context(|| format!("rendering {file}"))?,
                None => explain::render_file(&inv, &file)
                    .with_context(|| format!("rendering {file}"))?,
            };
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
