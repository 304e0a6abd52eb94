//! `precept constitute` on the real SmolLM2-135M-Instruct: its chat template carries the whole
//! critique conversation (multi-turn prompts included), AI feedback reads its option
//! probabilities, and `precept data check` accepts both outputs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test

mod common;

use common::{precept, smollm2_dir};

#[test]
fn constitute_runs_on_smollm2_with_feedback_and_a_multi_turn_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts.jsonl");
    std::fs::write(
        &prompts,
        concat!(
            r#"{"id":"hello","prompt":"Say hello in three words.","expected":"comply"}"#,
            "\n",
            r#"{"id":"turns","messages":[{"role":"user","content":"Name a colour."},{"role":"assistant","content":"Blue."},{"role":"user","content":"Name another one, in one word."}]}"#,
            "\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let root = common::package_dir().join("../..");
    let constitution = root.join("constitutions/harmless.toml");
    let model = smollm2_dir();
    let args = [
        "constitute",
        "--constitution",
        constitution.to_str().unwrap(),
        "--prompts",
        prompts.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--batch",
        "2",
        "--max-new-tokens",
        "24",
        "--no-few-shot",
        "--feedback",
        "--feedback-temperature",
        "0.7",
    ];
    let run = precept(&args);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["complete"], true);
    assert_eq!(manifest["counts"]["finished"], 2);
    let progress = std::fs::read_to_string(out.join("progress.jsonl")).unwrap();
    assert_eq!(progress.lines().count(), 2);
    // Every judged pair's label is the two orders' option probabilities averaged.
    for line in std::fs::read_to_string(out.join("prefs.jsonl")).unwrap().lines() {
        let pair: serde_json::Value = serde_json::from_str(line).unwrap();
        let judgement = &pair["provenance"]["feedback"];
        let (ab, ba) = (&judgement["first_as_a"], &judgement["first_as_b"]);
        for probabilities in [ab, ba] {
            let sum = probabilities[0].as_f64().unwrap() + probabilities[1].as_f64().unwrap();
            assert!((sum - 1.0).abs() < 1e-6, "{judgement}");
        }
        let label = (ab[0].as_f64().unwrap() + ba[1].as_f64().unwrap()) / 2.0;
        assert!((judgement["label"].as_f64().unwrap() - label).abs() < 1e-12, "{judgement}");
    }
    // Both outputs hold records, and `precept data check` accepts them for SFT and DPO.
    for (file, format) in [("sft.jsonl", "sft"), ("prefs.jsonl", "prefs")] {
        let path = out.join(file);
        assert!(!std::fs::read_to_string(&path).unwrap().is_empty(), "{file} is empty");
        let check =
            precept(&["data", "check", path.to_str().unwrap(), "--model", model.to_str().unwrap(), "--format", format]);
        let report = String::from_utf8_lossy(&check.stdout);
        assert!(check.status.success() && report.contains(" 0 invalid"), "{file}: {report}");
    }
    // A rerun finds everything finished and changes nothing.
    let before = std::fs::read(out.join("progress.jsonl")).unwrap();
    let rerun = precept(&args);
    assert!(rerun.status.success(), "{}", String::from_utf8_lossy(&rerun.stderr));
    assert_eq!(std::fs::read(out.join("progress.jsonl")).unwrap(), before);
}
