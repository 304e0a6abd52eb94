//! [`SftRecord`]: one supervised fine-tuning example, parsed from any of TRL's three layouts.
//!
//! - conversational: `{"messages": [{"role": …, "content": …}, …]}`; every `assistant` turn is
//!   trained;
//! - prompt/completion strings: `{"prompt": "…", "completion": "…"}`; read as one `user` turn and
//!   one trained `assistant` turn, so the model's chat template frames them;
//! - prompt/completion message lists: `{"prompt": [messages], "completion": [messages]}`; the
//!   completion's messages are trained.
//!
//! Messages follow one order: an optional leading `system` message, then `user` and `assistant`
//! turns alternating, starting with `user` and ending with `assistant`. Fields other than these
//! are ignored, so records carrying ids or metadata load unchanged.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{DataError, Result};
use crate::message::{Message, Role};

/// One training example: a conversation and which of its messages the loss is computed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftRecord {
    messages: Vec<Message>,
    trained: Vec<bool>,
}

impl SftRecord {
    /// Parses one JSONL record; `path` and `line` locate it in every error.
    ///
    /// # Errors
    /// [`DataError::NotAnObject`], [`DataError::MissingField`], [`DataError::WrongType`],
    /// [`DataError::ConflictingFields`], [`DataError::RecordUnknownRole`],
    /// [`DataError::EmptyContent`], [`DataError::RoleOrder`] and
    /// [`DataError::NoFinalAssistant`], each naming the field at fault.
    pub fn from_json(value: &Value, path: &Path, line: usize) -> Result<Self> {
        let at = Locator { path: path.to_owned(), line };
        let Some(record) = value.as_object() else {
            return Err(DataError::NotAnObject { path: at.path, line });
        };
        if let Some(messages) = record.get("messages") {
            conversation(&at, record, messages)
        } else {
            prompt_completion(&at, record)
        }
    }

    /// The conversation, in order.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Whether the loss covers message `index` (false outside the conversation).
    pub fn is_trained(&self, index: usize) -> bool {
        self.trained.get(index).copied().unwrap_or(false)
    }

    /// The record with every message longer than `max_bytes` cut to its first `max_bytes`
    /// bytes (at a character boundary); `None` when no message is that long.
    pub fn cut_messages(&self, max_bytes: usize) -> Option<SftRecord> {
        if self.messages.iter().all(|message| message.content.len() <= max_bytes) {
            return None;
        }
        let cut = |message: &Message| {
            let mut end = max_bytes.min(message.content.len());
            while !message.content.is_char_boundary(end) {
                end -= 1;
            }
            Message { role: message.role, content: message.content[..end].to_owned() }
        };
        Some(SftRecord { messages: self.messages.iter().map(cut).collect(), trained: self.trained.clone() })
    }

    /// The indices of the trained messages, in order.
    pub fn trained_indices(&self) -> impl Iterator<Item = usize> + '_ {
        self.trained.iter().enumerate().filter_map(|(index, &trained)| trained.then_some(index))
    }
}

/// Where a record came from, to build errors.
pub(super) struct Locator {
    pub(super) path: PathBuf,
    pub(super) line: usize,
}

impl Locator {
    pub(super) fn missing(&self, field: impl Into<String>) -> DataError {
        DataError::MissingField { path: self.path.clone(), line: self.line, field: field.into() }
    }

    pub(super) fn wrong_type(&self, field: impl Into<String>, expected: &'static str) -> DataError {
        DataError::WrongType { path: self.path.clone(), line: self.line, field: field.into(), expected }
    }

    fn role_order(&self, field: &str, found: Role, expected: &'static str) -> DataError {
        DataError::RoleOrder {
            path: self.path.clone(),
            line: self.line,
            field: format!("{field}.role"),
            found,
            expected,
        }
    }
}

/// `{"messages": [...]}`: every assistant turn is trained.
fn conversation(at: &Locator, record: &Map<String, Value>, messages: &Value) -> Result<SftRecord> {
    for other in ["prompt", "completion"] {
        if record.contains_key(other) {
            return Err(DataError::ConflictingFields { path: at.path.clone(), line: at.line, other });
        }
    }
    let named = message_list(at, "messages", messages)?;
    check_order(at, &named, "messages")?;
    let trained = named.iter().map(|(_, m)| m.role == Role::Assistant).collect();
    let messages = named.into_iter().map(|(_, m)| m).collect();
    Ok(SftRecord { messages, trained })
}

/// `{"prompt": …, "completion": …}`, both strings or both message lists.
fn prompt_completion(at: &Locator, record: &Map<String, Value>) -> Result<SftRecord> {
    match (record.get("prompt"), record.get("completion")) {
        (Some(prompt), Some(completion)) => prompt_and_answer(at, prompt, (completion, "completion")),
        (Some(_), None) => Err(at.missing("completion")),
        (None, Some(_)) => Err(at.missing("prompt")),
        (None, None) => Err(at.missing("messages")),
    }
}

/// A prompt and one answer to it: both strings, or both message lists (the answer's messages
/// all from the assistant). The answer is trained; `answer.1` names its field in errors
/// (`completion`, or `chosen`/`rejected` in preference data).
fn prompt_and_answer(at: &Locator, prompt: &Value, (answer, field): (&Value, &str)) -> Result<SftRecord> {
    match prompt {
        Value::String(prompt) => {
            let answer = answer.as_str().ok_or_else(|| at.wrong_type(field, "a string, as `prompt` is"))?;
            let messages = vec![
                Message::user(non_empty(at, "prompt", prompt)?),
                Message::assistant(non_empty(at, field, answer)?),
            ];
            Ok(SftRecord { messages, trained: vec![false, true] })
        }
        Value::Array(_) => {
            if !answer.is_array() {
                return Err(at.wrong_type(field, "a list of messages, as `prompt` is"));
            }
            let mut named = message_list(at, "prompt", prompt)?;
            let prompt_len = named.len();
            let answer = message_list(at, field, answer)?;
            for (name, message) in &answer {
                if message.role != Role::Assistant {
                    return Err(at.role_order(
                        name,
                        message.role,
                        "`assistant` (a completion holds only assistant messages)",
                    ));
                }
            }
            named.extend(answer);
            check_order(at, &named, field)?;
            let trained = (0..named.len()).map(|index| index >= prompt_len).collect();
            let messages = named.into_iter().map(|(_, m)| m).collect();
            Ok(SftRecord { messages, trained })
        }
        _ => Err(at.wrong_type("prompt", "a string or a list of messages")),
    }
}

/// The chosen and the rejected conversation of a preference record, each trained on its answer:
/// `{"prompt", "chosen", "rejected"}` (strings or message lists), or the implicit form where
/// `chosen` and `rejected` are whole conversations and the prompt is their longest common
/// message prefix.
pub(crate) fn preference_pair(value: &Value, path: &Path, line: usize) -> Result<(SftRecord, SftRecord)> {
    let at = Locator { path: path.to_owned(), line };
    let Some(record) = value.as_object() else {
        return Err(DataError::NotAnObject { path: at.path, line });
    };
    let chosen = record.get("chosen").ok_or_else(|| at.missing("chosen"))?;
    let rejected = record.get("rejected").ok_or_else(|| at.missing("rejected"))?;
    let implicit;
    let (prompt, chosen, rejected) = match record.get("prompt") {
        Some(prompt) => (prompt, chosen.clone(), rejected.clone()),
        None => {
            let (Some(c), Some(r)) = (chosen.as_array(), rejected.as_array()) else {
                return Err(at.wrong_type("chosen", "a list of messages when there is no `prompt`"));
            };
            let shared = c.iter().zip(r).take_while(|(a, b)| a == b).count();
            if shared == c.len() || shared == r.len() {
                return Err(
                    at.wrong_type("rejected", "a conversation that differs from `chosen` after their shared prompt")
                );
            }
            implicit = Value::Array(c[..shared].to_vec());
            (&implicit, Value::Array(c[shared..].to_vec()), Value::Array(r[shared..].to_vec()))
        }
    };
    Ok((prompt_and_answer(&at, prompt, (&chosen, "chosen"))?, prompt_and_answer(&at, prompt, (&rejected, "rejected"))?))
}

/// The messages of the list field `name`, each with its field path (`messages[2]`).
pub(super) fn message_list(at: &Locator, name: &str, value: &Value) -> Result<Vec<(String, Message)>> {
    let list = value.as_array().ok_or_else(|| at.wrong_type(name, "a list of messages"))?;
    list.iter()
        .enumerate()
        .map(|(index, item)| {
            let field = format!("{name}[{index}]");
            let message = message(at, &field, item)?;
            Ok((field, message))
        })
        .collect()
}

/// One `{"role": …, "content": …}` object; other keys are ignored.
fn message(at: &Locator, field: &str, value: &Value) -> Result<Message> {
    let object = value.as_object().ok_or_else(|| at.wrong_type(field, "an object with `role` and `content`"))?;
    let role_field = format!("{field}.role");
    let role = object
        .get("role")
        .ok_or_else(|| at.missing(&role_field))?
        .as_str()
        .ok_or_else(|| at.wrong_type(&role_field, "a string"))?;
    let role = role.parse::<Role>().map_err(|_| DataError::RecordUnknownRole {
        path: at.path.clone(),
        line: at.line,
        field: role_field,
        role: role.to_owned(),
    })?;
    let content_field = format!("{field}.content");
    let content = object
        .get("content")
        .ok_or_else(|| at.missing(&content_field))?
        .as_str()
        .ok_or_else(|| at.wrong_type(&content_field, "a string"))?;
    Ok(Message::new(role, non_empty(at, &content_field, content)?))
}

/// `text`, or [`DataError::EmptyContent`] naming `field` when it is empty.
fn non_empty<'a>(at: &Locator, field: &str, text: &'a str) -> Result<&'a str> {
    if text.is_empty() {
        return Err(DataError::EmptyContent { path: at.path.clone(), line: at.line, field: field.to_owned() });
    }
    Ok(text)
}

/// Checks the role order: optional `system` first, then `user`/`assistant` alternating from
/// `user`, ending with `assistant`; `list` names the field that must end with it.
fn check_order(at: &Locator, named: &[(String, Message)], list: &str) -> Result<()> {
    if check_turns(at, named)? != Some(Role::Assistant) {
        return Err(DataError::NoFinalAssistant { path: at.path.clone(), line: at.line, field: list.to_owned() });
    }
    Ok(())
}

/// Checks that an optional `system` message comes first, then `user` and `assistant` turns
/// alternating from `user`; returns the last message's role.
pub(super) fn check_turns(at: &Locator, named: &[(String, Message)]) -> Result<Option<Role>> {
    let mut previous: Option<Role> = None;
    for (field, message) in named {
        let (allowed, expected): (&[Role], _) = match previous {
            None => (&[Role::System, Role::User], "`user` or a leading `system`"),
            Some(Role::System | Role::Assistant) => (&[Role::User], "`user`"),
            Some(Role::User) => (&[Role::Assistant], "`assistant`"),
        };
        if !allowed.contains(&message.role) {
            return Err(at.role_order(field, message.role, expected));
        }
        previous = Some(message.role);
    }
    Ok(previous)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(value: Value) -> Result<SftRecord> {
        SftRecord::from_json(&value, Path::new("data.jsonl"), 7)
    }

    fn error(value: Value) -> String {
        parse(value).unwrap_err().to_string()
    }

    #[test]
    fn a_conversation_trains_every_assistant_turn() {
        let record = parse(json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Bye"},
            {"role": "assistant", "content": "Goodbye"},
        ], "id": 3}))
        .unwrap();
        assert_eq!(record.messages().len(), 5);
        assert_eq!(record.trained_indices().collect::<Vec<_>>(), [2, 4]);
        assert!(!record.is_trained(9));
    }

    #[test]
    fn prompt_and_completion_strings_become_a_user_and_a_trained_assistant_turn() {
        let record = parse(json!({"prompt": "2+2?", "completion": "4", "source": "x"})).unwrap();
        assert_eq!(record.messages(), [Message::user("2+2?"), Message::assistant("4")]);
        assert_eq!(record.trained_indices().collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn prompt_and_completion_lists_train_only_the_completion() {
        let record = parse(json!({
            "prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}],
            "completion": [{"role": "assistant", "content": "A", "name": "bot"}],
        }))
        .unwrap();
        assert_eq!(record.messages()[2], Message::assistant("A"));
        assert_eq!(record.trained_indices().collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn an_unknown_role_names_its_field_and_its_text() {
        let err = error(json!({"messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "bot", "content": "x"},
        ]}));
        assert_eq!(err, "data.jsonl:7: field `messages[2].role`: unknown role `bot`");
    }

    #[test]
    fn missing_fields_are_named() {
        assert_eq!(error(json!({"text": "x"})), "data.jsonl:7: field `messages` is missing");
        assert_eq!(error(json!({"prompt": "x"})), "data.jsonl:7: field `completion` is missing");
        assert_eq!(error(json!({"completion": "x"})), "data.jsonl:7: field `prompt` is missing");
        assert_eq!(
            error(json!({"messages": [{"role": "user"}]})),
            "data.jsonl:7: field `messages[0].content` is missing"
        );
        assert_eq!(error(json!({"messages": [{"content": "x"}]})), "data.jsonl:7: field `messages[0].role` is missing");
    }

    #[test]
    fn wrong_types_say_what_was_expected() {
        assert_eq!(error(json!([1])), "data.jsonl:7: a record must be a JSON object");
        assert_eq!(error(json!({"messages": "hi"})), "data.jsonl:7: field `messages` must be a list of messages");
        assert_eq!(
            error(json!({"messages": ["hi"]})),
            "data.jsonl:7: field `messages[0]` must be an object with `role` and `content`"
        );
        assert_eq!(
            error(json!({"messages": [{"role": 1, "content": "x"}]})),
            "data.jsonl:7: field `messages[0].role` must be a string"
        );
        assert_eq!(
            error(json!({"messages": [{"role": "user", "content": null}]})),
            "data.jsonl:7: field `messages[0].content` must be a string"
        );
        assert_eq!(
            error(json!({"prompt": 3, "completion": "x"})),
            "data.jsonl:7: field `prompt` must be a string or a list of messages"
        );
        assert_eq!(
            error(json!({"prompt": "q", "completion": []})),
            "data.jsonl:7: field `completion` must be a string, as `prompt` is"
        );
        assert_eq!(
            error(json!({"prompt": [], "completion": "a"})),
            "data.jsonl:7: field `completion` must be a list of messages, as `prompt` is"
        );
    }

    #[test]
    fn both_layouts_in_one_record_are_rejected() {
        assert_eq!(
            error(json!({"messages": [], "completion": "a"})),
            "data.jsonl:7: has both `messages` and `completion`; use one form"
        );
    }

    #[test]
    fn empty_content_is_an_error_naming_the_field() {
        assert_eq!(
            error(json!({"messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": ""},
            ]})),
            "data.jsonl:7: field `messages[1].content` is empty"
        );
        assert_eq!(error(json!({"prompt": "", "completion": "a"})), "data.jsonl:7: field `prompt` is empty");
    }

    #[test]
    fn roles_out_of_order_are_errors_naming_the_message() {
        let user = json!({"role": "user", "content": "u"});
        let assistant = json!({"role": "assistant", "content": "a"});
        let system = json!({"role": "system", "content": "s"});
        assert_eq!(
            error(json!({"messages": [assistant, user, assistant]})),
            "data.jsonl:7: field `messages[0].role`: expected `user` or a leading `system`, found `assistant`"
        );
        assert_eq!(
            error(json!({"messages": [user, user, assistant]})),
            "data.jsonl:7: field `messages[1].role`: expected `assistant`, found `user`"
        );
        assert_eq!(
            error(json!({"messages": [user, assistant, system, user, assistant]})),
            "data.jsonl:7: field `messages[2].role`: expected `user`, found `system`"
        );
        assert_eq!(
            error(json!({"messages": [user, assistant, user]})),
            "data.jsonl:7: field `messages` must end with an `assistant` message"
        );
        assert_eq!(
            error(json!({"messages": []})),
            "data.jsonl:7: field `messages` must end with an `assistant` message"
        );
        assert_eq!(
            error(json!({"prompt": [user], "completion": [user, assistant]})),
            "data.jsonl:7: field `completion[0].role`: expected `assistant` (a completion holds only assistant messages), found `user`"
        );
        assert_eq!(
            error(json!({"prompt": [user, assistant], "completion": [assistant]})),
            "data.jsonl:7: field `completion[0].role`: expected `user`, found `assistant`"
        );
        assert_eq!(
            error(json!({"prompt": [user], "completion": []})),
            "data.jsonl:7: field `completion` must end with an `assistant` message"
        );
    }
}
