//! `precept dpo`: preference training, with the settings handling and display of `precept sft`.

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use burn::tensor::FloatDType;
use precept_data::resolve_settings;
use precept_train::dpo::{train_dpo, DpoConfig};
use precept_train::TrainKernels;

use super::training::{print_outcome, train_watched};
use crate::args::DpoArgs;
use crate::device::DeviceCommand;
use crate::progress::{Columns, ProgressDisplay};

/// Step metrics shown while training.
const COLUMNS: Columns = &[
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
        let config: DpoConfig = resolve_settings(args.train.config.as_deref(), &args, &args.cleared())?;
        config.validate().context("invalid DPO settings")?;
        Ok(Self { config, resume: args.train.resume, json: args.train.json, quiet })
    }
}

impl DeviceCommand for Dpo {
    fn run<B: TrainKernels>(self, device: B::Device, decode: Option<FloatDType>) -> Result<()> {
        let progress = ProgressDisplay::new(self.quiet, COLUMNS);
        let outcome = train_watched::<B>(&self.config.train, &device, decode, progress, |progress, monitor| {
            train_dpo::<Autodiff<B>>(&self.config, &device, self.resume, progress, monitor)
        })
        .with_context(|| format!("training into {}", self.config.train.out.display()))?;
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

    #[test]
    fn flags_given_override_the_settings_file_and_replace_what_qualifies_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dpo.toml");
        let text = "max_steps = 5
beta = 0.3
loss = [\"sigmoid\", \"sft\"]\nloss_weights = [1.0, 0.2]\n[lora]\nalpha = 8.0\n";
        std::fs::write(&file, text).unwrap();
        let config = file.to_str().unwrap();
        let flags =
            ["--config", config, "--epochs", "2", "--loss", "ipo", "--lr", "1e-5", "--lora-r", "4", "--packing"];
        let resolved = super::Dpo::resolve(dpo_args(&flags).unwrap(), true);
        // DPO rejects packing: the flag reached the settings.
        assert!(format!("{:#}", resolved.err().unwrap()).contains("setting `packing`"));
        let resolved = super::Dpo::resolve(dpo_args(&flags[..10]).unwrap(), true).unwrap().config;
        assert_eq!((resolved.train.max_steps, resolved.train.num_train_epochs), (None, 2.0));
        assert_eq!((resolved.loss, resolved.loss_weights), (vec![PreferenceLoss::Ipo], None));
        assert_eq!((resolved.beta, resolved.train.learning_rate), (0.3, 1e-5));
        assert_eq!((resolved.train.lora.r, resolved.train.lora.alpha), (4, 8.0));
        assert_eq!(resolved.train.model, std::path::PathBuf::from("m"));
    }
}
