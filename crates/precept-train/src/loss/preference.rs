//! Preference losses on sequence log-probabilities, with TRL's names, formulas and `β`
//! semantics (`trl/trainer/dpo_trainer.py`, version 1.16), so numbers carry over.
//!
//! Every loss reads a [`PairLogps`]: the summed completion log-probabilities of the chosen and
//! rejected answers under the policy and the reference, and the completion lengths.

use burn::tensor::activation::{log_sigmoid, relu, sigmoid};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// A DPO-family loss, named as TRL's `loss_type` (`bco_pair` in settings files, `bco-pair` on the
/// command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum PreferenceLoss {
    /// DPO: `−log σ(β·Δ)`, `Δ = (c − c_ref) − (r − r_ref)`.
    Sigmoid,
    /// RSO: `max(0, 1 − β·Δ)`.
    Hinge,
    /// IPO: `(Δ̄ − 1/(2β))²` on per-token (length-normalised) log-ratios.
    Ipo,
    /// Robust DPO with label smoothing `ε`: `(−(1−ε)·log σ(βΔ) + ε·log σ(−βΔ)) / (1 − 2ε)`.
    Robust,
    /// BCO on pairs: `−log σ(β(c − c_ref)) − log σ(−β(r − r_ref))`.
    BcoPair,
    /// SPPO with hard labels: `(c − c_ref − 1/(2β))² + (r − r_ref + 1/(2β))²`.
    SppoHard,
    /// NCA on pairs: `−log σ(β·δc) − ½·log σ(−β·δc) − ½·log σ(−β·δr)`.
    NcaPair,
    /// APO-zero: `1 − σ(β·δc) + σ(β·δr)`.
    ApoZero,
    /// APO-down: `σ(β·δc) + 1 − σ(β(δc − δr))`.
    ApoDown,
    /// DPO on per-token log-ratios: `−log σ(β·Δ̄)`.
    SigmoidNorm,
    /// Negative log-likelihood of the chosen completions, per token.
    Sft,
}

/// Log-probabilities of a batch of preference pairs, each `[pairs]`.
#[derive(Debug, Clone)]
pub struct PairLogps<B: Backend> {
    /// `Σ log π(chosen token)` over each chosen completion.
    pub chosen: Tensor<B, 1>,
    /// `Σ log π(rejected token)` over each rejected completion.
    pub rejected: Tensor<B, 1>,
    /// The same sums under the reference model (zeros for reference-free methods).
    pub ref_chosen: Tensor<B, 1>,
    /// The same sums under the reference model (zeros for reference-free methods).
    pub ref_rejected: Tensor<B, 1>,
    /// Completion tokens of each chosen answer.
    pub chosen_tokens: Tensor<B, 1>,
    /// Completion tokens of each rejected answer.
    pub rejected_tokens: Tensor<B, 1>,
}

impl PreferenceLoss {
    /// The loss of every pair, `[pairs]`.
    pub fn per_pair<B: Backend>(self, logps: &PairLogps<B>, beta: f64, label_smoothing: f64) -> Tensor<B, 1> {
        let chosen_ratio = logps.chosen.clone() - logps.ref_chosen.clone();
        let rejected_ratio = logps.rejected.clone() - logps.ref_rejected.clone();
        let delta = chosen_ratio.clone() - rejected_ratio.clone();
        let normalised_delta = || {
            chosen_ratio.clone() / logps.chosen_tokens.clone().clamp_min(1.0)
                - rejected_ratio.clone() / logps.rejected_tokens.clone().clamp_min(1.0)
        };
        let scaled = |x: Tensor<B, 1>| x.mul_scalar(beta);
        match self {
            Self::Sigmoid => log_sigmoid(scaled(delta)).neg(),
            Self::Hinge => relu(scaled(delta).neg().add_scalar(1.0)),
            Self::Ipo => normalised_delta().sub_scalar(1.0 / (2.0 * beta)).powi_scalar(2),
            Self::Robust => {
                let clean = log_sigmoid(scaled(delta.clone())).mul_scalar(-(1.0 - label_smoothing));
                let flipped = log_sigmoid(scaled(delta).neg()).mul_scalar(-label_smoothing);
                (clean - flipped).div_scalar(1.0 - 2.0 * label_smoothing)
            }
            Self::BcoPair => log_sigmoid(scaled(chosen_ratio)).neg() - log_sigmoid(scaled(rejected_ratio).neg()),
            Self::SppoHard => {
                chosen_ratio.sub_scalar(0.5 / beta).powi_scalar(2)
                    + rejected_ratio.add_scalar(0.5 / beta).powi_scalar(2)
            }
            Self::NcaPair => {
                let (c, r) = (scaled(chosen_ratio), scaled(rejected_ratio));
                log_sigmoid(c.clone()).neg()
                    - log_sigmoid(c.neg()).mul_scalar(0.5)
                    - log_sigmoid(r.neg()).mul_scalar(0.5)
            }
            Self::ApoZero => sigmoid(scaled(chosen_ratio)).neg().add_scalar(1.0) + sigmoid(scaled(rejected_ratio)),
            Self::ApoDown => sigmoid(scaled(chosen_ratio)) + sigmoid(scaled(delta)).neg().add_scalar(1.0),
            Self::SigmoidNorm => log_sigmoid(scaled(normalised_delta())).neg(),
            Self::Sft => {
                let [pairs] = logps.chosen.dims();
                let per_token = logps.chosen.clone().sum().neg() / logps.chosen_tokens.clone().sum().clamp_min(1.0);
                per_token.expand([pairs])
            }
        }
    }
}

/// `Σₖ wₖ · mean(lossₖ)`, TRL's combination of several `loss_type`s with `loss_weights`.
pub fn combined_loss<B: Backend>(
    losses: &[(PreferenceLoss, f64)],
    logps: &PairLogps<B>,
    beta: f64,
    label_smoothing: f64,
) -> Tensor<B, 1> {
    let device = logps.chosen.device();
    losses.iter().fold(Tensor::zeros([1], &device), |total, &(loss, weight)| {
        total + loss.per_pair(logps, beta, label_smoothing).mean().mul_scalar(weight)
    })
}

/// TRL's implicit rewards: `β·(c − c_ref)` and `β·(r − r_ref)`, detached.
pub fn rewards<B: Backend>(logps: &PairLogps<B>, beta: f64) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let chosen = (logps.chosen.clone() - logps.ref_chosen.clone()).mul_scalar(beta).detach();
    let rejected = (logps.rejected.clone() - logps.ref_rejected.clone()).mul_scalar(beta).detach();
    (chosen, rejected)
}

/// SimPO (reference-free): `−(1−ε)·log σ(β·m) − ε·log σ(−β·m)` with
/// `m = c/|c| − r/|r| − γ/β` on per-token log-probabilities (TRL's CPO trainer, `loss_type="simpo"`).
pub fn simpo_loss<B: Backend>(logps: &PairLogps<B>, beta: f64, gamma: f64, label_smoothing: f64) -> Tensor<B, 1> {
    let margin = logps.chosen.clone() / logps.chosen_tokens.clone().clamp_min(1.0)
        - logps.rejected.clone() / logps.rejected_tokens.clone().clamp_min(1.0);
    let logits = margin.sub_scalar(gamma / beta).mul_scalar(beta);
    log_sigmoid(logits.clone()).mul_scalar(-(1.0 - label_smoothing))
        - log_sigmoid(logits.neg()).mul_scalar(label_smoothing)
}

/// ORPO (reference-free): `NLL(chosen) − λ·log σ(log odds)`, where the log odds ratio of the
/// per-token log-probabilities `c̄`, `r̄` is `(c̄ − r̄) − (log(1 − e^c̄) − log(1 − e^r̄))`
/// (TRL's ORPO trainer; `λ` is its `beta`). Returns the per-pair odds-ratio term `−λ·log σ(·)`;
/// add the chosen NLL ([`PreferenceLoss::Sft`]) for the whole loss.
pub fn orpo_odds_ratio_loss<B: Backend>(logps: &PairLogps<B>, lambda: f64) -> Tensor<B, 1> {
    let chosen = logps.chosen.clone() / logps.chosen_tokens.clone().clamp_min(1.0);
    let rejected = logps.rejected.clone() / logps.rejected_tokens.clone().clamp_min(1.0);
    let log_odds = (chosen.clone() - rejected.clone()) - (chosen.exp().neg().log1p() - rejected.exp().neg().log1p());
    log_sigmoid(log_odds).mul_scalar(-lambda)
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    use super::*;

    type B = Flex;

    fn tensor(values: &[f32]) -> Tensor<B, 1> {
        Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), &Default::default())
    }

    fn logps() -> PairLogps<B> {
        PairLogps {
            chosen: tensor(&[-12.5, -30.0, -8.25]),
            rejected: tensor(&[-15.0, -28.5, -20.0]),
            ref_chosen: tensor(&[-13.0, -29.0, -9.0]),
            ref_rejected: tensor(&[-14.0, -29.5, -18.5]),
            chosen_tokens: tensor(&[10.0, 24.0, 6.0]),
            rejected_tokens: tensor(&[12.0, 20.0, 15.0]),
        }
    }

    fn values(t: Tensor<B, 1>) -> Vec<f32> {
        t.into_data().convert::<f32>().into_vec().unwrap()
    }

    // TRL 1.16's formulas (dpo_trainer.py `_compute_loss`, cpo_trainer.py simpo, orpo_trainer.py)
    // evaluated in PyTorch float64 on the log-probabilities of `logps()`, beta = 0.1,
    // label_smoothing = 0.1, simpo gamma = 0.5; the script is in scripts/peers/preference_golden.py.
    const GOLDEN: [(PreferenceLoss, [f64; 3]); 11] = [
        (PreferenceLoss::Sigmoid, [0.6209570477895321, 0.7981388693815918, 0.5869620020497037]),
        (PreferenceLoss::Hinge, [0.85, 1.2, 0.775]),
        (PreferenceLoss::Ipo, [23.68444444444444, 25.925069444444446, 22.800625000000004]),
        (PreferenceLoss::Robust, [0.602207047789532, 0.8231388693815919, 0.5588370020497038]),
        (PreferenceLoss::BcoPair, [1.3128563080868572, 1.4887933201471417, 1.2773071886163272]),
        (PreferenceLoss::SppoHard, [36.25, 72.0, 30.3125]),
        (PreferenceLoss::NcaPair, [1.3498878020567149, 1.4387933201471417, 1.3325037351349587]),
        (PreferenceLoss::ApoZero, [0.9625234160368497, 1.04995837495788, 0.9438289387777152]),
        (PreferenceLoss::ApoDown, [0.9750675511404607, 1.024854809833538, 0.9627273253339153]),
        (PreferenceLoss::SigmoidNorm, [0.6865027359508937, 0.6977410173287267, 0.6819604604751515]),
        (PreferenceLoss::Sft, [1.26875, 1.26875, 1.26875]),
    ];

    #[test]
    fn every_loss_matches_trl_on_fixed_log_probabilities() {
        for (loss, expected) in GOLDEN {
            let found = values(loss.per_pair(&logps(), 0.1, 0.1));
            for (f, e) in found.iter().zip(expected) {
                assert!((*f as f64 - e).abs() < 1e-5 * e.abs().max(1.0), "{loss:?}: {found:?} vs {expected:?}");
            }
        }
    }

    #[test]
    fn simpo_and_orpo_match_trl_on_fixed_log_probabilities() {
        let simpo = values(simpo_loss(&logps(), 0.1, 0.5, 0.1));
        let orpo = values(orpo_odds_ratio_loss(&logps(), 0.1));
        let expected_simpo = [0.9240769841801066, 0.9149699818609353, 0.9262559373277615];
        let expected_orpo = [0.06931471805599453, 0.05814431521453231, 0.07216261135789513];
        for (f, e) in simpo.iter().zip(expected_simpo).chain(orpo.iter().zip(expected_orpo)) {
            assert!((*f as f64 - e).abs() < 1e-5, "simpo {simpo:?}, orpo {orpo:?}");
        }
    }

    #[test]
    fn dpo_loss_is_ln_2_when_the_policy_is_the_reference() {
        let mut same = logps();
        same.ref_chosen = same.chosen.clone();
        same.ref_rejected = same.rejected.clone();
        for loss in values(PreferenceLoss::Sigmoid.per_pair(&same, 0.1, 0.0)) {
            assert!((loss as f64 - std::f64::consts::LN_2).abs() < 1e-6, "{loss}");
        }
    }

    #[test]
    fn swapping_chosen_and_rejected_flips_the_sign_of_the_margins() {
        let pairs = logps();
        let swapped = PairLogps {
            chosen: pairs.rejected.clone(),
            rejected: pairs.chosen.clone(),
            ref_chosen: pairs.ref_rejected.clone(),
            ref_rejected: pairs.ref_chosen.clone(),
            chosen_tokens: pairs.rejected_tokens.clone(),
            rejected_tokens: pairs.chosen_tokens.clone(),
        };
        let margin = |p: &PairLogps<B>| {
            let (chosen, rejected) = rewards(p, 0.1);
            values(chosen - rejected)
        };
        for (a, b) in margin(&pairs).iter().zip(margin(&swapped)) {
            assert!((a + b).abs() < 1e-6 && a.abs() > 1e-3, "{a} vs {b}");
        }
    }

    #[test]
    fn weighted_losses_combine_as_trl_does() {
        let combined = combined_loss(&[(PreferenceLoss::Sigmoid, 1.0), (PreferenceLoss::Sft, 0.2)], &logps(), 0.1, 0.0);
        let sigmoid: f64 = GOLDEN[0].1.iter().sum::<f64>() / 3.0;
        let expected = sigmoid + 0.2 * GOLDEN[10].1[0];
        assert!((combined.into_scalar() as f64 - expected).abs() < 1e-5);
    }
}
