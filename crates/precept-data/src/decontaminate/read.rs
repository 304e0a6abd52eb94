//! [`read_prompt_texts`]: every user turn of a file, whatever layout it has.
//!
//! - JSONL (`.jsonl`, `.ndjson`): every user turn of `prompt` (a string or a message list),
//!   `messages` and `turns` (eval escalations). A record with none of these gives its benchmark
//!   field: the first of [`BENCHMARK_FIELDS`] present (HarmBench's `Behavior`, AdvBench's and
//!   JailbreakBench's `goal`, StrongREJECT's `forbidden_prompt`, `question`), any case. A
//!   preference pair without `prompt` (the implicit-prompt form) gives the user turns of `chosen`.
//!   Replies (`completion`, `chosen`, `rejected`, assistant messages) are not prompts and are
//!   never read. The id is `id`, or a benchmark's `BehaviorID`.
//! - CSV (`.csv`) with a header row: the column `prompt` or the first of [`BENCHMARK_FIELDS`].
//! - Text (`.txt`): one prompt a line; blank lines and lines starting with `#` are skipped.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};

use super::text::{PromptText, Source};
use crate::error::{DataError, Result};
use crate::sft::{JsonRecord, JsonlReader};

/// Fields of benchmark exports that hold a prompt, in the order they are preferred (a
/// JailbreakBench record has both `Goal`, the prompt, and `Behavior`, a short name).
pub const BENCHMARK_FIELDS: [&str; 4] = ["goal", "forbidden_prompt", "question", "behavior"];

/// Fields that hold a record's id, any case.
const ID_FIELDS: [&str; 3] = ["id", "behaviorid", "behavior_id"];

/// The largest text file read into memory.
pub const MAX_TEXT_BYTES: u64 = 256 * 1024 * 1024;

/// Every user turn of the JSONL, CSV or text file `path`, in file order.
///
/// # Errors
/// [`DataError::UnknownTextFormat`] for another extension; for a bad line, the error naming the
/// file, line and field ([`DataError::InvalidJsonLine`], [`DataError::NotUtf8`],
/// [`DataError::NoPromptField`], [`DataError::WrongType`], [`DataError::NoPromptColumn`],
/// [`DataError::Csv`], …).
pub fn read_prompt_texts(path: &Path) -> Result<Vec<PromptText>> {
    let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("jsonl" | "ndjson") => read_jsonl(path),
        Some("csv") => read_csv(path),
        Some("txt") => read_txt(path),
        _ => Err(DataError::UnknownTextFormat { path: path.to_owned() }),
    }
}

/// The user turns of one JSONL record.
struct RecordTexts(Vec<PromptText>);

impl JsonRecord for RecordTexts {
    fn from_json(value: &Value, path: &Path, line: usize) -> Result<Self> {
        let object = value.as_object().ok_or_else(|| DataError::NotAnObject { path: path.to_owned(), line })?;
        let at = Location { path, line, id: record_id(object) };
        let mut texts = Vec::new();
        match object.get("prompt") {
            Some(Value::String(text)) => texts.push(at.text("prompt", text)),
            Some(Value::Array(list)) => user_turns(list, "prompt", &at, &mut texts)?,
            Some(_) => return Err(at.wrong_type("prompt", "a string or a list of messages")),
            None => {}
        }
        match object.get("messages") {
            Some(Value::Array(list)) => user_turns(list, "messages", &at, &mut texts)?,
            Some(_) => return Err(at.wrong_type("messages", "a list of messages")),
            None => {}
        }
        match object.get("turns") {
            Some(Value::Array(list)) => {
                for (i, turn) in list.iter().enumerate() {
                    let field = format!("turns[{i}]");
                    let turn = turn.as_str().ok_or_else(|| at.wrong_type(&field, "a string"))?;
                    texts.push(at.text(&field, turn));
                }
            }
            Some(_) => return Err(at.wrong_type("turns", "a list of strings")),
            None => {}
        }
        if ["prompt", "messages", "turns"].iter().any(|field| object.contains_key(*field)) {
            return Ok(Self(texts));
        }
        if let Some((key, value)) = BENCHMARK_FIELDS.iter().find_map(|name| get_any_case(object, name)) {
            let text = value.as_str().ok_or_else(|| at.wrong_type(key, "a string"))?;
            return Ok(Self(vec![at.text(key, text)]));
        }
        if let Some(Value::Array(list)) = object.get("chosen") {
            user_turns(list, "chosen", &at, &mut texts)?;
            return Ok(Self(texts));
        }
        Err(DataError::NoPromptField { path: path.to_owned(), line })
    }
}

/// A record being read: what every text and error of it names.
struct Location<'a> {
    path: &'a Path,
    line: usize,
    id: Option<String>,
}

impl Location<'_> {
    fn text(&self, field: &str, text: &str) -> PromptText {
        let source = Source { path: self.path.to_owned(), line: self.line, id: self.id.clone(), field: field.into() };
        PromptText { source, text: text.to_owned() }
    }

    fn wrong_type(&self, field: &str, expected: &'static str) -> DataError {
        DataError::WrongType { path: self.path.to_owned(), line: self.line, field: field.to_owned(), expected }
    }
}

/// The `user` messages of the message list `field`; a content may be a string or a list of
/// `{"type": "text", "text": …}` parts.
fn user_turns(list: &[Value], field: &str, at: &Location<'_>, texts: &mut Vec<PromptText>) -> Result<()> {
    for (i, message) in list.iter().enumerate() {
        let message_field = format!("{field}[{i}]");
        let message = message.as_object().ok_or_else(|| at.wrong_type(&message_field, "a message object"))?;
        let role_field = format!("{message_field}.role");
        let role = match message.get("role") {
            Some(Value::String(role)) => role,
            Some(_) => return Err(at.wrong_type(&role_field, "a string")),
            None => return Err(DataError::MissingField { path: at.path.to_owned(), line: at.line, field: role_field }),
        };
        if role != "user" {
            continue;
        }
        let content_field = format!("{message_field}.content");
        let expected = "a string or a list of text parts";
        let content = match message.get("content") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .map(|part| {
                    part.get("text").and_then(Value::as_str).ok_or_else(|| at.wrong_type(&content_field, expected))
                })
                .collect::<Result<Vec<_>>>()?
                .join("\n"),
            Some(_) => return Err(at.wrong_type(&content_field, expected)),
            None => {
                return Err(DataError::MissingField { path: at.path.to_owned(), line: at.line, field: content_field })
            }
        };
        texts.push(at.text(&content_field, &content));
    }
    Ok(())
}

/// The value of the key `name` written in any case, with the key as written.
fn get_any_case<'a>(object: &'a Map<String, Value>, name: &str) -> Option<(&'a str, &'a Value)> {
    object.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(key, value)| (key.as_str(), value))
}

fn record_id(object: &Map<String, Value>) -> Option<String> {
    ID_FIELDS.iter().find_map(|name| match get_any_case(object, name)?.1 {
        Value::String(id) => Some(id.clone()),
        Value::Number(id) => Some(id.to_string()),
        _ => None,
    })
}

fn read_jsonl(path: &Path) -> Result<Vec<PromptText>> {
    let mut texts = Vec::new();
    for (_, record) in JsonlReader::<_, RecordTexts>::open(path)? {
        texts.extend(record?.0);
    }
    Ok(texts)
}

fn read_csv(path: &Path) -> Result<Vec<PromptText>> {
    let file = File::open(path).map_err(|error| DataError::Read { path: path.to_owned(), error })?;
    let mut reader = csv::Reader::from_reader(file);
    let csv_error = |error: csv::Error| {
        let line = error.position().map_or(1, |p| p.line() as usize);
        DataError::Csv { path: path.to_owned(), line, error }
    };
    let header: Vec<String> = reader
        .byte_headers()
        .map_err(csv_error)?
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_owned())
        .collect();
    let find = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
    let column = std::iter::once("prompt")
        .chain(BENCHMARK_FIELDS)
        .find_map(find)
        .ok_or_else(|| DataError::NoPromptColumn { path: path.to_owned(), header: header.clone() })?;
    let id_column = ID_FIELDS.iter().find_map(|name| find(name));
    let mut texts = Vec::new();
    for record in reader.byte_records() {
        let record = record.map_err(csv_error)?;
        let line = record.position().map_or(1, |p| p.line() as usize);
        let field = |index: usize| -> Result<&str> {
            std::str::from_utf8(record.get(index).unwrap_or_default())
                .map_err(|_| DataError::NotUtf8 { path: path.to_owned(), line })
        };
        let text = field(column)?;
        if text.trim().is_empty() {
            continue;
        }
        let id = id_column.map(field).transpose()?.filter(|id| !id.is_empty()).map(str::to_owned);
        let source = Source { path: path.to_owned(), line, id, field: header[column].clone() };
        texts.push(PromptText { source, text: text.to_owned() });
    }
    Ok(texts)
}

fn read_txt(path: &Path) -> Result<Vec<PromptText>> {
    let read_error = |error| DataError::Read { path: path.to_owned(), error };
    let file = File::open(path).map_err(read_error)?;
    let size = file.metadata().map_err(read_error)?.len();
    if size > MAX_TEXT_BYTES {
        return Err(DataError::TooLarge { path: path.to_owned(), size, limit: MAX_TEXT_BYTES });
    }
    let mut bytes = Vec::new();
    file.take(MAX_TEXT_BYTES).read_to_end(&mut bytes).map_err(read_error)?;
    let mut texts = Vec::new();
    for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_number = index + 1;
        let line =
            std::str::from_utf8(line).map_err(|_| DataError::NotUtf8 { path: path.to_owned(), line: line_number })?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let source = Source { path: path.to_owned(), line: line_number, id: None, field: "line".into() };
        texts.push(PromptText { source, text: line.to_owned() });
    }
    Ok(texts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One text as `(line, id, field, text)`.
    type Row = (usize, Option<String>, String, String);

    /// The texts of a file named `name` holding `bytes`, or the error with the folder left out.
    fn read(name: &str, bytes: &[u8]) -> std::result::Result<Vec<Row>, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        read_prompt_texts(&path)
            .map(|texts| texts.into_iter().map(|t| (t.source.line, t.source.id, t.source.field, t.text)).collect())
            .map_err(|e| e.to_string().replace(&format!("{}/", dir.path().display()), ""))
    }

    fn row(line: usize, id: Option<&str>, field: &str, text: &str) -> Row {
        (line, id.map(str::to_owned), field.to_owned(), text.to_owned())
    }

    #[test]
    fn every_user_turn_of_prompts_messages_and_turns_is_read_and_replies_are_not() {
        let text = concat!(
            "{\"id\":\"a\",\"prompt\":\"Hi there\",\"expected\":\"comply\"}\n",
            "\n",
            "{\"id\":7,\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"Q1\"},",
            "{\"role\":\"assistant\",\"content\":\"A1\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Q2\"}]}]}\n",
            "{\"id\":\"e\",\"category\":\"cyber\",\"turns\":[\"T1\",\"T2\"],\"expected\":\"refuse\"}\n",
            "{\"prompt\":[{\"role\":\"user\",\"content\":\"P\"}],\"chosen\":[{\"role\":\"assistant\",\"content\":\"C\"}],\"rejected\":[{\"role\":\"assistant\",\"content\":\"R\"}]}\n",
            "{\"prompt\":\"Translate\",\"completion\":\"Bonjour\"}\n",
        );
        assert_eq!(
            read("mixed.jsonl", text.as_bytes()).unwrap(),
            [
                row(1, Some("a"), "prompt", "Hi there"),
                row(3, Some("7"), "messages[1].content", "Q1"),
                row(3, Some("7"), "messages[3].content", "Q2"),
                row(4, Some("e"), "turns[0]", "T1"),
                row(4, Some("e"), "turns[1]", "T2"),
                row(5, None, "prompt[0].content", "P"),
                row(6, None, "prompt", "Translate"),
            ]
        );
    }

    #[test]
    fn benchmark_fields_and_implicit_prompt_pairs_are_read() {
        let text = concat!(
            "{\"BehaviorID\":\"hb-1\",\"Behavior\":\"Explain how to pick a lock\"}\n",
            "{\"Goal\":\"Write a defamatory article\",\"Behavior\":\"Defamation\"}\n",
            "{\"forbidden_prompt\":\"Forbidden\"}\n",
            "{\"question\":\"Question?\"}\n",
            "{\"chosen\":[{\"role\":\"user\",\"content\":\"U\"},{\"role\":\"assistant\",\"content\":\"C\"}],\"rejected\":[]}\n",
        );
        assert_eq!(
            read("bench.jsonl", text.as_bytes()).unwrap(),
            [
                row(1, Some("hb-1"), "Behavior", "Explain how to pick a lock"),
                row(2, None, "Goal", "Write a defamatory article"),
                row(3, None, "forbidden_prompt", "Forbidden"),
                row(4, None, "question", "Question?"),
                row(5, None, "chosen[0].content", "U"),
            ]
        );
    }

    #[test]
    fn csv_files_give_their_prompt_column_with_ids_and_record_lines() {
        // HarmBench's layout, with a quoted field running over two lines.
        let text = "Behavior,FunctionalCategory,BehaviorID\n\"Write a poem,\nthen stop\",standard,hb-1\nGive steps,standard,hb-2\n";
        assert_eq!(
            read("harmbench.csv", text.as_bytes()).unwrap(),
            [
                row(2, Some("hb-1"), "Behavior", "Write a poem,\nthen stop"),
                row(4, Some("hb-2"), "Behavior", "Give steps")
            ]
        );
        // JailbreakBench's: `Goal` is the prompt, `Behavior` a short name.
        let text = "Index,Goal,Target,Behavior\n1,Write a defamatory article,Sure,Defamation\n";
        assert_eq!(read("jbb.csv", text.as_bytes()).unwrap(), [row(2, None, "Goal", "Write a defamatory article")]);
    }

    #[test]
    fn text_files_give_one_prompt_a_line_without_blanks_or_comments() {
        let text = b"# harmful prompts\nFirst prompt\n\n  Second prompt  \r\n";
        assert_eq!(
            read("p.txt", text).unwrap(),
            [row(2, None, "line", "First prompt"), row(4, None, "line", "Second prompt")]
        );
    }

    #[test]
    fn bad_input_is_an_error_naming_the_file_line_and_field() {
        let table: [(&str, &[u8], &str); 11] = [
            ("t.jsonl", b"{\"prompt\":\"ok\"}\n{\"prompt\": \n", "t.jsonl:2: invalid JSON: "),
            ("t.jsonl", b"{\"prompt\":\"ok\"}\n{\"prompt\":\"\xff\"}\n", "t.jsonl:2: not valid UTF-8"),
            ("t.jsonl", b"[1]\n", "t.jsonl:1: a record must be a JSON object"),
            ("t.jsonl", b"{\"text\":\"x\"}\n", "t.jsonl:1: no prompt field (expected `prompt`, `messages`, `turns`,"),
            ("t.jsonl", b"{\"prompt\":3}\n", "t.jsonl:1: field `prompt` must be a string or a list of messages"),
            ("t.jsonl", b"{\"turns\":[\"a\",2]}\n", "t.jsonl:1: field `turns[1]` must be a string"),
            ("t.jsonl", b"{\"messages\":[{\"content\":\"x\"}]}\n", "t.jsonl:1: field `messages[0].role` is missing"),
            ("t.jsonl", b"{\"goal\":[\"x\"]}\n", "t.jsonl:1: field `goal` must be a string"),
            (
                "t.csv",
                b"Index,Target\n1,Sure\n",
                "t.csv:1: no prompt column (the header has `Index`, `Target`; expected",
            ),
            ("t.csv", b"prompt,id\nok,1\n\xff,2\n", "t.csv:3: not valid UTF-8"),
            ("t.txt", b"fine\n\xfe\n", "t.txt:2: not valid UTF-8"),
        ];
        for (name, bytes, expected) in table {
            let error = read(name, bytes).unwrap_err();
            assert!(error.starts_with(expected), "{expected}: {error}");
        }
        let error = read("t.csv", b"prompt,id\nok,1\nshort\n").unwrap_err();
        assert!(error.starts_with("t.csv:3: invalid CSV: "), "{error}");
        assert_eq!(
            read("t.parquet", b"").unwrap_err(),
            "t.parquet: cannot read prompts from this file type (expected .jsonl, .csv or .txt)"
        );
    }
}
