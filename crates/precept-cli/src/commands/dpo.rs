//! `precept dpo`: preference training, with the settings handling and display of `precept sft`.

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use burn::tensor::FloatDType;
use precept_train::dpo::{train_dpo, DpoConfig, PreferenceMethod};
use precept_train::loss::PreferenceLoss;
use precept_train::TrainKernels;

use super::training::{apply_train_overrides, print_outcome, read_settings, Progress};
use crate::args::{DpoArgs, PreferenceLossArg, PreferenceMethodArg};
use crate::device::DeviceCommand;

/// Step metrics shown while training.
const COLUMNS: &[(&str, &str)] = &[
    ("loss", "loss"),
    ("learning_rate", "lr"),
    ("grad_norm", "grad_norm"),
    ("rewards/accuracies", "acc"),
    ("rewards/margins", "margin"),
];

/// Resolved settings, ready to run on a backend.
pub struct Dpo {
    config: DpoConfig,
    resume: bool,
    json: bool,
    quiet: bool,
}

impl Dpo {
    /// Reads `--config`, applies the flags and validates the result.
    pub fn resolve(args: DpoArgs, quiet: bool) -> Result<Self> {
        let mut config: DpoConfig = read_settings(args.train.config.as_deref())?;
        apply_train_overrides(&mut config.train, &args.train);
        if let Some(method) = args.method {
            config.method = match method {
                PreferenceMethodArg::Dpo => PreferenceMethod::Dpo,
                PreferenceMethodArg::Simpo => PreferenceMethod::Simpo,
                PreferenceMethodArg::Orpo => PreferenceMethod::Orpo,
            };
        }
        if let Some(beta) = args.beta {
            config.beta = beta;
        }
        if !args.loss.is_empty() {
            config.loss = args.loss.iter().map(|&loss| preference_loss(loss)).collect();
            config.loss_weights = None;
        }
        if args.ref_model.is_some() {
            config.ref_model.clone_from(&args.ref_model);
        }
        config.validate().context("invalid DPO settings")?;
        Ok(Self { config, resume: args.train.resume, json: args.train.json, quiet })
    }
}

fn preference_loss(arg: PreferenceLossArg) -> PreferenceLoss {
    match arg {
        PreferenceLossArg::Sigmoid => PreferenceLoss::Sigmoid,
        PreferenceLossArg::Hinge => PreferenceLoss::Hinge,
        PreferenceLossArg::Ipo => PreferenceLoss::Ipo,
        PreferenceLossArg::Robust => PreferenceLoss::Robust,
        PreferenceLossArg::BcoPair => PreferenceLoss::BcoPair,
        PreferenceLossArg::SppoHard => PreferenceLoss::SppoHard,
        PreferenceLossArg::NcaPair => PreferenceLoss::NcaPair,
        PreferenceLossArg::ApoZero => PreferenceLoss::ApoZero,
        PreferenceLossArg::ApoDown => PreferenceLoss::ApoDown,
        PreferenceLossArg::SigmoidNorm => PreferenceLoss::SigmoidNorm,
        PreferenceLossArg::Sft => PreferenceLoss::Sft,
    }
}

impl DeviceCommand for Dpo {
    fn run<B: TrainKernels>(self, device: B::Device, _decode: Option<FloatDType>) -> Result<()> {
        let mut progress = Progress::new(self.quiet, COLUMNS);
        let outcome = train_dpo::<Autodiff<B>>(&self.config, &device, self.resume, &mut progress)
            .with_context(|| format!("training into {}", self.config.train.out.display()))?;
        progress.finish();
        print_outcome(&outcome, self.json)
    }
}
