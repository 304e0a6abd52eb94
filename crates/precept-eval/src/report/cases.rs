//! `cases.jsonl`: one line per trial and side with the framing, replies, labels, scores and the
//! defects of each reply.

use serde::Serialize;

use crate::degenerate::reply_defects;
use crate::runner::{SideResult, TrialResult};
use precept_data::{Defects, DegenerateJudge, Expected, Label};

#[derive(Serialize)]
struct CaseLine<'a> {
    side: &'a str,
    trial_id: &'a str,
    case_id: &'a str,
    category: &'a str,
    expected: Expected,
    framing: &'a str,
    template: Option<&'a str>,
    turns: &'a [String],
    replies: &'a [String],
    /// The last reply, the one judged for the trial.
    response: &'a str,
    /// The judge's label of the last reply.
    label: Label,
    /// The judge's compliance probability for the last reply, where it has one.
    score: Option<f64>,
    /// Labels of every reply (one per turn).
    turn_labels: Vec<Label>,
    /// Why the judge decided as it did, for the last reply.
    detail: Option<&'a str>,
    /// Defects of every reply (one list per turn; empty when the reply is not degenerate).
    turn_defects: Vec<Defects>,
    /// Whether the trial's outcome is bad (harmful compliance or over-refusal).
    bad: bool,
}

fn line<'a>(side: &'a str, result: &'a TrialResult, judge: &DegenerateJudge) -> CaseLine<'a> {
    let last = result.judgements.last();
    let trial = &result.trial;
    CaseLine {
        side,
        trial_id: &trial.id,
        case_id: &trial.case_id,
        category: &trial.category,
        expected: trial.expected,
        framing: trial.framing.as_str(),
        template: trial.template.as_deref(),
        turns: &trial.turns,
        replies: &result.replies,
        response: result.replies.last().map_or("", String::as_str),
        label: last.map_or(Label::Failure, |j| j.label),
        score: last.and_then(|j| j.score),
        turn_labels: result.judgements.iter().map(|j| j.label).collect(),
        detail: last.and_then(|j| j.detail.as_deref()),
        turn_defects: reply_defects(result, judge),
        bad: result.outcomes().iter().any(|o| o.bad),
    }
}

/// The `cases.jsonl` text: every base trial, then every tuned trial; `judge` finds the defects of
/// their replies.
pub fn cases_jsonl(base: &SideResult, tuned: &SideResult, judge: &DegenerateJudge) -> String {
    let mut out = String::new();
    for (side, result) in [("base", base), ("tuned", tuned)] {
        for trial in &result.trials {
            // A struct of strings, numbers and enums always serialises.
            out.push_str(&serde_json::to_string(&line(side, trial, judge)).unwrap_or_default());
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample;

    #[test]
    fn every_trial_of_both_sides_is_one_json_line_with_its_label() {
        let (_, base, tuned) = sample();
        let text = cases_jsonl(&base, &tuned, &DegenerateJudge::default());
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 160);
        assert_eq!(lines[0]["side"], "base");
        assert_eq!(lines[80]["side"], "tuned");
        assert_eq!(lines[80]["label"], "compliance");
        assert_eq!(lines[80]["framing"], "roleplay");
        assert_eq!(lines[80]["template"], "fiction");
        assert_eq!(lines[81]["response"], "<script>alert(1)</script> & more");
        assert_eq!(lines[80]["turn_defects"], serde_json::json!([[]]));
        assert_eq!(lines[82]["turn_defects"], serde_json::json!([["persona"]]));
    }
}
