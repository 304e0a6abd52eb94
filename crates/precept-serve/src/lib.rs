//! `precept serve`: an OpenAI-compatible chat server for a local model, so that red-team tools
//! (garak, promptfoo, PyRIT) and precept's own remote client can talk to it.
//!
//! [`serve`] binds the routes ([`routes`]: `/v1/models`, `/v1/chat/completions` whole or
//! streamed, `/health`) on a tokio runtime and runs the model on one generation thread
//! ([`engine`]). Requests are checked ([`requests`]), rendered with the model's chat template and
//! queued; requests that arrive while a batch decodes share the next batch's forward passes.
//! Errors are OpenAI-style bodies ([`ApiError`]). [`ServeSettings`] are the command's settings, as
//! a settings file spells them; they give the [`ServeOptions`].

mod api_error;
pub mod engine;
mod error;
mod logprobs;
pub mod requests;
pub mod routes;
mod settings;

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;

use precept_data::Tokenizer;
use precept_model::{KernelBackend, LlamaForCausalLM};

pub use api_error::ApiError;
pub use error::ServeError;
pub use requests::Limits;
pub use settings::ServeSettings;

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The model name clients send (and `/v1/models` lists).
    pub model_name: String,
    /// Required as `Authorization: Bearer …` when set; mandatory off loopback.
    pub api_key: Option<String>,
    /// Most requests decoded together.
    pub max_batch: usize,
    /// Largest request body.
    pub max_request_bytes: usize,
    /// Most new tokens a request may ask for.
    pub max_tokens: usize,
    /// New tokens when a request does not say.
    pub default_max_tokens: usize,
}

impl ServeOptions {
    /// Defaults for `model_name`: no key, batches of 32, 1 MiB bodies, at most 4096 new tokens,
    /// 512 by default.
    pub fn new(model_name: impl Into<String>) -> Self {
        Self {
            model_name: model_name.into(),
            api_key: None,
            max_batch: 32,
            max_request_bytes: 1 << 20,
            max_tokens: 4096,
            default_max_tokens: 512,
        }
    }
}

/// Serves `model` on `listener` until `shutdown` completes, then finishes the requests in flight
/// and returns.
///
/// # Errors
/// [`ServeError::NoChatTemplate`], [`ServeError::KeyRequired`] for a non-loopback address
/// without a key, and socket failures.
pub fn serve<B: KernelBackend>(
    model: LlamaForCausalLM<B>,
    tokenizer: Tokenizer,
    options: ServeOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().map_err(|source| ServeError::Io { addr: "the listener".into(), source })?;
    let io = |source| ServeError::Io { addr: addr.to_string(), source };
    if tokenizer.chat_template().is_none() {
        return Err(ServeError::NoChatTemplate);
    }
    if !addr.ip().is_loopback() && options.api_key.is_none() {
        return Err(ServeError::KeyRequired { addr });
    }
    let limits = Limits {
        model_name: options.model_name.clone(),
        max_tokens: options.max_tokens,
        default_max_tokens: options.default_max_tokens,
        context: model.max_positions(),
    };
    let tokenizer = Arc::new(tokenizer);
    let (jobs, queue) = std::sync::mpsc::channel();
    let engine = {
        let (tokenizer, max_batch) = (tokenizer.clone(), options.max_batch.max(1));
        std::thread::Builder::new()
            .name("precept-engine".into())
            .spawn(move || {
                // On a worker of the CPU thread pool: the engine's parallel sections then fork
                // and join on the pool's own threads.
                rayon::scope(|_| engine::run_engine(model, tokenizer, queue, max_batch))
            })
            .map_err(io)?
    };
    let shared = routes::Shared { tokenizer, limits, api_key: options.api_key, jobs, created: routes::unix_now() };
    let app = routes::router(shared, options.max_request_bytes);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(io)?;
    listener.set_nonblocking(true).map_err(io)?;
    runtime
        .block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            axum::serve(listener, app).with_graceful_shutdown(shutdown).await
        })
        .map_err(io)?;
    // The router and its queue sender are gone: the engine ends after its last batch.
    engine.join().map_err(|_| ServeError::EngineLost)
}
