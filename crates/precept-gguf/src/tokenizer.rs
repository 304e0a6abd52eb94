//! A Hugging Face `tokenizer.json` rebuilt from a GGUF file's `tokenizer.ggml.*` metadata.
//!
//! [`GgufVocab`] gathers the vocabulary, token types and special-token ids. [`tokenizer_json`]
//! dispatches on `tokenizer.ggml.model`: `gpt2` vocabularies become byte-level BPE (here), with
//! the pre-tokenizer chosen by `tokenizer.ggml.pre` to match the upstream `tokenizer.json`;
//! SentencePiece `llama` vocabularies become byte-fallback BPE ([`crate::spm`]).

use serde_json::{json, Map, Value};

use crate::error::Result;
use crate::spm;
use crate::value::GgufMetadata;

/// llama.cpp's token types (`tokenizer.ggml.token_type`), from SentencePiece.
pub(crate) mod token_type {
    pub const NORMAL: i64 = 1;
    pub const UNKNOWN: i64 = 2;
    pub const CONTROL: i64 = 3;
    pub const USER_DEFINED: i64 = 4;
}

/// Llama 3's pre-tokenizer regex, as in Meta's `tokenizer.json` (llama.cpp's `llama-bpe`).
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's pre-tokenizer regex: Llama 3's with single digits.
const QWEN2_REGEX: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The vocabulary of a GGUF file and its special tokens.
pub(crate) struct GgufVocab<'a> {
    pub meta: &'a GgufMetadata,
    /// `tokenizer.ggml.model`: `gpt2`, `llama`, …
    pub model: &'a str,
    /// Token strings by id.
    pub tokens: &'a [String],
    /// Token types by id (all [`token_type::NORMAL`] when the file has none).
    pub types: Vec<i64>,
}

impl<'a> GgufVocab<'a> {
    /// Reads `tokenizer.ggml.model`, `.tokens` and `.token_type`.
    pub fn read(meta: &'a GgufMetadata) -> Result<Self> {
        let model = meta.str("tokenizer.ggml.model")?;
        let tokens = meta.strings("tokenizer.ggml.tokens")?;
        if tokens.is_empty() {
            return Err(meta.error("tokenizer.ggml.tokens", "is empty"));
        }
        let types = match meta.ints_opt("tokenizer.ggml.token_type")? {
            Some(types) if types.len() == tokens.len() => types,
            Some(types) => {
                let message = format!("has {} entries for {} tokens", types.len(), tokens.len());
                return Err(meta.error("tokenizer.ggml.token_type", message));
            }
            None => vec![token_type::NORMAL; tokens.len()],
        };
        Ok(Self { meta, model, tokens, types })
    }

    /// The id stored under `tokenizer.ggml.<name>_token_id`, if present and inside the vocabulary.
    pub fn special_id(&self, name: &str) -> Result<Option<u32>> {
        let key = format!("tokenizer.ggml.{name}_token_id");
        match self.meta.u64_opt(&key)? {
            Some(id) if (id as usize) < self.tokens.len() => Ok(Some(id as u32)),
            Some(id) => {
                // Some converters write the vocabulary size or -1 for "none"; treat it so.
                tracing::warn!("{}: {key} = {id} is outside the vocabulary; ignored", self.meta.path().display());
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// The token string stored under `tokenizer.ggml.<name>_token_id`.
    pub fn special_token(&self, name: &str) -> Result<Option<&'a str>> {
        Ok(self.special_id(name)?.map(|id| self.tokens[id as usize].as_str()))
    }

    /// Ids of `eos` and the other end-of-turn tokens (`eot`, `eom`), without repeats.
    pub fn stop_ids(&self) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        for name in ["eos", "eot", "eom"] {
            if let Some(id) = self.special_id(name)? {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        Ok(ids)
    }

    /// Tokens matched whole before the model runs, as `(id, content, special)`: control and
    /// unknown tokens and every declared special id are special; user-defined tokens are not.
    pub fn added_tokens(&self) -> Result<Vec<(u32, &'a str, bool)>> {
        let mut declared = Vec::new();
        for name in ["bos", "eos", "unknown", "padding", "eot", "eom"] {
            declared.extend(self.special_id(name)?);
        }
        let added = self.tokens.iter().zip(&self.types).enumerate().filter_map(|(id, (token, &ty))| {
            let special = matches!(ty, token_type::CONTROL | token_type::UNKNOWN) || declared.contains(&(id as u32));
            (special || ty == token_type::USER_DEFINED).then_some((id as u32, token.as_str(), special))
        });
        Ok(added.collect())
    }

    /// `tokenizer.ggml.add_bos_token`, defaulting as llama.cpp does (on for SentencePiece).
    pub fn add_bos(&self) -> Result<bool> {
        Ok(self.meta.bool_opt("tokenizer.ggml.add_bos_token")?.unwrap_or(self.model == "llama"))
    }

    /// `tokenizer.ggml.add_eos_token`, off by default.
    pub fn add_eos(&self) -> Result<bool> {
        Ok(self.meta.bool_opt("tokenizer.ggml.add_eos_token")?.unwrap_or(false))
    }

    /// Token → id, keeping the first id of a repeated token.
    pub fn vocab_map(&self) -> Map<String, Value> {
        let mut vocab = Map::new();
        for (id, token) in self.tokens.iter().enumerate() {
            vocab.entry(token.clone()).or_insert_with(|| json!(id));
        }
        vocab
    }

    /// `added_tokens` in `tokenizer.json` form.
    pub fn added_tokens_json(&self) -> Result<Value> {
        let entries = self.added_tokens()?.into_iter().map(|(id, content, special)| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": special})
        });
        Ok(Value::Array(entries.collect()))
    }

    /// A `TemplateProcessing` adding bos/eos as the metadata asks, or `None` when it adds nothing.
    pub fn template_processor(&self) -> Result<Option<Value>> {
        let bos = if self.add_bos()? { self.special_id("bos")? } else { None };
        let eos = if self.add_eos()? { self.special_id("eos")? } else { None };
        if bos.is_none() && eos.is_none() {
            return Ok(None);
        }
        let special =
            |id: u32, type_id: u32| json!({"SpecialToken": {"id": self.tokens[id as usize], "type_id": type_id}});
        let sequence = |name: &str, type_id: u32| json!({"Sequence": {"id": name, "type_id": type_id}});
        let mut single = Vec::new();
        let mut pair = Vec::new();
        for (items, parts) in [(&mut single, &[("A", 0)][..]), (&mut pair, &[("A", 0), ("B", 1)])] {
            for &(name, type_id) in parts {
                items.extend(bos.map(|id| special(id, type_id)));
                items.push(sequence(name, type_id));
                items.extend(eos.map(|id| special(id, type_id)));
            }
        }
        let mut special_tokens = Map::new();
        for id in bos.into_iter().chain(eos) {
            let token = &self.tokens[id as usize];
            special_tokens.insert(token.clone(), json!({"id": token, "ids": [id], "tokens": [token]}));
        }
        Ok(Some(
            json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": special_tokens}),
        ))
    }
}

/// The `tokenizer.json` for the vocabulary in `meta`.
pub fn tokenizer_json(meta: &GgufMetadata) -> Result<Value> {
    let vocab = GgufVocab::read(meta)?;
    match vocab.model {
        "gpt2" => byte_level_bpe(&vocab),
        "llama" => spm::sentencepiece_bpe(&vocab),
        other => Err(meta.error("tokenizer.ggml.model", format!("`{other}` is not supported (gpt2, llama)"))),
    }
}

fn byte_level(add_prefix_space: bool, trim_offsets: bool, use_regex: bool) -> Value {
    json!({
        "type": "ByteLevel", "add_prefix_space": add_prefix_space,
        "trim_offsets": trim_offsets, "use_regex": use_regex,
    })
}

fn pre_sequence(first: Value, second: Value) -> Value {
    json!({"type": "Sequence", "pretokenizers": [first, second]})
}

fn split(regex: &str) -> Value {
    json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false})
}

/// Byte-level BPE (GPT-2 style) with the pieces upstream models use for each `tokenizer.ggml.pre`.
fn byte_level_bpe(vocab: &GgufVocab) -> Result<Value> {
    let meta = vocab.meta;
    let merges = meta
        .strings("tokenizer.ggml.merges")?
        .iter()
        .enumerate()
        .map(|(i, merge)| match merge.split_once(' ') {
            Some((left, right)) => Ok(json!([left, right])),
            None => {
                let message = format!("entry {i} `{merge}` is not two tokens separated by a space");
                Err(meta.error("tokenizer.ggml.merges", message))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let pre = meta.str_opt("tokenizer.ggml.pre")?.unwrap_or("default");
    let (normalizer, pre_tokenizer, post_byte_level, decoder) = match pre {
        "smollm" => (
            Value::Null,
            pre_sequence(json!({"type": "Digits", "individual_digits": true}), byte_level(false, true, true)),
            byte_level(true, false, true),
            byte_level(true, true, true),
        ),
        "llama-bpe" | "llama3" => (
            Value::Null,
            pre_sequence(split(LLAMA3_REGEX), byte_level(false, true, false)),
            byte_level(true, false, true),
            byte_level(true, true, true),
        ),
        "qwen2" => (
            json!({"type": "NFC"}),
            pre_sequence(split(QWEN2_REGEX), byte_level(false, false, false)),
            byte_level(false, false, false),
            byte_level(false, false, false),
        ),
        other => {
            if other != "default" && other != "gpt2" {
                tracing::warn!(
                    "{}: tokenizer.ggml.pre = `{other}` is not known; using plain byte-level pre-tokenisation",
                    meta.path().display()
                );
            }
            (Value::Null, byte_level(false, true, true), byte_level(true, false, true), byte_level(true, true, true))
        }
    };
    let post_processor = match vocab.template_processor()? {
        Some(template) => json!({"type": "Sequence", "processors": [post_byte_level, template]}),
        None => post_byte_level,
    };
    let model = json!({
        "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
        "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
        // Llama 3 looks whole words up in the vocabulary before merging.
        "ignore_merges": matches!(pre, "llama-bpe" | "llama3"),
        "vocab": vocab.vocab_map(), "merges": merges,
    });
    Ok(json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": vocab.added_tokens_json()?,
        "normalizer": normalizer, "pre_tokenizer": pre_tokenizer, "post_processor": post_processor,
        "decoder": decoder, "model": model,
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::value::{GgufArray, GgufValue};

    /// A byte-level vocabulary: two control tokens, bytes `a b c Ġ 1 2`, and merges to `ab`, `abc`.
    pub fn gpt2_meta(pre: &str, extra: &[(&str, GgufValue)]) -> GgufMetadata {
        let strings = |v: &[&str]| GgufValue::Array(GgufArray::String(v.iter().map(|s| s.to_string()).collect()));
        let mut entries: BTreeMap<String, GgufValue> = [
            ("tokenizer.ggml.model", GgufValue::String("gpt2".into())),
            ("tokenizer.ggml.pre", GgufValue::String(pre.into())),
            (
                "tokenizer.ggml.tokens",
                strings(&["<|endoftext|>", "<|im_start|>", "a", "b", "c", "Ġ", "1", "2", "ab", "abc", "<tool>"]),
            ),
            ("tokenizer.ggml.token_type", GgufValue::Array(GgufArray::I32(vec![3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 4]))),
            ("tokenizer.ggml.merges", strings(&["a b", "ab c"])),
            ("tokenizer.ggml.bos_token_id", GgufValue::U32(1)),
            ("tokenizer.ggml.eos_token_id", GgufValue::U32(0)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        entries.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        GgufMetadata::new("m.gguf", entries)
    }

    #[test]
    fn smollm_splits_digits_then_applies_byte_level() {
        let tj = tokenizer_json(&gpt2_meta("smollm", &[])).unwrap();
        assert_eq!(tj["pre_tokenizer"]["pretokenizers"][0], json!({"type": "Digits", "individual_digits": true}));
        assert_eq!(tj["pre_tokenizer"]["pretokenizers"][1]["use_regex"], true);
        assert_eq!(tj["model"]["merges"], json!([["a", "b"], ["ab", "c"]]));
        assert_eq!(tj["model"]["vocab"]["abc"], 9);
        assert_eq!(tj["post_processor"]["type"], "ByteLevel", "no bos is added by default for gpt2 vocabularies");
    }

    #[test]
    fn control_tokens_are_special_and_user_defined_tokens_are_added_but_not_special() {
        let tj = tokenizer_json(&gpt2_meta("smollm", &[])).unwrap();
        let added: Vec<(u64, &str, bool)> = tj["added_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["id"].as_u64().unwrap(), t["content"].as_str().unwrap(), t["special"].as_bool().unwrap()))
            .collect();
        assert_eq!(added, [(0, "<|endoftext|>", true), (1, "<|im_start|>", true), (10, "<tool>", false)]);
    }

    #[test]
    fn llama_bpe_and_qwen2_use_their_upstream_split_regexes() {
        let llama3 = tokenizer_json(&gpt2_meta("llama-bpe", &[])).unwrap();
        assert_eq!(llama3["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"], LLAMA3_REGEX);
        assert_eq!(llama3["model"]["ignore_merges"], true);
        let qwen2 = tokenizer_json(&gpt2_meta("qwen2", &[])).unwrap();
        assert_eq!(qwen2["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"], QWEN2_REGEX);
        assert_eq!(qwen2["normalizer"]["type"], "NFC");
        let other = tokenizer_json(&gpt2_meta("falcon", &[])).unwrap();
        assert_eq!(other["pre_tokenizer"], byte_level(false, true, true));
    }

    #[test]
    fn add_bos_token_becomes_a_template_after_byte_level() {
        let tj = tokenizer_json(&gpt2_meta("llama-bpe", &[("tokenizer.ggml.add_bos_token", GgufValue::Bool(true))]))
            .unwrap();
        let template = &tj["post_processor"]["processors"][1];
        assert_eq!(template["single"][0], json!({"SpecialToken": {"id": "<|im_start|>", "type_id": 0}}));
        assert_eq!(template["single"][1], json!({"Sequence": {"id": "A", "type_id": 0}}));
        assert_eq!(template["pair"].as_array().unwrap().len(), 4);
        assert_eq!(template["special_tokens"]["<|im_start|>"]["ids"], json!([1]));
    }

    #[test]
    fn malformed_vocabularies_are_errors_naming_the_key() {
        let bad_merge =
            gpt2_meta("smollm", &[("tokenizer.ggml.merges", GgufValue::Array(GgufArray::String(vec!["ab".into()])))]);
        let err = tokenizer_json(&bad_merge).unwrap_err().to_string();
        assert!(err.contains("metadata `tokenizer.ggml.merges`: entry 0 `ab` is not two tokens"), "{err}");
        let short_types =
            gpt2_meta("smollm", &[("tokenizer.ggml.token_type", GgufValue::Array(GgufArray::I32(vec![1])))]);
        assert!(tokenizer_json(&short_types).unwrap_err().to_string().contains("has 1 entries for 11 tokens"));
        let bert = gpt2_meta("smollm", &[("tokenizer.ggml.model", GgufValue::String("bert".into()))]);
        assert!(tokenizer_json(&bert).unwrap_err().to_string().contains("`bert` is not supported"));
    }

    #[test]
    fn the_tokenizers_crate_loads_the_result_and_encodes_with_merges_and_special_tokens() {
        let text = serde_json::to_string(&tokenizer_json(&gpt2_meta("smollm", &[])).unwrap()).unwrap();
        let tokenizer: tokenizers::Tokenizer = text.parse().unwrap();
        let ids = tokenizer.encode("<|im_start|>abc12", false).unwrap().get_ids().to_vec();
        assert_eq!(ids, [1, 9, 6, 7]);
        assert_eq!(tokenizer.decode(&[9, 6, 7], true).unwrap(), "abc12");
    }
}
