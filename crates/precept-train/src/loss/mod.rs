//! Loss functions.

mod cross_entropy;
mod preference;
mod sequence;
mod sft;

pub use cross_entropy::{CrossEntropyBackend, CrossEntropyKernels};
pub use preference::{combined_loss, orpo_odds_ratio_loss, rewards, simpo_loss, PairLogps, PreferenceLoss};
pub use sequence::{sequence_logp_values, sequence_logps, SequenceLogps, SequenceValues};
pub use sft::{
    learnt_token_logits, masked_next_token_loss, next_token_accuracy, next_token_loss, LearntTokens, SftLoss, TokenLoss,
};
