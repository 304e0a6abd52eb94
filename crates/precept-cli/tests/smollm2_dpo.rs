//! DPO on the real SmolLM2-135M-Instruct after a short SFT: 30 LoRA steps with the shipped
//! `configs/dpo.toml` on `data/prefs/example.jsonl` raise `rewards/margins` and
//! `rewards/accuracies` on the training pairs, and a rerun reads the cached reference back.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test

mod common;

use std::process::Command;

use common::{repo_root, smollm2_dir};
use serde_json::Value;

/// Runs precept from the repository root (where the shipped configs' relative paths point) and
/// returns its log.
fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_precept"))
        .args(args)
        .current_dir(repo_root())
        .env("PRECEPT_LOG", "info")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "precept {args:?}: {log}");
    log
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

#[test]
fn thirty_dpo_lora_steps_after_a_short_sft_learn_the_training_preferences() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let model = smollm2_dir().to_str().unwrap().to_string();
    run(&["sft", "--config", "configs/sft.toml", "--model", &model, "--out", &at("sft"), "--steps", "6"]
        .iter()
        .chain(&["--grad-accum", "1", "--merge"])
        .copied()
        .collect::<Vec<_>>());

    let cache = dir.path().join("cache");
    let settings = dir.path().join("dpo.toml");
    let shipped = std::fs::read_to_string(repo_root().join("configs/dpo.toml")).unwrap();
    let ours = shipped.replace("ref_cache_dir = \".precept-cache/reference\"", &format!("ref_cache_dir = {cache:?}"));
    std::fs::write(&settings, ours).unwrap();
    let merged = at("sft/merged");
    let dpo = |out: &str, steps: &str| {
        let args = ["dpo", "--config", settings.to_str().unwrap(), "--model", &merged, "--out", out, "--steps", steps];
        run(&args.iter().chain(&["--grad-accum", "1"]).copied().collect::<Vec<_>>())
    };
    let log = dpo(&at("dpo"), "30");
    assert!(log.contains("computed in") && log.contains("cached in"), "{log}");

    let metrics = std::fs::read_to_string(dir.path().join("dpo/metrics.jsonl")).unwrap();
    let steps: Vec<Value> = metrics
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r.get("loss").is_some())
        .collect();
    assert_eq!(steps.len(), 30);
    let series = |name: &str| steps.iter().map(|r| r[name].as_f64().unwrap()).collect::<Vec<f64>>();
    let (margins, accuracies, losses) = (series("rewards/margins"), series("rewards/accuracies"), series("loss"));
    // The policy starts as the reference: margins ≈ 0 and losses ≈ ln 2.
    assert!(margins[0].abs() < 1e-2 && (losses[0] - std::f64::consts::LN_2).abs() < 1e-2, "{margins:?}");
    let late = |v: &[f64]| mean(&v[25..]);
    assert!(late(&margins) > 0.1 && late(&margins) > mean(&margins[..3]) + 0.1, "margins {margins:?}");
    assert!(late(&accuracies) >= 0.9, "accuracies {accuracies:?}");
    assert!(late(&losses) < losses[0] - 0.05, "losses {losses:?}");
    assert!(dir.path().join("dpo/adapter/adapter_model.safetensors").is_file());
    assert!(dir.path().join("dpo/merged/model.safetensors").is_file());

    let again = dpo(&at("rerun"), "1");
    assert!(again.contains("read from the cache"), "{again}");
}
