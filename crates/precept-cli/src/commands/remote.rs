//! Remote generation on the command line: `--remote URL[,URL…] --remote-model NAME` (and the
//! same pairs for the baseline and the judge) with the connection settings they share,
//! [`Generator`], a local model or a remote one behind one `Generate`, and [`ModelOpener`], which
//! opens either for library code.

use std::fmt;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use burn::tensor::FloatDType;
use clap::Args;
use precept_data::{Connection, Generate, GenerateSettings, Message, ModelSource, RemoteSpec, Reply};
use precept_eval::OpenModel;
use precept_model::{KernelBackend, LocalGenerator, ModelError};
use precept_remote::{RemoteConfig, RemoteError, RemoteGenerator};
use serde::Serialize;

/// How remote servers are reached: flags over [`Connection`]'s settings of the same names.
#[derive(Debug, Args, Clone, Default, Serialize)]
pub struct ConnectionFlags {
    /// Environment variable holding the servers' API key (sent as a bearer token when set)
    /// [default: PRECEPT_API_KEY].
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// Requests in flight per remote endpoint [default: 8].
    #[arg(long)]
    pub remote_concurrency: Option<usize>,
    /// Seconds one remote request may take [default: 600].
    #[arg(long)]
    pub remote_timeout: Option<u64>,
    /// Retries of a remote request after a timeout, a refused connection, 429 or 5xx [default: 5].
    #[arg(long)]
    pub remote_retries: Option<usize>,
}

/// A client for `spec`, reached as `connection` says.
pub fn client(connection: &Connection, spec: &RemoteSpec) -> Result<RemoteGenerator> {
    if connection.remote_concurrency == 0 {
        bail!("setting `remote_concurrency`: must be at least 1");
    }
    let config = RemoteConfig {
        api_key: std::env::var(&connection.api_key_env).ok().filter(|key| !key.is_empty()),
        concurrency: connection.remote_concurrency,
        timeout: Duration::from_secs(connection.remote_timeout),
        retries: connection.remote_retries,
        ..RemoteConfig::new(spec.endpoints.clone(), spec.model.clone())
    };
    Ok(RemoteGenerator::new(config)?)
}

/// Opens the generator of `source`: loads the folder onto `device` (decoding with copies of its
/// weights in `decode`, `None`: the weights), or connects.
pub fn open_model<B: KernelBackend>(
    source: &ModelSource,
    connection: &Connection,
    device: &B::Device,
    decode: Option<FloatDType>,
) -> Result<Generator<B>> {
    Ok(match source {
        ModelSource::Folder(dir) => Generator::Local(Box::new(
            LocalGenerator::open(dir, device, decode)
                .with_context(|| format!("loading the model in {}", dir.display()))?,
        )),
        ModelSource::Remote(spec) => Generator::Remote(client(connection, spec)?),
    })
}

/// Opens the models library code asks for ([`OpenModel`]): folders onto one device, servers
/// through one connection.
pub struct ModelOpener<'a, B: KernelBackend> {
    /// How servers are reached.
    pub connection: &'a Connection,
    /// Where local models are loaded.
    pub device: &'a B::Device,
    /// The element type of the copies of their weights local models decode with.
    pub decode: Option<FloatDType>,
}

impl<B: KernelBackend> OpenModel for ModelOpener<'_, B> {
    type Generator = Generator<B>;
    type Error = OpenFailure;

    fn open(&mut self, model: &ModelSource) -> Result<Generator<B>, OpenFailure> {
        open_model(model, self.connection, self.device, self.decode).map_err(OpenFailure)
    }
}

/// Why a model could not be opened, its causes in the message (as `main` prints errors).
#[derive(Debug)]
pub struct OpenFailure(anyhow::Error);

impl fmt::Display for OpenFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for OpenFailure {}

/// A local or a remote [`Generate`].
pub enum Generator<B: KernelBackend> {
    /// A model on this machine (boxed: it is much larger than a client).
    Local(Box<LocalGenerator<B>>),
    /// OpenAI-compatible servers.
    Remote(RemoteGenerator),
}

/// The error of whichever generator failed.
#[derive(Debug)]
pub enum GeneratorError {
    /// The local model failed.
    Local(ModelError),
    /// The servers failed.
    Remote(RemoteError),
}

impl fmt::Display for GeneratorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(error) => error.fmt(f),
            Self::Remote(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for GeneratorError {}

impl<B: KernelBackend> Generate for Generator<B> {
    type Error = GeneratorError;

    fn generate(
        &mut self,
        conversations: &[Vec<Message>],
        settings: &GenerateSettings,
    ) -> Result<Vec<Reply>, Self::Error> {
        match self {
            Self::Local(local) => local.generate(conversations, settings).map_err(GeneratorError::Local),
            Self::Remote(remote) => remote.generate(conversations, settings).map_err(GeneratorError::Remote),
        }
    }

    fn option_probabilities(
        &mut self,
        conversations: &[Vec<Message>],
        options: &[String],
    ) -> Result<Vec<Vec<f64>>, Self::Error> {
        match self {
            Self::Local(local) => local.option_probabilities(conversations, options).map_err(GeneratorError::Local),
            Self::Remote(remote) => remote.option_probabilities(conversations, options).map_err(GeneratorError::Remote),
        }
    }
}
