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

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // Usage errors exit with 1, not clap's 2, which the eval gate reserves for a safety
            // regression; help and version exit with 0.
            return ExitCode::from(u8::from(error.exit_code() != 0));
        }
    };
    let filter = if cli.quiet { "error" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PRECEPT_LOG").unwrap_or_else(|_| filter.into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .init();
    device::flush_denormals_everywhere();
    if cli.decode_weights == args::DecodeWeightsArg::Bf16 && cli.device != device::DeviceChoice::Cpu {
        tracing::warn!("--decode-weights bf16 applies to CPU decoding; {} decodes with its own weights", cli.device);
    }
    // On a worker of the CPU thread pool, so that the command's parallel sections are forked and
    // joined by the pool's own threads instead of waking them from, and sleeping on, a third one.
    // The server blocks its thread on the network, so its engine thread joins the pool instead.
    let result = match cli.command {
        args::Command::Serve(_) => commands::run(cli),
        _ => rayon::scope(|_| commands::run(cli)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if output::is_broken_pipe(&error) {
                return ExitCode::SUCCESS;
            }
            // The eval gate's verdicts have exit codes of their own (2, 3, 4).
            if let Some(failure) = error.downcast_ref::<commands::GateFailure>() {
                // A closed stderr leaves nothing to report to; the exit code still says it.
                let _ = writeln!(std::io::stderr(), "{failure}");
                return ExitCode::from(failure.exit_code());
            }
            // Training data that copies evaluation data has its own (5).
            if let Some(contaminated) = error.downcast_ref::<commands::Contaminated>() {
                let _ = writeln!(std::io::stderr(), "error: {contaminated}");
                return ExitCode::from(commands::decontaminate::CONTAMINATED_EXIT_CODE);
            }
            let _ = writeln!(std::io::stderr(), "error: {error:#}");
            ExitCode::from(1)
        }
    }
}
