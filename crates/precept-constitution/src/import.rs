//! Importers for the two published JSON constitution layouts.
//!
//! - Anthropic's harmlessness-paper instructions: an object of named entries, each with
//!   `prompt` (the critique request, a string or a one-element list) and `edit_request` (the
//!   revision request).
//! - Hugging Face's layout: `constitutions`, a list of `{"critic", "revision"}` pairs, and
//!   `system_chat`, few-shot conversations of six messages (prompt, answer, critique request,
//!   critique, revision request, revision).

use std::path::Path;

use serde_json::Value;

use crate::constitution::{read_bounded, Constitution, Example, Principle, MAX_FILE_BYTES};
use crate::error::{ConstitutionError, Result};

/// A published layout that [`import`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    /// Anthropic's `CritiqueRevisionInstructions.json` layout.
    Anthropic,
    /// Hugging Face's `constitutions` + `system_chat` layout.
    HuggingFace,
}

/// Reads `path` in `format` and returns a constitution named after the file.
///
/// # Errors
/// [`ConstitutionError::Io`], [`ConstitutionError::Json`], or
/// [`ConstitutionError::ImportLayout`] naming the field that does not fit the layout.
pub fn import(path: &Path, format: ImportFormat) -> Result<Constitution> {
    let text = read_bounded(path, MAX_FILE_BYTES)?;
    let value: Value = serde_json::from_str(&text).map_err(|error| ConstitutionError::Json {
        path: path.to_owned(),
        line: error.line(),
        error,
    })?;
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "imported".into());
    let (principles, examples) = match format {
        ImportFormat::Anthropic => (anthropic(&value, path)?, Vec::new()),
        ImportFormat::HuggingFace => hugging_face(&value, path)?,
    };
    let source = match format {
        ImportFormat::Anthropic => "Anthropic",
        ImportFormat::HuggingFace => "Hugging Face",
    };
    let constitution = Constitution {
        name,
        version: "1".into(),
        description: format!("Imported from {} ({source} layout).", path.display()),
        principles,
        examples,
        comparisons: Vec::new(),
        hash: String::new(),
        path: path.to_owned(),
    };
    // Lint what was built, so an import never writes a file that `check` would reject.
    Constitution::parse(&constitution.to_toml(), path)
}

fn layout(path: &Path, field: impl Into<String>, expected: &'static str) -> ConstitutionError {
    ConstitutionError::ImportLayout { path: path.to_owned(), field: field.into(), expected }
}

/// `id` made of the characters the linter accepts.
fn slug(name: &str) -> String {
    let slug: String =
        name.trim().chars().map(|c| if c.is_alphanumeric() || "-_.".contains(c) { c } else { '-' }).collect();
    if slug.is_empty() {
        "principle".into()
    } else {
        slug
    }
}

fn anthropic(value: &Value, path: &Path) -> Result<Vec<Principle>> {
    let entries = value.as_object().ok_or_else(|| layout(path, "(top level)", "an object of named entries"))?;
    entries
        .iter()
        .map(|(name, entry)| {
            let critique = match entry.get("prompt") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(list)) => match list.first() {
                    Some(Value::String(s)) => s.clone(),
                    _ => return Err(layout(path, format!("{name}.prompt[0]"), "a string")),
                },
                _ => return Err(layout(path, format!("{name}.prompt"), "a string or a list of strings")),
            };
            let revision = entry
                .get("edit_request")
                .and_then(Value::as_str)
                .ok_or_else(|| layout(path, format!("{name}.edit_request"), "a string"))?;
            Ok(Principle { id: slug(name), critique, revision: revision.to_owned(), tags: Vec::new(), weight: 1.0 })
        })
        .collect()
}

fn hugging_face(value: &Value, path: &Path) -> Result<(Vec<Principle>, Vec<Example>)> {
    let list = value
        .get("constitutions")
        .and_then(Value::as_array)
        .ok_or_else(|| layout(path, "constitutions", "a list of {\"critic\", \"revision\"} objects"))?;
    let text = |entry: &Value, key: &str, field: String| {
        entry.get(key).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| layout(path, field, "a string"))
    };
    let principles: Vec<Principle> = list
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            Ok(Principle {
                id: format!("principle-{}", i + 1),
                critique: text(entry, "critic", format!("constitutions[{i}].critic"))?,
                revision: text(entry, "revision", format!("constitutions[{i}].revision"))?,
                tags: Vec::new(),
                weight: 1.0,
            })
        })
        .collect::<Result<_>>()?;
    let chats = match value.get("system_chat") {
        None => return Ok((principles, Vec::new())),
        Some(chats) => chats.as_array().ok_or_else(|| layout(path, "system_chat", "a list of conversations"))?,
    };
    let roles = ["user", "assistant", "user", "assistant", "user", "assistant"];
    let examples = chats
        .iter()
        .enumerate()
        .map(|(i, chat)| {
            let expected = "six messages alternating user and assistant";
            let messages = chat
                .as_array()
                .filter(|m| m.len() == 6)
                .ok_or_else(|| layout(path, format!("system_chat[{i}]"), expected))?;
            let mut parts = Vec::with_capacity(6);
            for (j, (message, role)) in messages.iter().zip(roles).enumerate() {
                if message.get("role").and_then(Value::as_str) != Some(role) {
                    return Err(layout(path, format!("system_chat[{i}][{j}].role"), expected));
                }
                parts.push(text(message, "content", format!("system_chat[{i}][{j}].content"))?);
            }
            // The demonstration's requests name its principle when they match one exactly.
            let principle =
                principles.iter().find(|p| p.critique == parts[2] && p.revision == parts[4]).map(|p| p.id.clone());
            if principle.is_none() {
                tracing::warn!("{}: system_chat[{i}] uses requests that match no principle", path.display());
            }
            let mut parts = parts.into_iter();
            let mut next = || parts.next().unwrap_or_default();
            let (prompt, response, _, critique, _, revision) = (next(), next(), next(), next(), next(), next());
            Ok(Example { principle, prompt, response, critique, revision })
        })
        .collect::<Result<_>>()?;
    Ok((principles, examples))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()))
            .join("tests/fixtures")
            .join(name)
    }

    #[test]
    fn anthropic_entries_become_principles_named_after_their_keys() {
        let c = import(&fixture("anthropic.json"), ImportFormat::Anthropic).unwrap();
        assert_eq!(c.name, "anthropic");
        let ids: Vec<&str> = c.principles.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["harmful0", "honesty-1"]);
        assert!(c.principles[0].critique.starts_with("Point out every way"));
        assert!(c.principles[1].revision.starts_with("Rewrite the reply so that it claims only"));
    }

    #[test]
    fn hugging_face_pairs_become_principles_and_system_chats_become_examples() {
        let c = import(&fixture("hf.json"), ImportFormat::HuggingFace).unwrap();
        assert_eq!(c.principles.len(), 2);
        assert_eq!(c.principles[1].critique, "Would a careful expert agree with every claim in the reply?");
        assert_eq!(c.examples.len(), 1);
        let example = &c.examples[0];
        assert_eq!(example.principle.as_deref(), Some("principle-1"));
        assert_eq!(example.response, "Your code is bad, that's why.");
        assert!(example.revision.starts_with("Sorry it is failing"));
        // What the importer writes passes the linter.
        Constitution::parse(&c.to_toml(), Path::new("out.toml")).unwrap();
    }

    #[test]
    fn layout_errors_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (ImportFormat::Anthropic, r#"{"a": {"prompt": ["x"]}}"#, "field `a.edit_request` must be a string"),
            (ImportFormat::Anthropic, r#"[1]"#, "field `(top level)` must be an object of named entries"),
            (
                ImportFormat::HuggingFace,
                r#"{"constitutions": [{"critic": "c"}]}"#,
                "field `constitutions[0].revision` must be a string",
            ),
            (
                ImportFormat::HuggingFace,
                r#"{"constitutions": [], "system_chat": [[{"role": "user", "content": "x"}]]}"#,
                "field `system_chat[0]` must be six messages alternating user and assistant",
            ),
        ];
        for (format, json, expected) in cases {
            let path = dir.path().join("in.json");
            std::fs::write(&path, json).unwrap();
            let err = import(&path, format).unwrap_err().to_string();
            assert_eq!(err, format!("{}: {expected}", path.display()));
        }
        std::fs::write(dir.path().join("bad.json"), "{\n  \"a\": ,\n}").unwrap();
        let err = import(&dir.path().join("bad.json"), ImportFormat::Anthropic).unwrap_err().to_string();
        assert!(err.contains("bad.json:2: invalid JSON"), "{err}");
    }
}
