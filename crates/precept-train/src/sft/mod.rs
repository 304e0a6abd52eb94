//! Supervised fine-tuning: [`SftConfig`] (the settings), [`BatchPlan`] (which rows each step
//! sees), and [`train_sft`] (the loop).

mod batches;
mod config;
mod train;

pub use batches::{loss_tokens, BatchPlan, BatchTensors};
pub use config::{Method, SftConfig};
pub use train::{train_sft, RunPlan, SftOutcome, TrainObserver, ADAPTER_DIR, MERGED_DIR, MODEL_DIR};
