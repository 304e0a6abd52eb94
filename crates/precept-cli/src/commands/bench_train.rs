//! `precept bench train`: the cost of one training step (forward, backward, AdamW) on random
//! tokens, timed per phase, with peak memory.

use std::time::Instant;

use anyhow::{bail, Result};
use burn::backend::Autodiff;
use burn::optim::GradientsParams;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, ElementConversion, Int, Tensor, TensorData};
use precept_model::lora::{LoraConfig, Trainable};
use precept_model::AttentionInputs;
use precept_train::loss::next_token_loss;
use precept_train::optim::{AdamW, AdamWConfig};
use serde::Serialize;

use crate::args::{BenchTrainArgs, TuningArg};
use crate::device::DeviceCommand;
use crate::loaded::load_weights;
use crate::output::print_json;

/// The command, ready to run on a backend.
pub struct BenchTrain(pub BenchTrainArgs);

#[derive(Serialize)]
struct StepTimes {
    forward_s: f64,
    backward_s: f64,
    optimizer_s: f64,
    step_s: f64,
    loss: f64,
}

#[derive(Serialize)]
struct TrainReport {
    method: &'static str,
    batch: usize,
    seq: usize,
    threads: usize,
    step_s_median: f64,
    tokens_per_s: f64,
    forward_s_median: f64,
    backward_s_median: f64,
    optimizer_s_median: f64,
    warmup_step_s: f64,
    peak_rss_gib: Option<f64>,
    losses: Vec<f64>,
}

impl DeviceCommand for BenchTrain {
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let args = self.0;
        if args.batch == 0 || args.seq < 2 || args.repeat == 0 {
            bail!("--batch and --repeat must be positive and --seq at least 2");
        }
        let (config, model) = load_weights::<Autodiff<B>>(&args.model, &device)?;
        Autodiff::<B>::seed(&device, 0);
        let (method, mut model) = match args.tuning {
            TuningArg::Lora => ("lora", model.with_lora(&LoraConfig::default())?),
            TuningArg::Full => ("full", model.set_trainable(Trainable::All)),
        };
        let tokens = args.batch * args.seq;
        let ids: Vec<i64> = (0..tokens).map(|i| 17 + ((i * 7919 + 13) % (config.vocab_size - 17)) as i64).collect();
        let ids = Tensor::<Autodiff<B>, 2, Int>::from_data(TensorData::new(ids, [args.batch, args.seq]), &device);
        let mask = Tensor::<Autodiff<B>, 2, Bool>::from_data(
            TensorData::new(vec![true; tokens], [args.batch, args.seq]),
            &device,
        );
        let inputs = AttentionInputs::causal(args.batch, args.seq, 0, &device);
        let mut optimizer = AdamW::new(AdamWConfig::default());
        let mut runs = Vec::new();
        for run in 0..=args.repeat {
            let started = Instant::now();
            let loss = next_token_loss(&model, ids.clone(), &inputs, mask.clone()).loss;
            let loss = loss.normalised(loss.tokens);
            let loss_value = loss.clone().into_scalar().elem::<f64>();
            let forward = started.elapsed().as_secs_f64();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let backward = started.elapsed().as_secs_f64() - forward;
            model = optimizer.step(1e-5, model, grads, 1.0);
            // Wait for the update to be computed (GPU backends run asynchronously).
            let _ = model.model.norm.weight.val().sum().into_scalar();
            let step = started.elapsed().as_secs_f64();
            let times = StepTimes {
                forward_s: forward,
                backward_s: backward,
                optimizer_s: step - forward - backward,
                step_s: step,
                loss: loss_value,
            };
            tracing::info!(
                "step {run}{}: {:.2}s (forward {:.2}, backward {:.2}, optimizer {:.2}), loss {:.4}",
                if run == 0 { " (warm-up)" } else { "" },
                times.step_s,
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
        let report = TrainReport {
            method,
            batch: args.batch,
            seq: args.seq,
            threads: rayon::current_num_threads(),
            step_s_median: step,
            tokens_per_s: tokens as f64 / step,
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
        println!(
            "{method} step, batch {} × {}: {:.2}s ({:.1} tokens/s; forward {:.2}s, backward {:.2}s, optimizer {:.2}s), peak RSS {}",
            report.batch,
            report.seq,
            report.step_s_median,
            report.tokens_per_s,
            report.forward_s_median,
            report.backward_s_median,
            report.optimizer_s_median,
            report.peak_rss_gib.map_or("unknown".into(), |g| format!("{g:.2} GiB"))
        );
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
