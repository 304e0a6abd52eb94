//! The HTTP side: `/v1/models`, `/v1/chat/completions` (whole or streamed), `/health`, the
//! bearer-token check and the request-size limit.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use precept_data::Tokenizer;
use precept_remote::wire::{
    AssistantMessage, ChatChoice, ChatChunk, ChatCompletion, ChatRequest, ChoiceLogprobs, ChunkChoice, Delta,
    ModelCard, ModelList, Usage,
};
use subtle::ConstantTimeEq;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::api_error::ApiError;
use crate::engine::{Event, Job};
use crate::requests::{prepare, Limits, Prepared};

/// What every handler shares.
pub struct Shared {
    /// The model's tokenizer and chat template.
    pub tokenizer: Arc<Tokenizer>,
    /// What requests may ask for.
    pub limits: Limits,
    /// Required as `Authorization: Bearer …` when set.
    pub api_key: Option<String>,
    /// The generation thread's queue.
    pub jobs: Sender<Job>,
    /// Unix time the server started.
    pub created: u64,
}

type AppState = Arc<Shared>;

/// Completion ids: `chatcmpl-<n>`.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The routes over `shared`, with bodies limited to `max_request_bytes` and to `body_timeout`
/// to arrive.
pub fn router(shared: Shared, max_request_bytes: usize, body_timeout: Duration) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        .with_state(Arc::new(shared))
}

/// Unix time now.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn authorize(state: &Shared, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &state.api_key else { return Ok(()) };
    let given = headers.get(header::AUTHORIZATION).and_then(|v| bearer_token(v.as_bytes()));
    // Constant time, so the time a refusal takes says nothing about how much of the key matched.
    if given.is_some_and(|token| bool::from(token.ct_eq(key.as_bytes()))) {
        return Ok(());
    }
    Err(ApiError::status(StatusCode::UNAUTHORIZED, "missing or wrong API key (send `Authorization: Bearer <key>`)")
        .with_code("invalid_api_key"))
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is case-insensitive
/// (RFC 9110 §11.1).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let space = value.iter().position(|&byte| byte == b' ')?;
    let (scheme, rest) = value.split_at(space);
    let token = rest.trim_ascii();
    (scheme.eq_ignore_ascii_case(b"bearer") && !token.is_empty()).then_some(token)
}

async fn models(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(error) = authorize(&state, &headers) {
        return error.into_response();
    }
    let card = ModelCard {
        id: state.limits.model_name.clone(),
        object: "model".into(),
        created: state.created,
        owned_by: "precept".into(),
    };
    Json(ModelList { object: "list".into(), data: vec![card] }).into_response()
}

async fn chat(State(state): State<AppState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    match start(&state, &headers, body) {
        Ok((prepared, events, model)) if prepared.stream => stream(events, model, prepared.row.prompt.len()),
        Ok((prepared, events, model)) => {
            let logprobs = prepared.top_logprobs.is_some();
            whole(events, model, prepared.row.prompt.len(), logprobs).await.into_response()
        }
        Err(error) => error.into_response(),
    }
}

/// Checks the request and queues it; the events of its reply come back on the receiver.
fn start(
    state: &Shared,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Prepared, UnboundedReceiver<Event>, String), ApiError> {
    authorize(state, headers)?;
    let body = body.map_err(|rejection| ApiError::status(rejection.status(), rejection.body_text()))?;
    let request: ChatRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("body", format!("invalid request body: {e}")))?;
    let model = request.model.clone();
    let prepared = prepare(request, &state.tokenizer, &state.limits)?;
    let (events, receiver) = unbounded_channel();
    let job =
        Job { row: prepared.row.clone(), stop: prepared.stop.clone(), top_logprobs: prepared.top_logprobs, events };
    state
        .jobs
        .send(job)
        .map_err(|_| ApiError::status(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down"))?;
    Ok((prepared, receiver, model))
}

/// Waits for the whole reply.
async fn whole(
    mut events: UnboundedReceiver<Event>,
    model: String,
    prompt_tokens: usize,
    asked_logprobs: bool,
) -> Result<Json<ChatCompletion>, ApiError> {
    let mut text = String::new();
    let mut logprobs = Vec::new();
    while let Some(event) = events.recv().await {
        match event {
            Event::Token { text: fresh, logprob } => {
                text.push_str(&fresh);
                logprobs.extend(logprob);
            }
            Event::Done { text: rest, finish, completion_tokens } => {
                text.push_str(&rest);
                let choice = ChatChoice {
                    index: 0,
                    message: AssistantMessage { role: "assistant".into(), content: Some(text) },
                    finish_reason: Some(finish.into()),
                    logprobs: asked_logprobs.then_some(ChoiceLogprobs { content: Some(logprobs) }),
                };
                return Ok(Json(ChatCompletion {
                    id: completion_id(),
                    object: "chat.completion".into(),
                    created: unix_now(),
                    model,
                    choices: vec![choice],
                    usage: Some(usage(prompt_tokens, completion_tokens)),
                }));
            }
            Event::Failed(message) => return Err(ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, message)),
        }
    }
    Err(ApiError::status(StatusCode::SERVICE_UNAVAILABLE, "the server stopped before the reply was complete"))
}

/// Streams the reply as server-sent events: a role chunk, one chunk per token, a last chunk with
/// the finish reason and usage, then `[DONE]`.
fn stream(events: UnboundedReceiver<Event>, model: String, prompt_tokens: usize) -> Response {
    let chunks = Chunks { id: completion_id(), model, created: unix_now(), prompt_tokens };
    let first = chunks.event(Delta { role: Some("assistant".into()), content: None }, None, None, None);
    let state = (events, VecDeque::from([first]), false, chunks);
    let body = futures_util::stream::unfold(state, |(mut events, mut pending, mut over, chunks)| async move {
        loop {
            if let Some(next) = pending.pop_front() {
                return Some((Ok::<_, Infallible>(next), (events, pending, over, chunks)));
            }
            if over {
                return None;
            }
            match events.recv().await {
                Some(Event::Token { text, logprob }) => {
                    if !text.is_empty() || logprob.is_some() {
                        let logprobs = logprob.map(|l| ChoiceLogprobs { content: Some(vec![l]) });
                        pending.push_back(chunks.event(text_delta(text), None, logprobs, None));
                    }
                }
                Some(Event::Done { text, finish, completion_tokens }) => {
                    let usage = usage(chunks.prompt_tokens, completion_tokens);
                    pending.push_back(chunks.event(text_delta(text), Some(finish), None, Some(usage)));
                    pending.push_back(SseEvent::default().data("[DONE]"));
                    over = true;
                }
                Some(Event::Failed(message)) => {
                    let error = ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, message);
                    pending.push_back(SseEvent::default().data(error_json(&error)));
                    over = true;
                }
                None => over = true,
            }
        }
    });
    Sse::new(body).keep_alive(KeepAlive::default()).into_response()
}

/// The fixed parts of a streamed reply's chunks.
struct Chunks {
    id: String,
    model: String,
    created: u64,
    prompt_tokens: usize,
}

impl Chunks {
    fn event(
        &self,
        delta: Delta,
        finish: Option<&str>,
        logprobs: Option<ChoiceLogprobs>,
        usage: Option<Usage>,
    ) -> SseEvent {
        let chunk = ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice { index: 0, delta, finish_reason: finish.map(str::to_owned), logprobs }],
            usage,
        };
        // Serialising these plain structs cannot fail.
        SseEvent::default().data(serde_json::to_string(&chunk).unwrap_or_default())
    }
}

fn text_delta(text: String) -> Delta {
    Delta { role: None, content: (!text.is_empty()).then_some(text) }
}

fn error_json(error: &ApiError) -> String {
    let body = precept_remote::wire::ErrorBody {
        error: precept_remote::wire::ErrorDetail {
            message: error.message.clone(),
            kind: "server_error".into(),
            param: None,
            code: None,
        },
    };
    serde_json::to_string(&body).unwrap_or_default()
}

fn completion_id() -> String {
    format!("chatcmpl-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

fn usage(prompt_tokens: usize, completion_tokens: usize) -> Usage {
    Usage { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_the_token_is_what_follows() {
        assert_eq!(bearer_token(b"Bearer s3cret"), Some(&b"s3cret"[..]));
        assert_eq!(bearer_token(b"bearer s3cret"), Some(&b"s3cret"[..]));
        assert_eq!(bearer_token(b"BEARER   s3cret "), Some(&b"s3cret"[..]));
        assert_eq!(bearer_token(b"Basic s3cret"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearers3cret"), None);
    }
}
