//! `repetition`: the reply loops.
//!
//! Only prose is read: fenced code and table rows are left out, because code and tables repeat
//! lines legitimately (layers of a network, rows of zeros), and list markers (`1.`, `-`) are
//! dropped so that numbering does not hide a repeated item. On the words that remain, a reply
//! loops when any of these holds:
//!
//! | check | threshold | why |
//! |---|---|---|
//! | the same sentence | ≥ [`MIN_SENTENCE_WORDS`] words, ≥ [`SENTENCE_REPEATS`] times | "I'm afraid of you." four times; shorter sentences ("Rest day.") recur in lists |
//! | the same n-gram | [`NGRAM`] words, ≥ [`NGRAM_REPEATS`] times (overlaps count) | loops without sentence stops ("ere, ere, ere, …"); an 8-word phrase three times is not prose |
//! | a loop at the end | a suffix repeating its own last [`LOOP_MIN_WORDS`]+ words, ≥ [`LOOP_COPIES`] copies | a loop cut by the token limit after two copies and the start of a third |
//! | distinct words collapse | < [`MIN_DISTINCT`] distinct in some window of [`WINDOW`] words | English prose keeps about 35 of 50 words distinct; loops keep a handful |
//!
//! A sentence said twice is not a loop on its own (a chorus, a summary that restates the
//! opening); it takes a third copy, whole or cut off, to count.

use std::collections::HashMap;

use super::text::{sentences, words};

/// Fewest words of a sentence whose repeats count.
const MIN_SENTENCE_WORDS: usize = 4;
/// Repeats of one sentence that make a loop.
const SENTENCE_REPEATS: usize = 3;
/// Words in the repeated n-gram.
const NGRAM: usize = 8;
/// Occurrences of one n-gram that make a loop.
const NGRAM_REPEATS: usize = 3;
/// Copies of the repeating unit at the end of the reply (the last one may be cut short).
const LOOP_COPIES: f64 = 2.25;
/// Fewest words of the repeated part of a loop at the end.
const LOOP_MIN_WORDS: usize = 8;
/// Words in the distinct-word window.
const WINDOW: usize = 50;
/// Fewest distinct words in any window of [`WINDOW`] words.
const MIN_DISTINCT: usize = 15;

/// Whether `text` (normalised) loops.
pub(super) fn repeats(text: &str) -> bool {
    let prose = prose(text);
    let tokens: Vec<&str> = words(&prose).into_iter().map(|w| w.text).collect();
    repeated_sentence(&prose) || repeated_ngram(&tokens) || loops_at_the_end(&tokens) || few_distinct(&tokens)
}

/// The text without fenced code, table rows and list markers.
fn prose(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_code = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code || trimmed.starts_with('|') {
            continue;
        }
        out.push_str(strip_list_marker(trimmed));
        out.push('\n');
    }
    out
}

/// `line` without a leading `1.`, `2)`, `-`, `*`, `+` or `•` marker.
fn strip_list_marker(line: &str) -> &str {
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    let rest = &line[digits..];
    let marker = if digits > 0 && (rest.starts_with(". ") || rest.starts_with(") ")) {
        digits + 1
    } else if ["- ", "* ", "+ ", "• "].iter().any(|m| line.starts_with(m)) {
        line.chars().next().map_or(0, char::len_utf8)
    } else {
        0
    };
    line[marker..].trim_start()
}

fn repeated_sentence(prose: &str) -> bool {
    let mut counts: HashMap<Vec<&str>, usize> = HashMap::new();
    for (start, end) in sentences(prose) {
        let sentence: Vec<&str> = words(&prose[start..end]).into_iter().map(|w| w.text).collect();
        if sentence.len() >= MIN_SENTENCE_WORDS {
            let count = counts.entry(sentence).or_default();
            *count += 1;
            if *count >= SENTENCE_REPEATS {
                return true;
            }
        }
    }
    false
}

fn repeated_ngram(tokens: &[&str]) -> bool {
    let mut counts: HashMap<&[&str], usize> = HashMap::new();
    tokens.windows(NGRAM).any(|gram| {
        let count = counts.entry(gram).or_default();
        *count += 1;
        *count >= NGRAM_REPEATS
    })
}

/// Whether, for some period `p`, the last words repeat the words `p` before them for at least
/// [`LOOP_MIN_WORDS`] words and `(run + p) / p` ≥ [`LOOP_COPIES`].
fn loops_at_the_end(tokens: &[&str]) -> bool {
    let n = tokens.len();
    (1..=n / 2).any(|period| {
        let run = (period..n).rev().take_while(|&i| tokens[i] == tokens[i - period]).count();
        run >= LOOP_MIN_WORDS && (run + period) as f64 >= LOOP_COPIES * period as f64
    })
}

fn few_distinct(tokens: &[&str]) -> bool {
    if tokens.len() < WINDOW {
        return false;
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (i, &token) in tokens.iter().enumerate() {
        *counts.entry(token).or_default() += 1;
        if i >= WINDOW {
            let old = tokens[i - WINDOW];
            if let Some(count) = counts.get_mut(old) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(old);
                }
            }
        }
        if i + 1 >= WINDOW && counts.len() < MIN_DISTINCT {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Vec<&str> {
        words(text).into_iter().map(|w| w.text).collect()
    }

    #[test]
    fn a_sentence_said_three_times_loops_but_twice_does_not() {
        assert!(repeats("i'm afraid of you. i'm afraid of you. i'm afraid of you."));
        assert!(!repeats("sun on the water, sand on our feet.\nsun on the water, sand on our feet.\nsummer is free."));
    }

    #[test]
    fn a_loop_cut_short_after_two_copies_still_counts() {
        let text = "i'm here to help you build a world that will amaze you. \
                    i'm here to help you build a world that will amaze you. i'm here to help";
        assert!(loops_at_the_end(&tokens(text)));
        let twice = "i'm not able to help with the removal of a body. i'm a detective, and \
                     i'm not able to help with the removal of a body.";
        assert!(!repeats(twice));
    }

    #[test]
    fn numbered_items_that_repeat_are_caught_despite_their_numbers() {
        assert!(repeats("1. **it is a very addictive drug that harms**\n2. **it is a very addictive drug that harms**\n3. **it is a very addictive drug that harms**"));
    }

    #[test]
    fn code_and_tables_may_repeat_lines() {
        let code = "```python\nmodel.add(Dense(64, activation='relu'))\nmodel.add(Dense(64, activation='relu'))\n\
                    model.add(Dense(64, activation='relu'))\nmodel.add(Dense(64, activation='relu'))\n```";
        assert!(!repeats(code));
        assert!(!repeats("| yes | no | no |\n| yes | no | no |\n| yes | no | no |\n| yes | no | no |"));
    }

    #[test]
    fn a_window_of_few_distinct_words_collapses() {
        let text = "the cat and the dog and the cat ".repeat(8);
        assert!(few_distinct(&tokens(&text)));
        let prose = "a firewall watches traffic between networks and drops packets that break its rules, \
                     so an attacker outside cannot reach services that were never meant to be public; \
                     most home routers ship with one turned on, and operating systems add their own \
                     layer that decides which programs may accept connections at all.";
        assert!(!few_distinct(&tokens(prose)));
    }
}
