//! SentencePiece (`tokenizer.ggml.model = "llama"`) vocabularies as byte-fallback BPE.
//!
//! GGUF stores a SentencePiece vocabulary as pieces with scores but no merges. Hugging Face's
//! Llama-2 `tokenizer.json` is a BPE model with `byte_fallback`, whose merges are derived from the
//! scores: every split of a piece into two pieces that are both in the vocabulary is a merge,
//! ranked by the merged piece's score (what transformers' GGUF loader does too). Spaces become
//! `▁` and one `▁` is prepended (when `tokenizer.ggml.add_space_prefix` is on, the default), as
//! in llama.cpp.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde_json::{json, Value};

use crate::error::Result;
use crate::tokenizer::{token_type, GgufVocab};

/// SentencePiece's word-boundary marker.
const SPACE: &str = "\u{2581}";

/// The `tokenizer.json` of a SentencePiece vocabulary.
pub(crate) fn sentencepiece_bpe(vocab: &GgufVocab) -> Result<Value> {
    let meta = vocab.meta;
    let scores = match meta.floats_opt("tokenizer.ggml.scores")? {
        Some(s) if s.len() == vocab.tokens.len() => s,
        Some(s) => {
            let message = format!("has {} entries for {} tokens", s.len(), vocab.tokens.len());
            return Err(meta.error("tokenizer.ggml.scores", message));
        }
        None => return Err(meta.error("tokenizer.ggml.scores", "is missing (a SentencePiece vocabulary needs scores)")),
    };
    let unk = vocab
        .special_token("unknown")?
        .or_else(|| vocab.types.iter().position(|&t| t == token_type::UNKNOWN).map(|i| vocab.tokens[i].as_str()));
    let add_space_prefix = meta.bool_opt("tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
    let replace_space = json!({"type": "Replace", "pattern": {"String": " "}, "content": SPACE});
    let normalizer = if add_space_prefix {
        json!({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": SPACE}, replace_space]})
    } else {
        replace_space
    };
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": SPACE}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if add_space_prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    let model = json!({
        "type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
        "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
        "vocab": vocab.vocab_map(), "merges": merges_from_scores(vocab.tokens, &scores),
    });
    Ok(json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": vocab.added_tokens_json()?,
        "normalizer": normalizer, "pre_tokenizer": null,
        "post_processor": vocab.template_processor()?,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": model,
    }))
}

/// BPE merges implied by SentencePiece scores, as transformers' `GGUFTokenizerSkeleton` builds
/// them: for each piece (in vocabulary order, first occurrence), every split into two known
/// pieces, those ordered by the pieces' scores; then all merges stably sorted by the merged
/// piece's score, highest first.
fn merges_from_scores(tokens: &[String], scores: &[f32]) -> Vec<Value> {
    // A repeated piece takes the score of its last occurrence, like a Python dict built in order.
    let score: HashMap<&str, f32> = tokens.iter().map(String::as_str).zip(scores.iter().copied()).collect();
    let descending = |a: f32, b: f32| b.partial_cmp(&a).unwrap_or(Ordering::Equal);
    let mut seen = std::collections::HashSet::new();
    let mut merges: Vec<(&str, &str, f32)> = Vec::new();
    for piece in tokens.iter().map(String::as_str).filter(|p| seen.insert(*p)) {
        let mut local: Vec<(&str, &str, f32)> = piece
            .char_indices()
            .skip(1)
            .map(|(at, _)| piece.split_at(at))
            .filter(|(left, right)| score.contains_key(left) && score.contains_key(right))
            .map(|(left, right)| (left, right, score[piece]))
            .collect();
        local.sort_by(|a, b| descending(score[a.0], score[b.0]).then_with(|| descending(score[a.1], score[b.1])));
        merges.extend(local);
    }
    merges.sort_by(|a, b| descending(a.2, b.2));
    merges.into_iter().map(|(left, right, _)| json!([left, right])).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::tokenizer::tokenizer_json;
    use crate::value::{GgufArray, GgufMetadata, GgufValue};

    /// `<unk> <s> </s>`, byte pieces for `\n` and `!`, then `▁ h e l o ▁h ll ▁he ▁hell ▁hello`.
    fn llama_meta() -> GgufMetadata {
        let tokens =
            ["<unk>", "<s>", "</s>", "<0x0A>", "<0x21>", "▁", "h", "e", "l", "o", "▁h", "ll", "▁he", "▁hell", "▁hello"];
        let types = [2, 3, 3, 6, 6, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
        let scores = [0.0, 0.0, 0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0, -8.0, -9.0, -10.0];
        let entries: BTreeMap<String, GgufValue> = [
            ("tokenizer.ggml.model", GgufValue::String("llama".into())),
            (
                "tokenizer.ggml.tokens",
                GgufValue::Array(GgufArray::String(tokens.iter().map(|s| s.to_string()).collect())),
            ),
            ("tokenizer.ggml.token_type", GgufValue::Array(GgufArray::I32(types.to_vec()))),
            ("tokenizer.ggml.scores", GgufValue::Array(GgufArray::F32(scores.to_vec()))),
            ("tokenizer.ggml.bos_token_id", GgufValue::U32(1)),
            ("tokenizer.ggml.eos_token_id", GgufValue::U32(2)),
            ("tokenizer.ggml.unknown_token_id", GgufValue::U32(0)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        GgufMetadata::new("spm.gguf", entries)
    }

    #[test]
    fn merges_are_every_known_split_ranked_by_the_merged_score() {
        let meta = llama_meta();
        let tokens = meta.strings("tokenizer.ggml.tokens").unwrap();
        let scores = meta.floats_opt("tokenizer.ggml.scores").unwrap().unwrap();
        let merges = merges_from_scores(tokens, &scores);
        // Only splits into two known pieces count (▁hell = ▁he + ll, not ▁ + hell), ordered by
        // the merged piece's score: ▁h -6, ll -7, ▁he -8, ▁hell -9, ▁hello -10.
        let expected = json!([["▁", "h"], ["l", "l"], ["▁h", "e"], ["▁he", "ll"], ["▁hell", "o"]]);
        assert_eq!(Value::Array(merges), expected);
    }

    #[test]
    fn the_tokenizers_crate_encodes_with_space_prefix_bos_and_byte_fallback() {
        let tj = tokenizer_json(&llama_meta()).unwrap();
        assert_eq!(tj["model"]["unk_token"], "<unk>");
        let tokenizer: tokenizers::Tokenizer = serde_json::to_string(&tj).unwrap().parse().unwrap();
        let encoding = tokenizer.encode("hello!\n", true).unwrap();
        // <s>, ▁hello, then `!` and `\n` through byte fallback.
        assert_eq!(encoding.get_ids(), [1, 14, 4, 3]);
        assert_eq!(tokenizer.decode(&[14, 4, 3], true).unwrap(), "hello!\n");
    }
}
