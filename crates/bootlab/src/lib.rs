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
//! - [`xml`]: libvirt XML; [`desired`]: the objects the inventory asks for.
//! - [`libvirt`]: read / plan / apply / down through the `virt` crate.
//! - [`appliance`]: kernel + generated initramfs holding bootlabd.
//! - [`payload`]: the services VM's install payload (inventory, `data_dir`,
//!   the admin API's server certificate and key) on a small raw disk.
//! - [`hoststate`]: the lab's state on the host (its CA, client key and the
//!   assets hash cache).
//! - [`live`]: live changes: pushing the inventory and the changed assets
//!   to the running services VM through bootlabd's admin API.
//! - [`commands`]: doctor, plan, up, status, down, console, egress.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod appliance;
pub mod commands;
pub mod desired;
pub mod doctor;
mod explain;
pub mod host;
pub mod hoststate;
pub mod libvirt;
pub mod live;
pub mod payload;
pub mod procnet;
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
    /// Show what bootlabd answers a client: the boot decision and the DHCP options.
    Explain {
        /// The inventory.
        #[arg(default_value = DEFAULT_LAB)]
        lab: PathBuf,
        /// The client's MAC (any of aa:bb:.., aa-bb-.., aabb..).
        #[arg(long)]
        mac: String,
        /// Client architecture (option 93): a number (0 BIOS, 7/9 UEFI x64, 11 arm64, 16 UEFI HTTP) or bios | uefi | efi64 | arm64 | http.
        #[arg(long, default_value = "bios")]
        arch: String,
        /// The client is iPXE (option 77 "iPXE").
        #[arg(long)]
        ipxe: bool,
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
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: commands::Output,
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
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: commands::Output,
    },
    /// Remove what `up` created, and only that.
    Down {
        /// The inventory.
        #[arg(default_value = DEFAULT_LAB)]
        lab: PathBuf,
        /// libvirt connection.
        #[command(flatten)]
        connect: commands::ConnectArgs,
        /// Keep the VMs' disk volumes (and so the pool).
        #[arg(long)]
        keep_disks: bool,
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
    Egress {
        /// What to do.
        #[command(subcommand)]
        action: commands::EgressAction,
        /// The inventory.
        #[arg(default_value = DEFAULT_LAB, global = true)]
        lab: PathBuf,
    },
    /// Print a rendered boot script or per-MAC config (`boot.ipxe?mac=M`,
    /// `grub.cfg-01-<mac>`, `pxelinux.cfg/01-<mac>`), or `haproxy.cfg`: the
    /// haproxy configuration equivalent to the inventory's balancers.
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
            lab,
            mac,
            arch,
            ipxe,
        } => {
            let inv = match load_or_report(&lab) {
                Ok(inv) => inv,
                Err(code) => return Ok(code),
            };
            let Some(mac) = bootlab_boot::decision::parse_mac(&mac) else {
                eprintln!(
                    "error: {mac:?} is not a MAC address\n  help: write e.g. --mac 52:54:00:12:34:56"
                );
                return Ok(ExitCode::from(2));
            };
            let Some(arch) = explain::parse_arch(&arch) else {
                eprintln!(
                    "error: unknown architecture {arch:?}\n  help: use a number (0, 7, 9, 11, 16) or bios, uefi, efi64, arm64, http"
                );
                return Ok(ExitCode::from(2));
            };
            print!("{}", explain::explain(&inv, mac, arch, ipxe));
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
        } => with_inventory(&lab, |inv| {
            commands::plan(inv, &connect, &appliance, start, restart_services, output)
        }),
        Command::Up {
            lab,
            connect,
            appliance,
            start,
            restart_services,
        } => with_inventory(&lab, |inv| {
            commands::up(inv, &connect, &appliance, start, restart_services)
        }),
        Command::Status {
            lab,
            connect,
            output,
        } => with_inventory(&lab, |inv| commands::status(inv, &connect, output)),
        Command::Down {
            lab,
            connect,
            keep_disks,
        } => with_inventory(&lab, |inv| commands::down(inv, &connect, keep_disks)),
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
            let text =
                explain::render_file(&inv, &file).with_context(|| format!("rendering {file}"))?;
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
