//! `manifest.json`: the run's constitution, model, prompts file and settings, with the counts so
//! far, written atomically before any work and after each batch; a rerun into the same folder
//! checks that the settings match before it skips finished prompts and carries on.

use std::path::Path;

use precept_data::write_atomic;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::driver::RunSettings;
use crate::error::{ConstitutionError, Result};
use crate::journal::Counts;
use crate::records::ConstitutionRef;

/// Name of the run manifest.
pub const MANIFEST_FILE: &str = "manifest.json";

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The constitution.
    pub constitution: ConstitutionRef,
    /// The model.
    pub model: String,
    /// The prompts file.
    pub prompts_file: String,
    /// Prompts in it.
    pub prompts: usize,
    /// Prompts per generation batch (does not change the outputs).
    pub batch: usize,
    /// What decides the outputs.
    pub settings: RunSettings,
    /// Counts over every finished prompt.
    pub counts: Counts,
    /// Whether every prompt has finished.
    pub complete: bool,
}

/// Refuses to resume into a folder whose manifest has other settings, constitution or model.
pub(crate) fn check_resumable(path: &Path, current: &Manifest) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ConstitutionError::io(path, e)),
    };
    let previous: Value = serde_json::from_str(&text).map_err(|error| ConstitutionError::Json {
        path: path.to_owned(),
        line: error.line(),
        error,
    })?;
    // Through text, as the manifest was: an f32 like 0.7 reads back as 0.7 from JSON but becomes
    // 0.699999988… when converted to a JSON value directly.
    let current: Value = serde_json::to_string(current)
        .and_then(|text| serde_json::from_str(&text))
        .map_err(|error| ConstitutionError::Json { path: path.to_owned(), line: 0, error })?;
    let mut fields = vec!["/constitution/hash".to_owned(), "/model".to_owned()];
    if let Some(settings) = current["settings"].as_object() {
        fields.extend(settings.keys().map(|k| format!("/settings/{k}")));
    }
    for field in fields {
        let (before, now) = (previous.pointer(&field), current.pointer(&field));
        if before != now {
            return Err(ConstitutionError::ResumeMismatch {
                path: path.to_owned(),
                field: field.trim_start_matches('/').replace('/', "."),
                previous: before.map_or("absent".into(), Value::to_string),
                current: now.map_or("absent".into(), Value::to_string),
            });
        }
    }
    Ok(())
}

/// Writes `manifest` to `path` atomically, as pretty JSON.
pub(crate) fn write_manifest(path: &Path, manifest: &Manifest) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(manifest).map_err(|error| ConstitutionError::Json {
        path: path.to_owned(),
        line: 0,
        error,
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes).map_err(|e| ConstitutionError::io(path, e))
}

#[cfg(test)]
mod tests {
    use precept_data::Silent;

    use crate::driver::constitute;
    use crate::testing::{
        run_config as config, run_prompts as prompts, run_script as script, small_constitution as constitution,
        Scripted,
    };

    #[test]
    fn resuming_with_other_settings_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        constitute(&mut Scripted::new(script), &constitution(), &prompts(1), &config(dir.path(), 2), &mut Silent)
            .unwrap();
        let mut other = config(dir.path(), 2);
        other.settings.seed = 10;
        let err = constitute(&mut Scripted::new(script), &constitution(), &prompts(1), &other, &mut Silent);
        let err = err.unwrap_err().to_string();
        assert!(
            err.ends_with("written by a run with different settings (settings.seed was 9, now 10); use another --out"),
            "{err}"
        );
        // Settings that are not exact in binary (temperature 0.7) compare equal on resume.
        let mut sampled = config(dir.path(), 2);
        sampled.settings.generation.temperature = 0.7;
        sampled.out = dir.path().join("sampled");
        for _ in 0..2 {
            constitute(&mut Scripted::new(script), &constitution(), &prompts(1), &sampled, &mut Silent).unwrap();
        }
        // The batch size does not change the outputs, so it may change on resume.
        constitute(&mut Scripted::new(script), &constitution(), &prompts(1), &config(dir.path(), 1), &mut Silent)
            .unwrap();
    }
}
