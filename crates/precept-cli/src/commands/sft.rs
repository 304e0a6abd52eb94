//! `precept sft`: settings from `--config` overridden by flags, validated before anything loads,
//! then the training loop with a progress bar (or log lines) and the outcome.

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use burn::tensor::FloatDType;
use precept_data::resolve_settings;
use precept_train::sft::train_sft;
use precept_train::TrainConfig;
use precept_train::TrainKernels;

use super::training::print_outcome;
use crate::args::TrainArgs;
use crate::device::DeviceCommand;
use crate::progress::{Columns, ProgressDisplay};

/// Step metrics shown while training.
const COLUMNS: Columns =
    &[("loss", "loss"), ("learning_rate", "lr"), ("grad_norm", "grad_norm"), ("mean_token_accuracy", "acc")];

/// Resolved settings, ready to run on a backend.
pub struct Sft {
    config: TrainConfig,
    resume: bool,
    json: bool,
    quiet: bool,
}

impl Sft {
    /// Reads `--config`, applies the flags and validates the result.
    pub fn resolve(args: TrainArgs, quiet: bool) -> Result<Self> {
        let config: TrainConfig = resolve_settings(args.config.as_deref(), &args, &args.cleared())?;
        config.validate().context("invalid SFT settings")?;
        Ok(Self { config, resume: args.resume, json: args.json, quiet })
    }
}

impl DeviceCommand for Sft {
    fn run<B: TrainKernels>(self, device: B::Device, _decode: Option<FloatDType>) -> Result<()> {
        let mut progress = ProgressDisplay::new(self.quiet, COLUMNS);
        let outcome = train_sft::<Autodiff<B>>(&self.config, &device, self.resume, &mut progress)
            .with_context(|| format!("training into {}", self.config.out.display()))?;
        progress.finish();
        print_outcome(&outcome, self.json)
    }
}
