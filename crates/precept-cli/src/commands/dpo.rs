//! `precept dpo`: preference training, with the settings handling and display of `precept sft`.

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use burn::tensor::FloatDType;
use precept_train::dpo::{train_dpo, DpoConfig};
use precept_train::TrainKernels;

use super::training::{apply_train_overrides, print_outcome, read_settings, Progress};
use crate::args::DpoArgs;
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
            config.method = method;
        }
        if let Some(beta) = args.beta {
            config.beta = beta;
        }
        if !args.loss.is_empty() {
            config.loss = args.loss;
            config.loss_weights = None;
        }
        if args.ref_model.is_some() {
            config.ref_model.clone_from(&args.ref_model);
        }
        config.validate().context("invalid DPO settings")?;
        Ok(Self { config, resume: args.train.resume, json: args.train.json, quiet })
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

#[cfg(test)]
mod tests {
    use clap::Parser;
    use precept_train::dpo::PreferenceMethod;
    use precept_train::loss::PreferenceLoss;

    use crate::args::{Cli, Command, DpoArgs};

    fn dpo_args(extra: &[&str]) -> Result<DpoArgs, clap::Error> {
        let argv = ["precept", "dpo", "--model", "m", "--data", "d", "--out", "o"].iter().chain(extra);
        match Cli::try_parse_from(argv)?.command {
            Command::Dpo(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn loss_and_method_flags_take_the_training_enums_with_kebab_case_names() {
        let args = dpo_args(&[
            "--method",
            "simpo",
            "--loss",
            "sigmoid,hinge,ipo,robust,bco-pair,sppo-hard,nca-pair,apo-zero,apo-down,sigmoid-norm,sft",
        ])
        .unwrap();
        assert_eq!(args.method, Some(PreferenceMethod::Simpo));
        assert_eq!(
            args.loss,
            [
                PreferenceLoss::Sigmoid,
                PreferenceLoss::Hinge,
                PreferenceLoss::Ipo,
                PreferenceLoss::Robust,
                PreferenceLoss::BcoPair,
                PreferenceLoss::SppoHard,
                PreferenceLoss::NcaPair,
                PreferenceLoss::ApoZero,
                PreferenceLoss::ApoDown,
                PreferenceLoss::SigmoidNorm,
                PreferenceLoss::Sft,
            ]
        );
        for method in ["dpo", "orpo"] {
            assert!(dpo_args(&["--method", method]).unwrap().method.is_some(), "{method}");
        }
        // The settings file's snake_case spelling is not a flag value, as before.
        assert!(dpo_args(&["--loss", "bco_pair"]).is_err());
    }
}
