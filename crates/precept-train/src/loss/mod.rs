//! Loss functions.

mod advantages;
#[cfg(test)]
mod completions;
mod cross_entropy;
mod grpo;
mod preference;
mod rloo;
mod sequence;
mod sft;

pub use advantages::{grpo_advantages, rloo_advantages, Advantages, ScaleRewards};
pub use cross_entropy::{CrossEntropyBackend, CrossEntropyKernels};
pub use grpo::{mask_truncated_completions, CompletionLogps, GrpoLoss, GrpoLossConfig, GrpoLossType, GrpoMetrics};
pub use preference::{combined_loss, orpo_odds_ratio_loss, rewards, simpo_loss, PairLogps, PreferenceLoss};
pub use rloo::{rloo_kl_penalty, rloo_loss, KlPenalty};
pub use sequence::{sequence_logp_values, sequence_logps, SequenceLogps, SequenceValues};
pub use sft::{
    learnt_token_logits, masked_next_token_loss, next_token_accuracy, next_token_loss, LearntTokens, SftLoss, TokenLoss,
};
