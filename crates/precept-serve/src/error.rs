//! [`ServeError`]: why the server could not start or stopped.

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A setting is missing or invalid.
    #[error("setting `{field}`: {message}")]
    Setting {
        /// The setting's name.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The model folder's tokenizer has no chat template.
    #[error("the model has no chat template (tokenizer_config.json `chat_template`), which chat completions need")]
    NoChatTemplate,
    /// A non-loopback address without an API key.
    #[error("{addr} is reachable from other machines: set an API key (`api_key_env`) to serve there")]
    KeyRequired {
        /// The address asked for.
        addr: std::net::SocketAddr,
    },
    /// Socket or runtime failure.
    #[error("serving on {addr}: {source}")]
    Io {
        /// The listening address.
        addr: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The generation thread panicked.
    #[error("the generation thread stopped unexpectedly")]
    EngineLost,
}
