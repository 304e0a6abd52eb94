//! The reference model of DPO: log-probabilities computed once and cached on disk under a key
//! made of the reference model's hash and the tokenised pairs' hash (so a rerun or a resumed run
//! reads them back), or a reference run beside the policy at every step.

use std::path::Path;
use std::time::Instant;

use precept_data::{hash_json, hash_model_dir, write_atomic, Counter, ProgressEvent, ProgressSink};
use precept_model::checkpoint::load_model;
use precept_model::{KernelBackend, LlamaForCausalLM};
use serde::{Deserialize, Serialize};

use super::config::{DpoConfig, PreferenceMethod};
use super::pairs::PairPlan;
use crate::error::{Result, TrainError};
use crate::loss::sequence_logp_values;
use crate::settings::Tuning;

/// Reference log-probabilities of one pair: the chosen and the rejected completion.
pub type PairReference = [f64; 2];

/// Where a run's reference log-probabilities come from.
#[derive(Debug)]
pub enum Reference<B: KernelBackend> {
    /// A reference-free method (SimPO, ORPO): all zeros.
    None,
    /// Computed before training, per training and evaluation pair.
    Precomputed {
        /// One per training pair.
        train: Vec<PairReference>,
        /// One per evaluation pair.
        eval: Vec<PairReference>,
    },
    /// The policy with its LoRA adapters switched off, at every step (no second copy of the
    /// weights).
    AdaptersOff,
    /// A separate model kept in memory, at every step.
    Model(Box<LlamaForCausalLM<B>>),
}

/// What a cache file's log-probabilities depend on; each part is a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CacheKey {
    /// Bumped when the computation changes.
    format: u32,
    /// [`hash_model_dir`] of the reference model.
    model: String,
    /// Hash of the tokenised training and evaluation pairs (ids and masks).
    data: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct CacheFile {
    key: CacheKey,
    train: Vec<PairReference>,
    eval: Vec<PairReference>,
}

impl<B: KernelBackend> Reference<B> {
    /// The reference `config` asks for. Precomputed log-probabilities are read from the cache
    /// when present, else computed with `base` (or `ref_model`) and cached; `base` is the
    /// frozen base model the run starts from.
    ///
    /// # Errors
    /// An unreadable reference model, and a cache that cannot be written.
    pub fn prepare(
        config: &DpoConfig,
        base: &LlamaForCausalLM<B>,
        plans: [&PairPlan; 2],
        device: &B::Device,
        progress: &mut dyn ProgressSink,
    ) -> Result<Self> {
        if config.method != PreferenceMethod::Dpo {
            return Ok(Self::None);
        }
        if !config.precompute_ref_log_probs {
            return Ok(match (&config.ref_model, config.train.tuning) {
                (None, Tuning::Lora) => Self::AdaptersOff,
                (None, Tuning::Full) => Self::Model(Box::new(base.clone())),
                (Some(dir), _) => Self::Model(Box::new(load_model::<B>(dir, device)?.1)),
            });
        }
        let key = CacheKey {
            format: 1,
            model: hash_model_dir(config.reference_dir())?,
            data: hash_json(&(plans[0].fingerprint(), plans[1].fingerprint())),
        };
        let path = config.ref_cache_dir.join(format!("{}.json", &hash_json(&key)[..32]));
        if let Some(cached) = read_cache(&path, &key, plans) {
            progress.report(ProgressEvent::Note(&format!(
                "reference log-probabilities of {} pairs read from the cache {}",
                cached.train.len() + cached.eval.len(),
                path.display()
            )));
            return Ok(Self::Precomputed { train: cached.train, eval: cached.eval });
        }
        let started = Instant::now();
        let separate;
        let model = match &config.ref_model {
            Some(dir) => {
                separate = load_model::<B>(dir, device)?.1;
                &separate
            }
            None => base,
        };
        let total = plans[0].len() + plans[1].len();
        let mut counter = Counter::start(progress, "reference log-probabilities", "pairs", total);
        let mut computed = [Vec::new(), Vec::new()];
        for (plan, out) in plans.iter().zip(computed.iter_mut()) {
            for range in plan.in_order() {
                let indices: Vec<usize> = range.collect();
                out.extend(reference_logps(model, plan, &indices, device));
                counter.advance(progress, indices.len());
            }
        }
        let [train, eval] = computed;
        let file = CacheFile { key, train, eval };
        write_cache(&path, &file)?;
        progress.report(ProgressEvent::Note(&format!(
            "reference log-probabilities of {total} pairs computed in {:.1} s and cached in {}",
            started.elapsed().as_secs_f64(),
            path.display()
        )));
        Ok(Self::Precomputed { train: file.train, eval: file.eval })
    }
}

/// Reference log-probabilities of the pairs `indices` of `plan` under `model`.
pub fn reference_logps<B: KernelBackend>(
    model: &LlamaForCausalLM<B>,
    plan: &PairPlan,
    indices: &[usize],
    device: &B::Device,
) -> Vec<PairReference> {
    let batch = plan.tensors::<B>(indices, device);
    let values = sequence_logp_values(model, batch.ids, &batch.inputs, batch.loss_mask);
    let pairs = indices.len();
    (0..pairs).map(|i| [values.logps[i], values.logps[pairs + i]]).collect()
}

/// The cached file at `path` when it holds `key` and one entry per pair; anything else
/// (absent, corrupt, another key) is a miss.
fn read_cache(path: &Path, key: &CacheKey, plans: [&PairPlan; 2]) -> Option<CacheFile> {
    let text = std::fs::read_to_string(path).ok()?;
    let file: CacheFile = serde_json::from_str(&text).ok()?;
    (file.key == *key && file.train.len() == plans[0].len() && file.eval.len() == plans[1].len()).then_some(file)
}

fn write_cache(path: &Path, file: &CacheFile) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    }
    // Plain numbers and strings always serialise.
    let text = serde_json::to_string(file).unwrap_or_default();
    write_atomic(path, text.as_bytes()).map_err(|e| TrainError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_absent_or_foreign_cache_file_is_a_miss_and_a_good_one_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.json");
        let (train, eval) = (PairPlan::new(Vec::new(), 1, 0), PairPlan::new(Vec::new(), 1, 0));
        let key = CacheKey { format: 1, model: "m".into(), data: "d".into() };
        assert!(read_cache(&path, &key, [&train, &eval]).is_none());
        std::fs::write(&path, "{\"key\": ").unwrap();
        assert!(read_cache(&path, &key, [&train, &eval]).is_none());
        write_cache(&path, &CacheFile { key: key.clone(), train: vec![], eval: vec![] }).unwrap();
        assert!(read_cache(&path, &key, [&train, &eval]).is_some());
        let other = CacheKey { model: "other".into(), ..key };
        assert!(read_cache(&path, &other, [&train, &eval]).is_none());
    }
}
