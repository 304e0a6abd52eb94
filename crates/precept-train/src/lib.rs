//! Training for precept: losses now; the optimiser, schedules and the training loop build on them.
//!
//! [`loss::masked_next_token_loss`] turns a model's logits, the token ids and a loss mask into a
//! summed cross-entropy and the number of tokens it covers, so a trainer can normalise by the
//! tokens of a whole accumulated batch rather than per micro-batch.

pub mod loss;
