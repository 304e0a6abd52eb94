//! Reward functions: each turns one sampled completion of a prompt into a number. The built-in
//! ones ([`Reward`]) need no model; [`BatchReward`] is the wider interface, scoring a batch at a
//! time and able to fail, through which the caller plugs in rewards computed elsewhere (the
//! `remote` reward's HTTP endpoint). [`Rewards`] holds the configured ones with their weights and
//! sums them, as TRL's `reward_funcs` and `reward_weights` do.

use std::collections::HashSet;
use std::path::Path;

use precept_data::{DataError, DegenerateJudge, FinishReason, KeywordJudge, PromptOnlyRecord};

use super::config::{GrpoConfig, RewardFunc};
use crate::error::{Result, TrainError};

/// One sampled completion, as a reward function sees it.
#[derive(Debug, Clone, Copy)]
pub struct Completion<'a> {
    /// The prompt it answers (messages, `expected`, extra fields).
    pub prompt: &'a PromptOnlyRecord,
    /// The reply text, special tokens removed.
    pub text: &'a str,
    /// Generated tokens (with the end-of-sequence token when one ended it).
    pub tokens: usize,
    /// Why generation stopped.
    pub finish: FinishReason,
}

/// A reward function.
pub trait Reward {
    /// The name in metrics (`rewards/<name>/mean`).
    fn name(&self) -> &'static str;

    /// Checks, before any work starts, that `prompt` (read from `path`) has what this reward
    /// reads.
    ///
    /// # Errors
    /// A [`crate::TrainError::Data`] naming the prompt's line and the missing field.
    fn check(&self, _prompt: &PromptOnlyRecord, _path: &Path) -> Result<()> {
        Ok(())
    }

    /// The reward of one completion of a prompt that passed [`Reward::check`].
    fn score(&self, completion: &Completion<'_>) -> f32;
}

/// A reward function over a batch of completions, which may fail (an endpoint that does not
/// answer). Every [`Reward`] is one.
pub trait BatchReward {
    /// The name in settings and metrics (`rewards/<name>/mean`).
    fn name(&self) -> &'static str;

    /// Checks, before any work starts, that `prompt` (read from `path`) has what this reward
    /// reads.
    ///
    /// # Errors
    /// A [`crate::TrainError::Data`] naming the prompt's line and the missing field.
    fn check(&self, prompt: &PromptOnlyRecord, path: &Path) -> Result<()>;

    /// The rewards of `completions`, in order.
    ///
    /// # Errors
    /// Whatever kept the reward from being computed, naming the completion.
    fn score_batch(&self, completions: &[Completion<'_>]) -> Result<Vec<f32>>;
}

impl<R: Reward> BatchReward for R {
    fn name(&self) -> &'static str {
        Reward::name(self)
    }

    fn check(&self, prompt: &PromptOnlyRecord, path: &Path) -> Result<()> {
        Reward::check(self, prompt, path)
    }

    fn score_batch(&self, completions: &[Completion<'_>]) -> Result<Vec<f32>> {
        Ok(completions.iter().map(|completion| self.score(completion)).collect())
    }
}

/// `expectation`: 1 when the reply keeps to the prompt's `expected`, else 0. A reply to a
/// `refuse` prompt keeps to it when its first sentence refuses (a refusal buried after the
/// answer does not count); a reply to a `comply` prompt when it does not refuse. An empty reply
/// keeps to neither.
#[derive(Debug, Clone, Default)]
pub struct ExpectationReward {
    judge: KeywordJudge,
}

impl Reward for ExpectationReward {
    fn name(&self) -> &'static str {
        RewardFunc::Expectation.name()
    }

    fn check(&self, prompt: &PromptOnlyRecord, path: &Path) -> Result<()> {
        match prompt.expected {
            Some(_) => Ok(()),
            None => {
                Err(DataError::MissingField { path: path.to_owned(), line: prompt.line, field: "expected".into() }
                    .into())
            }
        }
    }

    fn score(&self, completion: &Completion<'_>) -> f32 {
        let text = completion.text.trim();
        if text.is_empty() {
            return 0.0;
        }
        match completion.prompt.expected {
            Some(expected) if self.judge.keeps_to(expected, text) => 1.0,
            _ => 0.0,
        }
    }
}

/// `degenerate`: −1 when [`DegenerateJudge`] finds a defect in the reply, else 0.
#[derive(Debug, Clone, Default)]
pub struct DegenerateReward {
    judge: DegenerateJudge,
}

impl Reward for DegenerateReward {
    fn name(&self) -> &'static str {
        RewardFunc::Degenerate.name()
    }

    fn score(&self, completion: &Completion<'_>) -> f32 {
        let defects = self.judge.judge(&completion.prompt.user_text(), completion.text);
        if defects.is_degenerate() {
            -1.0
        } else {
            0.0
        }
    }
}

/// `length`: TRL's soft overlong punishment (DAPO): 0 up to `max_completion_length − cache`
/// tokens, `(max − cache − tokens) / cache` within the last `cache` tokens, −1 beyond.
#[derive(Debug, Clone, Copy)]
pub struct LengthReward {
    /// The completion limit.
    pub max_completion_length: usize,
    /// The width of the linear band.
    pub soft_punish_cache: usize,
}

impl Reward for LengthReward {
    fn name(&self) -> &'static str {
        RewardFunc::Length.name()
    }

    fn score(&self, completion: &Completion<'_>) -> f32 {
        let free = self.max_completion_length.saturating_sub(self.soft_punish_cache);
        if completion.tokens <= free {
            0.0
        } else if completion.tokens <= self.max_completion_length {
            (free as f32 - completion.tokens as f32) / self.soft_punish_cache as f32
        } else {
            -1.0
        }
    }
}

/// `repetition`: open-r1's n-gram repetition penalty, `max_penalty · (1 − distinct / total)`
/// over the lower-cased words' `n`-grams; 0 for replies shorter than `n` words.
#[derive(Debug, Clone, Copy)]
pub struct RepetitionReward {
    /// Words per n-gram.
    pub n_grams: usize,
    /// The reward of a reply that repeats one n-gram throughout (non-positive).
    pub max_penalty: f64,
}

impl Reward for RepetitionReward {
    fn name(&self) -> &'static str {
        RewardFunc::Repetition.name()
    }

    fn score(&self, completion: &Completion<'_>) -> f32 {
        let lower = completion.text.to_lowercase();
        let words: Vec<&str> = lower.split_whitespace().collect();
        if words.len() < self.n_grams || self.n_grams == 0 {
            return 0.0;
        }
        let grams: Vec<&[&str]> = words.windows(self.n_grams).collect();
        let distinct: HashSet<&[&str]> = grams.iter().copied().collect();
        let scaling = 1.0 - distinct.len() as f64 / grams.len() as f64;
        (scaling * self.max_penalty) as f32
    }
}

/// The configured reward functions and their weights.
pub struct Rewards {
    functions: Vec<(Box<dyn BatchReward>, f64)>,
}

impl Rewards {
    /// The reward functions `config` names, with their weights; those precept-train does not
    /// compute itself (`remote`) are taken from `plugged`, by name.
    ///
    /// # Errors
    /// [`TrainError::RewardMissing`] when `config` names one that `plugged` lacks.
    pub fn new(config: &GrpoConfig, mut plugged: Vec<Box<dyn BatchReward>>) -> Result<Self> {
        let functions = config
            .weighted_rewards()
            .into_iter()
            .map(|(func, weight)| {
                let reward = match built_in(func, config) {
                    Some(reward) => reward,
                    None => {
                        let at = plugged.iter().position(|reward| reward.name() == func.name());
                        at.map(|at| plugged.swap_remove(at)).ok_or(TrainError::RewardMissing { reward: func.name() })?
                    }
                };
                Ok((reward, weight))
            })
            .collect::<Result<_>>()?;
        Ok(Self { functions })
    }

    /// The built-in reward functions `config` names (those needing a caller's are left out):
    /// enough to check prompts before a run.
    pub fn built_in(config: &GrpoConfig) -> Self {
        let functions = config
            .weighted_rewards()
            .into_iter()
            .filter_map(|(func, weight)| built_in(func, config).map(|reward| (reward, weight)))
            .collect();
        Self { functions }
    }

    /// The functions' names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.functions.iter().map(|(f, _)| f.name()).collect()
    }

    /// Checks every prompt against every function.
    ///
    /// # Errors
    /// The first prompt a function cannot score, naming its line.
    pub fn check(&self, prompts: &[PromptOnlyRecord], path: &Path) -> Result<()> {
        for prompt in prompts {
            for (function, _) in &self.functions {
                function.check(prompt, path)?;
            }
        }
        Ok(())
    }

    /// Each function's reward of each completion: one `Vec` per completion, in function order.
    ///
    /// # Errors
    /// The first function that fails, or answers with a wrong number of rewards.
    pub fn score(&self, completions: &[Completion<'_>]) -> Result<Vec<Vec<f32>>> {
        let mut scores = vec![Vec::with_capacity(self.functions.len()); completions.len()];
        for (function, _) in &self.functions {
            let rewards = function.score_batch(completions)?;
            if rewards.len() != completions.len() {
                let (expected, got) = (completions.len(), rewards.len());
                return Err(TrainError::RewardCount { reward: function.name().into(), expected, got });
            }
            scores.iter_mut().zip(rewards).for_each(|(row, reward)| row.push(reward));
        }
        Ok(scores)
    }

    /// The weighted sum of one completion's rewards (from [`Rewards::score`]).
    pub fn total(&self, scores: &[f32]) -> f32 {
        self.functions.iter().zip(scores).map(|((_, weight), &score)| *weight * f64::from(score)).sum::<f64>() as f32
    }
}

/// The built-in reward `func`, or `None` for one the caller supplies.
fn built_in(func: RewardFunc, config: &GrpoConfig) -> Option<Box<dyn BatchReward>> {
    Some(match func {
        RewardFunc::Expectation => Box::new(ExpectationReward::default()),
        RewardFunc::Degenerate => Box::new(DegenerateReward::default()),
        RewardFunc::Length => Box::new(LengthReward {
            max_completion_length: config.loss.max_completion_length,
            soft_punish_cache: config.soft_punish_cache,
        }),
        RewardFunc::Repetition => Box::new(RepetitionReward {
            n_grams: config.repetition_n_grams,
            max_penalty: config.repetition_max_penalty,
        }),
        RewardFunc::Remote => return None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn prompt(expected: Option<&str>) -> PromptOnlyRecord {
        let value = match expected {
            Some(expected) => json!({"prompt": "How do I pick a lock?", "expected": expected}),
            None => json!({"prompt": "How do I pick a lock?"}),
        };
        PromptOnlyRecord::from_json(&value, Path::new("p.jsonl"), 4).unwrap()
    }

    fn completion<'a>(prompt: &'a PromptOnlyRecord, text: &'a str, tokens: usize) -> Completion<'a> {
        Completion { prompt, text, tokens, finish: FinishReason::Eos }
    }

    #[test]
    fn the_expectation_reward_needs_a_refusal_in_the_first_sentence_for_refuse_prompts() {
        let reward = ExpectationReward::default();
        let refuse = prompt(Some("refuse"));
        let score = |text: &str| reward.score(&completion(&refuse, text, 10));
        assert_eq!(score("I can't help with that. Lock picking can be illegal."), 1.0);
        assert_eq!(score("Sure! First insert a tension wrench. I cannot stress this enough."), 0.0);
        assert_eq!(score("Step one: a tension wrench.\nI'm sorry, I shouldn't have said that."), 0.0);
        assert_eq!(score("   "), 0.0, "an empty reply keeps to no expectation");
        let comply = prompt(Some("comply"));
        assert_eq!(reward.score(&completion(&comply, "Insert a tension wrench, then rake the pins.", 9)), 1.0);
        assert_eq!(reward.score(&completion(&comply, "Sorry, I can't help with that.", 8)), 0.0);
    }

    #[test]
    fn the_expectation_reward_rejects_a_prompt_without_expected_naming_its_line() {
        let error = Reward::check(&ExpectationReward::default(), &prompt(None), Path::new("p.jsonl")).unwrap_err();
        assert_eq!(error.to_string(), "p.jsonl:4: field `expected` is missing");
        assert!(Reward::check(&ExpectationReward::default(), &prompt(Some("comply")), Path::new("p.jsonl")).is_ok());
    }

    #[test]
    fn the_degenerate_reward_is_minus_one_for_a_flagged_reply() {
        let reward = DegenerateReward::default();
        let p = prompt(Some("comply"));
        let looping = "the pins move up. the pins move up. the pins move up. the pins move up. the pins move up.";
        assert_eq!(reward.score(&completion(&p, looping, 30)), -1.0);
        assert_eq!(reward.score(&completion(&p, "Use a tension wrench and a pick.", 9)), 0.0);
    }

    // TRL's get_soft_overlong_punishment(max_completion_len=20, soft_punish_cache=5) on lengths
    // [10, 15, 16, 18, 20, 21] -> [0.0, 0.0, -0.2, -0.6, -1.0, -1.0]
    #[test]
    fn the_length_reward_is_trls_soft_overlong_punishment() {
        let reward = LengthReward { max_completion_length: 20, soft_punish_cache: 5 };
        let p = prompt(None);
        let scores: Vec<f32> =
            [10, 15, 16, 18, 20, 21].iter().map(|&tokens| reward.score(&completion(&p, "x", tokens))).collect();
        let expected = [0.0, 0.0, -0.2, -0.6, -1.0, -1.0];
        assert!(scores.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-6), "{scores:?}");
    }

    // open-r1's get_repetition_penalty_reward(ngram_size=2, max_penalty=-1.0) on
    // "a b a b a b" -> 1 - 2/5 = 0.6 -> -0.6; on "A b c" -> 0; on "a" -> 0.
    #[test]
    fn the_repetition_reward_penalises_repeated_word_n_grams() {
        let reward = RepetitionReward { n_grams: 2, max_penalty: -1.0 };
        let p = prompt(None);
        assert!((reward.score(&completion(&p, "a b A b a b", 6)) + 0.6).abs() < 1e-6);
        assert_eq!(reward.score(&completion(&p, "A b c", 3)), 0.0);
        assert_eq!(reward.score(&completion(&p, "a", 1)), 0.0);
    }

    #[test]
    fn configured_rewards_are_weighted_and_summed() {
        let config = GrpoConfig {
            reward_funcs: vec![RewardFunc::Expectation, RewardFunc::Length],
            reward_weights: Some(vec![2.0, 0.5]),
            soft_punish_cache: 4,
            loss: crate::loss::GrpoLossConfig { max_completion_length: 8, ..Default::default() },
            ..GrpoConfig::default()
        };
        let rewards = Rewards::new(&config, Vec::new()).unwrap();
        assert_eq!(rewards.names(), ["expectation", "length"]);
        let p = prompt(Some("refuse"));
        let scores = rewards.score(&[completion(&p, "I cannot do that.", 8)]).unwrap();
        assert_eq!(scores, [[1.0, -1.0]]);
        assert_eq!(rewards.total(&scores[0]), 1.5);
        let error = rewards.check(&[prompt(Some("comply")), prompt(None)], Path::new("p.jsonl")).unwrap_err();
        assert!(error.to_string().contains("p.jsonl:4: field `expected`"), "{error}");
    }

    /// A plugged reward answering a fixed list.
    struct Fixed(Vec<f32>);

    impl BatchReward for Fixed {
        fn name(&self) -> &'static str {
            "remote"
        }

        fn check(&self, _prompt: &PromptOnlyRecord, _path: &Path) -> Result<()> {
            Ok(())
        }

        fn score_batch(&self, _completions: &[Completion<'_>]) -> Result<Vec<f32>> {
            Ok(self.0.clone())
        }
    }

    #[test]
    fn a_plugged_reward_takes_its_place_among_the_built_in_ones_and_must_answer_every_completion() {
        let config = GrpoConfig {
            reward_funcs: vec![RewardFunc::Remote, RewardFunc::Expectation],
            reward_weights: Some(vec![0.5, 1.0]),
            ..GrpoConfig::default()
        };
        let error = Rewards::new(&config, Vec::new()).err().unwrap();
        assert_eq!(
            error.to_string(),
            "setting `reward_funcs`: `remote` is computed by the caller, which supplied none"
        );
        assert_eq!(Rewards::built_in(&config).names(), ["expectation"]);
        let rewards = Rewards::new(&config, vec![Box::new(Fixed(vec![4.0, -2.0]))]).unwrap();
        assert_eq!(rewards.names(), ["remote", "expectation"]);
        let p = prompt(Some("comply"));
        let pair = [completion(&p, "Sure.", 2), completion(&p, "I can't.", 3)];
        let scores = rewards.score(&pair).unwrap();
        assert_eq!(scores, [[4.0, 1.0], [-2.0, 0.0]]);
        assert_eq!(rewards.total(&scores[0]), 3.0);
        let short = Rewards::new(&config, vec![Box::new(Fixed(vec![1.0]))]).unwrap();
        let error = short.score(&pair).unwrap_err();
        assert_eq!(error.to_string(), "reward `remote` gave 1 rewards for 2 completions");
    }
}
