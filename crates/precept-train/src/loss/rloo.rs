//! RLOO's objective with TRL's formulas (TRL 1.16, `rloo_trainer.py`): the clipped surrogate on
//! whole-completion probability ratios, and the KL to the reference as a penalty on the rewards
//! rather than a term of the loss. The advantages are [`super::rloo_advantages`] of the penalised
//! rewards.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use precept_model::host_values;

use super::grpo::{clipped, CompletionLogps, GrpoLoss, GrpoMetrics};

/// Rewards less RLOO's KL penalty, and the KL TRL logs.
#[derive(Debug, Clone)]
pub struct KlPenalty<B: Backend> {
    /// `r − β·Σ_t m·(old_logp − ref_logp)`, `[rows]`.
    pub rewards: Tensor<B, 1>,
    /// `kl`: the mean of `old_logp − ref_logp` over the masked tokens.
    pub kl: f64,
}

/// RLOO's KL penalty: each completion's first-order estimate `k1 = Σ_t m·(old_logp − ref_logp)`
/// under the sampling policy, weighted by `β` (TRL's RLOO default 0.05) and taken from its reward.
/// Unlike GRPO's `k3` it can be negative per token.
///
/// # Panics
/// If the shapes disagree, or `batch` has no reference log-probabilities.
pub fn rloo_kl_penalty<B: Backend>(rewards: Tensor<B, 1>, batch: &CompletionLogps<B>, beta: f64) -> KlPenalty<B> {
    let [rows, _] = batch.checked_dims();
    assert_eq!(rewards.dims(), [rows], "one reward per completion");
    let masked = (batch.old() - batch.reference()).detach() * batch.mask.clone();
    let kl = host_values(masked.clone().sum() / batch.mask.clone().sum().clamp_min(1.0))[0];
    let rewards = rewards - masked.sum_dim(1).reshape([rows]).mul_scalar(beta);
    KlPenalty { rewards, kl: f64::from(kl) }
}

/// RLOO's loss: with the whole-completion ratio `ρ = exp(Σ_t m·logp − Σ_t m·old_logp)`,
/// `ℓ = −min(ρ·A, clamp(ρ, 1 − ε, 1 + ε_high)·A)`, the mean over completions (`[1]`). Its clip
/// ratios are fractions of completions, not of tokens; its `kl` comes from [`rloo_kl_penalty`].
///
/// # Panics
/// If the shapes disagree.
pub fn rloo_loss<B: Backend>(batch: &CompletionLogps<B>, epsilon: f64, epsilon_high: f64) -> GrpoLoss<B> {
    let [rows, _] = batch.checked_dims();
    let sum = |logps: Tensor<B, 2>| (logps * batch.mask.clone()).sum_dim(1).reshape([rows]);
    let coef_1 = (sum(batch.logps.clone()) - sum(batch.old())).exp();
    let coef_2 = coef_1.clone().clamp(1.0 - epsilon, 1.0 + epsilon_high);
    let advantages = batch.advantages.clone();
    let loss = (coef_1.clone() * advantages.clone()).min_pair(coef_2 * advantages.clone()).neg().mean();
    let means = clipped(coef_1.detach(), advantages.detach(), epsilon, epsilon_high).map(Tensor::mean);
    let metrics = GrpoMetrics::from_means(&host_values(Tensor::cat(means.to_vec(), 0)), false);
    GrpoLoss { loss, metrics }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use precept_model::from_host;

    use super::*;
    use crate::loss::completions::{batch, close, matrix, A, ADVANTAGES, LOGPS, MASK};

    // TRL 1.16's own `RLOOTrainer._compute_loss` (float64) on the completions of the GRPO tests,
    // epsilon = 0.2, epsilon_high = 0.28: scripts/peers/grpo_golden.py. Completions 0 and 2 are
    // clipped high, 3 low: only completion 1 carries a gradient.
    #[test]
    fn rloo_loss_matches_trl_on_whole_completion_ratios() {
        let logps = matrix::<A>(LOGPS).require_grad();
        let GrpoLoss { loss, metrics } = rloo_loss(&batch(logps.clone(), true), 0.2, 0.28);
        assert!(close(f64::from(loss.clone().into_scalar()), -0.24303251639280804));
        let clipped = [metrics.clip_ratio_low_mean, metrics.clip_ratio_high_mean, metrics.clip_ratio_region_mean];
        assert_eq!((clipped, metrics.kl), ([0.25, 0.5, 0.75], None));
        let grad = host_values(logps.grad(&loss.backward()).unwrap());
        let row = 0.18096748360719198;
        let expected = [[0.0; 5], [row, row, row, 0.0, 0.0], [0.0; 5], [0.0; 5]].concat();
        assert!(grad.iter().zip(expected).all(|(f, e)| (f64::from(*f) - e).abs() < 1e-6), "{grad:?}");
    }

    #[test]
    fn on_policy_the_rloo_loss_is_the_negated_mean_advantage() {
        let logps = matrix::<A>(LOGPS).require_grad();
        let GrpoLoss { loss, .. } = rloo_loss(&batch(logps.clone(), false), 0.2, 0.2);
        let mean = ADVANTAGES.iter().sum::<f32>() / 4.0;
        assert!((loss.clone().into_scalar() + mean).abs() < 1e-6);
        let grad = host_values(logps.grad(&loss.backward()).unwrap());
        for (i, row) in grad.chunks(5).enumerate() {
            let expected = MASK[i].map(|m| -ADVANTAGES[i] * m / 4.0);
            assert!(row.iter().zip(expected).all(|(f, e)| (f - e).abs() < 1e-6), "row {i}: {row:?}");
        }
    }

    // rloo_trainer.py's `rewards - beta * (per_token_kl * completion_mask).sum(-1)`, beta = 0.05:
    // scripts/peers/grpo_golden.py.
    #[test]
    fn the_kl_penalty_matches_trl() {
        let rewards = from_host::<Flex, 1>(vec![1.0, 0.0, 0.5, 0.25], [4], &Default::default());
        let penalty = rloo_kl_penalty(rewards, &batch(matrix(LOGPS), true), 0.05);
        let expected = [1.0425, 0.002500000000000008, 0.521, 0.23];
        let found = host_values(penalty.rewards);
        assert!(found.iter().zip(expected).all(|(f, e)| close(f64::from(*f), e)), "{found:?}");
        assert!(close(penalty.kl, -0.06571428571428573), "{}", penalty.kl);
    }
}
