//! `precept dpo` end to end on a tiny model: a run killed with SIGKILL at a random step resumes
//! to the same adapter bytes, a rerun reads the cached reference back, and bad settings and data
//! are clear errors.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use common::{kill_when_ready, precept_error, repo_root, tiny_chat_model};

const STEPS: u64 = 10;

fn dpo_args(model: &Path, out: &Path, cache: &Path, steps: u64) -> Vec<String> {
    let data = repo_root().join("data/prefs/example.jsonl");
    let config = out.with_extension("toml");
    std::fs::write(&config, format!("ref_cache_dir = {:?}\nmax_length = 256\n", path(cache))).unwrap();
    let args = ["dpo", "--config", path(&config), "--model", path(model), "--data", path(&data), "--out", path(out)];
    let settings = ["--save-steps", "1", "--lr", "1e-2", "--lora-r", "4", "--batch-size", "2", "--beta", "0.5"];
    let steps = steps.to_string();
    args.iter().chain(&settings).chain(&["--steps", &steps]).map(|s| s.to_string()).collect()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs precept with its informational log on and returns the log (stderr).
fn run_ok(args: &[String]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_precept")).args(args).env("PRECEPT_LOG", "info").output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "precept {args:?}: {log}");
    log
}

fn checkpoint(out: &Path, step: u64) -> PathBuf {
    out.join(format!("checkpoints/checkpoint-{step:06}"))
}

/// Metric records without the wall-clock rate.
fn metrics(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let mut record: serde_json::Value = serde_json::from_str(line).unwrap();
            record.as_object_mut().unwrap().remove("tokens_per_second");
            record
        })
        .collect()
}

#[test]
fn a_dpo_run_killed_at_a_random_step_resumes_to_the_same_adapter_bytes_and_reuses_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_chat_model(dir.path());
    let cache = dir.path().join("cache");
    let whole = dir.path().join("whole");
    let log = run_ok(&dpo_args(&model, &whole, &cache, STEPS));
    assert!(log.contains("computed") && log.contains("cached in"), "{log}");
    let last = metrics(&whole).into_iter().rev().find(|r| r.get("loss").is_some()).unwrap();
    for name in ["rewards/accuracies", "rewards/margins", "logps/chosen", "logits/rejected", "grad_norm"] {
        assert!(last.get(name).is_some(), "`{name}` missing from {last}");
    }

    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    let kill_after = 2 + nanos % (STEPS - 4);
    let killed = dir.path().join("killed");
    kill_when_ready(&dpo_args(&model, &killed, &cache, STEPS), &repo_root(), &checkpoint(&killed, kill_after));
    assert!(!killed.join("adapter").exists(), "killed at step {kill_after}, yet the run had finished");

    let mut resume = dpo_args(&model, &killed, &cache, STEPS);
    resume.push("--resume".into());
    let log = run_ok(&resume);
    assert!(log.contains("read from the cache"), "{log}");
    let file = "adapter/adapter_model.safetensors";
    let same = std::fs::read(whole.join(file)).unwrap() == std::fs::read(killed.join(file)).unwrap();
    assert!(same, "killed after step {kill_after}: the resumed adapter differs");
    assert_eq!(metrics(&killed), metrics(&whole), "killed after step {kill_after}");
}

#[test]
fn bad_preference_data_and_settings_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_chat_model(dir.path());
    let cache = dir.path().join("cache");
    let write = |name: &str, bytes: &[u8]| {
        let file = dir.path().join(name);
        std::fs::write(&file, bytes).unwrap();
        file
    };
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            write("missing.jsonl", br#"{"prompt":"Hi","chosen":"Hello."}"#),
            "missing.jsonl:1: field `rejected` is missing",
        ),
        (write("sft.jsonl", br#"{"prompt":"Hi","completion":"Hello."}"#), "sft.jsonl:1: field `chosen` is missing"),
        (write("utf8.jsonl", b"{\"prompt\":\"\xff\",\"chosen\":\"a\",\"rejected\":\"b\"}\n"), "utf8.jsonl:1"),
    ];
    for (data, expected) in cases {
        let mut args = dpo_args(&model, &dir.path().join("out"), &cache, 2);
        let at = args.iter().position(|a| a == "--data").unwrap() + 1;
        args[at] = path(&data).to_string();
        let error = precept_error(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(error.contains(expected), "{}: {error}", data.display());
    }
    let config = write("bad.toml", b"model = \"m\"\nbetta = 0.1\n");
    let error = precept_error(&["dpo", "--config", path(&config)]);
    assert!(error.contains("bad.toml: line 2: unknown setting `betta` (did you mean `beta`?)"), "{error}");
    let error =
        precept_error(&["dpo", "--model", "m", "--data", "d", "--out", "o", "--method", "simpo", "--loss", "ipo"]);
    assert!(error.contains("setting `loss`"), "{error}");
    let error = precept_error(&["dpo", "--model", "m", "--data", "d", "--out", "o", "--beta", "0"]);
    assert!(error.contains("setting `beta`: must be a positive number"), "{error}");
    let error = precept_error(&["dpo", "--model", "m", "--data", "d", "--out", "o", "--packing"]);
    assert!(error.contains("setting `packing`"), "{error}");
}
