//! [`TrainConfig`]: the settings every training run has (SFT's whole settings, and the shared
//! part of DPO's), as `configs/sft.toml` spells them; `precept_data::resolve_settings` reads them.

use std::path::PathBuf;

use precept_data::OnMismatch;
use precept_model::lora::LoraConfig;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::optim::AdamWConfig;
use crate::safety::SafetySettings;
use crate::schedule::ScheduleKind;

/// What a training run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Tuning {
    /// LoRA adapters beside the frozen base.
    #[default]
    Lora,
    /// Every weight.
    Full,
}

/// The settings of one training run. Field names follow TRL's `SFTConfig` where one exists.
/// Unknown keys are rejected by `precept_data::parse_settings` (not by serde, so that DPO's settings can
/// embed these).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// The base model folder (Hugging Face layout).
    pub model: PathBuf,
    /// Training data, TRL JSONL (SFT records, or preference pairs for DPO).
    pub data: PathBuf,
    /// Evaluation data; when absent, `eval_ratio` of `data` is held out instead.
    pub eval_data: Option<PathBuf>,
    /// Share of `data` held out for evaluation when there is no `eval_data` (0 for none).
    pub eval_ratio: f64,
    /// The run folder: resolved config, metrics, checkpoints, the final adapter or model.
    pub out: PathBuf,
    /// LoRA or full fine-tuning.
    pub tuning: Tuning,
    /// LoRA settings (used with `tuning = "lora"`).
    pub lora: LoraConfig,
    /// AdamW settings.
    pub optimizer: AdamWConfig,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Decay after warmup.
    pub lr_scheduler_type: ScheduleKind,
    /// Warmup as a share of all steps (used when `warmup_steps` is absent).
    pub warmup_ratio: f64,
    /// Warmup steps.
    pub warmup_steps: Option<u64>,
    /// Optimiser steps; when absent, `num_train_epochs` decides.
    pub max_steps: Option<u64>,
    /// Passes over the data (may be fractional).
    pub num_train_epochs: f64,
    /// Rows per micro-batch.
    pub per_device_train_batch_size: usize,
    /// Micro-batches per optimiser step.
    pub gradient_accumulation_steps: usize,
    /// Global gradient-norm clipping; `None` turns it off.
    pub max_grad_norm: Option<f64>,
    /// Tokens kept from the start of each example (and the packed row length).
    pub max_length: usize,
    /// Pack several examples into each row.
    pub packing: bool,
    /// What a record whose prompt does not tokenise to a prefix does.
    pub on_mismatch: OnMismatch,
    /// Seed of the adapter init, dropout, data order and eval split.
    pub seed: u64,
    /// Log metrics every this many steps.
    pub logging_steps: u64,
    /// Evaluate every this many steps (and always at the end).
    pub eval_steps: Option<u64>,
    /// Also evaluate before the first step (a baseline for the eval curve).
    pub eval_on_start: bool,
    /// Write a checkpoint every this many steps (and always at the end).
    pub save_steps: u64,
    /// Checkpoints kept; older ones are deleted.
    pub save_total_limit: usize,
    /// Also write the base with the adapter merged in (`merged/`).
    pub merge: bool,
    /// The safety gate watching the run (`[safety]`).
    pub safety: SafetySettings,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            model: PathBuf::new(),
            data: PathBuf::new(),
            eval_data: None,
            eval_ratio: 0.0,
            out: PathBuf::new(),
            tuning: Tuning::Lora,
            lora: LoraConfig::default(),
            optimizer: AdamWConfig::default(),
            learning_rate: 2e-4,
            lr_scheduler_type: ScheduleKind::Linear,
            warmup_ratio: 0.0,
            warmup_steps: None,
            max_steps: None,
            num_train_epochs: 1.0,
            per_device_train_batch_size: 2,
            gradient_accumulation_steps: 1,
            max_grad_norm: Some(1.0),
            max_length: 1024,
            packing: false,
            on_mismatch: OnMismatch::Error,
            seed: 42,
            logging_steps: 1,
            eval_steps: None,
            eval_on_start: false,
            save_steps: 50,
            save_total_limit: 2,
            merge: false,
            safety: SafetySettings::default(),
        }
    }
}

/// The most passes over the data a run may ask for: more is a typo, and `inf` would never end.
pub const MAX_EPOCHS: f64 = 10_000.0;

impl TrainConfig {
    /// Checks every setting before any work starts: each number finite and in its range, the
    /// error naming the setting.
    pub fn validate(&self) -> Result<()> {
        let fail = |field: &str, message: &str| Err(TrainError::setting(field, message));
        for (field, path) in [("model", &self.model), ("data", &self.data), ("out", &self.out)] {
            if path.as_os_str().is_empty() {
                return fail(field, "is required");
            }
        }
        if self.learning_rate.is_nan() || self.learning_rate <= 0.0 || self.learning_rate.is_infinite() {
            return fail("learning_rate", "must be a positive number");
        }
        if !(0.0..1.0).contains(&self.eval_ratio) {
            return fail("eval_ratio", "must be in [0, 1)");
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return fail("warmup_ratio", "must be in [0, 1]");
        }
        if !(self.num_train_epochs.is_finite() && (0.0..=MAX_EPOCHS).contains(&self.num_train_epochs)) {
            return Err(TrainError::setting(
                "num_train_epochs",
                format!("{:?} is not a number from 0 to {MAX_EPOCHS}", self.num_train_epochs),
            ));
        }
        let has_epochs = self.num_train_epochs > 0.0;
        if self.max_steps == Some(0) || (self.max_steps.is_none() && !has_epochs) {
            return fail("max_steps", "the run must have at least one step");
        }
        for (field, value) in [
            ("per_device_train_batch_size", self.per_device_train_batch_size),
            ("gradient_accumulation_steps", self.gradient_accumulation_steps),
            ("max_length", self.max_length),
            ("save_total_limit", self.save_total_limit),
        ] {
            if value == 0 {
                return fail(field, "must be at least 1");
            }
        }
        if self.max_length < 2 {
            return fail("max_length", "must be at least 2");
        }
        for (field, value) in [("logging_steps", self.logging_steps), ("save_steps", self.save_steps)] {
            if value == 0 {
                return fail(field, "must be at least 1");
            }
        }
        if self.eval_steps == Some(0) {
            return fail("eval_steps", "must be at least 1");
        }
        if self.max_grad_norm.is_some_and(|norm| !(norm.is_finite() && norm > 0.0)) {
            return fail("max_grad_norm", "must be a positive number (leave it out to turn clipping off)");
        }
        self.optimizer.validate()?;
        self.safety.validate()?;
        if self.tuning == Tuning::Lora {
            self.lora.validate().map_err(|error| match error {
                precept_model::ModelError::Lora { field, message } => {
                    TrainError::setting(&format!("lora.{field}"), message)
                }
                other => other.into(),
            })?;
        } else if self.merge {
            return fail("merge", "only LoRA runs have an adapter to merge");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use precept_data::parse_settings;

    use super::*;

    fn valid() -> TrainConfig {
        TrainConfig { model: "m".into(), data: "d.jsonl".into(), out: "o".into(), ..TrainConfig::default() }
    }

    #[test]
    fn invalid_settings_name_the_setting_and_every_number_must_be_finite_and_in_range() {
        assert!(valid().validate().is_ok());
        let cases: Vec<(TrainConfig, &str)> = vec![
            (TrainConfig { data: "".into(), ..valid() }, "setting `data`: is required"),
            (TrainConfig { learning_rate: f64::NAN, ..valid() }, "setting `learning_rate`"),
            (TrainConfig { eval_ratio: 1.0, ..valid() }, "setting `eval_ratio`"),
            (TrainConfig { max_steps: Some(0), ..valid() }, "setting `max_steps`"),
            (TrainConfig { num_train_epochs: 0.0, ..valid() }, "setting `max_steps`"),
            (TrainConfig { per_device_train_batch_size: 0, ..valid() }, "setting `per_device_train_batch_size`"),
            (TrainConfig { max_length: 1, ..valid() }, "setting `max_length`: must be at least 2"),
            (TrainConfig { eval_steps: Some(0), ..valid() }, "setting `eval_steps`"),
            (TrainConfig { max_grad_norm: Some(-1.0), ..valid() }, "setting `max_grad_norm`"),
            (TrainConfig { lora: LoraConfig { r: 0, ..LoraConfig::default() }, ..valid() }, "setting `lora.r`"),
            (TrainConfig { tuning: Tuning::Full, merge: true, ..valid() }, "setting `merge`"),
            (TrainConfig { num_train_epochs: f64::INFINITY, ..valid() }, "setting `num_train_epochs`: inf is not"),
            (TrainConfig { num_train_epochs: 1e300, ..valid() }, "setting `num_train_epochs`: 1e300 is not"),
            (TrainConfig { num_train_epochs: f64::NAN, ..valid() }, "setting `num_train_epochs`: NaN is not"),
            (TrainConfig { max_grad_norm: Some(f64::INFINITY), ..valid() }, "setting `max_grad_norm`"),
            (
                TrainConfig { optimizer: AdamWConfig { weight_decay: -5.0, ..AdamWConfig::default() }, ..valid() },
                "setting `optimizer.weight_decay`: -5.0 is not",
            ),
            (
                TrainConfig { optimizer: AdamWConfig { beta1: f64::NAN, ..AdamWConfig::default() }, ..valid() },
                "setting `optimizer.beta1`: NaN is not in [0, 1)",
            ),
            (
                TrainConfig { optimizer: AdamWConfig { epsilon: 0.0, ..AdamWConfig::default() }, ..valid() },
                "setting `optimizer.epsilon`",
            ),
            (
                TrainConfig { lora: LoraConfig { alpha: f64::INFINITY, ..LoraConfig::default() }, ..valid() },
                "setting `lora.alpha`",
            ),
        ];
        for (config, expected) in cases {
            let message = config.validate().unwrap_err().to_string();
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn unknown_keys_in_a_settings_file_are_errors_naming_the_line_and_the_closest_key() {
        let parse = |text: &str| parse_settings::<TrainConfig>(text, Path::new("run.toml"));
        let error = parse("model = \"m\"\nlearning_rat = 1e-4\n").unwrap_err().to_string();
        assert!(
            error.contains("run.toml: line 2: unknown setting `learning_rat` (did you mean `learning_rate`?)"),
            "{error}"
        );
        let error = parse("model = \"m\"\n\n[lora]\nrank = 8\n").unwrap_err().to_string();
        assert!(error.contains("line 4") && error.contains("`rank`"), "{error}");
        let error = parse("max_steps = \"ten\"\n").unwrap_err().to_string();
        assert!(error.contains("run.toml") && error.contains("max_steps"), "{error}");
        assert_eq!(parse("model = \"m\"\n[lora]\nr = 8\n").unwrap().lora.r, 8);
    }
}
