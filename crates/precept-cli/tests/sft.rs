//! `precept sft`, `precept merge` and `precept serve --adapter` end to end on a tiny model: a run
//! killed with SIGKILL at a random step resumes to the same bytes as an uninterrupted run; bad
//! data, settings and models are clear errors that leave earlier checkpoints intact.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test

mod common;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use common::{kill_when_ready, precept, precept_error, repo_root, tiny_chat_model, Served};

const STEPS: u64 = 12;

fn sft_args(model: &Path, data: &Path, out: &Path, steps: u64) -> Vec<String> {
    let args = ["sft", "--model", path(model), "--data", path(data), "--out", path(out), "--steps", &steps.to_string()];
    let settings = ["--save-steps", "1", "--lr", "1e-2", "--lora-r", "4", "--batch-size", "2"];
    args.iter().chain(&settings).map(|s| s.to_string()).collect()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn run_ok(args: &[String]) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = precept(&args);
    assert!(out.status.success(), "precept {args:?}: {}", String::from_utf8_lossy(&out.stderr));
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
fn a_run_killed_at_a_random_step_resumes_to_the_same_adapter_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_chat_model(dir.path());
    let data = repo_root().join("data/sft/example.jsonl");
    let whole = dir.path().join("whole");
    run_ok(&sft_args(&model, &data, &whole, STEPS));

    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    let kill_after = 2 + nanos % (STEPS - 4);
    let killed = dir.path().join("killed");
    kill_when_ready(&sft_args(&model, &data, &killed, STEPS), &repo_root(), &checkpoint(&killed, kill_after));
    assert!(!killed.join("adapter").exists(), "killed at step {kill_after}, yet the run had finished");

    let mut resume = sft_args(&model, &data, &killed, STEPS);
    resume.push("--resume".into());
    run_ok(&resume);
    let file = "adapter/adapter_model.safetensors";
    let same = std::fs::read(whole.join(file)).unwrap() == std::fs::read(killed.join(file)).unwrap();
    assert!(same, "killed after step {kill_after}: the resumed adapter differs");
    assert_eq!(metrics(&killed), metrics(&whole), "killed after step {kill_after}");
}

#[test]
fn merge_folds_the_adapter_into_a_model_that_generates() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_chat_model(dir.path());
    let data = repo_root().join("data/sft/example.jsonl");
    let run = dir.path().join("run");
    let mut args = sft_args(&model, &data, &run, 2);
    args.push("--merge".into());
    run_ok(&args);
    let merged = dir.path().join("merged");
    let adapter = run.join("adapter");
    run_ok(&["merge", "--base", path(&model), "--adapter", path(&adapter), "--out", path(&merged)].map(String::from));
    let from_merge = std::fs::read(merged.join("model.safetensors")).unwrap();
    let from_sft = std::fs::read(run.join("merged/model.safetensors")).unwrap();
    assert!(from_merge == from_sft, "`precept merge` and `sft --merge` disagree");
    let generated = precept(&["generate", "--model", path(&merged), "--prompt", "hi", "--max-new-tokens", "3"]);
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));

    // `precept serve --adapter` folds the adapter in at start-up: it answers as the merged folder.
    let ask = |server: &Served| {
        let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 6, "temperature": 0});
        let mut response =
            ureq::post(format!("{}/v1/chat/completions", server.url)).send_json(body).expect("the server answers");
        let reply: serde_json::Value = response.body_mut().read_json().expect("a chat completion");
        reply["choices"][0]["message"]["content"].as_str().expect("content").to_owned()
    };
    let adapted = Served::start_with(&model, "m", &["--adapter", path(&adapter)]);
    let folded = Served::start(&merged, "m");
    assert_eq!(ask(&adapted), ask(&folded));
}

#[test]
fn bad_data_settings_and_models_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_chat_model(dir.path());
    let write = |name: &str, bytes: &[u8]| {
        let file = dir.path().join(name);
        std::fs::write(&file, bytes).unwrap();
        file
    };
    let good = r#"{"prompt":"Hi","completion":"Hello."}"#;
    let cases: Vec<(PathBuf, &str)> = vec![
        (write("json.jsonl", format!("{good}\n{{\"prompt\": \n").as_bytes()), "json.jsonl:2"),
        (write("field.jsonl", br#"{"promt":"Hi","completion":"Hello."}"#), "json.jsonl:1"),
        (write("role.jsonl", br#"{"messages":[{"role":"wizard","content":"Hi"}]}"#), "role.jsonl:1"),
        (write("utf8.jsonl", b"{\"prompt\":\"\xff\xfe\",\"completion\":\"x\"}\n"), "utf8.jsonl:1"),
        (write("empty.jsonl", br#"{"prompt":"Hi","completion":""}"#), "empty.jsonl:1"),
    ];
    for (data, expected) in cases {
        let out = dir.path().join("out");
        let args = sft_args(&model, &data, &out, STEPS);
        let error = precept_error(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let expected = expected.replace("json.jsonl:1", "field.jsonl:1");
        assert!(error.contains(&expected), "{}: {error}", data.display());
    }

    let data = write("ok.jsonl", good.as_bytes());
    let config = write("bad.toml", b"model = \"m\"\nlearning_rat = 1e-4\n");
    let error = precept_error(&["sft", "--config", path(&config)]);
    assert!(error.contains("bad.toml") && error.contains("line 2") && error.contains("learning_rat"), "{error}");
    let error = precept_error(&["sft", "--model", path(&model), "--data", path(&data), "--out", "o", "--lr=-1"]);
    assert!(error.contains("setting `learning_rate`: must be a positive number"), "{error}");
    let error =
        precept_error(&["sft", "--model", "nowhere", "--data", path(&data), "--out", path(&dir.path().join("o"))]);
    assert!(error.contains("nowhere"), "{error}");
    let mut args = sft_args(&model, &data, &dir.path().join("long"), STEPS);
    args.extend(["--max-length".to_string(), "3".to_string()]);
    let error = precept_error(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(error.contains("no training examples left"), "{error}");
}

#[test]
fn a_failed_resume_leaves_the_checkpoints_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_chat_model(dir.path());
    let data = dir.path().join("data.jsonl");
    std::fs::copy(repo_root().join("data/sft/example.jsonl"), &data).unwrap();
    let out = dir.path().join("run");
    let mut args = sft_args(&model, &data, &out, 2);
    run_ok(&args);
    let before = std::fs::read(checkpoint(&out, 2).join("adapter_model.safetensors")).unwrap();
    std::fs::write(&data, b"{\"messages\": [}\n").unwrap();
    args.push("--resume".into());
    let error = precept_error(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(error.contains("data.jsonl:1"), "{error}");
    let after = std::fs::read(checkpoint(&out, 2).join("adapter_model.safetensors")).unwrap();
    assert!(before == after, "the checkpoint changed");
}
