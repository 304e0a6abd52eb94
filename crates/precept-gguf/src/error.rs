//! The one error type of precept-gguf.

use std::path::PathBuf;

/// Everything that can go wrong reading a GGUF file or importing it into a model folder.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A GGUF file is corrupt, truncated or uses something unsupported.
    #[error("{path}: {message}")]
    Format {
        /// The GGUF file.
        path: PathBuf,
        /// What is wrong, naming the tensor or metadata key where there is one.
        message: String,
    },
    /// A metadata entry is missing, of the wrong type, or out of range.
    #[error("{path}: metadata `{key}`: {message}")]
    Metadata {
        /// The GGUF file.
        path: PathBuf,
        /// The metadata key, such as `llama.block_count`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A tensor is malformed, truncated or stored in a type we cannot import.
    #[error("{path}: tensor `{tensor}`: {message}")]
    Tensor {
        /// The GGUF file.
        path: PathBuf,
        /// The tensor name as stored in the file, such as `blk.0.attn_q.weight`.
        tensor: String,
        /// What is wrong with it.
        message: String,
    },
    /// The imported `model.safetensors` could not be written.
    #[error(transparent)]
    Data(#[from] precept_data::DataError),
}

impl GgufError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}

/// Result with [`GgufError`].
pub type Result<T, E = GgufError> = std::result::Result<T, E>;
