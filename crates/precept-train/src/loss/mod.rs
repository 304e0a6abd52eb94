//! Loss functions.

mod sft;

pub use sft::{masked_next_token_loss, next_token_accuracy, TokenLoss};
