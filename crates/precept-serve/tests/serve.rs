//! `precept serve`'s server on loopback with a tiny random model: replies and option
//! probabilities through the remote client equal the local generator's, streaming adds up to the
//! whole reply, bad requests get OpenAI-style 4xx bodies, and shutdown finishes the requests in
//! flight.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::thread::JoinHandle;

use burn::backend::Flex;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use precept_data::{Generate, GenerateSettings, Message, Tokenizer};
use precept_model::{LlamaConfig, LlamaForCausalLM, LocalGenerator};
use precept_remote::{RemoteConfig, RemoteGenerator};
use precept_serve::{serve, ServeError, ServeOptions};
use serde_json::{json, Value};
use tokio::sync::oneshot;

const TOKENIZER: &str = r#"{"version":"1.0","truncation":null,"padding":null,
  "added_tokens":[{"id":0,"content":"<end>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
  "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
  "model":{"type":"WordLevel","vocab":{"<end>":0,"user":1,"assistant":2,"yes":3,"no":4,"maybe":5,"is":6,"it":7,"?":8,"[UNK]":9},"unk_token":"[UNK]"}}"#;
const TOKENIZER_CONFIG: &str = r#"{"chat_template":"{% for m in messages %}{{ m.role }} {{ m.content }} <end> {% endfor %}{% if add_generation_prompt %}assistant {% endif %}","eos_token":"<end>"}"#;

fn tokenizer() -> Tokenizer {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), TOKENIZER).unwrap();
    std::fs::write(dir.path().join("tokenizer_config.json"), TOKENIZER_CONFIG).unwrap();
    Tokenizer::from_dir(dir.path()).unwrap()
}

fn model() -> LlamaForCausalLM<Flex> {
    // burn's random generator is global: seed and draw under one lock.
    static SEEDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = SEEDING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    <Flex as Backend>::seed(&Default::default(), 11);
    let model = LlamaConfig { vocab_size: 10, ..LlamaConfig::tiny() }.init(&Default::default());
    // Parameters are initialised lazily: draw them now, under the lock.
    model.visit(&mut Materialise);
    model
}

struct Materialise;

impl ModuleVisitor<Flex> for Materialise {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Flex, D>>) {
        let _ = param.val();
    }
}

/// A server on a free loopback port; dropping `stop` (or sending on it) shuts it down.
struct Server {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), ServeError>>>,
}

impl Server {
    fn start(model: LlamaForCausalLM<Flex>, options: ServeOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            serve(model, tokenizer(), options, listener, async move {
                let _ = stopped.await;
            })
        });
        Self { url, stop: Some(stop), thread: Some(thread) }
    }

    fn shut_down(mut self) -> Result<(), ServeError> {
        drop(self.stop.take());
        self.thread.take().unwrap().join().unwrap()
    }

    fn post(&self, body: &str, key: Option<&str>) -> (u16, String) {
        self.post_authorized(body, key.map(|key| format!("Bearer {key}")).as_deref())
    }

    /// [`Server::post`] with `authorization` as the whole `Authorization` header.
    fn post_authorized(&self, body: &str, authorization: Option<&str>) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut request =
            agent.post(format!("{}/v1/chat/completions", self.url)).header("Content-Type", "application/json");
        if let Some(authorization) = authorization {
            request = request.header("Authorization", authorization);
        }
        let mut response = request.send(body).unwrap();
        (response.status().as_u16(), response.body_mut().read_to_string().unwrap())
    }
}

fn client(server: &Server) -> RemoteGenerator {
    let config = RemoteConfig { concurrency: 4, ..RemoteConfig::new(vec![server.url.clone()], "tiny") };
    RemoteGenerator::new(config).unwrap()
}

fn conversations() -> Vec<Vec<Message>> {
    ["is it ?", "yes", "no no", "maybe it is", "it", "? ? yes"].iter().map(|q| vec![Message::user(*q)]).collect()
}

#[test]
fn remote_replies_and_option_probabilities_equal_the_local_generators() {
    let server = Server::start(model(), ServeOptions::new("tiny"));
    let mut remote = client(&server);
    let mut local = LocalGenerator::new(model(), tokenizer());
    let settings = GenerateSettings { max_new_tokens: 6, ..GenerateSettings::default() };
    let conversations = conversations();
    let got = remote.generate(&conversations, &settings).unwrap();
    let expected = local.generate(&conversations, &settings).unwrap();
    for (got, expected) in got.iter().zip(&expected) {
        assert_eq!(got.text, expected.text);
        assert_eq!(got.finish, expected.finish);
    }
    // Single-token options: the first position's top tokens hold all of each option's mass.
    let options: Vec<String> = ["yes", "no", "maybe"].iter().map(|o| o.to_string()).collect();
    let got = remote.option_probabilities(&conversations, &options).unwrap();
    let expected = local.option_probabilities(&conversations, &options).unwrap();
    for (got, expected) in got.iter().zip(&expected) {
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-5, "{got:?} vs {expected:?}");
        }
    }
    server.shut_down().unwrap();
}

#[test]
fn a_streamed_reply_adds_up_to_the_whole_reply() {
    let server = Server::start(model(), ServeOptions::new("tiny"));
    let request = json!({"model": "tiny", "messages": [{"role": "user", "content": "is it ?"}],
        "max_tokens": 6, "temperature": 0, "logprobs": true, "top_logprobs": 3});
    let (status, body) = server.post(&request.to_string(), None);
    assert_eq!(status, 200, "{body}");
    let whole: Value = serde_json::from_str(&body).unwrap();
    let content = whole["choices"][0]["message"]["content"].as_str().unwrap().to_owned();
    let tokens = whole["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert!(tokens.iter().all(|t| t["top_logprobs"].as_array().unwrap().len() == 3));
    let mut request = request;
    request["stream"] = json!(true);
    let (status, body) = server.post(&request.to_string(), None);
    assert_eq!(status, 200, "{body}");
    let data: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(data.last(), Some(&"[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, content);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], whole["choices"][0]["finish_reason"]);
    assert_eq!(last["usage"], whole["usage"]);
    server.shut_down().unwrap();
}

#[test]
fn bad_requests_get_openai_style_errors() {
    let options = ServeOptions { api_key: Some("s3cret".into()), max_request_bytes: 4096, ..ServeOptions::new("tiny") };
    let server = Server::start(model(), options);
    let ok = |messages: Value, extra: Value| {
        let mut body = json!({"model": "tiny", "messages": messages});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body.to_string()
    };
    let hi = json!([{"role": "user", "content": "is it ?"}]);
    let error = |(status, body): (u16, String)| -> (u16, Value) {
        (status, serde_json::from_str::<Value>(&body).unwrap()["error"].clone())
    };
    let (status, e) = error(server.post(&ok(hi.clone(), json!({})), None));
    assert_eq!(
        (status, e["type"].as_str(), e["code"].as_str()),
        (401, Some("authentication_error"), Some("invalid_api_key"))
    );
    let key = Some("s3cret");
    let (status, e) = error(server.post("{\"model\": ", key));
    assert_eq!((status, e["type"].as_str()), (400, Some("invalid_request_error")), "{e}");
    assert!(e["message"].as_str().unwrap().starts_with("invalid request body"), "{e}");
    let (status, e) = error(server.post(&json!({"model": "tiny"}).to_string(), key));
    assert!(status == 400 && e["message"].as_str().unwrap().contains("messages"), "{e}");
    let (status, e) = error(server.post(&json!({"model": "gpt-9", "messages": hi}).to_string(), key));
    assert_eq!((status, e["code"].as_str(), e["param"].as_str()), (404, Some("model_not_found"), Some("model")));
    let (status, e) = error(server.post(&ok(hi.clone(), json!({"max_tokens": 126})), key));
    assert_eq!((status, e["code"].as_str()), (400, Some("context_length_exceeded")), "{e}");
    let (status, e) = error(server.post(&ok(hi.clone(), json!({"max_tokens": 5000})), key));
    assert_eq!((status, e["param"].as_str()), (400, Some("max_tokens")), "{e}");
    let (status, e) = error(server.post(&ok(json!([{"role": "tool", "content": "x"}]), json!({})), key));
    assert!(status == 400 && e["message"].as_str().unwrap().contains("unknown role `tool`"), "{e}");
    let (status, e) = error(server.post(&ok(hi.clone(), json!({"top_logprobs": 50, "logprobs": true})), key));
    assert_eq!((status, e["param"].as_str()), (400, Some("top_logprobs")));
    let long = json!([{"role": "user", "content": "is ".repeat(3000)}]);
    let (status, body) = server.post(&ok(long, json!({})), key);
    assert_eq!(status, 413, "{body}");
    let (status, body) = server.post(&ok(hi, json!({"max_tokens": 2})), key);
    assert_eq!(status, 200, "{body}");
    server.shut_down().unwrap();
}

#[test]
fn shutdown_finishes_the_request_in_flight() {
    let server = Server::start(model(), ServeOptions::new("tiny"));
    let body = json!({
        "model": "tiny",
        "messages": [{"role": "user", "content": "is it ?"}],
        "max_tokens": 100,
        "temperature": 1.0,
        "stream": true,
    });
    let response = ureq::post(format!("{}/v1/chat/completions", server.url)).header("Content-Type", "application/json");
    let response = response.send(body.to_string()).unwrap();
    let mut reader = BufReader::new(response.into_body().into_reader());
    // The first event shows the request is in flight; only then does the server stop.
    let mut first = String::new();
    while !first.starts_with("data:") {
        first.clear();
        assert!(reader.read_line(&mut first).unwrap() > 0, "the stream ended before its first event");
    }
    let shutdown = std::thread::spawn(move || server.shut_down());
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert!(rest.trim_end().ends_with("data: [DONE]"), "the stream was cut: {rest}");
    assert!(rest.contains("finish_reason\":\""), "{rest}");
    shutdown.join().unwrap().unwrap();
}

#[test]
fn a_reachable_address_without_a_key_is_refused() {
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let err = serve(model(), tokenizer(), ServeOptions::new("tiny"), listener, async {}).unwrap_err();
    assert!(matches!(err, ServeError::KeyRequired { .. }), "{err}");
}

#[test]
fn a_lowercase_bearer_scheme_is_accepted_and_a_wrong_key_is_not() {
    let server = Server::start(model(), ServeOptions { api_key: Some("s3cret".into()), ..ServeOptions::new("tiny") });
    let body = json!({"model": "tiny", "messages": [{"role": "user", "content": "is it ?"}], "max_tokens": 2});
    let (status, reply) = server.post_authorized(&body.to_string(), Some("bearer s3cret"));
    assert_eq!(status, 200, "{reply}");
    let (status, _) = server.post_authorized(&body.to_string(), Some("bearer s3cre"));
    assert_eq!(status, 401);
    let (status, _) = server.post_authorized(&body.to_string(), Some("Basic s3cret"));
    assert_eq!(status, 401);
    server.shut_down().unwrap();
}

/// Opens a connection to `server`, sends nothing, and returns how long until the server closed it.
fn silent_connection_lifetime(url: &str) -> std::time::Duration {
    let address = url.trim_start_matches("http://");
    let mut socket = std::net::TcpStream::connect(address).unwrap();
    socket.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let opened = std::time::Instant::now();
    let mut buffer = Vec::new();
    // Whatever the server says before closing (perhaps nothing), the read ends at its close.
    let _ = socket.read_to_end(&mut buffer);
    opened.elapsed()
}

#[test]
fn a_client_that_opens_a_socket_and_sends_nothing_is_closed_after_the_header_timeout() {
    let options = ServeOptions { header_timeout: std::time::Duration::from_secs(1), ..ServeOptions::new("tiny") };
    let server = Server::start(model(), options);
    let lifetime = silent_connection_lifetime(&server.url);
    assert!(lifetime >= std::time::Duration::from_millis(900), "closed after {lifetime:?}");
    assert!(lifetime < std::time::Duration::from_secs(10), "still open after {lifetime:?}");
    server.shut_down().unwrap();
}

#[test]
fn past_max_connections_a_client_waits_until_an_idle_one_times_out() {
    let options = ServeOptions {
        header_timeout: std::time::Duration::from_secs(2),
        max_connections: 1,
        ..ServeOptions::new("tiny")
    };
    let server = Server::start(model(), options);
    let address = server.url.trim_start_matches("http://").to_owned();
    let idle = std::net::TcpStream::connect(&address).unwrap();
    // Give the server a moment to accept the idle connection and take the only slot.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let asked = std::time::Instant::now();
    let response = ureq::get(format!("{}/health", server.url)).call().unwrap().into_body().read_to_string().unwrap();
    assert_eq!(response, "ok");
    let waited = asked.elapsed();
    assert!(waited >= std::time::Duration::from_millis(1200), "answered after {waited:?} beside an idle connection");
    drop(idle);
    server.shut_down().unwrap();
}
