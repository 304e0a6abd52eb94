//! `precept constitute` and `precept constitution` end to end on a tiny random model: outputs
//! that `precept data check` accepts, and a run killed with SIGKILL that resumes to exactly the
//! records of an uninterrupted run.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{precept, precept_error, precept_json, tiny_word_model, TINY_CONSTITUTION};

/// Writes a random tiny model, a constitution and `prompts` prompts into `dir`; returns the
/// prompts file.
fn setup(dir: &Path, prompts: usize) -> PathBuf {
    tiny_word_model(&dir.join("model"));
    std::fs::write(dir.join("tiny.toml"), TINY_CONSTITUTION).unwrap();
    let file = dir.join("prompts.jsonl");
    write_prompts(&file, prompts);
    file
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn write_prompts(path: &Path, n: usize) {
    let words = ["yes", "no", "maybe", "is", "it", "good", "bad", "why"];
    let mut text = String::new();
    for i in 0..n {
        let prompt = format!("{} {} {}", words[i % 8], words[(i / 8) % 8], words[(i / 64) % 8]);
        text.push_str(&serde_json::json!({"id": format!("p{i}"), "prompt": prompt}).to_string());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// Sampled (temperature 1, seeded) so the random model ends some replies; batch 1 keeps each
/// prompt's draws independent of the others, so reruns reproduce them exactly.
fn constitute_args<'a>(dir: &'a Path, prompts: &'a str, out: &'a str) -> Vec<String> {
    let model = dir.join("model");
    let constitution = dir.join("tiny.toml");
    [
        "constitute",
        "--constitution",
        s(&constitution),
        "--prompts",
        prompts,
        "--model",
        s(&model),
        "--out",
        out,
        "--max-new-tokens",
        "40",
        "--temperature",
        "1",
        "--batch",
        "1",
        "--seed",
        "3",
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect()
}

/// Lines of a JSONL file, keyed by `prompt_id`; fails on a repeated id.
fn by_id(path: &Path) -> BTreeMap<String, serde_json::Value> {
    let mut lines = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = value["prompt_id"].as_str().unwrap().to_owned();
        assert!(lines.insert(id.clone(), value).is_none(), "{}: prompt {id} appears twice", path.display());
    }
    lines
}

#[test]
fn a_killed_run_resumes_to_exactly_the_records_of_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let total = 400;
    let prompts = setup(dir.path(), total);

    // The reference: one uninterrupted run.
    let straight = dir.path().join("straight");
    let out =
        precept(&constitute_args(dir.path(), s(&prompts), s(&straight)).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The same run, killed with SIGKILL once some prompts have finished, then run again.
    let killed = dir.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_precept"))
        .args(constitute_args(dir.path(), s(&prompts), s(&killed)))
        .env("PRECEPT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let progress = killed.join("progress.jsonl");
    let started = Instant::now();
    let finished_at_kill = loop {
        let finished = std::fs::read_to_string(&progress).map(|t| t.lines().count()).unwrap_or(0);
        if finished >= 20 {
            child.kill().unwrap();
            break finished;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        assert!(started.elapsed() < Duration::from_secs(120), "no progress within two minutes");
        std::thread::sleep(Duration::from_millis(5));
    };
    child.wait().unwrap();
    let after_kill = std::fs::read_to_string(&progress).unwrap().lines().count();
    assert!(after_kill < total, "the kill came after the run finished ({finished_at_kill} then {after_kill})");
    let out =
        precept(&constitute_args(dir.path(), s(&prompts), s(&killed)).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    for name in ["progress.jsonl", "sft.jsonl", "prefs.jsonl"] {
        let (reference, resumed) = (by_id(&straight.join(name)), by_id(&killed.join(name)));
        assert_eq!(resumed, reference, "{name} differs after kill and resume");
    }
    let finished: HashSet<String> = by_id(&killed.join("progress.jsonl")).into_keys().collect();
    assert_eq!(finished.len(), total);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(killed.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["complete"], true);
    assert_eq!(manifest["counts"]["finished"], total);
    assert_eq!(manifest["counts"]["sft"], by_id(&killed.join("sft.jsonl")).len());

    // The SFT output is valid training data for the model's template.
    let sft = killed.join("sft.jsonl");
    assert!(!by_id(&sft).is_empty(), "no prompt survived the filters");
    let model = dir.path().join("model");
    let out = precept(&["data", "check", s(&sft), "--model", s(&model)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn feedback_runs_write_judged_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = setup(dir.path(), 6);
    let out_dir = dir.path().join("out");
    let mut args = constitute_args(dir.path(), s(&prompts), s(&out_dir));
    args.extend(["--feedback", "--clamp", "0.4,0.6"].map(str::to_owned));
    let out = precept(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let prefs = by_id(&out_dir.join("prefs.jsonl"));
    assert!(!prefs.is_empty());
    for pair in prefs.values() {
        let judgement = &pair["provenance"]["feedback"];
        let (ab, ba) = (&judgement["first_as_a"], &judgement["first_as_b"]);
        let label = (ab[0].as_f64().unwrap() + ba[1].as_f64().unwrap()) / 2.0;
        let clamped = label.clamp(0.4, 0.6);
        assert!((judgement["label"].as_f64().unwrap() - clamped).abs() < 1e-12);
        assert!((pair["score"].as_f64().unwrap() - clamped.max(1.0 - clamped)).abs() < 1e-12);
        assert_eq!(pair["chosen"][0]["role"], "assistant");
    }
}

#[test]
fn bench_constitute_times_the_loop_apart_from_loading() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = setup(dir.path(), 5);
    let (model, constitution) = (dir.path().join("model"), dir.path().join("tiny.toml"));
    let report = precept_json(&[
        "bench",
        "constitute",
        "--model",
        s(&model),
        "--constitution",
        s(&constitution),
        "--prompts",
        s(&prompts),
        "--limit",
        "4",
        "--batch",
        "2",
        "--max-new-tokens",
        "8",
        "--json",
    ]);
    assert_eq!(report["prompts"], 4, "{report}");
    assert_eq!(report["batch"], 2);
    let (load, seconds) = (report["load_seconds"].as_f64().unwrap(), report["seconds"].as_f64().unwrap());
    assert!(load > 0.0 && seconds > 0.0, "{report}");
    let rate = report["records_per_minute"].as_f64().unwrap();
    assert!((rate - 4.0 / seconds * 60.0).abs() < 1e-9 * rate, "{report}");
    let kept_and_filtered = report["sft"].as_u64().unwrap() + report["filtered"].as_u64().unwrap();
    assert_eq!(kept_and_filtered, 4);
    let err = precept_error(&["bench", "constitute", "--model", s(&model), "--limit", "0"]);
    assert!(err.contains("--limit must be at least 1"), "{err}");
}

#[test]
fn constitution_check_names_file_and_line_and_import_writes_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\n[[principle]]\nid = \"a\"\ncritic = \"c\"\nrevision = \"r\"\n").unwrap();
    let out = precept(&["constitution", "check", s(&bad)]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "{}:4: [[principle]] `a`: unknown key `critic`; did you mean `critique`?",
            bad.display()
        )),
        "{stdout}"
    );

    let json = dir.path().join("anthropic.json");
    std::fs::write(&json, r#"{"harm": {"prompt": ["Is the reply harmful?"], "edit_request": "Make it harmless."}}"#)
        .unwrap();
    let toml = dir.path().join("imported.toml");
    let out = precept(&["constitution", "import", "--from", "anthropic", s(&json), "--out", s(&toml)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = precept(&["constitution", "check", s(&toml)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));

    let err = precept_error(&["constitution", "import", "--from", "hf", s(&json), "--out", s(&toml)]);
    assert!(err.contains("field `constitutions` must be"), "{err}");
}
