//! `bootlabd`: parses the command line and hands over to [`bootlab_bootlabd::run`].

use std::process::ExitCode;

use clap::Parser;

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
