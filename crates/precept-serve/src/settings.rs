//! [`ServeSettings`]: every setting of `precept serve`, as a settings file spells them; the
//! command's flags have the same names. [`ServeSettings::options`] gives the server's
//! [`ServeOptions`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ServeError;
use crate::ServeOptions;

/// The settings of `precept serve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServeSettings {
    /// Model folder (Hugging Face layout).
    pub model: PathBuf,
    /// A PEFT LoRA adapter, folded into the weights before serving.
    pub adapter: Option<PathBuf>,
    /// Address to listen on; a non-loopback address needs an API key.
    pub addr: SocketAddr,
    /// The model name clients send (default: the model folder's name).
    pub served_model_name: Option<String>,
    /// Environment variable holding the key clients must send as `Authorization: Bearer …`.
    pub api_key_env: String,
    /// Most requests decoded together.
    pub max_batch: usize,
    /// Most new tokens a request may ask for.
    pub max_tokens: usize,
    /// New tokens when a request does not say.
    pub default_max_tokens: usize,
    /// Largest request body in bytes.
    pub max_request_bytes: usize,
    /// Seconds a connection has to send a request's headers, from when it opens or its previous
    /// response ends (so also how long an idle connection is kept).
    pub header_timeout_secs: u64,
    /// Seconds a request has to send its whole body.
    pub body_timeout_secs: u64,
    /// Most connections open at once.
    pub max_connections: usize,
}

impl Default for ServeSettings {
    fn default() -> Self {
        let options = ServeOptions::new("");
        Self {
            model: PathBuf::new(),
            adapter: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            served_model_name: None,
            api_key_env: "PRECEPT_API_KEY".into(),
            max_batch: options.max_batch,
            max_tokens: options.max_tokens,
            default_max_tokens: options.default_max_tokens,
            max_request_bytes: options.max_request_bytes,
            header_timeout_secs: options.header_timeout.as_secs(),
            body_timeout_secs: options.body_timeout.as_secs(),
            max_connections: options.max_connections,
        }
    }
}

impl ServeSettings {
    /// The server's options: the served name (the folder's, unless given), the key from the
    /// environment, the limits.
    ///
    /// # Errors
    /// [`ServeError::Setting`] without a model folder, when the folder has no name to serve it
    /// under and none is given, and for a timeout or connection cap of 0.
    pub fn options(&self) -> Result<ServeOptions, ServeError> {
        if self.model.as_os_str().is_empty() {
            return Err(ServeError::Setting { field: "model", message: "is required (a model folder)".into() });
        }
        for (field, value) in [
            ("header_timeout_secs", self.header_timeout_secs),
            ("body_timeout_secs", self.body_timeout_secs),
            ("max_connections", self.max_connections as u64),
        ] {
            if value == 0 {
                return Err(ServeError::Setting { field, message: "must be at least 1".into() });
            }
        }
        let name = match (&self.served_model_name, self.model.file_name()) {
            (Some(name), _) => name.clone(),
            (None, Some(name)) => name.to_string_lossy().into_owned(),
            (None, None) => {
                return Err(ServeError::Setting {
                    field: "served_model_name",
                    message: format!("is required: {} has no folder name to serve it under", self.model.display()),
                })
            }
        };
        Ok(ServeOptions {
            api_key: std::env::var(&self.api_key_env).ok().filter(|key| !key.is_empty()),
            max_batch: self.max_batch,
            max_request_bytes: self.max_request_bytes,
            max_tokens: self.max_tokens,
            default_max_tokens: self.default_max_tokens,
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            body_timeout: Duration::from_secs(self.body_timeout_secs),
            max_connections: self.max_connections,
            ..ServeOptions::new(name)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_name_is_the_folder_s_unless_given_and_a_model_is_required() {
        let settings = ServeSettings { model: "models/smol".into(), ..ServeSettings::default() };
        assert_eq!(settings.options().unwrap().model_name, "smol");
        let named = ServeSettings { served_model_name: Some("x".into()), ..settings };
        assert_eq!(named.options().unwrap().model_name, "x");
        let error = ServeSettings::default().options().unwrap_err().to_string();
        assert_eq!(error, "setting `model`: is required (a model folder)");
        let error = ServeSettings { model: "/".into(), ..ServeSettings::default() }.options().unwrap_err();
        assert!(error.to_string().starts_with("setting `served_model_name`"), "{error}");
        let error = ServeSettings { model: "m".into(), header_timeout_secs: 0, ..ServeSettings::default() }.options();
        assert_eq!(error.unwrap_err().to_string(), "setting `header_timeout_secs`: must be at least 1");
    }
}
