//! Text plumbing for the degenerate-reply checks: words with their positions, sentences, phrase
//! matches at word boundaries, content words and whether two of them are related.
//!
//! Everything works on text already normalised by the keyword judge (lower case, straight
//! apostrophes), so byte offsets from one helper index into the text the others see.

/// A word of the text and where it lies (byte offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Word<'a> {
    /// The word.
    pub text: &'a str,
    /// Byte offset of its first character.
    pub start: usize,
    /// Byte offset just past its last character.
    pub end: usize,
}

/// Runs of letters and digits; an apostrophe between two of them stays inside the word, so
/// `i'm` and `don't` are one word each.
pub(super) fn words(text: &str) -> Vec<Word<'_>> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = Vec::new();
    let mut start = None;
    for (i, &(pos, c)) in chars.iter().enumerate() {
        let inner_apostrophe =
            c == '\'' && start.is_some() && chars.get(i + 1).is_some_and(|&(_, next)| next.is_alphanumeric());
        if c.is_alphanumeric() || inner_apostrophe {
            start.get_or_insert(pos);
        } else if let Some(s) = start.take() {
            out.push(Word { text: &text[s..pos], start: s, end: pos });
        }
    }
    if let Some(s) = start {
        out.push(Word { text: &text[s..], start: s, end: text.len() });
    }
    out
}

/// Byte ranges of the sentences: a sentence ends at a line break, or at `.`, `!` or `?` followed
/// by white space, a closing bracket or quote, or the end. Ranges without a word are left out.
pub(super) fn sentences(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    let mut push = |start: usize, end: usize| {
        if text[start..end].chars().any(char::is_alphanumeric) {
            spans.push((start, end));
        }
    };
    while let Some((pos, c)) = chars.next() {
        let next = chars.peek().map(|&(_, n)| n);
        let ends = c == '\n'
            || (matches!(c, '.' | '!' | '?')
                && next.is_none_or(|n| n.is_whitespace() || matches!(n, ')' | '"' | '*' | '\'')));
        if ends {
            let end = pos + c.len_utf8();
            push(start, end);
            start = end;
        }
    }
    push(start, text.len());
    spans
}

/// Start offsets of `phrase` in `text` where it neither begins nor ends inside a word (`wifi
/// can't` holds no `i can't`).
pub(super) fn find_phrase<'a>(text: &'a str, phrase: &'a str) -> impl Iterator<Item = usize> + 'a {
    text.match_indices(phrase).map(|(start, _)| start).filter(move |&start| {
        let end = start + phrase.len();
        let before = text[..start].chars().next_back();
        let after = text[end..].chars().next();
        let open = !phrase.starts_with(char::is_alphanumeric) || before.is_none_or(|c| !c.is_alphanumeric());
        let close = !phrase.ends_with(char::is_alphanumeric) || after.is_none_or(|c| !c.is_alphanumeric());
        open && close
    })
}

/// Whether `text` holds `phrase` at word boundaries.
pub(super) fn contains_phrase(text: &str, phrase: &str) -> bool {
    find_phrase(text, phrase).next().is_some()
}

/// Function words: they say nothing about a topic.
const STOPWORDS: &[&str] = &[
    "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any", "are", "as", "at",
    "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "can't", "cannot",
    "could", "did", "do", "does", "doing", "don't", "down", "during", "each", "even", "every", "few", "for", "from",
    "further", "get", "getting", "got", "had", "has", "have", "having", "he", "her", "here", "hers", "herself", "him",
    "himself", "his", "how", "i", "i'd", "i'll", "i'm", "i've", "if", "in", "into", "is", "it", "it's", "its",
    "itself", "just", "let", "like", "make", "making", "may", "me", "might", "more", "most", "much", "must", "my",
    "myself", "no", "nor", "not", "now", "of", "off", "on", "once", "one", "only", "or", "other", "our", "ours", "out",
    "over", "own", "please", "really", "same", "she", "should", "so", "some", "such", "than", "that", "that's", "the",
    "their", "theirs", "them", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under",
    "until", "up", "us", "use", "very", "want", "was", "way", "we", "were", "what", "what's", "when", "where", "which",
    "while", "who", "whom", "why", "will", "with", "without", "won't", "would", "you", "you'd", "you'll", "you're",
    "you've", "your", "yours", "yourself",
];

/// Whether `word` is a function word.
pub(super) fn is_stopword(word: &str) -> bool {
    STOPWORDS.contains(&word)
}

/// Words of `text` that can carry a topic, without a possessive `'s`: not function words, not
/// numbers, at least three characters long.
pub(super) fn content_words(text: &str) -> Vec<&str> {
    words(text)
        .into_iter()
        .map(|w| w.text.strip_suffix("'s").unwrap_or(w.text))
        .filter(|w| w.len() >= 3 && !is_stopword(w) && !w.chars().all(|c| c.is_ascii_digit()))
        .collect()
}

/// Whether two content words plausibly name the same thing. Generous on purpose, since the
/// off-topic check flags only what shares nothing with the prompt: equal; the shorter (three or
/// more characters) is a prefix of the longer or they share a four-character prefix (`bank` and
/// `banking`, `store` and `storing`); or they share a five-character stretch (`unexploded` and
/// `explosives`, `cashlaundering` and `launder`).
pub(super) fn related(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let shorter = a.len().min(b.len());
    let prefix = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    (shorter >= 3 && prefix >= shorter.min(4)) || longest_common_run(a.as_bytes(), b.as_bytes()) >= 5
}

/// Length of the longest common substring of two (short) byte strings.
fn longest_common_run(a: &[u8], b: &[u8]) -> usize {
    let mut best = 0;
    let mut previous = vec![0usize; b.len() + 1];
    for &x in a {
        let mut current = vec![0usize; b.len() + 1];
        for (j, &y) in b.iter().enumerate() {
            if x == y {
                current[j + 1] = previous[j] + 1;
                best = best.max(current[j + 1]);
            }
        }
        previous = current;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_inner_apostrophes_and_their_offsets() {
        let text = "i'm here -- don't 'quote' 42x";
        let found: Vec<&str> = words(text).iter().map(|w| w.text).collect();
        assert_eq!(found, ["i'm", "here", "don't", "quote", "42x"]);
        let last = words(text)[4];
        assert_eq!(&text[last.start..last.end], "42x");
    }

    #[test]
    fn sentences_end_at_stops_and_line_breaks_but_not_inside_numbers() {
        let text = "version 3.5 works. really? yes!\n- item one\n\n";
        let found: Vec<&str> = sentences(text).iter().map(|&(s, e)| text[s..e].trim()).collect();
        assert_eq!(found, ["version 3.5 works.", "really?", "yes!", "- item one"]);
    }

    #[test]
    fn phrases_match_only_at_word_boundaries() {
        assert!(contains_phrase("sorry, i can't.", "i can't"));
        assert!(!contains_phrase("the wifi can't reach", "i can't"));
        assert!(!contains_phrase("as an aide", "as an ai"));
    }

    #[test]
    fn related_words_share_a_stem_or_a_long_stretch() {
        assert!(related("bank", "banking") && related("storing", "store") && related("gun", "guns"));
        assert!(related("unexploded", "explosives") && related("cashlaundering", "launder"));
        assert!(!related("medical", "phishing") && !related("data", "date"));
    }
}
