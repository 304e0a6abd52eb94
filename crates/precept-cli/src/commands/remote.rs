//! Remote generation on the command line: `--remote URL[,URL…] --remote-model NAME` (and the
//! same pairs for the baseline and the judge) with the connection settings they share,
//! [`Generator`], a local model or a remote one behind one `Generate`, and [`ModelOpener`], which
//! opens either for library code.

use std::fmt;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use burn::tensor::FloatDType;
use clap::Args;
use precept_data::{Generate, GenerateSettings, Message, ModelSource, RemoteSpec, Reply};
use precept_eval::OpenModel;
use precept_model::{KernelBackend, LocalGenerator, ModelError};
use precept_remote::{RemoteConfig, RemoteError, RemoteGenerator};

/// The pair `--{flag} URLS --{flag}-model NAME`: both or neither.
pub fn remote_spec(flag: &str, endpoints: Option<&Vec<String>>, model: Option<&String>) -> Result<Option<RemoteSpec>> {
    match (endpoints, model) {
        (None, None) => Ok(None),
        (Some(endpoints), Some(model)) => Ok(Some(RemoteSpec { endpoints: endpoints.clone(), model: model.clone() })),
        (Some(_), None) => bail!("--{flag} needs --{flag}-model (the model name the server serves)"),
        (None, Some(_)) => bail!("--{flag}-model needs --{flag} (the server URLs)"),
    }
}

/// How remote servers are reached (shared by every remote model of a command).
#[derive(Debug, Args, Clone)]
pub struct RemoteConnection {
    /// Environment variable holding the servers' API key (sent as a bearer token when set).
    #[arg(long, default_value = "PRECEPT_API_KEY")]
    pub api_key_env: String,
    /// Requests in flight per remote endpoint.
    #[arg(long, default_value_t = 8)]
    pub remote_concurrency: usize,
    /// Seconds one remote request may take.
    #[arg(long, default_value_t = 600)]
    pub remote_timeout: u64,
    /// Retries of a remote request after a timeout, a refused connection, 429 or 5xx.
    #[arg(long, default_value_t = 5)]
    pub remote_retries: usize,
}

impl Default for RemoteConnection {
    /// The flags' defaults.
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            connection: RemoteConnection,
        }
        <Defaults as clap::Parser>::parse_from(["defaults"]).connection
    }
}

impl RemoteConnection {
    /// A client for `spec`.
    pub fn client(&self, spec: &RemoteSpec) -> Result<RemoteGenerator> {
        if self.remote_concurrency == 0 {
            bail!("--remote-concurrency must be at least 1");
        }
        let config = RemoteConfig {
            api_key: std::env::var(&self.api_key_env).ok().filter(|key| !key.is_empty()),
            concurrency: self.remote_concurrency,
            timeout: Duration::from_secs(self.remote_timeout),
            retries: self.remote_retries,
            ..RemoteConfig::new(spec.endpoints.clone(), spec.model.clone())
        };
        Ok(RemoteGenerator::new(config)?)
    }
}

/// Opens the generator of `source`: loads the folder onto `device` (decoding with copies of its
/// weights in `decode`, `None`: the weights), or connects.
pub fn open_model<B: KernelBackend>(
    source: &ModelSource,
    connection: &RemoteConnection,
    device: &B::Device,
    decode: Option<FloatDType>,
) -> Result<Generator<B>> {
    Ok(match source {
        ModelSource::Folder(dir) => Generator::Local(Box::new(
            LocalGenerator::open(dir, device, decode)
                .with_context(|| format!("loading the model in {}", dir.display()))?,
        )),
        ModelSource::Remote(spec) => Generator::Remote(connection.client(spec)?),
    })
}

/// Opens the models library code asks for ([`OpenModel`]): folders onto one device, servers
/// through one connection.
pub struct ModelOpener<'a, B: KernelBackend> {
    /// How servers are reached.
    pub connection: &'a RemoteConnection,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_needs_both_its_urls_and_its_model_name() {
        let urls = vec!["http://a".to_owned()];
        let name = "m".to_owned();
        assert_eq!(remote_spec("remote", None, None).unwrap(), None);
        let spec = remote_spec("remote", Some(&urls), Some(&name)).unwrap().unwrap();
        assert_eq!(spec.to_string(), "m at http://a");
        let err = remote_spec("judge-remote", Some(&urls), None).unwrap_err();
        assert_eq!(err.to_string(), "--judge-remote needs --judge-remote-model (the model name the server serves)");
    }
}
