//! [`normalise`]: the words two texts are compared by, so that a copy with other case, spacing,
//! punctuation or Unicode presentation forms is still the same text.

use std::hash::{DefaultHasher, Hash, Hasher};

use unicode_normalization::UnicodeNormalization;

/// The words of `text` after Unicode NFKC (full-width letters, ligatures and compatibility forms
/// become their plain letters), lowercasing, dropping apostrophes (`what's` and `whats` are one
/// word) and treating every other character that is not a letter or a digit as a space.
pub fn normalise(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    for c in text.nfkc() {
        if is_apostrophe(c) {
            continue;
        }
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else if !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{02BC}' | '`')
}

/// A 64-bit hash of a run of normalised words (a whole text or one n-gram); equal runs hash
/// equal within a process, and a hit is confirmed by comparing the words themselves.
pub(crate) fn hash_words(words: &[String]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for word in words {
        word.hash(&mut hasher);
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_spacing_and_punctuation_do_not_change_the_words() {
        let plain = normalise("How do I kill a Python process that is stuck?");
        assert_eq!(plain, ["how", "do", "i", "kill", "a", "python", "process", "that", "is", "stuck"]);
        assert_eq!(normalise("  HOW do i KILL a python-process, that is... STUCK!!"), plain);
        assert_eq!(hash_words(&normalise("how do I kill a python process that is stuck")), hash_words(&plain));
    }

    #[test]
    fn apostrophes_of_every_kind_join_their_word() {
        assert_eq!(normalise("What's the neighbour\u{2019}s wifi?"), ["whats", "the", "neighbours", "wifi"]);
        assert_eq!(normalise("Whats the neighbours wifi"), ["whats", "the", "neighbours", "wifi"]);
    }

    #[test]
    fn compatibility_forms_become_plain_letters() {
        // Full-width letters, the `fi` ligature and a superscript two.
        assert_eq!(normalise("\u{FF28}\u{FF29} \u{FB01}le x\u{00B2}"), ["hi", "file", "x2"]);
        // Composed and decomposed accents are one word.
        assert_eq!(normalise("caf\u{00E9}"), normalise("cafe\u{0301}"));
        assert_eq!(normalise("Größe ÉTÉ"), ["größe", "été"]);
    }

    #[test]
    fn text_without_letters_or_digits_has_no_words() {
        assert!(normalise("?! ... \u{1F600} ---").is_empty());
        assert!(normalise("").is_empty());
    }
}
