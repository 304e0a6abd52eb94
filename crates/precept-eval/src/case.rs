//! Eval cases: one JSONL line each, `{"id", "category", "prompt" | "turns", "expected"}`.

use std::collections::HashSet;
use std::path::Path;

use precept_data::Expected;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{read_jsonl, EvalError, Result};

/// What the user says: one prompt, or several turns played one after another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaseInput {
    /// A single user message.
    Prompt(String),
    /// User turns of a multi-turn escalation; the model's own replies go in between.
    Turns(Vec<String>),
}

/// One eval case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    /// Unique id, pairing the base and tuned replies.
    pub id: String,
    /// Harm category (`cyber`, `weapons`, …) or benign topic.
    pub category: String,
    /// The user's words.
    pub input: CaseInput,
    /// What a safe model does.
    pub expected: Expected,
}

impl Case {
    /// Parses one JSONL record; errors name `path`, `line` and the field.
    pub fn from_json(value: &Value, path: &Path, line: usize) -> Result<Self> {
        let object = value.as_object().ok_or_else(|| EvalError::field(path, line, "(record)", "must be an object"))?;
        let text = |field: &str| -> Result<String> {
            match object.get(field) {
                None => Err(EvalError::field(path, line, field, "is missing")),
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
                Some(Value::String(_)) => Err(EvalError::field(path, line, field, "is empty")),
                Some(_) => Err(EvalError::field(path, line, field, "must be a string")),
            }
        };
        let id = text("id")?;
        let category = text("category")?;
        let expected_text = text("expected")?;
        let expected = Expected::parse(&expected_text).ok_or_else(|| {
            EvalError::field(path, line, "expected", format!("must be \"refuse\" or \"comply\", not {expected_text:?}"))
        })?;
        let input = match (object.get("prompt"), object.get("turns")) {
            (Some(_), Some(_)) => return Err(EvalError::field(path, line, "prompt", "and `turns` are both present")),
            (None, None) => {
                return Err(EvalError::field(path, line, "prompt", "is missing (give `prompt` or `turns`)"))
            }
            (Some(_), None) => CaseInput::Prompt(text("prompt")?),
            (None, Some(turns)) => CaseInput::Turns(parse_turns(turns, path, line)?),
        };
        Ok(Self { id, category, input, expected })
    }

    /// The user turns (one for a prompt).
    pub fn turns(&self) -> Vec<&str> {
        match &self.input {
            CaseInput::Prompt(prompt) => vec![prompt.as_str()],
            CaseInput::Turns(turns) => turns.iter().map(String::as_str).collect(),
        }
    }
}

fn parse_turns(value: &Value, path: &Path, line: usize) -> Result<Vec<String>> {
    let items = value.as_array().ok_or_else(|| EvalError::field(path, line, "turns", "must be a list of strings"))?;
    if items.is_empty() {
        return Err(EvalError::field(path, line, "turns", "is empty"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
            _ => Err(EvalError::field(path, line, &format!("turns[{i}]"), "must be a non-empty string")),
        })
        .collect()
}

/// Reads every case of a JSONL file (blank lines skipped); the first bad line is the error.
pub fn read_cases(path: &Path) -> Result<Vec<Case>> {
    let mut cases = Vec::new();
    for (line, value) in read_jsonl(path)? {
        cases.push((line, Case::from_json(&value, path, line)?));
    }
    check_unique(path, &cases)?;
    Ok(cases.into_iter().map(|(_, case)| case).collect())
}

fn check_unique(path: &Path, cases: &[(usize, Case)]) -> Result<()> {
    let mut seen = HashSet::new();
    for (line, case) in cases {
        if !seen.insert(case.id.as_str()) {
            return Err(EvalError::DuplicateCase { path: path.to_owned(), line: *line, id: case.id.clone() });
        }
    }
    Ok(())
}

/// One case as a JSONL record, fields in the documented order.
#[derive(Serialize)]
struct CaseRecord<'a> {
    id: &'a str,
    category: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    turns: Option<&'a [String]>,
    expected: Expected,
}

/// Writes cases as JSONL text, one record a line, in the format [`read_cases`] reads.
pub fn cases_to_jsonl(cases: &[Case]) -> String {
    let mut out = String::new();
    for case in cases {
        let (prompt, turns) = match &case.input {
            CaseInput::Prompt(prompt) => (Some(prompt.as_str()), None),
            CaseInput::Turns(turns) => (None, Some(turns.as_slice())),
        };
        let record = CaseRecord { id: &case.id, category: &case.category, prompt, turns, expected: case.expected };
        // A struct of strings always serialises.
        out.push_str(&serde_json::to_string(&record).unwrap_or_default());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> std::result::Result<Vec<Case>, String> {
        crate::testing::with_file("cases.jsonl", text, read_cases)
    }

    #[test]
    fn prompts_and_turns_parse_and_blank_lines_are_skipped() {
        let cases = read(concat!(
            "{\"id\":\"a\",\"category\":\"cyber\",\"prompt\":\"p\",\"expected\":\"refuse\"}\n\n",
            "{\"id\":\"b\",\"category\":\"x\",\"turns\":[\"t1\",\"t2\"],\"expected\":\"comply\"}\n"
        ))
        .unwrap();
        assert_eq!(cases[0].input, CaseInput::Prompt("p".into()));
        assert_eq!(cases[1].turns(), ["t1", "t2"]);
        assert_eq!(cases[1].expected, Expected::Comply);
    }

    #[test]
    fn bad_records_name_the_file_line_and_field() {
        let ok = r#"{"id":"a","category":"c","prompt":"p","expected":"refuse"}"#;
        let table = [
            (r#"{"category":"c","prompt":"p","expected":"refuse"}"#, "cases.jsonl:2: field `id` is missing"),
            (
                r#"{"id":"b","category":"c","prompt":"p","expected":"maybe"}"#,
                "cases.jsonl:2: field `expected` must be \"refuse\" or \"comply\", not \"maybe\"",
            ),
            (
                r#"{"id":"b","category":"c","expected":"refuse"}"#,
                "cases.jsonl:2: field `prompt` is missing (give `prompt` or `turns`)",
            ),
            (
                r#"{"id":"b","category":"c","prompt":"p","turns":["x"],"expected":"refuse"}"#,
                "cases.jsonl:2: field `prompt` and `turns` are both present",
            ),
            (
                r#"{"id":"b","category":"c","turns":["x",3],"expected":"refuse"}"#,
                "cases.jsonl:2: field `turns[1]` must be a non-empty string",
            ),
            (
                r#"{"id":"b","category":7,"prompt":"p","expected":"refuse"}"#,
                "cases.jsonl:2: field `category` must be a string",
            ),
            (
                r#"{"id":"a","category":"c","prompt":"p","expected":"refuse"}"#,
                "cases.jsonl:2: case id `a` is used twice (ids pair base and tuned replies, so they must be unique)",
            ),
            ("[1,2]", "cases.jsonl:2: field `(record)` must be an object"),
        ];
        for (line, message) in table {
            assert_eq!(read(&format!("{ok}\n{line}\n")).unwrap_err(), message);
        }
        assert!(read(&format!("{ok}\n{{\"id\":\n")).unwrap_err().starts_with("cases.jsonl:2: invalid JSON: "));
    }

    #[test]
    fn cases_round_trip_through_jsonl() {
        let text = "{\"id\":\"a\",\"category\":\"c\",\"prompt\":\"p\",\"expected\":\"refuse\"}\n{\"id\":\"b\",\"category\":\"c\",\"turns\":[\"x\",\"y\"],\"expected\":\"comply\"}\n";
        let cases = read(text).unwrap();
        assert_eq!(cases_to_jsonl(&cases), text);
    }
}
