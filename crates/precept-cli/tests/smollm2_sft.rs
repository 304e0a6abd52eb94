//! SFT on the real SmolLM2-135M-Instruct: 30 LoRA steps on the shipped data lower the loss on
//! the training examples, and the adapter and merged model are written.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test

mod common;

use common::{precept_json, repo_root, smollm2_dir};

#[test]
fn thirty_lora_steps_on_the_shipped_data_lower_the_training_loss() {
    let dir = tempfile::tempdir().unwrap();
    let data = repo_root().join("data/sft/assistant.jsonl");
    // The loss is measured on a fixed part of the training data, before and after.
    let measured: String = std::fs::read_to_string(&data).unwrap().lines().take(12).map(|l| format!("{l}\n")).collect();
    let eval = dir.path().join("measured.jsonl");
    std::fs::write(&eval, measured).unwrap();
    let config = dir.path().join("sft.toml");
    let toml = format!(
        "model = {:?}\ndata = {:?}\neval_data = {:?}\nout = {:?}\nmax_steps = 30\nlearning_rate = 1e-3\n\
         lr_scheduler_type = \"constant\"\nper_device_train_batch_size = 2\neval_on_start = true\nsave_steps = 30\nmerge = true\n",
        smollm2_dir(),
        data,
        eval,
        dir.path().join("run")
    );
    std::fs::write(&config, toml).unwrap();
    let outcome = precept_json(&["sft", "--config", config.to_str().unwrap(), "--json"]);
    assert_eq!(outcome["steps"], 30);

    let metrics = std::fs::read_to_string(dir.path().join("run/metrics.jsonl")).unwrap();
    let evals: Vec<f64> = metrics
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["eval_loss"].as_f64())
        .collect();
    let (before, after) = (evals[0], *evals.last().unwrap());
    assert!(after < before - 0.3, "loss on the measured examples: {before:.3} before, {after:.3} after");
    assert!(dir.path().join("run/adapter/adapter_model.safetensors").is_file());
    assert!(dir.path().join("run/merged/model.safetensors").is_file());
}
