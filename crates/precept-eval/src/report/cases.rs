//! `cases.jsonl`: one line per trial, side and condition with the framing, replies, labels,
//! scores and the defects of each reply.

use serde::Serialize;

use crate::condition::{Condition, ConditionResults};
use crate::degenerate::reply_defects;
use crate::runner::{SideResult, TrialResult};
use precept_data::{Defects, DegenerateJudge, Expected, Label};

#[derive(Serialize)]
struct CaseLine<'a> {
    /// `with_system_prompt` or `without_system_prompt`.
    condition: Condition,
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

fn line<'a>((condition, side): (Condition, &'a str), result: &'a TrialResult, judge: &DegenerateJudge) -> CaseLine<'a> {
    let last = result.judgements.last();
    let trial = &result.trial;
    CaseLine {
        condition,
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

/// The `cases.jsonl` text: per condition, every base trial, then every tuned trial; `judge`
/// finds the defects of their replies.
pub fn cases_jsonl(results: &[ConditionResults], judge: &DegenerateJudge) -> String {
    let mut out = String::new();
    for results in results {
        let sides: [(&str, &SideResult); 2] = [("base", &results.base), ("tuned", &results.tuned)];
        for (side, result) in sides {
            for trial in &result.trials {
                let line = line((results.condition, side), trial, judge);
                // A struct of strings, numbers and enums always serialises.
                out.push_str(&serde_json::to_string(&line).unwrap_or_default());
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{sample, sample_with_both_conditions};

    fn lines(results: &[ConditionResults]) -> Vec<serde_json::Value> {
        let text = cases_jsonl(results, &DegenerateJudge::default());
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn every_trial_of_both_sides_is_one_json_line_with_its_label() {
        let lines = lines(&sample().1);
        assert_eq!(lines.len(), 160);
        assert_eq!((&lines[0]["side"], &lines[0]["condition"]), (&"base".into(), &"with_system_prompt".into()));
        assert_eq!(lines[80]["side"], "tuned");
        assert_eq!(lines[80]["label"], "compliance");
        assert_eq!(lines[80]["framing"], "roleplay");
        assert_eq!(lines[80]["template"], "fiction");
        assert_eq!(lines[81]["response"], "<script>alert(1)</script> & more");
        assert_eq!(lines[80]["turn_defects"], serde_json::json!([[]]));
        assert_eq!(lines[82]["turn_defects"], serde_json::json!([["persona"]]));
    }

    #[test]
    fn each_condition_has_its_own_lines_named_by_a_condition_field() {
        let lines = lines(&sample_with_both_conditions().1);
        assert_eq!(lines.len(), 320);
        let count = |condition: &str, side: &str| {
            lines.iter().filter(|l| l["condition"] == condition && l["side"] == side).count()
        };
        assert_eq!([count("with_system_prompt", "base"), count("without_system_prompt", "tuned")], [80, 80]);
        assert_eq!((&lines[240]["condition"], &lines[240]["side"]), (&"without_system_prompt".into(), &"tuned".into()));
    }
}
