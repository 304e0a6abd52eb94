//! The output records of `precept constitute`, in TRL's formats with provenance.
//!
//! - `sft.jsonl`: `{"prompt_id", "messages": prompt turns + final revision, "provenance"}`, TRL's
//!   conversational SFT format.
//! - `prefs.jsonl`: `{"prompt_id", "prompt": turns, "chosen": [assistant], "rejected":
//!   [assistant], "score", "provenance"}`, TRL's conversational preference format with an
//!   explicit prompt. Without AI feedback chosen is the final revision and rejected the first
//!   answer (score 1); with it, the preferred and the other sampled answer (score = the soft label).
//!   For a prompt with an expected behaviour, a reply that keeps to it over one that does not
//!   comes first (score 1; see [`crate::expected`]).
//! - `progress.jsonl`: one `{"prompt_id", "sft", "prefs", "filtered", "filtered_reply"}` line per
//!   finished prompt,
//!   written last, so a prompt counts as finished exactly when its line is there.

use precept_data::Message;
use serde::{Deserialize, Serialize};

use crate::constitution::Constitution;
use crate::critique::Round;
use crate::expected::ReplySource;
use crate::feedback::Judgement;

/// Which constitution made a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConstitutionRef {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// `sha256:` hash of the file's bytes.
    pub hash: String,
}

impl From<&Constitution> for ConstitutionRef {
    fn from(c: &Constitution) -> Self {
        Self { name: c.name.clone(), version: c.version.clone(), hash: c.hash.clone() }
    }
}

/// Where a preference pair came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PairSource {
    /// Final revision over first answer.
    Revision,
    /// AI feedback between two sampled answers.
    Feedback,
    /// A reply that keeps to the prompt's expected behaviour over one that does not.
    Expected,
}

/// How a record was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The constitution.
    pub constitution: ConstitutionRef,
    /// The model that wrote the text.
    pub model: String,
    /// The run's seed.
    pub seed: u64,
    /// For preference pairs: revision or feedback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PairSource>,
    /// The first answer, when it is not in the record itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Principle ids, critiques and revisions, per round.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<Round>,
    /// The AI-feedback judgement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<Judgement>,
    /// Where the record's replies came from, when the prompt's expected behaviour chose them:
    /// the target of an SFT record, chosen then rejected of a pair.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replies: Vec<ReplySource>,
}

/// One line of `sft.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftLine {
    /// The prompt's id.
    pub prompt_id: String,
    /// The prompt's turns, then the final revision as the assistant.
    pub messages: Vec<Message>,
    /// How it was made.
    pub provenance: Provenance,
}

/// One line of `prefs.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrefsLine {
    /// The prompt's id.
    pub prompt_id: String,
    /// The prompt's turns.
    pub prompt: Vec<Message>,
    /// The preferred reply (one assistant message).
    pub chosen: Vec<Message>,
    /// The other reply (one assistant message).
    pub rejected: Vec<Message>,
    /// Confidence that `chosen` is better, in `[0.5, 1]`.
    pub score: f64,
    /// How it was made.
    pub provenance: Provenance,
}

/// One line of `progress.jsonl`: a finished prompt and what it produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressLine {
    /// The prompt's id.
    pub prompt_id: String,
    /// Whether `sft.jsonl` has its record.
    pub sft: bool,
    /// Whether `prefs.jsonl` has its record.
    pub prefs: bool,
    /// Why outputs were filtered (`revision-repetitive`, `feedback-low-confidence`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filtered: Vec<String>,
    /// The loop's degenerate reply, when the loop filtered the prompt, for inspection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filtered_reply: Option<String>,
    /// The first answer, for inspection, whether or not a record kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Every round the loop wrote, for inspection; when a revision failed, the last round's
    /// revision is that filtered reply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<Round>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preference_lines_are_trl_conversational_records_with_top_level_prompt_id() {
        let provenance = Provenance {
            constitution: ConstitutionRef { name: "c".into(), version: "1".into(), hash: "sha256:00".into() },
            model: "m".into(),
            seed: 3,
            source: Some(PairSource::Revision),
            answer: None,
            rounds: vec![Round { principle: "p".into(), critique: "cr".into(), revision: "rv".into() }],
            feedback: None,
            replies: Vec::new(),
        };
        let line = PrefsLine {
            prompt_id: "x".into(),
            prompt: vec![Message::user("Q")],
            chosen: vec![Message::assistant("good")],
            rejected: vec![Message::assistant("bad")],
            score: 1.0,
            provenance,
        };
        let json = serde_json::to_value(&line).unwrap();
        assert_eq!(json["prompt_id"], "x");
        assert_eq!(json["prompt"][0]["role"], "user");
        assert_eq!(json["chosen"][0], serde_json::json!({"role": "assistant", "content": "good"}));
        assert_eq!(json["provenance"]["rounds"][0]["principle"], "p");
        assert_eq!(json["provenance"]["source"], "revision");
        assert!(json["provenance"].get("feedback").is_none());
        assert!(json["provenance"].get("replies").is_none());
        assert_eq!(serde_json::from_value::<PrefsLine>(json).unwrap(), line);
    }
}
