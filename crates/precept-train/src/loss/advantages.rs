//! Advantages of sampled completions from their rewards, with TRL's names and formulas (TRL
//! 1.16): GRPO's group-relative ones (`grpo_trainer.py`, `_generate_and_score_completions`) and
//! RLOO's leave-one-out ones (`rloo_trainer.py`, the same method).
//!
//! Rewards come `[prompts * num_generations]`, the completions of one prompt side by side. Every
//! standard deviation is Bessel-corrected (`n − 1`), as TRL's `nanstd` is.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use precept_model::host_values;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// TRL's `1e-4` beside every standard deviation it divides by.
const STD_EPSILON: f64 = 1e-4;
/// `torch.isclose(std, 0)`: `|std| ≤ atol` with its default `atol`.
const ZERO_STD: f64 = 1e-8;

/// How GRPO scales the group-centred rewards, TRL's `scale_rewards`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum ScaleRewards {
    /// Divide by the standard deviation of the prompt's group (`True` in TRL).
    #[default]
    Group,
    /// Divide by the standard deviation of the whole batch (PPO Lite).
    Batch,
    /// Leave the centred rewards unscaled (Dr. GRPO; `False` in TRL).
    None,
}

/// Advantages of a batch of completions and the share of groups that carry no signal.
#[derive(Debug, Clone)]
pub struct Advantages<B: Backend> {
    /// One advantage per completion, `[prompts * num_generations]`.
    pub advantages: Tensor<B, 1>,
    /// The fraction of completions whose reward standard deviation is zero (TRL's
    /// `frac_reward_zero_std`): with group statistics, the fraction of groups whose rewards are
    /// all equal; with `scale_rewards = "batch"`, 1 when the whole batch is equal, else 0.
    pub frac_reward_zero_std: f64,
}

/// GRPO's advantages: `A = r − mean_group(r)`, divided by `std + 1e-4` where `std` is the
/// group's (`group`) or the batch's (`batch`) standard deviation, or left unscaled (`none`).
///
/// # Errors
/// [`TrainError::RewardGroups`] when the rewards do not split into whole groups of
/// `num_generations`, or when the chosen standard deviation needs two rewards and has one.
pub fn grpo_advantages<B: Backend>(
    rewards: Tensor<B, 1>,
    num_generations: usize,
    scale: ScaleRewards,
) -> Result<Advantages<B>> {
    let [count, groups] = whole_groups(&rewards, num_generations)?;
    let single = match scale {
        ScaleRewards::Group => (num_generations < 2).then_some("a group's standard deviation needs two generations"),
        ScaleRewards::Batch => (count < 2).then_some("the batch's standard deviation needs two rewards"),
        ScaleRewards::None => None,
    };
    if let Some(reason) = single {
        return Err(TrainError::RewardGroups { rewards: count, num_generations, reason });
    }
    let centred = deviations(rewards.clone().reshape([groups, num_generations]));
    // TRL computes the group std under `none` too, for `frac_reward_zero_std` alone, and takes it
    // as zero when a group has one completion.
    let std = match scale {
        ScaleRewards::Batch => bessel_std(deviations(rewards.reshape([1, count]))),
        _ if num_generations < 2 => Tensor::zeros([groups, 1], &centred.device()),
        _ => bessel_std(centred.clone()),
    };
    let frac_reward_zero_std = zero_std_fraction(std.clone().expand([groups, num_generations]));
    let advantages = match scale {
        ScaleRewards::None => centred,
        _ => centred / std.add_scalar(STD_EPSILON),
    };
    Ok(Advantages { advantages: advantages.reshape([count]), frac_reward_zero_std })
}

/// RLOO's advantages: each reward less the mean of its group's other rewards,
/// `A_i = r_i − Σ_{j≠i} r_j / (n − 1)`, then, with `normalize_advantages`, standardised over the
/// batch: `(A − mean(A)) / (std(A) + 1e-4)` (TRL's default: not normalised).
///
/// # Errors
/// [`TrainError::RewardGroups`] when the rewards do not split into whole groups of
/// `num_generations`, or when a group has one completion and so no baseline.
pub fn rloo_advantages<B: Backend>(
    rewards: Tensor<B, 1>,
    num_generations: usize,
    normalize_advantages: bool,
) -> Result<Advantages<B>> {
    let [count, groups] = whole_groups(&rewards, num_generations)?;
    if num_generations < 2 {
        let reason = "the leave-one-out baseline needs two generations";
        return Err(TrainError::RewardGroups { rewards: count, num_generations, reason });
    }
    let centred = deviations(rewards.reshape([groups, num_generations]));
    let frac_reward_zero_std = zero_std_fraction(bessel_std(centred.clone()));
    // `r_i − (Σr − r_i)/(n − 1) = n/(n − 1) · (r_i − mean(r))`: the same value from the centred
    // rewards, so a group of equal rewards gets exactly zero.
    let n = num_generations as f64;
    let mut advantages = centred.mul_scalar(n / (n - 1.0)).reshape([1, count]);
    if normalize_advantages {
        let centred = deviations(advantages);
        advantages = centred.clone() / bessel_std(centred).add_scalar(STD_EPSILON);
    }
    Ok(Advantages { advantages: advantages.reshape([count]), frac_reward_zero_std })
}

/// The number of rewards and of groups, or why the rewards do not make whole groups.
fn whole_groups<B: Backend>(rewards: &Tensor<B, 1>, num_generations: usize) -> Result<[usize; 2]> {
    let [count] = rewards.dims();
    let reason = if num_generations == 0 {
        "a group needs at least one generation"
    } else if count == 0 {
        "there are no rewards"
    } else if !count.is_multiple_of(num_generations) {
        "the rewards do not split into whole groups"
    } else {
        return Ok([count, count / num_generations]);
    };
    Err(TrainError::RewardGroups { rewards: count, num_generations, reason })
}

/// Each row less its mean, `[rows, n]`. The mean is taken of the row shifted by its first value,
/// so equal values give exact zeros (a plain `f32` mean leaves noise of ~1e-8 that the `1e-4`
/// beside the std would magnify into a spurious advantage).
fn deviations<B: Backend>(rows: Tensor<B, 2>) -> Tensor<B, 2> {
    let shifted = rows.clone() - rows.narrow(1, 0, 1);
    shifted.clone() - shifted.mean_dim(1)
}

/// The Bessel-corrected standard deviation of each row of `deviations`, `[rows, 1]`.
///
/// # Panics
/// If a row has fewer than two values (callers check this first).
fn bessel_std<B: Backend>(deviations: Tensor<B, 2>) -> Tensor<B, 2> {
    let [_, n] = deviations.dims();
    assert!(n > 1, "a Bessel-corrected standard deviation needs two values, got {n}");
    deviations.powi_scalar(2).sum_dim(1).div_scalar((n - 1) as f64).sqrt()
}

/// The fraction of entries of `std` that `torch.isclose` takes for zero.
fn zero_std_fraction<B: Backend, const D: usize>(std: Tensor<B, D>) -> f64 {
    let zero = std.abs().lower_equal_elem(ZERO_STD).float().mean();
    f64::from(host_values(zero)[0])
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use precept_model::from_host;

    use super::*;

    type B = Flex;

    /// 3 prompts × 4 generations; the middle group's rewards are all equal.
    const REWARDS: [f32; 12] = [1.0, 0.0, 0.5, 0.25, 0.7, 0.7, 0.7, 0.7, -1.0, 2.0, 0.0, 3.0];

    fn rewards(values: &[f32]) -> Tensor<B, 1> {
        from_host(values.to_vec(), [values.len()], &Default::default())
    }

    fn assert_close(found: &Advantages<B>, expected: [f64; 12], frac: f64) {
        let values = host_values(found.advantages.clone());
        for (f, e) in values.iter().zip(expected) {
            assert!((f64::from(*f) - e).abs() < 1e-5 * e.abs().max(1.0), "{values:?} vs {expected:?}");
        }
        assert!((found.frac_reward_zero_std - frac).abs() < 1e-6, "{}", found.frac_reward_zero_std);
    }

    // TRL 1.16, grpo_trainer.py `_generate_and_score_completions`, with its `nanstd`, float64
    // (scripts/peers/grpo_golden.py):
    //   mean = torch.nanmean(rewards.view(-1, 4), dim=1).repeat_interleave(4, dim=0)
    //   std = nanstd(rewards.view(-1, 4), dim=1).repeat_interleave(4, dim=0)  # "batch": nanstd(rewards)
    //   advantages = (rewards - mean) / (std + 1e-4)                           # "none": rewards - mean
    //   frac_reward_zero_std = torch.isclose(std, torch.zeros_like(std)).float().mean()
    #[test]
    fn grpo_advantages_match_trl_for_every_reward_scale() {
        let group = [
            1.3171565993073961,
            -1.0244551327946414,
            0.14635073325637735,
            -0.43905219976913207,
            0.0,
            0.0,
            0.0,
            0.0,
            -1.0953851182964878,
            0.5476925591482439,
            -0.5476925591482439,
            1.0953851182964878,
        ];
        let batch = [
            0.5578825194879734,
            -0.43390862626842375,
            0.06198694660977482,
            -0.18596083982932446,
            0.0,
            0.0,
            0.0,
            0.0,
            -1.9835822915127943,
            0.9917911457563972,
            -0.9917911457563972,
            1.9835822915127943,
        ];
        let none = [0.5625, -0.4375, 0.0625, -0.1875, 0.0, 0.0, 0.0, 0.0, -2.0, 1.0, -1.0, 2.0];
        for (scale, expected, frac) in [
            (ScaleRewards::Group, group, 1.0 / 3.0),
            (ScaleRewards::Batch, batch, 0.0),
            (ScaleRewards::None, none, 1.0 / 3.0),
        ] {
            assert_close(&grpo_advantages(rewards(&REWARDS), 4, scale).unwrap(), expected, frac);
        }
    }

    // TRL 1.16, rloo_trainer.py `_generate_and_score_completions`, float64
    // (scripts/peers/grpo_golden.py):
    //   baselines = (grouped.nansum(1, keepdim=True) - grouped) / (4 - 1)
    //   advantages = rewards - baselines.view(-1)
    //   normalised: (advantages - torch.nanmean(advantages)) / (nanstd(advantages) + 1e-4)
    #[test]
    fn rloo_advantages_match_trl_with_and_without_normalisation() {
        let plain = [
            0.75,
            -0.5833333333333334,
            0.08333333333333331,
            -0.25,
            0.0,
            0.0,
            0.0,
            0.0,
            -2.666666666666667,
            1.3333333333333335,
            -1.3333333333333333,
            2.6666666666666665,
        ];
        let normalised = [
            0.5744122680236882,
            -0.4467650973517575,
            0.06382358533596534,
            -0.19147075600789606,
            0.0,
            0.0,
            0.0,
            0.0,
            -2.042354730750892,
            1.021177365375446,
            -1.0211773653754457,
            2.0423547307508914,
        ];
        assert_close(&rloo_advantages(rewards(&REWARDS), 4, false).unwrap(), plain, 1.0 / 3.0);
        assert_close(&rloo_advantages(rewards(&REWARDS), 4, true).unwrap(), normalised, 1.0 / 3.0);
    }

    #[test]
    fn a_group_of_equal_rewards_gets_exactly_zero_advantage() {
        // Three 0.9s do not sum exactly in f32: their plain mean is 0.8999999, and its std of
        // ~7e-8 would neither read as zero nor hide the error behind the 1e-4.
        let equal = rewards(&[0.9; 6]);
        for scale in [ScaleRewards::Group, ScaleRewards::Batch, ScaleRewards::None] {
            let found = grpo_advantages(equal.clone(), 3, scale).unwrap();
            assert_eq!(host_values(found.advantages), [0.0; 6], "{scale:?}");
            assert_eq!(found.frac_reward_zero_std, 1.0);
        }
        let found = rloo_advantages(equal, 3, false).unwrap();
        assert_eq!((host_values(found.advantages), found.frac_reward_zero_std), (vec![0.0; 6], 1.0));
    }

    #[test]
    fn rewards_that_do_not_make_whole_groups_are_an_error() {
        for (count, num_generations) in [(5, 2), (4, 0), (0, 4)] {
            let found = grpo_advantages(rewards(&REWARDS[..count]), num_generations, ScaleRewards::Group);
            assert!(
                matches!(found, Err(TrainError::RewardGroups { rewards, num_generations: n, .. }) if rewards == count && n == num_generations),
                "{count} in groups of {num_generations}"
            );
        }
    }

    #[test]
    fn one_generation_per_prompt_has_no_group_std_nor_baseline() {
        let single = |scale| grpo_advantages(rewards(&REWARDS[..3]), 1, scale);
        assert!(matches!(single(ScaleRewards::Group), Err(TrainError::RewardGroups { num_generations: 1, .. })));
        assert!(matches!(rloo_advantages(rewards(&REWARDS[..3]), 1, false), Err(TrainError::RewardGroups { .. })));
        // TRL: the batch std still exists; each reward is its own group's mean, so nothing is learnt.
        let batch = single(ScaleRewards::Batch).unwrap();
        assert_eq!((host_values(batch.advantages), batch.frac_reward_zero_std), (vec![0.0; 3], 0.0));
        assert_eq!(single(ScaleRewards::None).unwrap().frac_reward_zero_std, 1.0);
        let lone = grpo_advantages(rewards(&REWARDS[..1]), 1, ScaleRewards::Batch);
        assert!(matches!(lone, Err(TrainError::RewardGroups { rewards: 1, .. })));
    }
}
