//! Log-probabilities of a generated token and its top alternatives, from raw logits.

use precept_data::Tokenizer;
use precept_remote::wire::{TokenLogprob, TopLogprob};

/// `log softmax(logits)[token]` and the `top` most likely tokens, most likely first.
pub fn token_logprob(tokenizer: &Tokenizer, token: u32, logits: &[f32], top: usize) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let log_sum = max + logits.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
    let log_prob = |id: usize| logits.get(id).map_or(f64::NEG_INFINITY, |&x| x as f64 - log_sum);
    let mut ranked: Vec<usize> = (0..logits.len()).collect();
    let top = top.min(ranked.len());
    if top > 0 {
        ranked.select_nth_unstable_by(top - 1, |&a, &b| logits[b].total_cmp(&logits[a]));
    }
    ranked.truncate(top);
    ranked.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    let text = |id: u32| tokenizer.decode(&[id], false).unwrap_or_default();
    let entry =
        |id: u32| TopLogprob { token: text(id), logprob: log_prob(id as usize), bytes: Some(text(id).into_bytes()) };
    TokenLogprob {
        token: text(token),
        logprob: log_prob(token as usize),
        bytes: Some(text(token).into_bytes()),
        top_logprobs: ranked.into_iter().map(|id| entry(id as u32)).collect(),
    }
}
