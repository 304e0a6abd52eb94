//! OpenAI-compatible chat completions for precept.
//!
//! - [`wire`] is the request and response format of `/v1/chat/completions` and `/v1/models`,
//!   shared by the client here and by `precept serve`.
//! - [`RemoteGenerator`] implements precept-data's [`Generate`](precept_data::Generate) over one
//!   or more servers ([`RemoteConfig`]): a batch of conversations becomes concurrent requests
//!   spread over the endpoints ([`pool`]), retried with backoff on timeouts and 5xx; option
//!   probabilities are read from `top_logprobs` ([`option_log_probs`]).
//! - [`RewardClient`] POSTs completions to a user's reward endpoint ([`RewardEndpoint`]) and
//!   reads back one number each, with the same concurrency and retries.

mod client;
mod error;
mod http;
mod options;
pub mod pool;
mod reward;
pub mod wire;

pub use client::{RemoteConfig, RemoteGenerator};
pub use error::{RemoteError, Result};
pub use options::option_log_probs;
pub use reward::{RewardClient, RewardEndpoint};
