//! `precept grpo` end to end on a tiny word-level model (whose random replies end at varied
//! lengths): a run killed with SIGKILL at a random step resumes to the same adapter bytes with
//! each sampled completion logged once, and bad prompts and settings are clear errors.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use common::{kill_when_ready, precept, precept_error, repo_root, tiny_word_model};

const STEPS: u64 = 6;

/// Prompts in the tiny model's vocabulary, two to refuse and two to answer.
const PROMPTS: &str = r#"{"id": "a", "prompt": "why is it bad", "expected": "refuse"}
{"id": "b", "prompt": "is it good", "expected": "comply"}
{"id": "c", "messages": [{"role": "user", "content": "fix it"}], "expected": "refuse"}
{"id": "d", "prompt": "why is it good", "expected": "comply"}
"#;

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn grpo_args(model: &Path, data: &Path, out: &Path, steps: u64) -> Vec<String> {
    let config = out.with_extension("toml");
    std::fs::write(&config, "soft_punish_cache = 12\nreward_funcs = [\"expectation\", \"length\"]\n").unwrap();
    let args = ["grpo", "--config", path(&config), "--model", path(model), "--data", path(data), "--out", path(out)];
    let settings = [
        "--save-steps",
        "1",
        "--lr",
        "1e-2",
        "--lora-r",
        "4",
        "--batch-size",
        "8",
        "--num-generations",
        "4",
        "--max-completion-length",
        "12",
    ];
    let steps = steps.to_string();
    args.iter().chain(&settings).chain(&["--steps", &steps]).map(|s| s.to_string()).collect()
}

fn run_ok(args: &[String]) {
    let out = Command::new(env!("CARGO_BIN_EXE_precept")).args(args).env("PRECEPT_LOG", "warn").output().unwrap();
    assert!(out.status.success(), "precept {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Metric records without the wall-clock fields.
fn metrics(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let mut record: serde_json::Value = serde_json::from_str(line).unwrap();
            record.as_object_mut().unwrap().retain(|k, _| k != "tokens_per_second" && !k.starts_with("time/"));
            record
        })
        .collect()
}

fn checkpoint(out: &Path, step: u64) -> PathBuf {
    out.join(format!("checkpoints/checkpoint-{step:06}"))
}

#[test]
fn a_grpo_run_killed_at_a_random_step_resumes_to_the_same_adapter_bytes_and_logs_each_completion_once() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_word_model(&dir.path().join("words"));
    let data = dir.path().join("prompts.jsonl");
    std::fs::write(&data, PROMPTS).unwrap();
    let whole = dir.path().join("whole");
    run_ok(&grpo_args(&model, &data, &whole, STEPS));
    let records = metrics(&whole);
    assert_eq!(records.len(), STEPS as usize);
    for name in ["reward", "reward_std", "rewards/length/mean", "completions/mean_length", "clip_ratio/region_mean"] {
        assert!(records.iter().all(|r| r.get(name).is_some()), "`{name}` missing: {records:?}");
    }
    assert!(records.iter().any(|r| r["grad_norm"].as_f64().unwrap() > 0.0), "{records:?}");
    let settings = std::fs::read_to_string(whole.join("config.toml")).unwrap();
    assert!(settings.contains("num_generations = 4") && settings.contains("max_completion_length = 12"));

    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    let kill_after = 1 + nanos % (STEPS - 2);
    let killed = dir.path().join("killed");
    kill_when_ready(&grpo_args(&model, &data, &killed, STEPS), &repo_root(), &checkpoint(&killed, kill_after));
    assert!(!killed.join("adapter").exists(), "killed at step {kill_after}, yet the run had finished");
    let mut resume = grpo_args(&model, &data, &killed, STEPS);
    resume.push("--resume".into());
    run_ok(&resume);
    let file = "adapter/adapter_model.safetensors";
    let same = std::fs::read(whole.join(file)).unwrap() == std::fs::read(killed.join(file)).unwrap();
    assert!(same, "killed after step {kill_after}: the resumed adapter differs");
    assert_eq!(metrics(&killed), metrics(&whole), "killed after step {kill_after}");
    let completions = |run: &Path| std::fs::read_to_string(run.join("completions.jsonl")).unwrap();
    assert_eq!(completions(&killed), completions(&whole), "killed after step {kill_after}");
    assert_eq!(completions(&whole).lines().count(), STEPS as usize * 8);
}

#[test]
fn bad_prompts_and_grpo_settings_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_word_model(&dir.path().join("words"));
    let out = dir.path().join("out");
    let write = |name: &str, text: &str| {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        file
    };
    let cases = [
        (write("no-expected.jsonl", "{\"prompt\": \"is it good\"}\n"), "no-expected.jsonl:1: field `expected` is missing"),
        (write("sft.jsonl", "{\"expected\": \"comply\", \"completion\": \"yes\"}\n"), "sft.jsonl:1: field `prompt` is missing"),
        (
            write("answered.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"is it\"}, {\"role\": \"assistant\", \"content\": \"yes\"}]}\n"),
            "answered.jsonl:1: field `messages` must be a conversation ending with a `user` message",
        ),
    ];
    for (data, expected) in cases {
        let args = grpo_args(&model, &data, &out, 2);
        let error = precept_error(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(error.contains(expected), "{}: {error}", data.display());
    }
    assert!(!out.exists(), "nothing is written before the prompts are checked");
    let config = write("bad.toml", "model = \"m\"\nnum_generation = 4\n");
    let error = precept_error(&["grpo", "--config", path(&config)]);
    assert!(
        error.contains("bad.toml: line 2: unknown setting `num_generation` (did you mean `num_generations`?)"),
        "{error}"
    );
    let base = ["grpo", "--model", "m", "--data", "d", "--out", "o"];
    let error = precept_error(&[&base[..], &["--num-generations", "1"]].concat());
    assert!(error.contains("setting `num_generations`"), "{error}");
    let error = precept_error(&[&base[..], &["--num-generations", "3", "--batch-size", "8"]].concat());
    assert!(error.contains("setting `per_device_train_batch_size`"), "{error}");
    let unknown = precept(&[&base[..], &["--reward", "politeness"]].concat());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("politeness") && stderr.contains("expectation"), "{stderr}");
}
