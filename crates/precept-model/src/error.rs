//! The one error type of precept-model.

use std::path::PathBuf;

/// Everything that can go wrong loading or saving a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file (config.json, an index) is malformed or lacks a field.
    #[error("{path}: {message}")]
    Json {
        /// The file involved.
        path: PathBuf,
        /// What is wrong, with the field name.
        message: String,
    },
    /// config.json describes something this model cannot represent.
    #[error("{path}: field `{field}`: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// The offending field.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A safetensors file is corrupt or truncated.
    #[error("{path}: invalid safetensors file: {message}")]
    Safetensors {
        /// The file involved.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A tensor the model needs is absent from the checkpoint.
    #[error("{path}: tensor `{key}` is missing")]
    MissingTensor {
        /// The checkpoint file (or index) searched.
        path: PathBuf,
        /// The missing key.
        key: String,
    },
    /// A tensor has the wrong shape.
    #[error("{path}: tensor `{key}` has shape {found:?}, expected {expected:?}")]
    TensorShape {
        /// The checkpoint file.
        path: PathBuf,
        /// The tensor key.
        key: String,
        /// Shape in the file.
        found: Vec<usize>,
        /// Shape the config implies.
        expected: Vec<usize>,
    },
    /// A tensor is stored in a dtype we cannot load.
    #[error("{path}: tensor `{key}` has unsupported dtype {dtype}")]
    TensorDtype {
        /// The checkpoint file.
        path: PathBuf,
        /// The tensor key.
        key: String,
        /// The dtype found.
        dtype: String,
    },
    /// The requested model folder lacks a required file.
    #[error("{dir}: no {file} found (is this a Hugging Face model folder?)")]
    MissingFile {
        /// The model folder.
        dir: PathBuf,
        /// The file that was expected.
        file: String,
    },
    /// A generation request cannot be served.
    #[error("prompt {row}: {message}")]
    Generation {
        /// Index of the offending prompt in the batch.
        row: usize,
        /// What is wrong.
        message: String,
    },
    /// Tokenizer or chat-template problem.
    #[error(transparent)]
    Data(#[from] precept_data::DataError),
    /// Conversations need a chat template and the model folder has none.
    #[error("the model folder has no chat template (tokenizer_config.json `chat_template`)")]
    NoChatTemplate,
    /// An answer option tokenises to nothing.
    #[error("option `{option}` has no tokens")]
    EmptyOption {
        /// The offending option.
        option: String,
    },
    /// A model with LoRA adapters was to be saved as a plain model folder.
    #[error("{dir}: the model has unmerged LoRA adapters; merge them first or save the adapter")]
    UnmergedAdapters {
        /// The folder that was to be written.
        dir: PathBuf,
    },
    /// LoRA settings that cannot be applied to this model.
    #[error("LoRA `{field}`: {message}")]
    Lora {
        /// The offending setting (`r`, `target_modules`, …).
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ModelError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}

/// Result with [`ModelError`].
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
