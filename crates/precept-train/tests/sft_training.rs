//! SFT runs end to end on a tiny random model with SmolLM2's tokenizer and chat template:
//! the loss falls, metrics and outputs are written, a resumed run ends bit-identical to an
//! uninterrupted one, and a diverging run stops with its step number.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test

mod common;

use std::path::Path;

use common::{comparable, copy_dir, metrics, root, serial, tiny_model_dir, A};
use precept_data::Silent;
use precept_train::sft::train_sft;
use precept_train::{TrainConfig, Tuning};
fn config(model: &Path, out: &Path, tuning: Tuning) -> TrainConfig {
    let mut config = TrainConfig {
        model: model.to_path_buf(),
        data: root().join("data/sft/example.jsonl"),
        out: out.to_path_buf(),
        tuning,
        learning_rate: 1e-2,
        max_steps: Some(6),
        per_device_train_batch_size: 2,
        save_steps: 2,
        save_total_limit: 10,
        ..TrainConfig::default()
    };
    config.lora.r = 4;
    config
}

#[test]
fn a_lora_run_lowers_the_loss_and_writes_metrics_checkpoints_and_a_peft_adapter() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(dir.path());
    let run = dir.path().join("run");
    let config =
        TrainConfig { max_steps: Some(12), eval_ratio: 0.25, merge: true, ..config(&model, &run, Tuning::Lora) };
    let outcome = train_sft::<A>(&config, &Default::default(), false, &mut Silent, None).unwrap();
    assert_eq!(outcome.steps, 12);

    let records = metrics(&run);
    let losses: Vec<f64> = records.iter().filter_map(|r| r.get("loss")?.as_f64()).collect();
    assert_eq!(losses.len(), 12);
    // A random tiny model starts near ln(49152) ≈ 10.8; adapters alone move it slowly.
    let (first, last) = (losses[..3].iter().sum::<f64>() / 3.0, losses[9..].iter().sum::<f64>() / 3.0);
    assert!(last < first - 0.1, "{losses:?}");
    let last = &records.iter().rev().find(|r| r.get("loss").is_some()).unwrap();
    for name in ["learning_rate", "grad_norm", "mean_token_accuracy", "num_tokens", "epoch", "step"] {
        assert!(last.get(name).is_some(), "metric `{name}` missing from {last}");
    }
    assert!(records.iter().any(|r| r.get("eval_loss").is_some()), "no eval_loss logged");
    assert!(outcome.eval_loss().is_some_and(f64::is_finite));

    for file in ["adapter_config.json", "adapter_model.safetensors"] {
        assert!(run.join("adapter").join(file).is_file(), "{file} missing");
    }
    assert!(run.join("merged/model.safetensors").is_file() && run.join("merged/tokenizer.json").is_file());
    assert!(run.join("config.toml").is_file());
    let kept: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept.len(), 6, "{kept:?}");
}

/// Runs `config` through step 6 in one go, and again from a copy of its step-2 checkpoint,
/// and compares the trained files byte for byte.
fn assert_resume_is_bit_identical(tuning: Tuning, trained_file: &str) {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(dir.path());
    let whole = dir.path().join("whole");
    let whole_config = config(&model, &whole, tuning);
    train_sft::<A>(&whole_config, &Default::default(), false, &mut Silent, None).unwrap();

    // An interrupted run: its folder as it stood after the step-2 checkpoint (a metrics line
    // from step 3 included, as a kill would leave it).
    let resumed = dir.path().join("resumed");
    std::fs::create_dir_all(resumed.join("checkpoints")).unwrap();
    copy_dir(&whole.join("checkpoints/checkpoint-000002"), &resumed.join("checkpoints/checkpoint-000002"));
    std::fs::copy(whole.join("config.toml"), resumed.join("config.toml")).unwrap();
    let lines: Vec<String> =
        std::fs::read_to_string(whole.join("metrics.jsonl")).unwrap().lines().take(3).map(String::from).collect();
    std::fs::write(resumed.join("metrics.jsonl"), lines.join("\n") + "\n").unwrap();

    let resumed_config = TrainConfig { out: resumed.clone(), ..whole_config };
    let outcome = train_sft::<A>(&resumed_config, &Default::default(), true, &mut Silent, None).unwrap();
    assert_eq!(outcome.steps, 6);
    let output = if tuning == Tuning::Lora { "adapter" } else { "model" };
    let a = std::fs::read(whole.join(output).join(trained_file)).unwrap();
    let b = std::fs::read(resumed.join(output).join(trained_file)).unwrap();
    assert!(a == b, "resumed weights differ from the uninterrupted run's");
    assert_eq!(comparable(metrics(&resumed)), comparable(metrics(&whole)));
}

#[test]
fn a_resumed_lora_run_ends_bit_identical_to_an_uninterrupted_one() {
    assert_resume_is_bit_identical(Tuning::Lora, "adapter_model.safetensors");
}

#[test]
fn a_resumed_full_fine_tune_ends_bit_identical_to_an_uninterrupted_one() {
    assert_resume_is_bit_identical(Tuning::Full, "model.safetensors");
}

#[test]
fn a_diverging_run_stops_with_its_step_and_keeps_the_last_good_checkpoint() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(dir.path());
    let run = dir.path().join("run");
    let config =
        TrainConfig { learning_rate: 1e30, save_steps: 1, max_grad_norm: None, ..config(&model, &run, Tuning::Full) };
    let error = train_sft::<A>(&config, &Default::default(), false, &mut Silent, None).unwrap_err().to_string();
    assert!(error.contains("is NaN") || error.contains("is inf"), "{error}");
    let step: u64 = error.strip_prefix("step ").unwrap().split(':').next().unwrap().parse().unwrap();
    assert!(step >= 2, "{error}");
    let last_good = run.join(format!("checkpoints/checkpoint-{:06}/model.safetensors", step - 1));
    assert!(last_good.is_file(), "{error}: {} missing", last_good.display());
}

#[test]
fn a_second_run_into_the_same_folder_needs_resume_and_the_same_settings() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(dir.path());
    let run = dir.path().join("run");
    let config = TrainConfig { max_steps: Some(2), ..config(&model, &run, Tuning::Lora) };
    train_sft::<A>(&config, &Default::default(), false, &mut Silent, None).unwrap();
    let again = train_sft::<A>(&config, &Default::default(), false, &mut Silent, None).unwrap_err().to_string();
    assert!(again.contains("already holds a run; pass --resume"), "{again}");
    let changed = TrainConfig { learning_rate: 1e-3, ..config };
    let error = train_sft::<A>(&changed, &Default::default(), true, &mut Silent, None).unwrap_err().to_string();
    assert!(error.contains("config.toml: the run was started with other settings"), "{error}");
}
