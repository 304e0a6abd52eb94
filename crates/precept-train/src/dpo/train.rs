//! [`train_dpo`]: preference pairs, the reference, and the preference objective, trained by the
//! shared loop ([`crate::trainer`]).

use std::ops::Range;

use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use precept_data::{prepare_pairs_file, PreparationStats, PrepareOptions, ProgressSink, TokenizedPair, Tokenizer};
use precept_model::{host_values, LlamaForCausalLM};
use serde_json::{json, Map, Value};

use super::config::{DpoConfig, PreferenceMethod};
use super::pairs::PairPlan;
use super::reference::{reference_logps, PairReference, Reference};
use crate::error::{Result, TrainError};
use crate::loss::{
    combined_loss, orpo_odds_ratio_loss, sequence_logp_values, sequence_logps, simpo_loss, PairLogps, PreferenceLoss,
};
use crate::trainer::{hold_out, train, DataSummary, Objective, RunFolder, StepOutput, TrainOutcome, Watch};
use crate::TrainBackend;

/// Runs preference training as `config` says on `device`; with `resume`, continues from the run
/// folder's latest checkpoint (ending with the weights an uninterrupted run would have had).
///
/// A `monitor` checks the weights every few steps ([`train`]).
///
/// # Errors
/// Invalid settings, unreadable data or models, a run folder that already holds another run's
/// checkpoints, an unwritable reference cache, and a non-finite loss or gradient (the last
/// checkpoint is kept).
pub fn train_dpo<B: TrainBackend>(
    config: &DpoConfig,
    device: &B::Device,
    resume: bool,
    progress: &mut dyn ProgressSink,
    monitor: Watch<'_, B>,
) -> Result<TrainOutcome> {
    config.validate()?;
    let folder = RunFolder::<B>::open(&config.train, config, resume, device)?;
    let (train_pairs, eval_pairs, stats) = prepare_pairs(config)?;
    let batch_size = config.train.per_device_train_batch_size;
    let train_plan = PairPlan::new(train_pairs, batch_size, config.train.seed);
    let eval_plan = PairPlan::new(eval_pairs, batch_size, config.train.seed);
    let reference = Reference::prepare(config, &folder.base.valid(), [&train_plan, &eval_plan], device, progress)?;
    let data = DataSummary {
        train_examples: train_plan.len(),
        eval_examples: eval_plan.len(),
        stats,
        longest_row: train_plan.longest().max(eval_plan.longest()),
    };
    let mut objective = PreferenceObjective::<B> {
        settings: PreferenceSettings::new(config),
        train: train_plan,
        eval: eval_plan,
        reference,
        data,
        device: device.clone(),
    };
    train(&config.train, folder, &mut objective, device, progress, monitor)
}

/// Training and evaluation pairs: `eval_data` when given, else a seeded `eval_ratio` share.
fn prepare_pairs(config: &DpoConfig) -> Result<(Vec<TokenizedPair>, Vec<TokenizedPair>, PreparationStats)> {
    let settings = &config.train;
    let tokenizer = Tokenizer::from_dir(&settings.model)?;
    let template = tokenizer.chat_template().ok_or_else(|| {
        TrainError::setting("model", format!("{}: the tokenizer has no chat template", settings.model.display()))
    })?;
    let options = PrepareOptions { max_length: Some(settings.max_length), on_mismatch: settings.on_mismatch };
    let (mut train, stats) = prepare_pairs_file(&settings.data, &tokenizer, template, options)?;
    let eval = match &settings.eval_data {
        Some(path) => prepare_pairs_file(path, &tokenizer, template, options)?.0,
        None => hold_out(&mut train, settings.eval_ratio, settings.seed),
    };
    if train.is_empty() {
        return Err(TrainError::setting(
            "data",
            format!("{}: no preference pairs left after preparation", settings.data.display()),
        ));
    }
    Ok((train, eval, stats))
}

/// The loss settings of a preference run.
#[derive(Debug, Clone)]
struct PreferenceSettings {
    method: PreferenceMethod,
    losses: Vec<(PreferenceLoss, f64)>,
    beta: f64,
    label_smoothing: f64,
    simpo_gamma: f64,
}

impl PreferenceSettings {
    fn new(config: &DpoConfig) -> Self {
        Self {
            method: config.method,
            losses: config.weighted_losses(),
            beta: config.beta,
            label_smoothing: config.label_smoothing,
            simpo_gamma: config.simpo_gamma,
        }
    }

    /// The mean loss over the pairs of `logps`, `[1]`.
    fn loss<B: Backend>(&self, logps: &PairLogps<B>) -> Tensor<B, 1> {
        let (beta, smoothing) = (self.beta, self.label_smoothing);
        match self.method {
            PreferenceMethod::Dpo => combined_loss(&self.losses, logps, beta, smoothing),
            PreferenceMethod::Simpo => simpo_loss(logps, beta, self.simpo_gamma, smoothing).mean(),
            PreferenceMethod::Orpo => {
                PreferenceLoss::Sft.per_pair(logps, beta, smoothing).mean() + orpo_odds_ratio_loss(logps, beta).mean()
            }
        }
    }

    /// TRL's rewards of one pair: `β·(logp − logp_ref)` for DPO, `β·logp/tokens` for the
    /// reference-free methods.
    fn rewards(&self, pair: &PairNumbers, i: usize) -> [f64; 2] {
        [0, 1].map(|side| match self.method {
            PreferenceMethod::Dpo => self.beta * (pair.policy[side][i] - pair.reference[i][side]),
            _ => self.beta * pair.policy[side][i] / pair.tokens[side][i].max(1) as f64,
        })
    }
}

/// Numbers of one micro-batch of pairs; index `[0]` is the chosen side, `[1]` the rejected.
struct PairNumbers<'a> {
    policy: [&'a [f64]; 2],
    reference: &'a [PairReference],
    tokens: [&'a [usize]; 2],
    mean_logits: [&'a [f64]; 2],
}

impl<'a> PairNumbers<'a> {
    /// Splits per-row values of a `[chosen; rejected]` batch into sides.
    fn new(logps: &'a [f64], reference: &'a [PairReference], tokens: &'a [usize], mean_logits: &'a [f64]) -> Self {
        let pairs = reference.len();
        let halves = |v: &'a [f64]| [&v[..pairs], &v[pairs..]];
        Self {
            policy: halves(logps),
            reference,
            tokens: [&tokens[..pairs], &tokens[pairs..]],
            mean_logits: halves(mean_logits),
        }
    }
}

/// Sums behind TRL's preference metrics.
#[derive(Debug, Default)]
struct PairMetrics {
    pairs: usize,
    rewards: [f64; 2],
    correct: usize,
    logps: [f64; 2],
    /// `Σ mean logit × tokens` and `Σ tokens` per side: logits are averaged over tokens, as TRL's.
    logit_sums: [f64; 2],
    tokens: [usize; 2],
}

impl PairMetrics {
    fn add(&mut self, pair: &PairNumbers, settings: &PreferenceSettings) {
        for i in 0..pair.reference.len() {
            let rewards = settings.rewards(pair, i);
            self.correct += usize::from(rewards[0] > rewards[1]);
            for (side, reward) in rewards.into_iter().enumerate() {
                self.rewards[side] += reward;
                self.logps[side] += pair.policy[side][i];
                self.logit_sums[side] += pair.mean_logits[side][i] * pair.tokens[side][i] as f64;
                self.tokens[side] += pair.tokens[side][i];
            }
        }
        self.pairs += pair.reference.len();
    }

    fn finish(&self) -> Map<String, Value> {
        let pairs = self.pairs.max(1) as f64;
        let mut metrics = Map::new();
        metrics.insert("rewards/chosen".into(), json!(self.rewards[0] / pairs));
        metrics.insert("rewards/rejected".into(), json!(self.rewards[1] / pairs));
        metrics.insert("rewards/accuracies".into(), json!(self.correct as f64 / pairs));
        metrics.insert("rewards/margins".into(), json!((self.rewards[0] - self.rewards[1]) / pairs));
        metrics.insert("logps/chosen".into(), json!(self.logps[0] / pairs));
        metrics.insert("logps/rejected".into(), json!(self.logps[1] / pairs));
        metrics.insert("logits/chosen".into(), json!(self.logit_sums[0] / self.tokens[0].max(1) as f64));
        metrics.insert("logits/rejected".into(), json!(self.logit_sums[1] / self.tokens[1].max(1) as f64));
        metrics
    }
}

/// [`PairLogps`] of a `[chosen; rejected]` batch whose policy log-probabilities are `policy`.
fn pair_logps<B: Backend>(policy: Tensor<B, 1>, reference: &[PairReference], tokens: &[usize]) -> PairLogps<B> {
    let pairs = reference.len();
    let device = policy.device();
    let vector = |values: Vec<f32>| Tensor::<B, 1>::from_data(TensorData::new(values, [pairs]), &device);
    let side = |side: usize| vector(reference.iter().map(|pair| pair[side] as f32).collect());
    let counts = |range: Range<usize>| vector(tokens[range].iter().map(|&t| t as f32).collect());
    PairLogps {
        chosen: policy.clone().narrow(0, 0, pairs),
        rejected: policy.narrow(0, pairs, pairs),
        ref_chosen: side(0),
        ref_rejected: side(1),
        chosen_tokens: counts(0..pairs),
        rejected_tokens: counts(pairs..2 * pairs),
    }
}

/// Which split a batch of pairs comes from.
#[derive(Debug, Clone, Copy)]
enum Split {
    Train,
    Eval,
}

/// The preference objective: a loss on the summed completion log-probabilities of each pair's
/// sides, under the policy and the reference.
struct PreferenceObjective<B: TrainBackend> {
    settings: PreferenceSettings,
    train: PairPlan,
    eval: PairPlan,
    reference: Reference<B::InnerBackend>,
    data: DataSummary,
    device: B::Device,
}

impl<B: TrainBackend> PreferenceObjective<B> {
    /// Reference log-probabilities of the pairs `indices` of `split`; `policy` gives the
    /// current policy when the reference is the policy with its adapters off.
    fn reference(
        &self,
        split: Split,
        indices: &[usize],
        policy: impl FnOnce() -> LlamaForCausalLM<B::InnerBackend>,
    ) -> Vec<PairReference> {
        let plan = match split {
            Split::Train => &self.train,
            Split::Eval => &self.eval,
        };
        match &self.reference {
            Reference::None => vec![[0.0; 2]; indices.len()],
            Reference::Precomputed { train, eval } => {
                let values = match split {
                    Split::Train => train,
                    Split::Eval => eval,
                };
                indices.iter().map(|&i| values[i]).collect()
            }
            Reference::AdaptersOff => reference_logps(&policy().without_lora(), plan, indices, &self.device),
            Reference::Model(model) => reference_logps(model, plan, indices, &self.device),
        }
    }
}

impl<B: TrainBackend> Objective<B> for PreferenceObjective<B> {
    fn data(&self) -> DataSummary {
        self.data.clone()
    }

    fn batches_per_epoch(&self) -> usize {
        self.train.batches_per_epoch()
    }

    fn step(&mut self, model: &LlamaForCausalLM<B>, micro_batches: Range<u64>) -> Result<StepOutput> {
        let batches: Vec<Vec<usize>> = micro_batches.map(|index| self.train.micro_batch(index)).collect();
        let total_pairs: usize = batches.iter().map(Vec::len).sum();
        let mut accumulator = GradientsAccumulator::new();
        let (mut loss, mut input_tokens, mut metrics) = (0.0f64, 0usize, PairMetrics::default());
        for indices in &batches {
            let reference = self.reference(Split::Train, indices, || model.valid());
            let batch = self.train.tensors::<B>(indices, &self.device);
            input_tokens += batch.input_tokens;
            let sequences = sequence_logps(model, batch.ids, &batch.inputs, batch.loss_mask);
            let policy: Vec<f64> = host_values(sequences.logps.clone()).into_iter().map(f64::from).collect();
            let numbers = PairNumbers::new(&policy, &reference, &sequences.tokens, &sequences.mean_logits);
            metrics.add(&numbers, &self.settings);
            let logps = pair_logps(sequences.logps, &reference, &sequences.tokens);
            // Each micro-batch's mean, weighted by its share of the step's pairs: the step's loss
            // is the mean over all of them.
            let share = self.settings.loss(&logps).mul_scalar(indices.len() as f64 / total_pairs as f64);
            loss += share.clone().into_scalar().elem::<f64>();
            accumulator.accumulate(model, GradientsParams::from_grads(share.backward(), model));
        }
        Ok(StepOutput { grads: accumulator.grads(), loss, input_tokens, metrics: metrics.finish() })
    }

    fn evaluate(&self, model: &LlamaForCausalLM<B::InnerBackend>) -> Option<Map<String, Value>> {
        if self.eval.is_empty() {
            return None;
        }
        let (mut loss, mut metrics) = (0.0f64, PairMetrics::default());
        for range in self.eval.in_order() {
            let indices: Vec<usize> = range.collect();
            let reference = self.reference(Split::Eval, &indices, || model.clone());
            let batch = self.eval.tensors::<B::InnerBackend>(&indices, &self.device);
            let values = sequence_logp_values(model, batch.ids, &batch.inputs, batch.loss_mask);
            metrics
                .add(&PairNumbers::new(&values.logps, &reference, &values.tokens, &values.mean_logits), &self.settings);
            let policy: Vec<f32> = values.logps.iter().map(|&v| v as f32).collect();
            let policy =
                Tensor::<B::InnerBackend, 1>::from_data(TensorData::new(policy, [values.logps.len()]), &self.device);
            let batch_loss = self.settings.loss(&pair_logps(policy, &reference, &values.tokens));
            loss += batch_loss.into_scalar().elem::<f64>() * indices.len() as f64;
        }
        let mut record = Map::new();
        record.insert("loss".into(), json!(loss / self.eval.len() as f64));
        record.extend(metrics.finish());
        Some(record)
    }
}
