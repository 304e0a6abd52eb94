//! The generation thread: requests queued while a batch runs are decoded together in the next
//! one, sharing its forward passes; tokens flow back to each request as [`Event`]s.

use std::sync::mpsc::Receiver;
use std::sync::Arc;

use precept_data::{ReplyText, Tokenizer};
use precept_model::generate::{generate_each, FinishReason, RowRequest};
use precept_model::ContinuationCache;
use precept_model::{KernelBackend, LlamaForCausalLM};
use precept_remote::wire::TokenLogprob;
use tokio::sync::mpsc::UnboundedSender;

use crate::logprobs::token_logprob;

/// One request, ready to decode.
pub struct Job {
    /// Prompt ids, token limit and sampling.
    pub row: RowRequest,
    /// The reply ends before the first of these.
    pub stop: Vec<String>,
    /// `Some(k)`: return each token's log-probability and the `k` most likely alternatives.
    pub top_logprobs: Option<usize>,
    /// Where the reply goes; when the receiver is gone the row stops.
    pub events: UnboundedSender<Event>,
}

/// What the generation thread tells a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// New text (possibly empty while a stop string might be forming) and the token's
    /// log-probabilities.
    Token {
        /// Text safe to show now.
        text: String,
        /// Present when log-probabilities were asked for (not for the end-of-turn token).
        logprob: Option<TokenLogprob>,
    },
    /// The reply is over.
    Done {
        /// Text held back until now.
        text: String,
        /// `stop` or `length`.
        finish: &'static str,
        /// Tokens generated.
        completion_tokens: usize,
    },
    /// Decoding failed.
    Failed(String),
}

/// Decodes jobs until every sender is dropped, at most `max_batch` at a time. Each batch keeps
/// its rows' KV caches for later batches, so a chat's next request prefills only its new turns.
pub fn run_engine<B: KernelBackend>(
    model: LlamaForCausalLM<B>,
    tokenizer: Arc<Tokenizer>,
    jobs: Receiver<Job>,
    max_batch: usize,
) {
    let mut continuation = ContinuationCache::default();
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&model, &tokenizer, &batch, &mut continuation);
        tracing::debug!(rows = batch.len(), reused_tokens = continuation.last_reused(), "decoded a batch");
    }
}

fn run_batch<B: KernelBackend>(
    model: &LlamaForCausalLM<B>,
    tokenizer: &Tokenizer,
    batch: &[Job],
    continuation: &mut ContinuationCache,
) {
    let rows: Vec<RowRequest> = batch.iter().map(|job| job.row.clone()).collect();
    let eos = tokenizer.eos_token_ids();
    let mut texts: Vec<ReplyText> = batch.iter().map(|job| ReplyText::new(tokenizer, &job.stop)).collect();
    let mut sent = vec![0usize; batch.len()];
    let result = generate_each(model, &rows, &eos, Some(continuation), |row, token, logits| {
        let job = &batch[row];
        let stopped = texts[row].push(token);
        let text = texts[row].final_text();
        let ready = streamable_len(&text, &job.stop).max(sent[row]);
        let fresh = text.get(sent[row]..ready).unwrap_or_default().to_owned();
        sent[row] = ready;
        let logprob =
            job.top_logprobs.filter(|_| !eos.contains(&token)).map(|k| token_logprob(tokenizer, token, logits, k));
        let gone = job.events.send(Event::Token { text: fresh, logprob }).is_err();
        stopped || gone
    });
    match result {
        Ok(generations) => {
            for (row, (job, generation)) in batch.iter().zip(generations).enumerate() {
                let text = texts[row].final_text();
                let rest = text.get(sent[row]..).unwrap_or_default().to_owned();
                let finish = if generation.finish == FinishReason::Length { "length" } else { "stop" };
                let _ = job.events.send(Event::Done { text: rest, finish, completion_tokens: generation.ids.len() });
            }
        }
        Err(error) => {
            for job in batch {
                let _ = job.events.send(Event::Failed(error.to_string()));
            }
        }
    }
}

/// How much of `text` can be shown before the reply ends: all but a trailing partial
/// character and a tail that may be the start of a stop string.
fn streamable_len(text: &str, stop: &[String]) -> usize {
    let end = text.trim_end_matches('\u{FFFD}').len();
    let held = stop
        .iter()
        .flat_map(|s| (1..s.len()).filter(|&k| s.is_char_boundary(k)).map(move |k| &s[..k]))
        .filter(|prefix| text[..end].ends_with(prefix))
        .map(str::len)
        .max()
        .unwrap_or(0);
    end - held
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_possible_stop_string_start_and_a_partial_character_are_held_back() {
        let stop = ["</end>".to_owned()];
        assert_eq!(streamable_len("hello </e", &stop), "hello ".len());
        assert_eq!(streamable_len("hello", &stop), 5);
        assert_eq!(streamable_len("caf\u{FFFD}", &[]), 3);
    }
}
