//! [`Rollout`]: the completions sampled for one batch of prompts, their rewards and their
//! advantages, and the numbers TRL logs about them. [`PromptOrder`] says which prompts a batch
//! samples, as a pure function of the seed, so a resumed run samples what an uninterrupted one
//! would.

use burn::tensor::backend::Backend;
use precept_data::{FinishReason, PromptOnlyRecord, Tokenizer};
use precept_model::generate::{generate, FinishReason as GenerationFinish, GenerationConfig};
use precept_model::sampling::SamplingConfig;
use precept_model::{from_host, host_values, KernelBackend, LlamaForCausalLM};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Map, Value};

use super::config::GrpoConfig;
use super::rewards::{Completion, Rewards};
use crate::error::Result;
use crate::loss::{grpo_advantages, ScaleRewards};

/// The seeded order in which prompts are visited: epoch `e` is a shuffle seeded with
/// `seed + e`.
#[derive(Debug)]
pub struct PromptOrder {
    count: usize,
    seed: u64,
    epoch: Option<(u64, Vec<usize>)>,
}

impl PromptOrder {
    /// The order of `count` prompts.
    pub fn new(count: usize, seed: u64) -> Self {
        Self { count, seed, epoch: None }
    }

    /// The prompt visited `index`-th (counting from zero across epochs).
    pub fn prompt(&mut self, index: u64) -> usize {
        let count = self.count.max(1) as u64;
        let epoch = index / count;
        if self.epoch.as_ref().map(|(e, _)| *e) != Some(epoch) {
            let mut order: Vec<usize> = (0..self.count).collect();
            order.shuffle(&mut StdRng::seed_from_u64(self.seed.wrapping_add(epoch)));
            self.epoch = Some((epoch, order));
        }
        match &self.epoch {
            Some((_, order)) => order.get((index % count) as usize).copied().unwrap_or(0),
            None => 0,
        }
    }
}

/// One sampled completion and what it earned.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The prompt's index in the data.
    pub prompt: usize,
    /// Generated ids, with the end-of-sequence token when one ended it.
    pub ids: Vec<u32>,
    /// The reply text, special tokens removed.
    pub text: String,
    /// Why generation stopped.
    pub finish: FinishReason,
    /// Each reward function's reward, in the configured order.
    pub rewards: Vec<f32>,
    /// The weighted sum of `rewards`.
    pub reward: f32,
    /// The completion's advantage.
    pub advantage: f32,
}

/// The completions of one batch of prompts, `num_generations` per prompt side by side.
#[derive(Debug, Clone)]
pub struct Rollout {
    /// Which batch this is (counting from zero).
    pub generation: u64,
    /// The completions.
    pub samples: Vec<Sample>,
    /// TRL's `frac_reward_zero_std`.
    pub frac_reward_zero_std: f64,
    /// TRL's `reward_std`: the mean group (or batch) standard deviation of the rewards.
    pub reward_std: f64,
    /// Per-token log-probabilities under the sampling policy (one `Vec` per completion), kept
    /// when a batch trains several steps (`num_iterations > 1`).
    pub old_logps: Option<Vec<Vec<f32>>>,
}

/// Samples `num_generations` completions of each prompt in `prompts` (token ids) with `model`,
/// seeded with `seed`.
///
/// # Errors
/// A prompt too long for the model, and ids the tokenizer cannot decode.
pub fn sample<B: KernelBackend>(
    model: &LlamaForCausalLM<B>,
    tokenizer: &Tokenizer,
    prompts: &[&[u32]],
    config: &GrpoConfig,
    seed: u64,
) -> Result<Vec<(Vec<u32>, String, FinishReason)>> {
    let rows: Vec<Vec<u32>> =
        prompts.iter().flat_map(|prompt| std::iter::repeat_n(prompt.to_vec(), config.num_generations)).collect();
    let generation = GenerationConfig {
        max_new_tokens: config.loss.max_completion_length,
        sampling: SamplingConfig {
            temperature: config.temperature,
            top_k: config.top_k,
            top_p: config.top_p,
            seed,
            ..SamplingConfig::default()
        },
        eos_token_ids: tokenizer.eos_token_ids(),
    };
    let generations = generate(model, &rows, &generation, |_, _| false)?;
    generations
        .into_iter()
        .map(|generation| {
            let text = tokenizer.decode(&generation.ids, true)?;
            let finish = match generation.finish {
                GenerationFinish::Eos => FinishReason::Eos,
                GenerationFinish::Stopped => FinishReason::Stop,
                GenerationFinish::Length => FinishReason::Length,
            };
            Ok((generation.ids, text, finish))
        })
        .collect()
}

impl Rollout {
    /// Scores the completions `sampled` of the prompts `prompt_indices` (each repeated
    /// `num_generations` times, in order) and computes their advantages.
    ///
    /// # Errors
    /// A reward function that fails, and rewards that do not split into groups (never, for a
    /// valid config).
    pub fn score<B: Backend>(
        generation: u64,
        prompts: &[PromptOnlyRecord],
        prompt_indices: &[usize],
        sampled: Vec<(Vec<u32>, String, FinishReason)>,
        rewards: &Rewards,
        config: &GrpoConfig,
        device: &B::Device,
    ) -> Result<Self> {
        let group = config.num_generations;
        let completions: Vec<Completion<'_>> = sampled
            .iter()
            .enumerate()
            .map(|(row, (ids, text, finish))| Completion {
                prompt: &prompts[prompt_indices[row / group]],
                text,
                tokens: ids.len(),
                finish: *finish,
            })
            .collect();
        let scores = rewards.score(&completions)?;
        let samples: Vec<Sample> = sampled
            .into_iter()
            .zip(scores)
            .enumerate()
            .map(|(row, ((ids, text, finish), scores))| {
                let reward = rewards.total(&scores);
                Sample {
                    prompt: prompt_indices[row / group],
                    ids,
                    text,
                    finish,
                    rewards: scores,
                    reward,
                    advantage: 0.0,
                }
            })
            .collect();
        let totals: Vec<f32> = samples.iter().map(|s| s.reward).collect();
        let count = totals.len();
        let advantages =
            grpo_advantages(from_host::<B, 1>(totals.clone(), [count], device), group, config.scale_rewards)?;
        let values = host_values(advantages.advantages);
        let samples = samples.into_iter().zip(values).map(|(s, advantage)| Sample { advantage, ..s }).collect();
        let reward_std = match config.scale_rewards {
            ScaleRewards::Batch => std(&totals),
            _ => totals.chunks(group).map(std).sum::<f64>() / (count / group).max(1) as f64,
        };
        Ok(Self {
            generation,
            samples,
            frac_reward_zero_std: advantages.frac_reward_zero_std,
            reward_std,
            old_logps: None,
        })
    }

    /// TRL's rollout metrics: `reward`, `reward_std`, `rewards/<name>/mean` and `/std`,
    /// `frac_reward_zero_std`, and the completions' lengths and clipped share.
    pub fn metrics(&self, names: &[&str]) -> Map<String, Value> {
        let mut metrics = Map::new();
        let totals: Vec<f32> = self.samples.iter().map(|s| s.reward).collect();
        metrics.insert("reward".into(), json!(mean(&totals)));
        metrics.insert("reward_std".into(), json!(self.reward_std));
        for (i, name) in names.iter().enumerate() {
            let values: Vec<f32> = self.samples.iter().map(|s| s.rewards[i]).collect();
            metrics.insert(format!("rewards/{name}/mean"), json!(mean(&values)));
            metrics.insert(format!("rewards/{name}/std"), json!(std(&values)));
        }
        metrics.insert("frac_reward_zero_std".into(), json!(self.frac_reward_zero_std));
        let lengths: Vec<f32> = self.samples.iter().map(|s| s.ids.len() as f32).collect();
        metrics.insert("completions/mean_length".into(), json!(mean(&lengths)));
        let min = lengths.iter().copied().fold(f32::INFINITY, f32::min);
        let max = lengths.iter().copied().fold(0.0, f32::max);
        metrics.insert("completions/min_length".into(), json!(if min.is_finite() { min } else { 0.0 }));
        metrics.insert("completions/max_length".into(), json!(max));
        let clipped = self.samples.iter().filter(|s| s.finish == FinishReason::Length).count();
        metrics.insert("completions/clipped_ratio".into(), json!(clipped as f64 / self.samples.len().max(1) as f64));
        metrics
    }

    /// One JSON record per completion for `completions.jsonl`, tagged with the optimiser
    /// `step` (counting from one) that sampled it.
    pub fn records(&self, step: u64, prompts: &[PromptOnlyRecord], names: &[&str]) -> Vec<Map<String, Value>> {
        self.samples
            .iter()
            .map(|sample| {
                let prompt = &prompts[sample.prompt];
                let rewards: Map<String, Value> =
                    names.iter().zip(&sample.rewards).map(|(name, r)| ((*name).to_owned(), json!(r))).collect();
                let mut record = Map::new();
                record.insert("step".into(), json!(step));
                if let Some(id) = prompt.fields.get("id") {
                    record.insert("id".into(), id.clone());
                }
                record.insert("line".into(), json!(prompt.line));
                record.insert("prompt".into(), json!(prompt.user_text()));
                record.insert("completion".into(), json!(sample.text));
                record.insert("finish".into(), json!(sample.finish));
                record.insert("tokens".into(), json!(sample.ids.len()));
                record.insert("rewards".into(), Value::Object(rewards));
                record.insert("reward".into(), json!(sample.reward));
                record.insert("advantage".into(), json!(sample.advantage));
                record
            })
            .collect()
    }
}

/// The mean (0 for none).
fn mean(values: &[f32]) -> f64 {
    values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len().max(1) as f64
}

/// The Bessel-corrected standard deviation, as TRL's `nanstd` (0 for fewer than two values).
fn std(values: &[f32]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let m = mean(values);
    let sum: f64 = values.iter().map(|&v| (f64::from(v) - m).powi(2)).sum();
    (sum / (values.len() - 1) as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use serde_json::json;

    use super::*;
    use crate::grpo::RewardFunc;

    #[test]
    fn every_epoch_visits_every_prompt_once_and_the_order_is_a_function_of_the_seed() {
        let mut order = PromptOrder::new(5, 9);
        let mut again = PromptOrder::new(5, 9);
        for epoch in 0..2u64 {
            let mut seen: Vec<usize> = (0..5).map(|i| order.prompt(epoch * 5 + i)).collect();
            seen.sort_unstable();
            assert_eq!(seen, [0, 1, 2, 3, 4]);
        }
        assert_eq!(again.prompt(7), order.prompt(7));
        assert_eq!(again.prompt(1), order.prompt(1));
    }

    #[test]
    fn scored_rollouts_get_group_relative_advantages_and_trls_metrics() {
        let record = |expected: &str| {
            PromptOnlyRecord::from_json(&json!({"prompt": "q", "expected": expected, "id": expected}), "p".as_ref(), 1)
                .unwrap()
        };
        let prompts = [record("refuse"), record("comply")];
        let config = GrpoConfig {
            num_generations: 2,
            reward_funcs: vec![RewardFunc::Expectation, RewardFunc::Length],
            soft_punish_cache: 2,
            loss: crate::loss::GrpoLossConfig { max_completion_length: 4, ..Default::default() },
            ..GrpoConfig::default()
        };
        let sampled = vec![
            (vec![1, 2], "I cannot.".to_owned(), FinishReason::Eos),
            (vec![1, 2, 3, 4], "Sure, here".to_owned(), FinishReason::Length),
            (vec![5], "Here you go.".to_owned(), FinishReason::Eos),
            (vec![6], "Here it is.".to_owned(), FinishReason::Eos),
        ];
        let rewards = Rewards::new(&config, Vec::new()).unwrap();
        let rollout =
            Rollout::score::<Flex>(0, &prompts, &[0, 1], sampled, &rewards, &config, &Default::default()).unwrap();
        let totals: Vec<f32> = rollout.samples.iter().map(|s| s.reward).collect();
        assert_eq!(totals, [1.0, -1.0, 1.0, 1.0]);
        // Group 0: (±1)/(std √2 + 1e-4); group 1 has no spread.
        let expected = 1.0 / (2f32.sqrt() + 1e-4);
        assert!((rollout.samples[0].advantage - expected).abs() < 1e-5 && rollout.samples[3].advantage == 0.0);
        let metrics = rollout.metrics(&rewards.names());
        assert_eq!(metrics["reward"], json!(0.5));
        assert_eq!(metrics["frac_reward_zero_std"], json!(0.5));
        assert!((metrics["reward_std"].as_f64().unwrap() - 2f64.sqrt() / 2.0).abs() < 1e-9);
        assert_eq!(metrics["rewards/length/mean"], json!(-0.25));
        assert_eq!(metrics["completions/clipped_ratio"], json!(0.25));
        assert_eq!(
            (metrics["completions/min_length"].clone(), metrics["completions/max_length"].clone()),
            (json!(1.0), json!(4.0))
        );
        let records = rollout.records(3, &prompts, &rewards.names());
        assert_eq!(records[1]["id"], json!("refuse"));
        assert_eq!(records[1]["finish"], json!("length"));
        assert_eq!(records[1]["rewards"], json!({"expectation": 0.0, "length": -1.0}));
        assert_eq!(records[1]["step"], json!(3));
    }
}
