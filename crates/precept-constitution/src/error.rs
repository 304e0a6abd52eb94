//! The one error type of this crate: every variant names the file, line or record involved.

use std::io;
use std::path::PathBuf;

use crate::lint::Diagnostic;

/// `Result` with [`ConstitutionError`] as the default error.
pub type Result<T, E = ConstitutionError> = std::result::Result<T, E>;

/// Everything that can go wrong while reading constitutions and prompts, running the loop and
/// writing its outputs.
#[derive(Debug, thiserror::Error)]
pub enum ConstitutionError {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: io::Error,
    },

    /// A constitution file parsed but the linter found problems; each names its line.
    #[error("{}", list(.diagnostics))]
    Invalid {
        /// The problems, in file order.
        diagnostics: Vec<Diagnostic>,
    },

    /// A JSON file to import does not have the published layout.
    #[error("{path}: field `{field}` must be {expected}")]
    ImportLayout {
        /// The JSON file.
        path: PathBuf,
        /// The field, as a path into the document (`constitutions[2].critic`).
        field: String,
        /// What the field must hold.
        expected: &'static str,
    },

    /// A JSON document (an import or a resumed output file) is not valid JSON.
    #[error("{path}:{line}: invalid JSON: {error}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// The parser's message.
        error: serde_json::Error,
    },

    /// A prompt record is missing a field or has one of the wrong kind.
    #[error("{path}:{line}: field `{field}` {problem}")]
    PromptField {
        /// The prompts file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// The field (`id`, `messages[2].role`).
        field: String,
        /// What is wrong with it.
        problem: String,
    },

    /// Two prompt records share an id, so outputs and resumption could not tell them apart.
    #[error("{path}:{line}: prompt id `{id}` already appeared on line {first}")]
    DuplicatePromptId {
        /// The prompts file.
        path: PathBuf,
        /// The 1-based line of the second occurrence.
        line: usize,
        /// The repeated id.
        id: String,
        /// The line of the first occurrence.
        first: usize,
    },

    /// A principle id given on the command line is not in the constitution.
    #[error("no principle `{id}` in constitution `{constitution}` (it has {available})")]
    UnknownPrinciple {
        /// The id asked for.
        id: String,
        /// The constitution's name.
        constitution: String,
        /// The ids it does have, comma-separated.
        available: String,
    },

    /// A constitution built in code has no principle with a positive weight.
    #[error("constitution `{constitution}` has no principle with a positive weight to sample")]
    NoPrinciples {
        /// The constitution's name.
        constitution: String,
    },

    /// `--feedback` was asked for but the constitution has no `[[comparison]]` principles.
    #[error("constitution `{constitution}` has no [[comparison]] principles, which AI feedback needs")]
    NoComparisons {
        /// The constitution's name.
        constitution: String,
    },

    /// A setting, file or record shared with the other stages is invalid.
    #[error(transparent)]
    Data(#[from] precept_data::DataError),

    /// A loop setting is out of range.
    #[error("setting `{setting}` {problem}")]
    Setting {
        /// The setting's name.
        setting: &'static str,
        /// What is wrong with its value.
        problem: String,
    },

    /// An output folder holds a run with different settings, so resuming would mix two runs.
    #[error(
        "{path}: written by a run with different settings ({field} was {previous}, now {current}); use another --out"
    )]
    ResumeMismatch {
        /// The manifest of the earlier run.
        path: PathBuf,
        /// The setting that differs.
        field: String,
        /// Its earlier value.
        previous: String,
        /// Its value now.
        current: String,
    },

    /// An output folder holds output files but no manifest, so they were not written by
    /// `constitute` and resuming could rewrite someone's data.
    #[error(
        "{path} exists but {manifest} does not; it was not written by precept constitute, so choose another --out"
    )]
    ForeignOutput {
        /// The output file found.
        path: PathBuf,
        /// The manifest that should be beside it.
        manifest: PathBuf,
    },

    /// The generator failed.
    #[error("generation failed: {0}")]
    Generate(Box<dyn std::error::Error + Send + Sync>),

    /// The generator answered a batch with the wrong number of results.
    #[error("the generator returned {got} results for {expected} conversations")]
    GeneratorCount {
        /// Conversations sent.
        expected: usize,
        /// Results received.
        got: usize,
    },
}

/// One diagnostic per line.
fn list(diagnostics: &[Diagnostic]) -> String {
    diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

impl ConstitutionError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, error: io::Error) -> Self {
        Self::Io { path: path.into(), error }
    }
}
