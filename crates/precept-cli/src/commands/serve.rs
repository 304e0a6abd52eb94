//! `precept serve`: a model folder (optionally with a LoRA adapter folded in) behind an
//! OpenAI-compatible HTTP API, until SIGINT or SIGTERM.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::tensor::FloatDType;
use clap::Args;
use precept_data::{resolve_settings, Tokenizer};
use precept_model::checkpoint::load_adapter;
use precept_serve::{serve, ServeSettings};
use precept_train::TrainKernels;
use serde::Serialize;

use crate::device::DeviceCommand;
use crate::loaded::load_weights;

/// `precept serve`: settings from `--config` (a file of [`ServeSettings`]), overridden by the
/// flags given, which have the same names.
#[derive(Debug, Args, Serialize)]
pub struct ServeArgs {
    /// A TOML settings file whose keys are these flags' names (`max_batch = 16`).
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Model folder (Hugging Face layout).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// A PEFT LoRA adapter, folded into the weights before serving.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Address to listen on; a non-loopback address needs an API key [default: 127.0.0.1:8080].
    #[arg(long)]
    pub addr: Option<SocketAddr>,
    /// The model name clients send (default: the model folder's name).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Environment variable holding the key clients must send as `Authorization: Bearer …`
    /// [default: PRECEPT_API_KEY].
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// Most requests decoded together [default: 32].
    #[arg(long)]
    pub max_batch: Option<usize>,
    /// Most new tokens a request may ask for [default: 4096].
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// New tokens when a request does not say [default: 512].
    #[arg(long)]
    pub default_max_tokens: Option<usize>,
    /// Largest request body in bytes [default: 1048576].
    #[arg(long)]
    pub max_request_bytes: Option<usize>,
    /// Seconds a connection has to send a request's headers, from when it opens or its previous
    /// response ends, so also how long an idle connection is kept [default: 30].
    #[arg(long)]
    pub header_timeout_secs: Option<u64>,
    /// Seconds a request has to send its whole body [default: 60].
    #[arg(long)]
    pub body_timeout_secs: Option<u64>,
    /// Most connections open at once; further clients wait [default: 64].
    #[arg(long)]
    pub max_connections: Option<usize>,
}

impl ServeArgs {
    /// The settings file with these flags over it.
    pub fn resolve(&self) -> Result<ServeSettings> {
        Ok(resolve_settings(self.config.as_deref(), self, &[])?)
    }
}

/// The command, ready to run on a backend.
pub struct Serve(pub ServeSettings);

impl DeviceCommand for Serve {
    fn run<B: TrainKernels>(self, device: B::Device, decode: Option<FloatDType>) -> Result<()> {
        let settings = self.0;
        let options = settings.options()?;
        let dir = &settings.model;
        let tokenizer =
            Tokenizer::from_dir(dir).with_context(|| format!("loading the tokenizer of {}", dir.display()))?;
        let (_, mut model) = load_weights::<B>(dir, &device, decode)?;
        if let Some(adapter) = &settings.adapter {
            let (adapted, lora) = load_adapter(model, adapter)
                .with_context(|| format!("loading the adapter in {}", adapter.display()))?;
            model = adapted.merge_lora();
            tracing::info!("folded a rank-{} adapter from {} into the weights", lora.r, adapter.display());
        }
        let listener = TcpListener::bind(settings.addr).with_context(|| format!("listening on {}", settings.addr))?;
        serve(model, tokenizer, options, listener, shutdown_signal())?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing the requests in flight");
}
