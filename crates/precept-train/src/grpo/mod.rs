//! Online RL with GRPO: [`GrpoConfig`] (the settings), [`Rewards`] (reward functions over a
//! sampled completion), [`Rollout`] (completions sampled for a batch of prompts, scored, with
//! advantages), [`CompletionRows`] (their per-token log-probabilities) and [`train_grpo`]
//! (GRPO's objective on the shared loop).
//!
//! ```text
//! prompts.jsonl ─> PromptOnlyRecord ─chat template─> prompt ids ─┐
//!   each step: policy samples num_generations completions ───────┴─> Rewards ─> advantages
//!   ─> CompletionRows::token_logps (policy; old policy; reference) ─> GrpoLossConfig::loss
//! ```

mod config;
mod logps;
mod rewards;
mod rollout;
mod train;

pub use config::{GrpoConfig, RemoteRewardSettings, RewardFunc, SystemPrompts};
pub use logps::{gathered_logps, CompletionRows};
pub use rewards::{
    BatchReward, Completion, DegenerateReward, ExpectationReward, LengthReward, RepetitionReward, Reward, Rewards,
};
pub use rollout::{sample, PromptOrder, Rollout, Sample};
pub use train::{check_prompts, train_grpo, train_grpo_with, COMPLETIONS_FILE};
