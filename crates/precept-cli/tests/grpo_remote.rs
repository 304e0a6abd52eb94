//! `precept grpo` with the `remote` reward on a tiny word-level model: a reward server started in
//! the test receives each completion with its prompt record's fields and its answers are the
//! logged rewards; a server that stops answering with numbers ends the run with an error naming
//! its URL and the completion, keeping what was written, and the run resumes once it answers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{precept, tiny_word_model};
use serde_json::Value;

const PROMPTS: &str = r#"{"id": "a", "prompt": "why is it bad", "expected": "refuse", "topic": "t1"}
{"id": "b", "prompt": "is it good", "expected": "comply", "topic": "t2"}
"#;

/// A loopback reward server: each POST body (JSON) is recorded and answered with `answer(index,
/// body)`, `index` counting requests from zero. Returns its URL and the bodies seen.
fn reward_server(answer: impl Fn(usize, &Value) -> String + Send + 'static) -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/score", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    let count = AtomicUsize::new(0);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
                line.clear();
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let body: Value = serde_json::from_slice(&body).unwrap();
            let text = answer(count.fetch_add(1, Ordering::SeqCst), &body);
            seen.lock().unwrap().push(body);
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", text.len());
            let _ = stream.write_all(format!("{head}{text}").as_bytes());
        }
    });
    (url, bodies)
}

/// The reward the good server gives: the completion's word count.
fn words(body: &Value) -> String {
    body["completion"].as_str().unwrap().split_whitespace().count().to_string()
}

fn grpo(model: &Path, data: &Path, out: &Path, url: &str, steps: &str, resume: bool) -> std::process::Output {
    let config = out.with_extension("toml");
    let settings = format!(
        "reward_funcs = [\"remote\", \"expectation\"]\nreward_weights = [0.1, 1.0]\n\
         [remote_reward]\nurl = \"{url}\"\ntimeout = 10\nretries = 0\nconcurrency = 2\n"
    );
    std::fs::write(&config, settings).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let mut args = vec!["grpo".to_owned(), "--config".into(), s(&config), "--model".into(), s(model)];
    args.extend(["--data".into(), s(data), "--out".into(), s(out)]);
    for flag in ["--save-steps", "1", "--lora-r", "4", "--batch-size", "4", "--num-generations", "2"] {
        args.push(flag.into());
    }
    args.extend(["--max-completion-length".into(), "8".into(), "--steps".into(), steps.into()]);
    if resume {
        args.push("--resume".into());
    }
    precept(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[test]
fn the_remote_reward_is_what_the_server_answers_for_each_completion_and_its_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_word_model(&dir.path().join("words"));
    let data = dir.path().join("prompts.jsonl");
    std::fs::write(&data, PROMPTS).unwrap();
    let (url, seen) = reward_server(|_, body| words(body));
    let out = dir.path().join("run");
    let ran = grpo(&model, &data, &out, &url, "2", false);
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));

    let completions = lines(&out.join("completions.jsonl"));
    assert_eq!(completions.len(), 8);
    for record in &completions {
        let expected = record["completion"].as_str().unwrap().split_whitespace().count() as f64;
        assert_eq!(record["rewards"]["remote"].as_f64(), Some(expected), "{record}");
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 8, "one request per completion");
    for body in seen.iter() {
        let topic = if body["id"] == "a" { "t1" } else { "t2" };
        assert_eq!(body["topic"], topic, "the record's own fields travel: {body}");
        assert!(body["prompt"].is_string() && body["completion"].is_string() && body["tokens"].is_u64(), "{body}");
        assert_eq!(body["messages"][0]["role"], "user", "{body}");
    }
    let metrics = lines(&out.join("metrics.jsonl"));
    assert!(metrics.iter().all(|m| m["rewards/remote/mean"].is_number()), "{metrics:?}");
}

#[test]
fn a_server_answering_no_number_stops_the_run_naming_it_and_the_run_resumes_once_it_answers() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_word_model(&dir.path().join("words"));
    let data = dir.path().join("prompts.jsonl");
    std::fs::write(&data, PROMPTS).unwrap();
    // Step 1's four completions get numbers, later ones text until the server is mended.
    let mended = Arc::new(AtomicBool::new(false));
    let fixed = mended.clone();
    let (url, _) =
        reward_server(
            move |index, body| {
                if index < 4 || fixed.load(Ordering::SeqCst) {
                    words(body)
                } else {
                    "\"great\"".into()
                }
            },
        );
    let out = dir.path().join("run");
    let failed = grpo(&model, &data, &out, &url, "3", false);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("reward `remote`: completion "), "{stderr}");
    assert!(stderr.contains(&format!("{url}: the answer is not a number")), "{stderr}");
    assert!(stderr.contains("\"great\""), "{stderr}");
    // Step 1 was kept: its checkpoint and its completions.
    assert!(out.join("checkpoints/checkpoint-000001").is_dir(), "{stderr}");
    assert_eq!(lines(&out.join("completions.jsonl")).len(), 4);

    mended.store(true, Ordering::SeqCst);
    let resumed = grpo(&model, &data, &out, &url, "3", true);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let completions = lines(&out.join("completions.jsonl"));
    let steps: Vec<u64> = completions.iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
}

#[test]
fn remote_reward_settings_are_checked_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("prompts.jsonl");
    std::fs::write(&data, PROMPTS).unwrap();
    let out = dir.path().join("run");
    let no_url = dir.path().join("no-url.toml");
    std::fs::write(&no_url, "reward_funcs = [\"remote\"]\n").unwrap();
    let bad_key = dir.path().join("bad-key.toml");
    std::fs::write(
        &bad_key,
        "reward_funcs = [\"remote\"]\n[remote_reward]\nurl = \"http://127.0.0.1:9/r\"\napi_key_env = \"PRECEPT_TEST_NO_SUCH_KEY\"\n",
    )
    .unwrap();
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "reward_funcs = [\"politeness\"]\n").unwrap();
    let cases = [
        (&no_url, "setting `remote_reward`: `reward_funcs` names `remote`; give its `url`"),
        (&bad_key, "the environment variable `PRECEPT_TEST_NO_SUCH_KEY` is not set"),
        (&unknown, "unknown variant `politeness`"),
    ];
    for (config, expected) in cases {
        let args = ["grpo", "--config", config.to_str().unwrap(), "--model", "m", "--num-generations", "2", "--data"];
        let out = precept(&[&args[..], &[data.to_str().unwrap(), "--out", out.to_str().unwrap()]].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
    assert!(!out.exists());
}
