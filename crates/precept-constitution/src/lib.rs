//! Constitutional AI for precept: constitution files in, SFT records and AI-labelled preference
//! pairs out.
//!
//! A [`Constitution`] (TOML, checked by [`lint`]) holds [`Principle`]s, few-shot [`Example`]s and
//! [`Comparison`] questions; [`import`] converts Anthropic's and Hugging Face's published JSON
//! layouts into it.

// Tests may unwrap: a panic there is the failure report.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod constitution;
mod critique;
mod error;
mod feedback;
mod filter;
mod import;
mod lint;
mod prompts;
mod sample;
#[cfg(test)]
mod testing;

pub use constitution::{content_hash, Comparison, Constitution, Example, Principle, MAX_FILE_BYTES};
pub use critique::{choose_principle, critique_and_revise, few_shot_turns, opening, LoopConfig, Revised, Round, Stage};
pub use error::{ConstitutionError, Result};
pub use feedback::{
    choose_comparison, comparison_conversation, judge, label_pairs, soft_label, Feedback, FeedbackConfig,
    FeedbackFiltered, Judgement, PairToJudge, OPTIONS,
};
pub use filter::{check, is_repetitive, Degenerate};
pub use import::{import, ImportFormat};
pub use lint::{lint, Diagnostic, MAX_REQUEST_CHARS};
pub use prompts::{parse_prompts, read_prompts, PromptRecord, MAX_PROMPTS_BYTES};
pub use sample::{sample_weighted, SplitMix64};
