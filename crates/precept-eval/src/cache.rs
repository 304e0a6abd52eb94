//! The baseline cache: a side's results stored on disk under a key made of the hashes of the
//! model, the suite's trials, the judge and the generation settings, so CI regenerates only the
//! tuned side.

use std::path::PathBuf;

use precept_data::{hash_json, write_atomic};
use serde::Serialize;

use crate::error::{EvalError, Result};
use crate::runner::SideResult;

/// What a cached side depends on; each part is a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheKey {
    /// [`precept_data::hash_model_dir`] of the model.
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
}
