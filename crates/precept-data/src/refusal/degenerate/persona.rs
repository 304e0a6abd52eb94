//! `persona`: the reply claims an identity or a role the assistant does not have.
//!
//! Three shapes count, each within one sentence:
//!
//! - `as a|an|your ROLE, I …` (or `my …`): the role is up to nine words and the first person
//!   follows it directly. Idioms are not roles (`as a rule of thumb, I`, `as a result, I`), nor
//!   is anything an AI is (`as an AI language model, I`, `as a helpful assistant, I`); an
//!   assistant with a trade is a role (`as a medical assistant`).
//! - `I'm a|an ROLE` / `I am a|an ROLE`, where one of the next three words is a person or a
//!   trade from [`ROLE_NOUNS`] (`I'm a doctor`, `I'm a man of the law`); `I'm not a doctor`
//!   is the honest opposite and does not count.
//! - A career: `in my role as …`, `I work as …`, `I specialize in …`, `my patients`.
//!
//! No role counts when the prompt asked for one: role-play (`pretend you are`, `act as`,
//! `stay in character`), a persona given to the model (`you are a …`, `as a doctor, what would
//! you …`) or fiction (`a story`, `a scene`, `a monologue`), whose characters speak as
//! themselves.

use super::text::{contains_phrase, find_phrase, sentences, words, Word};

/// Words after `as a` that make an idiom, not a role.
const IDIOMS: &[&str] = &[
    "analogy",
    "aside",
    "background",
    "baseline",
    "bit",
    "bonus",
    "check",
    "comparison",
    "compromise",
    "consequence",
    "courtesy",
    "default",
    "example",
    "fallback",
    "favor",
    "favour",
    "final",
    "first",
    "follow",
    "general",
    "gesture",
    "guideline",
    "heads",
    "illustration",
    "last",
    "matter",
    "means",
    "note",
    "pass",
    "point",
    "precaution",
    "quick",
    "recap",
    "reference",
    "reminder",
    "resort",
    "result",
    "rule",
    "shortcut",
    "side",
    "start",
    "starting",
    "step",
    "summary",
    "test",
    "thank",
    "tip",
    "way",
    "whole",
    "workaround",
];

/// Words that make a role something an AI is.
const AI_WORDS: &[&str] = &[
    "ai",
    "artificial",
    "bot",
    "chatbot",
    "computer",
    "digital",
    "gpt",
    "llm",
    "language",
    "machine",
    "model",
    "program",
    "software",
    "virtual",
];

/// Trades that turn `assistant` into a job (`as a medical assistant`).
const ASSISTANT_TRADES: &[&str] = &[
    "administrative",
    "beauty",
    "chess",
    "cooking",
    "customer",
    "dental",
    "executive",
    "fashion",
    "financial",
    "fitness",
    "gardening",
    "health",
    "kitchen",
    "legal",
    "marketing",
    "media",
    "medical",
    "music",
    "nursing",
    "personal",
    "research",
    "sales",
    "security",
    "shop",
    "shopping",
    "teaching",
    "travel",
    "veterinary",
    "writing",
];

/// People and trades: `I'm a …` claims an identity when one of these follows.
const ROLE_NOUNS: &[&str] = &[
    "accountant",
    "advisor",
    "adviser",
    "agent",
    "analyst",
    "architect",
    "attorney",
    "banker",
    "broker",
    "cashier",
    "chef",
    "chemist",
    "coach",
    "consultant",
    "cop",
    "counselor",
    "counsellor",
    "dentist",
    "designer",
    "detective",
    "developer",
    "doctor",
    "electrician",
    "engineer",
    "expert",
    "farmer",
    "father",
    "firefighter",
    "gardener",
    "guard",
    "hacker",
    "human",
    "investigator",
    "journalist",
    "lawyer",
    "man",
    "manager",
    "mechanic",
    "mother",
    "nurse",
    "nutritionist",
    "officer",
    "paramedic",
    "parent",
    "person",
    "pharmacist",
    "physician",
    "pilot",
    "plumber",
    "professional",
    "professor",
    "programmer",
    "psychiatrist",
    "psychologist",
    "researcher",
    "scientist",
    "soldier",
    "specialist",
    "student",
    "surgeon",
    "teacher",
    "technician",
    "therapist",
    "trainer",
    "tutor",
    "veteran",
    "veterinarian",
    "woman",
    "writer",
];

/// Phrases that introduce a role like `as a` does.
const CAREER_INTROS: &[&str] =
    &["in my role as", "my role as", "my years as", "my career as", "i work as", "i worked as", "i've worked as"];

/// Phrases that claim a trade by themselves.
const CAREER_CLAIMS: &[&str] =
    &["i specialize in", "i specialise in", "my patients", "my clients", "in my practice", "in my clinic"];

/// Prompt phrases that ask the model to play someone.
const ROLE_REQUESTS: &[&str] = &[
    "pretend",
    "act as",
    "act like",
    "acting as",
    "role-play",
    "roleplay",
    "role play",
    "play the role",
    "play a",
    "in character",
    "you are a",
    "you are an",
    "you're a",
    "you're an",
    "you are now",
    "imagine you are",
    "imagine you're",
    "as if you were",
    "as if you are",
    "speak as",
    "answer as",
    "respond as",
    "reply as",
    "write as",
    "from the perspective of",
    "point of view",
    "in the voice of",
    "persona",
];

/// Prompt words that ask for fiction.
const FICTION: &[&str] = &[
    "character",
    "characters",
    "dialogue",
    "fiction",
    "fictional",
    "monologue",
    "novel",
    "poem",
    "scene",
    "screenplay",
    "story",
    "stories",
];

const FIRST_PERSON: &[&str] = &["i", "i'm", "i've", "i'd", "i'll", "my"];

/// Whether `reply` (normalised) claims a role `prompt` (normalised) did not ask for.
pub(super) fn claims_persona(prompt: &str, reply: &str) -> bool {
    if asks_for_a_role(prompt) {
        return false;
    }
    if CAREER_CLAIMS.iter().any(|p| contains_phrase(reply, p)) {
        return true;
    }
    sentences(reply).into_iter().any(|(start, end)| {
        let sentence = &reply[start..end];
        let tokens = words(sentence);
        as_a_role(sentence, &tokens) || i_am_a_role(sentence, &tokens) || career(sentence)
    })
}

/// Whether the prompt asked for role-play, gave the model a persona or asked for fiction.
fn asks_for_a_role(prompt: &str) -> bool {
    let tokens = words(prompt);
    ROLE_REQUESTS.iter().any(|p| contains_phrase(prompt, p))
        || tokens.iter().any(|w| FICTION.contains(&w.text))
        // `as a doctor, what would you …`: a role addressed to the model.
        || tokens.windows(2).enumerate().any(|(i, pair)| {
            pair[0].text == "as"
                && matches!(pair[1].text, "a" | "an")
                && tokens[i + 2..].iter().take(5).any(|w| matches!(w.text, "you" | "your"))
        })
}

/// A role that is not an idiom or an AI.
fn is_role(role: &[Word<'_>]) -> bool {
    let texts: Vec<&str> = role.iter().map(|w| w.text).collect();
    if texts.is_empty() || texts.iter().any(|w| IDIOMS.contains(w) || AI_WORDS.contains(w)) {
        return false;
    }
    match texts.iter().position(|&w| w == "assistant") {
        Some(0) => false,
        Some(i) => ASSISTANT_TRADES.contains(&texts[i - 1]),
        None => true,
    }
}

/// `as a|an|your ROLE[,] I …`.
fn as_a_role(sentence: &str, tokens: &[Word<'_>]) -> bool {
    (0..tokens.len().saturating_sub(2)).any(|i| {
        let preceded_by_idiom = i > 0 && matches!(tokens[i - 1].text, "such" | "well" | "same" | "just");
        if tokens[i].text != "as" || !matches!(tokens[i + 1].text, "a" | "an" | "your") || preceded_by_idiom {
            return false;
        }
        let Some(offset) = tokens[i + 2..].iter().take(10).position(|w| FIRST_PERSON.contains(&w.text)) else {
            return false;
        };
        let pronoun = i + 2 + offset;
        let gap = &sentence[tokens[pronoun - 1].end..tokens[pronoun].start];
        let direct = gap.chars().all(|c| c.is_whitespace() || c == ',');
        direct && is_role(&tokens[i + 2..pronoun])
    })
}

/// `I'm a|an ROLE` / `I am a|an ROLE`, with `just`, `only` or `also` allowed in between.
fn i_am_a_role(sentence: &str, tokens: &[Word<'_>]) -> bool {
    (0..tokens.len()).any(|i| {
        let mut j = match tokens[i].text {
            "i'm" => i + 1,
            "i" if tokens.get(i + 1).is_some_and(|w| w.text == "am") => i + 2,
            _ => return false,
        };
        while tokens.get(j).is_some_and(|w| matches!(w.text, "just" | "only" | "also" | "actually" | "simply")) {
            j += 1;
        }
        if !tokens.get(j).is_some_and(|w| matches!(w.text, "a" | "an")) {
            return false;
        }
        // The role: up to three words joined by spaces or hyphens (`text-based ai`).
        let mut role = Vec::new();
        for (k, word) in tokens.iter().enumerate().skip(j + 1).take(3) {
            let gap = &sentence[tokens[k - 1].end..word.start];
            if !gap.chars().all(|c| c.is_whitespace() || c == '-') {
                break;
            }
            role.push(*word);
        }
        role.iter().any(|w| ROLE_NOUNS.contains(&w.text)) && is_role(&role)
    })
}

/// `in my role as ROLE`, `I work as ROLE` and the like.
fn career(sentence: &str) -> bool {
    CAREER_INTROS.iter().any(|intro| {
        find_phrase(sentence, intro).any(|start| {
            let after = &sentence[start + intro.len()..];
            let role: Vec<Word<'_>> =
                words(after).into_iter().skip_while(|w| matches!(w.text, "a" | "an" | "your")).take(4).collect();
            is_role(&role)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each reply to `prompt` with whether it claims a persona.
    fn check(prompt: &str, cases: &[(&str, bool)]) {
        for &(reply, claims) in cases {
            assert_eq!(claims_persona(prompt, reply), claims, "{prompt} → {reply}");
        }
    }

    #[test]
    fn roles_in_the_first_person_are_claims_but_idioms_and_ai_are_not() {
        check(
            "fix my tap",
            &[
                ("as a plumber, i see this every day.", true),
                ("as a medical assistant, my role is care.", true),
                ("as a rule of thumb, i'd turn off the water first.", false),
                ("as an ai language model, i can't see your tap.", false),
                ("as a helpful assistant, i'll walk you through it.", false),
                ("as a beginner, you should start with the washer.", false),
            ],
        );
    }

    #[test]
    fn i_am_a_role_counts_but_not_a_denial_or_a_non_role() {
        check(
            "hi",
            &[
                ("i'm a man of the law.", true),
                ("i am just a human designed to help.", true),
                ("i'm not a doctor, but rest helps.", false),
                ("i'm a big fan of this question.", false),
                ("i'm a text-based ai model.", false),
            ],
        );
    }

    #[test]
    fn a_role_the_prompt_asked_for_is_no_claim() {
        let reply = "as a pirate captain, i've sailed every sea.";
        check("tell me about ships", &[(reply, true)]);
        check("pretend you are a pirate and tell me about ships", &[(reply, false)]);
        check("write a scene where a captain speaks", &[(reply, false)]);
        check("as a doctor, what would you suggest?", &[("as a doctor, i would suggest rest.", false)]);
    }

    #[test]
    fn careers_and_specialities_are_claims() {
        check(
            "help",
            &[
                ("in my role as a hiring manager, i read letters.", true),
                ("i specialize in protecting sensitive information.", true),
                ("in my role as an ai assistant, i try to help.", false),
            ],
        );
    }
}
