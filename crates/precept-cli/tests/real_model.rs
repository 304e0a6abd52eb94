//! End-to-end checks of the CLI on the real SmolLM2-135M-Instruct against transformers' figures.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test

mod common;

use common::{floats, ids, oracle, precept_json, smollm2_dir};

const PROMPTS: [&str; 3] = ["plain", "chat", "unicode"];

fn model() -> String {
    smollm2_dir().display().to_string()
}

#[test]
fn token_ids_equal_transformers_for_every_oracle_prompt() {
    for name in PROMPTS {
        let reference = oracle(name);
        let out =
            precept_json(&["tokenize", "--model", &model(), "--text", reference["text"].as_str().unwrap(), "--json"]);
        assert_eq!(ids(&out["ids"]), ids(&reference["token_ids"]), "{name}");
    }
}

#[test]
fn chat_template_renders_byte_for_byte_what_transformers_renders() {
    let reference = oracle("chat");
    let user = reference["messages"][0]["content"].as_str().unwrap();
    let out = precept_json(&["tokenize", "--model", &model(), "--chat", "--text", user, "--json"]);
    assert_eq!(out["text"], reference["text"]);
    assert_eq!(ids(&out["ids"]), ids(&reference["token_ids"]));
}

#[test]
fn last_position_logits_match_transformers() {
    for name in PROMPTS {
        let reference = oracle(name);
        let input: Vec<String> = ids(&reference["token_ids"]).iter().map(u32::to_string).collect();
        let out = precept_json(&["logits", "--model", &model(), "--ids", &input.join(","), "--top", "60", "--json"]);
        let (ours, our_logits) = (ids(&out["top_ids"]), floats(&out["top_logits"]));
        let (theirs, their_logits) = (ids(&reference["top50_ids"]), floats(&reference["top50_logits"]));
        assert_eq!(ours[..10], theirs[..10], "{name}: top-10 order");
        let mut max_diff = 0f64;
        for (id, logit) in theirs.iter().zip(&their_logits) {
            let position =
                ours.iter().position(|o| o == id).unwrap_or_else(|| panic!("{name}: id {id} not in our top 60"));
            max_diff = max_diff.max((our_logits[position] - logit).abs());
        }
        // Measured 1.6e-5 to 3.2e-5; the margin allows another CPU's summation order.
        assert!(max_diff < 2e-4, "{name}: max |Δlogit| on the top 50 = {max_diff}");
        let (ours, theirs) =
            (out["sequence_logprob"].as_f64().unwrap(), reference["sequence_logprob"].as_f64().unwrap());
        assert!((ours - theirs).abs() < 1e-3, "{name}: sequence log-prob {ours} vs {theirs}");
    }
}

/// The oracle's greedy ids up to and including the first end-of-turn token (id 2), where
/// precept stops.
fn expected_greedy(name: &str) -> Vec<u32> {
    let greedy = ids(&oracle(name)["greedy_ids"]);
    match greedy.iter().position(|&t| t == 2) {
        Some(eos) => greedy[..=eos].to_vec(),
        None => greedy,
    }
}

/// With f32 decoding weights, and with bf16 ones (whose slightly shifted logits still make the
/// same choices here).
#[test]
fn batched_greedy_generation_matches_transformers_for_every_prompt() {
    let texts: Vec<String> = PROMPTS.iter().map(|n| oracle(n)["text"].as_str().unwrap().to_owned()).collect();
    let model = model();
    for decode_weights in ["f32", "bf16"] {
        let mut args: Vec<String> =
            ["--decode-weights", decode_weights, "generate", "--model", &model, "--max-new-tokens", "32", "--json"]
                .map(String::from)
                .to_vec();
        for text in &texts {
            args.extend(["--prompt".to_string(), text.clone()]);
        }
        let out = common::precept(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<serde_json::Value> =
            String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        for (name, line) in PROMPTS.iter().zip(&lines) {
            assert_eq!(ids(&line["prompt_ids"]), ids(&oracle(name)["token_ids"]), "{name}");
            assert_eq!(ids(&line["generated_ids"]), expected_greedy(name), "{name}, {decode_weights} decoding weights");
        }
    }
}

#[test]
fn chat_generation_answers_and_stops_at_end_of_turn() {
    let user = oracle("chat")["messages"][0]["content"].as_str().unwrap().to_owned();
    let out = precept_json(&["generate", "--model", &model(), "--chat", "--prompt", &user, "--json"]);
    assert_eq!(out["finish_reason"], "eos");
    assert_eq!(out["text"], "The capital of France is Paris.");
    let stopped =
        precept_json(&["generate", "--model", &model(), "--chat", "--prompt", &user, "--stop", "France", "--json"]);
    assert_eq!(stopped["finish_reason"], "stop");
    assert_eq!(stopped["text"], "The capital of ");
}

#[test]
fn data_check_validates_every_record_and_names_file_line_and_field() {
    let example = common::package_dir().join("../../data/sft/example.jsonl");
    let example = example.to_str().unwrap();
    let report = precept_json(&["data", "check", example, "--model", &model(), "--json"]);
    assert_eq!((report["records"].as_u64(), report["errors"].as_u64()), (Some(4), Some(0)));
    assert!(report["trained_tokens"].as_u64().unwrap() > 0);

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    let good = std::fs::read_to_string(example).unwrap();
    let lines = [
        r#"{"messages":[{"role":"user","content":"hi"},{"role":"bot","content":"x"}]}"#,
        "not json",
        r#"{"prompt":"a"}"#,
    ];
    std::fs::write(&bad, format!("{}\n{good}", lines.join("\n"))).unwrap();
    let stdout =
        String::from_utf8(common::precept(&["data", "check", bad.to_str().unwrap(), "--model", &model()]).stdout)
            .unwrap();
    let err = common::precept_error(&["data", "check", bad.to_str().unwrap(), "--model", &model()]);
    assert!(err.contains("bad.jsonl: 3 invalid record(s)"), "{err}");
    assert!(stdout.contains("bad.jsonl:1: field `messages[1].role`: unknown role `bot`"), "{stdout}");
    assert!(stdout.contains("bad.jsonl:2: invalid JSON"), "{stdout}");
    assert!(stdout.contains("bad.jsonl:3: field `completion` is missing"), "{stdout}");
}

#[test]
fn data_check_validates_preference_pairs_and_names_file_line_and_field() {
    let example = common::package_dir().join("../../data/prefs/example.jsonl");
    let example = example.to_str().unwrap();
    let report = precept_json(&["data", "check", example, "--model", &model(), "--format", "prefs", "--json"]);
    assert_eq!((report["pairs"].as_u64(), report["errors"].as_u64()), (Some(40), Some(0)));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("prefs.jsonl");
    let lines = [
        r#"{"prompt":"Hi","chosen":"Hello"}"#,
        r#"{"prompt":"Hi","chosen":"Hello","rejected":[{"role":"assistant","content":"x"}]}"#,
        r#"{"prompt":"Hi","chosen":"Hello","rejected":"Bye"}"#,
    ];
    std::fs::write(&bad, lines.join("\n")).unwrap();
    let out = common::precept(&["data", "check", bad.to_str().unwrap(), "--model", &model(), "--format", "prefs"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("prefs.jsonl:1: field `rejected` is missing"), "{stdout}");
    assert!(stdout.contains("prefs.jsonl:2: field `rejected` must be a string"), "{stdout}");
    assert!(stdout.contains("1 pairs (2 conversations), 2 invalid"), "{stdout}");
}

/// Issue 23: `precept generate … | head -1` ends quietly once the reader has gone, in both the
/// streamed and the JSON output, instead of panicking on the failed write.
#[test]
fn generate_exits_cleanly_when_its_stdout_is_closed() {
    for extra in [&[][..], &["--json"][..]] {
        let model = model();
        let args = [&["generate", "--model", model.as_str(), "--prompt", "Hello", "--max-new-tokens", "4"][..], extra]
            .concat();
        // The reader goes away before the model has even loaded, so every write finds the pipe closed.
        let out = common::precept_with_closed_stdout(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{extra:?}: {:?} {stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{extra:?}: {stderr}");
    }
}
