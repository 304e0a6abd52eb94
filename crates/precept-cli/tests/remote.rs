//! `precept constitute` and `precept eval` against `precept serve` started on loopback: remote
//! generation gives the records and verdicts a local run gives, and a constitute run whose server
//! is killed fails naming the server, then resumes against a new one to the same records.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{precept, tiny_word_model, Served, TINY_CONSTITUTION};
use serde_json::Value;

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn write_prompts(path: &Path, n: usize) {
    let words = ["yes", "no", "maybe", "is", "it", "good", "bad", "why"];
    let lines: Vec<String> = (0..n)
        .map(|i| {
            let prompt = format!("{} {} {}", words[i % 8], words[(i / 8) % 8], words[(i / 64) % 8]);
            serde_json::json!({"id": format!("p{i}"), "prompt": prompt}).to_string()
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// Sampled with a seed, one prompt per batch: a local row and a server request then draw from
/// identically seeded generators, so local and remote runs must agree token for token.
fn constitute_args(dir: &Path, out: &str, generator: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["constitute", "--constitution", s(&dir.join("tiny.toml")), "--prompts"]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
    args.push(s(&dir.join("prompts.jsonl")).to_owned());
    for a in ["--out", out, "--max-new-tokens", "24", "--temperature", "1", "--batch", "1", "--seed", "3"] {
        args.push(a.to_owned());
    }
    args.extend(generator.iter().map(|a| (*a).to_owned()));
    args
}

/// JSONL lines keyed by `prompt_id`, with the `model` provenance (a folder or `remote:NAME`)
/// left out.
fn records(path: &Path) -> BTreeMap<String, Value> {
    fn strip(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.remove("model");
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|line| {
            let mut value: Value = serde_json::from_str(line).unwrap();
            strip(&mut value);
            (value["prompt_id"].as_str().unwrap().to_owned(), value)
        })
        .collect()
}

fn run(args: &[String]) -> std::process::Output {
    precept(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn constitute_through_precept_serve_matches_a_local_run_and_resumes_after_the_server_dies() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_word_model(&dir.path().join("model"));
    std::fs::write(dir.path().join("tiny.toml"), TINY_CONSTITUTION).unwrap();
    let total = 150;
    write_prompts(&dir.path().join("prompts.jsonl"), total);

    let local = dir.path().join("local");
    let out = run(&constitute_args(dir.path(), s(&local), &["--model", s(&model)]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A remote run whose server is killed part-way: the client retries once, then fails.
    let remote = dir.path().join("remote");
    let server = Served::start(&model, "tiny");
    let remote_args = |url: &str| {
        constitute_args(dir.path(), s(&remote), &["--remote", url, "--remote-model", "tiny", "--remote-retries", "1"])
    };
    let mut client = Command::new(env!("CARGO_BIN_EXE_precept"))
        .args(remote_args(&server.url))
        .env("PRECEPT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let progress = remote.join("progress.jsonl");
    let started = Instant::now();
    while std::fs::read_to_string(&progress).map_or(0, |t| t.lines().count()) < 10 {
        assert!(client.try_wait().unwrap().is_none(), "the run ended before the server could be killed");
        assert!(started.elapsed() < Duration::from_secs(120), "no progress within two minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(server);
    let failed = client.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "the run finished although its server was killed");
    assert!(stderr.contains("/v1/chat/completions: no answer after 2 attempts"), "{stderr}");
    let done_before = std::fs::read_to_string(&progress).unwrap().lines().count();
    assert!(done_before < total);

    // A new server (another port): the rerun resumes and ends with the local run's records.
    let server = Served::start(&model, "tiny");
    let out = Command::new(env!("CARGO_BIN_EXE_precept"))
        .args(remote_args(&server.url))
        .env("PRECEPT_LOG", "info")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains(&format!("resuming: {done_before} of {total} prompts already finished")), "{log}");
    for name in ["progress.jsonl", "sft.jsonl", "prefs.jsonl"] {
        assert_eq!(records(&remote.join(name)), records(&local.join(name)), "{name}: remote and local runs differ");
    }
    assert!(!records(&remote.join("sft.jsonl")).is_empty(), "no prompt survived the filters");
}

#[test]
fn eval_of_a_served_model_equals_eval_of_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_word_model(&dir.path().join("model"));
    let cases: Vec<String> = (0..12)
        .map(|i| {
            let (expected, words) = if i % 2 == 0 { ("refuse", "why bad") } else { ("comply", "is it good") };
            format!(r#"{{"id":"c{i}","category":"c","prompt":"{words} {i}","expected":"{expected}"}}"#)
        })
        .collect();
    std::fs::write(dir.path().join("cases.jsonl"), cases.join("\n") + "\n").unwrap();
    let suite = dir.path().join("suite.toml");
    std::fs::write(
        &suite,
        "cases = [\"cases.jsonl\"]\nframings = [\"direct\"]\n[generation]\nmax_new_tokens = 8\nbatch_size = 4\n\
         [judge]\nkind = \"keywords\"\nrefusal_phrases = [\"no\"]\n",
    )
    .unwrap();
    let server = Served::start(&model, "tiny");
    let eval = |out: &str, tuned: &[&str]| {
        let mut args = vec!["eval", "--suite", s(&suite), "--baseline", s(&model), "--no-cache", "--out", out];
        args.extend_from_slice(tuned);
        let output = precept(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        // Twelve cases cannot show a difference: the gate says underpowered (exit code 4).
        assert_eq!(output.status.code(), Some(4), "{stderr}");
    };
    let local = dir.path().join("local");
    let remote = dir.path().join("remote");
    eval(s(&local), &["--model", s(&model), "--tuned-system", "be brief"]);
    eval(s(&remote), &["--remote", &server.url, "--remote-model", "tiny", "--tuned-system", "be brief"]);
    let replies = |dir: &Path| -> Vec<Value> {
        let report: Value = serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
        vec![report["comparison"].clone(), report["exit_code"].clone()]
    };
    assert_eq!(replies(&remote), replies(&local));
    let cases = |dir: &Path| std::fs::read_to_string(dir.join("cases.jsonl")).unwrap().replace(s(&model), "MODEL");
    let served = cases(&remote).replace(&format!("tiny at {}", server.url), "MODEL");
    assert_eq!(served, cases(&local));
}
