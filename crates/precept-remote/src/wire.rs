//! The OpenAI chat-completions wire format, as far as precept speaks it (client and server).
//!
//! Request fields precept does not use are accepted and ignored, so existing OpenAI clients
//! (garak, promptfoo, PyRIT, the `openai` package) can talk to `precept serve`.

use precept_data::{Message, Role};
use serde::{Deserialize, Serialize};

/// `POST /v1/chat/completions` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Served model name.
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<WireMessage>,
    /// Most new tokens (older name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<usize>,
    /// Most new tokens (newer name; wins over `max_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<usize>,
    /// Softmax temperature; `0` is greedy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Seed of the sampler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Strings that end the reply (not included in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopStrings>,
    /// Answer as server-sent events.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    /// Return the log-probability of each generated token.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logprobs: bool,
    /// Also return the most likely alternatives at each position (0–20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<usize>,
    /// Replies per request (only 1 is served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<usize>,
}

impl ChatRequest {
    /// The token limit the request asks for, if any.
    pub fn token_limit(&self) -> Option<usize> {
        self.max_completion_tokens.or(self.max_tokens)
    }
}

/// `stop`: one string or a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StopStrings {
    /// A single stop string.
    One(String),
    /// Several stop strings.
    Many(Vec<String>),
}

impl StopStrings {
    /// The stop strings as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(stop) => vec![stop],
            Self::Many(stops) => stops,
        }
    }
}

/// One message on the wire; `content` may be a string or a list of text parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireMessage {
    /// `system`, `user` or `assistant` (`developer` is read as `system`).
    pub role: String,
    /// The text.
    pub content: Content,
}

impl From<&Message> for WireMessage {
    fn from(message: &Message) -> Self {
        Self { role: message.role.as_str().to_owned(), content: Content::Text(message.content.clone()) }
    }
}

impl WireMessage {
    /// The message as precept's [`Message`]; `None` for a role precept does not know.
    pub fn to_message(&self) -> Option<Message> {
        let role = match self.role.as_str() {
            "developer" => Role::System,
            role => role.parse().ok()?,
        };
        Some(Message::new(role, self.content.text()))
    }
}

/// Message content: a string, or parts of which the `text` ones are joined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Content parts (`{"type": "text", "text": "…"}`).
    Parts(Vec<ContentPart>),
}

impl Content {
    /// The text of the content.
    pub fn text(&self) -> String {
        match self {
            Self::Text(text) => text.clone(),
            Self::Parts(parts) => parts.iter().filter_map(|p| p.text.as_deref()).collect(),
        }
    }
}

/// One content part; only text parts carry text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentPart {
    /// Part type (`text`, `image_url`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// `POST /v1/chat/completions` answer (not streamed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    /// Completion id.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix time of creation.
    pub created: u64,
    /// Served model name.
    pub model: String,
    /// One choice per reply.
    pub choices: Vec<ChatChoice>,
    /// Token counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// One reply of a [`ChatCompletion`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChoice {
    /// Position among the choices.
    pub index: usize,
    /// The assistant's message.
    pub message: AssistantMessage,
    /// `stop` (end of turn or a stop string) or `length`.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Log-probabilities, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<ChoiceLogprobs>,
}

/// The assistant's message in a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: String,
    /// The reply text (servers send `null` for tool calls).
    #[serde(default)]
    pub content: Option<String>,
}

/// Log-probabilities of a reply, one entry per generated token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChoiceLogprobs {
    /// The generated tokens.
    #[serde(default)]
    pub content: Option<Vec<TokenLogprob>>,
}

/// One generated token with its log-probability and the top alternatives at its position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// The token's text.
    pub token: String,
    /// `log p(token)`.
    pub logprob: f64,
    /// The token's UTF-8 bytes (a token may hold part of a character).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Vec<u8>>,
    /// The most likely tokens at this position, most likely first.
    #[serde(default)]
    pub top_logprobs: Vec<TopLogprob>,
}

/// An alternative token at one position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    /// The token's text.
    pub token: String,
    /// `log p(token)`.
    pub logprob: f64,
    /// The token's UTF-8 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Vec<u8>>,
}

/// Token counts of a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the rendered prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Their sum.
    pub total_tokens: usize,
}

/// One server-sent event of a streamed reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChunk {
    /// Completion id (the same in every chunk).
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    /// Unix time of creation.
    pub created: u64,
    /// Served model name.
    pub model: String,
    /// The new text.
    pub choices: Vec<ChunkChoice>,
    /// Token counts, on the last chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// The new part of a streamed reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// Position among the choices.
    pub index: usize,
    /// Text (and, first, the role) added by this chunk.
    pub delta: Delta,
    /// Set on the last chunk.
    pub finish_reason: Option<String>,
    /// Log-probabilities of this chunk's tokens, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<ChoiceLogprobs>,
}

/// What a chunk adds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// `assistant` on the first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// New text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// `GET /v1/models` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The served models.
    pub data: Vec<ModelCard>,
}

/// One served model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// The name requests use.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix time the server started.
    pub created: u64,
    /// Who serves it.
    pub owned_by: String,
}

/// An OpenAI-style error body: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Human-readable explanation.
    pub message: String,
    /// Error class (`invalid_request_error`, `authentication_error`, `server_error`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault.
    #[serde(default)]
    pub param: Option<String>,
    /// Machine-readable code (`model_not_found`, `context_length_exceeded`, …).
    #[serde(default)]
    pub code: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_from_openai_clients_parse_with_unknown_fields_and_content_parts() {
        let body = r#"{"model":"m","messages":[{"role":"developer","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"hi "},{"type":"text","text":"there"}]}],
            "stop":"END","presence_penalty":0.1,"user":"x","max_completion_tokens":7,"max_tokens":3}"#;
        let request: ChatRequest = serde_json::from_str(body).unwrap();
        assert_eq!(request.token_limit(), Some(7));
        assert_eq!(request.stop.clone().map(StopStrings::into_vec), Some(vec!["END".to_owned()]));
        let messages: Vec<Message> = request.messages.iter().map(|m| m.to_message().unwrap()).collect();
        assert_eq!(messages, [Message::system("be brief"), Message::user("hi there")]);
        let unknown = WireMessage { role: "tool".into(), content: Content::Text("x".into()) };
        assert_eq!(unknown.to_message(), None);
    }

    #[test]
    fn requests_leave_out_unset_fields() {
        let request =
            ChatRequest { model: "m".into(), messages: vec![(&Message::user("hi")).into()], ..Default::default() };
        let json = serde_json::to_string(&request).unwrap();
        assert_eq!(json, r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
    }
}
