//! `precept sft`: settings from `--config` overridden by flags, validated before anything loads,
//! then the training loop with a progress bar (or log lines) and the outcome.

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use burn::tensor::FloatDType;
use precept_data::resolve_settings;
use precept_train::sft::train_sft;
use precept_train::TrainConfig;
use precept_train::TrainKernels;

use super::training::{print_outcome, train_watched};
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
    fn run<B: TrainKernels>(self, device: B::Device, decode: Option<FloatDType>) -> Result<()> {
        let progress = ProgressDisplay::new(self.quiet, COLUMNS);
        let outcome = train_watched::<B>(&self.config, &device, decode, progress, |progress, monitor| {
            train_sft::<Autodiff<B>>(&self.config, &device, self.resume, progress, monitor)
        })
        .with_context(|| format!("training into {}", self.config.out.display()))?;
        print_outcome(&outcome, self.json)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::args::{Cli, Command};

    #[test]
    fn safety_flags_override_the_settings_files_safety_table() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sft.toml");
        std::fs::write(&file, "[safety]\nsuite = \"a.toml\"\nevery = 5\ncases = 10\ncache_dir = \"c\"\n").unwrap();
        let argv = ["precept", "sft", "--config", file.to_str().unwrap(), "--model", "m", "--data", "d", "--out", "o"];
        let flags = ["--safety-suite", "b.toml", "--safety-every", "2", "--safety-warn-only"];
        let Command::Sft(args) = Cli::try_parse_from(argv.iter().chain(&flags)).unwrap().command else {
            panic!("not parsed as sft")
        };
        let safety = super::Sft::resolve(args, true).unwrap().config.safety;
        assert_eq!(safety.suite, Some("b.toml".into()));
        assert_eq!((safety.every, safety.cases, safety.warn_only), (Some(2), Some(10), true));
        assert_eq!(safety.cache_dir, std::path::PathBuf::from("c"));
    }
}
