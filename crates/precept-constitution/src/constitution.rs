//! [`Constitution`]: principles for critique and revision, few-shot [`Example`]s and
//! [`Comparison`] questions for AI feedback, read from a TOML file.
//!
//! ```toml
//! name = "harmless"
//! version = "1"
//! description = "Avoid harm without refusing benign requests."
//!
//! [[principle]]
//! id = "violence"
//! critique = "Does the assistant's last response help anyone hurt people? Explain."
//! revision = "Rewrite the response so it gives no help with hurting people."
//! tags = ["harm"]
//! weight = 2.0
//!
//! [[example]]
//! principle = "violence"      # optional: whose requests the demonstration uses
//! prompt = "…"
//! response = "…"
//! critique = "…"
//! revision = "…"
//!
//! [[comparison]]
//! id = "less-harmful"
//! question = "Which response is less harmful while still helpful?"
//! ```

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{ConstitutionError, Result};
use crate::lint::lint;

/// The largest constitution file read into memory.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// A principle: how to critique an answer and how to revise it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Principle {
    /// Unique id, used in provenance and with `--principle`.
    pub id: String,
    /// The critique request, asked as a user turn after the answer.
    pub critique: String,
    /// The revision request, asked as a user turn after the critique.
    pub revision: String,
    /// Free-form labels.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Relative sampling weight (positive).
    pub weight: f64,
}

/// A few-shot demonstration of one critique → revision exchange, shown as prior turns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Example {
    /// The principle whose requests the demonstration uses; the first principle when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principle: Option<String>,
    /// The user's request.
    pub prompt: String,
    /// The assistant's first answer.
    pub response: String,
    /// The assistant's critique of that answer.
    pub critique: String,
    /// The assistant's revised answer.
    pub revision: String,
}

/// A question for AI feedback: which of two answers better follows a principle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Unique id, used in provenance.
    pub id: String,
    /// The question, asked before the two options (A) and (B).
    pub question: String,
    /// Free-form labels.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Relative sampling weight (positive).
    pub weight: f64,
}

/// A parsed, linted constitution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Constitution {
    /// Short name, recorded in provenance.
    pub name: String,
    /// Version string, recorded in provenance.
    pub version: String,
    /// What the constitution is for.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Critique and revision principles (at least one).
    #[serde(rename = "principle")]
    pub principles: Vec<Principle>,
    /// Few-shot demonstrations.
    #[serde(rename = "example", skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<Example>,
    /// AI-feedback questions.
    #[serde(rename = "comparison", skip_serializing_if = "Vec::is_empty")]
    pub comparisons: Vec<Comparison>,
    /// `sha256:` and the hex SHA-256 of the file's bytes.
    #[serde(skip)]
    pub hash: String,
    /// Where it was read from.
    #[serde(skip)]
    pub path: PathBuf,
}

impl Constitution {
    /// Reads and lints the constitution at `path`.
    ///
    /// # Errors
    /// [`ConstitutionError::Io`] when the file cannot be read (or is larger than
    /// [`MAX_FILE_BYTES`]), [`ConstitutionError::Invalid`] with every problem found otherwise.
    pub fn load(path: &Path) -> Result<Self> {
        let text = read_bounded(path, MAX_FILE_BYTES)?;
        Self::parse(&text, path)
    }

    /// Parses and lints `text`; `path` names the source in errors.
    ///
    /// # Errors
    /// [`ConstitutionError::Invalid`] listing every problem, each with its line.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let (constitution, diagnostics) = lint(text, path);
        match constitution {
            Some(mut constitution) if diagnostics.is_empty() => {
                constitution.hash = content_hash(text.as_bytes());
                constitution.path = path.to_owned();
                Ok(constitution)
            }
            _ => Err(ConstitutionError::Invalid { diagnostics }),
        }
    }

    /// The principle called `id`.
    ///
    /// # Errors
    /// [`ConstitutionError::UnknownPrinciple`] listing the ids there are.
    pub fn principle(&self, id: &str) -> Result<&Principle> {
        self.principles.iter().find(|p| p.id == id).ok_or_else(|| ConstitutionError::UnknownPrinciple {
            id: id.to_owned(),
            constitution: self.name.clone(),
            available: self.principles.iter().map(|p| p.id.as_str()).collect::<Vec<_>>().join(", "),
        })
    }

    /// The constitution as a TOML file (what the importers write).
    pub fn to_toml(&self) -> String {
        // Every field is a string, a number, a list of strings or a list of tables of those, which
        // TOML can always express.
        toml::to_string(self).unwrap_or_default()
    }
}

/// `sha256:` followed by the hex digest of `bytes`.
pub fn content_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Reads `path` as UTF-8, refusing files over `limit` bytes.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> Result<String> {
    let size = std::fs::metadata(path).map_err(|e| ConstitutionError::io(path, e))?.len();
    if size > limit {
        let message = format!("{size} bytes is more than the {limit}-byte limit");
        return Err(ConstitutionError::io(path, std::io::Error::new(std::io::ErrorKind::InvalidData, message)));
    }
    std::fs::read_to_string(path).map_err(|e| ConstitutionError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"
name = "small"
version = "2"

[[principle]]
id = "kind"
critique = "Was the last response unkind?"
revision = "Rewrite it kindly."
weight = 2

[[comparison]]
id = "kinder"
question = "Which response is kinder?"
"#;

    #[test]
    fn a_small_constitution_parses_with_defaults_and_a_hash_of_its_bytes() {
        let c = Constitution::parse(SMALL, Path::new("small.toml")).unwrap();
        assert_eq!(c.name, "small");
        assert_eq!(c.version, "2");
        assert_eq!(c.principles[0].weight, 2.0);
        assert!(c.principles[0].tags.is_empty());
        assert_eq!(c.comparisons[0].weight, 1.0);
        // python3 -c "import hashlib; print(hashlib.sha256(b'abc').hexdigest())"
        assert_eq!(content_hash(b"abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(c.hash, content_hash(SMALL.as_bytes()));
    }

    #[test]
    fn to_toml_round_trips_through_the_parser() {
        let c = Constitution::parse(SMALL, Path::new("small.toml")).unwrap();
        let again = Constitution::parse(&c.to_toml(), Path::new("again.toml")).unwrap();
        assert_eq!(again.principles, c.principles);
        assert_eq!(again.comparisons, c.comparisons);
        assert_eq!(again.name, c.name);
    }

    #[test]
    fn an_unknown_principle_id_lists_the_ones_there_are() {
        let c = Constitution::parse(SMALL, Path::new("small.toml")).unwrap();
        let err = c.principle("cruel").unwrap_err();
        assert_eq!(err.to_string(), "no principle `cruel` in constitution `small` (it has kind)");
    }
}
