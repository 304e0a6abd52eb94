//! [`DpoConfig`]: the settings of a preference run, as `configs/dpo.toml` spells them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::loss::PreferenceLoss;
use crate::settings::TrainConfig;

/// The preference method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum PreferenceMethod {
    /// DPO and its family (`loss`), against a reference model.
    #[default]
    Dpo,
    /// SimPO: length-normalised and reference-free, with the target margin `simpo_gamma`.
    Simpo,
    /// ORPO: the chosen answers' NLL plus `beta` times the odds-ratio loss; reference-free.
    Orpo,
}

/// The settings of one preference run: the training settings SFT has, plus TRL's `DPOConfig`
/// names for the preference ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DpoConfig {
    /// Model, data (preference JSONL), tuning, optimiser, schedule, checkpoints.
    #[serde(flatten)]
    pub train: TrainConfig,
    /// DPO with a reference, or a reference-free method.
    pub method: PreferenceMethod,
    /// `β`: how far the policy may move from the reference (ORPO's `λ`).
    pub beta: f64,
    /// DPO loss types (TRL's `loss_type`), summed with `loss_weights`.
    pub loss: Vec<PreferenceLoss>,
    /// One weight per entry of `loss`; all 1 when absent.
    pub loss_weights: Option<Vec<f64>>,
    /// Label smoothing `ε` of the `robust` loss and SimPO.
    pub label_smoothing: f64,
    /// SimPO's target margin `γ`.
    pub simpo_gamma: f64,
    /// A separate reference model folder; the base model (`model`) when absent.
    pub ref_model: Option<PathBuf>,
    /// Compute the reference log-probabilities once, before training, and cache them on disk;
    /// otherwise the reference runs beside the policy at every step (for LoRA: the policy with
    /// its adapters switched off).
    pub precompute_ref_log_probs: bool,
    /// Folder of cached reference log-probabilities.
    pub ref_cache_dir: PathBuf,
}

impl Default for DpoConfig {
    fn default() -> Self {
        Self {
            train: TrainConfig { learning_rate: 1e-6, ..TrainConfig::default() },
            method: PreferenceMethod::Dpo,
            beta: 0.1,
            loss: vec![PreferenceLoss::Sigmoid],
            loss_weights: None,
            label_smoothing: 0.0,
            simpo_gamma: 0.5,
            ref_model: None,
            precompute_ref_log_probs: true,
            ref_cache_dir: PathBuf::from(".precept-cache/reference"),
        }
    }
}

impl DpoConfig {
    /// Checks every setting before any work starts.
    pub fn validate(&self) -> Result<()> {
        self.train.validate()?;
        let fail = |field: &str, message: &str| Err(TrainError::setting(field, message));
        if self.train.packing {
            return fail("packing", "preference pairs are not packed");
        }
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return fail("beta", "must be a positive number");
        }
        if !(0.0..0.5).contains(&self.label_smoothing) {
            return fail("label_smoothing", "must be in [0, 0.5)");
        }
        if !self.simpo_gamma.is_finite() {
            return fail("simpo_gamma", "must be a number");
        }
        if self.loss.is_empty() {
            return fail("loss", "name at least one loss type");
        }
        if let Some(weights) = &self.loss_weights {
            if weights.len() != self.loss.len() {
                return fail("loss_weights", "needs one weight per entry of `loss`");
            }
            if weights.iter().any(|w| !w.is_finite()) {
                return fail("loss_weights", "must be numbers");
            }
        }
        if self.method != PreferenceMethod::Dpo {
            if self.loss != [PreferenceLoss::Sigmoid] || self.loss_weights.is_some() {
                return fail("loss", "loss types apply to method = \"dpo\" only");
            }
            if self.ref_model.is_some() {
                return fail("ref_model", "SimPO and ORPO are reference-free");
            }
        }
        Ok(())
    }

    /// The DPO loss types with their weights.
    pub fn weighted_losses(&self) -> Vec<(PreferenceLoss, f64)> {
        let weights = self.loss_weights.clone().unwrap_or_else(|| vec![1.0; self.loss.len()]);
        self.loss.iter().copied().zip(weights).collect()
    }

    /// The folder whose model is the reference (`ref_model`, or the base).
    pub fn reference_dir(&self) -> &std::path::Path {
        self.ref_model.as_deref().unwrap_or(&self.train.model)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use precept_data::parse_settings;

    fn valid() -> DpoConfig {
        let train =
            TrainConfig { model: "m".into(), data: "p.jsonl".into(), out: "o".into(), ..DpoConfig::default().train };
        DpoConfig { train, ..DpoConfig::default() }
    }

    #[test]
    fn invalid_preference_settings_name_the_setting() {
        assert!(valid().validate().is_ok());
        let cases: Vec<(DpoConfig, &str)> = vec![
            (DpoConfig { beta: 0.0, ..valid() }, "setting `beta`"),
            (DpoConfig { label_smoothing: 0.5, ..valid() }, "setting `label_smoothing`"),
            (DpoConfig { loss: vec![], ..valid() }, "setting `loss`"),
            (DpoConfig { loss_weights: Some(vec![1.0, 0.2]), ..valid() }, "setting `loss_weights`"),
            (
                DpoConfig { method: PreferenceMethod::Simpo, loss: vec![PreferenceLoss::Ipo], ..valid() },
                "setting `loss`: loss types apply to method = \"dpo\" only",
            ),
            (
                DpoConfig { method: PreferenceMethod::Orpo, ref_model: Some("r".into()), ..valid() },
                "setting `ref_model`",
            ),
            (DpoConfig { train: TrainConfig { packing: true, ..valid().train }, ..valid() }, "setting `packing`"),
            (
                DpoConfig { train: TrainConfig { max_steps: Some(0), ..valid().train }, ..valid() },
                "setting `max_steps`",
            ),
        ];
        for (config, expected) in cases {
            let message = config.validate().unwrap_err().to_string();
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn the_shipped_settings_files_parse_and_validate() {
        let sft: TrainConfig =
            parse_settings(include_str!("../../../../configs/sft.toml"), Path::new("configs/sft.toml")).unwrap();
        sft.validate().unwrap();
        let dpo: DpoConfig =
            parse_settings(include_str!("../../../../configs/dpo.toml"), Path::new("configs/dpo.toml")).unwrap();
        dpo.validate().unwrap();
        assert_eq!((dpo.train.max_steps, dpo.beta, dpo.train.tuning), (Some(30), 0.1, crate::Tuning::Lora));
    }

    #[test]
    fn a_settings_file_mixes_training_and_preference_settings_over_dpo_defaults() {
        let text =
            "model = \"m\"\nbeta = 0.2\nloss = [\"sigmoid\", \"sft\"]\nloss_weights = [1.0, 0.2]\n\n[lora]\nr = 8\n";
        let config: DpoConfig = parse_settings(text, Path::new("dpo.toml")).unwrap();
        assert_eq!(config.beta, 0.2);
        assert_eq!(config.weighted_losses(), [(PreferenceLoss::Sigmoid, 1.0), (PreferenceLoss::Sft, 0.2)]);
        assert_eq!(config.train.lora.r, 8);
        assert_eq!(config.train.learning_rate, 1e-6, "DPO's default learning rate, not SFT's");
        let error = parse_settings::<DpoConfig>("model = \"m\"\nbetta = 0.2\n", Path::new("dpo.toml")).unwrap_err();
        assert!(error.to_string().contains("line 2: unknown setting `betta` (did you mean `beta`?)"), "{error}");
        let error = parse_settings::<DpoConfig>("loss = [\"sigmoidd\"]\n", Path::new("dpo.toml")).unwrap_err();
        assert!(error.to_string().contains("sigmoidd"), "{error}");
    }
}
