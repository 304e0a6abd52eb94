//! Training for precept: losses, the optimiser and schedules, checkpoints, metrics, and the SFT
//! loop.
//!
//! [`sft::train_sft`] reads an [`sft::SftConfig`], prepares the data (precept-data), loads the
//! model and adds LoRA adapters or unfreezes it (precept-model), then steps: micro-batches from
//! [`sft::BatchPlan`], [`loss::masked_next_token_loss`] normalised over the tokens of the whole
//! accumulated batch, [`optim::AdamW`] with global-norm clipping at the rate of
//! [`schedule::LrSchedule`]. [`metrics::MetricsLog`] records each step with TRL's names and
//! [`checkpoint::Checkpoints`] writes atomic checkpoints from which a run resumes bit for bit.

pub mod checkpoint;
pub mod dpo;
mod error;
pub mod loss;
pub mod metrics;
pub mod optim;
pub mod run_config;
pub mod schedule;
mod settings;
pub mod sft;
pub mod trainer;

pub use error::{Result, TrainError};
pub use settings::{parse_settings, TrainConfig, Tuning};
