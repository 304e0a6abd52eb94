//! The parts of a Hugging Face model folder that tokenisation needs besides `tokenizer.json`:
//! special tokens and the chat template from `tokenizer_config.json` (or `chat_template.jinja`),
//! and stop tokens from `generation_config.json`. Absent files mean "nothing declared".

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{DataError, Result};
use crate::special_tokens::SpecialTokens;

/// Largest `tokenizer.json` we load; real ones are at most a few tens of MiB.
pub(crate) const MAX_TOKENIZER_BYTES: u64 = 1 << 30;

/// Largest JSON config or template file we load.
const MAX_CONFIG_BYTES: u64 = 256 << 20;

/// Reads `path` whole, refusing files over `limit` bytes; `None` when the file does not exist.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> Result<Option<Vec<u8>>> {
    let read_error = |error| DataError::Read { path: path.to_owned(), error };
    let size = match fs::metadata(path) {
        Ok(metadata) => metadata.len(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(read_error(error)),
    };
    if size > limit {
        return Err(DataError::TooLarge { path: path.to_owned(), size, limit });
    }
    fs::read(path).map(Some).map_err(read_error)
}

/// Reads a JSON config file whose top level is an object; `None` when it does not exist.
fn read_json_object(path: &Path) -> Result<Option<Map<String, Value>>> {
    let Some(bytes) = read_bounded(path, MAX_CONFIG_BYTES)? else {
        return Ok(None);
    };
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(object)) => Ok(Some(object)),
        Ok(_) => {
            Err(DataError::InvalidField { path: path.to_owned(), field: "(top level)".into(), expected: "an object" })
        }
        Err(error) => Err(DataError::InvalidJson { path: path.to_owned(), error }),
    }
}

/// What `tokenizer_config.json` and `chat_template.jinja` declare.
#[derive(Debug, Default)]
pub(crate) struct TokenizerConfig {
    /// `bos_token`, `eos_token`, `unk_token`, `pad_token`.
    pub(crate) special_tokens: SpecialTokens,
    /// The chat template's text and the file it came from.
    pub(crate) chat_template: Option<(String, PathBuf)>,
}

impl TokenizerConfig {
    /// Reads `dir/tokenizer_config.json` and `dir/chat_template.jinja`, which overrides the
    /// config's `chat_template` as it does in transformers.
    pub(crate) fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer_config.json");
        let mut config = Self::default();
        if let Some(object) = read_json_object(&path)? {
            config.special_tokens = SpecialTokens {
                bos: token_text(&object, &path, "bos_token")?,
                eos: token_text(&object, &path, "eos_token")?,
                unk: token_text(&object, &path, "unk_token")?,
                pad: token_text(&object, &path, "pad_token")?,
            };
            config.chat_template = chat_template(&object, &path)?.map(|source| (source, path.clone()));
        }
        let jinja_path = dir.join("chat_template.jinja");
        if let Some(bytes) = read_bounded(&jinja_path, MAX_CONFIG_BYTES)? {
            let source = String::from_utf8(bytes).map_err(|error| DataError::Read {
                path: jinja_path.clone(),
                error: io::Error::new(io::ErrorKind::InvalidData, error),
            })?;
            config.chat_template = Some((source, jinja_path));
        }
        Ok(config)
    }
}

/// A special token written as `"<s>"` or as an AddedToken object `{"content": "<s>", …}`.
fn token_text(object: &Map<String, Value>, path: &Path, field: &str) -> Result<Option<String>> {
    let invalid = || DataError::InvalidField {
        path: path.to_owned(),
        field: field.to_owned(),
        expected: "a string or an object with a string `content`",
    };
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Object(token)) => match token.get("content") {
            Some(Value::String(text)) => Ok(Some(text.clone())),
            _ => Err(invalid()),
        },
        Some(_) => Err(invalid()),
    }
}

/// `chat_template` as one string, or as a list of `{"name", "template"}` of which we use
/// `default`.
fn chat_template(object: &Map<String, Value>, path: &Path) -> Result<Option<String>> {
    let invalid = || DataError::InvalidField {
        path: path.to_owned(),
        field: "chat_template".into(),
        expected: "a string or a list of objects with string `name` and `template`",
    };
    let named = match object.get("chat_template") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(source)) => return Ok(Some(source.clone())),
        Some(Value::Array(named)) => named,
        Some(_) => return Err(invalid()),
    };
    let mut names = Vec::with_capacity(named.len());
    for entry in named {
        let name = entry.get("name").and_then(Value::as_str).ok_or_else(invalid)?;
        let source = entry.get("template").and_then(Value::as_str).ok_or_else(invalid)?;
        if name == "default" {
            return Ok(Some(source.to_owned()));
        }
        names.push(name.to_owned());
    }
    Err(DataError::NoDefaultTemplate { path: path.to_owned(), names })
}

/// What `generation_config.json` declares about special token ids.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct GenerationConfig {
    /// `bos_token_id`.
    pub(crate) bos_token_id: Option<u32>,
    /// `eos_token_id`, which may be one id or a list.
    pub(crate) eos_token_ids: Vec<u32>,
}

impl GenerationConfig {
    /// Reads `dir/generation_config.json`.
    pub(crate) fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("generation_config.json");
        let Some(object) = read_json_object(&path)? else {
            return Ok(Self::default());
        };
        let bos = token_ids(&object, &path, "bos_token_id")?;
        Ok(Self { bos_token_id: bos.first().copied(), eos_token_ids: token_ids(&object, &path, "eos_token_id")? })
    }
}

/// A token id field holding null, an id, or a list of ids.
fn token_ids(object: &Map<String, Value>, path: &Path, field: &str) -> Result<Vec<u32>> {
    let invalid = || DataError::InvalidField {
        path: path.to_owned(),
        field: field.to_owned(),
        expected: "a token id or a list of token ids",
    };
    let id = |value: &Value| value.as_u64().and_then(|id| u32::try_from(id).ok()).ok_or_else(invalid);
    match object.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(ids)) => ids.iter().map(id).collect(),
        Some(value) => Ok(vec![id(value)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn special_tokens_may_be_strings_or_added_token_objects() {
        let dir = folder(&[(
            "tokenizer_config.json",
            r#"{"bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
                "eos_token": "</s>", "pad_token": null, "chat_template": "{{ bos_token }}"}"#,
        )]);
        let config = TokenizerConfig::load(dir.path()).unwrap();
        assert_eq!(config.special_tokens.bos.as_deref(), Some("<s>"));
        assert_eq!(config.special_tokens.eos.as_deref(), Some("</s>"));
        assert_eq!(config.special_tokens.pad, None);
        let (source, path) = config.chat_template.unwrap();
        assert_eq!(source, "{{ bos_token }}");
        assert_eq!(path, dir.path().join("tokenizer_config.json"));
    }

    #[test]
    fn a_list_of_named_templates_uses_the_default_one() {
        let dir = folder(&[(
            "tokenizer_config.json",
            r#"{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"#,
        )]);
        assert_eq!(TokenizerConfig::load(dir.path()).unwrap().chat_template.unwrap().0, "D");
    }

    #[test]
    fn a_list_without_a_default_template_is_an_error_naming_the_choices() {
        let dir = folder(&[("tokenizer_config.json", r#"{"chat_template": [{"name": "rag", "template": "R"}]}"#)]);
        let err = TokenizerConfig::load(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .ends_with(r#"field `chat_template` names the templates ["rag"] but none is called `default`"#),
            "{err}"
        );
    }

    #[test]
    fn chat_template_jinja_overrides_the_config_template() {
        let dir = folder(&[("tokenizer_config.json", r#"{"chat_template": "old"}"#), ("chat_template.jinja", "new")]);
        let (source, path) = TokenizerConfig::load(dir.path()).unwrap().chat_template.unwrap();
        assert_eq!((source.as_str(), path), ("new", dir.path().join("chat_template.jinja")));
    }

    #[test]
    fn a_mistyped_field_is_an_error_naming_file_and_field() {
        let dir = folder(&[("tokenizer_config.json", r#"{"eos_token": 2}"#)]);
        let err = TokenizerConfig::load(dir.path()).unwrap_err();
        let expected = format!(
            "{}: field `eos_token` must be a string or an object with a string `content`",
            dir.path().join("tokenizer_config.json").display()
        );
        assert_eq!(err.to_string(), expected);
    }

    #[test]
    fn malformed_json_is_an_error_with_file_and_line() {
        let dir = folder(&[("generation_config.json", "{\n  \"eos_token_id\": [1,\n")]);
        let err = GenerationConfig::load(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::InvalidJson { .. }), "{err:?}");
        assert!(err.to_string().contains("generation_config.json: EOF while parsing a value at line 3"), "{err}");
    }

    #[test]
    fn eos_token_id_may_be_one_id_or_a_list() {
        let one = folder(&[("generation_config.json", r#"{"bos_token_id": 1, "eos_token_id": 2}"#)]);
        let many = folder(&[("generation_config.json", r#"{"eos_token_id": [128001, 128009]}"#)]);
        assert_eq!(
            GenerationConfig::load(one.path()).unwrap(),
            GenerationConfig { bos_token_id: Some(1), eos_token_ids: vec![2] }
        );
        assert_eq!(GenerationConfig::load(many.path()).unwrap().eos_token_ids, [128001, 128009]);
        let bad = folder(&[("generation_config.json", r#"{"eos_token_id": "2"}"#)]);
        assert!(GenerationConfig::load(bad.path()).unwrap_err().to_string().contains("field `eos_token_id`"));
    }

    #[test]
    fn absent_config_files_declare_nothing() {
        let dir = folder(&[]);
        assert_eq!(GenerationConfig::load(dir.path()).unwrap(), GenerationConfig::default());
        let config = TokenizerConfig::load(dir.path()).unwrap();
        assert_eq!(config.special_tokens, SpecialTokens::default());
        assert!(config.chat_template.is_none());
    }
}
