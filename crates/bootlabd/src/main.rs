//! `bootlabd`: parses the command line and hands over to [`bootlab_bootlabd::run`].

use std::process::ExitCode;

use clap::Parser;

// mimalloc instead of glibc malloc: the DHCP and DNS hot paths allocate per
// packet (option lists, reply buffers, timeline events), and glibc's
// allocator was ~15% of the daemon's CPU under perfdhcp load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = bootlab_bootlabd::Args::parse();
    match bootlab_bootlabd::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bootlabd: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
