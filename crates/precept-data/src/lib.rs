//! Data for precept: conversations, tokenisation, chat templates and crash-safe file output.
//!
//! A model folder is read by [`Tokenizer::from_dir`]: `tokenizer.json` gives the Hugging Face
//! tokenizer, `tokenizer_config.json` the [`SpecialTokens`] and the [`ChatTemplate`],
//! `generation_config.json` the stop ids. A conversation is a list of [`Message`]s (a [`Role`]
//! and text); [`ChatTemplate::render`] turns it into the exact prompt text transformers'
//! `apply_chat_template` would produce, [`Tokenizer::encode`] turns that into ids, and during
//! generation a [`TokenStream`] turns ids back into text as they arrive.
//!
//! ```text
//! Vec<Message> ──ChatTemplate::render──> String ──Tokenizer::encode──> Vec<u32>
//! generated ids ──TokenStream::step──> text fragments
//! ```
//!
//! Supervised fine-tuning data goes through [`SftReader`] (JSONL lines to [`SftRecord`]s) and
//! [`SftPreparer`] (records to [`TokenizedExample`]s: ids plus a loss mask over the trained
//! turns, with [`PreparationStats`]).
//!
//! ```text
//! sft.jsonl ──SftReader──> (line, SftRecord) ──SftPreparer::prepare──> TokenizedExample
//! ```
//!
//! Stages that need a model's words talk to the [`Generate`] trait (conversations in, replies
//! and option probabilities out), so they run on a local model, a server or a test script alike;
//! a [`ModelSource`] names which (a folder, or servers as a [`RemoteSpec`]).
//! What a safe model does with a prompt is an [`Expected`]; the [`KeywordJudge`] labels a reply
//! a refusal or a compliance without a model, so the constitution loop and the eval agree on it;
//! the [`DegenerateJudge`] finds the [`Defects`] of a reply whatever its label (an invented
//! persona, a refusal followed by the answer, loops, a refusal of another topic).
//!
//! Every command that runs work reads its settings one way: [`resolve_settings`] parses a TOML
//! file over the settings' defaults and writes the flags given over it, and [`write_settings`]
//! puts the result in the run's folder; [`hash_settings`] hashes them as canonical JSON.
//!
//! Long work (training, constitute, eval) reports [`ProgressEvent`]s to a [`ProgressSink`], so one
//! display shows them all.
//!
//! Evaluation data never trains: [`decontaminate()`] checks every user turn of training files
//! against eval cases and benchmark files by normalised whole-text hashes and shared word n-grams,
//! and reports each [`Hit`] with both sides' file, line and id (module [`mod@decontaminate`]).
//!
//! Every failure is a [`DataError`] naming the file, field, template or message involved.
//! Output files go through [`write_atomic`], so a crash never leaves a truncated file;
//! [`write_safetensors`] streams tensors into a safetensors file the same way, one at a time.

// Tests may unwrap: a panic there is the failure report.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod atomic;
mod chat_template;
pub mod decontaminate;
mod error;
mod generate;
mod hashing;
mod hf_config;
mod message;
mod model_size;
mod model_source;
mod prefs;
mod progress;
mod python_compat;
mod refusal;
mod reply_text;
mod safetensors_writer;
mod settings;
mod sft;
mod special_tokens;
mod token_stream;
mod tokenizer;

pub use atomic::{write_atomic, write_atomic_with};
pub use chat_template::ChatTemplate;
pub use decontaminate::{decontaminate, DecontaminateSettings, Decontamination, Hit};
pub use error::{DataError, Result};
pub use generate::{normalise_log_probabilities, FinishReason, Generate, GenerateSettings, Reply};
pub use hashing::{canonical_json, hash_json, hash_model_dir, hash_settings};
pub use message::{Message, Role};
pub use model_size::{host_memory, ModelSize};
pub use model_source::{Connection, ModelSource, RemoteSpec};
pub use prefs::{prepare_pairs_file, tokenize_pair, PrefReader, PrefRecord, TokenizedPair};
pub use progress::{Counter, ProgressEvent, ProgressSink, Silent};
pub use refusal::{
    first_sentence, Defect, Defects, DegenerateJudge, Expected, Judgement, KeywordJudge, Label, DEFAULT_REFUSAL_PHRASES,
};
pub use reply_text::ReplyText;
pub use safetensors_writer::{write_le, write_safetensors, TensorEntry};
pub use settings::{parse_settings, resolve_settings, write_settings, SETTINGS_FILE};
pub use sft::{
    length_buckets, pack, prepare_file, tokenize_record, OnMismatch, PackedRow, PreparationStats, PrepareOptions,
    PromptOnlyRecord, SftPreparer, SftReader, SftRecord, TokenizedExample, MAX_LINE_BYTES,
};
pub use sft::{JsonRecord, JsonlReader};
pub use special_tokens::SpecialTokens;
pub use token_stream::TokenStream;
pub use tokenizer::Tokenizer;
