//! `bootlab`: parses the command line and hands over to [`bootlab_bootlab::run`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = bootlab_bootlab::Cli::parse();
    match bootlab_bootlab::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bootlab: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
