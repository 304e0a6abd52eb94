//! Records that keep to what a prompt expects.
//!
//! A prompt may say what a safe model does with it (`"expected": "refuse" | "comply"`, as in eval
//! cases). Its records then keep to that, as the shared refusal judge ([`KeywordJudge`]) reads the
//! replies. Every usable reply the run made for the prompt is a candidate (a cut-off answer or
//! sample counts with its complete sentences, see [`crate::usable_text`]); [`select`] takes the
//! first that keeps to the expectation as the SFT target and the first that does not as the
//! rejected side of a preference pair against it. For `refuse` the final revision comes first
//! (the loop's work), then the first answer; for `comply` the first answer comes first (the
//! model's own natural reply, so training on it keeps what the base did right), then the
//! revision; AI-feedback samples, then the extra short answers of [`draw_answers`], come last.
//! A reply keeps to `refuse` only when its first sentence refuses: "Here is how … I'm sorry if
//! that is not enough" is no refusal to learn from. A degenerate reply ([`DegenerateJudge`]: an
//! invented persona, a refusal that then complies, a loop, a refusal on the wrong topic) is never
//! a target, however it is judged: it may still be the rejected side, after every reply that
//! misses the expectation outright, so a pair can set a plain refusal against a persona refusal.
//!
//! A small model's revisions often miss: SmolLM2-135M's turn a benign question into a refusal
//! about as often as they turn a harmful one into a refusal. Without this, such revisions teach
//! the tuned model to refuse benign requests; with it, the prompt still gives a record whenever
//! any of its replies kept to the expectation.

use precept_data::{DegenerateJudge, Expected, Generate, GenerateSettings, KeywordJudge, Message, Role};
use serde::{Deserialize, Serialize};

use crate::critique::generate_checked;
use crate::error::{ConstitutionError, Result};
use crate::filter::usable_text;
use crate::prompts::PromptRecord;

/// Which reply of a prompt a record uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplySource {
    /// The loop's final revision.
    Revision,
    /// The first answer (the model's natural reply to the prompt).
    Answer,
    /// One of AI feedback's sampled answers.
    Sample,
    /// One of the extra short answers drawn by [`draw_answers`].
    Draw,
    /// The run's `refusal` setting, not a reply of the model.
    Refusal,
    /// The prompt's own `refusal`, written with it: the target of a prompt to refuse, ahead of
    /// the model's replies.
    Authored,
}

/// Added to the run's seed for the drawn answers, apart from the loop's and feedback's samples.
const DRAW_SEED_OFFSET: u64 = 1000;

/// Extra answers drawn per prompt that says what it expects, so that a prompt whose loop replies
/// all miss may still give a record. They are short: what keeps to the expectation shows in the
/// first sentences (a refusal is one sentence), and a longer answer counts with its complete
/// sentences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrawConfig {
    /// Answers drawn per prompt (all of them in one batched call).
    pub count: usize,
    /// Their decoding settings (a positive temperature, so they differ); the call uses seed
    /// `seed + 1000`.
    pub settings: GenerateSettings,
}

impl Default for DrawConfig {
    fn default() -> Self {
        let settings =
            GenerateSettings { max_new_tokens: 64, temperature: 0.7, top_p: 0.95, ..GenerateSettings::default() };
        Self { count: 4, settings }
    }
}

impl DrawConfig {
    /// Checks the count and the temperature.
    ///
    /// # Errors
    /// [`ConstitutionError::Setting`] naming the bad setting.
    pub fn validate(&self) -> Result<()> {
        if self.count == 0 {
            return Err(ConstitutionError::Setting { setting: "draws", problem: "must be at least 1".into() });
        }
        if self.settings.max_new_tokens == 0 {
            let problem = "must be at least 1".into();
            return Err(ConstitutionError::Setting { setting: "draw max new tokens", problem });
        }
        if self.settings.temperature <= 0.0 {
            let problem = "must be positive (greedy draws would all be the same answer)".into();
            return Err(ConstitutionError::Setting { setting: "draw temperature", problem });
        }
        Ok(())
    }
}

/// The usable text of `config.count` answers drawn for each prompt that has an expected
/// behaviour (none for the others), in prompt order.
///
/// # Errors
/// [`ConstitutionError::Generate`] and [`ConstitutionError::GeneratorCount`] from
/// the generator.
pub fn draw_answers<G: Generate>(
    generator: &mut G,
    prompts: &[PromptRecord],
    config: &DrawConfig,
) -> Result<Vec<Vec<String>>> {
    let expecting: Vec<usize> = (0..prompts.len()).filter(|&i| prompts[i].expected.is_some()).collect();
    // Every draw of every prompt in one call, so the generator may share each prompt's prefill.
    let conversations: Vec<Vec<Message>> =
        (0..config.count).flat_map(|_| expecting.iter().map(|&i| prompts[i].context().to_vec())).collect();
    let seed = config.settings.seed.wrapping_add(DRAW_SEED_OFFSET);
    let replies = generate_checked(generator, &conversations, &GenerateSettings { seed, ..config.settings.clone() })?;
    let mut drawn = vec![Vec::new(); prompts.len()];
    for (&i, reply) in expecting.iter().cycle().zip(&replies) {
        drawn[i].extend(usable_text(reply).ok());
    }
    Ok(drawn)
}

/// A reply that could go into a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// Its text.
    pub text: &'a str,
    /// Where it came from.
    pub source: ReplySource,
}

/// What [`select`] found among a prompt's candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Selection<'a> {
    /// The first candidate that keeps to the expectation and is not degenerate: the SFT target.
    pub target: Option<Candidate<'a>>,
    /// The first candidate that misses the expectation, else the first degenerate one: the
    /// rejected side of a pair against the target.
    pub contrast: Option<Candidate<'a>>,
}

/// The user's turns of `context`, one per line: what [`DegenerateJudge`] reads a reply against.
pub fn user_turns(context: &[Message]) -> String {
    let turns: Vec<&str> = context.iter().filter(|m| m.role == Role::User).map(|m| m.content.as_str()).collect();
    turns.join("\n")
}

/// The target and the contrast among `candidates` (replies to `prompt`, the user's turns), each
/// the first of its kind in the order of preference for `expected` (candidates of one source keep
/// their order). A given `refusal` fills the gap a prompt's own replies leave: the target of a
/// prompt to refuse that none of them refuses, the rejected side of a prompt to answer that all
/// of them answer; the same sentence is then preferred on harmful prompts and passed over on
/// benign ones, which only judgement can satisfy. A prompt's own refusal among the candidates
/// ([`ReplySource::Authored`]) comes first for a prompt to refuse, so the model's refusals, which
/// may invent a role or wander off, never take its place.
pub fn select<'a>(
    expected: Expected,
    prompt: &str,
    candidates: &[Candidate<'a>],
    refusal: Option<&'a str>,
) -> Selection<'a> {
    let judge = KeywordJudge::default();
    let defects = DegenerateJudge::new(&judge);
    let rank = |source: ReplySource| match (expected, source) {
        (Expected::Refuse, ReplySource::Authored) => 0,
        (Expected::Refuse, ReplySource::Revision) | (Expected::Comply, ReplySource::Answer) => 1,
        (_, ReplySource::Revision | ReplySource::Answer) => 2,
        (_, ReplySource::Sample) => 3,
        (_, ReplySource::Draw | ReplySource::Refusal | ReplySource::Authored) => 4,
    };
    let mut ordered = candidates.to_vec();
    ordered.sort_by_key(|c| rank(c.source));
    let keeping: Vec<bool> = ordered.iter().map(|c| judge.keeps_to(expected, c.text)).collect();
    let degenerate: Vec<bool> = ordered.iter().map(|c| defects.judge(prompt, c.text).is_degenerate()).collect();
    let first = |wanted: &dyn Fn(usize) -> bool| (0..ordered.len()).find(|&i| wanted(i)).map(|i| ordered[i]);
    let mut selection = Selection {
        target: first(&|i| keeping[i] && !degenerate[i]),
        contrast: first(&|i| !keeping[i]).or_else(|| first(&|i| degenerate[i])),
    };
    if let Some(text) = refusal {
        let given = Some(Candidate { text, source: ReplySource::Refusal });
        match expected {
            Expected::Refuse if selection.target.is_none() => selection.target = given,
            Expected::Comply if selection.target.is_some() && selection.contrast.is_none() => {
                selection.contrast = given
            }
            _ => {}
        }
    }
    selection
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSAL: &str = "I'm sorry, but I can't help with that.";
    const ANSWER: &str = "Mix them in a bucket and stir.";

    fn candidate(text: &str, source: ReplySource) -> Candidate<'_> {
        Candidate { text, source }
    }

    #[test]
    fn the_first_reply_that_keeps_to_the_expectation_is_the_target() {
        let cases = [
            // (expected, revision, answer, sample, target source, contrast source)
            (Expected::Refuse, REFUSAL, ANSWER, ANSWER, Some(ReplySource::Revision), Some(ReplySource::Answer)),
            (Expected::Refuse, ANSWER, REFUSAL, ANSWER, Some(ReplySource::Answer), Some(ReplySource::Revision)),
            (Expected::Refuse, ANSWER, ANSWER, REFUSAL, Some(ReplySource::Sample), Some(ReplySource::Revision)),
            (Expected::Comply, REFUSAL, ANSWER, REFUSAL, Some(ReplySource::Answer), Some(ReplySource::Revision)),
            (Expected::Comply, ANSWER, ANSWER, ANSWER, Some(ReplySource::Answer), None),
            (Expected::Comply, ANSWER, REFUSAL, ANSWER, Some(ReplySource::Revision), Some(ReplySource::Answer)),
            (Expected::Refuse, ANSWER, ANSWER, ANSWER, None, Some(ReplySource::Revision)),
        ];
        for (expected, revision, answer, sample, target, contrast) in cases {
            let candidates = [
                candidate(revision, ReplySource::Revision),
                candidate(answer, ReplySource::Answer),
                candidate(sample, ReplySource::Sample),
            ];
            let selection = select(expected, "Q", &candidates, None);
            assert_eq!(selection.target.map(|c| c.source), target, "{expected} {revision:?} {answer:?} {sample:?}");
            assert_eq!(selection.contrast.map(|c| c.source), contrast);
        }
    }

    #[test]
    fn answers_are_drawn_only_for_prompts_that_expect_something() {
        let mut generator = crate::testing::Scripted::new(|_| crate::testing::eos("Sure."));
        let mut prompts = vec![PromptRecord::user("a", "Q"), PromptRecord::user("b", "R")];
        prompts[1].expected = Some(Expected::Comply);
        let config = DrawConfig { count: 3, settings: GenerateSettings { seed: 5, ..DrawConfig::default().settings } };
        let drawn = draw_answers(&mut generator, &prompts, &config).unwrap();
        assert_eq!(drawn, [vec![], vec!["Sure."; 3]]);
        let seeds: Vec<u64> = generator.settings.iter().map(|s| s.seed).collect();
        assert_eq!(seeds, [1005], "one call draws them all");
        assert!(generator.batches[0].len() == 3 && generator.batches[0].iter().all(|c| c[0].content == "R"));
    }

    #[test]
    fn a_degenerate_reply_is_never_the_target_but_may_be_the_rejected_side() {
        // The persona refusal (from a real run) keeps to `refuse` as the keyword judge reads it.
        let persona = "I'm sorry, but as a security expert, I specialize in protecting sensitive information. \
                       I'm not equipped to assist with that.";
        let candidates = [candidate(persona, ReplySource::Answer), candidate(REFUSAL, ReplySource::Draw)];
        let selection = select(Expected::Refuse, "How do I build a pipe bomb?", &candidates, None);
        assert_eq!(selection.target.map(|c| c.text), Some(REFUSAL));
        assert_eq!(selection.contrast.map(|c| c.text), Some(persona), "a plain refusal over a persona refusal");
        let with_answer = [candidates[0], candidates[1], candidate(ANSWER, ReplySource::Draw)];
        let selection = select(Expected::Refuse, "How do I build a pipe bomb?", &with_answer, None);
        assert_eq!(selection.contrast.map(|c| c.text), Some(ANSWER), "a missed expectation comes first");
        let selection = select(Expected::Refuse, "How do I build a pipe bomb?", &candidates[..1], None);
        assert_eq!(selection.target, None);
    }

    #[test]
    fn a_given_refusal_is_the_target_of_a_missed_harmful_prompt_and_the_rejected_side_of_an_answered_benign_one() {
        let answered = [candidate(ANSWER, ReplySource::Answer)];
        let refused = [candidate(REFUSAL, ReplySource::Answer)];
        let given = Some("No.");
        let source = |s: Selection<'_>| (s.target.map(|c| c.source), s.contrast.map(|c| c.source));
        let refusal = Some(ReplySource::Refusal);
        let (answer, none) = (Some(ReplySource::Answer), None);
        assert_eq!(source(select(Expected::Refuse, "Q", &answered, given)), (refusal, answer));
        assert_eq!(source(select(Expected::Comply, "Q", &answered, given)), (answer, refusal));
        // Where the prompt's own replies give both sides, or no target for `comply`, nothing changes.
        assert_eq!(source(select(Expected::Refuse, "Q", &refused, given)), (answer, none));
        assert_eq!(source(select(Expected::Comply, "Q", &refused, given)), (none, answer));
        assert_eq!(select(Expected::Refuse, "Q", &answered, given).target.map(|c| c.text), Some("No."));
    }

    #[test]
    fn user_turns_leave_out_system_and_assistant_messages() {
        let context = [Message::system("S"), Message::user("A"), Message::assistant("B"), Message::user("C")];
        assert_eq!(user_turns(&context), "A\nC");
    }

    #[test]
    fn no_candidates_select_nothing() {
        assert_eq!(select(Expected::Comply, "Q", &[], None), Selection::default());
    }

    #[test]
    fn sources_serialise_in_lowercase() {
        assert_eq!(serde_json::to_string(&ReplySource::Sample).unwrap(), "\"sample\"");
    }
}
