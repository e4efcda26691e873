//! bootlabd, the services-node daemon: one process serving DHCP, DNS, TFTP
//! and HTTP boot for the lab described by one `lab.toml`.
//!
//! # Layout
//! - [`Args`] and [`run`]: command line, logging, config check, runtime.
//! - `services`: binds each service's sockets (or takes those passed at
//!   start: `activation`, systemd's `LISTEN_FDS` protocol) and spawns it.
//! - `balancers`: the `[[balancers]]` on `bootlab-lb`: binding, events into
//!   the timeline, the `balancers` report and metrics, reconfigure on reload.
//! - `firewall`: applies `table inet bootlab` at start and on reload, feeds
//!   DNS-learned addresses into its set, `--firewall-remove`.
//! - `lifecycle`: signals — SIGHUP reloads (validate first, swap atomically,
//!   keep state), SIGTERM/SIGINT stop with a grace deadline; pushed
//!   inventories reload through the same steps.
//! - `source`: which inventory is served: `--config`, or the last one
//!   pushed through the admin API while `--config` is unchanged.
//! - `admin`: the admin API (`bootlab-admin`'s mutual-TLS server) on
//!   `services.listen.admin` when `data_dir/admin/` holds its TLS material.
//! - `notify`: systemd readiness, reload, stop, status and watchdog
//!   notifications (`Type=notify`, deploy/systemd/bootlabd.service).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod activation;
mod admin;
mod balancers;
mod firewall;
mod lifecycle;
mod notify;
mod services;
mod source;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use bootlab_inventory::{Inventory, LoadError};
use clap::{Parser, ValueEnum};

/// Exit code for an invalid inventory (EX_USAGE), before anything is touched.
pub const EXIT_INVALID_CONFIG: u8 = 64;

/// How long running services get to finish after SIGTERM/SIGINT.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The services-node daemon: DHCP, DNS, TFTP and HTTP boot from one lab.toml.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "bootlabd",
    version,
    about = "serve a lab's DHCP, DNS, TFTP and HTTP boot (and its egress firewall) from one lab.toml"
)]
pub struct Args {
    /// The lab inventory.
    #[arg(long, short = 'c', value_name = "PATH", default_value = bootlab_inventory::DEFAULT_DAEMON_CONFIG)]
    pub config: PathBuf,

    /// Validate the inventory and exit: 0 when valid, 64 when not (errors on stderr).
    #[arg(long)]
    pub check: bool,

    /// Remove bootlab's nftables table (`table inet bootlab`) and exit.
    /// bootlabd never removes it on stop: the policy fails closed.
    #[arg(long, conflicts_with = "check")]
    pub firewall_remove: bool,

    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Loads the inventory, printing every problem on stderr when it is invalid.
fn load_or_report(path: &std::path::Path) -> Result<Inventory, ExitCode> {
    match bootlab_inventory::load(path) {
        Ok(inv) => Ok(inv),
        Err(LoadError::Invalid(diags)) => {
            eprintln!("{diags}");
            Err(ExitCode::from(EXIT_INVALID_CONFIG))
        }
        Err(e @ LoadError::Io { .. }) => {
            eprintln!("error: {e}\n  help: pass the inventory with --config PATH");
            Err(ExitCode::from(EXIT_INVALID_CONFIG))
        }
    }
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // A second init (tests calling run twice) is harmless: keep the first.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs the daemon until SIGTERM/SIGINT. Returns the process exit code.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.check {
        let inv = match load_or_report(&args.config) {
            Ok(inv) => inv,
            Err(code) => return Ok(code),
        };
        println!(
            "{}: ok: lab {} ({}), {} nodes, {} DNS records, network {} ({})",
            args.config.display(),
            inv.lab().name,
            inv.zone(),
            inv.nodes().len(),
            inv.zones().forward.records.len(),
            inv.network().cidr,
            inv.network().mode.as_str(),
        );
        return Ok(ExitCode::SUCCESS);
    }
    init_tracing(args.log_format);
    if args.firewall_remove {
        if let Err(code) = load_or_report(&args.config) {
            return Ok(code);
        }
        firewall::remove_and_report(&args.config)?;
        return Ok(ExitCode::SUCCESS);
    }
    // The installed inventory, or the last push over it (see `source`).
    let source = source::ConfigSource::new(&args.config);
    let loaded = match source.load() {
        Ok(l) => l,
        Err(LoadError::Invalid(diags)) => {
            eprintln!("{diags}");
            return Ok(ExitCode::from(EXIT_INVALID_CONFIG));
        }
        Err(e @ LoadError::Io { .. }) => {
            eprintln!("error: {e}\n  help: pass the inventory with --config PATH");
            return Ok(ExitCode::from(EXIT_INVALID_CONFIG));
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bootlabd")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(lifecycle::serve(source, loaded))?;
    Ok(ExitCode::SUCCESS)
}
