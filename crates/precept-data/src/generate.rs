//! The [`Generate`] trait: conversations in, replies and option probabilities out, batched.
//!
//! Stages that need a model's words (the constitution loop, judges, the safety eval) talk to
//! this trait, not to a backend: a local model, a remote server or a scripted stand-in in tests
//! all serve them.

use serde::{Deserialize, Serialize};

use crate::message::Message;

/// Decoding settings shared by one batch of conversations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateSettings {
    /// Most new tokens per reply.
    pub max_new_tokens: usize,
    /// Softmax temperature; `0` is greedy.
    pub temperature: f32,
    /// Nucleus sampling mass (`1` keeps all tokens).
    pub top_p: f32,
    /// Seed of the random generator.
    pub seed: u64,
    /// A reply ends before the first of these strings.
    pub stop: Vec<String>,
}

impl Default for GenerateSettings {
    fn default() -> Self {
        Self { max_new_tokens: 256, temperature: 0.0, top_p: 1.0, seed: 0, stop: Vec::new() }
    }
}

/// Why a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// The model ended its turn.
    Eos,
    /// A stop string appeared.
    Stop,
    /// `max_new_tokens` was reached.
    Length,
}

/// The assistant's reply to one conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Reply text, special tokens removed and cut before any stop string.
    pub text: String,
    /// Generated token ids (empty where the generator does not expose them).
    pub token_ids: Vec<u32>,
    /// Why the reply ended.
    pub finish: FinishReason,
}

/// A source of assistant replies for batches of conversations.
pub trait Generate {
    /// What can go wrong.
    type Error: std::error::Error + Send + Sync + 'static;

    /// One reply per conversation, each continuing after the chat template's generation prompt.
    fn generate(
        &mut self,
        conversations: &[Vec<Message>],
        settings: &GenerateSettings,
    ) -> Result<Vec<Reply>, Self::Error>;

    /// For each conversation, the probability that the assistant's reply begins with each of
    /// `options`, normalised over the options: `pᵢ = exp(log p(optionᵢ)) / Σⱼ exp(log p(optionⱼ))`,
    /// where `log p(option)` sums the log-probabilities of the option's tokens after the
    /// generation prompt.
    fn option_probabilities(
        &mut self,
        conversations: &[Vec<Message>],
        options: &[String],
    ) -> Result<Vec<Vec<f64>>, Self::Error>;
}

/// Softmax of log-probabilities, computed stably.
pub fn normalise_log_probabilities(log_probs: &[f64]) -> Vec<f64> {
    let max = log_probs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = log_probs.iter().map(|&l| (l - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalised_probabilities_sum_to_one_and_keep_ratios() {
        let p = normalise_log_probabilities(&[-1000.0, -1000.0 + 2f64.ln()]);
        assert!((p[0] - 1.0 / 3.0).abs() < 1e-12 && (p[1] - 2.0 / 3.0).abs() < 1e-12, "{p:?}");
    }

    #[test]
    fn finish_reasons_serialise_in_lowercase() {
        assert_eq!(serde_json::to_string(&FinishReason::Eos).unwrap(), "\"eos\"");
    }
}
