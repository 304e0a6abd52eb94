//! Constitutional AI for precept: constitution files in, SFT records and AI-labelled preference
//! pairs out. No tensors here: the model is anything that implements [`precept_data::Generate`].
//!
//! A [`Constitution`] (TOML, checked by [`lint`]) holds [`Principle`]s, few-shot [`Example`]s and
//! [`Comparison`] questions; [`import`] converts Anthropic's and Hugging Face's published JSON
//! layouts into it. Prompts come from JSONL through [`read_prompts`].
//!
//! ```text
//! ConstituteSettings ──run_config──> RunConfig (the loop's settings, checked by validate)
//! prompts ──critique_and_revise──> Revised (answer, rounds of principle/critique/revision)
//!         ──label_pairs──────────> Feedback (chosen, rejected, soft label from both orders)
//!         ──constitute───────────> sft.jsonl, prefs.jsonl, progress.jsonl, manifest.json
//! ```
//!
//! [`critique_and_revise`] samples a principle per prompt and round ([`SplitMix64`] seeded by
//! run seed, prompt id and round), batches every stage over the live prompts, and drops
//! degenerate replies ([`check`]) with the reason. [`label_pairs`] asks a [`Comparison`] question
//! in both orders and averages the option probabilities ([`soft_label`]). [`constitute`] drives
//! the loop and the feedback in batches, judging only the prompts whose records take an
//! AI-feedback pair (through the two halves of [`label_pairs`], [`sample_pairs`] and
//! [`judge_sampled`]), appends each finished prompt's records through [`Outputs`] (which repairs a
//! killed run on reopen) and keeps the [`Manifest`] current. A prompt that says what a safe model
//! does with it has records that keep to that ([`select`]). Every failure is a
//! [`ConstitutionError`] naming the file, line, field or setting.

// Tests may unwrap: a panic there is the failure report.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod constitution;
mod critique;
mod driver;
mod error;
mod expected;
mod feedback;
mod filter;
mod import;
mod journal;
mod lint;
mod manifest;
mod prompts;
mod record_policy;
mod records;
mod sample;
mod settings;
#[cfg(test)]
mod testing;

pub use constitution::{content_hash, Comparison, Constitution, Example, Principle, MAX_FILE_BYTES};
pub use critique::{choose_principle, critique_and_revise, few_shot_turns, opening, LoopConfig, Revised, Round, Stage};
pub use driver::{constitute, RunConfig, RunSettings};
pub use error::{ConstitutionError, Result};
pub use expected::{draw_answers, select, user_turns, Candidate, DrawConfig, ReplySource, Selection};
pub use feedback::{
    choose_comparison, comparison_conversation, judge, judge_sampled, label_pairs, sample_pairs, soft_label, Feedback,
    FeedbackConfig, FeedbackFiltered, Judgement, Labelled, PairToJudge, SampledPair, OPTIONS,
};
pub use filter::{check, copies_earlier, is_repetitive, usable_text, Degenerate};
pub use import::{import, ImportFormat};
pub use journal::{Counts, Outputs, PREFS_FILE, PROGRESS_FILE, SFT_FILE};
pub use lint::{lint, Diagnostic, MAX_REQUEST_CHARS};
pub use manifest::{Manifest, MANIFEST_FILE};
pub use prompts::{parse_prompts, read_prompts, PromptRecord, MAX_PROMPTS_BYTES};
pub use records::{ConstitutionRef, PairSource, PrefsLine, ProgressLine, Provenance, SftLine};
pub use sample::{sample_weighted, SplitMix64};
pub use settings::ConstituteSettings;
