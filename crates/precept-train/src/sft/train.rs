//! [`train_sft`]: the SFT loop — data, LoRA or full fine-tuning, accumulation, clipping,
//! schedule, evaluation, metrics, checkpoints and exact resume.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::ElementConversion;
use precept_data::{prepare_file, PreparationStats, PrepareOptions, TokenizedExample, Tokenizer};
use precept_model::checkpoint::{load_adapter, load_model, save_adapter, save_model, SaveOptions};
use precept_model::lora::Trainable;
use precept_model::LlamaForCausalLM;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Map, Value};

use super::batches::{BatchPlan, BatchTensors};
use super::config::{Method, SftConfig};
use crate::checkpoint::{load_optimizer, Checkpoints, TrainerState};
use crate::error::{Result, TrainError};
use crate::loss::{learnt_token_logits, next_token_loss, CrossEntropyBackend, LearntTokens, SftLoss};
use crate::metrics::MetricsLog;
use crate::optim::{clip_factor, global_grad_norm, AdamW};
use crate::run_config::write_run_config;
use crate::schedule::LrSchedule;

/// Folder of the final PEFT adapter inside the run folder.
pub const ADAPTER_DIR: &str = "adapter";
/// Folder of the final full model (full fine-tuning) inside the run folder.
pub const MODEL_DIR: &str = "model";
/// Folder of the base with the adapter merged in (`merge = true`).
pub const MERGED_DIR: &str = "merged";

/// The extent of a run, known before its first step.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// The step the run starts from (non-zero when resumed).
    pub start_step: u64,
    /// The step it ends at.
    pub total_steps: u64,
    /// Training examples after preparation.
    pub train_examples: usize,
    /// Evaluation examples.
    pub eval_examples: usize,
    /// What preparing the training data kept, cut and skipped.
    pub stats: PreparationStats,
}

/// Hooks for progress display; every method has an empty default.
pub trait TrainObserver {
    /// Before the first step.
    fn on_start(&mut self, _plan: &RunPlan) {}
    /// After every optimiser step, with its metrics record (TRL names).
    fn on_step(&mut self, _record: &Map<String, Value>) {}
    /// After every evaluation.
    fn on_eval(&mut self, _step: u64, _eval_loss: f64) {}
    /// After every checkpoint.
    fn on_checkpoint(&mut self, _dir: &Path) {}
}

/// What a finished run produced.
#[derive(Debug, Clone)]
pub struct SftOutcome {
    /// The PEFT adapter folder (LoRA) or the full model folder.
    pub output: PathBuf,
    /// The merged model folder, when asked for.
    pub merged: Option<PathBuf>,
    /// Steps completed.
    pub steps: u64,
    /// The last step's training loss.
    pub final_loss: f64,
    /// The final evaluation loss, when there is evaluation data.
    pub eval_loss: Option<f64>,
}

/// Runs SFT as `config` says on `device`; with `resume`, continues from the run folder's latest
/// checkpoint (ending with the weights an uninterrupted run would have had).
///
/// # Errors
/// Invalid settings, unreadable data or model, a run folder that already holds another run's
/// checkpoints, and a non-finite loss or gradient (the last checkpoint is kept).
pub fn train_sft<B: CrossEntropyBackend>(
    config: &SftConfig,
    device: &B::Device,
    resume: bool,
    observer: &mut dyn TrainObserver,
) -> Result<SftOutcome> {
    config.validate()?;
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
    write_run_config(config, out, latest.is_some())?;

    let (train, eval, stats) = prepare_data(config)?;
    let eval_count = eval.len();
    let train_count = train.len();
    let batch_size = config.per_device_train_batch_size;
    let mut plan = BatchPlan::new(train, config.packing, config.max_length, batch_size, config.seed);
    let eval_plan = BatchPlan::new(eval, config.packing, config.max_length, batch_size, config.seed);
    let accumulation = config.gradient_accumulation_steps as u64;
    let per_epoch = plan.batches_per_epoch() as u64;
    let total_steps = config
        .max_steps
        .unwrap_or_else(|| ((config.num_train_epochs * per_epoch as f64) / accumulation as f64).ceil().max(1.0) as u64);
    let warmup_steps = config.warmup_steps.unwrap_or((config.warmup_ratio * total_steps as f64).ceil() as u64);
    let schedule = LrSchedule { peak: config.learning_rate, warmup_steps, total_steps, kind: config.lr_scheduler_type };

    let (model_config, base) = load_model::<B>(&config.model, device)?;
    let (mut model, mut optimizer, mut state) = match &latest {
        Some((dir, state)) => {
            let model = match config.method {
                Method::Lora => load_adapter(base, dir)?.0,
                Method::Full => load_model::<B>(dir, device)?.1.set_trainable(Trainable::All),
            };
            let optimizer = load_optimizer(dir, config.optimizer.clone(), state.step, &model)?;
            (model, optimizer, *state)
        }
        None => {
            B::seed(device, config.seed);
            let model = match config.method {
                Method::Lora => base.with_lora(&config.lora)?,
                Method::Full => base.set_trainable(Trainable::All),
            };
            (model, AdamW::new(config.optimizer.clone()), TrainerState { step: 0, num_tokens: 0 })
        }
    };
    let mut metrics = MetricsLog::open(out, state.step)?;
    observer.on_start(&RunPlan {
        start_step: state.step,
        total_steps,
        train_examples: train_count,
        eval_examples: eval_count,
        stats,
    });

    let mut final_loss = f64::NAN;
    let mut eval_loss = None;
    if config.eval_on_start && state.step == 0 && eval_count > 0 {
        let value = evaluate(&model.valid(), &eval_plan, device);
        metrics.log(&as_object(json!({ "eval_loss": value, "epoch": 0.0, "step": 0 })))?;
        observer.on_eval(0, value);
    }
    for step in state.step..total_steps {
        let started = Instant::now();
        // Dropout draws from the backend's generator: seeding it per step makes a resumed run
        // draw what an uninterrupted one would.
        B::seed(device, config.seed.wrapping_mul(1_000_003).wrapping_add(step));
        let batches: Vec<BatchTensors<B>> = (step * accumulation..(step + 1) * accumulation)
            .map(|index| BatchTensors::new(&plan.micro_batch(index), device))
            .collect();
        let loss_tokens: usize = batches.iter().map(|b| b.loss_tokens).sum();
        let input_tokens: usize = batches.iter().map(|b| b.input_tokens).sum();
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        let mut accumulator = GradientsAccumulator::new();
        for batch in batches {
            let SftLoss { loss, correct: batch_correct } =
                next_token_loss(&model, batch.ids, &batch.inputs, batch.loss_mask);
            correct += batch_correct;
            loss_sum += loss.sum.clone().into_scalar().elem::<f64>();
            let grads = GradientsParams::from_grads(loss.normalised(loss_tokens).backward(), &model);
            accumulator.accumulate(&model, grads);
        }
        let number = step + 1;
        let loss = loss_sum / loss_tokens.max(1) as f64;
        if !loss.is_finite() {
            return Err(TrainError::NonFinite { step: number, what: "loss", value: loss });
        }
        let grads = accumulator.grads();
        let grad_norm = global_grad_norm(&model, &grads);
        if !grad_norm.is_finite() {
            return Err(TrainError::NonFinite { step: number, what: "grad_norm", value: grad_norm });
        }
        let learning_rate = schedule.lr(step);
        model = optimizer.step(learning_rate, model, grads, clip_factor(grad_norm, config.max_grad_norm));
        state = TrainerState { step: number, num_tokens: state.num_tokens + input_tokens as u64 };
        final_loss = loss;

        let epoch = (number * accumulation) as f64 / per_epoch.max(1) as f64;
        let record = as_object(json!({
            "loss": loss,
            "learning_rate": learning_rate,
            "grad_norm": grad_norm,
            "mean_token_accuracy": correct as f64 / loss_tokens.max(1) as f64,
            "num_tokens": state.num_tokens,
            "epoch": epoch,
            "step": number,
            "tokens_per_second": input_tokens as f64 / started.elapsed().as_secs_f64(),
        }));
        observer.on_step(&record);
        let last = number == total_steps;
        if number % config.logging_steps == 0 || last {
            metrics.log(&record)?;
        }
        let eval_due = config.eval_steps.is_some_and(|every| number % every == 0) || last;
        if eval_due && eval_count > 0 {
            let value = evaluate(&model.valid(), &eval_plan, device);
            eval_loss = Some(value);
            metrics.log(&as_object(json!({ "eval_loss": value, "epoch": epoch, "step": number })))?;
            observer.on_eval(number, value);
        }
        if number % config.save_steps == 0 || last {
            let saved = checkpoints.save(state, &optimizer, &model, config.save_total_limit, |dir| {
                save_trained(config, &model.valid(), &model_config, dir)
            })?;
            observer.on_checkpoint(&saved);
        }
    }

    let inner = model.valid();
    let (output, merged) = match config.method {
        Method::Lora => {
            let adapter = out.join(ADAPTER_DIR);
            save_trained(config, &inner, &model_config, &adapter)?;
            let merged = if config.merge {
                let dir = out.join(MERGED_DIR);
                let options = SaveOptions { copy_from: Some(&config.model), ..SaveOptions::default() };
                save_model(&inner.merge_lora(), &model_config, &dir, &options)?;
                Some(dir)
            } else {
                None
            };
            (adapter, merged)
        }
        Method::Full => {
            let dir = out.join(MODEL_DIR);
            save_trained(config, &inner, &model_config, &dir)?;
            (dir, None)
        }
    };
    Ok(SftOutcome { output, merged, steps: state.step, final_loss, eval_loss })
}

/// Writes what the run trains into `dir`: the PEFT adapter, or the whole model in float32.
fn save_trained<B: Backend>(
    config: &SftConfig,
    model: &LlamaForCausalLM<B>,
    model_config: &precept_model::LlamaConfig,
    dir: &Path,
) -> Result<()> {
    match config.method {
        Method::Lora => save_adapter(model, &config.lora, &config.model.to_string_lossy(), dir)?,
        Method::Full => {
            let options = SaveOptions { copy_from: Some(&config.model), ..SaveOptions::default() };
            save_model(model, model_config, dir, &options)?;
        }
    }
    Ok(())
}

/// Mean next-token loss over every evaluation row (logits only where a learnt token is
/// predicted, as in training).
fn evaluate<B: Backend>(model: &LlamaForCausalLM<B>, plan: &BatchPlan, device: &B::Device) -> f64 {
    let (mut sum, mut tokens) = (0.0f64, 0usize);
    for rows in plan.in_order() {
        let batch = BatchTensors::<B>::new(&rows, device);
        if let Ok(LearntTokens { logits, targets, rows }) =
            learnt_token_logits(model, batch.ids, &batch.inputs, batch.loss_mask)
        {
            let picked = log_softmax(logits, 1).gather(1, targets.unsqueeze_dim(1));
            sum -= picked.sum().into_scalar().elem::<f64>();
            tokens += rows.len();
        }
    }
    sum / tokens.max(1) as f64
}

/// Training and evaluation examples: `eval_data` when given, else a seeded `eval_ratio` share.
fn prepare_data(config: &SftConfig) -> Result<(Vec<TokenizedExample>, Vec<TokenizedExample>, PreparationStats)> {
    let tokenizer = Tokenizer::from_dir(&config.model)?;
    let template = tokenizer.chat_template().ok_or_else(|| {
        TrainError::setting("model", format!("{}: the tokenizer has no chat template", config.model.display()))
    })?;
    let options = PrepareOptions { max_length: Some(config.max_length), on_mismatch: config.on_mismatch };
    let (mut train, stats) = prepare_file(&config.data, &tokenizer, template, options)?;
    let eval = match &config.eval_data {
        Some(path) => prepare_file(path, &tokenizer, template, options)?.0,
        None => {
            let held_out = (train.len() as f64 * config.eval_ratio).ceil() as usize;
            let mut order: Vec<usize> = (0..train.len()).collect();
            order.shuffle(&mut StdRng::seed_from_u64(config.seed));
            let mut eval_indices: Vec<usize> = order[..held_out.min(order.len())].to_vec();
            eval_indices.sort_unstable();
            let mut eval = Vec::with_capacity(eval_indices.len());
            for &index in eval_indices.iter().rev() {
                eval.push(train.remove(index));
            }
            eval.reverse();
            eval
        }
    };
    if train.is_empty() {
        return Err(TrainError::setting(
            "data",
            format!("{}: no training examples left after preparation", config.data.display()),
        ));
    }
    Ok((train, eval, stats))
}

fn as_object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
