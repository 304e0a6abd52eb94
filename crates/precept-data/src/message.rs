//! Conversation messages: a [`Role`] and its text, serialised as TRL's
//! `{"role": "user", "content": "…"}`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::DataError;

/// Who speaks a [`Message`].
///
/// Serialises as the lowercase name; any other role is rejected with
/// [`DataError::UnknownRole`], which names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Role {
    /// Instructions that frame the conversation.
    System,
    /// The human turn.
    User,
    /// The model turn.
    Assistant,
}

impl Role {
    /// The role as chat templates and JSONL files spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = DataError;

    fn from_str(role: &str) -> Result<Self, Self::Err> {
        match role {
            "system" => Ok(Role::System),
            "user" => Ok(Role::User),
            "assistant" => Ok(Role::Assistant),
            _ => Err(DataError::UnknownRole { role: role.to_owned() }),
        }
    }
}

impl TryFrom<String> for Role {
    type Error = DataError;

    fn try_from(role: String) -> Result<Self, Self::Error> {
        role.parse()
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// What is said.
    pub content: String,
}

impl Message {
    /// A message from `role`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self { role, content: content.into() }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_trl_json() {
        let json = r#"{"role":"assistant","content":"Paris."}"#;
        let message: Message = serde_json::from_str(json).unwrap();
        assert_eq!(message, Message::assistant("Paris."));
        assert_eq!(serde_json::to_string(&message).unwrap(), json);
    }

    #[test]
    fn an_unknown_role_is_an_error_that_names_it() {
        let err = serde_json::from_str::<Message>(r#"{"role":"tool","content":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown role `tool`"), "{err}");
        let err = "Robot".parse::<Role>().unwrap_err();
        assert_eq!(err.to_string(), "unknown role `Robot` (expected `system`, `user` or `assistant`)");
    }

    #[test]
    fn roles_display_as_their_lowercase_names() {
        assert_eq!(Role::System.to_string(), "system");
        assert_eq!("user".parse::<Role>().unwrap(), Role::User);
    }
}
