//! [`ModelSource`]: where a stage's model is, a folder on this machine or OpenAI-compatible
//! servers ([`RemoteSpec`]). Plain data: what opens it (a local model, a client) lives above.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A model behind OpenAI-compatible servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteSpec {
    /// Base URLs of the servers.
    pub endpoints: Vec<String>,
    /// The model name they serve.
    pub model: String,
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
