//! [`train_sft`]: SFT's data and objective, trained by the shared loop ([`crate::trainer`]).

use std::ops::Range;

use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::ElementConversion;
use precept_data::{prepare_file, PreparationStats, PrepareOptions, ProgressSink, TokenizedExample, Tokenizer};
use precept_model::{KernelBackend, LlamaForCausalLM};
use serde_json::{json, Map, Value};

use super::batches::{BatchPlan, BatchTensors};
use crate::error::{Result, TrainError};
use crate::loss::{learnt_token_logits, next_token_loss, LearntTokens, SftLoss};
use crate::settings::TrainConfig;
use crate::trainer::{hold_out, train, DataSummary, Objective, RunFolder, StepOutput, TrainOutcome, Watch};
use crate::TrainBackend;

/// Runs SFT as `config` says on `device`; with `resume`, continues from the run folder's latest
/// checkpoint (ending with the weights an uninterrupted run would have had).
///
/// A `monitor` checks the weights every few steps ([`train`]).
///
/// # Errors
/// Invalid settings, unreadable data or model, a run folder that already holds another run's
/// checkpoints, and a non-finite loss or gradient (the last checkpoint is kept).
pub fn train_sft<B: TrainBackend>(
    config: &TrainConfig,
    device: &B::Device,
    resume: bool,
    progress: &mut dyn ProgressSink,
    monitor: Watch<'_, B>,
) -> Result<TrainOutcome> {
    config.validate()?;
    let folder = RunFolder::<B>::open(config, config, resume, device)?;
    let mut objective = SftObjective::new(config, device.clone())?;
    train(config, folder, &mut objective, device, progress, monitor)
}

/// SFT's objective: next-token cross-entropy over the learnt tokens, normalised by the learnt
/// tokens of the whole accumulated batch.
struct SftObjective<B: Backend> {
    plan: BatchPlan,
    eval_plan: BatchPlan,
    data: DataSummary,
    device: B::Device,
}

impl<B: Backend> SftObjective<B> {
    fn new(config: &TrainConfig, device: B::Device) -> Result<Self> {
        let (train, eval, stats) = prepare_data(config)?;
        let (train_examples, eval_examples) = (train.len(), eval.len());
        let batch_size = config.per_device_train_batch_size;
        let plan = BatchPlan::new(train, config.packing, config.max_length, batch_size, config.seed);
        let eval_plan = BatchPlan::new(eval, config.packing, config.max_length, batch_size, config.seed);
        let longest_row = plan.longest().max(eval_plan.longest());
        let data = DataSummary { train_examples, eval_examples, stats, longest_row };
        Ok(Self { plan, eval_plan, data, device })
    }
}

impl<B: TrainBackend> Objective<B> for SftObjective<B> {
    fn data(&self) -> DataSummary {
        self.data.clone()
    }

    fn batches_per_epoch(&self) -> usize {
        self.plan.batches_per_epoch()
    }

    fn step(&mut self, model: &LlamaForCausalLM<B>, micro_batches: Range<u64>) -> Result<StepOutput> {
        let batches: Vec<BatchTensors<B>> =
            micro_batches.map(|index| BatchTensors::new(&self.plan.micro_batch(index), &self.device)).collect();
        let loss_tokens: usize = batches.iter().map(|b| b.loss_tokens).sum();
        let input_tokens: usize = batches.iter().map(|b| b.input_tokens).sum();
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        let mut accumulator = GradientsAccumulator::new();
        for batch in batches {
            let SftLoss { loss, correct: batch_correct } =
                next_token_loss(model, batch.ids, &batch.inputs, batch.loss_mask);
            correct += batch_correct;
            loss_sum += loss.sum.clone().into_scalar().elem::<f64>();
            let grads = GradientsParams::from_grads(loss.normalised(loss_tokens).backward(), model);
            accumulator.accumulate(model, grads);
        }
        let mut metrics = Map::new();
        metrics.insert("mean_token_accuracy".into(), json!(correct as f64 / loss_tokens.max(1) as f64));
        Ok(StepOutput { grads: accumulator.grads(), loss: loss_sum / loss_tokens.max(1) as f64, input_tokens, metrics })
    }

    fn evaluate(&self, model: &LlamaForCausalLM<B::InnerBackend>) -> Option<Map<String, Value>> {
        if self.data.eval_examples == 0 {
            return None;
        }
        let mut metrics = Map::new();
        metrics.insert("loss".into(), json!(evaluate(model, &self.eval_plan, &self.device)));
        Some(metrics)
    }
}

/// Mean next-token loss over every evaluation row (logits only where a learnt token is
/// predicted, as in training).
fn evaluate<B: KernelBackend>(model: &LlamaForCausalLM<B>, plan: &BatchPlan, device: &B::Device) -> f64 {
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
fn prepare_data(config: &TrainConfig) -> Result<(Vec<TokenizedExample>, Vec<TokenizedExample>, PreparationStats)> {
    let tokenizer = Tokenizer::from_dir(&config.model)?;
    let template = tokenizer.chat_template().ok_or_else(|| {
        TrainError::setting("model", format!("{}: the tokenizer has no chat template", config.model.display()))
    })?;
    let options = PrepareOptions { max_length: Some(config.max_length), on_mismatch: config.on_mismatch };
    let (mut train, stats) = prepare_file(&config.data, &tokenizer, template, options)?;
    let eval = match &config.eval_data {
        Some(path) => prepare_file(path, &tokenizer, template, options)?.0,
        None => hold_out(&mut train, config.eval_ratio, config.seed),
    };
    if train.is_empty() {
        return Err(TrainError::setting(
            "data",
            format!("{}: no training examples left after preparation", config.data.display()),
        ));
    }
    Ok((train, eval, stats))
}
