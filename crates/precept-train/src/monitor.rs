//! [`Monitor`]: a check of the current weights every few optimiser steps, from outside this
//! crate (the safety gate lives in precept-eval, a sibling). The training loop hands it a
//! [`Snapshot`]; its [`Checked`] answer is logged into the metrics, a passing check's
//! checkpoint is kept as `<out>/best` ([`BEST_DIR`]), and a check may stop the run.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use precept_model::checkpoint::{save_model, SaveOptions};
use precept_model::{LlamaConfig, LlamaForCausalLM};
use serde_json::{Map, Value};

use crate::checkpoint::{remove_dir_if_present, OPTIMIZER_FILE};
use crate::error::{Result, TrainError};

/// Folder, inside the run folder, of the last checkpoint whose check passed.
pub const BEST_DIR: &str = "best";

/// Why a monitor could not check the weights; what checks them varies with the caller, so its
/// error travels boxed.
pub type MonitorError = Box<dyn std::error::Error + Send + Sync>;

/// Checks the weights of a run every [`Monitor::every`] optimiser steps (and after the last).
pub trait Monitor<B: Backend> {
    /// Optimiser steps between checks (at least 1).
    fn every(&self) -> u64;

    /// Checks the weights in `snapshot`.
    ///
    /// # Errors
    /// Whatever stops the check (unwritable files, a model that fails to generate); the run
    /// stops with it.
    fn check(&mut self, snapshot: &Snapshot<'_, B>) -> std::result::Result<Checked, MonitorError>;
}

/// What a check decided.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    /// Metrics logged at the step (the loop adds `step` and `epoch`).
    pub record: Map<String, Value>,
    /// One line for the progress display.
    pub summary: String,
    /// The weights passed: this step's checkpoint is written and kept as [`BEST_DIR`].
    pub passed: bool,
    /// Stop the run here, for this reason (no checkpoint of this step is written).
    pub stop: Option<String>,
}

/// The weights of a run at a checked step.
pub struct Snapshot<'a, B: Backend> {
    /// Optimiser steps completed.
    pub step: u64,
    /// The model being trained (with its adapters, if any), without gradients.
    pub model: &'a LlamaForCausalLM<B>,
    /// Its architecture.
    pub model_config: &'a LlamaConfig,
    /// The base model's folder (tokenizer and chat template).
    pub base_dir: &'a Path,
}

impl<B: Backend> Snapshot<'_, B> {
    /// Writes the weights as a model folder in `dir`: adapters merged in, float32, with the
    /// base's tokenizer and chat template, so anything that opens a model folder can run it.
    ///
    /// # Errors
    /// An unwritable folder.
    pub fn write_model(&self, dir: &Path) -> Result<()> {
        let options = SaveOptions { copy_from: Some(self.base_dir), ..SaveOptions::default() };
        save_model(&self.model.clone().merge_lora(), self.model_config, dir, &options)?;
        Ok(())
    }
}

/// Makes `best` a copy of `checkpoint` without its optimiser moments (hard links where the file
/// system allows, so it costs no space while the checkpoint exists, and survives its deletion):
/// staged beside it, then renamed into place.
pub(crate) fn keep_best(checkpoint: &Path, best: &Path) -> Result<PathBuf> {
    let name = best.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| BEST_DIR.to_owned());
    let staging = best.with_file_name(format!(".{name}.tmp"));
    let old = best.with_file_name(format!(".{name}.old"));
    for dir in [&staging, &old] {
        remove_dir_if_present(dir)?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| TrainError::io(&staging, e))?;
    for entry in std::fs::read_dir(checkpoint).map_err(|e| TrainError::io(checkpoint, e))? {
        let from = entry.map_err(|e| TrainError::io(checkpoint, e))?.path();
        let Some(file) = from.file_name().filter(|n| *n != OPTIMIZER_FILE) else { continue };
        let to = staging.join(file);
        if from.is_file() && std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).map_err(|e| TrainError::io(&to, e))?;
        }
    }
    if best.exists() {
        std::fs::rename(best, &old).map_err(|e| TrainError::io(best, e))?;
    }
    std::fs::rename(&staging, best).map_err(|e| TrainError::io(best, e))?;
    remove_dir_if_present(&old)?;
    Ok(best.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::TRAINER_STATE_FILE;

    #[test]
    fn best_copies_a_checkpoint_without_its_optimiser_and_outlives_it() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = |step: u64| {
            let path = dir.path().join(format!("checkpoint-{step}"));
            std::fs::create_dir_all(&path).unwrap();
            std::fs::write(path.join(TRAINER_STATE_FILE), format!("{{\"step\":{step}}}")).unwrap();
            std::fs::write(path.join(OPTIMIZER_FILE), b"moments").unwrap();
            path
        };
        let best = dir.path().join(BEST_DIR);
        let first = checkpoint(2);
        keep_best(&first, &best).unwrap();
        let second = checkpoint(4);
        keep_best(&second, &best).unwrap();
        std::fs::remove_dir_all(&second).unwrap();
        assert_eq!(std::fs::read_to_string(best.join(TRAINER_STATE_FILE)).unwrap(), "{\"step\":4}");
        assert!(!best.join(OPTIMIZER_FILE).exists());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "no staging folder is left behind: {left:?}");
    }
}
