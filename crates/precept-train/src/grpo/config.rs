//! [`GrpoConfig`]: the settings of an online RL run, as `configs/grpo.toml` spells them, with
//! TRL's `GRPOConfig` names and defaults.

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::loss::{GrpoLossConfig, ScaleRewards};
use crate::settings::TrainConfig;

/// A reward function by name (`reward_funcs`); each scores one sampled completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum RewardFunc {
    /// 1 when the reply keeps to the prompt's `expected` (`refuse`: its first sentence refuses;
    /// `comply`: it does not refuse), else 0. Every prompt needs `expected`.
    Expectation,
    /// −1 when the degenerate-reply judge finds a defect (an invented persona, a refusal followed
    /// by the answer, loops, a refusal of another topic), else 0.
    Degenerate,
    /// DAPO's soft overlong punishment: 0 up to `max_completion_length − soft_punish_cache`
    /// tokens, then linear down to −1 at `max_completion_length`.
    Length,
    /// `repetition_max_penalty · (1 − distinct / total)` over the reply's word
    /// `repetition_n_grams`-grams (open-r1's repetition penalty).
    Repetition,
    /// The number an HTTP endpoint answers for the prompt and completion (`[remote_reward]`).
    Remote,
}

impl RewardFunc {
    /// The name in settings files and metrics (`rewards/<name>/mean`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Expectation => "expectation",
            Self::Degenerate => "degenerate",
            Self::Length => "length",
            Self::Repetition => "repetition",
            Self::Remote => "remote",
        }
    }
}

/// Where the `remote` reward is computed: an HTTP endpoint that is sent each completion (with its
/// prompt and the prompt record's fields) as JSON and answers a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteRewardSettings {
    /// The endpoint (`http://` or `https://`), sent one POST per completion.
    pub url: String,
    /// Seconds one request may take.
    #[serde(default = "RemoteRewardSettings::default_timeout")]
    pub timeout: u64,
    /// Attempts after the first on timeouts, refused connections, 429 and 5xx.
    #[serde(default = "RemoteRewardSettings::default_retries")]
    pub retries: usize,
    /// Requests in flight at once.
    #[serde(default = "RemoteRewardSettings::default_concurrency")]
    pub concurrency: usize,
    /// The environment variable holding a key sent as `Authorization: Bearer …`, when set.
    #[serde(default)]
    pub api_key_env: Option<String>,
}

impl RemoteRewardSettings {
    fn default_timeout() -> u64 {
        60
    }

    fn default_retries() -> usize {
        3
    }

    fn default_concurrency() -> usize {
        8
    }
}

/// System prompts put on prompts that have none: one for all, or several used in turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SystemPrompts {
    /// The same system prompt on every prompt.
    One(String),
    /// Prompt `i` (in file order) gets the `i mod n`-th.
    Many(Vec<String>),
}

impl SystemPrompts {
    /// The system prompt of the `index`-th prompt, if any.
    pub fn for_prompt(&self, index: usize) -> Option<&str> {
        match self {
            Self::One(text) => Some(text),
            Self::Many(texts) if texts.is_empty() => None,
            Self::Many(texts) => Some(&texts[index % texts.len()]),
        }
    }
}

/// The settings of one GRPO run: the training settings SFT has (`per_device_train_batch_size`
/// counts completions, as in TRL), the loss settings of [`GrpoLossConfig`], and TRL's
/// `GRPOConfig` names for generation and rewards.
///
/// A step samples `num_generations` completions for each of its
/// `per_device_train_batch_size · gradient_accumulation_steps / num_generations` prompts.
/// `max_length`, `on_mismatch` and the evaluation settings of [`TrainConfig`] do not apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GrpoConfig {
    /// Model, data (prompt JSONL), tuning, optimiser, schedule, checkpoints, seed.
    #[serde(flatten)]
    pub train: TrainConfig,
    /// `loss_type`, `epsilon`, `epsilon_high`, `beta` and `max_completion_length` (also the
    /// generation limit).
    #[serde(flatten)]
    pub loss: GrpoLossConfig,
    /// Completions sampled per prompt (the group of the advantages).
    pub num_generations: usize,
    /// Sampling temperature (also divides the logits of the trained log-probabilities).
    pub temperature: f32,
    /// Nucleus sampling mass (1 keeps every token).
    pub top_p: f32,
    /// Sample among the `top_k` most likely tokens (0 keeps every token).
    pub top_k: usize,
    /// Prompt tokens kept (the last ones, as TRL truncates on the left).
    pub max_prompt_length: usize,
    /// Optimiser steps on each batch of completions (`> 1` makes the ratio to the sampling
    /// policy differ from 1 and the clipping act).
    pub num_iterations: usize,
    /// How the group-centred rewards are scaled.
    pub scale_rewards: ScaleRewards,
    /// Leave completions cut by `max_completion_length` out of the loss.
    pub mask_truncated_completions: bool,
    /// The reward functions, summed with `reward_weights`.
    pub reward_funcs: Vec<RewardFunc>,
    /// One weight per entry of `reward_funcs`; all 1 when absent.
    pub reward_weights: Option<Vec<f64>>,
    /// The `length` reward's linear band, in tokens below `max_completion_length`.
    pub soft_punish_cache: usize,
    /// The `repetition` reward's n-gram size, in words.
    pub repetition_n_grams: usize,
    /// The `repetition` reward of a reply that is all repeats (non-positive).
    pub repetition_max_penalty: f64,
    /// System prompt(s) put on prompts without one.
    pub system: Option<SystemPrompts>,
    /// The endpoint of the `remote` reward.
    pub remote_reward: Option<RemoteRewardSettings>,
}

impl Default for GrpoConfig {
    fn default() -> Self {
        Self {
            train: TrainConfig { learning_rate: 1e-6, ..TrainConfig::default() },
            loss: GrpoLossConfig { max_completion_length: 256, ..GrpoLossConfig::default() },
            num_generations: 8,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            max_prompt_length: 512,
            num_iterations: 1,
            scale_rewards: ScaleRewards::Group,
            mask_truncated_completions: false,
            reward_funcs: vec![RewardFunc::Expectation],
            reward_weights: None,
            soft_punish_cache: 32,
            repetition_n_grams: 3,
            repetition_max_penalty: -1.0,
            system: None,
            remote_reward: None,
        }
    }
}

impl GrpoConfig {
    /// Checks every setting before any work starts.
    ///
    /// # Errors
    /// [`TrainError::Setting`] naming the first invalid setting.
    pub fn validate(&self) -> Result<()> {
        self.train.validate()?;
        self.loss.validate()?;
        let fail = |field: &str, message: String| Err(TrainError::setting(field, message));
        let train = &self.train;
        if train.packing {
            return fail("packing", "GRPO samples its completions; they are not packed".into());
        }
        if train.eval_data.is_some() || train.eval_ratio != 0.0 || train.eval_steps.is_some() || train.eval_on_start {
            return fail("eval_data", "GRPO runs have no evaluation split; evaluate with `precept eval`".into());
        }
        if self.num_generations < 2 {
            return fail(
                "num_generations",
                format!(
                    "is {}: group-relative advantages compare at least 2 completions of each prompt",
                    self.num_generations
                ),
            );
        }
        let completions = train.per_device_train_batch_size * train.gradient_accumulation_steps;
        if !completions.is_multiple_of(self.num_generations) {
            return fail(
                "per_device_train_batch_size",
                format!(
                    "a step's {completions} completions (per_device_train_batch_size × gradient_accumulation_steps) \
                     must be a multiple of num_generations ({})",
                    self.num_generations
                ),
            );
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return fail("temperature", "must be a positive number (GRPO samples)".into());
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return fail("top_p", "must be in (0, 1]".into());
        }
        if self.max_prompt_length == 0 {
            return fail("max_prompt_length", "must be at least 1".into());
        }
        if self.num_iterations == 0 {
            return fail("num_iterations", "must be at least 1".into());
        }
        if !(train.save_steps as usize).is_multiple_of(self.num_iterations) {
            // A checkpoint then always falls where a new batch is sampled, so a resumed run
            // samples what an uninterrupted one would.
            return fail("save_steps", format!("must be a multiple of num_iterations ({})", self.num_iterations));
        }
        self.validate_rewards()
    }

    /// Checks `reward_funcs`, `reward_weights` and the settings of the rewards named.
    fn validate_rewards(&self) -> Result<()> {
        let fail = |field: &str, message: String| Err(TrainError::setting(field, message));
        if self.reward_funcs.is_empty() {
            return fail("reward_funcs", "name at least one reward function".into());
        }
        if let Some(weights) = &self.reward_weights {
            if weights.len() != self.reward_funcs.len() {
                return fail("reward_weights", "needs one weight per entry of `reward_funcs`".into());
            }
            if weights.iter().any(|w| !w.is_finite()) {
                return fail("reward_weights", "must be numbers".into());
            }
        }
        if let Some(twice) = self.reward_funcs.iter().enumerate().find(|(i, f)| self.reward_funcs[..*i].contains(f)) {
            return fail("reward_funcs", format!("`{}` is named twice", twice.1.name()));
        }
        if self.reward_funcs.contains(&RewardFunc::Length) && self.soft_punish_cache > self.loss.max_completion_length {
            return fail("soft_punish_cache", "must be at most max_completion_length".into());
        }
        if self.reward_funcs.contains(&RewardFunc::Repetition) {
            if self.repetition_n_grams == 0 {
                return fail("repetition_n_grams", "must be at least 1".into());
            }
            if !(self.repetition_max_penalty.is_finite() && self.repetition_max_penalty <= 0.0) {
                return fail("repetition_max_penalty", "must be a non-positive number".into());
            }
        }
        self.validate_remote_reward()
    }

    /// Checks that `remote_reward` is given exactly when `reward_funcs` names `remote`.
    fn validate_remote_reward(&self) -> Result<()> {
        let fail = |field: &str, message: String| Err(TrainError::setting(field, message));
        let named = self.reward_funcs.contains(&RewardFunc::Remote);
        match &self.remote_reward {
            None if named => fail("remote_reward", "`reward_funcs` names `remote`; give its `url`".into()),
            None => Ok(()),
            Some(_) if !named => {
                fail("remote_reward", "is set but `reward_funcs` does not name `remote`; add it or remove this".into())
            }
            Some(remote) if !(remote.url.starts_with("http://") || remote.url.starts_with("https://")) => {
                fail("remote_reward.url", format!("`{}` is not an http:// or https:// URL", remote.url))
            }
            Some(remote) if remote.timeout == 0 => fail("remote_reward.timeout", "must be at least 1 second".into()),
            Some(remote) if remote.concurrency == 0 => fail("remote_reward.concurrency", "must be at least 1".into()),
            Some(_) => Ok(()),
        }
    }

    /// The reward functions with their weights.
    pub fn weighted_rewards(&self) -> Vec<(RewardFunc, f64)> {
        let weights = self.reward_weights.clone().unwrap_or_else(|| vec![1.0; self.reward_funcs.len()]);
        self.reward_funcs.iter().copied().zip(weights).collect()
    }

    /// Completions sampled per optimiser step.
    pub fn completions_per_step(&self) -> usize {
        self.train.per_device_train_batch_size * self.train.gradient_accumulation_steps
    }

    /// Prompts sampled per optimiser step.
    pub fn prompts_per_step(&self) -> usize {
        self.completions_per_step() / self.num_generations.max(1)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use precept_data::parse_settings;

    use super::*;

    fn valid() -> GrpoConfig {
        let train = TrainConfig {
            model: "m".into(),
            data: "p.jsonl".into(),
            out: "o".into(),
            per_device_train_batch_size: 8,
            ..GrpoConfig::default().train
        };
        GrpoConfig { train, ..GrpoConfig::default() }
    }

    fn remote(url: &str) -> RemoteRewardSettings {
        RemoteRewardSettings { url: url.into(), timeout: 5, retries: 0, concurrency: 1, api_key_env: None }
    }

    #[test]
    fn a_remote_reward_table_gives_the_endpoint_with_defaults_for_the_rest() {
        let text =
            "reward_funcs = [\"expectation\", \"remote\"]\n\n[remote_reward]\nurl = \"http://127.0.0.1:8001/score\"\n\
                    api_key_env = \"REWARD_KEY\"\n";
        let config: GrpoConfig = parse_settings(text, Path::new("grpo.toml")).unwrap();
        let remote = config.remote_reward.clone().unwrap();
        assert_eq!((remote.url.as_str(), remote.timeout, remote.retries), ("http://127.0.0.1:8001/score", 60, 3));
        assert_eq!(remote.api_key_env.as_deref(), Some("REWARD_KEY"));
        assert!(GrpoConfig { train: valid().train, ..config }.validate().is_ok());
        let error =
            parse_settings::<GrpoConfig>("[remote_reward]\nurl = \"http://h\"\ntimout = 3\n", Path::new("g.toml"))
                .unwrap_err();
        assert!(error.to_string().contains("timout"), "{error}");
    }

    #[test]
    fn one_generation_per_prompt_is_an_error_naming_num_generations() {
        let error = GrpoConfig { num_generations: 1, ..valid() }.validate().unwrap_err().to_string();
        assert!(error.starts_with("setting `num_generations`: is 1: group-relative advantages"), "{error}");
    }

    #[test]
    fn invalid_grpo_settings_name_the_setting() {
        assert!(valid().validate().is_ok());
        let train = |changed: TrainConfig| GrpoConfig { train: changed, ..valid() };
        let cases: Vec<(GrpoConfig, &str)> = vec![
            (GrpoConfig { num_generations: 3, ..valid() }, "setting `per_device_train_batch_size`"),
            (GrpoConfig { temperature: 0.0, ..valid() }, "setting `temperature`"),
            (GrpoConfig { top_p: 0.0, ..valid() }, "setting `top_p`"),
            (GrpoConfig { max_prompt_length: 0, ..valid() }, "setting `max_prompt_length`"),
            (GrpoConfig { num_iterations: 0, ..valid() }, "setting `num_iterations`"),
            (GrpoConfig { num_iterations: 3, ..valid() }, "setting `save_steps`: must be a multiple"),
            (GrpoConfig { reward_funcs: vec![], ..valid() }, "setting `reward_funcs`"),
            (
                GrpoConfig { reward_funcs: vec![RewardFunc::Length, RewardFunc::Length], ..valid() },
                "setting `reward_funcs`: `length` is named twice",
            ),
            (GrpoConfig { reward_weights: Some(vec![1.0, 2.0]), ..valid() }, "setting `reward_weights`"),
            (
                GrpoConfig { reward_funcs: vec![RewardFunc::Length], soft_punish_cache: 300, ..valid() },
                "setting `soft_punish_cache`",
            ),
            (
                GrpoConfig { reward_funcs: vec![RewardFunc::Repetition], repetition_max_penalty: 1.0, ..valid() },
                "setting `repetition_max_penalty`",
            ),
            (GrpoConfig { loss: GrpoLossConfig { epsilon: 1.5, ..valid().loss }, ..valid() }, "setting `epsilon`"),
            (
                GrpoConfig { reward_funcs: vec![RewardFunc::Remote], ..valid() },
                "setting `remote_reward`: `reward_funcs`",
            ),
            (GrpoConfig { remote_reward: Some(remote("http://h/r")), ..valid() }, "does not name `remote`"),
            (
                GrpoConfig { reward_funcs: vec![RewardFunc::Remote], remote_reward: Some(remote("h:80/r")), ..valid() },
                "setting `remote_reward.url`: `h:80/r` is not an http:// or https:// URL",
            ),
            (train(TrainConfig { packing: true, ..valid().train }), "setting `packing`"),
            (train(TrainConfig { eval_ratio: 0.1, ..valid().train }), "setting `eval_data`"),
            (train(TrainConfig { max_steps: Some(0), ..valid().train }), "setting `max_steps`"),
        ];
        for (config, expected) in cases {
            let message = config.validate().unwrap_err().to_string();
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn a_settings_file_mixes_training_loss_and_reward_settings_over_grpo_defaults() {
        let text = "model = \"m\"\nnum_generations = 4\nbeta = 0.04\nloss_type = \"dr_grpo\"\n\
                    reward_funcs = [\"expectation\", \"length\"]\nreward_weights = [1.0, 0.5]\n\
                    system = [\"Be brief.\", \"Be kind.\"]\n\n[lora]\nr = 8\n";
        let config: GrpoConfig = parse_settings(text, Path::new("grpo.toml")).unwrap();
        assert_eq!((config.num_generations, config.loss.beta), (4, 0.04));
        assert_eq!(config.loss.loss_type, crate::loss::GrpoLossType::DrGrpo);
        assert_eq!(config.weighted_rewards(), [(RewardFunc::Expectation, 1.0), (RewardFunc::Length, 0.5)]);
        assert_eq!(config.system.as_ref().and_then(|s| s.for_prompt(3)), Some("Be kind."));
        assert_eq!((config.train.lora.r, config.train.learning_rate), (8, 1e-6));
        assert_eq!(config.loss.max_completion_length, 256, "TRL's GRPO default, not the loss's own");
        let one: GrpoConfig = parse_settings("system = \"Be safe.\"\n", Path::new("grpo.toml")).unwrap();
        assert_eq!(one.system.as_ref().and_then(|s| s.for_prompt(7)), Some("Be safe."));
    }

    #[test]
    fn an_unknown_reward_function_is_an_error_listing_the_known_ones() {
        let error =
            parse_settings::<GrpoConfig>("reward_funcs = [\"politeness\"]\n", Path::new("grpo.toml")).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("politeness"), "{message}");
        for known in ["expectation", "degenerate", "length", "repetition"] {
            assert!(message.contains(known), "{message}");
        }
        let error = parse_settings::<GrpoConfig>("num_generation = 4\n", Path::new("grpo.toml")).unwrap_err();
        assert!(error.to_string().contains("did you mean `num_generations`?"), "{error}");
    }

    #[test]
    fn the_shipped_settings_file_parses_and_validates() {
        let config: GrpoConfig =
            parse_settings(include_str!("../../../../configs/grpo.toml"), Path::new("configs/grpo.toml")).unwrap();
        config.validate().unwrap();
        assert_eq!((config.num_generations, config.prompts_per_step()), (4, 4));
    }
}
