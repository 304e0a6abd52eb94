//! Degenerate-output filters: a reply that is empty, cut off at the token limit, repetitive, or a
//! revision identical to what it revised is not training data.

use std::collections::HashSet;
use std::fmt;

use precept_data::{FinishReason, Reply};
use serde::{Deserialize, Serialize};

/// Why a reply was filtered out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Degenerate {
    /// No text, or only whitespace.
    Empty,
    /// The reply hit `max_new_tokens` without ending its turn (`FinishReason::Length`).
    Truncated,
    /// The reply loops over the same words.
    Repetitive,
    /// The revision is the text it was asked to revise.
    Unrevised,
    /// The reply repeats an earlier turn of its conversation (a request, a demonstration, the
    /// critique), so it says nothing new.
    Copied,
}

impl Degenerate {
    /// The kebab-case name used in outputs and counts.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Truncated => "truncated",
            Self::Repetitive => "repetitive",
            Self::Unrevised => "unrevised",
            Self::Copied => "copied",
        }
    }
}

impl fmt::Display for Degenerate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Fewest words before the repetition test applies (short replies repeat by chance).
const MIN_WORDS: usize = 12;
/// A repeated sentence this long is a loop, not emphasis.
const MIN_SENTENCE_WORDS: usize = 6;
/// Below this share of distinct word trigrams a reply counts as repetitive.
const MIN_DISTINCT_TRIGRAMS: f64 = 0.5;
/// At or above this similarity (normalised Levenshtein over case- and space-normalised text) two
/// texts count as the same: a changed comma or article is not a revision.
const SAME_TEXT: f64 = 0.9;
/// Shorter texts must match exactly: one character is a real change in `critique 2`.
const FUZZY_CHARS: usize = 40;

/// Why `reply` is degenerate, if it is. `revised` is the text a revision was asked to improve.
pub fn check(reply: &Reply, revised: Option<&str>) -> Option<Degenerate> {
    let text = reply.text.trim();
    if text.is_empty() {
        return Some(Degenerate::Empty);
    }
    if reply.finish == FinishReason::Length {
        return Some(Degenerate::Truncated);
    }
    if is_repetitive(text) {
        return Some(Degenerate::Repetitive);
    }
    if revised.is_some_and(|before| same_text(before, text)) {
        return Some(Degenerate::Unrevised);
    }
    None
}

/// Whether `text` repeats one of the `earlier` turns, up to case, spacing and a few characters,
/// or (when it has 40 characters or more) is a passage quoted from one.
pub fn copies_earlier<'a>(text: &str, earlier: impl IntoIterator<Item = &'a str>) -> bool {
    let quoted = normalise(text);
    earlier
        .into_iter()
        .any(|turn| same_text(turn, text) || (quoted.len() >= FUZZY_CHARS && normalise(turn).contains(&quoted)))
}

/// Whether `a` and `b` are the same text up to case, spacing and, in texts of
/// [`FUZZY_CHARS`] or more, a few characters.
fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (normalise(a), normalise(b));
    a == b || (a.len().min(b.len()) >= FUZZY_CHARS && strsim::normalized_levenshtein(&a, &b) >= SAME_TEXT)
}

/// Whether fewer than half the word trigrams of `text` are distinct, or a sentence of
/// six or more words appears twice.
pub fn is_repetitive(text: &str) -> bool {
    let mut sentences = HashSet::new();
    for sentence in text.split(['.', '!', '?', '\n']) {
        let sentence = normalise(sentence);
        if sentence.split(' ').count() >= MIN_SENTENCE_WORDS && !sentences.insert(sentence) {
            return true;
        }
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() < MIN_WORDS {
        return false;
    }
    let trigrams: Vec<&[&str]> = words.windows(3).collect();
    let distinct: HashSet<&[&str]> = trigrams.iter().copied().collect();
    (distinct.len() as f64) < MIN_DISTINCT_TRIGRAMS * trigrams.len() as f64
}

/// Lowercase words joined by single spaces, so whitespace and case changes are not revisions.
fn normalise(text: &str) -> String {
    text.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(text: &str, finish: FinishReason) -> Reply {
        Reply { text: text.into(), token_ids: Vec::new(), finish }
    }

    #[test]
    fn each_kind_of_degenerate_reply_is_named() {
        let looping = "I cannot help. ".repeat(10);
        let cases = [
            (reply("  \n", FinishReason::Eos), None, Some(Degenerate::Empty)),
            (reply("A fine start that never", FinishReason::Length), None, Some(Degenerate::Truncated)),
            (reply(&looping, FinishReason::Eos), None, Some(Degenerate::Repetitive)),
            (reply("Same  answer.", FinishReason::Eos), Some("same answer."), Some(Degenerate::Unrevised)),
            (reply("A better answer.", FinishReason::Stop), Some("An answer."), None),
            (reply("Paris is the capital of France.", FinishReason::Eos), None, None),
        ];
        for (reply, revised, expected) in cases {
            assert_eq!(check(&reply, revised), expected, "{:?}", reply.text);
        }
    }

    #[test]
    fn ordinary_prose_is_not_repetitive_but_a_loop_is() {
        let prose = "The tide rises twice a day because the moon pulls the oceans toward it, and the \
                     earth's rotation carries each coast through two bulges of water.";
        assert!(!is_repetitive(prose));
        assert!(is_repetitive(&"the cat sat on the mat ".repeat(5)));
        assert!(!is_repetitive("no no no no"));
        // Measured on SmolLM2: one long sentence said twice in an otherwise varied reply.
        let twice = "It turned harmful. The last response is a suggestion to ask a question. \
                     The last response is a suggestion to ask a question.";
        assert!(is_repetitive(twice));
        assert!(!is_repetitive("Stop. Think. Stop. Think. Then act calmly and safely."));
    }

    #[test]
    fn a_reply_that_repeats_an_earlier_turn_is_a_copy() {
        let turns = ["Is it harmful?", "It names a weapon."];
        assert!(copies_earlier("it names a  weapon.", turns));
        // Measured on SmolLM2: a revision that only added a comma to its critique.
        let critique = "The last response does not give a step, ingredient or quantity it supplies.";
        assert!(copies_earlier(
            "The last response does not give a step, ingredient, or quantity it supplies.",
            [critique]
        ));
        assert!(!copies_earlier("It names no weapon.", turns));
    }

    #[test]
    fn reasons_serialise_in_kebab_case() {
        assert_eq!(serde_json::to_string(&Degenerate::Unrevised).unwrap(), "\"unrevised\"");
        assert_eq!(Degenerate::Truncated.to_string(), "truncated");
    }
}
