//! Build steps for the package: man pages and shell completions generated
//! from the clap definitions (`bootlab_bootlab::Cli`, `bootlab_bootlabd::Args`)
//! with clap_mangen and clap_complete, and lab.toml(5) converted from
//! docs/inventory.md. Nothing generated is committed: `tests/build-deb.sh`
//! runs `cargo run -p bootlab-xtask -- dist target/dist` before `cargo deb`.
//!
//! # Layout
//! - [`dist`]: writes everything into one directory ([`DistFile`] lists it).
//! - [`markdown`]: the small markdown -> man(7) converter behind lab.toml(5)
//!   (pulldown-cmark parses; this crate only emits roff).
//!
//! The output directory holds
//!
//! ```text
//! man/bootlab.1 man/bootlab-<command>.1 man/bootlabd.8 man/lab.toml.5
//! completions/bootlab.bash completions/_bootlab completions/bootlab.fish
//! completions/bootlabd.bash completions/_bootlabd completions/bootlabd.fish
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod markdown;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;

/// One generated file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistFile {
    /// Path relative to the output directory.
    pub path: PathBuf,
    /// What it is, for the summary line.
    pub what: &'static str,
}

/// Extra sections of bootlabd(8), after the options clap_mangen writes.
const BOOTLABD_EXTRA: &str = r#".SH SIGNALS
.TP
\fBSIGHUP\fR
Re\-read the inventory. An invalid one is logged with every problem and the
old one keeps serving; a valid one goes live for every service at once
(leases, the boot timeline and transfers in flight stay). Listen addresses
change only with a restart.
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Stop: every service finishes what it is doing within a grace period.
.SH SYSTEMD
Started by \fBbootlabd.service\fR (\fBType=notify\fR): \fBREADY=1\fR once every
socket is bound and the firewall applied, \fBRELOADING=1\fR and \fBREADY=1\fR
around a reload (\fBsystemctl reload bootlabd\fR), \fBSTOPPING=1\fR on stop,
\fBSTATUS=\fR lines, and \fBWATCHDOG=1\fR while every service runs when
\fBWatchdogSec=\fR is set. HTTP answers \fB/healthz\fR (alive) and
\fB/readyz\fR (every service bound, inventory loaded).
.SH FILES
.TP
\fI/etc/bootlab/lab.toml\fR
The inventory (see \fBlab.toml\fR(5)); the unit starts only when it exists.
\fI/etc/bootlab/lab.toml.example\fR is a starting point.
.TP
\fI/var/lib/bootlab\fR
Leases and state (\fBservices.data_dir\fR); boot assets in
\fI/var/lib/bootlab/assets\fR (\fBservices.assets_dir\fR).
.SH EXIT STATUS
0 after a clean stop; 64 when the inventory is invalid or missing (nothing
is touched); 1 on any other failure (a port already in use, the firewall
refused).
.SH SEE ALSO
\fBbootlab\fR(1), \fBlab.toml\fR(5), \fBsystemctl\fR(1)
"#;

/// Extra sections of bootlab(1).
const BOOTLAB_EXTRA: &str = r#".SH EXIT STATUS
0 on success; 64 when the inventory is invalid (every problem is printed as
\fIfile:line:column: field: what is wrong\fR with a \fBhelp:\fR line); 1 when
\fBdoctor\fR finds a failing check or a command fails.
.SH SEE ALSO
\fBbootlabd\fR(8), \fBlab.toml\fR(5), \fBvirsh\fR(1)
"#;

/// Writes the man pages and completions into `out`.
pub fn dist(out: &Path, inventory_md: &Path) -> anyhow::Result<Vec<DistFile>> {
    let man = out.join("man");
    let completions = out.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut files = Vec::new();
    let version = env!("CARGO_PKG_VERSION");

    // bootlab(1) and one page per command (`man bootlab-plan`).
    let bootlab = bootlab_bootlab::Cli::command();
    files.push(man_page(&man, bootlab.clone(), "1", BOOTLAB_EXTRA)?);
    for sub in bootlab.get_subcommands() {
        let name = format!("bootlab-{}", sub.get_name());
        let cmd = sub
            .clone()
            .display_name(name.clone())
            .bin_name(format!("bootlab {}", sub.get_name()));
        let see_also = ".SH SEE ALSO\n\\fBbootlab\\fR(1), \\fBlab.toml\\fR(5)\n";
        files.push(man_page(&man, cmd, "1", see_also)?);
    }
    // bootlabd(8).
    let bootlabd = bootlab_bootlabd::Args::command();
    files.push(man_page(&man, bootlabd.clone(), "8", BOOTLABD_EXTRA)?);

    // lab.toml(5) from docs/inventory.md.
    let md = std::fs::read_to_string(inventory_md)
        .with_context(|| format!("reading {}", inventory_md.display()))?;
    let page = markdown::to_man(
        &md,
        &markdown::Page {
            name: "lab.toml",
            section: "5",
            summary: "the bootlab lab inventory",
            source: &format!("bootlab {version}"),
            manual: "File Formats",
            see_also: &["bootlab(1)", "bootlabd(8)"],
        },
    );
    std::fs::write(man.join("lab.toml.5"), page)?;
    files.push(DistFile {
        path: "man/lab.toml.5".into(),
        what: "man page",
    });

    for (mut cmd, bin) in [(bootlab, "bootlab"), (bootlabd, "bootlabd")] {
        for (shell, name) in [
            (Shell::Bash, format!("{bin}.bash")),
            (Shell::Zsh, format!("_{bin}")),
            (Shell::Fish, format!("{bin}.fish")),
        ] {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, bin, &mut buf);
            std::fs::write(completions.join(&name), buf)?;
            files.push(DistFile {
                path: Path::new("completions").join(name),
                what: "completion",
            });
        }
    }
    Ok(files)
}

/// Renders `cmd`'s page with clap_mangen plus `extra` roff, as
/// `<name>.<section>` in `dir`.
fn man_page(
    dir: &Path,
    cmd: clap::Command,
    section: &str,
    extra: &str,
) -> anyhow::Result<DistFile> {
    let name = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_owned();
    let version = env!("CARGO_PKG_VERSION");
    let man = clap_mangen::Man::new(cmd)
        .section(section)
        .source(format!("bootlab {version}"))
        .manual(if section == "8" {
            "System Administration"
        } else {
            "User Commands"
        });
    let mut buf = Vec::new();
    man.render(&mut buf)?;
    buf.extend_from_slice(extra.as_bytes());
    let file = format!("{name}.{section}");
    std::fs::write(dir.join(&file), buf)?;
    Ok(DistFile {
        path: Path::new("man").join(file),
        what: "man page",
    })
}
