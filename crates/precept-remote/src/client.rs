//! [`RemoteGenerator`]: the [`Generate`] trait served by OpenAI-compatible servers.

use std::time::Duration;

use precept_data::{normalise_log_probabilities, FinishReason, Generate, GenerateSettings, Message, Reply};
use ureq::Agent;

use crate::error::{RemoteError, Result};
use crate::http::{agent, post_json};
use crate::options::option_log_probs;
use crate::pool::{run_all, Failure, Limits};
use crate::wire::{ChatCompletion, ChatRequest, StopStrings, TokenLogprob};

/// Tokens generated when reading option probabilities: enough to walk past a prefix the options
/// share, such as `(` in `(A)` and `(B)`.
const OPTION_TOKENS: usize = 4;
/// Alternatives asked for per position (the OpenAI API's maximum).
const TOP_LOGPROBS: usize = 20;

/// Where and how to reach the servers.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// Base URLs (`http://host:8000` or `http://host:8000/v1`); requests go to whichever has a
    /// free slot.
    pub endpoints: Vec<String>,
    /// Model name sent with each request.
    pub model: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub api_key: Option<String>,
    /// Requests in flight per endpoint.
    pub concurrency: usize,
    /// Limit on one request, connection to last byte.
    pub timeout: Duration,
    /// Attempts after the first on timeouts, refused connections, 429 and 5xx.
    pub retries: usize,
    /// Wait before the first retry (doubling after each).
    pub backoff: Duration,
}

impl RemoteConfig {
    /// Settings for `endpoints` and `model` with the defaults: 8 requests in flight per endpoint,
    /// 10-minute timeout, 5 retries from 1 s.
    pub fn new(endpoints: Vec<String>, model: impl Into<String>) -> Self {
        Self {
            endpoints,
            model: model.into(),
            api_key: None,
            concurrency: 8,
            timeout: Duration::from_secs(600),
            retries: 5,
            backoff: Duration::from_secs(1),
        }
    }
}

/// Replies and option probabilities from OpenAI-compatible `/v1/chat/completions` servers
/// (vLLM, TGI, llama.cpp server, `precept serve`).
///
/// Each conversation of a batch is one request; requests run concurrently across endpoints.
/// Servers do not say whether `finish_reason: "stop"` was the end of the turn or a stop string,
/// so it reads as [`FinishReason::Eos`]; replies carry no token ids.
pub struct RemoteGenerator {
    config: RemoteConfig,
    urls: Vec<String>,
    agent: Agent,
}

impl RemoteGenerator {
    /// A client for `config`'s endpoints.
    ///
    /// # Errors
    /// [`RemoteError::NoEndpoints`], or [`RemoteError::InvalidEndpoint`] for a URL that is not
    /// `http://` or `https://`.
    pub fn new(config: RemoteConfig) -> Result<Self> {
        if config.endpoints.is_empty() {
            return Err(RemoteError::NoEndpoints);
        }
        let urls = config.endpoints.iter().map(|url| chat_url(url)).collect::<Result<_>>()?;
        let agent = agent(config.timeout, config.concurrency);
        Ok(Self { config, urls, agent })
    }

    /// The model name requests carry.
    pub fn model(&self) -> &str {
        &self.config.model
    }

    /// Sends every request and returns the completions in order.
    fn complete_all(&self, requests: &[ChatRequest]) -> Result<Vec<(String, ChatCompletion)>> {
        let limits = Limits {
            endpoints: self.urls.len(),
            concurrency: self.config.concurrency,
            retries: self.config.retries,
            backoff: self.config.backoff,
        };
        run_all(requests.len(), limits, |item, endpoint| {
            let url = &self.urls[endpoint];
            self.post(url, &requests[item]).map(|completion| (url.clone(), completion))
        })
    }

    /// One attempt at one request.
    fn post(&self, url: &str, request: &ChatRequest) -> Result<ChatCompletion, Failure> {
        let body = post_json(&self.agent, url, self.config.api_key.as_deref(), request)?;
        serde_json::from_str(&body)
            .map_err(|e| Failure::Fatal(RemoteError::Malformed { url: url.to_owned(), message: e.to_string() }))
    }

    fn request(&self, conversation: &[Message], settings: &GenerateSettings, seed: u64) -> ChatRequest {
        ChatRequest {
            model: self.config.model.clone(),
            messages: conversation.iter().map(Into::into).collect(),
            max_tokens: Some(settings.max_new_tokens),
            temperature: Some(settings.temperature),
            top_p: Some(settings.top_p),
            seed: Some(seed),
            stop: (!settings.stop.is_empty()).then(|| StopStrings::Many(settings.stop.clone())),
            ..ChatRequest::default()
        }
    }
}

impl RemoteGenerator {
    /// One request per conversation, each with its own seed (`seed + index`), so that the same
    /// conversation twice in one call (several samples of one prompt) draws different replies, as
    /// it does from a local model.
    fn sampling_requests(&self, conversations: &[Vec<Message>], settings: &GenerateSettings) -> Vec<ChatRequest> {
        conversations
            .iter()
            .enumerate()
            .map(|(i, c)| self.request(c, settings, settings.seed.wrapping_add(i as u64)))
            .collect()
    }
}

impl Generate for RemoteGenerator {
    type Error = RemoteError;

    fn generate(&mut self, conversations: &[Vec<Message>], settings: &GenerateSettings) -> Result<Vec<Reply>> {
        self.complete_all(&self.sampling_requests(conversations, settings))?
            .into_iter()
            .map(|(url, completion)| {
                let choice = completion
                    .choices
                    .into_iter()
                    .next()
                    .ok_or_else(|| RemoteError::Malformed { url: url.clone(), message: "no choices".into() })?;
                let finish = match choice.finish_reason.as_deref() {
                    Some("length") => FinishReason::Length,
                    _ => FinishReason::Eos,
                };
                let text = cut_at_stop(choice.message.content.unwrap_or_default(), &settings.stop);
                Ok(Reply { text, token_ids: Vec::new(), finish })
            })
            .collect()
    }

    fn option_probabilities(&mut self, conversations: &[Vec<Message>], options: &[String]) -> Result<Vec<Vec<f64>>> {
        let settings = GenerateSettings { max_new_tokens: OPTION_TOKENS, ..GenerateSettings::default() };
        let requests: Vec<ChatRequest> = conversations
            .iter()
            .map(|c| ChatRequest {
                logprobs: true,
                top_logprobs: Some(TOP_LOGPROBS),
                ..self.request(c, &settings, settings.seed)
            })
            .collect();
        self.complete_all(&requests)?
            .into_iter()
            .map(|(url, completion)| {
                let steps = token_logprobs(completion).filter(|steps| steps.iter().any(|s| !s.top_logprobs.is_empty()));
                let steps = steps.ok_or_else(|| RemoteError::NoLogprobs { url, model: self.config.model.clone() })?;
                Ok(normalise_log_probabilities(&option_log_probs(&steps, options)))
            })
            .collect()
    }
}

/// The per-token log-probabilities of the first choice, if the server sent any.
fn token_logprobs(completion: ChatCompletion) -> Option<Vec<TokenLogprob>> {
    completion.choices.into_iter().next()?.logprobs?.content.filter(|steps| !steps.is_empty())
}

/// `…/v1/chat/completions` for a base URL given with or without `/v1`.
fn chat_url(base: &str) -> Result<String> {
    let trimmed = base.trim().trim_end_matches('/');
    if !(trimmed.starts_with("http://") || trimmed.starts_with("https://")) {
        return Err(RemoteError::InvalidEndpoint { url: base.to_owned() });
    }
    let root = trimmed.strip_suffix("/chat/completions").unwrap_or(trimmed);
    Ok(if root.ends_with("/v1") { format!("{root}/chat/completions") } else { format!("{root}/v1/chat/completions") })
}

/// `text` up to the first stop string (servers cut there already; this makes sure).
fn cut_at_stop(mut text: String, stop: &[String]) -> String {
    if let Some(at) = stop.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min() {
        text.truncate(at);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_with_or_without_v1_reach_chat_completions() {
        for base in ["http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/chat/completions"] {
            assert_eq!(chat_url(base).unwrap(), "http://h:8000/v1/chat/completions", "{base}");
        }
        let err = chat_url("h:8000").unwrap_err();
        assert_eq!(err.to_string(), "remote endpoint `h:8000` is not an http:// or https:// URL");
    }

    #[test]
    fn replies_are_cut_at_the_first_stop_string() {
        let stop = ["END".to_owned(), "##".to_owned()];
        assert_eq!(cut_at_stop("a ## b END".into(), &stop), "a ");
        assert_eq!(cut_at_stop("plain".into(), &stop), "plain");
    }

    #[test]
    fn samples_of_one_conversation_in_one_call_get_their_own_seeds() {
        let client = RemoteGenerator::new(RemoteConfig::new(vec!["http://h:8000".into()], "m")).unwrap();
        let conversation = vec![Message::user("hi")];
        let settings = GenerateSettings { seed: 7, ..GenerateSettings::default() };
        let requests = client.sampling_requests(&[conversation.clone(), conversation], &settings);
        let seeds: Vec<Option<u64>> = requests.iter().map(|r| r.seed).collect();
        assert_eq!(seeds, [Some(7), Some(8)]);
    }

    #[test]
    fn an_unreachable_endpoint_is_retried_then_named() {
        // Port 9 (discard) on loopback refuses connections.
        let config = RemoteConfig {
            retries: 1,
            backoff: Duration::from_millis(1),
            ..RemoteConfig::new(vec!["http://127.0.0.1:9".into()], "m")
        };
        let mut client = RemoteGenerator::new(config).unwrap();
        let err = client.generate(&[vec![Message::user("hi")]], &GenerateSettings::default()).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("http://127.0.0.1:9/v1/chat/completions: no answer after 2 attempts"), "{text}");
    }
}
