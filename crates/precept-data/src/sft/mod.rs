//! Supervised fine-tuning data: TRL's SFT JSONL layouts in, token ids with loss masks out.
//!
//! [`SftReader`] streams a JSONL file and parses each line into an [`SftRecord`] (a conversation
//! and which of its messages are trained). [`SftPreparer`] renders each record with the model's
//! [`ChatTemplate`](crate::ChatTemplate), tokenises it, marks the trained spans by rendering
//! prefixes ([`tokenize_record`]), truncates to `max_length` and counts everything in
//! [`PreparationStats`]. [`prepare_file`] does both for a whole file. [`pack`] concatenates
//! examples into rows with segment boundaries, and [`length_buckets`] groups unpacked examples
//! into batches of similar length.

mod batching;
mod jsonl;
pub(crate) mod mask;
mod prepare;
mod prompt_only;
mod record;

pub use batching::{length_buckets, pack, PackedRow};
pub use jsonl::{JsonRecord, JsonlReader, SftReader, MAX_LINE_BYTES};
pub use mask::{tokenize_record, TokenizedExample};
pub(crate) use prepare::prepare_records;
pub use prepare::{prepare_file, OnMismatch, PreparationStats, PrepareOptions, SftPreparer};
pub use prompt_only::PromptOnlyRecord;
pub(crate) use record::preference_pair;
pub use record::SftRecord;
