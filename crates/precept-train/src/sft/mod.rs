//! Supervised fine-tuning: [`BatchPlan`] (which rows each step sees) and [`train_sft`] (SFT's
//! objective on the shared loop).

mod batches;
mod train;

pub use batches::{loss_tokens, BatchOrder, BatchPlan, BatchTensors};
pub use train::train_sft;
