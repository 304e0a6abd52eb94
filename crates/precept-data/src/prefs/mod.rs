//! Preference data: TRL's `{"prompt", "chosen", "rejected"}` records (strings or message lists)
//! and the implicit form (two whole conversations sharing a prompt), read by [`PrefReader`] and
//! tokenised by [`tokenize_pair`] with the same prefix check and masks as SFT data;
//! [`prepare_pairs_file`] prepares a whole file.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use serde_json::Value;

use crate::chat_template::ChatTemplate;
use crate::error::Result;
use crate::sft::{
    prepare_records, tokenize_record, JsonRecord, JsonlReader, PreparationStats, PrepareOptions, SftPreparer,
    SftRecord, TokenizedExample,
};
use crate::tokenizer::Tokenizer;

/// One preference pair: the same prompt answered twice, each answer trained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefRecord {
    /// The prompt followed by the preferred answer.
    pub chosen: SftRecord,
    /// The prompt followed by the dispreferred answer.
    pub rejected: SftRecord,
}

impl JsonRecord for PrefRecord {
    fn from_json(value: &Value, path: &Path, line: usize) -> Result<Self> {
        let (chosen, rejected) = crate::sft::preference_pair(value, path, line)?;
        Ok(Self { chosen, rejected })
    }
}

/// Reads preference records.
pub type PrefReader<R = BufReader<File>> = JsonlReader<R, PrefRecord>;

/// A tokenised preference pair: both conversations with their answer masks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedPair {
    /// The prompt and the chosen answer.
    pub chosen: TokenizedExample,
    /// The prompt and the rejected answer.
    pub rejected: TokenizedExample,
}

/// Tokenises both sides of `record` through the chat template, checking that the prompt renders
/// to a token prefix of each whole conversation.
///
/// # Errors
/// Those of [`tokenize_record`], naming the file and line.
pub fn tokenize_pair(
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    record: &PrefRecord,
    path: &Path,
    line: usize,
) -> Result<TokenizedPair> {
    Ok(TokenizedPair {
        chosen: tokenize_record(tokenizer, template, &record.chosen, path, line)?,
        rejected: tokenize_record(tokenizer, template, &record.rejected, path, line)?,
    })
}

/// Reads the preference JSONL file at `path` and prepares both sides of every pair as
/// [`prepare_file`](crate::prepare_file) prepares SFT records (in parallel, in file order,
/// stopping at the first error). A pair is kept only when both sides are; the counts are of
/// conversations, two per pair.
///
/// # Errors
/// Any error of [`PrefReader`] or [`SftPreparer::prepare`], naming the file and line.
pub fn prepare_pairs_file(
    path: &Path,
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    options: PrepareOptions,
) -> Result<(Vec<TokenizedPair>, PreparationStats)> {
    let mut preparer = SftPreparer::new(tokenizer, template, options);
    let records = prepare_records(PrefReader::open(path)?, path, &mut preparer, |pair: &PrefRecord| {
        [&pair.chosen, &pair.rejected]
    })?;
    let pairs = records
        .into_iter()
        .filter_map(|(_, [chosen, rejected])| Some(TokenizedPair { chosen: chosen?, rejected: rejected? }))
        .collect();
    Ok((pairs, preparer.into_stats()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::message::Role;

    fn parse(value: Value) -> Result<PrefRecord> {
        PrefRecord::from_json(&value, Path::new("prefs.jsonl"), 4)
    }

    #[test]
    fn explicit_string_and_message_records_share_the_prompt_and_train_the_answers() {
        let strings = parse(json!({"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away.", "score": 0.9})).unwrap();
        assert_eq!(strings.chosen.messages()[1].content, "Hello!");
        assert_eq!(strings.rejected.trained_indices().collect::<Vec<_>>(), [1]);
        let lists = parse(json!({
            "prompt": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}],
            "chosen": [{"role": "assistant", "content": "Hello!"}],
            "rejected": [{"role": "assistant", "content": "What?"}],
        }))
        .unwrap();
        assert_eq!(lists.chosen.messages().len(), 3);
        assert_eq!(lists.rejected.messages()[0].role, Role::System);
    }

    #[test]
    fn the_implicit_prompt_is_the_longest_shared_message_prefix() {
        let user = json!({"role": "user", "content": "Hi"});
        let record = parse(json!({
            "chosen": [user, {"role": "assistant", "content": "Hello!"}],
            "rejected": [user, {"role": "assistant", "content": "No."}],
        }))
        .unwrap();
        assert_eq!(record.chosen.trained_indices().collect::<Vec<_>>(), [1]);
        assert_eq!(record.rejected.messages()[1].content, "No.");
    }

    #[test]
    fn bad_records_name_file_line_and_field() {
        let same = json!([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "A"}]);
        let cases = [
            (json!({"prompt": "Hi", "chosen": "A"}), "prefs.jsonl:4: field `rejected` is missing"),
            (json!({"prompt": "Hi", "rejected": "A"}), "prefs.jsonl:4: field `chosen` is missing"),
            (json!({"prompt": "Hi", "chosen": "A", "rejected": ""}), "field `rejected` is empty"),
            (
                json!({"prompt": "Hi", "chosen": "A", "rejected": [{"role": "assistant", "content": "B"}]}),
                "field `rejected` must be a string",
            ),
            (
                json!({"chosen": "A", "rejected": "B"}),
                "field `chosen` must be a list of messages when there is no `prompt`",
            ),
            (json!({"chosen": same, "rejected": same}), "field `rejected` must be a conversation that differs"),
            (
                json!({"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "wizard", "content": "A"}], "rejected": [{"role": "assistant", "content": "B"}]}),
                "field `chosen[0].role`: unknown role `wizard`",
            ),
            (json!(["not", "an", "object"]), "prefs.jsonl:4"),
        ];
        for (value, expected) in cases {
            let message = parse(value).unwrap_err().to_string();
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn a_file_of_pairs_keeps_pairs_whose_sides_both_fit_and_names_the_first_bad_line() {
        use crate::sft::mask::tests::{chatml_tokenizer, template, SMOLLM2_TEMPLATE};
        let tokenizer = chatml_tokenizer();
        let chatml = template(SMOLLM2_TEMPLATE);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prefs.jsonl");
        let long = "word ".repeat(400);
        let lines = [
            json!({"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."}),
            json!({"prompt": long, "chosen": "Yes.", "rejected": "No."}),
            json!({"prompt": "Bye", "chosen": "Goodbye!", "rejected": "Whatever."}),
        ];
        let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
        std::fs::write(&path, text).unwrap();
        let options = PrepareOptions { max_length: Some(400), ..PrepareOptions::default() };
        let (pairs, stats) = prepare_pairs_file(&path, &tokenizer, &chatml, options).unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!((stats.records, stats.examples, stats.dropped_for_length), (6, 4, 2));
        assert!(pairs[0].chosen.trained_tokens() > 0 && pairs[1].rejected.trained_tokens() > 0);
        assert_eq!(pairs[0].chosen.input_ids[..4], pairs[0].rejected.input_ids[..4]);

        std::fs::write(&path, format!("{}\n{{\"prompt\": \"Hi\", \"chosen\": \"A\"}}\n", lines[0])).unwrap();
        let error = prepare_pairs_file(&path, &tokenizer, &chatml, options).unwrap_err().to_string();
        assert!(error.contains("prefs.jsonl:2: field `rejected` is missing"), "{error}");
    }
}
