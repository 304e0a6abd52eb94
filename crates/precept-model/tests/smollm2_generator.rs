//! [`LocalGenerator`] on the real SmolLM2-135M-Instruct (imported by `scripts/fetch-smollm2.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test

use std::path::PathBuf;

use burn::backend::Flex;
use precept_data::{FinishReason, Generate, GenerateSettings, Message};
use precept_model::LocalGenerator;

fn smollm2() -> LocalGenerator<Flex> {
    let dir = std::env::var_os("PRECEPT_SMOLLM2").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()))
            .join("../../checkpoints/smollm2-135m-instruct")
    });
    assert!(dir.join("model.safetensors").is_file(), "{}: run scripts/fetch-smollm2.sh first", dir.display());
    LocalGenerator::open(&dir, &Default::default()).unwrap()
}

#[test]
fn smollm2_answers_conversations_and_prefers_the_right_option() {
    let mut generator = smollm2();
    let question = vec![Message::user("What is the capital of France? Answer in one word.")];
    let replies = generator
        .generate(
            &[question.clone(), vec![Message::user("Say hello.")]],
            &GenerateSettings { max_new_tokens: 24, ..Default::default() },
        )
        .unwrap();
    assert_eq!(replies[0].text, "The capital of France is Paris.");
    assert_eq!(replies[0].finish, FinishReason::Eos);
    assert!(!replies[1].text.is_empty());
    let options = ["The capital of France is Paris.", "The capital of France is London."].map(String::from);
    let probabilities = generator.option_probabilities(&[question], &options).unwrap();
    assert!(probabilities[0][0] > 0.9, "{probabilities:?}");
}
