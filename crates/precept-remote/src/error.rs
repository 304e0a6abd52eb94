//! [`RemoteError`]: what can go wrong talking to an OpenAI-compatible server.

/// What can go wrong talking to an OpenAI-compatible server.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// An endpoint is not an `http://` or `https://` URL.
    #[error("remote endpoint `{url}` is not an http:// or https:// URL")]
    InvalidEndpoint {
        /// The endpoint as given.
        url: String,
    },
    /// No endpoint was given.
    #[error("no remote endpoint given")]
    NoEndpoints,
    /// The server refused the request (4xx other than 429): retrying cannot help.
    #[error("{url}: the server answered {status}: {message}")]
    Rejected {
        /// The request URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The error message from the body (or the body itself).
        message: String,
    },
    /// Timeouts, refused connections or 5xx answers until the retries ran out.
    #[error("{url}: no answer after {attempts} attempts; last: {message}")]
    Unreachable {
        /// The request URL of the last attempt.
        url: String,
        /// Attempts made.
        attempts: usize,
        /// The last failure.
        message: String,
    },
    /// The answer was not a chat completion.
    #[error("{url}: the answer is not a chat completion: {message}")]
    Malformed {
        /// The request URL.
        url: String,
        /// What was wrong.
        message: String,
    },
    /// A reward endpoint answered something other than a finite number.
    #[error("{url}: the answer is not a number or an object with a numeric `reward`: {body}")]
    NotAReward {
        /// The endpoint.
        url: String,
        /// The answer (shortened).
        body: String,
    },
    /// One item of a batch (a completion sent to a reward endpoint) failed.
    #[error("completion {index}: {error}")]
    Item {
        /// The item's index in the batch.
        index: usize,
        /// Why it failed.
        error: Box<RemoteError>,
    },
    /// The server gave no `top_logprobs`, which option probabilities need.
    #[error(
        "{url}: model `{model}` returned no top_logprobs; option probabilities (AI feedback, the model judge) \
         need a server that supports `logprobs` and `top_logprobs` (precept serve, vLLM, llama.cpp server)"
    )]
    NoLogprobs {
        /// The request URL.
        url: String,
        /// The remote model.
        model: String,
    },
}

/// Result with [`RemoteError`].
pub type Result<T, E = RemoteError> = std::result::Result<T, E>;
