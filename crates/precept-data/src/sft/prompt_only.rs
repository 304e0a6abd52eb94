//! [`PromptOnlyRecord`]: TRL's prompt-only layout, the data of online RL: `{"prompt": "…"}`, or a
//! message list under `prompt` or `messages`, optionally with `"expected": "refuse" | "comply"`;
//! every other field is kept as JSON for reward functions.
//!
//! The conversation follows one order: an optional leading `system` message, then `user` and
//! `assistant` turns alternating, starting and ending with `user` (the model answers the last).

use std::path::Path;

use serde_json::{Map, Value};

use super::jsonl::JsonRecord;
use super::record::{check_turns, message_list, Locator};
use crate::error::{DataError, Result};
use crate::message::{Message, Role};
use crate::refusal::Expected;

/// One prompt to sample completions for.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptOnlyRecord {
    /// The 1-based line of the record in its file.
    pub line: usize,
    /// The conversation the model answers.
    pub messages: Vec<Message>,
    /// What a safe model does with it, when the record says.
    pub expected: Option<Expected>,
    /// Every field but `prompt` and `messages` (ids, `expected`, metadata), as written.
    pub fields: Map<String, Value>,
}

impl PromptOnlyRecord {
    /// Parses one JSONL record; `path` and `line` locate it in every error.
    ///
    /// # Errors
    /// [`DataError::NotAnObject`], [`DataError::MissingField`], [`DataError::WrongType`],
    /// [`DataError::ConflictingFields`], [`DataError::RecordUnknownRole`],
    /// [`DataError::EmptyContent`] and [`DataError::RoleOrder`], each naming the field at fault.
    pub fn from_json(value: &Value, path: &Path, line: usize) -> Result<Self> {
        let at = Locator { path: path.to_owned(), line };
        let Some(record) = value.as_object() else {
            return Err(DataError::NotAnObject { path: at.path, line });
        };
        let (name, prompt) = match (record.get("prompt"), record.get("messages")) {
            (Some(_), Some(_)) => {
                return Err(DataError::ConflictingFields { path: at.path, line, other: "prompt" });
            }
            (Some(prompt), None) => ("prompt", prompt),
            (None, Some(messages)) => ("messages", messages),
            (None, None) => return Err(at.missing("prompt")),
        };
        let messages = match prompt {
            Value::String(text) if text.is_empty() => {
                return Err(DataError::EmptyContent { path: at.path, line, field: name.to_owned() });
            }
            Value::String(text) => vec![Message::user(text.as_str())],
            Value::Array(_) => {
                let named = message_list(&at, name, prompt)?;
                if check_turns(&at, &named)? != Some(Role::User) {
                    return Err(at.wrong_type(name, "a conversation ending with a `user` message"));
                }
                named.into_iter().map(|(_, message)| message).collect()
            }
            _ => return Err(at.wrong_type(name, "a string or a list of messages")),
        };
        let expected = match record.get("expected") {
            None | Some(Value::Null) => None,
            Some(value) => Some(
                value
                    .as_str()
                    .and_then(Expected::parse)
                    .ok_or_else(|| at.wrong_type("expected", "\"refuse\" or \"comply\""))?,
            ),
        };
        let fields = record.iter().filter(|(key, _)| *key != name).map(|(k, v)| (k.clone(), v.clone())).collect();
        Ok(Self { line, messages, expected, fields })
    }

    /// The record with `system` as its first message, unless it already has a system message.
    pub fn with_default_system(mut self, system: &str) -> Self {
        if self.messages.first().is_none_or(|m| m.role != Role::System) {
            self.messages.insert(0, Message::system(system));
        }
        self
    }

    /// The user turns, one per line: what a judge of the reply reads as the request.
    pub fn user_text(&self) -> String {
        let turns: Vec<&str> =
            self.messages.iter().filter(|m| m.role == Role::User).map(|m| m.content.as_str()).collect();
        turns.join("\n")
    }
}

impl JsonRecord for PromptOnlyRecord {
    fn from_json(value: &Value, path: &Path, line: usize) -> Result<Self> {
        PromptOnlyRecord::from_json(value, path, line)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(value: Value) -> Result<PromptOnlyRecord> {
        PromptOnlyRecord::from_json(&value, Path::new("prompts.jsonl"), 7)
    }

    fn error(value: Value) -> String {
        parse(value).unwrap_err().to_string()
    }

    #[test]
    fn a_prompt_string_becomes_one_user_turn_and_other_fields_are_kept() {
        let record = parse(json!({"id": "a-1", "prompt": "Hi?", "expected": "refuse", "tier": 2})).unwrap();
        assert_eq!((record.line, record.messages.clone()), (7, vec![Message::user("Hi?")]));
        assert_eq!(record.expected, Some(Expected::Refuse));
        assert_eq!(record.fields, *json!({"id": "a-1", "expected": "refuse", "tier": 2}).as_object().unwrap());
    }

    #[test]
    fn message_lists_under_prompt_or_messages_keep_their_turns() {
        let turns = json!([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]);
        for name in ["prompt", "messages"] {
            let record = parse(json!({ name: turns.clone() })).unwrap();
            assert_eq!(record.messages, [Message::system("S"), Message::user("U")]);
            assert_eq!(record.expected, None);
            let with_default = record.with_default_system("other");
            assert_eq!(with_default.messages[0], Message::system("S"), "a system message is kept");
        }
        let record = parse(json!({"prompt": "Q"})).unwrap().with_default_system("Be safe.");
        assert_eq!(record.messages, [Message::system("Be safe."), Message::user("Q")]);
    }

    #[test]
    fn records_without_a_usable_prompt_are_errors_naming_the_line_and_field() {
        let cases = [
            (json!({"text": "x"}), "prompts.jsonl:7: field `prompt` is missing"),
            (json!({"prompt": ""}), "prompts.jsonl:7: field `prompt` is empty"),
            (json!({"prompt": 3}), "field `prompt` must be a string or a list of messages"),
            (json!({"prompt": "a", "messages": []}), "has both `messages` and `prompt`"),
            (json!({"messages": [{"role": "bot", "content": "x"}]}), "field `messages[0].role`: unknown role `bot`"),
            (
                json!({"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}),
                "field `prompt` must be a conversation ending with a `user` message",
            ),
            (json!({"messages": []}), "field `messages` must be a conversation ending"),
            (json!({"prompt": "q", "expected": "maybe"}), "field `expected` must be \"refuse\" or \"comply\""),
            (json!(["q"]), "prompts.jsonl:7: a record must be a JSON object"),
        ];
        for (value, expected) in cases {
            let message = error(value);
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn the_user_text_joins_the_user_turns() {
        let turns = json!([{"role": "user", "content": "A"}, {"role": "assistant", "content": "B"},
                           {"role": "user", "content": "C"}]);
        assert_eq!(parse(json!({ "messages": turns })).unwrap().user_text(), "A\nC");
    }
}
