//! Loss masks by prefix rendering: [`tokenize_record`] turns an [`SftRecord`] into token ids and
//! a mask that is true exactly on the tokens of its trained messages.
//!
//! For trained message `i`, the span starts where `messages[..i]` rendered with the generation
//! prompt ends, and stops where `messages[..=i]` rendered without it ends. Both renderings must
//! tokenise to a prefix of the whole conversation's tokens; otherwise the record is rejected
//! with [`DataError::MaskMismatch`] rather than trained with a shifted mask.

use std::path::Path;

use crate::chat_template::ChatTemplate;
use crate::error::{DataError, Result};
use crate::sft::record::SftRecord;
use crate::tokenizer::Tokenizer;

/// A tokenised training example: `labels_mask[t]` says whether the loss covers `input_ids[t]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenizedExample {
    /// The conversation's token ids, as the chat template renders it.
    pub input_ids: Vec<u32>,
    /// One flag per id: true on the tokens of trained messages.
    pub labels_mask: Vec<bool>,
}

impl TokenizedExample {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }

    /// Number of tokens the loss covers.
    pub fn trained_tokens(&self) -> usize {
        self.labels_mask.iter().filter(|&&trained| trained).count()
    }

    /// Keeps the first `max_length` tokens.
    pub fn truncate(&mut self, max_length: usize) {
        self.input_ids.truncate(max_length);
        self.labels_mask.truncate(max_length);
    }
}

/// Renders `record` with `template`, tokenises it without added special tokens (templates that
/// want a BOS write it themselves) and marks the trained messages.
///
/// A trained span is everything the template renders for the message after the generation
/// prompt: its content, its end-of-turn token (ChatML's `<|im_end|>`) and whatever the template
/// writes after that token as part of the same message (ChatML's trailing newline is included).
/// `path` and `line` locate the record in errors.
///
/// # Errors
/// [`DataError::MaskMismatch`] when a prefix rendering is not a token prefix of the whole,
/// [`DataError::NothingTrained`] when the trained messages render to no tokens, and
/// [`DataError::Record`] around a template or tokenizer failure.
pub fn tokenize_record(
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    record: &SftRecord,
    path: &Path,
    line: usize,
) -> Result<TokenizedExample> {
    let in_record = |error: DataError| DataError::Record { path: path.to_owned(), line, error: Box::new(error) };
    let encode = |messages, add_generation_prompt| -> Result<Vec<u32>> {
        let text = template.render(messages, add_generation_prompt).map_err(in_record)?;
        tokenizer.encode(&text, false).map_err(in_record)
    };
    let messages = record.messages();
    let input_ids = encode(messages, false)?;
    let mut labels_mask = vec![false; input_ids.len()];
    for index in record.trained_indices() {
        let mismatch = |position| DataError::MaskMismatch { path: path.to_owned(), line, message: index, position };
        let start = encode(&messages[..index], true)?;
        let start = token_prefix_len(&start, &input_ids).map_err(mismatch)?;
        let end = encode(&messages[..=index], false)?;
        let end = token_prefix_len(&end, &input_ids).map_err(mismatch)?;
        if end < start {
            // The generation prompt renders past the end of the message itself.
            return Err(mismatch(end));
        }
        labels_mask[start..end].fill(true);
    }
    if !labels_mask.contains(&true) {
        return Err(DataError::NothingTrained { path: path.to_owned(), line });
    }
    Ok(TokenizedExample { input_ids, labels_mask })
}

/// `prefix.len()` when `prefix` is a prefix of `whole`, else the first position where they differ.
fn token_prefix_len(prefix: &[u32], whole: &[u32]) -> Result<usize, usize> {
    match prefix.iter().zip(whole).position(|(a, b)| a != b) {
        Some(position) => Err(position),
        None if prefix.len() > whole.len() => Err(whole.len()),
        None => Ok(prefix.len()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use serde_json::{json, Value};

    use super::*;
    use crate::special_tokens::SpecialTokens;
    use crate::tokenizer::tests::byte_level_bpe;

    /// SmolLM2's ChatML template, exactly as its `tokenizer_config.json` has it.
    pub(crate) const SMOLLM2_TEMPLATE: &str = include_str!("../../tests/fixtures/smollm2_chat_template.jinja");

    /// A byte-level BPE tokenizer with one token per byte plus the merges `"He"` (256) and
    /// `"ĠHe"` (257, a space and "He"), and the special tokens `<|im_start|>` (258) and
    /// `<|im_end|>` (259); loaded back from a temporary folder.
    pub(crate) fn chatml_tokenizer() -> Tokenizer {
        let inner = byte_level_bpe(&[("H", "e"), ("Ġ", "He")], &["<|im_start|>", "<|im_end|>"]);
        let dir = tempfile::tempdir().unwrap();
        inner.save(dir.path().join("tokenizer.json"), false).unwrap();
        Tokenizer::from_dir(dir.path()).unwrap()
    }

    pub(crate) fn template(source: &str) -> ChatTemplate {
        ChatTemplate::new(source, "chat_template.jinja", SpecialTokens::default()).unwrap()
    }

    pub(crate) fn record(value: Value) -> SftRecord {
        SftRecord::from_json(&value, Path::new("data.jsonl"), 7).unwrap()
    }

    /// The decoded text of each contiguous run of trained tokens.
    fn trained_spans(tokenizer: &Tokenizer, example: &TokenizedExample) -> Vec<String> {
        let mut spans = Vec::new();
        let mut current = Vec::new();
        for (&id, &trained) in example.input_ids.iter().zip(&example.labels_mask) {
            if trained {
                current.push(id);
            } else if !current.is_empty() {
                spans.push(tokenizer.decode(&current, false).unwrap());
                current.clear();
            }
        }
        if !current.is_empty() {
            spans.push(tokenizer.decode(&current, false).unwrap());
        }
        spans
    }

    fn tokenize(source: &str, value: Value) -> Result<TokenizedExample> {
        let tokenizer = chatml_tokenizer();
        tokenize_record(&tokenizer, &template(source), &record(value), Path::new("data.jsonl"), 7)
    }

    #[test]
    fn the_mask_covers_only_the_assistant_turn_and_its_im_end() {
        let tokenizer = chatml_tokenizer();
        let example = tokenize_record(
            &tokenizer,
            &template(SMOLLM2_TEMPLATE),
            &record(json!({"messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello there"},
            ]})),
            Path::new("data.jsonl"),
            7,
        )
        .unwrap();
        assert_eq!(example.input_ids.len(), example.labels_mask.len());
        assert_eq!(
            tokenizer.decode(&example.input_ids, false).unwrap(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
             <|im_start|>assistant\nHello there<|im_end|>\n"
        );
        assert_eq!(trained_spans(&tokenizer, &example), ["Hello there<|im_end|>\n"]);
        assert!(example.input_ids.contains(&256), "the `He` merge is used");
    }

    #[test]
    fn prompt_and_completion_masks_only_the_completion() {
        let tokenizer = chatml_tokenizer();
        let example = tokenize_record(
            &tokenizer,
            &template(SMOLLM2_TEMPLATE),
            &record(json!({"prompt": "2+2?", "completion": "4"})),
            Path::new("data.jsonl"),
            7,
        )
        .unwrap();
        assert_eq!(trained_spans(&tokenizer, &example), ["4<|im_end|>\n"]);
        // The template's default system prompt is rendered and not trained.
        let text = tokenizer.decode(&example.input_ids, false).unwrap();
        assert!(text.starts_with("<|im_start|>system\nYou are a helpful AI"), "{text}");
        assert_eq!(example.trained_tokens(), 1 + 1 + 1);
    }

    #[test]
    fn a_multi_turn_conversation_trains_every_assistant_turn() {
        let tokenizer = chatml_tokenizer();
        let example = tokenize_record(
            &tokenizer,
            &template(SMOLLM2_TEMPLATE),
            &record(json!({"messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "Bye"},
                {"role": "assistant", "content": "Goodbye"},
            ]})),
            Path::new("data.jsonl"),
            7,
        )
        .unwrap();
        assert_eq!(trained_spans(&tokenizer, &example), ["Hello<|im_end|>\n", "Goodbye<|im_end|>\n"]);
    }

    #[test]
    fn a_prefix_that_is_not_a_token_prefix_is_a_mismatch_naming_the_line() {
        let templates = [
            // The generation prompt ends in "\n " but turns render "\n" + content: the prefix
            // text is not a prefix of the conversation, so its tokens cannot be either.
            "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n ' }}{% endif %}",
            // "assistant: " is a text prefix of "assistant: Hello", but the whole tokenises " He"
            // as one token (the "ĠHe" merge) while the prefix ends in a lone " ".
            "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}",
        ];
        for source in templates {
            let err = tokenize(source, json!({"prompt": "Hi", "completion": "Hello"})).unwrap_err();
            assert!(matches!(err, DataError::MaskMismatch { line: 7, message: 1, .. }), "{err:?}");
            assert!(err.to_string().starts_with("data.jsonl:7: loss mask mismatch at message 1: "), "{err}");
        }
    }

    #[test]
    fn a_template_that_drops_assistant_text_trains_nothing_and_says_so() {
        let source = "{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }}{% endif %}{% endfor %}";
        let err = tokenize(source, json!({"prompt": "Hi", "completion": "Hello"})).unwrap_err();
        assert_eq!(err.to_string(), "data.jsonl:7: the chat template renders no tokens for the trained messages");
    }

    #[test]
    fn a_template_exception_names_the_record_line() {
        let source = "{{ raise_exception('no') }}";
        let err = tokenize(source, json!({"prompt": "Hi", "completion": "Hello"})).unwrap_err();
        assert_eq!(err.to_string(), "data.jsonl:7: chat template of chat_template.jinja: no");
    }

    #[test]
    fn token_prefixes_report_the_first_difference() {
        assert_eq!(token_prefix_len(&[1, 2], &[1, 2, 3]), Ok(2));
        assert_eq!(token_prefix_len(&[1, 5], &[1, 2, 3]), Err(1));
        assert_eq!(token_prefix_len(&[1, 2, 3, 4], &[1, 2, 3]), Err(3));
    }
}
