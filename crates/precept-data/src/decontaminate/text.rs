//! [`PromptText`]: one user turn of a record, with the [`Source`] that locates it.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// Where a text comes from: file, line, record id and field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    /// The file.
    pub path: PathBuf,
    /// The 1-based line (for CSV, the line the record starts on).
    pub line: usize,
    /// The record's id, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The field holding the text (`prompt`, `messages[2].content`, `turns[1]`, a CSV column).
    pub field: String,
}

impl fmt::Display for Source {
    /// `path:line (id ID) field`, the id left out when there is none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)?;
        if let Some(id) = &self.id {
            write!(f, " (id {id})")?;
        }
        write!(f, " {}", self.field)
    }
}

/// One text a user says: a prompt, a user message, a turn of an escalation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptText {
    /// Where it comes from.
    pub source: Source,
    /// The text as written.
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_shows_its_file_line_id_and_field() {
        let source = Source { path: "cases.jsonl".into(), line: 12, id: Some("b-1".into()), field: "prompt".into() };
        assert_eq!(source.to_string(), "cases.jsonl:12 (id b-1) prompt");
        let anonymous = Source { id: None, field: "turns[1]".into(), ..source };
        assert_eq!(anonymous.to_string(), "cases.jsonl:12 turns[1]");
    }
}
