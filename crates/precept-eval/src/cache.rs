//! The baseline cache: a side's results stored on disk under a key made of the hashes of the
//! model, the suite's trials, the judge and the generation settings, so CI regenerates only the
//! tuned side.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use precept_data::write_atomic;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{EvalError, Result};
use crate::runner::SideResult;

/// Files of a model folder that decide its replies; weights are hashed in full.
fn is_model_file(name: &str) -> bool {
    matches!(name, "config.json" | "generation_config.json" | "tokenizer.json" | "tokenizer_config.json")
        || name.ends_with(".safetensors")
        || name.ends_with(".safetensors.index.json")
}

/// SHA-256 (hex) of a model folder: each file that decides its replies, by name and contents.
pub fn hash_model_dir(dir: &Path) -> Result<String> {
    let read_error = |error: io::Error| EvalError::Read { path: dir.to_owned(), error };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(read_error)?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| is_model_file(name))
        .collect();
    names.sort();
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    for name in &names {
        let path = dir.join(name);
        let mut file = File::open(&path).map_err(|error| EvalError::Read { path: path.clone(), error })?;
        hasher.update(name.as_bytes());
        hasher.update([0]);
        loop {
            let read = file.read(&mut buffer).map_err(|error| EvalError::Read { path: path.clone(), error })?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
    }
    Ok(hex(&hasher.finalize()))
}

/// SHA-256 (hex) of `value`'s JSON form.
pub fn hash_json(value: &impl Serialize) -> String {
    // Serialising plain data (strings, numbers, lists) to a Vec cannot fail.
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    hex(&Sha256::digest(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a cached side depends on; each part is a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheKey {
    /// [`hash_model_dir`] of the model.
    pub model: String,
    /// Hash of the suite's trials.
    pub suite: String,
    /// Hash of the judge settings (and the judge model's folder).
    pub judge: String,
    /// Hash of the generation settings and system prompt.
    pub generation: String,
}

impl CacheKey {
    /// The file name the side is cached under.
    pub fn file_name(&self) -> String {
        format!("{}.json", &hash_json(self)[..32])
    }

    /// The file name of the side's [`ReplyJournal`](crate::ReplyJournal) while it is generated.
    pub fn journal_file_name(&self) -> String {
        format!("{}.partial.jsonl", &hash_json(self)[..32])
    }
}

/// A folder of cached sides.
#[derive(Debug, Clone)]
pub struct BaselineCache {
    dir: PathBuf,
}

impl BaselineCache {
    /// A cache in `dir` (created on the first store).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The cached side for `key`, if any. An unreadable or outdated entry counts as a miss.
    pub fn load(&self, key: &CacheKey) -> Option<SideResult> {
        let path = self.dir.join(key.file_name());
        let text = std::fs::read_to_string(&path).ok()?;
        match serde_json::from_str(&text) {
            Ok(side) => Some(side),
            Err(error) => {
                tracing::warn!("ignoring the unreadable cache entry {}: {error}", path.display());
                None
            }
        }
    }

    /// Stores `side` under `key` (atomically).
    pub fn store(&self, key: &CacheKey, side: &SideResult) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.dir).map_err(|error| EvalError::Write { path: self.dir.clone(), error })?;
        let path = self.dir.join(key.file_name());
        let json = serde_json::to_vec(side).map_err(|error| EvalError::Json { path: path.clone(), error })?;
        write_atomic(&path, &json).map_err(|error| EvalError::Write { path: path.clone(), error })?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(generation: &str) -> CacheKey {
        CacheKey { model: "m".into(), suite: "s".into(), judge: "j".into(), generation: generation.into() }
    }

    fn side() -> SideResult {
        SideResult { model: "base".into(), system_prompt: Some("Be safe.".into()), trials: Vec::new() }
    }

    #[test]
    fn a_stored_side_is_a_hit_for_the_same_key_and_a_miss_for_any_other() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BaselineCache::new(dir.path().join("cache"));
        assert_eq!(cache.load(&key("g")), None);
        cache.store(&key("g"), &side()).unwrap();
        assert_eq!(cache.load(&key("g")), Some(side()));
        assert_eq!(cache.load(&key("other settings")), None);
        let mut other_model = key("g");
        other_model.model = "m2".into();
        assert_eq!(cache.load(&other_model), None);
    }

    #[test]
    fn a_corrupt_entry_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BaselineCache::new(dir.path());
        std::fs::write(dir.path().join(key("g").file_name()), "{not json").unwrap();
        assert_eq!(cache.load(&key("g")), None);
    }

    #[test]
    fn the_model_hash_changes_with_the_weights_and_ignores_unrelated_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        std::fs::write(dir.path().join("model.safetensors"), "weights").unwrap();
        let first = hash_model_dir(dir.path()).unwrap();
        std::fs::write(dir.path().join("README.md"), "notes").unwrap();
        assert_eq!(hash_model_dir(dir.path()).unwrap(), first);
        std::fs::write(dir.path().join("model.safetensors"), "weightz").unwrap();
        assert_ne!(hash_model_dir(dir.path()).unwrap(), first);
        assert!(hash_model_dir(&dir.path().join("absent")).is_err());
    }
}
