//! [`ModelSource`]: where a stage's model is, a folder on this machine or OpenAI-compatible
//! servers ([`RemoteSpec`]), and how those servers are reached ([`Connection`]). Plain data: what
//! opens it (a local model, a client) lives above.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// A model behind OpenAI-compatible servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteSpec {
    /// Base URLs of the servers.
    pub endpoints: Vec<String>,
    /// The model name they serve.
    pub model: String,
}

impl RemoteSpec {
    /// The settings pair `{name} = [URL, …]` and `{name}_model = NAME`: both or neither.
    ///
    /// # Errors
    /// [`DataError::Setting`] when only one of the two is given.
    pub fn from_pair(name: &str, endpoints: Option<&[String]>, model: Option<&str>) -> Result<Option<Self>> {
        let missing = |field: String, message: String| Err(DataError::Setting { field, message });
        match (endpoints, model) {
            (None, None) => Ok(None),
            (Some(endpoints), Some(model)) => Ok(Some(Self { endpoints: endpoints.to_vec(), model: model.to_owned() })),
            (Some(_), None) => missing(
                format!("{name}_model"),
                format!("is required with `{name}` (the model name the servers serve)"),
            ),
            (None, Some(_)) => missing(name.to_owned(), format!("is required with `{name}_model` (the server URLs)")),
        }
    }
}

/// How remote servers are reached (shared by every remote model of a command).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Connection {
    /// Environment variable holding the servers' API key (sent as a bearer token when set).
    pub api_key_env: String,
    /// Requests in flight per remote endpoint.
    pub remote_concurrency: usize,
    /// Seconds one remote request may take.
    pub remote_timeout: u64,
    /// Retries of a remote request after a timeout, a refused connection, 429 or 5xx.
    pub remote_retries: usize,
}

impl Default for Connection {
    fn default() -> Self {
        Self { api_key_env: "PRECEPT_API_KEY".into(), remote_concurrency: 8, remote_timeout: 600, remote_retries: 5 }
    }
}

impl fmt::Display for RemoteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.model, self.endpoints.join(","))
    }
}

/// A model folder on this machine or a model behind servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelSource {
    /// A Hugging Face folder.
    Folder(PathBuf),
    /// OpenAI-compatible servers.
    Remote(RemoteSpec),
}

impl ModelSource {
    /// What the model is, for resume checks and provenance: the folder, or `remote:NAME` (the
    /// servers' URLs say where it runs, not what it is, and may change between runs).
    pub fn identity(&self) -> String {
        match self {
            Self::Folder(dir) => dir.display().to_string(),
            Self::Remote(spec) => format!("remote:{}", spec.model),
        }
    }

    /// The folder, for a local model.
    pub fn folder(&self) -> Option<&Path> {
        match self {
            Self::Folder(dir) => Some(dir),
            Self::Remote(_) => None,
        }
    }
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Folder(dir) => write!(f, "{}", dir.display()),
            Self::Remote(spec) => write!(f, "{spec}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_model_is_named_by_its_model_and_urls_and_known_by_its_name() {
        let spec = RemoteSpec { endpoints: vec!["http://a".into(), "http://b".into()], model: "m".into() };
        assert_eq!(spec.to_string(), "m at http://a,http://b");
        let remote = ModelSource::Remote(spec);
        assert_eq!((remote.identity(), remote.folder()), ("remote:m".to_owned(), None));
        let folder = ModelSource::Folder("models/base".into());
        assert_eq!((folder.to_string(), folder.folder()), ("models/base".to_owned(), Some(Path::new("models/base"))));
    }

    #[test]
    fn sources_serialise_as_a_one_key_object() {
        let folder = ModelSource::Folder("m".into());
        assert_eq!(serde_json::to_string(&folder).unwrap(), r#"{"folder":"m"}"#);
        let remote = ModelSource::Remote(RemoteSpec { endpoints: vec!["http://a".into()], model: "m".into() });
        let json = serde_json::to_string(&remote).unwrap();
        assert_eq!(json, r#"{"remote":{"endpoints":["http://a"],"model":"m"}}"#);
        assert_eq!(serde_json::from_str::<ModelSource>(&json).unwrap(), remote);
    }
}
