//! One module per subcommand; [`run`] routes parsed arguments to them.

mod bench;
mod data_check;
pub mod eval;
mod generate;
mod import;
mod logits;
mod random_weights;
mod tokenize;

use anyhow::Result;
pub use eval::GateFailure;

use crate::args::{BenchCommand, Cli, Command, DataCommand, ImportCommand};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Import(ImportCommand::Gguf { file, out }) => import::gguf(&file, &out),
        Command::Tokenize(args) => tokenize::run(&args),
        Command::Logits(args) => cli.device.dispatch(logits::Logits(args)),
        Command::Generate(args) => cli.device.dispatch(generate::Generate(args)),
        Command::Bench(BenchCommand::Generate(args)) => cli.device.dispatch(bench::BenchGenerate(args)),
        Command::Data(DataCommand::Check(args)) => data_check::run(&args),
        Command::RandomWeights(args) => cli.device.dispatch(random_weights::RandomWeights(args)),
        Command::Eval(args) => eval::run(*args, cli.device, cli.quiet),
    }
}
