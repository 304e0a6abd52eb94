//! `precept eval --suite S --model TUNED [--baseline BASE] [--out DIR]`: the safety regression
//! gate.
//!
//! The arguments are resolved into [`GateSettings`] (suite, overrides, sides, judge) and checked;
//! [`run_gate`] writes them to `DIR/run.json`, runs both sides with the models this command
//! opens (folders onto the device, or servers) and returns the report; the report is printed and
//! its verdict becomes the exit code.

use anyhow::{bail, Context, Result};
use burn::tensor::FloatDType;
use precept_data::ModelSource;
use precept_eval::{run_gate, terminal_table, GateSettings, Report, SideSettings, Suite, Verdict};
use precept_train::TrainKernels;

use super::args::GateArgs;
use super::progress::EvalProgress;
use super::{judge, GateFailure};
use crate::commands::remote::{remote_spec, ModelOpener};
use crate::device::DeviceCommand;
use crate::output::print_json;

/// The command, ready to run on a backend.
pub struct Gate {
    /// Parsed arguments.
    pub args: GateArgs,
    /// `--quiet`: no progress output.
    pub quiet: bool,
}

/// The settings the suite and the command line resolve to.
fn settings(args: &GateArgs) -> Result<GateSettings> {
    // clap makes both required unless a subcommand is given.
    let Some(suite_path) = &args.suite else { bail!("--suite is required") };
    let tuned_model = match remote_spec("remote", args.remote.as_ref(), args.remote_model.as_ref())? {
        Some(spec) => ModelSource::Remote(spec),
        None => ModelSource::Folder(args.model.clone().context("--model or --remote is required")?),
    };
    let baseline_remote =
        remote_spec("baseline-remote", args.baseline_remote.as_ref(), args.baseline_remote_model.as_ref())?;
    let judge_remote = remote_spec("judge-remote", args.judge_remote.as_ref(), args.judge_remote_model.as_ref())?;
    let mut suite = Suite::load(suite_path)?;
    if let Some(batch) = args.batch_size {
        if batch == 0 {
            bail!("--batch-size must be at least 1");
        }
        suite.generation.batch_size = batch;
    }
    if let Some(tokens) = args.max_new_tokens {
        if tokens == 0 {
            bail!("--max-new-tokens must be at least 1");
        }
        suite.generation.max_new_tokens = tokens;
    }
    // A remote judge's model is named, not loaded: the name stands where a folder would.
    let judge_model =
        args.judge_model.clone().or_else(|| judge_remote.as_ref().map(|s| format!("remote:{}", s.model).into()));
    suite.judge = judge::resolve(suite.judge, args.judge, judge_model)?;
    if judge_remote.is_some() && suite.judge.model_dir().is_none() {
        bail!("--judge-remote needs a model-based judge (--judge model or --judge llamaguard)");
    }
    let base_model = match (baseline_remote, &args.baseline) {
        (Some(spec), _) => ModelSource::Remote(spec),
        (None, Some(dir)) => ModelSource::Folder(dir.clone()),
        (None, None) => tuned_model.clone(),
    };
    let base = SideSettings { model: base_model, system_prompt: suite.generation.system_prompt.clone() };
    let tuned = SideSettings {
        model: tuned_model,
        system_prompt: args.tuned_system.clone().or_else(|| suite.generation.system_prompt.clone()),
    };
    let cache_dir = (!args.no_cache).then(|| args.cache_dir.clone());
    Ok(GateSettings { suite, base, tuned, judge_remote, cache_dir, out: args.out.clone() })
}

impl DeviceCommand for Gate {
    fn run<B: TrainKernels>(self, device: B::Device, decode: Option<FloatDType>) -> Result<()> {
        let settings = settings(&self.args)?;
        let mut models = ModelOpener::<B> { connection: &self.args.connection, device: &device, decode };
        let quiet = self.quiet;
        let report = run_gate(&settings, &mut models, &mut |side| Box::new(EvalProgress::new(side.as_str(), quiet)))?;
        announce(&report, self.args.json)
    }
}

/// Prints a finished gate's report (JSON or a table) and turns its verdict into the result:
/// a [`GateFailure`] unless it passed.
pub fn announce(report: &Report, json: bool) -> Result<()> {
    if json {
        print_json(report)?;
    } else {
        print!("{}", terminal_table(report));
    }
    match report.comparison.verdict {
        Verdict::Pass => Ok(()),
        verdict => Err(GateFailure { verdict }.into()),
    }
}
