//! `precept grpo`: online RL with GRPO, with the settings handling and display of `precept sft`.

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use burn::tensor::FloatDType;
use precept_data::resolve_settings;
use precept_train::grpo::{train_grpo_with, GrpoConfig, Rewards};
use precept_train::TrainKernels;

use super::grpo_rewards::grpo_rewards;
use super::training::{print_outcome, train_watched};
use crate::args::GrpoArgs;
use crate::device::DeviceCommand;
use crate::progress::{Columns, ProgressDisplay};

/// Step metrics shown while training.
const COLUMNS: Columns = &[
    ("loss", "loss"),
    ("reward", "reward"),
    ("reward_std", "reward_std"),
    ("completions/mean_length", "len"),
    ("kl", "kl"),
    ("grad_norm", "grad_norm"),
    ("learning_rate", "lr"),
];

/// Resolved settings, ready to run on a backend.
pub struct Grpo {
    config: GrpoConfig,
    rewards: Rewards,
    resume: bool,
    json: bool,
    quiet: bool,
}

impl Grpo {
    /// Reads `--config`, applies the flags and validates the result.
    pub fn resolve(args: GrpoArgs, quiet: bool) -> Result<Self> {
        let config: GrpoConfig = resolve_settings(args.train.config.as_deref(), &args, &args.cleared())?;
        config.validate().context("invalid GRPO settings")?;
        let rewards = grpo_rewards(&config)?;
        Ok(Self { config, rewards, resume: args.train.resume, json: args.train.json, quiet })
    }
}

impl DeviceCommand for Grpo {
    fn run<B: TrainKernels>(self, device: B::Device, decode: Option<FloatDType>) -> Result<()> {
        let progress = ProgressDisplay::new(self.quiet, COLUMNS);
        let (config, rewards) = (&self.config, self.rewards);
        let outcome = train_watched::<B>(&config.train, &device, decode, progress, |progress, monitor| {
            train_grpo_with::<Autodiff<B>>(config, rewards, &device, self.resume, progress, monitor)
        })
        .with_context(|| format!("training into {}", self.config.train.out.display()))?;
        print_outcome(&outcome, self.json)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use precept_train::grpo::RewardFunc;
    use precept_train::loss::GrpoLossType;

    use crate::args::{Cli, Command, GrpoArgs};

    fn grpo_args(extra: &[&str]) -> Result<GrpoArgs, clap::Error> {
        let argv = ["precept", "grpo", "--model", "m", "--data", "d", "--out", "o"].iter().chain(extra);
        match Cli::try_parse_from(argv)?.command {
            Command::Grpo(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn flags_given_override_the_settings_file_and_reward_flags_replace_its_weights() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("grpo.toml");
        let text = "num_generations = 4\nper_device_train_batch_size = 8\nbeta = 0.1\n\
                    reward_funcs = [\"expectation\", \"length\"]\nreward_weights = [1.0, 0.5]\n";
        std::fs::write(&file, text).unwrap();
        let config = file.to_str().unwrap();
        let flags = [
            "--config",
            config,
            "--reward",
            "degenerate,repetition",
            "--loss-type",
            "dr-grpo",
            "--temperature",
            "0.7",
            "--system",
            "Be safe.",
        ];
        let resolved = super::Grpo::resolve(grpo_args(&flags).unwrap(), true).unwrap().config;
        assert_eq!(resolved.reward_funcs, [RewardFunc::Degenerate, RewardFunc::Repetition]);
        assert_eq!(resolved.reward_weights, None);
        assert_eq!((resolved.loss.loss_type, resolved.loss.beta), (GrpoLossType::DrGrpo, 0.1));
        assert_eq!((resolved.temperature, resolved.num_generations), (0.7, 4));
        assert_eq!(resolved.system.and_then(|s| s.for_prompt(0).map(str::to_owned)).as_deref(), Some("Be safe."));
        let error = super::Grpo::resolve(grpo_args(&["--num-generations", "1"]).unwrap(), true).err().unwrap();
        assert!(format!("{error:#}").contains("setting `num_generations`"), "{error:#}");
        assert!(grpo_args(&["--reward", "politeness"]).is_err());
    }
}
