//! Choosing the next token from logits: greedy, temperature, top-k, top-p, repetition penalty.
//!
//! The order of operations follows transformers' logits processors: repetition penalty, then
//! temperature, then top-k, then top-p.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Settings of the next-token choice.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingConfig {
    /// Softmax temperature; `0` means greedy (argmax).
    pub temperature: f32,
    /// Keep only the `k` most likely tokens (`0` keeps all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (`1` keeps all).
    pub top_p: f32,
    /// Divides positive (multiplies negative) logits of tokens already in the sequence (`1` = off).
    pub repetition_penalty: f32,
    /// Seed of the random generator.
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self { temperature: 0.0, top_k: 0, top_p: 1.0, repetition_penalty: 1.0, seed: 0 }
    }
}

impl SamplingConfig {
    /// Whether decoding is deterministic argmax.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }
}

/// Picks tokens for one or more rows with a seeded generator.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: SamplingConfig,
    rng: StdRng,
}

impl Sampler {
    /// A sampler seeded with `config.seed`.
    pub fn new(config: SamplingConfig) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        Self { config, rng }
    }

    /// Chooses the next token given one row's logits and the ids seen so far.
    pub fn next_token(&mut self, logits: &mut [f32], context: &[u32]) -> u32 {
        apply_repetition_penalty(logits, context, self.config.repetition_penalty);
        if self.config.is_greedy() {
            return argmax(logits);
        }
        let mut candidates = top_candidates(logits, self.config.temperature, self.config.top_k, self.config.top_p);
        let total: f32 = candidates.iter().map(|(_, p)| p).sum();
        let mut draw = self.rng.random::<f32>() * total;
        let last = candidates.pop().map_or(0, |(id, _)| id);
        for (id, p) in candidates {
            if draw < p {
                return id;
            }
            draw -= p;
        }
        last
    }
}

/// The index of the largest logit (the first on ties, like `torch.argmax`).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// transformers' `RepetitionPenaltyLogitsProcessor`.
fn apply_repetition_penalty(logits: &mut [f32], context: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut seen = vec![false; logits.len()];
    for &id in context {
        let Some(flag) = seen.get_mut(id as usize) else { continue };
        if !std::mem::replace(flag, true) {
            let x = &mut logits[id as usize];
            *x = if *x < 0.0 { *x * penalty } else { *x / penalty };
        }
    }
}

/// Softmax over the kept tokens, sorted by decreasing probability, as `(id, probability)`.
fn top_candidates(logits: &[f32], temperature: f32, top_k: usize, top_p: f32) -> Vec<(u32, f32)> {
    let mut ranked: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &x)| (i as u32, x / temperature)).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    if top_k > 0 {
        ranked.truncate(top_k);
    }
    let max = ranked.first().map_or(0.0, |c| c.1);
    let mut sum = 0.0;
    for c in &mut ranked {
        c.1 = (c.1 - max).exp();
        sum += c.1;
    }
    let mut cumulative = 0.0;
    let mut keep = None;
    for (i, c) in ranked.iter_mut().enumerate() {
        c.1 /= sum;
        cumulative += c.1;
        if cumulative >= top_p && keep.is_none() {
            keep = Some(i + 1);
        }
    }
    let keep = keep.unwrap_or(ranked.len());
    ranked.truncate(keep.max(1));
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut sampler = Sampler::new(SamplingConfig::default());
        assert_eq!(sampler.next_token(&mut [0.1, 3.0, 3.0, -1.0], &[]), 1);
    }

    // transformers: score = where(score < 0, score * p, score / p) on tokens in input_ids.
    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative_logits_once() {
        let mut logits = [2.0, -2.0, 1.0];
        apply_repetition_penalty(&mut logits, &[0, 1, 0, 99], 2.0);
        assert_eq!(logits, [1.0, -4.0, 1.0]);
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_the_mass() {
        // softmax of ln([0.5, 0.3, 0.2]) = [0.5, 0.3, 0.2]
        let logits = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        let kept = top_candidates(&logits, 1.0, 0, 0.7);
        assert_eq!(kept.iter().map(|c| c.0).collect::<Vec<_>>(), vec![0, 1]);
        let kept = top_candidates(&logits, 1.0, 1, 1.0);
        assert_eq!(kept, vec![(0, 1.0)]);
    }

    #[test]
    fn sampling_is_reproducible_for_a_seed_and_follows_the_distribution() {
        let config = SamplingConfig { temperature: 1.0, seed: 7, ..Default::default() };
        let logits = [0.0f32, 1.0f32.ln() + 0.0, 2.0f32.ln()];
        let draw = |config: &SamplingConfig| {
            let mut s = Sampler::new(config.clone());
            (0..3000).map(|_| s.next_token(&mut logits.clone(), &[])).collect::<Vec<_>>()
        };
        let a = draw(&config);
        assert_eq!(a, draw(&config));
        let share_of_2 = a.iter().filter(|&&t| t == 2).count() as f32 / a.len() as f32;
        assert!((share_of_2 - 0.5).abs() < 0.04, "{share_of_2}");
    }
}
