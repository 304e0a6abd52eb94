//! GRPO's clipped surrogate on per-token log-probabilities, with TRL's names, defaults and token
//! aggregation (TRL 1.16, `grpo_trainer.py` `_compute_loss`, token-level importance sampling),
//! so numbers carry over.
//!
//! Every loss reads a [`CompletionLogps`]: the per-token log-probabilities of sampled completions
//! under the policy being trained, the policy that sampled them and the reference, the loss mask,
//! and one advantage per completion ([`super::grpo_advantages`], [`super::rloo_advantages`]).

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use precept_model::{from_host, host_values};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// How the per-token losses become one number, TRL's `loss_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum GrpoLossType {
    /// `mean_rows(Σ_t m·ℓ / Σ_t m)`: each completion's mean, then the batch mean (length-biased).
    Grpo,
    /// `Σ m·ℓ / Σ m` over the micro-batch's tokens.
    Bnpo,
    /// `Σ m·ℓ / (rows · max_completion_length)`: a constant normaliser (Dr. GRPO).
    DrGrpo,
    /// `Σ m·ℓ / num_items_in_batch`, the active tokens of the whole accumulated batch (DAPO;
    /// TRL's default). On one micro-batch the same as `bnpo`.
    #[default]
    Dapo,
}

/// The settings of the GRPO loss, with TRL's `GRPOConfig` names and defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GrpoLossConfig {
    /// Token aggregation.
    pub loss_type: GrpoLossType,
    /// `ε`: the ratio is clipped below at `1 − ε`.
    pub epsilon: f64,
    /// The ratio is clipped above at `1 + epsilon_high`; `epsilon` when absent (DAPO uses 0.28).
    pub epsilon_high: Option<f64>,
    /// `β`: the weight of the `k3` KL estimate to the reference; 0 loads no reference.
    pub beta: f64,
    /// The completion length limit, `dr_grpo`'s normaliser per completion.
    pub max_completion_length: usize,
}

impl Default for GrpoLossConfig {
    fn default() -> Self {
        Self { loss_type: GrpoLossType::Dapo, epsilon: 0.2, epsilon_high: None, beta: 0.0, max_completion_length: 512 }
    }
}

/// Per-token log-probabilities of a batch of sampled completions, each `[rows, len]`.
#[derive(Debug, Clone)]
pub struct CompletionLogps<B: Backend> {
    /// `log π_θ(token)` under the policy being trained (carries the gradient).
    pub logps: Tensor<B, 2>,
    /// `log π_old(token)` under the policy that sampled the batch; `logps` detached when absent,
    /// as TRL does with one iteration per batch (`num_iterations = 1`).
    pub old_logps: Option<Tensor<B, 2>>,
    /// `log π_ref(token)`; needed when `beta ≠ 0`.
    pub ref_logps: Option<Tensor<B, 2>>,
    /// 1 on completion tokens that count, 0 on padding (and on masked completions).
    pub mask: Tensor<B, 2>,
    /// One advantage per completion, `[rows]`.
    pub advantages: Tensor<B, 1>,
    /// Active tokens of the whole accumulated batch, `dapo`'s normaliser (TRL's
    /// `num_items_in_batch`); this batch's own `Σ mask` when absent.
    pub num_items_in_batch: Option<f64>,
}

/// A loss and the metrics TRL logs beside it.
#[derive(Debug, Clone)]
pub struct GrpoLoss<B: Backend> {
    /// The loss to back-propagate, `[1]`.
    pub loss: Tensor<B, 1>,
    /// What TRL logs from the loss.
    pub metrics: GrpoMetrics,
}

/// TRL's loss metrics: means over the masked tokens for GRPO, over the completions for RLOO.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GrpoMetrics {
    /// `kl`: the mean `k3` to the reference; only when `beta ≠ 0`, as TRL logs it.
    pub kl: Option<f64>,
    /// `clip_ratio/low_mean`: tokens with `ratio < 1 − ε` and a negative advantage.
    pub clip_ratio_low_mean: f64,
    /// `clip_ratio/high_mean`: tokens with `ratio > 1 + ε_high` and a positive advantage.
    pub clip_ratio_high_mean: f64,
    /// `clip_ratio/region_mean`: tokens clipped either way.
    pub clip_ratio_region_mean: f64,
}

impl<B: Backend> CompletionLogps<B> {
    /// `[rows, len]`, once every tensor is checked against it.
    ///
    /// # Panics
    /// If the tensors' shapes disagree.
    pub(super) fn checked_dims(&self) -> [usize; 2] {
        let [rows, len] = self.logps.dims();
        let same = |t: &Option<Tensor<B, 2>>| t.as_ref().is_none_or(|t| t.dims() == [rows, len]);
        assert!(
            self.mask.dims() == [rows, len] && same(&self.old_logps) && same(&self.ref_logps),
            "log-probabilities and mask must all be [{rows}, {len}]"
        );
        assert_eq!(self.advantages.dims(), [rows], "one advantage per completion");
        [rows, len]
    }

    /// The sampling policy's log-probabilities: `old_logps`, or `logps` detached.
    pub(super) fn old(&self) -> Tensor<B, 2> {
        self.old_logps.clone().unwrap_or_else(|| self.logps.clone().detach())
    }

    /// The reference's log-probabilities.
    ///
    /// # Panics
    /// If they are absent.
    pub(super) fn reference(&self) -> Tensor<B, 2> {
        let Some(reference) = &self.ref_logps else { panic!("a KL term needs the reference log-probabilities") };
        reference.clone()
    }
}

impl GrpoMetrics {
    /// The metrics from the means `[low, high, region, kl]` (`kl` kept only with a KL term).
    pub(super) fn from_means(means: &[f32], with_kl: bool) -> Self {
        Self {
            kl: with_kl.then(|| f64::from(means[3])),
            clip_ratio_low_mean: f64::from(means[0]),
            clip_ratio_high_mean: f64::from(means[1]),
            clip_ratio_region_mean: f64::from(means[2]),
        }
    }

    /// The metrics under TRL's names.
    pub fn named(&self) -> Vec<(&'static str, f64)> {
        let clip = [
            ("clip_ratio/low_mean", self.clip_ratio_low_mean),
            ("clip_ratio/high_mean", self.clip_ratio_high_mean),
            ("clip_ratio/region_mean", self.clip_ratio_region_mean),
        ];
        self.kl.map(|kl| ("kl", kl)).into_iter().chain(clip).collect()
    }
}

impl GrpoLossConfig {
    /// The upper clipping margin: `epsilon_high`, or `epsilon` when absent.
    pub fn epsilon_high(&self) -> f64 {
        self.epsilon_high.unwrap_or(self.epsilon)
    }

    /// Checks the settings before any work starts.
    ///
    /// # Errors
    /// [`TrainError::Setting`] naming the first invalid field.
    pub fn validate(&self) -> Result<()> {
        let fail = |field: &str, message: &str| Err(TrainError::setting(field, message));
        if !(0.0..1.0).contains(&self.epsilon) {
            return fail("epsilon", "must be in [0, 1)");
        }
        if !(self.epsilon_high().is_finite() && self.epsilon_high() >= 0.0) {
            return fail("epsilon_high", "must be finite and non-negative");
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return fail("beta", "must be finite and non-negative");
        }
        if self.max_completion_length == 0 {
            return fail("max_completion_length", "must be positive");
        }
        Ok(())
    }

    /// The clipped surrogate: with `ρ = exp(logp − old_logp)`,
    /// `ℓ = −min(ρ·A, clamp(ρ, 1 − ε, 1 + ε_high)·A) + β·k3`,
    /// `k3 = exp(ref − logp) − (ref − logp) − 1`, aggregated as `loss_type` says.
    ///
    /// The loss is TRL's before its division by the gradient-accumulation steps: a trainer that
    /// accumulates divides the `grpo`, `bnpo` and `dr_grpo` losses of its micro-batches by their
    /// number, and sums the `dapo` ones (already divided by the window's tokens).
    ///
    /// # Panics
    /// If the tensors' shapes disagree, or `beta ≠ 0` without `ref_logps`.
    pub fn loss<B: Backend>(&self, batch: &CompletionLogps<B>) -> GrpoLoss<B> {
        let [rows, _] = batch.checked_dims();
        let advantages = batch.advantages.clone().reshape([rows, 1]);
        let coef_1 = (batch.logps.clone() - batch.old()).exp();
        let coef_2 = coef_1.clone().clamp(1.0 - self.epsilon, 1.0 + self.epsilon_high());
        let mut per_token = (coef_1.clone() * advantages.clone()).min_pair(coef_2 * advantages.clone()).neg();
        let kl = (self.beta != 0.0).then(|| {
            let delta = batch.reference() - batch.logps.clone();
            delta.clone().exp() - delta - 1.0
        });
        if let Some(kl) = &kl {
            per_token = per_token + kl.clone().mul_scalar(self.beta);
        }
        let loss = self.aggregate(per_token, batch);
        let metrics = self.metrics(coef_1.detach(), advantages.detach(), kl.map(Tensor::detach), &batch.mask);
        GrpoLoss { loss, metrics }
    }

    /// `Σ m·ℓ` over the normaliser of `loss_type`, `[1]`.
    fn aggregate<B: Backend>(&self, per_token: Tensor<B, 2>, batch: &CompletionLogps<B>) -> Tensor<B, 1> {
        let [rows, _] = per_token.dims();
        let mask = batch.mask.clone();
        let masked = per_token * mask.clone();
        let bnpo = |masked: Tensor<B, 2>| masked.sum() / mask.clone().sum().clamp_min(1.0);
        match self.loss_type {
            GrpoLossType::Grpo => (masked.sum_dim(1) / mask.clone().sum_dim(1).clamp_min(1.0)).mean(),
            GrpoLossType::Bnpo => bnpo(masked),
            GrpoLossType::DrGrpo => masked.sum().div_scalar((rows * self.max_completion_length) as f64),
            GrpoLossType::Dapo => match batch.num_items_in_batch {
                Some(tokens) => masked.sum().div_scalar(tokens.max(1.0)),
                None => bnpo(masked),
            },
        }
    }

    /// TRL's `global_masked_mean` of `k3` and of the clipping indicators, read in one transfer.
    fn metrics<B: Backend>(
        &self,
        coef_1: Tensor<B, 2>,
        advantages: Tensor<B, 2>,
        kl: Option<Tensor<B, 2>>,
        mask: &Tensor<B, 2>,
    ) -> GrpoMetrics {
        let shape = coef_1.dims();
        let [low, high, region] = clipped(coef_1, advantages.expand(shape), self.epsilon, self.epsilon_high());
        let kl = kl.unwrap_or_else(|| Tensor::zeros(shape, &mask.device()));
        let mask = mask.clone().detach();
        let sums = [low, high, region, kl].map(|x| (x * mask.clone()).sum());
        let values = host_values(Tensor::cat(sums.to_vec(), 0) / mask.sum().clamp_min(1.0));
        GrpoMetrics::from_means(&values, self.beta != 0.0)
    }
}

/// TRL's clipping indicators `[low, high, region]`, 1 where `ρ < 1 − ε` with `A < 0`, where
/// `ρ > 1 + ε_high` with `A > 0`, and where either holds.
pub(super) fn clipped<B: Backend, const D: usize>(
    coef_1: Tensor<B, D>,
    advantages: Tensor<B, D>,
    epsilon: f64,
    epsilon_high: f64,
) -> [Tensor<B, D>; 3] {
    let low = coef_1.clone().lower_elem(1.0 - epsilon).bool_and(advantages.clone().lower_elem(0.0)).float();
    let high = coef_1.greater_elem(1.0 + epsilon_high).bool_and(advantages.greater_elem(0.0)).float();
    // A negative and a positive advantage exclude each other: the union is the sum.
    [low.clone(), high.clone(), low + high]
}

/// TRL's `mask_truncated_completions`: zeroes the loss mask of every completion that `truncated`
/// marks as stopped by the length limit rather than by an end-of-sequence token, so a cut answer
/// is neither rewarded nor penalised.
///
/// # Panics
/// If `truncated` does not hold one flag per row of `mask`.
pub fn mask_truncated_completions<B: Backend>(mask: Tensor<B, 2>, truncated: &[bool]) -> Tensor<B, 2> {
    let [rows, _] = mask.dims();
    assert_eq!(truncated.len(), rows, "one truncation flag per completion");
    let keep = truncated.iter().map(|&cut| if cut { 0.0 } else { 1.0 }).collect();
    let keep = from_host::<B, 2>(keep, [rows, 1], &mask.device());
    mask * keep
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::*;
    use crate::loss::completions::{batch, close, matrix, A, ADVANTAGES, LOGPS, MASK};

    type B = Flex;
    const LOSS_TYPES: [GrpoLossType; 4] =
        [GrpoLossType::Grpo, GrpoLossType::Bnpo, GrpoLossType::DrGrpo, GrpoLossType::Dapo];

    fn config(loss_type: GrpoLossType, beta: f64) -> GrpoLossConfig {
        GrpoLossConfig { loss_type, beta, epsilon_high: Some(0.28), max_completion_length: 8, ..Default::default() }
    }

    // TRL 1.16's own loss in float64 on `loss::completions` (scripts/peers/grpo_golden.py):
    //   loss = GRPOTrainer._compute_loss(stand_in, None, inputs); loss.backward()
    // where `stand_in` hands it LOGPS; epsilon = 0.2, epsilon_high = 0.28, max_completion_length = 8.
    const GOLDEN: [(GrpoLossType, f64, bool, f64); 12] = [
        (GrpoLossType::Grpo, 0.0, false, -0.07499999999999996),
        (GrpoLossType::Bnpo, 0.0, false, -0.3142857142857142),
        (GrpoLossType::DrGrpo, 0.0, false, -0.13749999999999998),
        (GrpoLossType::Dapo, 0.0, false, -0.3142857142857142),
        (GrpoLossType::Grpo, 0.0, true, -0.09956682675790995),
        (GrpoLossType::Bnpo, 0.0, true, -0.3572216787091165),
        (GrpoLossType::DrGrpo, 0.0, true, -0.15628448443523846),
        (GrpoLossType::Dapo, 0.0, true, -0.3572216787091165),
        (GrpoLossType::Grpo, 0.04, true, -0.0984549623367647),
        (GrpoLossType::Bnpo, 0.04, true, -0.3562510030090232),
        (GrpoLossType::DrGrpo, 0.04, true, -0.15585981381644765),
        (GrpoLossType::Dapo, 0.04, true, -0.3562510030090232),
    ];

    #[test]
    fn every_loss_type_matches_trl_with_and_without_clipping_and_kl() {
        for (loss_type, beta, off_policy, expected) in GOLDEN {
            let GrpoLoss { loss, metrics } = config(loss_type, beta).loss(&batch::<B>(matrix(LOGPS), off_policy));
            let found = f64::from(loss.into_scalar());
            assert!(close(found, expected), "{loss_type:?} β={beta} off-policy {off_policy}: {found} vs {expected}");
            // TRL: 2 of the 14 masked tokens clipped low, 3 high; `kl` only when β ≠ 0.
            let clipped = if off_policy { [2.0 / 14.0, 3.0 / 14.0, 5.0 / 14.0] } else { [0.0; 3] };
            let found = [metrics.clip_ratio_low_mean, metrics.clip_ratio_high_mean, metrics.clip_ratio_region_mean];
            assert!(found.iter().zip(clipped).all(|(f, e)| close(*f, e)), "{loss_type:?}: {metrics:?}");
            assert_eq!(metrics.kl.is_some(), beta != 0.0);
            assert!(metrics.kl.is_none_or(|kl| close(kl, 0.02426689250233205)), "{metrics:?}");
        }
    }

    #[test]
    fn gradients_match_trl_per_completion_and_over_an_accumulation_window() {
        let grpo = [
            [-0.00021034183615129508, -0.05392770658831353, -0.060699717615152006, 0.0, -0.06288594061863335],
            [-0.00017090365458674725, 0.07978743488520708, 0.07454200046943744, 0.0, 0.0],
            [-0.038591667771918296, -0.023413496691492803, -0.0007100635417193533, -0.031128073561251784, 0.0],
            [-0.0011070137908008497, 0.09777846580298703, 0.0, 0.0, 0.0],
        ];
        let dapo = [
            [-0.00014022789076752998, -0.03595180439220902, -0.04046647841010134, 0.0, -0.041923960412422245],
            [-6.836146183469881e-05, 0.03191497395408284, 0.029816800187774977, 0.0, 0.0],
            [-0.020582222811689754, -0.012487198235462828, -0.0003787005555836551, -0.01660163923266762, 0.0],
            [-0.0002952036775468931, 0.02607425754746321, 0.0, 0.0, 0.0],
        ];
        // `dapo` with 30 active tokens in the whole window (TRL's `num_items_in_batch`).
        for (loss_type, window, expected) in [(GrpoLossType::Grpo, None, grpo), (GrpoLossType::Dapo, Some(30.0), dapo)]
        {
            let logps = matrix::<A>(LOGPS).require_grad();
            let inputs = CompletionLogps { num_items_in_batch: window, ..batch(logps.clone(), true) };
            let GrpoLoss { loss, .. } = config(loss_type, 0.04).loss(&inputs);
            if window.is_some() {
                assert!(close(f64::from(loss.clone().into_scalar()), -0.16625046807087748));
            }
            let grad = host_values(logps.grad(&loss.backward()).unwrap());
            for (found, expected) in grad.iter().zip(expected.concat()) {
                assert!((f64::from(*found) - expected).abs() < 1e-6, "{loss_type:?}: {grad:?}");
            }
        }
    }

    #[test]
    fn on_policy_the_loss_is_the_negated_token_weighted_advantage_and_padding_gets_no_gradient() {
        let lengths = MASK.map(|row| row.iter().sum::<f32>());
        let tokens: f32 = lengths.iter().sum();
        for loss_type in LOSS_TYPES {
            let logps = matrix::<A>(LOGPS).require_grad();
            let GrpoLoss { loss, .. } = config(loss_type, 0.0).loss(&batch(logps.clone(), false));
            let found_loss = loss.clone().into_scalar();
            let grad = host_values(logps.grad(&loss.backward()).unwrap());
            let mut expected_loss = 0.0;
            for (i, row) in grad.chunks(5).enumerate() {
                let normaliser = match loss_type {
                    GrpoLossType::Grpo => 4.0 * lengths[i],
                    GrpoLossType::Bnpo | GrpoLossType::Dapo => tokens,
                    GrpoLossType::DrGrpo => 4.0 * 8.0,
                };
                for (found, mask) in row.iter().zip(MASK[i]) {
                    let expected = -ADVANTAGES[i] * mask / normaliser;
                    assert!((found - expected).abs() < 1e-6, "{loss_type:?} row {i}: {row:?}");
                    expected_loss += expected;
                }
            }
            // With a ratio of 1 the loss is linear in it: the sum of its gradient.
            assert!((found_loss - expected_loss).abs() < 1e-6, "{loss_type:?}: {found_loss} vs {expected_loss}");
        }
    }

    #[test]
    fn epsilon_high_defaults_to_epsilon() {
        let config = GrpoLossConfig { epsilon_high: None, ..config(GrpoLossType::Bnpo, 0.0) };
        let GrpoLoss { loss, metrics } = config.loss(&batch::<B>(matrix(LOGPS), true));
        // TRL with epsilon_high = epsilon = 0.2: one more token (ratio e^0.22) is clipped high.
        assert!(close(f64::from(loss.into_scalar()), -0.33900465261671003));
        assert!(close(metrics.clip_ratio_high_mean, 4.0 / 14.0) && close(metrics.clip_ratio_region_mean, 6.0 / 14.0));
    }

    #[test]
    fn the_kl_term_vanishes_when_the_policy_is_the_reference() {
        let same = CompletionLogps { ref_logps: Some(matrix(LOGPS)), ..batch::<B>(matrix(LOGPS), true) };
        let with_kl = config(GrpoLossType::Dapo, 0.04).loss(&same);
        let without = config(GrpoLossType::Dapo, 0.0).loss(&same);
        assert_eq!(with_kl.metrics.kl, Some(0.0));
        assert_eq!(with_kl.loss.into_scalar(), without.loss.into_scalar());
    }

    #[test]
    fn truncated_completions_drop_out_of_the_loss_and_its_token_count() {
        let mask = host_values(mask_truncated_completions(matrix::<B>(MASK), &[false, true, false, true]));
        assert_eq!(mask, [[1.0; 5], [0.0; 5], MASK[2], [0.0; 5]].concat());
    }

    #[test]
    fn the_defaults_are_trls_and_bad_settings_are_named() {
        let defaults = GrpoLossConfig::default();
        assert_eq!((defaults.loss_type, defaults.epsilon_high(), defaults.beta), (GrpoLossType::Dapo, 0.2, 0.0));
        assert_eq!(GrpoLossType::default(), GrpoLossType::Dapo);
        assert!(defaults.validate().is_ok());
        let bad = GrpoLossConfig { epsilon: 1.5, ..defaults };
        assert!(matches!(bad.validate(), Err(TrainError::Setting { field, .. }) if field == "epsilon"));
        let metrics =
            GrpoMetrics { kl: None, clip_ratio_low_mean: 0.1, clip_ratio_high_mean: 0.2, clip_ratio_region_mean: 0.3 };
        assert_eq!(metrics.named()[2], ("clip_ratio/region_mean", 0.3));
    }
}
