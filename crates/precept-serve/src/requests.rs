//! Checking a chat request against the server's limits and turning it into a [`Prepared`] row.

use std::sync::atomic::{AtomicU64, Ordering};

use precept_data::{Message, Tokenizer};
use precept_model::generate::RowRequest;
use precept_model::sampling::SamplingConfig;
use precept_remote::wire::{ChatRequest, StopStrings};

use crate::api_error::ApiError;

/// Most `top_logprobs` a request may ask for (the OpenAI API's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;
/// Most stop strings per request.
const MAX_STOP_STRINGS: usize = 16;

/// What a server accepts.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The name requests must use.
    pub model_name: String,
    /// Most new tokens a request may ask for.
    pub max_tokens: usize,
    /// New tokens when a request does not say.
    pub default_max_tokens: usize,
    /// The model's context: prompt plus new tokens.
    pub context: usize,
}

/// A request ready for the generation thread.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Prompt, token limit and sampling.
    pub row: RowRequest,
    /// Stop strings.
    pub stop: Vec<String>,
    /// `Some(k)` when log-probabilities were asked for.
    pub top_logprobs: Option<usize>,
    /// Stream the reply.
    pub stream: bool,
}

/// Seeds for requests that give none: distinct per request.
static NEXT_SEED: AtomicU64 = AtomicU64::new(0x5eed);

/// Validates `request` and renders its conversation with the chat template.
pub fn prepare(request: ChatRequest, tokenizer: &Tokenizer, limits: &Limits) -> Result<Prepared, ApiError> {
    if request.model != limits.model_name {
        let message =
            format!("the model `{}` does not exist; this server serves `{}`", request.model, limits.model_name);
        return Err(ApiError { status: axum::http::StatusCode::NOT_FOUND, ..ApiError::invalid("model", message) }
            .with_code("model_not_found"));
    }
    let messages = messages(&request)?;
    if request.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("n", "only n = 1 is served"));
    }
    let temperature = request.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid("temperature", format!("temperature {temperature} is not within [0, 2]")));
    }
    let top_p = request.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid("top_p", format!("top_p {top_p} is not within (0, 1]")));
    }
    let top_logprobs = match (request.logprobs, request.top_logprobs) {
        (_, Some(k)) if k > MAX_TOP_LOGPROBS => {
            return Err(ApiError::invalid("top_logprobs", format!("top_logprobs {k} exceeds {MAX_TOP_LOGPROBS}")))
        }
        (false, Some(_)) => return Err(ApiError::invalid("top_logprobs", "top_logprobs needs logprobs: true")),
        (true, k) => Some(k.unwrap_or(0)),
        (false, None) => None,
    };
    let stop = request.stop.clone().map(StopStrings::into_vec).unwrap_or_default();
    if stop.len() > MAX_STOP_STRINGS || stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid("stop", format!("give at most {MAX_STOP_STRINGS} non-empty stop strings")));
    }
    let prompt = prompt_ids(&messages, tokenizer)?;
    let max_new_tokens = token_limit(&request, prompt.len(), limits)?;
    let seed = request.seed.unwrap_or_else(|| NEXT_SEED.fetch_add(1, Ordering::Relaxed));
    let sampling = SamplingConfig { temperature, top_p, seed, ..SamplingConfig::default() };
    Ok(Prepared { row: RowRequest { prompt, max_new_tokens, sampling }, stop, top_logprobs, stream: request.stream })
}

fn messages(request: &ChatRequest) -> Result<Vec<Message>, ApiError> {
    if request.messages.is_empty() {
        return Err(ApiError::invalid("messages", "messages is empty"));
    }
    request
        .messages
        .iter()
        .enumerate()
        .map(|(i, message)| {
            message.to_message().ok_or_else(|| {
                let role = &message.role;
                ApiError::invalid(
                    "messages",
                    format!("messages[{i}]: unknown role `{role}` (system, user or assistant)"),
                )
            })
        })
        .collect()
}

fn prompt_ids(messages: &[Message], tokenizer: &Tokenizer) -> Result<Vec<u32>, ApiError> {
    let template = tokenizer.chat_template().ok_or_else(|| {
        ApiError::status(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "the model has no chat template")
    })?;
    let text = template.render(messages, true).map_err(|e| ApiError::invalid("messages", e.to_string()))?;
    let ids = tokenizer.encode(&text, false).map_err(|e| ApiError::invalid("messages", e.to_string()))?;
    if ids.is_empty() {
        return Err(ApiError::invalid("messages", "the rendered prompt is empty"));
    }
    Ok(ids)
}

fn token_limit(request: &ChatRequest, prompt: usize, limits: &Limits) -> Result<usize, ApiError> {
    let room = limits.context.saturating_sub(prompt);
    let too_long = |asked: usize| {
        let message = format!(
            "the prompt has {prompt} tokens and {asked} new tokens were asked for, but the model's context is {} tokens",
            limits.context
        );
        ApiError::invalid("messages", message).with_code("context_length_exceeded")
    };
    match request.token_limit() {
        Some(0) => Err(ApiError::invalid("max_tokens", "max_tokens must be at least 1")),
        Some(asked) if asked > limits.max_tokens => Err(ApiError::invalid(
            "max_tokens",
            format!("max_tokens {asked} exceeds this server's limit of {}", limits.max_tokens),
        )),
        Some(asked) if asked > room => Err(too_long(asked)),
        Some(asked) => Ok(asked),
        None if room == 0 => Err(too_long(1)),
        None => Ok(limits.default_max_tokens.min(room)),
    }
}
