//! Preference runs end to end on a tiny random model with SmolLM2's tokenizer and chat template
//! and `data/prefs/example.jsonl`: DPO starts at ln 2 and learns the preferences, the cached
//! reference equals the live one and is reused, a resumed run ends bit-identical, and SimPO and
//! ORPO train.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test

mod common;

use std::path::Path;

use common::{comparable, copy_dir, metrics, root, serial, tiny_model_dir, A};
use precept_data::{ProgressEvent, ProgressSink, Silent};
use precept_train::dpo::{train_dpo, DpoConfig, PreferenceMethod};
use precept_train::{TrainConfig, Tuning};
use serde_json::Value;

/// Collects the notes of the progress events.
#[derive(Default)]
struct Notes(Vec<String>);

impl ProgressSink for Notes {
    fn report(&mut self, event: ProgressEvent<'_>) {
        if let ProgressEvent::Note(message) = event {
            self.0.push(message.to_string());
        }
    }
}

fn config(model: &Path, out: &Path, cache: &Path) -> DpoConfig {
    let mut train = TrainConfig {
        model: model.to_path_buf(),
        data: root().join("data/prefs/example.jsonl"),
        out: out.to_path_buf(),
        tuning: Tuning::Lora,
        learning_rate: 1e-2,
        max_steps: Some(6),
        per_device_train_batch_size: 4,
        max_length: 128,
        save_steps: 2,
        save_total_limit: 10,
        ..TrainConfig::default()
    };
    train.lora.r = 4;
    DpoConfig { train, ref_cache_dir: cache.to_path_buf(), ..DpoConfig::default() }
}

fn series(records: &[Value], name: &str) -> Vec<f64> {
    records.iter().filter(|r| r.get("loss").is_some()).filter_map(|r| r.get(name)?.as_f64()).collect()
}

#[test]
fn dpo_starts_at_ln_2_and_learns_the_training_preferences() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(dir.path());
    let run = dir.path().join("run");
    let mut config = DpoConfig { beta: 0.5, ..config(&model, &run, &dir.path().join("cache")) };
    config.train.max_steps = Some(20);
    config.train.learning_rate = 2e-2;
    config.train.per_device_train_batch_size = 8;
    config.train.eval_ratio = 0.2;
    config.train.eval_on_start = true;
    let outcome = train_dpo::<A>(&config, &Default::default(), false, &mut Silent, None).unwrap();
    assert_eq!(outcome.steps, 20);

    let records = metrics(&run);
    let losses = series(&records, "loss");
    // Fresh adapters leave the policy equal to the reference: every pair's loss is ln 2.
    assert!((losses[0] - std::f64::consts::LN_2).abs() < 1e-5, "{losses:?}");
    assert!(series(&records, "rewards/margins")[0].abs() < 1e-4);
    let accuracies = series(&records, "rewards/accuracies");
    let margins = series(&records, "rewards/margins");
    let late = |v: &[f64]| v[15..].iter().sum::<f64>() / 5.0;
    assert!(late(&losses) < losses[0] - 0.1, "{losses:?}");
    assert!(late(&accuracies) > 0.7 && late(&margins) > 0.1, "{accuracies:?} {margins:?}");
    let last = records.iter().rev().find(|r| r.get("loss").is_some()).unwrap();
    for name in [
        "rewards/chosen",
        "rewards/rejected",
        "logps/chosen",
        "logps/rejected",
        "logits/chosen",
        "logits/rejected",
        "learning_rate",
        "grad_norm",
        "num_tokens",
    ] {
        assert!(last.get(name).is_some_and(|v| v.as_f64().is_some_and(f64::is_finite)), "`{name}` missing: {last}");
    }
    let evals: Vec<&Value> = records.iter().filter(|r| r.get("eval_loss").is_some()).collect();
    assert!((evals[0]["eval_loss"].as_f64().unwrap() - std::f64::consts::LN_2).abs() < 1e-5, "{:?}", evals[0]);
    assert!(evals.last().unwrap().get("eval_rewards/accuracies").is_some());
    assert!(outcome.eval_loss().is_some_and(f64::is_finite));
    assert!(run.join("adapter/adapter_model.safetensors").is_file());
}

#[test]
fn the_cached_reference_equals_the_live_one_and_a_rerun_reads_it_back() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(dir.path());
    let cache = dir.path().join("cache");
    let mut notes = Notes::default();
    let cached = config(&model, &dir.path().join("cached"), &cache);
    train_dpo::<A>(&cached, &Default::default(), false, &mut notes, None).unwrap();
    assert!(notes.0.iter().any(|n| n.contains("computed") && n.contains("cached in")), "{:?}", notes.0);

    let mut again = Notes::default();
    let rerun = config(&model, &dir.path().join("rerun"), &cache);
    train_dpo::<A>(&rerun, &Default::default(), false, &mut again, None).unwrap();
    assert!(again.0.iter().any(|n| n.contains("read from the cache")), "{:?}", again.0);
    assert_eq!(comparable(metrics(&dir.path().join("rerun"))), comparable(metrics(&dir.path().join("cached"))));

    // The policy with its adapters switched off at every step gives the same numbers.
    let live_dir = dir.path().join("live");
    let live = DpoConfig { precompute_ref_log_probs: false, ..config(&model, &live_dir, &cache) };
    train_dpo::<A>(&live, &Default::default(), false, &mut Silent, None).unwrap();
    for name in ["loss", "rewards/margins", "rewards/chosen", "grad_norm"] {
        let (a, b) = (series(&metrics(&live_dir), name), series(&metrics(&dir.path().join("cached")), name));
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-4 * (1.0 + y.abs())), "{name}: {a:?} vs {b:?}");
    }
}

#[test]
fn a_resumed_dpo_run_ends_bit_identical_to_an_uninterrupted_one() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(dir.path());
    let cache = dir.path().join("cache");
    let whole = dir.path().join("whole");
    let whole_config = config(&model, &whole, &cache);
    train_dpo::<A>(&whole_config, &Default::default(), false, &mut Silent, None).unwrap();

    let resumed = dir.path().join("resumed");
    copy_dir(&whole.join("checkpoints/checkpoint-000002"), &resumed.join("checkpoints/checkpoint-000002"));
    std::fs::copy(whole.join("config.toml"), resumed.join("config.toml")).unwrap();
    // Without its cache the reference is recomputed, to the same numbers.
    std::fs::remove_dir_all(&cache).unwrap();
    let resumed_config =
        DpoConfig { train: TrainConfig { out: resumed.clone(), ..whole_config.train.clone() }, ..whole_config };
    let outcome = train_dpo::<A>(&resumed_config, &Default::default(), true, &mut Silent, None).unwrap();
    assert_eq!(outcome.steps, 6);
    let file = "adapter/adapter_model.safetensors";
    assert!(std::fs::read(whole.join(file)).unwrap() == std::fs::read(resumed.join(file)).unwrap());
    let tail = |records: Vec<Value>| {
        comparable(records).into_iter().filter(|r| r["step"].as_u64() > Some(2)).collect::<Vec<_>>()
    };
    assert_eq!(tail(metrics(&resumed)), tail(metrics(&whole)));
}

#[test]
fn simpo_and_orpo_train_without_a_reference() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(dir.path());
    for method in [PreferenceMethod::Simpo, PreferenceMethod::Orpo] {
        let run = dir.path().join(format!("{method:?}"));
        let mut config = DpoConfig { method, beta: 2.0, ..config(&model, &run, &dir.path().join("cache")) };
        config.train.max_steps = Some(12);
        let mut notes = Notes::default();
        train_dpo::<A>(&config, &Default::default(), false, &mut notes, None).unwrap();
        assert!(!notes.0.iter().any(|n| n.contains("reference")), "reference-free methods compute none: {:?}", notes.0);
        let losses = series(&metrics(&run), "loss");
        let late = losses[9..].iter().sum::<f64>() / 3.0;
        assert!(late < losses[0] - 0.05, "{method:?}: {losses:?}");
    }
}

#[test]
fn a_full_fine_tune_against_a_separate_reference_model_runs_and_bad_settings_are_named() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(dir.path());
    let run = dir.path().join("full");
    let mut config = DpoConfig {
        ref_model: Some(model.clone()),
        precompute_ref_log_probs: false,
        ..config(&model, &run, &dir.path().join("cache"))
    };
    config.train.tuning = Tuning::Full;
    config.train.learning_rate = 1e-3;
    config.train.max_steps = Some(2);
    train_dpo::<A>(&config, &Default::default(), false, &mut Silent, None).unwrap();
    let losses = series(&metrics(&run), "loss");
    assert!((losses[0] - std::f64::consts::LN_2).abs() < 1e-5, "{losses:?}");
    assert!(run.join("model/model.safetensors").is_file());

    let missing = DpoConfig { ref_model: Some(dir.path().join("absent")), ..config.clone() };
    let other = dir.path().join("other");
    let missing = DpoConfig { train: TrainConfig { out: other, ..missing.train.clone() }, ..missing };
    let error = format!("{:#}", train_dpo::<A>(&missing, &Default::default(), false, &mut Silent, None).unwrap_err());
    assert!(error.contains("absent"), "{error}");
    let too_long = DpoConfig {
        train: TrainConfig { max_length: 512, out: dir.path().join("long"), ..config.train.clone() },
        ..config.clone()
    };
    let error = train_dpo::<A>(&too_long, &Default::default(), false, &mut Silent, None).unwrap_err().to_string();
    assert!(
        error.contains("setting `max_length`: rows of up to") && error.contains("max_position_embeddings (128)"),
        "{error}"
    );
    let sft_data = DpoConfig {
        train: TrainConfig {
            data: root().join("data/sft/example.jsonl"),
            out: dir.path().join("sft"),
            ..config.train.clone()
        },
        ..config
    };
    let error = train_dpo::<A>(&sft_data, &Default::default(), false, &mut Silent, None).unwrap_err().to_string();
    assert!(error.contains("example.jsonl:1") && error.contains("chosen"), "{error}");
}
