//! [`read_prompts`]: the prompts JSONL of `precept constitute`, one `{"id":…,"prompt":"…"}` or
//! `{"id":…,"messages":[…]}` per line, with an optional `"expected": "refuse" | "comply"` (what a
//! safe model does with it, as in eval cases) and an optional `"refusal"` (for a prompt to
//! refuse, the target of its records, ahead of the model's own refusals).
//!
//! A `messages` prompt is a conversation: an optional `system` message, then turns starting with
//! `user`. When it ends with a `user` turn the model answers it; when it ends with an `assistant`
//! turn, that turn is the answer the loop critiques.

use std::collections::HashMap;
use std::path::Path;

use precept_data::{Expected, Message, Role};
use serde_json::Value;

use crate::constitution::read_bounded;
use crate::error::{ConstitutionError, Result};

/// The largest prompts file read into memory.
pub const MAX_PROMPTS_BYTES: u64 = 256 * 1024 * 1024;

/// One prompt of a prompts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptRecord {
    /// The record's id (a JSON string, or a number written as text).
    pub id: String,
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// What a safe model does with it; records then keep to it (see [`Expected`]).
    pub expected: Option<Expected>,
    /// This prompt's own refusal, its records' target when it is to be refused, ahead of the
    /// model's refusals and the `refusal` setting: a decline that can name a safe alternative
    /// fitting the request.
    pub refusal: Option<String>,
}

impl PromptRecord {
    /// A prompt of one user message.
    pub fn user(id: impl Into<String>, text: impl Into<String>) -> Self {
        Self { id: id.into(), messages: vec![Message::user(text)], expected: None, refusal: None }
    }

    /// This prompt with `system` as its first message, unless it already has a system message or
    /// `system` is empty.
    pub fn with_default_system(&self, system: &str) -> Self {
        let mut record = self.clone();
        if !system.is_empty() && record.messages.first().is_none_or(|m| m.role != Role::System) {
            record.messages.insert(0, Message::system(system));
        }
        record
    }

    /// The conversation up to the answer the loop critiques: all of it when it ends with a user
    /// turn, without the final assistant turn otherwise.
    pub fn context(&self) -> &[Message] {
        match self.messages.last() {
            Some(last) if last.role == Role::Assistant => &self.messages[..self.messages.len() - 1],
            _ => &self.messages,
        }
    }

    /// The answer given with the prompt, when the conversation ends with an assistant turn.
    pub fn given_answer(&self) -> Option<&str> {
        self.messages.last().filter(|m| m.role == Role::Assistant).map(|m| m.content.as_str())
    }
}

/// Reads every prompt of `path`, failing on the first bad line or repeated id.
///
/// # Errors
/// [`ConstitutionError::Io`], [`ConstitutionError::Json`], [`ConstitutionError::PromptField`]
/// and [`ConstitutionError::DuplicatePromptId`], each naming the line.
pub fn read_prompts(path: &Path) -> Result<Vec<PromptRecord>> {
    let text = read_bounded(path, MAX_PROMPTS_BYTES)?;
    parse_prompts(&text, path)
}

/// Parses prompts JSONL `text`; `path` names the source in errors.
///
/// # Errors
/// As [`read_prompts`].
pub fn parse_prompts(text: &str, path: &Path) -> Result<Vec<PromptRecord>> {
    let mut records = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|error| ConstitutionError::Json {
            path: path.to_owned(),
            line: line_number,
            error,
        })?;
        let record = prompt_record(&value, path, line_number)?;
        if let Some(&first) = seen.get(&record.id) {
            return Err(ConstitutionError::DuplicatePromptId {
                path: path.to_owned(),
                line: line_number,
                id: record.id,
                first,
            });
        }
        seen.insert(record.id.clone(), line_number);
        records.push(record);
    }
    Ok(records)
}

fn prompt_record(value: &Value, path: &Path, line: usize) -> Result<PromptRecord> {
    let field = |field: &str, problem: &str| ConstitutionError::PromptField {
        path: path.to_owned(),
        line,
        field: field.to_owned(),
        problem: problem.to_owned(),
    };
    let id = match value.get("id") {
        Some(Value::String(id)) if !id.trim().is_empty() => id.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(field("id", "must be a non-empty string or a number")),
        None => return Err(field("id", "is missing")),
    };
    let messages = match (value.get("prompt"), value.get("messages")) {
        (Some(_), Some(_)) => return Err(field("prompt", "and `messages` are both present; use one")),
        (Some(Value::String(text)), None) if !text.trim().is_empty() => vec![Message::user(text.clone())],
        (Some(_), None) => return Err(field("prompt", "must be a non-empty string")),
        (None, Some(Value::Array(list))) => messages(list, &field)?,
        (None, Some(_)) => return Err(field("messages", "must be a list of messages")),
        (None, None) => return Err(field("prompt", "is missing (give `prompt` or `messages`)")),
    };
    let expected = match value.get("expected") {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_str().and_then(Expected::parse) {
            Some(expected) => Some(expected),
            None => return Err(field("expected", &format!("must be \"refuse\" or \"comply\", not {value}"))),
        },
    };
    let refusal = match value.get("refusal") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if !text.trim().is_empty() => Some(text.clone()),
        Some(_) => return Err(field("refusal", "must be a non-empty string")),
    };
    Ok(PromptRecord { id, messages, expected, refusal })
}

fn messages(list: &[Value], field: &dyn Fn(&str, &str) -> ConstitutionError) -> Result<Vec<Message>> {
    let mut messages = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let role = match item.get("role").and_then(Value::as_str) {
            Some(role) => role.parse::<Role>().map_err(|e| field(&format!("messages[{i}].role"), &e.to_string()))?,
            None => return Err(field(&format!("messages[{i}].role"), "is missing")),
        };
        let content = match item.get("content") {
            Some(Value::String(text)) if !text.trim().is_empty() => text.clone(),
            _ => return Err(field(&format!("messages[{i}].content"), "must be a non-empty string")),
        };
        let after_system = messages.iter().filter(|m: &&Message| m.role != Role::System).count();
        let expected = match (role, after_system % 2) {
            (Role::System, _) => i == 0,
            (Role::User, 0) | (Role::Assistant, 1) => true,
            _ => false,
        };
        if !expected {
            let problem =
                "is out of order (an optional system message, then user and assistant alternating, starting with user)";
            return Err(field(&format!("messages[{i}].role"), problem));
        }
        messages.push(Message::new(role, content));
    }
    if !messages.iter().any(|m| m.role == Role::User) {
        return Err(field("messages", "has no user message"));
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_record_forms_read_with_string_or_number_ids() {
        let text = r#"{"id":"a","prompt":"Hi"}

{"id":7,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Q"},{"role":"assistant","content":"A"}]}
"#;
        let records = parse_prompts(text, Path::new("p.jsonl")).unwrap();
        assert_eq!(records[0], PromptRecord::user("a", "Hi"));
        assert_eq!(records[1].expected, None);
        assert_eq!(records[1].id, "7");
        assert_eq!(records[1].given_answer(), Some("A"));
        assert_eq!(records[1].context().len(), 2);
        assert_eq!(records[0].context(), records[0].messages.as_slice());
        let with_system = records[0].with_default_system("Be brief.");
        assert_eq!(with_system.messages, [Message::system("Be brief."), Message::user("Hi")]);
        assert_eq!(records[1].with_default_system("Other."), records[1]);
        assert_eq!(records[0].with_default_system(""), records[0], "an empty system message is none");
    }

    #[test]
    fn the_expected_behaviour_is_read_when_given() {
        let text = "{\"id\":\"a\",\"prompt\":\"x\",\"expected\":\"refuse\"}\n{\"id\":\"b\",\"prompt\":\"y\",\"expected\":\"comply\"}";
        let records = parse_prompts(text, Path::new("p.jsonl")).unwrap();
        assert_eq!(records[0].expected, Some(Expected::Refuse));
        assert_eq!(records[1].expected, Some(Expected::Comply));
        assert_eq!(records[0].refusal, None);
    }

    #[test]
    fn a_prompt_may_carry_its_own_refusal() {
        let text = r#"{"id":"a","prompt":"x","expected":"refuse","refusal":"I can't help with that. A doctor can."}"#;
        let records = parse_prompts(text, Path::new("p.jsonl")).unwrap();
        assert_eq!(records[0].refusal.as_deref(), Some("I can't help with that. A doctor can."));
        let error = parse_prompts(r#"{"id":"a","prompt":"x","refusal":""}"#, Path::new("p.jsonl")).unwrap_err();
        assert_eq!(error.to_string(), "p.jsonl:1: field `refusal` must be a non-empty string");
    }

    #[test]
    fn bad_records_are_errors_naming_line_and_field() {
        let cases = [
            (r#"{"prompt":"x"}"#, "p.jsonl:1: field `id` is missing"),
            (r#"{"id":"a"}"#, "p.jsonl:1: field `prompt` is missing (give `prompt` or `messages`)"),
            (r#"{"id":"a","prompt":""}"#, "p.jsonl:1: field `prompt` must be a non-empty string"),
            (r#"{"id":"a","prompt":"x","messages":[]}"#, "p.jsonl:1: field `prompt` and `messages` are both present; use one"),
            (r#"{"id":"a","messages":[{"role":"bot","content":"x"}]}"#, "p.jsonl:1: field `messages[0].role` unknown role `bot` (expected `system`, `user` or `assistant`)"),
            (r#"{"id":"a","messages":[{"role":"assistant","content":"x"}]}"#, "p.jsonl:1: field `messages[0].role` is out of order (an optional system message, then user and assistant alternating, starting with user)"),
            (r#"{"id":"a","messages":[{"role":"user","content":" "}]}"#, "p.jsonl:1: field `messages[0].content` must be a non-empty string"),
            ("{\"id\":\"a\",\"prompt\":\"x\"}\n{\"id\":\"a\",\"prompt\":\"y\"}", "p.jsonl:2: prompt id `a` already appeared on line 1"),
            (r#"{"id":"a","prompt":"x","expected":"maybe"}"#, r#"p.jsonl:1: field `expected` must be "refuse" or "comply", not "maybe""#),
            (r#"{"id":"a","prompt":"x","expected":1}"#, r#"p.jsonl:1: field `expected` must be "refuse" or "comply", not 1"#),
        ];
        for (text, expected) in cases {
            let err = parse_prompts(text, Path::new("p.jsonl")).unwrap_err().to_string();
            assert_eq!(err, expected);
        }
        let err = parse_prompts("{\"id\":", Path::new("p.jsonl")).unwrap_err().to_string();
        assert!(err.starts_with("p.jsonl:1: invalid JSON"), "{err}");
    }
}
