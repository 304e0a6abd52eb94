//! [`RewardClient`]: rewards computed by a user's HTTP endpoint, in any language.
//!
//! Each item (a completion with its prompt, as JSON) is one `POST` of that object to the
//! endpoint's URL; the answer is a JSON number, or an object whose `reward` is one. Requests run
//! concurrently and are retried with backoff on timeouts, refused connections, 429 and 5xx.

use std::time::Duration;

use serde_json::Value;
use ureq::Agent;

use crate::error::{RemoteError, Result};
use crate::http::{agent, post_json};
use crate::pool::{run_all_items, Failure, Limits};

/// Where and how to reach a reward endpoint.
#[derive(Debug, Clone)]
pub struct RewardEndpoint {
    /// The URL every item is POSTed to (`http://` or `https://`).
    pub url: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub api_key: Option<String>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Limit on one request, connection to last byte.
    pub timeout: Duration,
    /// Attempts after the first on timeouts, refused connections, 429 and 5xx.
    pub retries: usize,
    /// Wait before the first retry (doubling after each).
    pub backoff: Duration,
}

/// A client of one reward endpoint.
pub struct RewardClient {
    endpoint: RewardEndpoint,
    agent: Agent,
}

impl RewardClient {
    /// A client for `endpoint`.
    ///
    /// # Errors
    /// [`RemoteError::InvalidEndpoint`] for a URL that is not `http://` or `https://`.
    pub fn new(endpoint: RewardEndpoint) -> Result<Self> {
        let url = endpoint.url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(RemoteError::InvalidEndpoint { url: endpoint.url.clone() });
        }
        let agent = agent(endpoint.timeout, endpoint.concurrency);
        Ok(Self { endpoint, agent })
    }

    /// The endpoint's URL.
    pub fn url(&self) -> &str {
        &self.endpoint.url
    }

    /// The reward of each item, in order.
    ///
    /// # Errors
    /// [`RemoteError::Item`] naming the first item that failed: its endpoint did not answer
    /// within the retries ([`RemoteError::Unreachable`]), refused it ([`RemoteError::Rejected`])
    /// or answered something other than a finite number ([`RemoteError::NotAReward`]).
    pub fn score(&self, items: &[Value]) -> Result<Vec<f64>> {
        let limits = Limits {
            endpoints: 1,
            concurrency: self.endpoint.concurrency,
            retries: self.endpoint.retries,
            backoff: self.endpoint.backoff,
        };
        run_all_items(items.len(), limits, |item, _| self.post(&items[item]))
            .map_err(|(index, error)| RemoteError::Item { index, error: Box::new(error) })
    }

    /// One attempt at one item.
    fn post(&self, item: &Value) -> Result<f64, Failure> {
        let url = self.endpoint.url.trim();
        let body = post_json(&self.agent, url, self.endpoint.api_key.as_deref(), item)?;
        parse_reward(&body).ok_or_else(|| {
            Failure::Fatal(RemoteError::NotAReward { url: url.to_owned(), body: body.chars().take(200).collect() })
        })
    }
}

/// The reward in an answer: a finite JSON number, or an object whose `reward` is one.
fn parse_reward(body: &str) -> Option<f64> {
    let value: Value = serde_json::from_str(body).ok()?;
    let number = match &value {
        Value::Object(fields) => fields.get("reward")?,
        other => other,
    };
    number.as_f64().filter(|reward| reward.is_finite())
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    use serde_json::json;

    use super::*;

    /// The request bodies and `Authorization` headers a test server received.
    type Seen = Arc<Mutex<Vec<(Value, String)>>>;

    /// A loopback server answering every request with `answer(body)` (a status and a body),
    /// recording the bodies and `Authorization` headers it receives; returns its URL.
    fn serve(answer: impl Fn(&Value) -> (u16, String) + Send + 'static) -> (String, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/reward", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut length, mut auth) = (0, String::new());
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(value) = lower.strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap();
                    }
                    if lower.starts_with("authorization:") {
                        auth = line["authorization:".len()..].trim().to_owned();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let body: Value = serde_json::from_slice(&body).unwrap();
                let (status, text) = answer(&body);
                log.lock().unwrap().push((body, auth));
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        (url, seen)
    }

    fn client(url: &str, retries: usize) -> RewardClient {
        RewardClient::new(RewardEndpoint {
            url: url.into(),
            api_key: Some("sekret".into()),
            concurrency: 2,
            timeout: Duration::from_secs(5),
            retries,
            backoff: Duration::from_millis(1),
        })
        .unwrap()
    }

    #[test]
    fn each_item_is_posted_as_is_and_numbers_or_reward_objects_come_back_in_order() {
        let (url, seen) = serve(|body| {
            let n = body["n"].as_f64().unwrap();
            let text = if n > 1.0 { json!({"reward": n * 10.0}) } else { json!(n / 2.0) };
            (200, text.to_string())
        });
        let items: Vec<Value> = (0..5).map(|n| json!({"n": n, "completion": "c"})).collect();
        let rewards = client(&url, 0).score(&items).unwrap();
        assert_eq!(rewards, [0.0, 0.5, 20.0, 30.0, 40.0]);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 5);
        assert!(seen.iter().all(|(body, auth)| body["completion"] == "c" && auth == "Bearer sekret"), "{seen:?}");
    }

    #[test]
    fn an_answer_that_is_not_a_number_names_the_url_and_the_item() {
        let (url, _) = serve(|body| match body["n"].as_u64() {
            Some(2) => (200, "{\"score\": 1}".into()),
            _ => (200, "1".into()),
        });
        let items: Vec<Value> = (0..4).map(|n| json!({"n": n})).collect();
        let error = client(&url, 0).score(&items).unwrap_err().to_string();
        assert_eq!(
            error,
            format!("completion 2: {url}: the answer is not a number or an object with a numeric `reward`: {{\"score\": 1}}")
        );
        for body in ["\"high\"", "NaN", "null", "{\"reward\": \"1\"}"] {
            assert_eq!(parse_reward(body), None, "{body}");
        }
    }

    #[test]
    fn server_errors_are_retried_then_name_the_url_the_item_and_the_attempts() {
        let (url, seen) = serve(|_| (503, "overloaded".into()));
        let error = client(&url, 2).score(&[json!({"n": 0})]).unwrap_err().to_string();
        assert_eq!(error, format!("completion 0: {url}: no answer after 3 attempts; last: HTTP 503: overloaded"));
        assert_eq!(seen.lock().unwrap().len(), 3);
        let (url, _) =
            serve(|_| (400, "{\"error\": {\"message\": \"no prompt\", \"type\": \"invalid_request_error\"}}".into()));
        let error = client(&url, 2).score(&[json!({})]).unwrap_err().to_string();
        assert_eq!(error, format!("completion 0: {url}: the server answered 400: no prompt"));
    }

    #[test]
    fn a_silent_endpoint_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/reward", listener.local_addr().unwrap());
        // Accepts connections and never answers.
        let _held = std::thread::spawn(move || {
            let streams: Vec<_> = listener.incoming().take(2).collect();
            std::thread::sleep(Duration::from_secs(5));
            drop(streams);
        });
        let client = RewardClient::new(RewardEndpoint {
            timeout: Duration::from_millis(300),
            ..client(&url, 0).endpoint.clone()
        })
        .unwrap();
        let error = client.score(&[json!({})]).unwrap_err().to_string();
        assert!(error.starts_with(&format!("completion 0: {url}: no answer after 1 attempts")), "{error}");
        assert!(RewardClient::new(RewardEndpoint { url: "localhost:80".into(), ..client.endpoint.clone() }).is_err());
    }
}
