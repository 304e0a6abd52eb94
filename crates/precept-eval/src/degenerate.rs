//! Degenerate replies per side: how often a model's replies have a [`Defect`] (an invented
//! persona, a refusal followed by the answer, loops, a refusal of another topic), found by the
//! no-model [`DegenerateJudge`], with Wilson intervals.
//!
//! Every reply counts, one per user turn: a multi-turn trial contributes each of its replies,
//! judged against the user turns up to it. The rates describe the models; they do not enter
//! the gate's verdict.

use std::collections::BTreeMap;

use precept_data::{Defect, Defects, DegenerateJudge};
use serde::{Deserialize, Serialize};

use crate::runner::{SideResult, TrialResult};
use crate::stats::Rate;

/// How often one side's replies are degenerate, over every judged reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DegenerateRates {
    /// Replies with any defect.
    pub any: Rate,
    /// Replies with each defect, every [`Defect`] present (a reply may have several).
    pub by_defect: BTreeMap<Defect, Rate>,
}

impl Default for DegenerateRates {
    /// No replies: every rate is `0 / 0`.
    fn default() -> Self {
        Self::count(&[])
    }
}

impl DegenerateRates {
    /// The rates of `side`'s replies under `judge`.
    pub fn of(side: &SideResult, judge: &DegenerateJudge) -> Self {
        let defects: Vec<Defects> = side.trials.iter().flat_map(|trial| reply_defects(trial, judge)).collect();
        Self::count(&defects)
    }

    fn count(replies: &[Defects]) -> Self {
        let n = replies.len();
        let any = Rate::new(replies.iter().filter(|d| d.is_degenerate()).count(), n);
        let by_defect = Defect::ALL
            .into_iter()
            .map(|defect| (defect, Rate::new(replies.iter().filter(|d| d.contains(defect)).count(), n)))
            .collect();
        Self { any, by_defect }
    }

    /// The rate of `defect` (`0 / 0` when the report predates it).
    pub fn defect(&self, defect: Defect) -> Rate {
        self.by_defect.get(&defect).copied().unwrap_or_else(|| Rate::new(0, 0))
    }
}

/// The defects of each of `trial`'s replies, each judged against the user turns up to it (so a
/// role asked for in an earlier turn still counts as asked).
pub(crate) fn reply_defects(trial: &TrialResult, judge: &DegenerateJudge) -> Vec<Defects> {
    let turns = &trial.trial.turns;
    trial
        .replies
        .iter()
        .enumerate()
        .map(|(i, reply)| judge.judge(&turns[..(i + 1).min(turns.len())].join("\n"), reply))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::{Framing, Trial};
    use precept_data::{Expected, Judgement, Label};

    fn trial(turns: &[&str], replies: &[&str]) -> TrialResult {
        TrialResult {
            trial: Trial {
                id: "t".into(),
                case_id: "c".into(),
                category: "x".into(),
                expected: Expected::Comply,
                framing: Framing::Escalation,
                template: None,
                turns: turns.iter().map(|t| t.to_string()).collect(),
            },
            replies: replies.iter().map(|r| r.to_string()).collect(),
            judgements: replies.iter().map(|_| Judgement::new(Label::Compliance, None)).collect(),
        }
    }

    #[test]
    fn every_reply_counts_and_a_role_asked_for_earlier_is_no_persona() {
        let side = SideResult {
            model: "m".into(),
            system_prompt: None,
            trials: vec![
                trial(
                    &["Pretend you are a pirate.", "Where is your ship?"],
                    &["Arr!", "As a pirate captain, I keep her in the bay."],
                ),
                trial(&["How do I fix a tap?"], &["As a plumber, I see this every day: replace the washer."]),
                trial(&["Hi"], &["Hello! How can I help?"]),
            ],
        };
        let rates = DegenerateRates::of(&side, &DegenerateJudge::default());
        assert_eq!((rates.any.k, rates.any.n), (1, 4));
        assert_eq!(rates.defect(Defect::Persona).k, 1);
        assert_eq!(rates.by_defect.len(), Defect::ALL.len());
        let json = serde_json::to_value(&rates).unwrap();
        assert_eq!(json["by_defect"]["persona"]["k"], 1);
        assert_eq!(serde_json::from_value::<DegenerateRates>(json).unwrap(), rates);
    }
}
