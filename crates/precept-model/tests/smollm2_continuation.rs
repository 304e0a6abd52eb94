//! [`LocalGenerator`] on the real SmolLM2-135M-Instruct with the KV cache in host memory (as the
//! CLI runs on the CPU): a call that continues the previous call's conversations, started from
//! their kept caches, gives the replies a fresh generator gives.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test

mod common;

use common::smollm2;
use precept_data::{Generate, GenerateSettings, Message};

#[test]
fn continued_conversations_get_the_replies_of_a_fresh_generator() {
    let settings = GenerateSettings { max_new_tokens: 24, ..Default::default() };
    let system = Message::system("You are a helpful assistant. Answer in at most two sentences.");
    let first: Vec<Vec<Message>> = ["Name three colours.", "Write one sentence about the sea."]
        .iter()
        .map(|&question| vec![system.clone(), Message::user(question)])
        .collect();
    let mut kept = smollm2();
    let replies = kept.generate(&first, &settings).unwrap();
    let next: Vec<Vec<Message>> = first
        .iter()
        .zip(&replies)
        .map(|(conversation, reply)| {
            let mut conversation = conversation.clone();
            conversation.push(Message::assistant(reply.text.clone()));
            conversation.push(Message::user("Now say that again in fewer words."));
            conversation
        })
        .collect();
    let continued = kept.generate(&next, &settings).unwrap();
    let first_tokens: usize = replies.iter().map(|reply| reply.token_ids.len()).sum();
    assert!(kept.last_reused() > first_tokens, "{} tokens reused", kept.last_reused());
    let fresh = smollm2().generate(&next, &settings).unwrap();
    assert_eq!(continued, fresh);
}
