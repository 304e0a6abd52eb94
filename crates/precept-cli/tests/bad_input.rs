//! Bad input gets a clear error naming the file and the datum, exit code 1, never a panic.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test

mod common;

use std::path::Path;

use common::{precept, precept_error};

const TINY_CONFIG: &str = r#"{"model_type":"llama","vocab_size":64,"hidden_size":32,"intermediate_size":48,
  "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":16,
  "rms_norm_eps":1e-5,"rope_theta":10000.0,"tie_word_embeddings":true}"#;

/// A minimal word-level tokenizer.json with a few words and `<eos>`.
const TINY_TOKENIZER: &str = r#"{"version":"1.0","truncation":null,"padding":null,
  "added_tokens":[{"id":0,"content":"<eos>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
  "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
  "model":{"type":"WordLevel","vocab":{"<eos>":0,"hello":1,"world":2,"[UNK]":3},"unk_token":"[UNK]"}}"#;

/// Writes a random tiny model (config, weights, tokenizer) into `dir`.
fn tiny_model(dir: &Path) {
    std::fs::write(dir.join("config.json"), TINY_CONFIG).unwrap();
    std::fs::write(dir.join("tokenizer.json"), TINY_TOKENIZER).unwrap();
    let config = dir.join("config.json");
    let out = precept(&["random-weights", "--config", config.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn logits_error(dir: &Path, ids: &str) -> String {
    precept_error(&["logits", "--model", dir.to_str().unwrap(), "--ids", ids])
}

#[test]
fn a_tiny_random_model_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path());
    let out = common::precept_json(&[
        "logits",
        "--model",
        dir.path().to_str().unwrap(),
        "--ids",
        "1,2,3",
        "--top",
        "3",
        "--json",
    ]);
    assert_eq!(common::ids(&out["top_ids"]).len(), 3);
}

#[test]
fn truncated_safetensors_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path());
    let weights = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let err = logits_error(dir.path(), "1,2");
    assert!(err.contains("model.safetensors: invalid safetensors file"), "{err}");
}

#[test]
fn a_wrong_tensor_shape_names_the_tensor_and_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path());
    std::fs::write(
        dir.path().join("config.json"),
        TINY_CONFIG.replace("\"intermediate_size\":48", "\"intermediate_size\":40"),
    )
    .unwrap();
    let err = logits_error(dir.path(), "1,2");
    assert!(
        err.contains("tensor `model.layers.0.mlp.gate_proj.weight` has shape [48, 32], expected [40, 32]"),
        "{err}"
    );
}

#[test]
fn a_missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path());
    std::fs::write(
        dir.path().join("config.json"),
        TINY_CONFIG.replace("\"tie_word_embeddings\":true", "\"tie_word_embeddings\":false"),
    )
    .unwrap();
    let err = logits_error(dir.path(), "1,2");
    assert!(err.contains("tensor `lm_head.weight` is missing"), "{err}");
}

#[test]
fn missing_config_weights_and_tokenizer_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = logits_error(dir.path(), "1");
    assert!(err.contains("no config.json found"), "{err}");
    std::fs::write(dir.path().join("config.json"), TINY_CONFIG).unwrap();
    let err = logits_error(dir.path(), "1");
    assert!(err.contains("no model.safetensors found"), "{err}");
    let err = precept_error(&["tokenize", "--model", dir.path().to_str().unwrap(), "--text", "hello"]);
    assert!(err.contains("tokenizer.json"), "{err}");
}

#[test]
fn out_of_vocabulary_ids_and_over_long_input_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path());
    let err = logits_error(dir.path(), "1,64");
    assert!(err.contains("token id 64 is outside the vocabulary of 64 ids"), "{err}");
    let err = logits_error(dir.path(), &vec!["1"; 17].join(","));
    assert!(err.contains("17 tokens exceed the model's 16 positions"), "{err}");
    let err = precept_error(&[
        "generate",
        "--model",
        dir.path().to_str().unwrap(),
        "--prompt",
        "hello world",
        "--max-new-tokens",
        "20",
    ]);
    assert!(err.contains("exceeds the model's 16 positions"), "{err}");
}

#[test]
fn a_broken_chat_template_is_an_error_naming_the_template() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path());
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"chat_template":"{% for m in messages %}{{ m.content "}"#,
    )
    .unwrap();
    let err = precept_error(&["tokenize", "--model", dir.path().to_str().unwrap(), "--chat", "--text", "hello"]);
    assert!(err.contains("tokenizer_config.json"), "{err}");
    assert!(err.to_lowercase().contains("template"), "{err}");
}

#[test]
fn chat_without_a_template_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path());
    let err = precept_error(&["tokenize", "--model", dir.path().to_str().unwrap(), "--chat", "--text", "hello"]);
    assert!(err.contains("no chat template"), "{err}");
}

#[test]
fn corrupt_gguf_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let bad_magic = dir.path().join("bad.gguf");
    let mut bytes = b"NOPE\x03\x00\x00\x00".to_vec();
    bytes.resize(64, 0);
    std::fs::write(&bad_magic, bytes).unwrap();
    let err = precept_error(&["import", "gguf", bad_magic.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(err.contains("bad.gguf: not a GGUF file"), "{err}");
    // A valid header that promises more tensors and metadata than the file holds.
    let mut truncated = b"GGUF".to_vec();
    truncated.extend(3u32.to_le_bytes());
    truncated.extend(u64::MAX.to_le_bytes());
    truncated.extend(u64::MAX.to_le_bytes());
    let short = dir.path().join("short.gguf");
    std::fs::write(&short, truncated).unwrap();
    let err = precept_error(&["import", "gguf", short.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(err.contains("short.gguf"), "{err}");
    assert!(!out.join("model.safetensors").exists());
}

#[test]
fn an_unavailable_device_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path());
    let err = precept_error(&["logits", "--model", dir.path().to_str().unwrap(), "--ids", "1", "--device", "cuda"]);
    assert!(err.contains("cuda"), "{err}");
}

#[test]
fn sampling_settings_that_define_no_distribution_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().to_str().unwrap();
    for (flag, value, expected) in [
        ("--temperature", "-0.5", "--temperature -0.5 must be a number of at least 0"),
        ("--top-p", "0", "--top-p 0 must be above 0 and at most 1"),
        ("--top-p", "1.5", "--top-p 1.5 must be above 0 and at most 1"),
        ("--repetition-penalty", "0", "--repetition-penalty 0 must be positive"),
    ] {
        let setting = format!("{flag}={value}");
        let err = precept_error(&["generate", "--model", model, "--prompt", "hi", &setting]);
        assert!(err.contains(expected), "{flag} {value}: {err}");
        if flag != "--repetition-penalty" {
            let err = precept_error(&["bench", "generate", "--model", model, &setting]);
            assert!(err.contains(expected), "bench {flag} {value}: {err}");
        }
    }
}

#[test]
fn bad_settings_files_and_missing_settings_of_every_command_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let unknown = file("c.toml", "rounds = 1\nfeedbak = true\n");
    let error = precept_error(&["constitute", "--config", &unknown]);
    assert!(error.contains("c.toml: line 2: unknown setting `feedbak` (did you mean `feedback`?)"), "{error}");
    let wrong_type = file("e.toml", "batch_size = \"many\"\n");
    let error = precept_error(&["eval", "--config", &wrong_type]);
    assert!(error.contains("e.toml") && error.contains("batch_size"), "{error}");
    let serve = file("s.toml", "max_batchs = 4\n");
    let error = precept_error(&["serve", "--config", &serve]);
    assert!(error.contains("s.toml: line 1: unknown setting `max_batchs` (did you mean `max_batch`?)"), "{error}");
    let missing = dir.path().join("absent.toml");
    let error = precept_error(&["constitute", "--config", missing.to_str().unwrap()]);
    assert!(error.contains("absent.toml"), "{error}");
    let error = precept_error(&["constitute", "--prompts", "p.jsonl", "--model", "m", "--out", "o"]);
    assert!(error.contains("setting `constitution` is required"), "{error}");
    let half = ["constitute", "--constitution", "c", "--prompts", "p", "--out", "o", "--remote", "http://h"];
    let error = precept_error(&half);
    assert!(error.contains("setting `remote_model`: is required with `remote`"), "{error}");
    let clamp = file("clamp.toml", "clamp = [0.4]\n");
    let error = precept_error(&["constitute", "--config", &clamp]);
    assert!(error.contains("clamp.toml") && error.contains("clamp"), "{error}");
    let error = precept_error(&["eval", "--model", "m"]);
    assert!(error.contains("setting `suite`: is required"), "{error}");
    let error = precept_error(&["serve"]);
    assert!(error.contains("setting `model`: is required"), "{error}");
}
