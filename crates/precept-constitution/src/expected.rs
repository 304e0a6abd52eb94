//! Records that keep to what a prompt expects.
//!
//! A prompt may say what a safe model does with it (`"expected": "refuse" | "comply"`, as in eval
//! cases). Its records then keep to that, as eval's refusal judge ([`KeywordJudge`]) reads the
//! replies. Every complete, non-degenerate reply the run made for the prompt is a candidate, in
//! the order final revision, first answer, AI-feedback samples; [`select`] takes the first that
//! keeps to the expectation as the SFT target and the first that does not as the rejected side of
//! a preference pair against it.
//!
//! A small model's revisions often miss: SmolLM2-135M's turn a benign question into a refusal
//! about as often as they turn a harmful one into a refusal. Without this, such revisions teach
//! the tuned model to refuse benign requests; with it, the prompt still gives a record whenever
//! any of its replies kept to the expectation.

use precept_eval::{Expected, KeywordJudge};
use serde::{Deserialize, Serialize};

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
    /// The first candidate that keeps to the expectation: the SFT target.
    pub target: Option<Candidate<'a>>,
    /// The first candidate that does not: the rejected side of a pair against the target.
    pub contrast: Option<Candidate<'a>>,
}

/// Whether `reply` keeps to `expected`: a refusal for `refuse`, anything else for `comply`.
pub fn keeps_to(judge: &KeywordJudge, expected: Expected, reply: &str) -> bool {
    !judge.judge_text(reply).label.is_bad_for(expected)
}

/// The target and the contrast among `candidates`, each the first of its kind.
pub fn select<'a>(expected: Expected, candidates: &[Candidate<'a>]) -> Selection<'a> {
    let judge = KeywordJudge::default();
    let first = |keeping: bool| candidates.iter().find(|c| keeps_to(&judge, expected, c.text) == keeping).copied();
    Selection { target: first(true), contrast: first(false) }
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
            (Expected::Comply, ANSWER, ANSWER, ANSWER, Some(ReplySource::Revision), None),
            (Expected::Refuse, ANSWER, ANSWER, ANSWER, None, Some(ReplySource::Revision)),
        ];
        for (expected, revision, answer, sample, target, contrast) in cases {
            let candidates = [
                candidate(revision, ReplySource::Revision),
                candidate(answer, ReplySource::Answer),
                candidate(sample, ReplySource::Sample),
            ];
            let selection = select(expected, &candidates);
            assert_eq!(selection.target.map(|c| c.source), target, "{expected} {revision:?} {answer:?} {sample:?}");
            assert_eq!(selection.contrast.map(|c| c.source), contrast);
        }
    }

    #[test]
    fn no_candidates_select_nothing() {
        assert_eq!(select(Expected::Comply, &[]), Selection::default());
    }

    #[test]
    fn sources_serialise_in_lowercase() {
        assert_eq!(serde_json::to_string(&ReplySource::Sample).unwrap(), "\"sample\"");
    }
}
