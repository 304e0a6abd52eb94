//! Loss functions.

mod cross_entropy;
mod preference;
mod sft;

pub use cross_entropy::CrossEntropyBackend;
pub use preference::{combined_loss, orpo_odds_ratio_loss, rewards, simpo_loss, PairLogps, PreferenceLoss};
pub use sft::{masked_next_token_loss, next_token_accuracy, next_token_loss, SftLoss, TokenLoss};
