//! The one error type of this crate: every variant names the file, field, template or message
//! that caused it.

use std::io;
use std::path::PathBuf;

use crate::message::Role;

/// `Result` with [`DataError`] as the default error.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Everything that can go wrong while reading tokenizers, configs, chat templates and datasets.
///
/// Inner errors are part of the message (`{error}`) rather than a `source()`, so printing the
/// error alone, or its chain with `{:#}`, says everything once.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A settings file (or the flags over it) cannot be parsed or holds an unknown key.
    #[error("{path}: {message}")]
    SettingsFile {
        /// The settings file.
        path: PathBuf,
        /// What is wrong, with the line.
        message: String,
    },
    /// A setting is invalid.
    #[error("setting `{field}`: {message}")]
    Setting {
        /// The setting's name in the settings file.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A model folder has no `tokenizer.json`.
    #[error("{dir}: no tokenizer.json found")]
    MissingTokenizer {
        /// The folder that was searched.
        dir: PathBuf,
    },

    /// A file could not be read.
    #[error("{path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: io::Error,
    },

    /// A file is larger than this crate is willing to load into memory.
    #[error("{path}: {size} bytes is more than the {limit}-byte limit for this file")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The largest size accepted.
        limit: u64,
    },

    /// `tokenizer.json` exists but the `tokenizers` library cannot load it.
    #[error("{path}: not a valid tokenizer: {error}")]
    InvalidTokenizer {
        /// The `tokenizer.json` file.
        path: PathBuf,
        /// What the `tokenizers` library said.
        error: tokenizers::Error,
    },

    /// A JSON config file (`tokenizer_config.json`, `generation_config.json`) is malformed or has
    /// a field of the wrong type.
    #[error("{path}: {error}")]
    InvalidJson {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        error: serde_json::Error,
    },

    /// A config field has the wrong type.
    #[error("{path}: field `{field}` must be {expected}")]
    InvalidField {
        /// The config file.
        path: PathBuf,
        /// The field, as written in the file.
        field: String,
        /// What the field may hold.
        expected: &'static str,
    },

    /// `chat_template` is a list of named templates and none is called `default`.
    #[error("{path}: field `chat_template` names the templates {names:?} but none is called `default`")]
    NoDefaultTemplate {
        /// The config file holding the list.
        path: PathBuf,
        /// The names that were present.
        names: Vec<String>,
    },

    /// A message role other than `system`, `user` or `assistant`.
    #[error("unknown role `{role}` (expected `system`, `user` or `assistant`)")]
    UnknownRole {
        /// The role as written.
        role: String,
    },

    /// A chat template does not parse.
    #[error("chat template of {path}: {error}")]
    TemplateSyntax {
        /// Where the template came from.
        path: PathBuf,
        /// The template engine's message, with the template line.
        error: minijinja::Error,
    },

    /// A chat template failed while rendering a conversation.
    #[error("chat template of {path}: {}{error}", at_message(*.index))]
    TemplateRender {
        /// Where the template came from.
        path: PathBuf,
        /// The message the template was looking at when it failed, if any.
        index: Option<usize>,
        /// The template engine's message, with the template line.
        error: minijinja::Error,
    },

    /// A chat template called `raise_exception(message)`, usually to reject a conversation
    /// (for example roles that do not alternate).
    #[error("chat template of {path}: {}{message}", at_message(*.index))]
    TemplateRaised {
        /// Where the template came from.
        path: PathBuf,
        /// The message the template was looking at when it raised, if any.
        index: Option<usize>,
        /// The text the template passed to `raise_exception`.
        message: String,
    },

    /// The tokenizer could not encode a text.
    #[error("cannot tokenise the text starting {snippet:?}: {error}")]
    Encode {
        /// The first characters of the text.
        snippet: String,
        /// What the `tokenizers` library said.
        error: tokenizers::Error,
    },

    /// The tokenizer could not decode token ids (usually an id outside the vocabulary).
    #[error("cannot decode {} token ids starting {:?}: {error}", .ids.len(), first_ids(.ids))]
    Decode {
        /// The ids that were passed.
        ids: Vec<u32>,
        /// What the `tokenizers` library said.
        error: tokenizers::Error,
    },

    /// Incremental decoding found that a new token rewrote text already handed out.
    #[error(
        "streaming decode: token {id} changed text already emitted ({emitted:?} is no longer a prefix of {decoded:?})"
    )]
    StreamRewrite {
        /// The token that was just added.
        id: u32,
        /// The text emitted so far for the current window.
        emitted: String,
        /// The window's text after adding `id`.
        decoded: String,
    },

    /// A JSONL line is longer than this crate is willing to hold in memory.
    #[error("{path}:{line}: line is longer than the {limit}-byte limit")]
    LineTooLong {
        /// The JSONL file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The longest line accepted, in bytes.
        limit: usize,
    },

    /// A JSONL line is not valid UTF-8.
    #[error("{path}:{line}: not valid UTF-8")]
    NotUtf8 {
        /// The JSONL file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
    },

    /// A JSONL line holds JSON that is not an object.
    #[error("{path}:{line}: a record must be a JSON object")]
    NotAnObject {
        /// The JSONL file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
    },

    /// A JSONL line is not valid JSON.
    #[error("{path}:{line}: invalid JSON: {error}")]
    InvalidJsonLine {
        /// The JSONL file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The parser's message, with the column.
        error: serde_json::Error,
    },

    /// A JSONL record lacks a required field.
    #[error("{path}:{line}: field `{field}` is missing")]
    MissingField {
        /// The JSONL file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The field, as a path into the record (`messages[1].content`).
        field: String,
    },

    /// A JSONL record field holds the wrong kind of JSON value.
    #[error("{path}:{line}: field `{field}` must be {expected}")]
    WrongType {
        /// The JSONL file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The field, as a path into the record (`messages[1].content`).
        field: String,
        /// What the field may hold.
        expected: &'static str,
    },

    /// A JSONL record has both the conversational and the prompt/completion form.
    #[error("{path}:{line}: has both `messages` and `{other}`; use one form")]
    ConflictingFields {
        /// The JSONL file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The prompt/completion field that was found beside `messages`.
        other: &'static str,
    },

    /// A message in a JSONL record has a role other than `system`, `user` or `assistant`.
    #[error("{path}:{line}: field `{field}`: unknown role `{role}`")]
    RecordUnknownRole {
        /// The JSONL file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The role field (`messages[2].role`).
        field: String,
        /// The role as written.
        role: String,
    },

    /// A message in a JSONL record has empty content.
    #[error("{path}:{line}: field `{field}` is empty")]
    EmptyContent {
        /// The JSONL file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The content field (`messages[1].content`).
        field: String,
    },

    /// The messages of a JSONL record are not in the order training expects: an optional
    /// `system` message, then `user` and `assistant` turns alternating, starting with `user`.
    #[error("{path}:{line}: field `{field}`: expected {expected}, found `{found}`")]
    RoleOrder {
        /// The JSONL file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The role field of the out-of-place message (`messages[2].role`).
        field: String,
        /// The role found there.
        found: Role,
        /// What may stand there.
        expected: &'static str,
    },

    /// A JSONL record's conversation does not end with an `assistant` turn, so nothing in it
    /// would be trained.
    #[error("{path}:{line}: field `{field}` must end with an `assistant` message")]
    NoFinalAssistant {
        /// The JSONL file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The message list (`messages` or `completion`).
        field: String,
    },

    /// The chat template or the tokenizer failed on the record at `path:line`.
    #[error("{path}:{line}: {error}")]
    Record {
        /// The JSONL file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The template's or tokenizer's error.
        error: Box<DataError>,
    },

    /// The chat template renders a conversation prefix whose tokens are not a prefix of the whole
    /// conversation's tokens, so the loss mask cannot be placed exactly.
    #[error(
        "{path}:{line}: loss mask mismatch at message {message}: the chat template's rendering of the conversation up to this turn does not tokenise to a prefix of the whole conversation (first difference at token {position})"
    )]
    MaskMismatch {
        /// The JSONL file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The index of the trained message whose span could not be placed.
        message: usize,
        /// The first token position where the prefix and the whole sequence differ.
        position: usize,
    },

    /// The chat template renders no tokens for the trained messages of a record.
    #[error("{path}:{line}: the chat template renders no tokens for the trained messages")]
    NothingTrained {
        /// The JSONL file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
    },

    /// A JSONL record holds no field a prompt is read from.
    #[error(
        "{path}:{line}: no prompt field (expected `prompt`, `messages`, `turns`, `goal`, `forbidden_prompt`, `question`, `behavior`, or `chosen` holding the prompt's turns)"
    )]
    NoPromptField {
        /// The JSONL file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
    },

    /// A CSV file's header names no column a prompt is read from.
    #[error(
        "{path}:1: no prompt column (the header has {}; expected `prompt`, `goal`, `forbidden_prompt`, `question` or `behavior`, any case)",
        quoted(.header)
    )]
    NoPromptColumn {
        /// The CSV file.
        path: PathBuf,
        /// The header's columns.
        header: Vec<String>,
    },

    /// A CSV file cannot be parsed.
    #[error("{path}:{line}: invalid CSV: {error}")]
    Csv {
        /// The CSV file.
        path: PathBuf,
        /// The 1-based line where the bad record starts.
        line: usize,
        /// The CSV reader's message.
        error: csv::Error,
    },

    /// A file of prompts has an extension whose layout is unknown.
    #[error("{path}: cannot read prompts from this file type (expected .jsonl, .csv or .txt)")]
    UnknownTextFormat {
        /// The file.
        path: PathBuf,
    },

    /// A file could not be written.
    #[error("{path}: {error}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: io::Error,
    },

    /// A model config describes a model larger than this machine's memory (or than 64-bit
    /// arithmetic can count).
    #[error("{path}: this model ({sizes}) needs {needed} in float32 but this machine has {memory}")]
    ModelTooLarge {
        /// The config (or GGUF file) the sizes came from.
        path: PathBuf,
        /// The sizes, as the config names them.
        sizes: String,
        /// The memory the weights and rotary tables would take.
        needed: String,
        /// The machine's memory.
        memory: String,
    },

    /// A safetensors header could not be built for the tensors to write.
    #[error("{path}: invalid safetensors file: {message}")]
    Safetensors {
        /// The file being written.
        path: PathBuf,
        /// The safetensors library's message.
        message: String,
    },
}

/// `"message 3: "`, or nothing when the failing message is unknown.
fn at_message(index: Option<usize>) -> String {
    index.map(|index| format!("message {index}: ")).unwrap_or_default()
}

/// `` `a`, `b` ``: column names as a message lists them.
fn quoted(names: &[String]) -> String {
    names.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(", ")
}

/// At most the first eight ids, so a long sequence does not flood the message.
fn first_ids(ids: &[u32]) -> &[u32] {
    &ids[..ids.len().min(8)]
}

/// The first 40 characters of `text`, for error messages.
pub(crate) fn snippet(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_errors_name_the_message_only_when_it_is_known() {
        let with = DataError::TemplateRaised {
            path: PathBuf::from("m/tokenizer_config.json"),
            index: Some(2),
            message: "roles must alternate".into(),
        };
        assert_eq!(with.to_string(), "chat template of m/tokenizer_config.json: message 2: roles must alternate");
        let without = DataError::TemplateRaised {
            path: PathBuf::from("m/tokenizer_config.json"),
            index: None,
            message: "no".into(),
        };
        assert_eq!(without.to_string(), "chat template of m/tokenizer_config.json: no");
    }

    #[test]
    fn decode_errors_show_only_the_first_ids() {
        let err = DataError::Decode { ids: (0..20).collect(), error: "bad id".into() };
        assert_eq!(err.to_string(), "cannot decode 20 token ids starting [0, 1, 2, 3, 4, 5, 6, 7]: bad id");
    }
}
