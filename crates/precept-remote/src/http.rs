//! One attempt at one POST, sorted into what a retry can fix and what it cannot.

use std::time::Duration;

use serde::Serialize;
use ureq::Agent;

use crate::error::RemoteError;
use crate::pool::Failure;
use crate::wire::ErrorBody;

/// An HTTP client whose requests each end after `timeout`, keeping up to `connections` idle
/// connections per host, and which hands error statuses back as answers.
pub fn agent(timeout: Duration, connections: usize) -> Agent {
    Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_idle_connections_per_host(connections.max(1))
        .build()
        .into()
}

/// POSTs `body` as JSON to `url` (with `Authorization: Bearer api_key` when given) and returns
/// the answer's text on a 2xx status.
///
/// # Errors
/// [`Failure::Transient`] for a failed connection, a timeout, 429 and 5xx;
/// [`Failure::Fatal`] ([`RemoteError::Rejected`]) for other 4xx answers.
pub fn post_json(agent: &Agent, url: &str, api_key: Option<&str>, body: &impl Serialize) -> Result<String, Failure> {
    let mut call = agent.post(url);
    if let Some(key) = api_key {
        call = call.header("Authorization", &format!("Bearer {key}"));
    }
    let mut response = call.send_json(body).map_err(|e| Failure::Transient(url.to_owned(), e.to_string()))?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().map_err(|e| Failure::Transient(url.to_owned(), e.to_string()))?;
    if status == 429 || status >= 500 {
        return Err(Failure::Transient(url.to_owned(), format!("HTTP {status}: {}", error_message(&text))));
    }
    if status >= 400 {
        let message = error_message(&text);
        return Err(Failure::Fatal(RemoteError::Rejected { url: url.to_owned(), status, message }));
    }
    Ok(text)
}

/// The `error.message` of an OpenAI-style error body, else the body itself (shortened).
pub fn error_message(body: &str) -> String {
    match serde_json::from_str::<ErrorBody>(body) {
        Ok(parsed) => parsed.error.message,
        Err(_) => body.chars().take(300).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_give_their_message_and_other_bodies_themselves() {
        let body = r#"{"error":{"message":"model `x` not found","type":"invalid_request_error","param":"model","code":"model_not_found"}}"#;
        assert_eq!(error_message(body), "model `x` not found");
        assert_eq!(error_message("Bad Gateway"), "Bad Gateway");
    }
}
