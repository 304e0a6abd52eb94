//! Choosing the next token from logits: greedy, temperature, top-k, top-p, repetition penalty.
//!
//! The order of operations follows transformers' logits processors: repetition penalty, then
//! temperature, then top-k, then top-p.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use precept_kernels::host_math::softmax_in_place;

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
        let SamplingConfig { temperature, top_k, top_p, .. } = self.config;
        let mut candidates = top_candidates(logits, temperature, top_k, top_p);
        let total: f32 = candidates.iter().map(|&(_, p)| p).sum();
        let target = self.rng.random::<f32>() * total;
        // The candidate where the draw falls, counting in decreasing order of probability.
        match rank_until(&mut candidates, |cumulative| target < cumulative) {
            Some(rank) => candidates[rank].0,
            None => candidates.last().map_or(0, |&(id, _)| id),
        }
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

/// Most probable candidates ranked first by [`rank_until`].
const FIRST_RANKED: usize = 64;
/// The second, wider ranking; past it every candidate is ranked.
const WIDE_RANKED: usize = 1024;

/// Softmax over the kept tokens of `logits / temperature` (the top k, when `top_k` is set), as
/// `(id, probability)`: cut to the top-p nucleus, in decreasing order of probability, when
/// `top_p < 1`; else all of them, in no particular order.
///
/// No step sorts the whole vocabulary unless the distribution is flat: the top k are selected in
/// linear time, and [`rank_until`] ranks only as many tokens as the nucleus (or, in
/// [`Sampler::next_token`], the draw) reaches, usually a few dozen.
fn top_candidates(logits: &[f32], temperature: f32, top_k: usize, top_p: f32) -> Vec<(u32, f32)> {
    let mut kept: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &x)| (i as u32, x / temperature)).collect();
    if 0 < top_k && top_k < kept.len() {
        kept.select_nth_unstable_by(top_k - 1, by_rank);
        kept.truncate(top_k);
    }
    let mut probabilities: Vec<f32> = kept.iter().map(|&(_, x)| x).collect();
    softmax_in_place(&mut probabilities, None);
    kept.iter_mut().zip(probabilities).for_each(|(candidate, p)| candidate.1 = p);
    if top_p < 1.0 {
        // The fewest most probable tokens whose probabilities reach `top_p`; all of them when
        // rounding leaves the total short of it.
        if let Some(rank) = rank_until(&mut kept, |cumulative| cumulative >= top_p) {
            kept.truncate(rank + 1);
        }
    }
    kept
}

/// Puts the most probable candidates first, in decreasing order of probability, until the
/// running total of their probabilities satisfies `reached`, and returns the rank where it did;
/// `None` once all are ranked without. Only as many candidates are ranked as that takes: 64
/// (selected in linear time, then sorted), then 1024, then all of them.
fn rank_until(candidates: &mut [(u32, f32)], reached: impl Fn(f32) -> bool) -> Option<usize> {
    let len = candidates.len();
    let mut head = FIRST_RANKED.min(len);
    loop {
        if head < len {
            candidates.select_nth_unstable_by(head - 1, by_rank);
        }
        candidates[..head].sort_unstable_by(by_rank);
        let mut cumulative = 0.0;
        let rank = candidates[..head].iter().position(|&(_, p)| {
            cumulative += p;
            reached(cumulative)
        });
        if rank.is_some() || head == len {
            return rank;
        }
        head = if head >= WIDE_RANKED { len } else { WIDE_RANKED.min(len) };
    }
}

/// Decreasing probability, then increasing id: a total order, so the ranks never depend on how
/// a selection happened to partition the candidates.
fn by_rank(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
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

    /// The candidates by sorting the whole vocabulary, as the definition reads.
    fn sorted_reference(logits: &[f32], temperature: f32, top_k: usize, top_p: f32) -> Vec<(u32, f32)> {
        let mut ranked: Vec<(u32, f64)> =
            logits.iter().enumerate().map(|(i, &x)| (i as u32, f64::from(x / temperature))).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if top_k > 0 {
            ranked.truncate(top_k);
        }
        let max = ranked[0].1;
        let sum: f64 = ranked.iter().map(|c| (c.1 - max).exp()).sum();
        let mut cumulative = 0.0;
        let mut kept = Vec::new();
        for (id, x) in ranked {
            let p = (x - max).exp() / sum;
            kept.push((id, p as f32));
            cumulative += p;
            if top_p < 1.0 && cumulative >= f64::from(top_p) {
                break;
            }
        }
        kept
    }

    #[test]
    fn selected_candidates_equal_a_full_sort_of_the_vocabulary() {
        // Peaked and flat distributions: nuclei of a few tokens and of most of the vocabulary
        // (wider than the first search).
        for (spread, seed) in [(8.0f32, 1u32), (0.05, 2), (1.0, 3)] {
            let logits: Vec<f32> = (0..5000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) % 10_007) as f32 / 10_007.0 * spread)
                .collect();
            for (top_k, top_p) in [(0, 1.0), (0, 0.9), (0, 0.5), (40, 1.0), (40, 0.8), (3000, 0.95)] {
                let got: std::collections::HashMap<u32, f32> =
                    top_candidates(&logits, 0.7, top_k, top_p).into_iter().collect();
                let expected = sorted_reference(&logits, 0.7, top_k, top_p);
                let mut differing = got.len().abs_diff(expected.len());
                for (id, p) in &expected {
                    match got.get(id) {
                        Some(q) => assert!((p - q).abs() < 1e-6, "spread {spread}, id {id}: {q} against {p}"),
                        None => differing += 1,
                    }
                }
                // Summed in f32, a nucleus's edge may move by a token or so of a flat distribution.
                let allowed = if top_p < 1.0 { 2 + expected.len() / 200 } else { 0 };
                assert!(differing <= allowed, "spread {spread}, top_k {top_k}, top_p {top_p}: {differing} differ");
            }
        }
    }

    #[test]
    fn draws_count_in_decreasing_order_of_probability_as_a_full_sort_would() {
        let logits: Vec<f32> =
            (0..3000u32).map(|i| (i.wrapping_mul(2_654_435_761) % 1009) as f32 / 1009.0 * 6.0).collect();
        for (top_k, top_p) in [(0, 1.0), (0, 0.9), (50, 1.0), (50, 0.5)] {
            let mut sampler =
                Sampler::new(SamplingConfig { temperature: 0.8, top_k, top_p, seed: 11, ..Default::default() });
            let mut rng = StdRng::seed_from_u64(11);
            let reference = sorted_reference(&logits, 0.8, top_k, top_p);
            let total: f64 = reference.iter().map(|c| f64::from(c.1)).sum();
            let differing = (0..500)
                .filter(|_| {
                    let got = sampler.next_token(&mut logits.clone(), &[]);
                    let mut left = f64::from(rng.random::<f32>()) * total;
                    let expected = reference.iter().find(|c| {
                        let hit = left < f64::from(c.1);
                        left -= f64::from(c.1);
                        hit
                    });
                    got != expected.map_or(reference[reference.len() - 1].0, |c| c.0)
                })
                .count();
            // Rounding may move a draw that falls right on a boundary.
            assert!(differing <= 5, "top_k {top_k}, top_p {top_p}: {differing} of 500 differ");
        }
    }

    #[test]
    fn a_nucleus_comes_in_decreasing_order_of_probability() {
        let logits = [0.1f32, 2.0, 0.5, 3.0, 1.0];
        let kept = top_candidates(&logits, 1.0, 0, 0.95);
        let ids: Vec<u32> = kept.iter().map(|c| c.0).collect();
        assert_eq!(ids[..3], [3, 1, 4]);
        assert!(kept.windows(2).all(|pair| pair[0].1 >= pair[1].1));
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
