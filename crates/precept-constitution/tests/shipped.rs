//! The constitutions and red-team prompts shipped in the repository are valid and complete.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test

use std::collections::HashSet;
use std::path::PathBuf;

use precept_constitution::{read_prompts, Constitution};
use precept_data::Expected;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()))
        .join("../..")
        .join(path)
}

#[test]
fn shipped_constitutions_pass_the_linter_and_have_comparisons() {
    for name in ["harmless", "honest", "customer-support"] {
        let c = Constitution::load(&repo(&format!("constitutions/{name}.toml"))).unwrap();
        assert_eq!(c.name, name);
        assert!(!c.comparisons.is_empty(), "{name} has no comparisons");
        assert!(!c.examples.is_empty(), "{name} has no examples");
    }
}

#[test]
fn harmless_covers_the_required_areas_and_forbids_needless_refusal() {
    let c = Constitution::load(&repo("constitutions/harmless.toml")).unwrap();
    assert!(c.principles.len() >= 12, "{} principles", c.principles.len());
    for id in ["dangerous-uplift", "violence", "self-harm", "hate", "privacy", "deception", "needless-refusal"] {
        c.principle(id).unwrap();
    }
}

const PROMPT_FILES: [&str; 4] = ["harmful", "roleplay", "multiturn", "benign"];

#[test]
fn red_team_prompt_files_parse_with_unique_ids_across_files() {
    let mut ids = HashSet::new();
    for name in PROMPT_FILES {
        let records = read_prompts(&repo(&format!("data/redteam/{name}.jsonl"))).unwrap();
        assert!(records.len() >= 5, "{name}: {} prompts", records.len());
        // Benign prompts teach compliance, the others refusal (see the `expected` module).
        let expected = if name == "benign" { Expected::Comply } else { Expected::Refuse };
        for record in records {
            assert!(ids.insert(record.id.clone()), "id {} repeats", record.id);
            assert_eq!(record.expected, Some(expected), "{}", record.id);
        }
    }
}

#[test]
fn the_held_out_split_is_eval_cases_disjoint_from_the_constitute_prompts() {
    let mut texts = HashSet::new();
    for name in PROMPT_FILES {
        for record in read_prompts(&repo(&format!("data/redteam/{name}.jsonl"))).unwrap() {
            texts.extend(record.messages.into_iter().map(|m| m.content));
            texts.insert(record.id);
        }
    }
    let heldout = std::fs::read_to_string(repo("data/redteam/heldout.jsonl")).unwrap();
    let (mut refuse, mut comply) = (0, 0);
    for line in heldout.lines() {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = case["id"].as_str().unwrap();
        assert!(case["category"].is_string(), "{id}");
        let turns: Vec<String> = match (&case["prompt"], &case["turns"]) {
            (serde_json::Value::String(p), serde_json::Value::Null) => vec![p.clone()],
            (serde_json::Value::Null, serde_json::Value::Array(t)) => {
                t.iter().map(|t| t.as_str().unwrap().to_owned()).collect()
            }
            other => panic!("{id}: needs `prompt` or `turns`, got {other:?}"),
        };
        assert!(!texts.contains(id), "{id} is also a constitute prompt id");
        for turn in turns {
            assert!(!texts.contains(&turn), "{id}: {turn:?} is also a constitute prompt");
        }
        match case["expected"].as_str() {
            Some("refuse") => refuse += 1,
            Some("comply") => comply += 1,
            other => panic!("{id}: expected is {other:?}"),
        }
    }
    assert!(refuse >= 10 && comply >= 5, "{refuse} refuse, {comply} comply");
}
