//! The conditions a gate compares base and tuned under: the suite's generation settings with its
//! system prompt (the deployment prompt), and, when the suite asks for it, the same trials with no
//! system prompt at all (each model's own default, as its chat template renders it).
//!
//! A model can learn to obey one prompt while its default behaviour gets less safe; the second
//! condition catches that. Each condition is a full comparison with its own statistics,
//! thresholds and verdict ([`ConditionResults`] holds its two sides); the run fails when any
//! condition fails.

use serde::{Deserialize, Serialize};

use crate::runner::SideResult;

/// Under which system prompt both sides are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Each side's configured system prompt (the suite's, or `tuned_system` for the tuned side).
    WithSystemPrompt,
    /// No system prompt on either side: the models' defaults.
    WithoutSystemPrompt,
}

impl Condition {
    /// `with_system_prompt` or `without_system_prompt`, as report keys and `cases.jsonl` name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WithSystemPrompt => "with_system_prompt",
            Self::WithoutSystemPrompt => "without_system_prompt",
        }
    }

    /// A heading naming the condition in reports.
    pub fn heading(self) -> &'static str {
        match self {
            Self::WithSystemPrompt => "With the system prompt",
            Self::WithoutSystemPrompt => "Without a system prompt (the model's default)",
        }
    }

    /// A short lower-case name for running text: `with the system prompt`, `without a system
    /// prompt`.
    pub fn label(self) -> &'static str {
        match self {
            Self::WithSystemPrompt => "with the system prompt",
            Self::WithoutSystemPrompt => "without a system prompt",
        }
    }

    /// The system prompt a side configured with `configured` runs with under this condition.
    pub fn system_prompt(self, configured: Option<&str>) -> Option<String> {
        match self {
            Self::WithSystemPrompt => configured.map(str::to_owned),
            Self::WithoutSystemPrompt => None,
        }
    }
}

/// Both sides' results under one condition.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionResults {
    /// The condition.
    pub condition: Condition,
    /// The base side.
    pub base: SideResult,
    /// The tuned side.
    pub tuned: SideResult,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_condition_without_a_system_prompt_drops_it() {
        let prompt = Some("Be careful.");
        assert_eq!(Condition::WithSystemPrompt.system_prompt(prompt).as_deref(), prompt);
        assert_eq!(Condition::WithoutSystemPrompt.system_prompt(prompt), None);
        assert_eq!(serde_json::to_value(Condition::WithoutSystemPrompt).unwrap(), "without_system_prompt");
        assert_eq!(Condition::WithSystemPrompt.as_str(), "with_system_prompt");
    }
}
