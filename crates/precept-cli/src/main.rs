//! `precept`: align open-weights language models from one native binary.
//!
//! `main` parses arguments ([`args`]), flushes denormals, picks the device once ([`device`]) and
//! runs one of the [`commands`]. Errors print their whole chain and map to exit codes.

mod args;
mod commands;
mod device;
mod loaded;
mod output;
mod progress;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let filter = if cli.quiet { "error" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PRECEPT_LOG").unwrap_or_else(|_| filter.into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .init();
    device::flush_denormals_everywhere();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}
