//! One module per subcommand; [`run`] routes parsed arguments to them.

mod bench;
pub mod bench_serve;
mod bench_shape;
mod bench_train;
pub mod constitute;
pub mod constitution;
mod data_check;
pub mod decontaminate;
mod dpo;
pub mod eval;
mod generate;
mod grpo;
mod grpo_rewards;
mod import;
mod logits;
mod merge;
pub mod pipeline;
mod random_weights;
pub mod remote;
mod safety_gate;
pub mod serve;
mod sft;
mod tokenize;
mod training;

use anyhow::Result;
pub use decontaminate::Contaminated;
pub use eval::GateFailure;

use crate::args::{BenchCommand, Cli, Command, DataCommand, ImportCommand};
use crate::commands::constitution::ConstitutionCommand;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let decode = cli.decode_weights.dtype();
    match cli.command {
        Command::Import(ImportCommand::Gguf { file, out }) => import::gguf(&file, &out),
        Command::Tokenize(args) => tokenize::run(&args),
        Command::Logits(args) => cli.device.dispatch(logits::Logits(args), decode),
        Command::Generate(args) => cli.device.dispatch(generate::Generate(args), decode),
        Command::Bench(BenchCommand::Generate(args)) => cli.device.dispatch(bench::BenchGenerate(args), decode),
        Command::Bench(BenchCommand::Serve(args)) => bench_serve::run(&args),
        Command::Bench(BenchCommand::Train(args)) => cli.device.dispatch(bench_train::BenchTrain(args), decode),
        Command::Data(DataCommand::Check(args)) => data_check::run(&args),
        Command::Data(DataCommand::Decontaminate(args)) => decontaminate::run(&args),
        Command::RandomWeights(args) => cli.device.dispatch(random_weights::RandomWeights(args), decode),
        Command::Sft(args) => cli.device.dispatch(sft::Sft::resolve(args, cli.quiet)?, decode),
        Command::Dpo(args) => cli.device.dispatch(dpo::Dpo::resolve(args, cli.quiet)?, decode),
        Command::Grpo(args) => cli.device.dispatch(grpo::Grpo::resolve(args, cli.quiet)?, decode),
        Command::Pipeline(args) => cli.device.dispatch(pipeline::Pipeline::resolve(args, cli.quiet)?, decode),
        Command::Merge(args) => cli.device.dispatch(merge::Merge(args), decode),
        Command::Constitution(ConstitutionCommand::Check(args)) => constitution::check(&args),
        Command::Constitution(ConstitutionCommand::Import(args)) => constitution::run_import(&args),
        Command::Constitution(ConstitutionCommand::Try(args)) => cli.device.dispatch(constitution::Try(args), decode),
        Command::Constitute(args) => {
            cli.device.dispatch(constitute::Constitute { settings: args.resolve()?, quiet: cli.quiet }, decode)
        }
        Command::Bench(BenchCommand::Constitute(args)) => {
            cli.device.dispatch(constitute::BenchConstitute(args), decode)
        }
        Command::Eval(args) => eval::run(*args, cli.device, decode, cli.quiet),
        Command::Serve(args) => cli.device.dispatch(serve::Serve(args.resolve()?), decode),
    }
}
