//! Training checkpoints: `checkpoints/checkpoint-N/` folders written atomically (a temporary
//! folder, every file fsynced, then renamed), the last K kept, and everything a resumed run
//! needs to continue bit for bit: trained weights, optimiser moments and the step.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::ParamId;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use precept_data::{write_le, write_safetensors, TensorEntry};
use precept_model::checkpoint::{parameter_keys, SafetensorsFiles};
use precept_model::{host_values, LlamaForCausalLM};
use safetensors::Dtype;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::optim::{AdamW, AdamWConfig, Moments};

/// The folder of checkpoints inside a run folder.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// Written last into a checkpoint: its presence marks the checkpoint complete.
pub const TRAINER_STATE_FILE: &str = "trainer_state.json";
/// The optimiser's moments.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// Where a run stands at a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimiser steps completed.
    pub step: u64,
    /// Input tokens seen so far.
    pub num_tokens: u64,
}

/// The `checkpoints/` folder of a run.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    root: PathBuf,
}

impl Checkpoints {
    /// The checkpoints of the run in `run_dir`.
    pub fn new(run_dir: &Path) -> Self {
        Self { root: run_dir.join(CHECKPOINTS_DIR) }
    }

    /// The most advanced complete checkpoint and its state; half-written ones are ignored.
    pub fn latest(&self) -> Result<Option<(PathBuf, TrainerState)>> {
        let mut best: Option<(PathBuf, TrainerState)> = None;
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(TrainError::io(&self.root, error)),
        };
        for entry in entries {
            let dir = entry.map_err(|e| TrainError::io(&self.root, e))?.path();
            let complete = dir.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("checkpoint-"))
                && dir.join(TRAINER_STATE_FILE).is_file();
            if complete {
                let state = read_state(&dir)?;
                if best.as_ref().is_none_or(|(_, b)| state.step > b.step) {
                    best = Some((dir, state));
                }
            }
        }
        Ok(best)
    }

    /// Writes checkpoint `state.step`: `write_weights` fills a temporary folder, the optimiser
    /// and the state follow, and the folder is renamed into place; then all but the newest
    /// `keep` checkpoints are deleted.
    pub fn save<B: AutodiffBackend>(
        &self,
        state: TrainerState,
        optimizer: &AdamW<B>,
        model: &LlamaForCausalLM<B>,
        keep: usize,
        write_weights: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.root).map_err(|e| TrainError::io(&self.root, e))?;
        let name = format!("checkpoint-{:06}", state.step);
        let staging = self.root.join(format!(".{name}.tmp"));
        let target = self.root.join(&name);
        remove_dir_if_present(&staging)?;
        std::fs::create_dir_all(&staging).map_err(|e| TrainError::io(&staging, e))?;
        write_weights(&staging)?;
        save_optimizer(&staging.join(OPTIMIZER_FILE), optimizer, model)?;
        let state_path = staging.join(TRAINER_STATE_FILE);
        let text = serde_json::to_string_pretty(&state).unwrap_or_default();
        precept_data::write_atomic(&state_path, text.as_bytes()).map_err(|e| TrainError::io(&state_path, e))?;
        remove_dir_if_present(&target)?;
        std::fs::rename(&staging, &target).map_err(|e| TrainError::io(&target, e))?;
        sync_dir(&self.root)?;
        self.prune(keep)?;
        Ok(target)
    }

    /// Deletes all but the `keep` newest complete checkpoints.
    fn prune(&self, keep: usize) -> Result<()> {
        let mut complete: Vec<PathBuf> = std::fs::read_dir(&self.root)
            .map_err(|e| TrainError::io(&self.root, e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|dir| dir.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("checkpoint-")))
            .collect();
        // Zero-padded step numbers sort by name.
        complete.sort();
        let excess = complete.len().saturating_sub(keep);
        for dir in &complete[..excess] {
            remove_dir_if_present(dir)?;
        }
        Ok(())
    }
}

fn read_state(dir: &Path) -> Result<TrainerState> {
    let path = dir.join(TRAINER_STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint { path, message: e.to_string() })
}

pub(crate) fn remove_dir_if_present(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(TrainError::io(dir, error)),
        _ => Ok(()),
    }
}

/// Makes a rename inside `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| TrainError::io(dir, e))
}

/// Safetensors keys of a parameter's moments.
fn moment_keys(key: &str) -> [String; 2] {
    [format!("exp_avg.{key}"), format!("exp_avg_sq.{key}")]
}

/// Writes the optimiser's moments under their parameters' checkpoint keys, in float32.
fn save_optimizer<B: AutodiffBackend>(path: &Path, optimizer: &AdamW<B>, model: &LlamaForCausalLM<B>) -> Result<()> {
    let keys = parameter_keys(model);
    let mut named: Vec<(String, &Moments<B::InnerBackend>)> =
        optimizer.state().iter().filter_map(|(id, moments)| Some((keys.get(id)?.key.clone(), moments))).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut entries = Vec::with_capacity(2 * named.len());
    let mut tensors = Vec::with_capacity(2 * named.len());
    for (key, moments) in &named {
        for (name, tensor) in moment_keys(key).into_iter().zip([&moments.exp_avg, &moments.exp_avg_sq]) {
            entries.push(TensorEntry { name, dtype: Dtype::F32, shape: tensor.dims().to_vec() });
            tensors.push(tensor);
        }
    }
    write_safetensors(path, &entries, |index, out| {
        let values: Vec<f32> = host_values(tensors[index].clone());
        write_le(out, &values).map_err(|e| precept_model::ModelError::io(path, e))
    })?;
    Ok(())
}

/// Restores an optimiser saved by [`Checkpoints::save`] for `model`, whose parameters are
/// matched by checkpoint key.
pub fn load_optimizer<B: AutodiffBackend>(
    dir: &Path,
    config: AdamWConfig,
    steps: u64,
    model: &LlamaForCausalLM<B>,
) -> Result<AdamW<B>> {
    let path = dir.join(OPTIMIZER_FILE);
    let files = SafetensorsFiles::open_file(&path)?;
    let device = model.model.embed_tokens.weight.device();
    let mut moments: HashMap<ParamId, Moments<B::InnerBackend>> = HashMap::new();
    for (id, parameter) in parameter_keys(model) {
        let [avg_key, sq_key] = moment_keys(&parameter.key);
        if files.keys().all(|k| k != avg_key) {
            continue;
        }
        let numel: usize = parameter.shape.iter().product();
        let read = |key: &str| -> Result<Tensor<B::InnerBackend, 1>> {
            let values = files.read_f32(key, &[numel])?;
            Ok(Tensor::from_data(TensorData::new(values, [numel]), &device))
        };
        moments.insert(id, Moments { exp_avg: read(&avg_key)?, exp_avg_sq: read(&sq_key)? });
    }
    Ok(AdamW::from_state(config, steps, moments))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_written_checkpoints_are_ignored_and_corrupt_state_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::new(dir.path());
        assert!(checkpoints.latest().unwrap().is_none());
        let root = dir.path().join(CHECKPOINTS_DIR);
        // A folder without its state file (a save killed half-way) does not count.
        std::fs::create_dir_all(root.join("checkpoint-000004")).unwrap();
        std::fs::create_dir_all(root.join("checkpoint-000002")).unwrap();
        std::fs::write(root.join("checkpoint-000002").join(TRAINER_STATE_FILE), r#"{"step":2,"num_tokens":10}"#)
            .unwrap();
        let (found, state) = checkpoints.latest().unwrap().unwrap();
        assert!(found.ends_with("checkpoint-000002") && state.step == 2);
        std::fs::write(root.join("checkpoint-000004").join(TRAINER_STATE_FILE), b"{\"step\": ").unwrap();
        let error = checkpoints.latest().unwrap_err().to_string();
        assert!(error.contains("checkpoint-000004") && error.contains(TRAINER_STATE_FILE), "{error}");
    }
}
