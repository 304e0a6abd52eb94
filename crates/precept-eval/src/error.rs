//! The one error type of this crate: every variant names the file, line, field or case involved.

use std::io;
use std::path::PathBuf;

/// `Result` with [`EvalError`] as the default error.
pub type Result<T, E = EvalError> = std::result::Result<T, E>;

/// Everything that can go wrong while reading suites and cases, running them and writing reports.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A gate setting is missing or out of range.
    #[error("setting `{field}`: {message}")]
    Setting {
        /// The setting's name in a settings file (and its flag's, with dashes).
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// A setting or record shared with the other stages is invalid.
    #[error(transparent)]
    Data(#[from] precept_data::DataError),

    /// A file could not be read.
    #[error("{path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: io::Error,
    },

    /// A file could not be written.
    #[error("writing {path}: {error}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: io::Error,
    },

    /// A TOML file (suite, templates) does not parse or has a field of the wrong type.
    #[error("{path}:{line}: {message}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending value (1 when the parser gives no position).
        line: usize,
        /// The parser's message, naming the field.
        message: String,
    },

    /// A JSONL line is not valid JSON.
    #[error("{path}:{line}: invalid JSON: {error}")]
    InvalidJsonLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The parser's message.
        error: serde_json::Error,
    },

    /// A JSONL record lacks a field or holds the wrong kind of value in it.
    #[error("{path}:{line}: field `{field}` {problem}")]
    InvalidField {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The field, as written in the file.
        field: String,
        /// What is wrong with it (`is missing`, `must be "refuse" or "comply"`, …).
        problem: String,
    },

    /// Two cases share an id, so base and tuned replies could not be paired.
    #[error("{path}:{line}: case id `{id}` is used twice (ids pair base and tuned replies, so they must be unique)")]
    DuplicateCase {
        /// The file of the second occurrence.
        path: PathBuf,
        /// Its line.
        line: usize,
        /// The id.
        id: String,
    },

    /// A suite setting is inconsistent (an unknown template name, a judge without its model, …).
    #[error("{path}: field `{field}`: {problem}")]
    Suite {
        /// The suite file.
        path: PathBuf,
        /// The setting.
        field: String,
        /// What is wrong with it.
        problem: String,
    },

    /// A role-play template has no `{prompt}` slot.
    #[error("{path}: template `{name}` has no `{{prompt}}` slot")]
    TemplateWithoutSlot {
        /// The templates file.
        path: PathBuf,
        /// The template.
        name: String,
    },

    /// A CSV file could not be parsed.
    #[error("{path}:{line}: {error}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line number (1 when unknown).
        line: usize,
        /// The parser's message.
        error: csv::Error,
    },

    /// A CSV header lacks a mapped column.
    #[error("{path}: no column `{column}` in the header (columns: {available})")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column asked for.
        column: String,
        /// The header, comma-separated.
        available: String,
    },

    /// The model behind the [`Generate`](precept_data::Generate) trait failed.
    ///
    /// The generator's own error type varies with the backend, so it travels boxed.
    #[error("{stage}: {error}")]
    Generate {
        /// What was being done (`generating the tuned replies`, `judging`, …).
        stage: String,
        /// The generator's error.
        error: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A generator returned a different number of replies than conversations it was given.
    #[error("{stage}: the generator returned {got} results for {expected} conversations")]
    ReplyCount {
        /// What was being done.
        stage: String,
        /// Conversations sent.
        expected: usize,
        /// Results received.
        got: usize,
    },

    /// A model a gate or judge needs could not be opened (loaded, or connected to).
    ///
    /// What opens models varies with the caller, so its error travels boxed.
    #[error("opening the {role} model {model}: {error}")]
    Open {
        /// `base`, `tuned` or `judge`.
        role: String,
        /// The model, as its source prints.
        model: String,
        /// The opener's error.
        error: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A local model's folder has no `config.json`.
    #[error("{path}: not a model folder (no config.json)")]
    NotAModel {
        /// The folder.
        path: PathBuf,
    },

    /// A model folder could not be hashed for the baseline cache key.
    #[error("hashing the model in {dir}: {error}")]
    HashModel {
        /// The folder.
        dir: PathBuf,
        /// What went wrong reading it.
        error: precept_data::DataError,
    },

    /// A JSON document (cache, report) could not be (de)serialised.
    #[error("{path}: {error}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The serialiser's message.
        error: serde_json::Error,
    },
}

impl EvalError {
    /// A [`EvalError::Toml`] for `error` raised while parsing `text` from `path`.
    pub(crate) fn toml(path: &std::path::Path, text: &str, error: &toml::de::Error) -> Self {
        let line = error.span().map_or(1, |span| line_of(text, span.start));
        Self::Toml { path: path.to_owned(), line, message: error.message().trim_end().to_owned() }
    }

    /// A [`EvalError::InvalidField`].
    pub(crate) fn field(path: &std::path::Path, line: usize, field: &str, problem: impl Into<String>) -> Self {
        Self::InvalidField { path: path.to_owned(), line, field: field.to_owned(), problem: problem.into() }
    }

    /// A [`EvalError::Suite`].
    pub(crate) fn suite(path: &std::path::Path, field: &str, problem: impl Into<String>) -> Self {
        Self::Suite { path: path.to_owned(), field: field.to_owned(), problem: problem.into() }
    }
}

/// The 1-based line holding byte `offset` of `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Reads a whole text file, naming it in the error.
pub(crate) fn read_text(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|error| EvalError::Read { path: path.to_owned(), error })
}

/// The JSON value of every non-blank line of a JSONL file, with its 1-based line number; the
/// first line that is not JSON is the error.
pub(crate) fn read_jsonl(path: &std::path::Path) -> Result<Vec<(usize, serde_json::Value)>> {
    let text = read_text(path)?;
    let mut values = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let line = index + 1;
        let value = serde_json::from_str(raw).map_err(|error| EvalError::InvalidJsonLine {
            path: path.to_owned(),
            line,
            error,
        })?;
        values.push((line, value));
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_of_counts_newlines_before_the_offset() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }
}
