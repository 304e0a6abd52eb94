//! Hostile input and hostile clients (the hardening issue): absurd sizes, overflowing counts,
//! closed pipes, unbounded settings and records all end in a clear error or a clean exit, never
//! a panic, an abort or a hang.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test

mod common;

use std::path::Path;

use common::{precept, precept_error, tiny_word_model};

/// `dir/config.json` with `field` set to `value` (a JSON literal).
fn set_config_field(dir: &Path, field: &str, value: &str) {
    let path = dir.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config[field] = serde_json::from_str(value).unwrap();
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
}

#[test]
fn a_million_layers_in_config_json_is_an_error_naming_the_layers_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_word_model(dir.path());
    set_config_field(&model, "num_hidden_layers", "1000000");
    let err = precept_error(&["logits", "--model", model.to_str().unwrap(), "--ids", "1"]);
    assert!(err.contains("config.json: this model (num_hidden_layers = 1000000,"), "{err}");
    set_config_field(&model, "num_hidden_layers", "5");
    let err = precept_error(&["logits", "--model", model.to_str().unwrap(), "--ids", "1"]);
    assert!(err.contains("config.json: field `num_hidden_layers`: 5 but model.safetensors holds 2 layers"), "{err}");
}

#[test]
fn two_to_the_31_positions_are_refused_before_the_rotary_tables_are_built() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_word_model(dir.path());
    set_config_field(&model, "max_position_embeddings", "2147483648");
    set_config_field(&model, "head_dim", "1024");
    let err = precept_error(&["logits", "--model", model.to_str().unwrap(), "--ids", "1"]);
    assert!(err.contains("max_position_embeddings = 2147483648) needs"), "{err}");
    let config = model.join("config.json");
    let out = dir.path().join("random");
    let err = precept_error(&["random-weights", "--config", config.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(err.contains("max_position_embeddings = 2147483648) needs"), "{err}");
    assert!(!out.exists());
}

#[test]
fn max_new_tokens_of_u64_max_is_an_error_not_a_wrapped_sum() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_word_model(dir.path());
    let err = precept_error(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "hello",
        "--max-new-tokens",
        "18446744073709551615",
    ]);
    assert!(err.contains("+ 18446744073709551615 new tokens exceeds the model's"), "{err}");
}

#[test]
fn serve_refuses_a_reachable_address_without_a_key_before_saying_it_serves() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_word_model(dir.path());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_precept"))
        .args(["serve", "--model", model.to_str().unwrap(), "--addr", "0.0.0.0:0"])
        .env("PRECEPT_LOG", "info")
        .env_remove("PRECEPT_API_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is reachable from other machines: set an API key"), "{stderr}");
    assert!(!stderr.contains("serving"), "{stderr}");
}

#[test]
fn a_closed_stdout_ends_every_printing_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_word_model(dir.path());
    let model = model.to_str().unwrap();
    for args in [
        vec!["logits", "--model", model, "--ids", "1,2,3", "--top", "8"],
        vec!["logits", "--model", model, "--ids", "1,2,3", "--json"],
        vec!["tokenize", "--model", model, "--text", "yes no maybe"],
        vec!["generate", "--model", model, "--prompt", "yes", "--max-new-tokens", "20"],
    ] {
        let out = common::precept_with_closed_stdout(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

#[test]
fn a_full_stdout_is_one_error_line_not_a_panic() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_word_model(dir.path());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_precept"))
        .args(["logits", "--model", model.to_str().unwrap(), "--ids", "1,2", "--json"])
        .env("PRECEPT_LOG", "warn")
        .stdout(full)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end(), "error: writing to stdout: No space left on device (os error 28)");
}

#[test]
fn data_check_of_an_empty_file_is_an_error_naming_it_and_a_byte_order_mark_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_word_model(&dir.path().join("model"));
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "\n\n").unwrap();
    let err = precept_error(&["data", "check", empty.to_str().unwrap(), "--model", model.to_str().unwrap()]);
    assert!(err.contains("empty.jsonl: the file holds no records (it is empty or has only blank lines)"), "{err}");
    let bom = dir.path().join("bom.jsonl");
    std::fs::write(&bom, "\u{feff}{\"prompt\": \"is it good\", \"completion\": \"yes\"}\n").unwrap();
    let out = precept(&["data", "check", bom.to_str().unwrap(), "--model", model.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 records, 1 examples, 0 invalid"));
}
