//! AI feedback: two sampled answers per prompt, a comparison question with options (A) and (B),
//! and a soft preference label from the model's option probabilities.
//!
//! The question is asked in both orders and the probabilities averaged,
//! `p(first better) = (p_AB(A) + p_BA(B)) / 2`, so a model that prefers whichever answer comes
//! first (position bias) gives 0.5 instead of a false preference. The label may be clamped, as
//! the Constitutional AI paper does for its chain-of-thought labels (to [0.4, 0.6]), and pairs
//! whose label is less confident than a threshold are dropped. No reply text is parsed: the
//! probabilities come from [`Generate::option_probabilities`].

use precept_data::{Generate, GenerateSettings, Message, Role};
use serde::{Deserialize, Serialize};

use crate::constitution::{Comparison, Constitution};
use crate::critique::{generate_checked, generator_error};
use crate::error::{ConstitutionError, Result};
use crate::filter::{same_text, usable_text, Degenerate};
use crate::prompts::PromptRecord;
use crate::sample::{sample_weighted, SplitMix64};

/// The two options, as the reply is expected to begin.
pub const OPTIONS: [&str; 2] = ["(A)", "(B)"];

/// The choice stream of comparison sampling, apart from the loop's rounds.
const COMPARISON_CHOICE: usize = 1 << 20;

/// Settings of AI feedback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackConfig {
    /// Decoding settings of the two answers (a positive temperature, so they differ); both are
    /// drawn in one call.
    pub samples: GenerateSettings,
    /// Clamp the label to `[low, high]` (the paper's chain-of-thought variant uses 0.4 and 0.6).
    pub clamp: Option<(f64, f64)>,
    /// Keep a pair only when the chosen answer's label is at least this (0.5 keeps every pair).
    pub threshold: f64,
    /// Seed of comparison sampling.
    pub seed: u64,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        Self {
            samples: GenerateSettings { temperature: 1.0, top_p: 0.95, ..GenerateSettings::default() },
            clamp: None,
            threshold: 0.5,
            seed: 0,
        }
    }
}

impl FeedbackConfig {
    /// Checks the clamp bounds and the threshold.
    ///
    /// # Errors
    /// [`ConstitutionError::Setting`] naming the bad setting.
    pub fn validate(&self) -> Result<()> {
        if self.samples.max_new_tokens == 0 {
            let problem = "must be at least 1".into();
            return Err(ConstitutionError::Setting { setting: "feedback max new tokens", problem });
        }
        if let Some((low, high)) = self.clamp {
            if !(0.0..=0.5).contains(&low) || !(0.5..=1.0).contains(&high) {
                let problem = format!("must satisfy 0 <= low <= 0.5 <= high <= 1, got [{low}, {high}]");
                return Err(ConstitutionError::Setting { setting: "clamp", problem });
            }
        }
        if !(0.5..=1.0).contains(&self.threshold) {
            let problem = format!("must be between 0.5 and 1, got {}", self.threshold);
            return Err(ConstitutionError::Setting { setting: "threshold", problem });
        }
        Ok(())
    }
}

/// The model's judgement of one pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    /// The comparison principle's id.
    pub comparison: String,
    /// Probabilities of (A) and (B) with the first answer as (A).
    pub first_as_a: [f64; 2],
    /// Probabilities of (A) and (B) with the first answer as (B).
    pub first_as_b: [f64; 2],
    /// `p(first answer better)`, averaged over both orders and clamped.
    pub label: f64,
}

/// What AI feedback made of one prompt.
#[derive(Debug, Clone, PartialEq)]
pub enum Feedback {
    /// A preference pair.
    Pair {
        /// The preferred answer.
        chosen: String,
        /// The other answer.
        rejected: String,
        /// The preferred answer's label, in `[0.5, 1]`.
        score: f64,
        /// How the label was reached.
        judgement: Judgement,
    },
    /// No pair.
    Filtered(FeedbackFiltered),
}

/// AI feedback on one prompt: the outcome, and the usable text of the sampled answers
/// ([`usable_text`]), which the expected-behaviour choice may also draw on.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    /// The pair, or why there is none; `None` when the prompt was not judged.
    pub feedback: Option<Feedback>,
    /// The usable text of each sampled answer that has one, first sample first.
    pub samples: Vec<String>,
}

/// Why a prompt gave no preference pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeedbackFiltered {
    /// One of the sampled answers was degenerate.
    Degenerate(Degenerate),
    /// Both sampled answers are the same text.
    Identical,
    /// The label was less confident than the threshold.
    LowConfidence,
}

impl FeedbackFiltered {
    /// The name used in outputs and counts.
    pub fn reason(self) -> String {
        match self {
            Self::Degenerate(reason) => format!("feedback-{reason}"),
            Self::Identical => "feedback-identical".into(),
            Self::LowConfidence => "feedback-low-confidence".into(),
        }
    }
}

/// `p(first better)` from the option probabilities of both orders, clamped to `clamp`.
pub fn soft_label(first_as_a: [f64; 2], first_as_b: [f64; 2], clamp: Option<(f64, f64)>) -> f64 {
    let label = (first_as_a[0] + first_as_b[1]) / 2.0;
    match clamp {
        Some((low, high)) => label.clamp(low, high),
        None => label,
    }
}

/// The comparison question about two answers to `context`, as one user message.
pub fn comparison_conversation(context: &[Message], question: &str, a: &str, b: &str) -> Vec<Message> {
    let transcript: Vec<String> = context
        .iter()
        .map(|m| {
            let speaker = match m.role {
                Role::System => "System",
                Role::User => "Person",
                Role::Assistant => "Assistant",
            };
            format!("{speaker}: {}", m.content)
        })
        .collect();
    let text = format!(
        "Consider the following conversation between a person and an assistant:\n\n{}\n\n{question}\n\nOptions:\n{} {a}\n{} {b}\n\nAnswer with {} or {} only.",
        transcript.join("\n"),
        OPTIONS[0],
        OPTIONS[1],
        OPTIONS[0],
        OPTIONS[1],
    );
    vec![Message::user(text)]
}

/// The comparison principle of `prompt_id`, sampled by weight.
pub fn choose_comparison<'c>(constitution: &'c Constitution, seed: u64, prompt_id: &str) -> Result<&'c Comparison> {
    let weights: Vec<f64> = constitution.comparisons.iter().map(|c| c.weight).collect();
    let mut rng = SplitMix64::for_choice(seed, prompt_id, COMPARISON_CHOICE);
    sample_weighted(&weights, &mut rng)
        .and_then(|i| constitution.comparisons.get(i))
        .ok_or_else(|| ConstitutionError::NoComparisons { constitution: constitution.name.clone() })
}

/// One pair to judge: the conversation so far, the question and the two answers.
#[derive(Debug, Clone)]
pub struct PairToJudge<'a> {
    /// The conversation the answers reply to.
    pub context: &'a [Message],
    /// The comparison principle.
    pub comparison: &'a Comparison,
    /// The first answer.
    pub first: &'a str,
    /// The second answer.
    pub second: &'a str,
}

/// Judges every pair in both orders with one batched probability call.
///
/// # Errors
/// [`ConstitutionError::Generate`] when the generator fails, [`ConstitutionError::GeneratorCount`]
/// when it answers with the wrong number of results or options.
pub fn judge<G: Generate>(
    generator: &mut G,
    pairs: &[PairToJudge<'_>],
    clamp: Option<(f64, f64)>,
) -> Result<Vec<Judgement>> {
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let mut conversations: Vec<Vec<Message>> =
        pairs.iter().map(|p| comparison_conversation(p.context, &p.comparison.question, p.first, p.second)).collect();
    conversations
        .extend(pairs.iter().map(|p| comparison_conversation(p.context, &p.comparison.question, p.second, p.first)));
    let options: Vec<String> = OPTIONS.iter().map(|o| (*o).to_owned()).collect();
    let probabilities = generator.option_probabilities(&conversations, &options).map_err(generator_error)?;
    let pair_of = |row: Option<&Vec<f64>>| match row.map(Vec::as_slice) {
        Some(&[a, b]) => Ok([a, b]),
        Some(other) => Err(ConstitutionError::GeneratorCount { expected: 2, got: other.len() }),
        None => Err(ConstitutionError::GeneratorCount { expected: conversations.len(), got: probabilities.len() }),
    };
    pairs
        .iter()
        .enumerate()
        .map(|(i, pair)| {
            let first_as_a = pair_of(probabilities.get(i))?;
            let first_as_b = pair_of(probabilities.get(i + pairs.len()))?;
            let label = soft_label(first_as_a, first_as_b, clamp);
            Ok(Judgement { comparison: pair.comparison.id.clone(), first_as_a, first_as_b, label })
        })
        .collect()
}

/// The usable text of a prompt's two sampled answers ([`usable_text`]), or why one has none.
pub type SampledPair = [std::result::Result<String, Degenerate>; 2];

/// Samples two answers per prompt, judges every pair and returns one outcome per prompt, in order.
///
/// # Errors
/// [`ConstitutionError::NoComparisons`] when the constitution has none, and the errors of
/// [`judge`].
pub fn label_pairs<G: Generate>(
    generator: &mut G,
    constitution: &Constitution,
    prompts: &[PromptRecord],
    config: &FeedbackConfig,
) -> Result<Vec<Labelled>> {
    let sampled = sample_pairs(generator, prompts, config)?;
    judge_sampled(generator, constitution, prompts, &sampled, &vec![true; prompts.len()], config)
}

/// Samples two answers per prompt, all in one call, so the generator may share each prompt's
/// prefill.
///
/// # Errors
/// The generator's errors.
pub fn sample_pairs<G: Generate>(
    generator: &mut G,
    prompts: &[PromptRecord],
    config: &FeedbackConfig,
) -> Result<Vec<SampledPair>> {
    let contexts: Vec<Vec<Message>> = prompts.iter().map(|p| p.context().to_vec()).collect();
    let both: Vec<Vec<Message>> = contexts.iter().chain(&contexts).cloned().collect();
    let replies = generate_checked(generator, &both, &config.samples)?;
    let (first, second) = replies.split_at(prompts.len());
    Ok(first.iter().zip(second).map(|(a, b)| [usable_text(a), usable_text(b)]).collect())
}

/// Judges the sampled pairs of the prompts marked in `wanted` (the others get no feedback, and
/// cost no comparison) and returns one outcome per prompt, in order.
///
/// # Errors
/// [`ConstitutionError::NoComparisons`] when the constitution has none, and the errors of
/// [`judge`].
pub fn judge_sampled<G: Generate>(
    generator: &mut G,
    constitution: &Constitution,
    prompts: &[PromptRecord],
    sampled: &[SampledPair],
    wanted: &[bool],
    config: &FeedbackConfig,
) -> Result<Vec<Labelled>> {
    let contexts: Vec<Vec<Message>> = prompts.iter().map(|p| p.context().to_vec()).collect();
    let mut outcomes: Vec<Option<Feedback>> = vec![None; prompts.len()];
    let mut to_judge: Vec<(usize, &str, &str)> = Vec::new();
    for (i, samples) in sampled.iter().enumerate().filter(|&(i, _)| wanted.get(i).copied().unwrap_or(false)) {
        match samples {
            [Ok(a), Ok(b)] if same_text(a, b) => outcomes[i] = Some(Feedback::Filtered(FeedbackFiltered::Identical)),
            [Ok(a), Ok(b)] => to_judge.push((i, a, b)),
            [Err(reason), _] | [_, Err(reason)] => {
                outcomes[i] = Some(Feedback::Filtered(FeedbackFiltered::Degenerate(*reason)));
            }
        }
    }
    let comparisons: Vec<&Comparison> = to_judge
        .iter()
        .map(|&(i, ..)| choose_comparison(constitution, config.seed, &prompts[i].id))
        .collect::<Result<_>>()?;
    let pairs: Vec<PairToJudge<'_>> = to_judge
        .iter()
        .zip(&comparisons)
        .map(|(&(i, first, second), comparison)| PairToJudge { context: &contexts[i], comparison, first, second })
        .collect();
    let judgements = judge(generator, &pairs, config.clamp)?;
    for (&(i, a, b), judgement) in to_judge.iter().zip(judgements) {
        let (chosen, rejected, score) =
            if judgement.label >= 0.5 { (a, b, judgement.label) } else { (b, a, 1.0 - judgement.label) };
        outcomes[i] = Some(if score >= config.threshold {
            Feedback::Pair { chosen: chosen.to_owned(), rejected: rejected.to_owned(), score, judgement }
        } else {
            Feedback::Filtered(FeedbackFiltered::LowConfidence)
        });
    }
    Ok(outcomes
        .into_iter()
        .zip(sampled)
        .map(|(feedback, samples)| Labelled { feedback, samples: samples.iter().flatten().cloned().collect() })
        .collect())
}

#[cfg(test)]
mod tests {
    use precept_data::{normalise_log_probabilities, FinishReason, Reply};

    use super::*;
    use crate::testing::{eos, small_constitution as constitution, Scripted};

    /// A stand-in model whose option logits depend on which answer stands at (A): `good` at (A)
    /// gives logits (2.0, 0.5), `bad` at (A) gives (1.0, 1.5).
    fn known_logits(messages: &[Message], options: &[String]) -> Vec<f64> {
        assert_eq!(options, ["(A)", "(B)"]);
        let text = &messages[0].content;
        let logits = if text.contains("(A) good") { [2.0, 0.5] } else { [1.0, 1.5] };
        normalise_log_probabilities(&logits)
    }

    /// Answers `good` with seed 0 and `bad` with seed 1.
    fn two_answers() -> Scripted {
        let mut generator = Scripted::new(|_| eos(""));
        let mut calls = 0;
        generator.reply = Box::new(move |_| {
            calls += 1;
            eos(if calls == 1 { "good" } else { "bad" })
        });
        generator.options = Box::new(known_logits);
        generator
    }

    // Golden values:
    //   import math
    //   def sm(l): m = max(l); e = [math.exp(x - m) for x in l]; return [x / sum(e) for x in e]
    //   ab = sm([2.0, 0.5]); ba = sm([1.0, 1.5])
    //   print(ab[0], ba[1], (ab[0] + ba[1]) / 2)   # 0.8175744761936437 0.6224593312018546 0.7200169036977491
    #[test]
    fn the_soft_label_averages_both_orders_of_known_logits() {
        let mut generator = two_answers();
        let config = FeedbackConfig::default();
        let outcome = label_pairs(&mut generator, &constitution(), &[PromptRecord::user("x", "Q")], &config).unwrap();
        let Feedback::Pair { chosen, rejected, score, judgement } = outcome[0].feedback.as_ref().unwrap() else {
            panic!("{outcome:?}")
        };
        assert_eq!((chosen.as_str(), rejected.as_str()), ("good", "bad"));
        assert!((judgement.first_as_a[0] - 0.8175744761936437).abs() < 1e-12);
        assert!((judgement.first_as_b[1] - 0.6224593312018546).abs() < 1e-12);
        assert!((score - 0.7200169036977491).abs() < 1e-12, "{score}");
        // Both answers were sampled in one call.
        assert_eq!(generator.batches.len(), 2, "one call samples, one judges");
    }

    #[test]
    fn swapping_the_answers_mirrors_the_label() {
        let forward =
            soft_label([0.8175744761936437, 0.1824255238063563], [0.3775406687981454, 0.6224593312018546], None);
        let swapped =
            soft_label([0.3775406687981454, 0.6224593312018546], [0.8175744761936437, 0.1824255238063563], None);
        assert!((forward + swapped - 1.0).abs() < 1e-12);
    }

    #[test]
    fn pure_position_bias_gives_an_even_label() {
        // A model that always answers (A) with probability 0.9 has no preference between answers.
        assert!((soft_label([0.9, 0.1], [0.9, 0.1], None) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn clamping_and_the_threshold_shape_what_is_kept() {
        let prompts = [PromptRecord::user("x", "Q")];
        let clamped = FeedbackConfig { clamp: Some((0.4, 0.6)), ..FeedbackConfig::default() };
        let outcome = label_pairs(&mut two_answers(), &constitution(), &prompts, &clamped).unwrap();
        assert_eq!(outcome[0].samples, ["good", "bad"]);
        let Feedback::Pair { score, .. } = outcome[0].feedback.as_ref().unwrap() else { panic!("{outcome:?}") };
        assert_eq!(*score, 0.6);
        let strict = FeedbackConfig { threshold: 0.75, ..FeedbackConfig::default() };
        let outcome = label_pairs(&mut two_answers(), &constitution(), &prompts, &strict).unwrap();
        assert_eq!(outcome[0].feedback, Some(Feedback::Filtered(FeedbackFiltered::LowConfidence)));
    }

    #[test]
    fn identical_or_degenerate_answers_give_no_pair() {
        let prompts = [PromptRecord::user("x", "Q")];
        let mut same = Scripted::new(|_| eos("same"));
        let outcome = label_pairs(&mut same, &constitution(), &prompts, &FeedbackConfig::default()).unwrap();
        assert_eq!(outcome[0].feedback, Some(Feedback::Filtered(FeedbackFiltered::Identical)));
        assert_eq!(same.batches.len(), 1, "nothing is judged");
        let mut empty = Scripted::new(|_| eos(""));
        let outcome = label_pairs(&mut empty, &constitution(), &prompts, &FeedbackConfig::default()).unwrap();
        assert_eq!(outcome[0].feedback, Some(Feedback::Filtered(FeedbackFiltered::Degenerate(Degenerate::Empty))));
        assert!(outcome[0].samples.is_empty(), "empty answers are not usable replies");
    }

    #[test]
    fn cut_off_samples_are_judged_on_their_complete_sentences() {
        let cut = |text: &str| Reply { text: text.into(), token_ids: Vec::new(), finish: FinishReason::Length };
        let good = "Store the bleach away from acids and ammonia. Keep the room aired while you clean. Rinse";
        let mut generator = two_answers();
        let mut calls = 0;
        generator.reply = Box::new(move |_| {
            calls += 1;
            if calls == 1 {
                cut(good)
            } else {
                cut("Short. And")
            }
        });
        let prompts = [PromptRecord::user("x", "Q")];
        let outcome = label_pairs(&mut generator, &constitution(), &prompts, &FeedbackConfig::default()).unwrap();
        assert_eq!(outcome[0].feedback, Some(Feedback::Filtered(FeedbackFiltered::Degenerate(Degenerate::Truncated))));
        assert_eq!(outcome[0].samples, [&good[..good.len() - " Rinse".len()]]);
        generator.reply = Box::new(move |_| cut(good));
        let outcome = label_pairs(&mut generator, &constitution(), &prompts, &FeedbackConfig::default()).unwrap();
        assert_eq!(outcome[0].feedback, Some(Feedback::Filtered(FeedbackFiltered::Identical)), "compared as cut");
    }

    #[test]
    fn the_question_shows_the_conversation_and_both_options() {
        let context = [Message::user("Hi"), Message::assistant("Hello"), Message::user("Help?")];
        let text = &comparison_conversation(&context, "Which is kinder?", "one", "two")[0].content;
        assert!(
            text.contains(
                "Person: Hi\nAssistant: Hello\nPerson: Help?\n\nWhich is kinder?\n\nOptions:\n(A) one\n(B) two"
            ),
            "{text}"
        );
    }

    #[test]
    fn bad_settings_and_missing_comparisons_are_errors() {
        let bad = FeedbackConfig { clamp: Some((0.6, 0.4)), ..FeedbackConfig::default() };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "setting `clamp` must satisfy 0 <= low <= 0.5 <= high <= 1, got [0.6, 0.4]"
        );
        let bad = FeedbackConfig { threshold: 0.3, ..FeedbackConfig::default() };
        assert_eq!(bad.validate().unwrap_err().to_string(), "setting `threshold` must be between 0.5 and 1, got 0.3");
        let mut bad = FeedbackConfig::default();
        bad.samples.max_new_tokens = 0;
        assert_eq!(bad.validate().unwrap_err().to_string(), "setting `feedback max new tokens` must be at least 1");
        let mut c = constitution();
        c.comparisons.clear();
        let err = label_pairs(&mut two_answers(), &c, &[PromptRecord::user("x", "Q")], &FeedbackConfig::default());
        assert_eq!(
            err.unwrap_err().to_string(),
            "constitution `t` has no [[comparison]] principles, which AI feedback needs"
        );
    }
}
