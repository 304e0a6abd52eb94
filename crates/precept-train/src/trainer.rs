//! [`train`]: the training loop every objective shares — run folder, LoRA or full fine-tuning,
//! gradient accumulation, clipping, schedule, evaluation, metrics, checkpoints and exact resume.
//! An [`Objective`] (SFT or a preference method) says what a step's loss and metrics are.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use precept_data::{PreparationStats, ProgressEvent, ProgressSink};
use precept_model::checkpoint::{load_adapter, load_model, save_adapter, save_model, SaveOptions};
use precept_model::lora::Trainable;
use precept_model::{LlamaConfig, LlamaForCausalLM};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::checkpoint::{load_optimizer, Checkpoints, TrainerState};
use crate::error::{Result, TrainError};
use crate::metrics::MetricsLog;
use crate::monitor::{keep_best, Checked, Monitor, Snapshot, BEST_DIR};
use crate::optim::{clip_factor, global_grad_norm, AdamW};
use crate::run_config::write_run_config;
use crate::schedule::LrSchedule;
use crate::settings::{TrainConfig, Tuning};
use crate::TrainBackend;

/// Folder of the final PEFT adapter inside the run folder.
pub const ADAPTER_DIR: &str = "adapter";
/// Folder of the final full model (full fine-tuning) inside the run folder.
pub const MODEL_DIR: &str = "model";
/// Folder of the base with the adapter merged in (`merge = true`).
pub const MERGED_DIR: &str = "merged";

/// The data an objective trains and evaluates on.
#[derive(Debug, Clone, Default)]
pub struct DataSummary {
    /// Training examples (SFT rows or preference pairs) after preparation.
    pub train_examples: usize,
    /// Evaluation examples.
    pub eval_examples: usize,
    /// What preparing the training data kept, cut and skipped.
    pub stats: PreparationStats,
    /// Tokens in the longest training or evaluation row.
    pub longest_row: usize,
}

/// What one optimiser step of an objective produced.
#[derive(Debug)]
pub struct StepOutput {
    /// Gradients accumulated over the step's micro-batches, already normalised.
    pub grads: GradientsParams,
    /// The step's loss.
    pub loss: f64,
    /// Real (non-padding) input tokens the step read.
    pub input_tokens: usize,
    /// The objective's own metrics, with TRL's names (`mean_token_accuracy`, `rewards/chosen`, …).
    pub metrics: Map<String, Value>,
}

/// What a training run optimises: SFT's next-token loss or a preference loss.
pub trait Objective<B: AutodiffBackend> {
    /// The data the run sees.
    fn data(&self) -> DataSummary;
    /// Micro-batches in one pass over the training data.
    fn batches_per_epoch(&self) -> usize;
    /// Loss, gradients and metrics of one optimiser step made of the run's micro-batches
    /// `micro_batches` (counting from zero across epochs).
    ///
    /// # Errors
    /// What stops the step (an objective that samples or writes files may fail).
    fn step(&mut self, model: &LlamaForCausalLM<B>, micro_batches: Range<u64>) -> Result<StepOutput>;
    /// Metrics on the evaluation data (`loss` first; the loop adds the `eval_` prefix), or
    /// `None` when there is none.
    fn evaluate(&self, model: &LlamaForCausalLM<B::InnerBackend>) -> Option<Map<String, Value>>;
}

/// What a finished run produced.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The PEFT adapter folder (LoRA) or the full model folder.
    pub output: PathBuf,
    /// The merged model folder, when asked for.
    pub merged: Option<PathBuf>,
    /// Steps completed.
    pub steps: u64,
    /// The last step's training loss.
    pub final_loss: f64,
    /// The final evaluation record (`eval_loss`, …), empty without evaluation data.
    pub eval: Map<String, Value>,
}

impl TrainOutcome {
    /// The final evaluation loss, when there is evaluation data.
    pub fn eval_loss(&self) -> Option<f64> {
        self.eval.get("eval_loss").and_then(Value::as_f64)
    }
}

/// A run folder opened for training: its checkpoints, the latest one, and the base model.
pub struct RunFolder<B: Backend> {
    checkpoints: Checkpoints,
    latest: Option<(PathBuf, TrainerState)>,
    model_config: LlamaConfig,
    /// The base model, frozen, as loaded from `config.model`.
    pub base: LlamaForCausalLM<B>,
}

impl<B: Backend> RunFolder<B> {
    /// Creates or reopens `config.out`, writes (or, resuming, checks) the resolved `settings`,
    /// and loads the base model.
    ///
    /// # Errors
    /// A folder that already holds a run when not resuming, settings that differ from the
    /// resumed run's, and an unreadable model.
    pub fn open(config: &TrainConfig, settings: &impl Serialize, resume: bool, device: &B::Device) -> Result<Self> {
        let out = &config.out;
        std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
        let checkpoints = Checkpoints::new(out);
        let latest = checkpoints.latest()?;
        if latest.is_some() && !resume {
            return Err(TrainError::setting(
                "out",
                format!("{} already holds a run; pass --resume to continue it or choose another folder", out.display()),
            ));
        }
        write_run_config(settings, out, latest.is_some())?;
        let (model_config, base) = load_model::<B>(&config.model, device)?;
        Ok(Self { checkpoints, latest, model_config, base })
    }
}

/// A [`Monitor`] of a run's weights, if any.
pub type Watch<'a, B> = Option<&'a mut dyn Monitor<<B as AutodiffBackend>::InnerBackend>>;

/// Trains `folder.base` on `objective` as `config` says: fresh adapters (or every weight)
/// seeded from `config.seed`, or the state of the folder's latest checkpoint, so that a resumed
/// run ends with the weights an uninterrupted one would have had. A `monitor` checks the
/// weights every few steps: a passing check's checkpoint is kept as [`BEST_DIR`], and a check
/// may stop the run.
///
/// # Errors
/// Rows longer than the model's positions, unwritable checkpoints or metrics, a non-finite loss
/// or gradient (the last checkpoint is kept), and a monitor's failure or stop.
pub fn train<B: TrainBackend, O: Objective<B>>(
    config: &TrainConfig,
    folder: RunFolder<B>,
    objective: &mut O,
    device: &B::Device,
    progress: &mut dyn ProgressSink,
    mut monitor: Watch<'_, B>,
) -> Result<TrainOutcome> {
    let RunFolder { checkpoints, latest, model_config, base } = folder;
    if config.safety.enabled() && monitor.is_none() {
        progress.report(ProgressEvent::Note(
            "`safety.suite` is set but nothing gates this run's weights (no monitor was given)",
        ));
    }
    let data = objective.data();
    if data.longest_row > model_config.max_position_embeddings {
        return Err(TrainError::setting(
            "max_length",
            format!(
                "rows of up to {} tokens are longer than the model's max_position_embeddings ({}); lower it",
                data.longest_row, model_config.max_position_embeddings
            ),
        ));
    }
    let accumulation = config.gradient_accumulation_steps as u64;
    let per_epoch = objective.batches_per_epoch() as u64;
    let total_steps = config
        .max_steps
        .unwrap_or_else(|| ((config.num_train_epochs * per_epoch as f64) / accumulation as f64).ceil().max(1.0) as u64);
    let warmup_steps = config.warmup_steps.unwrap_or((config.warmup_ratio * total_steps as f64).ceil() as u64);
    let schedule = LrSchedule { peak: config.learning_rate, warmup_steps, total_steps, kind: config.lr_scheduler_type };

    let (mut model, mut optimizer, mut state) = match &latest {
        Some((dir, state)) => {
            let model = match config.tuning {
                Tuning::Lora => load_adapter(base, dir)?.0,
                Tuning::Full => load_model::<B>(dir, device)?.1.set_trainable(Trainable::All),
            };
            let optimizer = load_optimizer(dir, config.optimizer.clone(), state.step, &model)?;
            (model, optimizer, *state)
        }
        None => {
            B::seed(device, config.seed);
            let model = match config.tuning {
                Tuning::Lora => base.with_lora(&config.lora)?,
                Tuning::Full => base.set_trainable(Trainable::All),
            };
            (model, AdamW::new(config.optimizer.clone()), TrainerState { step: 0, num_tokens: 0 })
        }
    };
    let mut report = Reporter { metrics: MetricsLog::open(&config.out, state.step)?, progress };
    let stats = &data.stats;
    report.progress.report(ProgressEvent::Note(&format!(
        "{} training and {} eval examples ({} truncated, {} dropped as too long); steps {}..{total_steps}",
        data.train_examples, data.eval_examples, stats.truncated, stats.dropped_for_length, state.step
    )));
    let start = ProgressEvent::Start { phase: "training", unit: "steps", total: total_steps, done: state.step };
    report.progress.report(start);

    let mut final_loss = f64::NAN;
    let mut eval = Map::new();
    if config.eval_on_start && state.step == 0 {
        evaluate(objective, &model, 0, 0.0, &mut report)?;
    }
    for step in state.step..total_steps {
        let started = Instant::now();
        // Dropout draws from the backend's generator: seeding it per step makes a resumed run
        // draw what an uninterrupted one would.
        B::seed(device, config.seed.wrapping_mul(1_000_003).wrapping_add(step));
        let output = objective.step(&model, step * accumulation..(step + 1) * accumulation)?;
        let number = step + 1;
        if !output.loss.is_finite() {
            return Err(TrainError::NonFinite { step: number, what: "loss", value: output.loss });
        }
        let grad_norm = global_grad_norm(&model, &output.grads);
        if !grad_norm.is_finite() {
            return Err(TrainError::NonFinite { step: number, what: "grad_norm", value: grad_norm });
        }
        let learning_rate = schedule.lr(step);
        model = optimizer.step(learning_rate, model, output.grads, clip_factor(grad_norm, config.max_grad_norm));
        state = TrainerState { step: number, num_tokens: state.num_tokens + output.input_tokens as u64 };
        final_loss = output.loss;

        let epoch = (number * accumulation) as f64 / per_epoch.max(1) as f64;
        let mut record = Map::new();
        record.insert("loss".into(), json!(output.loss));
        record.insert("learning_rate".into(), json!(learning_rate));
        record.insert("grad_norm".into(), json!(grad_norm));
        record.extend(output.metrics);
        record.insert("num_tokens".into(), json!(state.num_tokens));
        record.insert("epoch".into(), json!(epoch));
        record.insert("step".into(), json!(number));
        record.insert("tokens_per_second".into(), json!(output.input_tokens as f64 / started.elapsed().as_secs_f64()));
        let last = number == total_steps;
        report.step(&record, number % config.logging_steps == 0 || last)?;
        if config.eval_steps.is_some_and(|every| number % every == 0) || last {
            eval = evaluate(objective, &model, number, epoch, &mut report)?;
        }
        let checked = match monitor.as_deref_mut() {
            Some(monitor) if number % monitor.every() == 0 || last => {
                let snapshot = Snapshot {
                    step: number,
                    model: &model.valid(),
                    model_config: &model_config,
                    base_dir: &config.model,
                };
                Some(check(monitor, &snapshot, epoch, &mut report)?)
            }
            _ => None,
        };
        let best = config.out.join(BEST_DIR);
        if let Some(Checked { stop: Some(reason), .. }) = checked {
            return Err(TrainError::Stopped { step: number, reason, best: best.is_dir().then_some(best) });
        }
        let passed = checked.is_some_and(|checked| checked.passed);
        if number % config.save_steps == 0 || last || passed {
            let dir = checkpoints.save(state, &optimizer, &model, config.save_total_limit, |dir| {
                save_trained(config, &model.valid(), &model_config, dir)
            })?;
            if passed {
                keep_best(&dir, &best)?;
            }
        }
    }

    let (output, merged) = save_outputs(config, &model.valid(), &model_config)?;
    Ok(TrainOutcome { output, merged, steps: state.step, final_loss, eval })
}

/// Where a run's records go: the metrics file and the progress display.
struct Reporter<'a> {
    metrics: MetricsLog,
    progress: &'a mut dyn ProgressSink,
}

impl Reporter<'_> {
    /// Shows a step's record, and logs it when `log`.
    fn step(&mut self, record: &Map<String, Value>, log: bool) -> Result<()> {
        let done = record.get("step").and_then(Value::as_u64).unwrap_or_default();
        self.progress.report(ProgressEvent::Advance { done, metrics: Some(record) });
        if log {
            self.metrics.log(record)?;
        }
        Ok(())
    }
}

/// Evaluates `model` on the objective's evaluation data, logs the record with `eval_` names
/// and returns it (empty without evaluation data).
fn evaluate<B: AutodiffBackend, O: Objective<B>>(
    objective: &O,
    model: &LlamaForCausalLM<B>,
    step: u64,
    epoch: f64,
    report: &mut Reporter<'_>,
) -> Result<Map<String, Value>> {
    let Some(values) = objective.evaluate(&model.valid()) else { return Ok(Map::new()) };
    let mut record: Map<String, Value> = values.into_iter().map(|(k, v)| (format!("eval_{k}"), v)).collect();
    record.insert("epoch".into(), json!(epoch));
    record.insert("step".into(), json!(step));
    report.metrics.log(&record)?;
    report.progress.report(ProgressEvent::Evaluated(&record));
    Ok(record)
}

/// Checks `snapshot` with `monitor` and logs the check's record at its step.
fn check<B: Backend>(
    monitor: &mut dyn Monitor<B>,
    snapshot: &Snapshot<'_, B>,
    epoch: f64,
    report: &mut Reporter<'_>,
) -> Result<Checked> {
    let step = snapshot.step;
    let mut checked = monitor.check(snapshot).map_err(|error| TrainError::Monitor { step, error })?;
    checked.record.insert("epoch".into(), json!(epoch));
    checked.record.insert("step".into(), json!(step));
    report.metrics.log(&checked.record)?;
    report.progress.report(ProgressEvent::Note(&format!("step {step}: {}", checked.summary)));
    Ok(checked)
}

/// Writes the run's final outputs: the adapter (and the merged model when asked for) or the
/// full model.
fn save_outputs<B: Backend>(
    config: &TrainConfig,
    model: &LlamaForCausalLM<B>,
    model_config: &LlamaConfig,
) -> Result<(PathBuf, Option<PathBuf>)> {
    let out = &config.out;
    match config.tuning {
        Tuning::Lora => {
            let adapter = out.join(ADAPTER_DIR);
            save_trained(config, model, model_config, &adapter)?;
            if !config.merge {
                return Ok((adapter, None));
            }
            let dir = out.join(MERGED_DIR);
            let options = SaveOptions { copy_from: Some(&config.model), ..SaveOptions::default() };
            save_model(&model.clone().merge_lora(), model_config, &dir, &options)?;
            Ok((adapter, Some(dir)))
        }
        Tuning::Full => {
            let dir = out.join(MODEL_DIR);
            save_trained(config, model, model_config, &dir)?;
            Ok((dir, None))
        }
    }
}

/// Writes what the run trains into `dir`: the PEFT adapter, or the whole model in float32.
fn save_trained<B: Backend>(
    config: &TrainConfig,
    model: &LlamaForCausalLM<B>,
    model_config: &LlamaConfig,
    dir: &Path,
) -> Result<()> {
    match config.tuning {
        Tuning::Lora => save_adapter(model, &config.lora, &config.model.to_string_lossy(), dir)?,
        Tuning::Full => {
            let options = SaveOptions { copy_from: Some(&config.model), ..SaveOptions::default() };
            save_model(model, model_config, dir, &options)?;
        }
    }
    Ok(())
}

/// Moves a seeded `ratio` share of `examples` (rounded up) out into an evaluation split; both
/// keep their order.
pub(crate) fn hold_out<T>(examples: &mut Vec<T>, ratio: f64, seed: u64) -> Vec<T> {
    let held_out = (examples.len() as f64 * ratio).ceil() as usize;
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let mut indices: Vec<usize> = order[..held_out.min(order.len())].to_vec();
    indices.sort_unstable();
    let mut eval: Vec<T> = indices.iter().rev().map(|&index| examples.remove(index)).collect();
    eval.reverse();
    eval
}
