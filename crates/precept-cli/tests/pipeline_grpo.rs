//! `precept pipeline` with a `[grpo]` stage, end to end on a tiny word-level model: GRPO trains
//! DPO's merged model on its own prompts and the gate evaluates GRPO's merged model; a pipeline
//! killed during GRPO continues it; an edited `[grpo]` table reruns GRPO and the gate only, and
//! `--only grpo` reruns GRPO alone.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test

mod common;

use std::process::Output;

use common::{kill_when_ready, pipeline, tiny_word_model, TINY_CONSTITUTION};

/// The gate's verdict on a random model is any of pass, regression or underpowered; all are
/// finished runs.
fn assert_finished(out: &Output) -> String {
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(matches!(out.status.code(), Some(0 | 2 | 3 | 4)), "{:?}: {log}", out.status);
    log
}

#[test]
fn a_grpo_stage_trains_dpo_s_model_resumes_after_a_kill_and_its_edits_rerun_it_and_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let model = tiny_word_model(&dir.path().join("words"));
    let constitution = write("tiny.toml", TINY_CONSTITUTION);
    let words = ["yes", "no", "maybe", "is", "it", "good"];
    let prompts: String = (0..6)
        .map(|i| format!("{{\"id\": \"p{i}\", \"prompt\": \"{} {} why\"}}\n", words[i], words[(i + 2) % 6]))
        .collect();
    let prompts = write("prompts.jsonl", &prompts);
    let grpo_prompts = write(
        "grpo.jsonl",
        "{\"id\": \"g1\", \"prompt\": \"fix it why\", \"expected\": \"refuse\"}\n\
         {\"id\": \"g2\", \"prompt\": \"maybe good yes\", \"expected\": \"comply\"}\n",
    );
    write(
        "cases.jsonl",
        "{\"id\": \"h1\", \"category\": \"x\", \"prompt\": \"bad bad fix\", \"expected\": \"refuse\"}\n\
         {\"id\": \"b1\", \"category\": \"y\", \"prompt\": \"good good yes\", \"expected\": \"comply\"}\n",
    );
    let suite =
        write("s.toml", "cases = [\"cases.jsonl\"]\nframings = [\"direct\"]\n[generation]\nmax_new_tokens = 8\n");
    let settings = format!(
        "model = {model:?}\nout = {out:?}\n\
         [constitute]\nconstitution = {constitution:?}\nprompts = [{prompts:?}]\nfeedback = true\nclamp = [0.4, 0.6]\n\
         max_new_tokens = 40\ntemperature = 1.0\nbatch = 1\nseed = 3\n\
         [sft]\nmax_steps = 2\nper_device_train_batch_size = 2\nlearning_rate = 1e-3\n\
         [dpo]\nmax_steps = 1\nper_device_train_batch_size = 1\n\
         [grpo]\nprompts = [{grpo_prompts:?}]\nnum_generations = 2\nper_device_train_batch_size = 4\n\
         max_completion_length = 8\nmax_steps = 4\nsave_steps = 1\nlearning_rate = 1e-2\n\
         reward_funcs = [\"expectation\", \"length\"]\nsoft_punish_cache = 4\n\
         [eval]\nsuite = {suite:?}\ncache_dir = {cache:?}\n",
        out = dir.path().join("run"),
        cache = dir.path().join("cache"),
    );
    let config = write("pipeline.toml", &settings);
    let run = dir.path().join("run");

    // Killed once GRPO has written its first checkpoint.
    let args = ["pipeline", "--config", config.to_str().unwrap()].map(String::from);
    kill_when_ready(&args, dir.path(), &run.join("grpo/checkpoints/checkpoint-000001"));
    let first = pipeline(&config, &[]);
    let log = assert_finished(&first);
    assert!(log.contains("dpo: finished with these settings; skipped") && log.contains("grpo: continuing"), "{log}");
    for (stage, file) in
        [("dpo", "merged/model.safetensors"), ("grpo", "merged/model.safetensors"), ("eval", "report.json")]
    {
        assert!(run.join(stage).join(file).is_file(), "{stage}/{file} missing: {log}");
        let marker = std::fs::read_to_string(run.join(stage).join("stage.json")).unwrap();
        assert!(marker.contains("\"complete\": true"), "{stage}: {marker}");
    }
    let trained = std::fs::read_to_string(run.join("grpo/config.toml")).unwrap();
    assert!(trained.contains("dpo/merged") && trained.contains("grpo-prompts.jsonl"), "{trained}");
    let completions = std::fs::read_to_string(run.join("grpo/completions.jsonl")).unwrap();
    assert!(completions.contains("\"g1\"") && !completions.contains("\"p1\""), "its own prompts: {completions}");
    let gate = std::fs::read_to_string(run.join("eval/config.toml")).unwrap_or_default()
        + &std::fs::read_to_string(run.join("eval/report.json")).unwrap();
    assert!(gate.contains("grpo/merged"), "the gate evaluates GRPO's model: {gate}");
    let decontamination = std::fs::read_to_string(run.join("decontamination.json")).unwrap();
    assert!(decontamination.contains("grpo.jsonl"), "GRPO's prompts are held out too: {decontamination}");

    // An edited [grpo] table reruns GRPO and the gate, not the stages before.
    std::fs::write(&config, settings.replace("soft_punish_cache = 4", "soft_punish_cache = 5")).unwrap();
    let changed = assert_finished(&pipeline(&config, &[]));
    assert!(
        changed.contains("dpo: finished with these settings; skipped")
            && changed.contains("grpo: starting")
            && changed.contains("eval: starting"),
        "{changed}"
    );
    let only = assert_finished(&pipeline(&config, &["--only", "grpo"]));
    assert!(only.contains("grpo: starting") && !only.contains("eval:"), "{only}");
}
