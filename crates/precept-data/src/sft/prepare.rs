//! [`SftPreparer`]: records in, truncated [`TokenizedExample`]s out, with
//! [`PreparationStats`] counting what was kept, cut and skipped.

use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::chat_template::ChatTemplate;
use crate::error::{DataError, Result};
use crate::sft::jsonl::SftReader;
use crate::sft::mask::{tokenize_record, TokenizedExample};
use crate::sft::record::SftRecord;
use crate::tokenizer::Tokenizer;

/// What to do with a record whose loss mask cannot be placed exactly
/// ([`DataError::MaskMismatch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMismatch {
    /// Stop with the error.
    #[default]
    Error,
    /// Skip the record and list its line in [`PreparationStats::mismatched_lines`].
    Warn,
}

/// Settings of [`SftPreparer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PrepareOptions {
    /// Keep at most this many tokens from the start of each example; `None` keeps all.
    pub max_length: Option<usize>,
    /// What a mask mismatch does.
    pub on_mismatch: OnMismatch,
}

/// Counts of one preparation run.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PreparationStats {
    /// Records handed to the preparer.
    pub records: usize,
    /// Examples produced.
    pub examples: usize,
    /// Tokens in the examples produced, after truncation.
    pub tokens: usize,
    /// Trained tokens in the examples produced, after truncation.
    pub trained_tokens: usize,
    /// Examples cut to `max_length`.
    pub truncated: usize,
    /// Records dropped because their first trained token lies at or beyond `max_length`.
    pub dropped_for_length: usize,
    /// Lines of records skipped for a mask mismatch under [`OnMismatch::Warn`].
    pub mismatched_lines: Vec<usize>,
}

impl PreparationStats {
    /// Number of records skipped for a mask mismatch.
    pub fn mismatches_skipped(&self) -> usize {
        self.mismatched_lines.len()
    }
}

/// Turns [`SftRecord`]s into [`TokenizedExample`]s with one tokenizer, template and settings.
///
/// With a `max_length`, each message is cut to a number of bytes in proportion to it before it is
/// rendered and tokenised, so one huge record costs memory and time in proportion to
/// `max_length`, not to its size; the tokens kept are the same.
#[derive(Debug)]
pub struct SftPreparer<'a> {
    tokenizer: &'a Tokenizer,
    template: &'a ChatTemplate,
    options: PrepareOptions,
    /// Longest message text worth tokenising, from `max_length`.
    content_limit: Option<usize>,
    stats: PreparationStats,
}

/// Bytes of a message that can reach the first `max_length` tokens, with a margin of four:
/// no token stands for more than about `longest_token` bytes of input, so a message cut here
/// still has more than `max_length` tokens, and the first `max_length` tokens of the
/// conversation are those of the whole one.
pub(crate) fn content_limit(max_length: usize, longest_token: usize) -> usize {
    max_length.saturating_mul(longest_token).saturating_mul(4).max(1)
}

impl<'a> SftPreparer<'a> {
    /// A preparer rendering with `template` (usually [`Tokenizer::chat_template`]).
    pub fn new(tokenizer: &'a Tokenizer, template: &'a ChatTemplate, options: PrepareOptions) -> Self {
        let content_limit =
            options.max_length.map(|max_length| content_limit(max_length, tokenizer.longest_token_bytes()));
        Self { tokenizer, template, options, content_limit, stats: PreparationStats::default() }
    }

    /// Tokenises and masks the record found at `path:line`, truncating it to `max_length`.
    ///
    /// `Ok(None)` when the record is dropped for length or skipped for a mask mismatch under
    /// [`OnMismatch::Warn`]; both are counted in [`Self::stats`].
    ///
    /// # Errors
    /// The errors of [`tokenize_record`], except mask mismatches under [`OnMismatch::Warn`].
    pub fn prepare(&mut self, record: &SftRecord, path: &Path, line: usize) -> Result<Option<TokenizedExample>> {
        let tokenized = self.tokenize(record, path, line);
        self.count(tokenized, line)
    }

    /// The counting-free half of [`Self::prepare`], safe to run on many records in parallel.
    pub(crate) fn tokenize(&self, record: &SftRecord, path: &Path, line: usize) -> Result<Option<TokenizedExample>> {
        let cut = self.content_limit.and_then(|limit| record.cut_messages(limit));
        let record = cut.as_ref().unwrap_or(record);
        match tokenize_record(self.tokenizer, self.template, record, path, line) {
            Ok(example) => Ok(Some(example)),
            Err(DataError::MaskMismatch { .. }) if self.options.on_mismatch == OnMismatch::Warn => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The counting half of [`Self::prepare`]: `None` from [`Self::tokenize`] is a skipped
    /// mismatch; examples are dropped or truncated for `max_length`.
    pub(crate) fn count(
        &mut self,
        tokenized: Result<Option<TokenizedExample>>,
        line: usize,
    ) -> Result<Option<TokenizedExample>> {
        self.stats.records += 1;
        let Some(mut example) = tokenized? else {
            self.stats.mismatched_lines.push(line);
            return Ok(None);
        };
        if let Some(max_length) = self.options.max_length {
            let first_trained = example.labels_mask.iter().position(|&trained| trained);
            if first_trained.is_none_or(|first| first >= max_length) {
                self.stats.dropped_for_length += 1;
                return Ok(None);
            }
            if example.len() > max_length {
                example.truncate(max_length);
                self.stats.truncated += 1;
            }
        }
        self.stats.examples += 1;
        self.stats.tokens += example.len();
        self.stats.trained_tokens += example.trained_tokens();
        Ok(Some(example))
    }

    /// The counts so far.
    pub fn stats(&self) -> &PreparationStats {
        &self.stats
    }

    /// The final counts.
    pub fn into_stats(self) -> PreparationStats {
        self.stats
    }
}

/// Reads the SFT JSONL file at `path` and prepares every record, stopping at the first error.
///
/// The file streams in chunks whose records are tokenised in parallel; results, counts and the
/// first error come in file order, so the output does not depend on the thread count.
///
/// # Errors
/// Any error of [`SftReader`] or [`SftPreparer::prepare`], naming the file and line.
pub fn prepare_file(
    path: &Path,
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    options: PrepareOptions,
) -> Result<(Vec<TokenizedExample>, PreparationStats)> {
    let mut preparer = SftPreparer::new(tokenizer, template, options);
    let records = prepare_records(SftReader::open(path)?, path, &mut preparer, |record: &SftRecord| [record])?;
    let examples = records.into_iter().filter_map(|(_, [example])| example).collect();
    Ok((examples, preparer.into_stats()))
}

/// One conversation tokenised: `None` when skipped for a mask mismatch under
/// [`OnMismatch::Warn`].
type Prepared = Result<Option<TokenizedExample>>;

/// Records tokenised in parallel at a time by [`prepare_records`].
const PARALLEL_CHUNK: usize = 1024;

/// Prepares the `N` conversations `sides` finds in each record of `reader` (one for SFT, chosen
/// and rejected for preference pairs), in file order, stopping at the first error; each result
/// comes with the record's line.
pub(crate) fn prepare_records<T, const N: usize>(
    mut reader: impl Iterator<Item = (usize, Result<T>)>,
    path: &Path,
    preparer: &mut SftPreparer<'_>,
    sides: impl Fn(&T) -> [&SftRecord; N] + Sync,
) -> Result<Vec<(usize, [Option<TokenizedExample>; N])>>
where
    T: Send,
{
    let mut prepared = Vec::new();
    loop {
        let chunk: Vec<(usize, Result<T>)> = reader.by_ref().take(PARALLEL_CHUNK).collect();
        if chunk.is_empty() {
            break;
        }
        let tokenized: Vec<(usize, Result<[Prepared; N]>)> = chunk
            .into_par_iter()
            .map(|(line, record)| {
                let sides = record.map(|record| sides(&record).map(|side| preparer.tokenize(side, path, line)));
                (line, sides)
            })
            .collect();
        for (line, sides) in tokenized {
            let mut examples = Vec::with_capacity(N);
            for side in sides? {
                examples.push(preparer.count(side, line)?);
            }
            if let Ok(examples) = examples.try_into() {
                prepared.push((line, examples));
            }
        }
    }
    Ok(prepared)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::sft::mask::tests::{chatml_tokenizer, record, template, SMOLLM2_TEMPLATE};

    /// Tokens of the SmolLM2 rendering of `{"prompt": "Hi"}` up to and including the generation
    /// prompt: where the completion's first trained token sits.
    fn prompt_tokens(tokenizer: &Tokenizer) -> usize {
        let text = template(SMOLLM2_TEMPLATE).render(&[crate::message::Message::user("Hi")], true).unwrap();
        tokenizer.encode(&text, false).unwrap().len()
    }

    fn prepare_one(max_length: Option<usize>) -> (Option<TokenizedExample>, PreparationStats) {
        let tokenizer = chatml_tokenizer();
        let chatml = template(SMOLLM2_TEMPLATE);
        let options = PrepareOptions { max_length, on_mismatch: OnMismatch::Error };
        let mut preparer = SftPreparer::new(&tokenizer, &chatml, options);
        let example = preparer
            .prepare(&record(json!({"prompt": "Hi", "completion": "Hello"})), Path::new("data.jsonl"), 7)
            .unwrap();
        (example, preparer.into_stats())
    }

    #[test]
    fn a_huge_message_is_cut_before_tokenising_and_keeps_the_tokens_it_would_have_kept() {
        let tokenizer = chatml_tokenizer();
        let chatml = template(SMOLLM2_TEMPLATE);
        let huge = "Hello there. ".repeat(200_000);
        let record = record(json!({"prompt": "Hi", "completion": huge}));
        // Past the default system message and the prompt, which take a token a byte here.
        let max_length = prompt_tokens(&tokenizer) + 40;
        let limit = content_limit(max_length, tokenizer.longest_token_bytes());
        assert!(limit < 100_000, "{limit}");
        assert_eq!(record.cut_messages(limit).unwrap().messages()[1].content.len(), limit);
        let options = PrepareOptions { max_length: Some(max_length), on_mismatch: OnMismatch::Error };
        let mut preparer = SftPreparer::new(&tokenizer, &chatml, options);
        let example = preparer.prepare(&record, Path::new("data.jsonl"), 1).unwrap().unwrap();
        let mut whole = tokenize_record(&tokenizer, &chatml, &record, Path::new("data.jsonl"), 1).unwrap();
        whole.truncate(max_length);
        assert_eq!(example, whole);
        assert_eq!(preparer.stats().truncated, 1);
    }

    #[test]
    fn examples_within_max_length_are_kept_whole_and_counted() {
        let (example, stats) = prepare_one(Some(10_000));
        let example = example.unwrap();
        // "He" "l" "l" "o" "<|im_end|>" "\n"
        assert_eq!(example.trained_tokens(), 6);
        assert_eq!(stats.records, 1);
        assert_eq!(stats.examples, 1);
        assert_eq!(stats.tokens, example.len());
        assert_eq!(stats.trained_tokens, 6);
        assert_eq!(stats.truncated, 0);
        assert_eq!(stats.dropped_for_length, 0);
    }

    #[test]
    fn max_length_keeps_the_start_and_counts_the_truncation() {
        let prompt = prompt_tokens(&chatml_tokenizer());
        let (example, stats) = prepare_one(Some(prompt + 2));
        let example = example.unwrap();
        assert_eq!(example.len(), prompt + 2);
        assert_eq!(example.labels_mask.len(), prompt + 2);
        assert_eq!(example.trained_tokens(), 2);
        assert!(example.labels_mask[prompt]);
        assert!(!example.labels_mask[prompt - 1]);
        assert_eq!((stats.truncated, stats.dropped_for_length), (1, 0));
        assert_eq!((stats.tokens, stats.trained_tokens), (prompt + 2, 2));
    }

    #[test]
    fn a_record_whose_first_trained_token_is_cut_off_is_dropped_and_counted() {
        let prompt = prompt_tokens(&chatml_tokenizer());
        let (example, stats) = prepare_one(Some(prompt));
        assert_eq!(example, None);
        assert_eq!(stats.records, 1);
        assert_eq!(stats.examples, 0);
        assert_eq!((stats.truncated, stats.dropped_for_length), (0, 1));
        assert_eq!(stats.tokens, 0);
    }

    #[test]
    fn warn_skips_mismatched_records_and_lists_their_lines() {
        let tokenizer = chatml_tokenizer();
        let broken = template("{% for m in messages %}{{ m['content'] + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '>' }}{% endif %}");
        let options = PrepareOptions { max_length: None, on_mismatch: OnMismatch::Warn };
        let mut preparer = SftPreparer::new(&tokenizer, &broken, options);
        let pair = record(json!({"prompt": "Hi", "completion": "Hello"}));
        assert_eq!(preparer.prepare(&pair, Path::new("data.jsonl"), 3).unwrap(), None);
        assert_eq!(preparer.prepare(&pair, Path::new("data.jsonl"), 9).unwrap(), None);
        let stats = preparer.into_stats();
        assert_eq!(stats.mismatched_lines, [3, 9]);
        assert_eq!(stats.mismatches_skipped(), 2);
        assert_eq!((stats.records, stats.examples), (2, 0));

        let mut strict = SftPreparer::new(&tokenizer, &broken, PrepareOptions::default());
        let err = strict.prepare(&pair, Path::new("data.jsonl"), 3).unwrap_err();
        assert!(matches!(err, DataError::MaskMismatch { line: 3, .. }), "{err:?}");
    }

    #[test]
    fn a_file_is_prepared_and_its_first_bad_line_stops_the_run() {
        let tokenizer = chatml_tokenizer();
        let chatml = template(SMOLLM2_TEMPLATE);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.jsonl");
        std::fs::write(
            &path,
            "{\"prompt\":\"Hi\",\"completion\":\"Hello\"}\n\n{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"}]}\n",
        )
        .unwrap();
        let (examples, stats) = prepare_file(&path, &tokenizer, &chatml, PrepareOptions::default()).unwrap();
        assert_eq!(examples.len(), 2);
        assert_eq!((stats.records, stats.examples), (2, 2));

        std::fs::write(&path, "{\"prompt\":\"Hi\",\"completion\":\"Hello\"}\n{\"prompt\":\"Hi\"}\n").unwrap();
        let err = prepare_file(&path, &tokenizer, &chatml, PrepareOptions::default()).unwrap_err();
        assert_eq!(err.to_string(), format!("{}:2: field `completion` is missing", path.display()));
    }

    #[test]
    fn options_read_from_config_spell_on_mismatch_in_lowercase() {
        let options: PrepareOptions = serde_json::from_str(r#"{"max_length": 512, "on_mismatch": "warn"}"#).unwrap();
        assert_eq!(options.max_length, Some(512));
        assert_eq!(options.on_mismatch, OnMismatch::Warn);
    }

    #[test]
    fn parallel_preparation_of_a_long_file_equals_one_record_at_a_time() {
        let tokenizer = chatml_tokenizer();
        let chatml = template(SMOLLM2_TEMPLATE);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.jsonl");
        let lines: Vec<String> = (0..2500)
            .map(|i| format!("{{\"prompt\":\"Hi {i}\",\"completion\":\"{}\"}}", "Hello ".repeat(1 + i % 7)))
            .collect();
        std::fs::write(&path, lines.join("\n")).unwrap();
        let max_length = prompt_tokens(&tokenizer) + 20;
        let options = PrepareOptions { max_length: Some(max_length), on_mismatch: OnMismatch::Error };
        let (examples, stats) = prepare_file(&path, &tokenizer, &chatml, options).unwrap();
        let mut preparer = SftPreparer::new(&tokenizer, &chatml, options);
        let mut expected = Vec::new();
        for (line, record) in SftReader::open(&path).unwrap() {
            expected.extend(preparer.prepare(&record.unwrap(), &path, line).unwrap());
        }
        assert_eq!(examples, expected);
        assert_eq!(&stats, preparer.stats());
        assert!(stats.truncated > 0 && stats.examples == 2500, "{stats:?}");

        // Two bad lines in one chunk: the earlier one is reported.
        let mut bad = lines.clone();
        bad[1700] = "{\"prompt\":\"x\"}".into();
        bad[1500] = "{\"prompt\":\"y\"}".into();
        std::fs::write(&path, bad.join("\n")).unwrap();
        let err = prepare_file(&path, &tokenizer, &chatml, options).unwrap_err();
        assert!(err.to_string().contains(":1501: field `completion` is missing"), "{err}");
    }
}
