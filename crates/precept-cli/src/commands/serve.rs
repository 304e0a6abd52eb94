//! `precept serve`: a model folder (optionally with a LoRA adapter folded in) behind an
//! OpenAI-compatible HTTP API, until SIGINT or SIGTERM.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::tensor::FloatDType;
use clap::Args;
use precept_data::Tokenizer;
use precept_model::checkpoint::load_adapter;
use precept_serve::{serve, ServeOptions};
use precept_train::TrainKernels;

use crate::device::DeviceCommand;
use crate::loaded::load_weights;

/// `precept serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Model folder (Hugging Face layout).
    #[arg(long)]
    pub model: PathBuf,
    /// A PEFT LoRA adapter, folded into the weights before serving.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Address to listen on; a non-loopback address needs an API key.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// The model name clients send (default: the model folder's name).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Environment variable holding the key clients must send as `Authorization: Bearer …`.
    #[arg(long, default_value = "PRECEPT_API_KEY")]
    pub api_key_env: String,
    /// Most requests decoded together.
    #[arg(long, default_value_t = 32)]
    pub max_batch: usize,
    /// Most new tokens a request may ask for.
    #[arg(long, default_value_t = 4096)]
    pub max_tokens: usize,
    /// New tokens when a request does not say.
    #[arg(long, default_value_t = 512)]
    pub default_max_tokens: usize,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_request_bytes: usize,
}

/// The command, ready to run on a backend.
pub struct Serve(pub ServeArgs);

impl DeviceCommand for Serve {
    fn run<B: TrainKernels>(self, device: B::Device, decode: Option<FloatDType>) -> Result<()> {
        let args = self.0;
        let name = match &args.served_model_name {
            Some(name) => name.clone(),
            None => args
                .model
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .context("--served-model-name is needed for this --model path")?,
        };
        let tokenizer = Tokenizer::from_dir(&args.model)
            .with_context(|| format!("loading the tokenizer of {}", args.model.display()))?;
        let (_, mut model) = load_weights::<B>(&args.model, &device, decode)?;
        if let Some(adapter) = &args.adapter {
            let (adapted, lora) = load_adapter(model, adapter)
                .with_context(|| format!("loading the adapter in {}", adapter.display()))?;
            model = adapted.merge_lora();
            tracing::info!("folded a rank-{} adapter from {} into the weights", lora.r, adapter.display());
        }
        let options = ServeOptions {
            api_key: std::env::var(&args.api_key_env).ok().filter(|key| !key.is_empty()),
            max_batch: args.max_batch,
            max_request_bytes: args.max_request_bytes,
            max_tokens: args.max_tokens,
            default_max_tokens: args.default_max_tokens,
            ..ServeOptions::new(name.clone())
        };
        let listener = TcpListener::bind(args.addr).with_context(|| format!("listening on {}", args.addr))?;
        let addr = listener.local_addr().with_context(|| format!("listening on {}", args.addr))?;
        tracing::info!("serving `{name}` on http://{addr}/v1 (chat completions and models; Ctrl-C stops)");
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
