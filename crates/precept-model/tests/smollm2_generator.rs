//! [`LocalGenerator`] on the real SmolLM2-135M-Instruct (imported by `scripts/fetch-smollm2.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test

mod common;

use common::smollm2;
use precept_data::{FinishReason, Generate, GenerateSettings, Message};

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
