//! `tokenizer_config.json` and `generation_config.json` from GGUF metadata.
//!
//! The special-token strings, `add_bos_token`/`add_eos_token`, the chat template
//! (`tokenizer.chat_template`) and the context length go to `tokenizer_config.json`; the
//! bos/eos/pad ids go to `generation_config.json`, with end-of-turn ids (`eot`, `eom`) listed
//! beside eos so generation stops on them too.

use serde_json::{json, Map, Value};

use crate::error::Result;
use crate::tokenizer::GgufVocab;
use crate::value::GgufMetadata;

/// The `tokenizer_config.json` for the vocabulary in `meta`.
pub fn tokenizer_config_json(meta: &GgufMetadata) -> Result<Value> {
    let vocab = GgufVocab::read(meta)?;
    let mut added = Map::new();
    for (id, content, special) in vocab.added_tokens()? {
        added.insert(
            id.to_string(),
            json!({"content": content, "lstrip": false, "normalized": false, "rstrip": false,
                   "single_word": false, "special": special}),
        );
    }
    let mut config = Map::new();
    config.insert("add_bos_token".into(), json!(vocab.add_bos()?));
    config.insert("add_eos_token".into(), json!(vocab.add_eos()?));
    config.insert("added_tokens_decoder".into(), Value::Object(added));
    for (field, name) in
        [("bos_token", "bos"), ("eos_token", "eos"), ("pad_token", "padding"), ("unk_token", "unknown")]
    {
        config.insert(field.into(), json!(vocab.special_token(name)?));
    }
    if let Some(template) = meta.str_opt("tokenizer.chat_template")? {
        config.insert("chat_template".into(), json!(template));
    }
    config.insert("clean_up_tokenization_spaces".into(), json!(false));
    if let Some(length) = context_length(meta)? {
        config.insert("model_max_length".into(), json!(length));
    }
    config.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
    Ok(Value::Object(config))
}

/// The `generation_config.json` for the vocabulary in `meta`: bos, eos (a list when end-of-turn
/// tokens differ from eos) and pad ids, each only when the file declares it.
pub fn generation_config_json(meta: &GgufMetadata) -> Result<Value> {
    let vocab = GgufVocab::read(meta)?;
    let mut config = Map::new();
    if let Some(bos) = vocab.special_id("bos")? {
        config.insert("bos_token_id".into(), json!(bos));
    }
    let stops = vocab.stop_ids()?;
    if let [eos] = stops[..] {
        config.insert("eos_token_id".into(), json!(eos));
    } else if !stops.is_empty() {
        config.insert("eos_token_id".into(), json!(stops));
    }
    if let Some(pad) = vocab.special_id("padding")? {
        config.insert("pad_token_id".into(), json!(pad));
    }
    Ok(Value::Object(config))
}

/// `<arch>.context_length`, if the file has an architecture and the key.
pub(crate) fn context_length(meta: &GgufMetadata) -> Result<Option<usize>> {
    match meta.str_opt("general.architecture")? {
        Some(arch) => meta.count_opt(&format!("{arch}.context_length")),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::tests::gpt2_meta;
    use crate::value::GgufValue;

    #[test]
    fn special_tokens_template_and_context_length_are_carried_over() {
        let meta = gpt2_meta(
            "smollm",
            &[
                ("general.architecture", GgufValue::String("llama".into())),
                ("llama.context_length", GgufValue::U32(8192)),
                ("tokenizer.chat_template", GgufValue::String("{{ messages }}".into())),
                ("tokenizer.ggml.add_bos_token", GgufValue::Bool(false)),
                ("tokenizer.ggml.padding_token_id", GgufValue::U32(0)),
            ],
        );
        let config = tokenizer_config_json(&meta).unwrap();
        assert_eq!(config["bos_token"], "<|im_start|>");
        assert_eq!(config["eos_token"], "<|endoftext|>");
        assert_eq!(config["pad_token"], "<|endoftext|>");
        assert_eq!(config["unk_token"], Value::Null);
        assert_eq!(config["chat_template"], "{{ messages }}");
        assert_eq!((config["add_bos_token"].clone(), config["add_eos_token"].clone()), (json!(false), json!(false)));
        assert_eq!(config["model_max_length"], 8192);
        assert_eq!(config["added_tokens_decoder"]["1"]["content"], "<|im_start|>");
        assert_eq!(config["added_tokens_decoder"]["10"]["special"], false);
    }

    #[test]
    fn generation_config_lists_end_of_turn_beside_eos() {
        let plain = generation_config_json(&gpt2_meta("smollm", &[])).unwrap();
        assert_eq!(plain, json!({"bos_token_id": 1, "eos_token_id": 0}));
        let with_eot = gpt2_meta("smollm", &[("tokenizer.ggml.eot_token_id", GgufValue::U32(10))]);
        assert_eq!(generation_config_json(&with_eot).unwrap()["eos_token_id"], json!([0, 10]));
    }

    #[test]
    fn special_ids_outside_the_vocabulary_are_ignored() {
        let meta = gpt2_meta("smollm", &[("tokenizer.ggml.padding_token_id", GgufValue::U32(4_000_000))]);
        assert_eq!(generation_config_json(&meta).unwrap().get("pad_token_id"), None);
        assert_eq!(tokenizer_config_json(&meta).unwrap()["pad_token"], Value::Null);
    }
}
