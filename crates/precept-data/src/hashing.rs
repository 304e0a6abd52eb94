//! Content hashes that key caches and skip decisions: a model folder by the files that decide its
//! outputs, any plain value by its JSON form, and settings by their canonical JSON form (object
//! keys sorted, so the order of a struct's fields or of a settings file's keys never changes it).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};

/// Files of a model folder that decide its outputs; weights are hashed in full.
fn is_model_file(name: &str) -> bool {
    matches!(name, "config.json" | "generation_config.json" | "tokenizer.json" | "tokenizer_config.json")
        || name.ends_with(".safetensors")
        || name.ends_with(".safetensors.index.json")
}

/// SHA-256 (hex) of a model folder: each file that decides its outputs, by name and contents.
///
/// # Errors
/// [`DataError::Read`] when the folder or one of its files cannot be read.
pub fn hash_model_dir(dir: &Path) -> Result<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|error| read_error(dir, error))?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| is_model_file(name))
        .collect();
    names.sort();
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    for name in &names {
        let path = dir.join(name);
        let mut file = File::open(&path).map_err(|error| read_error(&path, error))?;
        hasher.update(name.as_bytes());
        hasher.update([0]);
        loop {
            let read = file.read(&mut buffer).map_err(|error| read_error(&path, error))?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
    }
    Ok(hex(&hasher.finalize()))
}

/// SHA-256 (hex) of `value`'s JSON form, a struct's fields in their declared order: for data
/// and cache keys, streamed without building a JSON tree (token rows can be large).
pub fn hash_json(value: &impl Serialize) -> String {
    // Serialising plain data (strings, numbers, lists) to a Vec cannot fail.
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    hex(&Sha256::digest(&bytes))
}

/// SHA-256 (hex) of `value`'s [`canonical_json`] form: for settings, whose hash must not depend
/// on the order their fields were declared or written in (the pipeline's skip decision).
pub fn hash_settings(value: &impl Serialize) -> String {
    hex(&Sha256::digest(canonical_json(value).as_bytes()))
}

/// `value` as JSON with every object's keys in sorted order (serde_json's map is ordered by key),
/// so equal settings give equal text whatever order their fields were declared or written in.
pub fn canonical_json(value: &impl Serialize) -> String {
    // Plain data (strings, numbers, lists, maps with string keys) always converts; a value that
    // does not (a map with non-string keys) is a programming error that hashes as `null`.
    serde_json::to_value(value).unwrap_or_default().to_string()
}

fn read_error(path: &Path, error: std::io::Error) -> DataError {
    DataError::Read { path: path.to_owned(), error }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_settings_hash_ignores_field_order_and_follows_every_value() {
        #[derive(Serialize)]
        struct Ab {
            a: u32,
            b: &'static str,
        }
        #[derive(Serialize)]
        struct Ba {
            b: &'static str,
            a: u32,
        }
        assert_eq!(canonical_json(&Ba { b: "x", a: 1 }), r#"{"a":1,"b":"x"}"#);
        assert_eq!(hash_settings(&Ab { a: 1, b: "x" }), hash_settings(&Ba { b: "x", a: 1 }));
        assert_ne!(hash_settings(&Ab { a: 1, b: "x" }), hash_settings(&Ab { a: 2, b: "x" }));
    }
}
