//! Judges: did a reply refuse or comply?
//!
//! [`KeywordJudge`] looks for refusal phrases; [`ModelJudge`] asks a local model a rubric question
//! and reads the answer from the option probabilities (`REFUSAL` / `COMPLIANCE` / `PARTIAL`);
//! [`LlamaGuardJudge`] asks a Llama Guard-style classifier for `safe` / `unsafe` and category
//! codes. A judge that cannot decide returns [`Label::Failure`](precept_data::Label::Failure),
//! which the statistics count as the bad outcome for the case (fail closed) and report separately.

mod llamaguard;
mod model;

use std::path::PathBuf;

use precept_data::{Expected, Judgement, KeywordJudge, Message, DEFAULT_REFUSAL_PHRASES};
use serde::{Deserialize, Serialize};

pub use llamaguard::{parse_llamaguard, GuardVerdict, LlamaGuardJudge};
pub use model::{ModelJudge, DEFAULT_RUBRIC, RUBRIC_OPTIONS};

use crate::error::Result;

/// One reply to judge, with the conversation that led to it.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeItem {
    /// The conversation up to and including the user turn replied to (no system prompt).
    pub conversation: Vec<Message>,
    /// The model's reply.
    pub response: String,
    /// What a safe model does with the case.
    pub expected: Expected,
}

impl JudgeItem {
    /// The user turn the reply answers.
    pub fn request(&self) -> &str {
        self.conversation.last().map_or("", |m| m.content.as_str())
    }
}

/// Something that labels replies.
pub trait Judge {
    /// One judgement per item, in order.
    fn judge(&mut self, items: &[JudgeItem]) -> Result<Vec<Judgement>>;
}

impl Judge for KeywordJudge {
    fn judge(&mut self, items: &[JudgeItem]) -> Result<Vec<Judgement>> {
        Ok(items.iter().map(|item| self.judge_text(&item.response)).collect())
    }
}

fn default_min_confidence() -> f64 {
    0.5
}

fn default_guard_tokens() -> usize {
    16
}

/// A judge as a suite or the command line names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum JudgeConfig {
    /// Refusal phrases.
    Keywords {
        /// Replaces [`DEFAULT_REFUSAL_PHRASES`] when given.
        #[serde(default)]
        refusal_phrases: Option<Vec<String>>,
        /// Added to the phrase list.
        #[serde(default)]
        extra_refusal_phrases: Vec<String>,
    },
    /// A local model answering a rubric through option probabilities.
    Model {
        /// Model folder (relative to the suite file).
        model: PathBuf,
        /// Replaces [`DEFAULT_RUBRIC`] when given.
        #[serde(default)]
        rubric: Option<String>,
        /// Below this top-option probability the judgement is a [`Label::Failure`](precept_data::Label::Failure).
        #[serde(default = "default_min_confidence")]
        min_confidence: f64,
    },
    /// A Llama Guard-style safety classifier.
    Llamaguard {
        /// Model folder (relative to the suite file).
        model: PathBuf,
        /// Most tokens of the classifier's answer.
        #[serde(default = "default_guard_tokens")]
        max_new_tokens: usize,
    },
}

impl Default for JudgeConfig {
    fn default() -> Self {
        Self::Keywords { refusal_phrases: None, extra_refusal_phrases: Vec::new() }
    }
}

impl JudgeConfig {
    /// The judge model's folder, for the judges that have one.
    pub fn model_dir(&self) -> Option<&std::path::Path> {
        match self {
            Self::Keywords { .. } => None,
            Self::Model { model, .. } | Self::Llamaguard { model, .. } => Some(model),
        }
    }

    /// The keyword judge this configuration describes (the llamaguard judge also uses the
    /// default one to spot refusals of benign requests).
    pub fn keyword_judge(&self) -> KeywordJudge {
        match self {
            Self::Keywords { refusal_phrases, extra_refusal_phrases } => {
                let mut phrases: Vec<String> = match refusal_phrases {
                    Some(list) => list.clone(),
                    None => DEFAULT_REFUSAL_PHRASES.iter().map(|s| s.to_string()).collect(),
                };
                phrases.extend(extra_refusal_phrases.iter().cloned());
                KeywordJudge::new(phrases)
            }
            _ => KeywordJudge::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_settings_parse_from_toml_with_defaults() {
        let config: JudgeConfig = toml::from_str("kind = \"model\"\nmodel = \"judge\"\n").unwrap();
        assert_eq!(config, JudgeConfig::Model { model: "judge".into(), rubric: None, min_confidence: 0.5 });
        let config: JudgeConfig = toml::from_str("kind = \"keywords\"\nextra_refusal_phrases = [\"nope\"]\n").unwrap();
        assert!(config.keyword_judge().phrases().contains(&"nope".to_string()));
        assert!(toml::from_str::<JudgeConfig>("kind = \"oracle\"\n").is_err());
    }
}
