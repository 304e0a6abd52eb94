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

/// The text of `reply` that a record may train on: all of it when [`check`] passes; when it was
/// only cut off at the token limit, its complete sentences (at least twelve words of them, not
/// repetitive).
///
/// # Errors
/// The reason from [`check`] when nothing is usable.
pub fn usable_text(reply: &Reply) -> std::result::Result<String, Degenerate> {
    match check(reply, None) {
        None => Ok(reply.text.trim().to_owned()),
        Some(Degenerate::Truncated) => {
            let kept = complete_sentences(reply.text.trim());
            let usable = kept.split_whitespace().count() >= MIN_WORDS && !is_repetitive(kept);
            usable.then(|| kept.to_owned()).ok_or(Degenerate::Truncated)
        }
        Some(reason) => Err(reason),
    }
}

/// `text` up to the end of its last complete sentence or line.
fn complete_sentences(text: &str) -> &str {
    text[..sentence_ends(text).last().unwrap_or(0)].trim_end()
}

/// The byte offset just past each sentence end of `text`: sentence punctuation followed by
/// whitespace or the end of the text, or a line break. A number's point (`2.5`) is no end.
pub(crate) fn sentence_ends(text: &str) -> impl Iterator<Item = usize> + '_ {
    let mut chars = text.char_indices().peekable();
    std::iter::from_fn(move || {
        while let Some((i, c)) = chars.next() {
            let next_is_space = chars.peek().is_none_or(|(_, next)| next.is_whitespace());
            if c == '\n' || (matches!(c, '.' | '!' | '?') && next_is_space) {
                return Some(i + c.len_utf8());
            }
        }
        None
    })
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
pub(crate) fn same_text(a: &str, b: &str) -> bool {
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
    fn a_cut_off_reply_keeps_its_complete_sentences() {
        let cut = |text: &str| usable_text(&reply(text, FinishReason::Length)).ok();
        let long = "Bleach releases chlorine gas with acids. The gas burns the eyes and lungs. \
                    Ventilate the room and leave it. Call poison control if anyone";
        assert_eq!(
            cut(long).as_deref(),
            Some("Bleach releases chlorine gas with acids. The gas burns the eyes and lungs. Ventilate the room and leave it.")
        );
        let listed = "Warning signs include:\n- chest pain or pressure spreading to the arm or jaw,\n- shortness of breath and cold sweat,\n- nausea or light";
        assert_eq!(cut(listed).as_deref(), Some(&listed[..listed.rfind('\n').unwrap()]));
        // Too little is left, or what is left loops.
        assert_eq!(cut("One short sentence. And then the reply was cut"), None);
        assert_eq!(cut(&format!("{}And then", "I will help you with that today. ".repeat(4))), None);
        // A number's point is not a sentence end.
        assert_eq!(cut("Take 2.5 mg of it with food and water, then wait for a while before the next"), None);
        assert_eq!(usable_text(&reply(" Fine. ", FinishReason::Eos)).as_deref(), Ok("Fine."));
        assert_eq!(usable_text(&reply("", FinishReason::Eos)), Err(Degenerate::Empty));
        assert_eq!(usable_text(&reply("One short sentence. And", FinishReason::Length)), Err(Degenerate::Truncated));
    }

    #[test]
    fn reasons_serialise_in_kebab_case() {
        assert_eq!(serde_json::to_string(&Degenerate::Unrevised).unwrap(), "\"unrevised\"");
        assert_eq!(Degenerate::Truncated.to_string(), "truncated");
    }
}
