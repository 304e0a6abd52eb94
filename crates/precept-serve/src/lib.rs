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
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;

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
    /// Time a connection has to send a request's headers, counted from when it opens or its
    /// previous response ends: also the idle timeout of a kept-alive connection.
    pub header_timeout: Duration,
    /// Time a request has to send its whole body.
    pub body_timeout: Duration,
    /// Most connections open at once; further clients wait in the listen backlog.
    pub max_connections: usize,
}

impl ServeOptions {
    /// Defaults for `model_name`: no key, batches of 32, 1 MiB bodies, at most 4096 new tokens,
    /// 512 by default, 30 s for headers (and idle connections), 60 s for a body, 64 connections.
    pub fn new(model_name: impl Into<String>) -> Self {
        Self {
            model_name: model_name.into(),
            api_key: None,
            max_batch: 32,
            max_request_bytes: 1 << 20,
            max_tokens: 4096,
            default_max_tokens: 512,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
            max_connections: 64,
        }
    }
}

/// Serves `model` on `listener` until `shutdown` completes, then finishes the requests in flight
/// and returns. Logs the address once every check has passed.
///
/// Connections go through hyper's HTTP/1 server with its header-read timeout (which also closes
/// idle kept-alive connections), bodies through tower-http's body timeout, and at most
/// `max_connections` are open at once.
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
    let app = routes::router(shared, options.max_request_bytes, options.body_timeout);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(io)?;
    listener.set_nonblocking(true).map_err(io)?;
    tracing::info!("serving `{}` on http://{addr}/v1 (chat completions and models; Ctrl-C stops)", options.model_name);
    let connections = Connections {
        http: http_settings(options.header_timeout),
        open: Arc::new(Semaphore::new(options.max_connections.max(1))),
    };
    runtime
        .block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            connections.serve(listener, app, shutdown).await
        })
        .map_err(io)?;
    // The router and its queue sender are gone: the engine ends after its last batch.
    engine.join().map_err(|_| ServeError::EngineLost)
}

/// hyper's HTTP/1 settings: keep-alive, and `header_timeout` to send a request's headers.
fn http_settings(header_timeout: Duration) -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(true);
    http
}

/// The accept loop's settings and its count of open connections.
struct Connections {
    http: http1::Builder,
    open: Arc<Semaphore>,
}

impl Connections {
    /// Accepts connections (while fewer than the cap are open) until `shutdown`, then waits for
    /// the open ones to finish their requests.
    async fn serve(
        self,
        listener: tokio::net::TcpListener,
        app: axum::Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.accept(&listener) => accepted,
            };
            let (stream, permit) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or a connection reset before it was accepted: the next
                    // accept may succeed, so wait a moment instead of spinning or stopping.
                    tracing::warn!("accepting a connection: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let service = TowerToHyperService::new(app.clone());
            let connection = graceful.watch(self.http.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!("connection closed: {error}");
                }
                drop(permit);
            });
        }
        drop(app);
        graceful.shutdown().await;
        Ok(())
    }

    /// Waits for a free connection slot, then for a client.
    async fn accept(
        &self,
        listener: &tokio::net::TcpListener,
    ) -> std::io::Result<(tokio::net::TcpStream, tokio::sync::OwnedSemaphorePermit)> {
        // The semaphore is never closed, so acquiring fails only in theory; treat it as a
        // transient error like any other.
        let permit = self.open.clone().acquire_owned().await.map_err(std::io::Error::other)?;
        let (stream, _) = listener.accept().await?;
        Ok((stream, permit))
    }
}
