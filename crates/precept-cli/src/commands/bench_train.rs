//! `precept bench train`: the cost of one training step (forward, backward, AdamW) on random
//! tokens, timed per phase, with peak memory; an SFT step, or with `--dpo` a DPO step with a
//! live or cached reference.

use std::time::Instant;

use anyhow::{bail, Result};
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::backend::Backend;
use burn::tensor::FloatDType;
use burn::tensor::{Bool, ElementConversion, Int, Tensor, TensorData};
use precept_model::lora::{LoraConfig, Trainable};
use precept_model::{AttentionInputs, LlamaForCausalLM};
use precept_train::loss::{
    combined_loss, next_token_loss, sequence_logp_values, sequence_logps, PairLogps, PreferenceLoss,
};
use precept_train::optim::{AdamW, AdamWConfig};
use precept_train::{TrainKernels, Tuning};
use serde::Serialize;

use super::bench_shape::check_training;
use crate::args::BenchTrainArgs;
use crate::device::DeviceCommand;
use crate::loaded::load_weights;
use crate::output::{outln, print_json};

/// The command, ready to run on a backend.
pub struct BenchTrain(pub BenchTrainArgs);

/// Tokens of the prompt both sides of a benchmark pair share.
const DPO_PROMPT_TOKENS: usize = 64;

#[derive(Serialize)]
struct StepTimes {
    reference_s: f64,
    forward_s: f64,
    backward_s: f64,
    optimizer_s: f64,
    step_s: f64,
    loss: f64,
}

#[derive(Serialize)]
struct TrainReport {
    method: &'static str,
    objective: &'static str,
    batch: usize,
    rows: usize,
    seq: usize,
    threads: usize,
    step_s_median: f64,
    tokens_per_s: f64,
    reference_s_median: f64,
    forward_s_median: f64,
    backward_s_median: f64,
    optimizer_s_median: f64,
    warmup_step_s: f64,
    peak_rss_gib: Option<f64>,
    losses: Vec<f64>,
}

impl DeviceCommand for BenchTrain {
    fn run<B: TrainKernels>(self, device: B::Device, _decode: Option<FloatDType>) -> Result<()> {
        let args = self.0;
        if args.batch == 0 || args.seq < 2 || args.repeat == 0 {
            bail!("--batch and --repeat must be positive and --seq at least 2");
        }
        if args.dpo && args.seq <= DPO_PROMPT_TOKENS + 1 {
            bail!("--dpo needs --seq above {}", DPO_PROMPT_TOKENS + 1);
        }
        let (config, model) = load_weights::<Autodiff<B>>(&args.model, &device, None)?;
        Autodiff::<B>::seed(&device, 0);
        // The reference of a full fine-tune is a frozen copy of the base.
        let frozen = (args.dpo && !args.cached_reference && matches!(args.tuning, Tuning::Full)).then(|| model.valid());
        let (method, mut model) = match args.tuning {
            Tuning::Lora => ("lora", model.with_lora(&LoraConfig::default())?),
            Tuning::Full => ("full", model.set_trainable(Trainable::All)),
        };
        let rows = if args.dpo { args.batch.checked_mul(2) } else { Some(args.batch) };
        let Some(rows) = rows else { bail!("--batch {} pairs overflow", args.batch) };
        let tokens = check_training(&config, rows, args.seq)?;
        let token = |i: usize| 17 + ((i * 7919 + 13) % (config.vocab_size - 17)) as i64;
        // DPO rows: chosen then rejected; each pair's two rows share their prompt.
        let ids: Vec<i64> = (0..tokens)
            .map(|i| {
                let (row, position) = (i / args.seq, i % args.seq);
                if args.dpo && position < DPO_PROMPT_TOKENS {
                    token((row % args.batch) * args.seq + position)
                } else {
                    token(i)
                }
            })
            .collect();
        let learnt: Vec<bool> = (0..tokens).map(|i| !args.dpo || i % args.seq >= DPO_PROMPT_TOKENS).collect();
        let ids = Tensor::<Autodiff<B>, 2, Int>::from_data(TensorData::new(ids, [rows, args.seq]), &device);
        let mask = Tensor::<Autodiff<B>, 2, Bool>::from_data(TensorData::new(learnt, [rows, args.seq]), &device);
        let inputs = AttentionInputs::causal(rows, args.seq, 0, &device);
        let plain_inputs = AttentionInputs::<B>::causal(rows, args.seq, 0, &device);
        let mut optimizer = AdamW::new(AdamWConfig::default());
        let mut runs = Vec::new();
        for run in 0..=args.repeat {
            let started = Instant::now();
            let (reference, loss) = if args.dpo {
                let reference = match (&frozen, args.cached_reference) {
                    (_, true) => vec![-500.0; rows],
                    (Some(base), false) => reference_logps(base, &ids, &plain_inputs, &mask),
                    (None, false) => reference_logps(&model.valid().without_lora(), &ids, &plain_inputs, &mask),
                };
                let reference_s = started.elapsed().as_secs_f64();
                (reference_s, dpo_loss(&model, ids.clone(), &inputs, mask.clone(), &reference))
            } else {
                let loss = next_token_loss(&model, ids.clone(), &inputs, mask.clone()).loss;
                (0.0, loss.normalised(loss.tokens))
            };
            let loss_value = loss.clone().into_scalar().elem::<f64>();
            let forward = started.elapsed().as_secs_f64() - reference;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let backward = started.elapsed().as_secs_f64() - reference - forward;
            model = optimizer.step(1e-5, model, grads, 1.0);
            // Wait for the update to be computed (GPU backends run asynchronously).
            let _ = model.model.norm.weight.val().sum().into_scalar();
            let step = started.elapsed().as_secs_f64();
            let times = StepTimes {
                reference_s: reference,
                forward_s: forward,
                backward_s: backward,
                optimizer_s: step - reference - forward - backward,
                step_s: step,
                loss: loss_value,
            };
            tracing::info!(
                "step {run}{}: {:.2}s (reference {:.2}, forward {:.2}, backward {:.2}, optimizer {:.2}), loss {:.4}",
                if run == 0 { " (warm-up)" } else { "" },
                times.step_s,
                times.reference_s,
                times.forward_s,
                times.backward_s,
                times.optimizer_s,
                times.loss
            );
            runs.push(times);
        }
        let median = |pick: fn(&StepTimes) -> f64| {
            let mut values: Vec<f64> = runs[1..].iter().map(pick).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        let step = median(|t| t.step_s);
        let objective = match (args.dpo, args.cached_reference) {
            (false, _) => "sft",
            (true, false) => "dpo (live reference)",
            (true, true) => "dpo (cached reference)",
        };
        let report = TrainReport {
            method,
            objective,
            batch: args.batch,
            rows,
            seq: args.seq,
            threads: rayon::current_num_threads(),
            step_s_median: step,
            tokens_per_s: tokens as f64 / step,
            reference_s_median: median(|t| t.reference_s),
            forward_s_median: median(|t| t.forward_s),
            backward_s_median: median(|t| t.backward_s),
            optimizer_s_median: median(|t| t.optimizer_s),
            warmup_step_s: runs[0].step_s,
            peak_rss_gib: peak_rss_gib(),
            losses: runs.iter().map(|t| t.loss).collect(),
        };
        if args.json {
            return print_json(&report);
        }
        outln!(
            "{method} {objective} step, {} rows × {}: {:.2}s ({:.1} tokens/s; reference {:.2}s, forward {:.2}s, backward {:.2}s, optimizer {:.2}s), peak RSS {}",
            report.rows,
            report.seq,
            report.step_s_median,
            report.tokens_per_s,
            report.reference_s_median,
            report.forward_s_median,
            report.backward_s_median,
            report.optimizer_s_median,
            report.peak_rss_gib.map_or("unknown".into(), |g| format!("{g:.2} GiB"))
        )?;
        Ok(())
    }
}

/// The process's peak resident memory (Linux `VmHWM`).
fn peak_rss_gib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / (1024.0 * 1024.0))
}

/// Summed answer log-probabilities of every row under a reference model (no gradients).
fn reference_logps<B: TrainKernels>(
    model: &LlamaForCausalLM<B>,
    ids: &Tensor<Autodiff<B>, 2, Int>,
    inputs: &AttentionInputs<B>,
    mask: &Tensor<Autodiff<B>, 2, Bool>,
) -> Vec<f64> {
    sequence_logp_values(model, ids.clone().inner(), inputs, mask.clone().inner()).logps
}

/// TRL's sigmoid DPO loss (β 0.1) of a `[chosen; rejected]` batch against `reference`.
fn dpo_loss<B: TrainKernels>(
    model: &LlamaForCausalLM<Autodiff<B>>,
    ids: Tensor<Autodiff<B>, 2, Int>,
    inputs: &AttentionInputs<Autodiff<B>>,
    mask: Tensor<Autodiff<B>, 2, Bool>,
    reference: &[f64],
) -> Tensor<Autodiff<B>, 1> {
    let device = ids.device();
    let sequences = sequence_logps(model, ids, inputs, mask);
    let pairs = reference.len() / 2;
    let vector = |values: Vec<f32>| Tensor::from_data(TensorData::new(values, [pairs]), &device);
    let side = |start: usize, values: &[f64]| vector(values[start..start + pairs].iter().map(|&v| v as f32).collect());
    let tokens: Vec<f64> = sequences.tokens.iter().map(|&t| t as f64).collect();
    let logps = PairLogps {
        chosen: sequences.logps.clone().narrow(0, 0, pairs),
        rejected: sequences.logps.narrow(0, pairs, pairs),
        ref_chosen: side(0, reference),
        ref_rejected: side(pairs, reference),
        chosen_tokens: side(0, &tokens),
        rejected_tokens: side(pairs, &tokens),
    };
    combined_loss(&[(PreferenceLoss::Sigmoid, 1.0)], &logps, 0.1, 0.0)
}
