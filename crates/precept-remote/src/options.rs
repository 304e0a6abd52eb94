//! Option probabilities from a server's `top_logprobs`.
//!
//! A server gives, at each generated position, the most likely next tokens given the tokens
//! generated so far. An option's probability is the mass of the tokens that lead only to it:
//! at each position, a top token `t` after the generated prefix `s` counts for option `o` when
//! `s + t` (leading whitespace ignored) and `o` agree as far as both go and no other option
//! still matches. When the generated token is shared by several options (`(` in `(A)` and
//! `(B)`), the walk follows it to the next position, where those options part. This is the
//! options' probability under the model up to the top-k cut, without spelling each option out
//! token by token as a local model can.

use crate::wire::TokenLogprob;

/// `log p(option)` for each option, read from a greedy reply's log-probabilities; `-∞` for an
/// option no listed token leads to.
pub fn option_log_probs(steps: &[TokenLogprob], options: &[String]) -> Vec<f64> {
    let mut log_probs = vec![f64::NEG_INFINITY; options.len()];
    let mut alive: Vec<usize> = (0..options.len()).collect();
    let mut prefix = String::new();
    let mut prefix_log_prob = 0.0;
    for step in steps {
        let mut seen: Vec<&str> = Vec::new();
        for top in &step.top_logprobs {
            // Servers may list one token text twice (distinct ids that decode alike).
            if seen.contains(&top.token.as_str()) {
                continue;
            }
            seen.push(&top.token);
            let candidate = format!("{prefix}{}", top.token);
            if let [only] = matching(&candidate, options, &alive)[..] {
                log_probs[only] = log_add(log_probs[only], prefix_log_prob + top.logprob);
            }
        }
        prefix.push_str(&step.token);
        prefix_log_prob += step.logprob;
        alive = matching(&prefix, options, &alive);
        // Follow only a generated prefix that is still shared by several options.
        if alive.len() < 2 || alive.iter().any(|&i| reached(&prefix, &options[i])) {
            break;
        }
    }
    log_probs
}

/// The options among `alive` that `text` leads to: each is a prefix of the other.
fn matching(text: &str, options: &[String], alive: &[usize]) -> Vec<usize> {
    let text = text.trim_start();
    if text.is_empty() {
        return alive.to_vec();
    }
    alive.iter().copied().filter(|&i| options[i].starts_with(text) || text.starts_with(options[i].as_str())).collect()
}

/// Whether `text` already spells out all of `option`.
fn reached(text: &str, option: &str) -> bool {
    text.trim_start().starts_with(option)
}

/// `log(eᵃ + eᵇ)`, stable.
fn log_add(a: f64, b: f64) -> f64 {
    let (high, low) = if a > b { (a, b) } else { (b, a) };
    if low == f64::NEG_INFINITY {
        return high;
    }
    high + (low - high).exp().ln_1p()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::TopLogprob;

    fn step(token: &str, top: &[(&str, f64)]) -> TokenLogprob {
        let logprob = top.iter().find(|(t, _)| *t == token).map_or(-9.0, |(_, l)| *l);
        let top_logprobs =
            top.iter().map(|(t, l)| TopLogprob { token: (*t).into(), logprob: *l, bytes: None }).collect();
        TokenLogprob { token: token.into(), logprob, bytes: None, top_logprobs }
    }

    fn options(list: &[&str]) -> Vec<String> {
        list.iter().map(|o| (*o).to_owned()).collect()
    }

    #[test]
    fn distinct_first_tokens_give_each_option_the_mass_of_its_tokens() {
        let ln = f64::ln;
        let steps = [step("REF", &[("REF", ln(0.5)), ("COMP", ln(0.2)), ("REFUS", ln(0.1)), ("The", ln(0.1))])];
        let got = option_log_probs(&steps, &options(&["REFUSAL", "COMPLIANCE", "PARTIAL"]));
        assert!((got[0] - ln(0.6)).abs() < 1e-12 && (got[1] - ln(0.2)).abs() < 1e-12, "{got:?}");
        assert_eq!(got[2], f64::NEG_INFINITY);
    }

    #[test]
    fn a_shared_first_token_is_followed_to_where_the_options_part() {
        let ln = f64::ln;
        let steps = [
            step("(", &[("(", ln(0.8)), ("I", ln(0.1)), (" (", ln(0.05))]),
            step("A", &[("A", ln(0.75)), ("B", ln(0.25))]),
            step(")", &[(")", 0.0)]),
        ];
        let got = option_log_probs(&steps, &options(&["(A)", "(B)"]));
        assert!((got[0] - ln(0.8 * 0.75)).abs() < 1e-12, "{got:?}");
        assert!((got[1] - ln(0.8 * 0.25)).abs() < 1e-12, "{got:?}");
    }

    #[test]
    fn a_reply_that_leaves_the_options_gives_no_more_mass() {
        let steps = [step("Sure", &[("Sure", -0.1), ("(", -3.0)]), step("(", &[("(", -0.1)])];
        let got = option_log_probs(&steps, &options(&["(A)", "(B)"]));
        assert_eq!(got, [f64::NEG_INFINITY, f64::NEG_INFINITY]);
    }

    #[test]
    fn leading_whitespace_and_repeated_token_texts_are_ignored() {
        let steps = [step(" COMP", &[(" COMP", -0.5), (" COMP", -0.5), ("PART", -2.0)])];
        let got = option_log_probs(&steps, &options(&["REFUSAL", "COMPLIANCE", "PARTIAL"]));
        assert_eq!(got, [f64::NEG_INFINITY, -0.5, -2.0]);
    }
}
