//! [`train_grpo`]: prompts, reward functions and GRPO's objective, trained by the shared loop
//! ([`crate::trainer`]). Each step samples completions with the current policy, scores them,
//! turns the rewards into group-relative advantages and minimises TRL's clipped surrogate.

use std::ops::Range;
use std::path::Path;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{ElementConversion, Tensor};
use precept_data::{JsonlReader, ProgressEvent, ProgressSink, PromptOnlyRecord, Tokenizer};
use precept_model::{from_host, host_values, LlamaForCausalLM};
use serde_json::{json, Map, Value};

use super::config::GrpoConfig;
use super::logps::{gathered_logps, CompletionRows};
use super::rewards::Rewards;
use super::rollout::{sample, PromptOrder, Rollout};
use crate::error::{Result, TrainError};
use crate::loss::{CompletionLogps, GrpoLoss, GrpoLossType};
use crate::metrics::MetricsLog;
use crate::settings::Tuning;
use crate::trainer::{train, DataSummary, Objective, RunFolder, StepOutput, TrainOutcome, Watch};
use crate::TrainBackend;

/// The sampled completions of a run, one JSON object per completion, in its folder.
pub const COMPLETIONS_FILE: &str = "completions.jsonl";

/// Runs GRPO as `config` says on `device` with the built-in reward functions; with `resume`,
/// continues from the run folder's latest checkpoint (ending with the weights an uninterrupted
/// run would have had).
///
/// A `monitor` checks the weights every few steps ([`train`]).
///
/// # Errors
/// Those of [`train_grpo_with`], and [`TrainError::RewardMissing`] when `config` names a reward
/// the caller computes (`remote`).
pub fn train_grpo<B: TrainBackend>(
    config: &GrpoConfig,
    device: &B::Device,
    resume: bool,
    progress: &mut dyn ProgressSink,
    monitor: Watch<'_, B>,
) -> Result<TrainOutcome> {
    train_grpo_with::<B>(config, Rewards::new(config, Vec::new())?, device, resume, progress, monitor)
}

/// Runs GRPO as `config` says on `device`, scoring completions with `rewards` (built by
/// [`Rewards::new`] from `config`, with the caller's reward functions plugged in); `resume` as
/// in [`train_grpo`].
///
/// # Errors
/// Invalid settings, unreadable prompts or model, prompts a reward function cannot score, a
/// run folder that already holds another run's checkpoints, a reward function that fails
/// (checkpoints and logged completions of earlier steps are kept), and a non-finite loss or
/// gradient (the last checkpoint is kept).
pub fn train_grpo_with<B: TrainBackend>(
    config: &GrpoConfig,
    rewards: Rewards,
    device: &B::Device,
    resume: bool,
    progress: &mut dyn ProgressSink,
    monitor: Watch<'_, B>,
) -> Result<TrainOutcome> {
    config.validate()?;
    let prompts = read_prompts(&config.train.data, config)?;
    rewards.check(&prompts, &config.train.data)?;
    let tokenizer = Tokenizer::from_dir(&config.train.model)?;
    let prompt_ids = tokenize_prompts(&prompts, &tokenizer, config)?;
    let folder = RunFolder::<B>::open(&config.train, config, resume, device)?;
    let longest_prompt = prompt_ids.iter().map(Vec::len).max().unwrap_or(0);
    let positions = folder.base.max_positions();
    if longest_prompt + config.loss.max_completion_length > positions {
        return Err(TrainError::setting(
            "max_completion_length",
            format!(
                "prompts of up to {longest_prompt} tokens plus {} completion tokens exceed the model's {positions} \
                 positions; lower it or max_prompt_length",
                config.loss.max_completion_length
            ),
        ));
    }
    let reference = match (config.loss.beta != 0.0, config.train.tuning) {
        (false, _) => ReferencePolicy::None,
        (true, Tuning::Lora) => ReferencePolicy::AdaptersOff,
        (true, Tuning::Full) => ReferencePolicy::Model(Box::new(folder.base.valid())),
    };
    progress.report(ProgressEvent::Note(&format!(
        "{} prompts, {} per step × {} completions; rewards: {}",
        prompts.len(),
        config.prompts_per_step(),
        config.num_generations,
        rewards.names().join(", ")
    )));
    let data = DataSummary {
        train_examples: prompts.len(),
        longest_row: longest_prompt + config.loss.max_completion_length,
        ..DataSummary::default()
    };
    let mut objective = GrpoObjective::<B> {
        order: PromptOrder::new(prompts.len(), config.train.seed),
        config: config.clone(),
        prompts,
        prompt_ids,
        tokenizer,
        rewards,
        reference,
        rollout: None,
        log: None,
        data,
        device: device.clone(),
    };
    train(&config.train, folder, &mut objective, device, progress, monitor)
}

/// Reads the prompts of `path` and checks that the built-in rewards of `config` can score each,
/// before a run (whose data is another file) starts; returns how many there are.
///
/// # Errors
/// An unreadable file or record, a file with no prompts, and the first prompt a reward cannot
/// score, naming `path` and its line.
pub fn check_prompts(path: &Path, config: &GrpoConfig) -> Result<usize> {
    let prompts = read_prompts(path, config)?;
    Rewards::built_in(config).check(&prompts, path)?;
    Ok(prompts.len())
}

/// Every prompt of `path`, with the configured system prompts on those without one.
fn read_prompts(path: &Path, config: &GrpoConfig) -> Result<Vec<PromptOnlyRecord>> {
    let mut prompts = Vec::new();
    for (_, record) in JsonlReader::<_, PromptOnlyRecord>::open(path)? {
        let record = record?;
        let index = prompts.len();
        prompts.push(match config.system.as_ref().and_then(|s| s.for_prompt(index)) {
            Some(system) => record.with_default_system(system),
            None => record,
        });
    }
    if prompts.is_empty() {
        return Err(TrainError::setting("data", format!("{}: holds no prompts", path.display())));
    }
    Ok(prompts)
}

/// Each prompt's ids through the chat template with the generation prompt, keeping the last
/// `max_prompt_length` (TRL truncates on the left).
fn tokenize_prompts(prompts: &[PromptOnlyRecord], tokenizer: &Tokenizer, config: &GrpoConfig) -> Result<Vec<Vec<u32>>> {
    let model = &config.train.model;
    let template = tokenizer.chat_template().ok_or_else(|| {
        TrainError::setting("model", format!("{}: the tokenizer has no chat template", model.display()))
    })?;
    prompts
        .iter()
        .map(|prompt| {
            let ids = tokenizer.encode(&template.render(&prompt.messages, true)?, false)?;
            let keep = ids.len().saturating_sub(config.max_prompt_length);
            Ok(ids[keep..].to_vec())
        })
        .collect()
}

/// Where the reference log-probabilities of the KL term come from.
enum ReferencePolicy<B: TrainBackend> {
    /// No KL term (`beta = 0`).
    None,
    /// The policy with its LoRA adapters switched off.
    AdaptersOff,
    /// The base model, kept beside a fully fine-tuned policy.
    Model(Box<LlamaForCausalLM<B::InnerBackend>>),
}

/// GRPO's objective over a run's prompts.
struct GrpoObjective<B: TrainBackend> {
    config: GrpoConfig,
    prompts: Vec<PromptOnlyRecord>,
    prompt_ids: Vec<Vec<u32>>,
    order: PromptOrder,
    tokenizer: Tokenizer,
    rewards: Rewards,
    reference: ReferencePolicy<B>,
    /// The batch of completions being trained on.
    rollout: Option<Rollout>,
    /// `completions.jsonl`, opened at the first step (so that a resumed run drops the lines
    /// of the steps it redoes).
    log: Option<MetricsLog>,
    data: DataSummary,
    device: B::Device,
}

impl<B: TrainBackend> GrpoObjective<B> {
    /// Samples and scores the completions of batch `generation`, sampled at optimiser step
    /// `step` (counting from zero), and logs them.
    fn roll_out(&mut self, model: &LlamaForCausalLM<B>, generation: u64, step: u64) -> Result<(Rollout, [f64; 2])> {
        let per_batch = self.config.prompts_per_step() as u64;
        let indices: Vec<usize> =
            (generation * per_batch..(generation + 1) * per_batch).map(|i| self.order.prompt(i)).collect();
        let prompts: Vec<&[u32]> = indices.iter().map(|&i| &self.prompt_ids[i][..]).collect();
        let policy = model.valid();
        let started = Instant::now();
        let seed = self.config.train.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(generation);
        let sampled = sample(&policy, &self.tokenizer, &prompts, &self.config, seed)?;
        let generation_time = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut rollout = Rollout::score::<B::InnerBackend>(
            generation,
            &self.prompts,
            &indices,
            sampled,
            &self.rewards,
            &self.config,
            &self.device,
        )?;
        let scoring_time = started.elapsed().as_secs_f64();
        if self.config.num_iterations > 1 {
            let mut old = Vec::with_capacity(rollout.samples.len());
            for chunk in self.chunks(&rollout) {
                let values = host_values(chunk.token_logps(&policy, self.config.temperature, gathered_logps));
                let width = chunk.width();
                old.extend(
                    chunk.lengths().iter().enumerate().map(|(r, &len)| values[r * width..r * width + len].to_vec()),
                );
            }
            rollout.old_logps = Some(old);
        }
        if self.log.is_none() {
            self.log = Some(MetricsLog::open_file(self.config.train.out.join(COMPLETIONS_FILE), step)?);
        }
        if let Some(log) = &mut self.log {
            for record in rollout.records(step + 1, &self.prompts, &self.rewards.names()) {
                log.log(&record)?;
            }
        }
        Ok((rollout, [generation_time, scoring_time]))
    }

    /// The rollout's completions in micro-batches of `per_device_train_batch_size` rows.
    fn chunks(&self, rollout: &Rollout) -> Vec<CompletionRows> {
        let size = self.config.train.per_device_train_batch_size;
        rollout
            .samples
            .chunks(size)
            .map(|chunk| CompletionRows::new(chunk.iter().map(|s| (&self.prompt_ids[s.prompt][..], &s.ids[..]))))
            .collect()
    }

    /// The reference's per-token log-probabilities of `rows`, when there is a KL term.
    fn reference_logps(&self, model: &LlamaForCausalLM<B>, rows: &CompletionRows) -> Option<Tensor<B, 2>> {
        let temperature = self.config.temperature;
        let values = match &self.reference {
            ReferencePolicy::None => return None,
            ReferencePolicy::AdaptersOff => {
                rows.token_logps(&model.valid().without_lora(), temperature, gathered_logps)
            }
            ReferencePolicy::Model(reference) => rows.token_logps(reference, temperature, gathered_logps),
        };
        Some(Tensor::from_inner(values))
    }
}

impl<B: TrainBackend> Objective<B> for GrpoObjective<B> {
    fn data(&self) -> DataSummary {
        self.data.clone()
    }

    fn batches_per_epoch(&self) -> usize {
        let batches = self.prompts.len().div_ceil(self.config.prompts_per_step().max(1));
        batches * self.config.num_iterations * self.config.train.gradient_accumulation_steps
    }

    fn step(&mut self, model: &LlamaForCausalLM<B>, micro_batches: Range<u64>) -> Result<StepOutput> {
        let step = micro_batches.start / self.config.train.gradient_accumulation_steps as u64;
        let generation = step / self.config.num_iterations as u64;
        let mut times = [0.0; 2];
        let rollout = match self.rollout.take() {
            Some(rollout) if rollout.generation == generation => rollout,
            _ => {
                let (rollout, spent) = self.roll_out(model, generation, step)?;
                times = spent;
                rollout
            }
        };
        let started = Instant::now();
        let chunks = self.chunks(&rollout);
        let truncated: Vec<bool> =
            rollout.samples.iter().map(|s| s.finish == precept_data::FinishReason::Length).collect();
        let masked = |i: usize| self.config.mask_truncated_completions && truncated[i];
        let active: usize =
            rollout.samples.iter().enumerate().filter(|(i, _)| !masked(*i)).map(|(_, s)| s.ids.len()).sum();
        let share = match self.config.loss.loss_type {
            // DAPO's micro-batch losses are already divided by the whole step's tokens.
            GrpoLossType::Dapo => 1.0,
            _ => 1.0 / chunks.len() as f64,
        };
        let mut accumulator = GradientsAccumulator::new();
        let (mut loss, mut input_tokens) = (0.0f64, 0usize);
        let mut loss_metrics: Map<String, Value> = Map::new();
        let mut first = 0;
        for rows in &chunks {
            let range = first..first + rows.lengths().len();
            first = range.end;
            let samples = &rollout.samples[range.clone()];
            input_tokens += rows.input_tokens();
            let logps = rows.token_logps(model, self.config.temperature, |logits, targets| {
                B::row_cross_entropy(logits, targets).neg()
            });
            let keep: Vec<f32> = range.clone().map(|i| if masked(i) { 0.0 } else { 1.0 }).collect();
            let mask = rows.mask::<B>(&self.device) * from_host::<B, 2>(keep, [samples.len(), 1], &self.device);
            let old_logps = rollout.old_logps.as_ref().map(|old| rows.padded::<B>(&old[range.clone()], &self.device));
            let advantages = samples.iter().map(|s| s.advantage).collect();
            let batch = CompletionLogps {
                ref_logps: self.reference_logps(model, rows),
                old_logps,
                logps,
                mask,
                advantages: from_host(advantages, [samples.len()], &self.device),
                num_items_in_batch: Some(active as f64),
            };
            let GrpoLoss { loss: chunk_loss, metrics } = self.config.loss.loss(&batch);
            let chunk_loss = chunk_loss.mul_scalar(share);
            loss += chunk_loss.clone().into_scalar().elem::<f64>();
            accumulator.accumulate(model, GradientsParams::from_grads(chunk_loss.backward(), model));
            for (name, value) in metrics.named() {
                let sum = loss_metrics.get(name).and_then(Value::as_f64).unwrap_or(0.0);
                loss_metrics.insert(name.into(), json!(sum + value / chunks.len() as f64));
            }
        }
        let mut metrics = rollout.metrics(&self.rewards.names());
        metrics.extend(loss_metrics);
        metrics.insert("time/generation".into(), json!(times[0]));
        metrics.insert("time/scoring".into(), json!(times[1]));
        metrics.insert("time/training".into(), json!(started.elapsed().as_secs_f64()));
        self.rollout = Some(rollout);
        Ok(StepOutput { grads: accumulator.grads(), loss, input_tokens, metrics })
    }

    fn evaluate(&self, _model: &LlamaForCausalLM<B::InnerBackend>) -> Option<Map<String, Value>> {
        None
    }
}
