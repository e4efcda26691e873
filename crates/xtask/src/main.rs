//! `bootlab-xtask`: build steps (`dist OUTDIR`: man pages and completions).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// bootlab's build steps.
#[derive(Debug, Parser)]
#[command(name = "bootlab-xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Write the man pages and shell completions into OUTDIR.
    Dist {
        /// Where to write (created).
        outdir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.task {
        Task::Dist { outdir } => {
            let md = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/inventory.md");
            match bootlab_xtask::dist(&outdir, &md) {
                Ok(files) => {
                    for f in &files {
                        println!("{} ({})", outdir.join(&f.path).display(), f.what);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("bootlab-xtask: error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
