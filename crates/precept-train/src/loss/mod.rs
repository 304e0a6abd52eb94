//! Loss functions.

mod cross_entropy;
mod sft;

pub use cross_entropy::CrossEntropyBackend;
pub use sft::{masked_next_token_loss, next_token_accuracy, next_token_loss, SftLoss, TokenLoss};
