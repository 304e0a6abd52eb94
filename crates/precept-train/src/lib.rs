//! Training for precept: losses, the optimiser and schedules, checkpoints, metrics, and one
//! training loop for SFT and preference optimisation.
//!
//! [`trainer::train`] runs any [`trainer::Objective`] under a [`TrainConfig`]: it opens the run
//! folder ([`trainer::RunFolder`], resolved settings first), adds LoRA adapters or unfreezes the
//! model (precept-model), then steps: the objective's loss and gradients over the step's
//! micro-batches, [`optim::AdamW`] with global-norm clipping at the rate of
//! [`schedule::LrSchedule`]. [`metrics::MetricsLog`] records each step with TRL's names and
//! [`checkpoint::Checkpoints`] writes atomic checkpoints from which a run resumes bit for bit.
//! Training runs on any [`TrainBackend`]; the CPU backend's fused cross-entropy and AdamW update
//! run on host memory ([`loss::CrossEntropyBackend`], [`optim::OptimizerBackend`]).
//! For online RL, [`loss::grpo_advantages`] and [`loss::rloo_advantages`] turn the rewards of
//! sampled completions into advantages, and [`loss::GrpoLossConfig::loss`] and
//! [`loss::rloo_loss`] turn their per-token log-probabilities ([`loss::CompletionLogps`]) into
//! TRL's clipped surrogate.
//!
//! A [`monitor::Monitor`] (the CLI's safety gate, configured by [`SafetySettings`]) checks the
//! weights every few steps: its record joins the metrics, the last checkpoint that passed is kept
//! as `best`, and a failed check may stop the run.
//!
//! [`grpo::train_grpo`] puts them on the same loop: each step samples completions with the
//! policy, scores them with [`grpo::Rewards`] and trains on the surrogate.
//!
//! ```text
//! sft.jsonl     ─prepare─> BatchPlan ─> sft::train_sft  (masked next-token cross-entropy) ─┐
//! prefs.jsonl   ─prepare─> PairPlan  ─> dpo::train_dpo  (DPO family, SimPO, ORPO;           │
//!                          Reference: cached log-probabilities, adapters off, or a model)  ├─> trainer::train
//! prompts.jsonl ─sample, reward─> Rollout ─> grpo::train_grpo (GRPO's clipped surrogate)   ─┘
//! ```

mod backend;
pub mod checkpoint;
pub mod dpo;
mod error;
pub mod grpo;
pub mod loss;
pub mod metrics;
pub mod monitor;
pub mod optim;
pub mod run_config;
mod safety;
pub mod schedule;
mod settings;
pub mod sft;
pub mod trainer;

pub use backend::{TrainBackend, TrainKernels};
pub use error::{Result, TrainError};
pub use safety::SafetySettings;
pub use settings::{TrainConfig, Tuning};
